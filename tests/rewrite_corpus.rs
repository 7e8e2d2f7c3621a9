//! Runs every `.eml` in `tests/fixtures/rewrite/` through `rewrite` and checks, after fully
//! decoding the output (every header, every part, embedded messages), that nothing of the
//! members' real identities or the sender's infrastructure survives, that the output is
//! well-formed, and that the text is kept (each fixture carries a `KEEP:<name>` marker).
//!
//! Fixtures named `signed_*` must be refused as signed, and pass once signatures are stripped.

#[path = "fixtures/rewrite/support.rs"]
mod support;

use std::fs;
use std::path::PathBuf;

use remailer::rewrite::{rewrite, scan, RewriteError};
use support::{check_output, fixture_context, Cast};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite");
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .expect("fixture folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn corpus_is_large_enough() {
    assert!(fixtures().len() >= 40, "at least 40 fixtures");
}

#[test]
fn every_fixture_is_rewritten_without_leaks() {
    let cast = Cast::new();
    let mut failures = Vec::new();
    for (stem, raw) in fixtures() {
        let scanned = scan(&raw);
        let signed = stem.starts_with("signed_");
        for strip in [false, true] {
            let holder = fixture_context(&cast, &scanned, strip);
            let ctx = holder.context();
            let result = rewrite(&raw, &ctx, &cast.dir);
            match (signed, strip, result) {
                (true, false, Err(RewriteError::Signed)) => continue,
                (true, false, other) => {
                    failures.push(format!(
                        "{stem}: expected Signed, got {:?}",
                        other.map(|_| ())
                    ));
                    continue;
                }
                (_, _, Err(e)) => failures.push(format!("{stem}: {e}")),
                (_, _, Ok(out)) => {
                    let marker = format!("KEEP:{stem}");
                    for problem in check_output(&raw, &out.message, &marker) {
                        failures.push(format!("{stem} (strip={strip}): {problem}"));
                    }
                    assert_eq!(out.original_message_id, scanned.message_id, "{stem}");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rewriting_is_deterministic_and_loops_are_caught() {
    let cast = Cast::new();
    for (stem, raw) in fixtures()
        .into_iter()
        .filter(|(s, _)| !s.starts_with("signed_"))
    {
        let scanned = scan(&raw);
        let holder = fixture_context(&cast, &scanned, false);
        let ctx = holder.context();
        let a = rewrite(&raw, &ctx, &cast.dir).unwrap();
        let b = rewrite(&raw, &ctx, &cast.dir).unwrap();
        assert_eq!(a.message, b.message, "{stem}");
        assert_eq!(
            rewrite(&a.message, &ctx, &cast.dir).unwrap_err(),
            RewriteError::Loop,
            "{stem}"
        );
    }
}
