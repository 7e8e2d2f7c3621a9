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
//!
//! Properties over every output of the corpus: every non-text attachment's decoded bytes are
//! the input's; every output, DKIM-signed by the service's own signer, verifies with dkimpy
//! (an independent implementation; one batch run). Some fixture classes also have their
//! content checked against what the fixture was made from.

#[path = "fixtures/rewrite/support.rs"]
mod support;

#[path = "support/dkimpy.rs"]
mod dkimpy;

use std::fs;
use std::path::PathBuf;

use remailer::rewrite::{parse, rewrite, scan, RewriteError};
use support::{
    attachments, check_output, encoded_containers, fixture_context, identity_leaks, Cast,
};

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

/// Every successful rewrite of the corpus: (fixture, strip, input, output).
fn outputs() -> Vec<(String, bool, Vec<u8>, Vec<u8>)> {
    let cast = Cast::new();
    let mut out = Vec::new();
    for (stem, raw) in fixtures() {
        let scanned = scan(&raw);
        for strip in [false, true] {
            let holder = fixture_context(&cast, &scanned, strip);
            if let Ok(r) = rewrite(&raw, &holder.context(), &cast.dir) {
                out.push((stem.clone(), strip, raw.clone(), r.message));
            }
        }
    }
    out
}

#[test]
fn every_non_text_attachment_keeps_its_decoded_bytes() {
    let mut failures = Vec::new();
    let mut compared = 0;
    for (stem, strip, input, output) in outputs() {
        let before = attachments(&parse(&input).unwrap(), strip);
        let after = attachments(&parse(&output).unwrap(), strip);
        compared += before.len();
        if before.len() != after.len() {
            failures.push(format!(
                "{stem} (strip={strip}): {} attachments in, {} out: {:?} / {:?}",
                before.len(),
                after.len(),
                before.iter().map(|a| &a.content_type).collect::<Vec<_>>(),
                after.iter().map(|a| &a.content_type).collect::<Vec<_>>()
            ));
            continue;
        }
        for (n, (b, a)) in before.iter().zip(&after).enumerate() {
            if a != b {
                failures.push(format!(
                    "{stem} (strip={strip}) attachment {n} ({} -> {}): {} bytes in, {} out",
                    b.content_type,
                    a.content_type,
                    b.bytes.len(),
                    a.bytes.len()
                ));
            }
        }
    }
    assert!(compared >= 15, "only {compared} attachments compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_output_verifies_with_dkimpy() {
    use remailer::address::Domain;
    use remailer::config::Config;
    use remailer::dkim::DkimKeys;
    use remailer::dns_records;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local_defaults();
    let domain = Domain::parse("remailer.test").unwrap();
    config.domain = domain.clone();
    config.data_dir = dir.path().to_path_buf();
    config.smtp.hostname = Some("mx.remailer.test".into());
    let keys = DkimKeys::load_or_create(dir.path(), &domain, &config.dkim.selector).unwrap();
    let zone = dns_records::format_zone(&dns_records::records(&config, &keys));
    let outputs = outputs();
    let signed: Vec<Vec<u8>> = outputs
        .iter()
        .map(|(_, _, _, message)| {
            // The signer as it is, on the output as it is: no normalisation in between.
            let mut s = keys.sign(message).unwrap();
            s.extend_from_slice(message);
            s
        })
        .collect();
    let results = dkimpy::verify_many(dir.path(), &signed, &zone);
    let failures: Vec<String> = outputs
        .iter()
        .zip(&results)
        .filter(|(_, (ok, _))| !ok)
        .map(|((stem, strip, _, _), (_, report))| format!("{stem} (strip={strip}): {report}"))
        .collect();
    assert!(outputs.len() >= 40, "{} outputs", outputs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The output of fixture `stem` (not signed), parsed.
fn output_of(stem: &str) -> Vec<u8> {
    let (_, raw) = fixtures().into_iter().find(|(s, _)| s == stem).unwrap();
    let cast = Cast::new();
    let holder = fixture_context(&cast, &scan(&raw), false);
    let out = rewrite(&raw, &holder.context(), &cast.dir).unwrap().message;
    assert!(check_output(&raw, &out, &format!("KEEP:{stem}")).is_empty());
    out
}

fn attachment_bytes(output: &[u8]) -> Vec<Vec<u8>> {
    let msg = parse(output).unwrap();
    attachments(&msg, false)
        .into_iter()
        .map(|a| a.bytes)
        .collect()
}

/// All decoded text of an output (text and HTML parts, embedded messages included).
fn texts(output: &[u8]) -> String {
    let mut s = String::new();
    support::visible_text(&parse(output).unwrap(), &mut s);
    s
}

#[test]
fn a_uuencoded_attachment_arrives_as_the_file() {
    let mut file: Vec<u8> = (0..=255u8).cycle().take(768).collect();
    file.extend_from_slice(b"\x00\r\n\r\rtrailing  \t");
    let out = output_of("uuencode_attachment");
    assert_eq!(attachment_bytes(&out), vec![file]);
    assert!(!String::from_utf8_lossy(&out).contains("begin 644"));
}

#[test]
fn a_quoted_printable_attachment_keeps_its_trailing_whitespace() {
    let out = output_of("qp_binary_trailing_whitespace");
    let want: &[u8] = b"line one ends with a space \r\ntab at the end\t\r\n\
two spaces before a soft break  continued \r\n\r bare CR inside\rthere\r\n\
\x00\xff\x80binary  \r\n.dot line\r\nlast line with trailing spaces  ";
    let got = attachment_bytes(&out);
    assert_eq!(got.first().map(Vec::as_slice), Some(want));
    assert_eq!(got.get(1).map(Vec::as_slice), Some(&b"-old  +new \r\n"[..]));
    // A text attachment that had to be rewritten keeps its trailing blanks too.
    let msg = parse(&out).unwrap();
    let notes = msg
        .parts
        .iter()
        .find_map(|p| match &p.body {
            mail_parser::PartType::Text(t) if t.contains("notes with blanks") => Some(t.clone()),
            _ => None,
        })
        .expect("the text attachment");
    assert_eq!(
        notes,
        "notes with blanks  \r\nwrite to joe@remailer.test\t\r\ncaf\u{e9} \r\n"
    );
}

#[test]
fn a_part_without_the_blank_line_keeps_its_body() {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend(0..200u8);
    pdf.extend_from_slice(b"\n%%EOF\n");
    let out = output_of("header_block_without_blank_line");
    assert_eq!(attachment_bytes(&out), vec![pdf.clone(), pdf]);
    let text = texts(&out);
    assert!(text.contains("after the broken parts"), "{text}");
}

#[test]
fn parts_after_nested_forwards_are_kept() {
    let out = output_of("nested_forwards_with_parts_after");
    let text = texts(&out);
    for want in [
        "Innermost text",
        "level two text",
        "after level three",
        "level one text",
        "HTML after the forwards",
    ] {
        assert!(text.contains(want), "lost {want:?}:\n{text}");
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(0..64u8);
    let last: Vec<u8> = (0..=255u8).rev().collect();
    assert_eq!(attachment_bytes(&out), vec![png, last]);
}

#[test]
fn parts_after_forwards_that_end_together_are_kept() {
    let text = texts(&output_of("nested_forwards_ending_together"));
    for want in [
        "text at level 1",
        "text at level 3",
        "Innermost text",
        "HTML after four levels",
    ] {
        assert!(text.contains(want), "lost {want:?}:\n{text}");
    }
}

#[test]
fn undeclared_8bit_text_is_read_as_mail_clients_read_it() {
    let out = output_of("undeclared_8bit_us_ascii");
    let text = texts(&out);
    for want in [
        "Le message a \u{e9}t\u{e9} envoy\u{e9} \u{2014} voil\u{e0}.",
        "Envoy\u{e9} par joe@remailer.test \u{2013} \u{201c}caf\u{e9}\u{201d} \u{20ac} 5",
        "na\u{ef}ve r\u{e9}sum\u{e9}",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    assert!(
        !text.contains('\u{c3}') && !text.contains('\u{fffd}'),
        "{text}"
    );
}

#[test]
fn a_text_part_that_needs_no_change_goes_out_as_it_came() {
    let out = output_of("undeclared_8bit_us_ascii");
    let text = String::from_utf8_lossy(&out);
    // Not decoded to UTF-8 and encoded again: the ISO-8859-1 quoted-printable bytes as sent.
    assert!(
        text.contains(
            "\r\n\r\nGr=FC=DFe aus K=F6ln, ohne Adressen; diese Zeile ist l=\r\n=E4nger.\r\n"
        ),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("charset=\"iso-8859-1\""),
        "{text}"
    );
    assert!(texts(&out)
        .contains("Gr\u{fc}\u{df}e aus K\u{f6}ln, ohne Adressen; diese Zeile ist l\u{e4}nger."));
}

#[test]
fn property_a_no_member_address_or_name_in_any_decoded_part() {
    let mut failures = Vec::new();
    for (stem, strip, _, out) in outputs() {
        for leak in identity_leaks(&out) {
            failures.push(format!("{stem} (strip={strip}): {leak:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn property_c_no_container_part_has_a_transfer_encoding() {
    let mut failures = Vec::new();
    for (stem, strip, _, out) in outputs() {
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

#[test]
fn with_metadata_stripping_on_a_stub_image_is_refused_not_passed() {
    // The corpus's attachments are stubs (see `Holder::strip_metadata`): with the service's
    // default, a "JPEG" that is only a JPEG's first bytes cannot be cleaned and is refused.
    let (_, raw) = fixtures()
        .into_iter()
        .find(|(s, _)| s == "image_attachment_jpeg")
        .unwrap();
    let cast = Cast::new();
    let mut holder = fixture_context(&cast, &scan(&raw), false);
    holder.strip_metadata = true;
    let err = rewrite(&raw, &holder.context(), &cast.dir).unwrap_err();
    assert_eq!(err.status(), (550, [5, 6, 0]));
    let text = err.to_string();
    assert!(text.contains("\"IMG_1234.JPG\" (JPEG image)"), "{text}");
}
