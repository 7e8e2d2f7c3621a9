//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) through the same library
//! entry points the fuzz targets call (`remailer::fuzzing`), so every input the fuzzers kept
//! (and every crash found and fixed, kept as a regression input) runs in the normal test run.
//! Each entry point panics when an invariant breaks; a failing file is named.

use std::path::Path;

#[test]
fn every_corpus_file_of_every_target_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failures = Vec::new();
    for target in remailer::fuzzing::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= 5,
            "corpus of {target} has only {} files",
            files.len()
        );
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let ran = std::panic::catch_unwind(|| remailer::fuzzing::run(target, &data));
            match ran {
                Ok(true) => {}
                Ok(false) => panic!("unknown fuzz target {target}"),
                Err(_) => failures.push(file.display().to_string()),
            }
        }
        eprintln!("{target}: {} corpus files replayed", files.len());
    }
    assert!(failures.is_empty(), "corpus files that fail: {failures:#?}");
}

#[test]
fn the_bounce_token_corpus_reaches_a_token_that_verifies() {
    // Without a valid token among the inputs the target would only ever test refusals.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bounce_token");
    let valid = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| remailer::fuzzing::bounce_token_verifies(&std::fs::read(e.path()).unwrap()))
        .count();
    assert!(valid > 0, "no corpus file is a token that verifies");
}
