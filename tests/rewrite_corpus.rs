//! Runs every `.eml` in `tests/fixtures/rewrite/` through `rewrite` and checks, after fully
//! decoding the output (every header, every part, embedded messages), that nothing of the
//! members' real identities or the sender's infrastructure survives, that the output is
//! well-formed, and that the text is kept (each fixture carries a `KEEP:<name>` marker).
//!
//! Fixtures named `signed_*` must be refused as signed, and pass once signatures are stripped.
//! Fixtures named `refuse_*` cannot be scrubbed and must be refused whatever the settings:
//! `refuse_encrypted_*` as encrypted, the other `refuse_*` as uncheckable (5.6.x).
//!
//! Properties over the whole corpus (each test below fails on the mail of issue 8):
//! (a) no member's real address or name in any decoded part of any output;
//! (c) no `message/*` or `multipart/*` part with a transfer encoding other than identity;
//! (e) a message that cannot be scrubbed is refused, never delivered.

#[path = "fixtures/rewrite/support.rs"]
mod support;

use std::fs;
use std::path::PathBuf;

use remailer::rewrite::{rewrite, scan, RewriteError};
use support::{check_output, encoded_containers, fixture_context, identity_leaks, Cast};

/// What a fixture must come to, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Rewritten,
    /// Refused unless signatures are stripped.
    Signed,
    /// Refused as encrypted, whatever the settings.
    Encrypted,
    /// Refused as uncheckable (signed ones as signed unless stripping).
    Refused,
}

fn expect(stem: &str) -> Expect {
    if stem.starts_with("signed_") {
        Expect::Signed
    } else if stem.starts_with("refuse_encrypted_") {
        Expect::Encrypted
    } else if stem.starts_with("refuse_") {
        Expect::Refused
    } else {
        Expect::Rewritten
    }
}

/// Whether `result` is the refusal `expect` asks for (None: it must be rewritten).
fn refusal_ok(expect: Expect, strip: bool, result: &Result<(), RewriteError>) -> Option<bool> {
    Some(match (expect, strip, result) {
        (Expect::Rewritten, _, _) | (Expect::Signed, true, _) => return None,
        (Expect::Signed, false, r) => *r == Err(RewriteError::Signed),
        (Expect::Encrypted, _, r) => *r == Err(RewriteError::Encrypted),
        (Expect::Refused, false, Err(RewriteError::Signed)) => true,
        (Expect::Refused, _, r) => matches!(r, Err(RewriteError::Uncheckable(_))),
    })
}

/// Every fixture's outputs (for both settings of `strip_signatures`) that must be rewritten.
fn outputs() -> Vec<(String, bool, Vec<u8>)> {
    let cast = Cast::new();
    let mut out = Vec::new();
    for (stem, raw) in fixtures() {
        for strip in [false, true] {
            let holder = fixture_context(&cast, &scan(&raw), strip);
            match rewrite(&raw, &holder.context(), &cast.dir) {
                Ok(r) => out.push((stem.clone(), strip, r.message)),
                Err(_) => continue,
            }
        }
    }
    out
}

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
        let expect = expect(&stem);
        for strip in [false, true] {
            let holder = fixture_context(&cast, &scanned, strip);
            let ctx = holder.context();
            let result = rewrite(&raw, &ctx, &cast.dir);
            let outcome = result.as_ref().map(|_| ()).map_err(Clone::clone);
            match (refusal_ok(expect, strip, &outcome), result) {
                (Some(true), _) => continue,
                (Some(false), _) => {
                    failures.push(format!(
                        "{stem} (strip={strip}): expected {expect:?}, got {outcome:?}"
                    ));
                    continue;
                }
                (None, Err(e)) => failures.push(format!("{stem}: {e}")),
                (None, Ok(out)) => {
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
        .filter(|(s, _)| expect(s) == Expect::Rewritten)
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

#[test]
fn property_a_no_member_address_or_name_in_any_decoded_part() {
    let mut failures = Vec::new();
    for (stem, strip, out) in outputs() {
        for leak in identity_leaks(&out) {
            failures.push(format!("{stem} (strip={strip}): {leak:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn property_c_no_container_part_has_a_transfer_encoding() {
    let mut failures = Vec::new();
    for (stem, strip, out) in outputs() {
        for part in encoded_containers(&out) {
            failures.push(format!("{stem} (strip={strip}): {part}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn property_e_what_cannot_be_scrubbed_is_refused() {
    let cast = Cast::new();
    let mut refused = [0usize; 2];
    for (stem, raw) in fixtures() {
        let expect = expect(&stem);
        if !matches!(expect, Expect::Encrypted | Expect::Refused) {
            continue;
        }
        for strip in [false, true] {
            let holder = fixture_context(&cast, &scan(&raw), strip);
            let err = match rewrite(&raw, &holder.context(), &cast.dir) {
                Ok(out) => panic!(
                    "{stem} (strip={strip}) was delivered:\n{}",
                    String::from_utf8_lossy(&out.message)
                ),
                Err(e) => e,
            };
            let (code, status) = err.status();
            assert_eq!(code, 550, "{stem}: {err}");
            let signed = err == RewriteError::Signed && !strip;
            assert!(
                signed || status[..2] == [5, 6],
                "{stem}: {err} has {status:?}"
            );
            assert!(!err.to_string().contains('@'), "{stem}: {err}");
        }
        refused[usize::from(expect == Expect::Encrypted)] += 1;
    }
    assert!(
        refused[0] >= 8 && refused[1] >= 5,
        "refusal fixtures: {refused:?}"
    );
}
