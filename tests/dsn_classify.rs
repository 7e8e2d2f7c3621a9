//! `dsn::classify` against a corpus of what comes back to a bounce address
//! (`tests/fixtures/dsn/`): RFC 3464 reports from Postfix, Gmail, Exchange and Sendmail,
//! plain-text bounces from Exim, qmail, Sendmail and old Exchange, auto-replies, human
//! replies, abuse reports and junk. Then properties: no input makes it panic, and the status
//! it returns is never anything but digits and dots.

use std::path::PathBuf;

use proptest::prelude::*;
use remailer::dsn::{classify, is_auto_submitted, BounceKind, Report};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dsn")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all_fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dsn");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| (n.clone(), fixture(&n)))
        .collect()
}

fn hard(status: &str) -> Report {
    Report::Bounce {
        kind: BounceKind::Hard,
        status: Some(status.to_string()),
    }
}

fn soft(status: Option<&str>) -> Report {
    Report::Bounce {
        kind: BounceKind::Soft,
        status: status.map(str::to_string),
    }
}

/// Every fixture and what it must be classified as.
fn expectations() -> Vec<(&'static str, Report)> {
    vec![
        // RFC 3464 reports
        ("postfix_hard_511.eml", hard("5.1.1")),
        ("postfix_delayed_441.eml", Report::Delayed),
        ("postfix_expired_441.eml", soft(Some("4.4.1"))),
        ("gmail_dsn_511.eml", hard("5.1.1")),
        ("exchange_online_ndr_report.eml", hard("5.1.10")),
        ("multi_recipient_worst_wins.eml", hard("5.1.1")),
        ("multi_recipient_soft_over_delay.eml", soft(Some("4.3.1"))),
        ("success_dsn_relayed.eml", Report::Unknown),
        // plain-text bounces
        ("exchange2003_ndr_plain.eml", hard("5.1.1")),
        ("exim_plain_hard.eml", hard("5.1.1")),
        ("exim_plain_soft_quota.eml", soft(Some("4.2.2"))),
        ("exim_delay_warning.eml", Report::Delayed),
        ("qmail_bounce_511.eml", hard("5.1.1")),
        ("qmail_remote_550.eml", hard("550")),
        ("sendmail_plain_transcript.eml", hard("5.1.1")),
        ("truncated_before_report.eml", hard("5.1.1")),
        // automatic replies
        ("vacation_auto_submitted.eml", Report::AutoReply),
        ("outlook_automatic_reply.eml", Report::AutoReply),
        ("precedence_auto_reply.eml", Report::AutoReply),
        ("x_autoreply.eml", Report::AutoReply),
        ("auto_generated_notice.eml", Report::AutoReply),
        // everything else
        ("human_reply_to_bounce_address.eml", Report::Unknown),
        ("arf_abuse_report.eml", Report::Unknown),
        ("truncated_headers.eml", Report::Unknown),
        ("garbage.bin", Report::Unknown),
    ]
}

#[test]
fn each_fixture_is_classified() {
    let mut wrong = Vec::new();
    for (name, expected) in expectations() {
        let got = classify(&fixture(name));
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn every_fixture_has_an_expectation() {
    let expected: Vec<&str> = expectations().iter().map(|(n, _)| *n).collect();
    for (name, _) in all_fixtures() {
        assert!(
            expected.contains(&name.as_str()),
            "no expectation for {name}"
        );
    }
    assert!(expected.len() >= 15);
}

#[test]
fn line_endings_do_not_matter() {
    for (name, expected) in expectations() {
        let raw = fixture(name);
        if raw.contains(&0) || !raw.is_ascii() && std::str::from_utf8(&raw).is_err() {
            continue;
        }
        let lf: Vec<u8> = String::from_utf8(raw)
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        let crlf = String::from_utf8(lf.clone()).unwrap().replace('\n', "\r\n");
        assert_eq!(classify(&lf), expected, "{name} with LF");
        assert_eq!(classify(crlf.as_bytes()), expected, "{name} with CRLF");
    }
}

#[test]
fn auto_submitted_helper() {
    assert!(is_auto_submitted(&fixture("vacation_auto_submitted.eml")));
    assert!(is_auto_submitted(&fixture("postfix_hard_511.eml")));
    assert!(is_auto_submitted(&fixture("precedence_auto_reply.eml")));
    assert!(!is_auto_submitted(&fixture(
        "human_reply_to_bounce_address.eml"
    )));
    // Outlook's out-of-office carries only the Subject hint, not a header.
    assert!(!is_auto_submitted(&fixture("outlook_automatic_reply.eml")));
}

#[test]
fn a_huge_message_is_bounded_and_still_read() {
    let mut raw = fixture("postfix_hard_511.eml");
    let body = b"x".repeat(1000);
    for _ in 0..20_000 {
        raw.extend_from_slice(&body);
        raw.extend_from_slice(b"\r\n");
    }
    assert_eq!(classify(&raw), hard("5.1.1"));
    let mut long_line = fixture("exim_plain_hard.eml");
    long_line.extend(std::iter::repeat_n(b'5', 3_000_000));
    assert_eq!(classify(&long_line), hard("5.1.1"));
}

#[test]
fn remote_text_never_reaches_the_status() {
    let raw = b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\
        Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
        --b\r\nContent-Type: message/delivery-status\r\n\r\n\
        Final-Recipient: rfc822; secret@real.example\r\nAction: failed\r\n\
        Status: 5.1.1 <secret@real.example> gone\r\n\r\n--b--\r\n";
    assert_eq!(classify(raw), hard("5.1.1"));
}

fn status_is_numeric(report: &Report) -> bool {
    match report {
        Report::Bounce {
            status: Some(s), ..
        } => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
        _ => true,
    }
}

#[test]
fn fixture_statuses_are_numeric() {
    for (name, raw) in all_fixtures() {
        assert!(status_is_numeric(&classify(&raw)), "{name}");
    }
}

fn fixture_bytes() -> Vec<Vec<u8>> {
    all_fixtures().into_iter().map(|(_, raw)| raw).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let report = classify(&raw);
        prop_assert!(status_is_numeric(&report));
        let _ = is_auto_submitted(&raw);
    }

    #[test]
    fn header_like_noise_never_panics(
        lines in proptest::collection::vec(
            "(Content-Type: (multipart/report; report-type=delivery-status; boundary=b|message/delivery-status)|--b|--b--|Action: (failed|delayed)|Status: [0-9.]{0,12}|Diagnostic-Code: smtp; [0-9 .-]{0,16}|From: MAILER-DAEMON@x|Subject: (Undeliverable|Automatic reply)|Auto-Submitted: [a-z-]{0,12}| [ -~]{0,20}|[ -~]{0,40}|)",
            0..40,
        ),
        crlf in any::<bool>(),
    ) {
        let raw = lines.join(if crlf { "\r\n" } else { "\n" });
        let report = classify(raw.as_bytes());
        prop_assert!(status_is_numeric(&report));
    }

    #[test]
    fn truncated_and_mutated_fixtures_never_panic(
        which in any::<proptest::sample::Index>(),
        cut in any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let fixtures = fixture_bytes();
        let mut raw = fixtures[which.index(fixtures.len())].clone();
        raw.truncate(cut.index(raw.len() + 1));
        for (at, byte) in flips {
            if !raw.is_empty() {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
        }
        let report = classify(&raw);
        prop_assert!(status_is_numeric(&report));
        let _ = is_auto_submitted(&raw);
    }
}
