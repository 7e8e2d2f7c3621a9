//! The dependency order of ARCHITECTURE.md §4: the crate's modules import each other one way
//! only. Reads the sources (`use crate::…`, `crate::…` paths and, inside `rewrite`,
//! `super::…`), leaving out comments and `#[cfg(test)] mod tests`, and fails on any cycle,
//! naming it, and on a leaf vocabulary module that imports a stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comment lines and without its unit-test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `prefix` in `code` (`crate::policy` → `policy`), including
/// those of a `prefix{a, b}` group.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|n| ident(n.trim())));
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n.starts_with(|c: char| c.is_ascii_lowercase()));
    names
}

/// Top-level modules and who imports whom.
fn crate_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let top = rel.components().next().expect("a component");
        let module = top
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let modules: BTreeSet<String> = names_after(&code(&file), "crate::")
            .into_iter()
            .filter(|m| *m != module)
            .filter(|m| src.join(format!("{m}.rs")).exists() || src.join(m).is_dir())
            .collect();
        graph.entry(module).or_default().extend(modules);
    }
    graph
}

/// The submodules of `rewrite` and who imports whom among them.
fn rewrite_graph(dir: &Path) -> Graph {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(dir).expect("rewrite dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .to_string();
        if name == "mod" || name == "tests" {
            continue;
        }
        // A submodule that is a directory (`rewrite/metadata/`): its files' code together.
        let code = if path.is_dir() {
            let mut files = Vec::new();
            sources(&path, &mut files);
            files.iter().map(|f| code(f)).collect::<Vec<_>>().join("\n")
        } else {
            code(&path)
        };
        let used: BTreeSet<String> = names_after(&code, "super::")
            .into_iter()
            .filter(|m| *m != name && dir.join(format!("{m}.rs")).exists())
            .collect();
        graph.insert(name, used);
    }
    graph
}

/// Every cycle's modules (strongly connected components of more than one module).
fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut found: Vec<BTreeSet<String>> = Vec::new();
    for (m, r) in &reaches {
        if !r.contains(*m) {
            continue;
        }
        let scc: BTreeSet<String> = r
            .iter()
            .filter(|n| reaches.get(n).is_some_and(|rn| rn.contains(*m)))
            .cloned()
            .collect();
        if !found.contains(&scc) {
            found.push(scc);
        }
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_crate_has_no_module_cycle() {
    let graph = crate_graph(&src());
    assert!(
        graph["policy"].contains("remail"),
        "the reader sees imports: {graph:?}"
    );
    for stage in ["policy", "remail", "rewrite", "spool", "delivery"] {
        assert!(
            !graph["intake"].contains(stage),
            "intake imports {stage} (the Pipeline is between them)"
        );
    }
    assert_eq!(cycles(&graph), Vec::<BTreeSet<String>>::new(), "{graph:#?}");
}

#[test]
fn the_rewrite_has_no_module_cycle() {
    let graph = rewrite_graph(&src().join("rewrite"));
    assert!(
        graph["headers"].contains("emit"),
        "the reader sees imports: {graph:?}"
    );
    assert_eq!(cycles(&graph), Vec::<BTreeSet<String>>::new(), "{graph:#?}");
}

#[test]
fn the_vocabulary_imports_no_stage() {
    let graph = crate_graph(&src());
    let stages = [
        "intake", "policy", "remail", "rewrite", "spool", "delivery", "service",
    ];
    assert!(
        graph.get("reply").is_none_or(|r| r.is_empty()),
        "reply is a leaf: {:?}",
        graph.get("reply")
    );
    for leaf in ["envelope", "reply", "address", "members", "rate_limits"] {
        let imports = graph.get(leaf).cloned().unwrap_or_default();
        for stage in stages {
            assert!(!imports.contains(stage), "{leaf} imports the stage {stage}");
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["a".to_string()].into());
    graph.insert("c".into(), ["a".to_string()].into());
    assert_eq!(
        cycles(&graph),
        vec![BTreeSet::from(["a".to_string(), "b".to_string()])]
    );
}
