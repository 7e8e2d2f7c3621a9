//! Outbound DKIM signatures checked by an independent verifier (Python dkimpy, via
//! tests/dkim_verify.py, fed only the zone lines `remailer dns` prints), and `dns_records::check`
//! against the local test DNS server.
//!
//! Needs `bash scripts/test-deps.sh` once (installs dkimpy, dnspython, PyNaCl).

mod support;

use std::time::Instant;

use remailer::address::Domain;
use remailer::config::Config;
use remailer::dkim::DkimKeys;
use remailer::dns_records::{self, CheckStatus};
use support::dns_server::TestDns;

struct Setup {
    dir: tempfile::TempDir,
    config: Config,
    keys: DkimKeys,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local_defaults();
    config.domain = Domain::parse("remailer.test").unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.smtp.hostname = Some("mx.remailer.test".into());
    // With an operator address the full record set is printed (DMARC rua, TLS-RPT).
    config.policy.postmaster = Some("ops@operator.test".into());
    let keys = DkimKeys::load_or_create(
        dir.path(),
        &Domain::parse("remailer.test").unwrap(),
        &config.dkim.selector,
    )
    .unwrap();
    Setup { dir, config, keys }
}

const MESSAGE: &str = "From: joe@remailer.test\r\n\
To: ann@remailer.test\r\n\
Cc: bob@remailer.test\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=   and   spaces\r\n\
Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\
Message-ID: <abc123@remailer.test>\r\n\
In-Reply-To: <prev@remailer.test>\r\n\
References: <first@remailer.test>\r\n <prev@remailer.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Hello Ann,   \r\n\
\r\n\
a line with trailing tabs\t\t\r\n\
Gr\u{fc}\u{df}e, Joe\r\n\
\r\n\
\r\n";

/// Signs `message` and returns the signed wire form.
fn sign(keys: &DkimKeys, message: &str) -> Vec<u8> {
    let mut out = keys.sign(message.as_bytes()).unwrap();
    out.extend_from_slice(message.as_bytes());
    out
}

/// Runs dkimpy on `signed`, with the records `remailer dns` would print.
fn dkimpy(s: &Setup, signed: &[u8]) -> (bool, String) {
    let zone = dns_records::format_zone(&dns_records::records(&s.config, &s.keys));
    let (ok, report) = support::dkimpy::verify(s.dir.path(), signed, &zone);
    eprintln!("dkimpy: {report}");
    (ok, report)
}

/// Inserts `field` (CRLF-terminated) right before the blank line ending the header.
fn add_header(signed: &[u8], field: &str) -> Vec<u8> {
    let text = String::from_utf8(signed.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    format!("{head}\r\n{field}\r\n\r\n{body}").into_bytes()
}

#[test]
fn both_signatures_verify_with_dkimpy() {
    let s = setup();
    let signed = sign(&s.keys, MESSAGE);
    let (ok, out) = dkimpy(&s, &signed);
    assert!(ok, "{out}");
    assert!(
        out.contains("rsa-sha256 remailer.test remailer-rsa ok"),
        "{out}"
    );
    assert!(
        out.contains("ed25519-sha256 remailer.test remailer-ed ok"),
        "{out}"
    );
}

#[test]
fn minimal_and_empty_body_messages_verify() {
    let s = setup();
    for msg in [
        "From: a@remailer.test\r\nSubject: x\r\n\r\n",
        "From: a@remailer.test\r\n\r\nno other header\r\n",
    ] {
        let (ok, out) = dkimpy(&s, &sign(&s.keys, msg));
        assert!(ok, "{msg:?}: {out}");
    }
}

#[test]
fn reloaded_keys_still_verify() {
    let s = setup();
    let reloaded = DkimKeys::load_or_create(
        s.dir.path(),
        &Domain::parse("remailer.test").unwrap(),
        "remailer",
    )
    .unwrap();
    let (ok, out) = dkimpy(&s, &sign(&reloaded, MESSAGE));
    assert!(ok, "{out}");
}

#[test]
fn an_added_from_breaks_both_signatures() {
    let s = setup();
    let signed = sign(&s.keys, MESSAGE);
    let forged = add_header(&signed, "From: mallory@evil.test");
    let (ok, out) = dkimpy(&s, &forged);
    assert!(!ok, "{out}");
    assert_eq!(out.matches("FAIL").count(), 2, "{out}");
}

#[test]
fn an_added_absent_signed_header_breaks_the_signatures() {
    let s = setup();
    let signed = sign(&s.keys, MESSAGE);
    let (ok, out) = dkimpy(&s, &add_header(&signed, "Reply-To: mallory@evil.test"));
    assert!(!ok, "{out}");
    assert_eq!(out.matches("FAIL").count(), 2, "{out}");
}

#[test]
fn an_added_unsigned_header_or_changed_body_is_told_apart() {
    let s = setup();
    let signed = sign(&s.keys, MESSAGE);
    // A header outside the signed list (as a relay adds Received:) keeps both valid …
    let (ok, out) = dkimpy(&s, &add_header(&signed, "X-Relay: 1"));
    assert!(ok, "{out}");
    // … a changed body does not.
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("Hello Ann", "Hello Bob");
    let (ok, out) = dkimpy(&s, tampered.as_bytes());
    assert!(!ok, "{out}");
}

#[tokio::test]
async fn check_reports_ok_for_published_records() {
    let s = setup();
    let dns = TestDns::start().await;
    let records = dns_records::records(&s.config, &s.keys);
    dns.add_zone(&dns_records::format_zone(&records));
    let resolver = remailer::sender_auth::build_resolver(&dns.dns_config()).unwrap();
    let lines = dns_records::check(&s.config, &s.keys, &resolver).await;
    assert_eq!(lines.len(), records.len());
    for line in &lines {
        assert_eq!(line.status, CheckStatus::Ok, "{line}");
        assert!(line.to_string().starts_with("ok "), "{line}");
    }
}

#[tokio::test]
async fn check_reports_missing_and_wrong_records() {
    let s = setup();
    let dns = TestDns::start().await;
    let domain = "remailer.test";
    dns.add_mx(domain, 10, "old-mx.elsewhere.test");
    dns.add_txt(domain, "v=spf1 mx -all");
    dns.add_txt(domain, "google-site-verification=abc");
    dns.add_txt(&format!("_dmarc.{domain}"), "v=DMARC1; p=none");
    let resolver = remailer::sender_auth::build_resolver(&dns.dns_config()).unwrap();
    let lines = dns_records::check(&s.config, &s.keys, &resolver).await;
    let status = |purpose: &str| {
        lines
            .iter()
            .find(|l| l.record.purpose == purpose)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(status("spf"), CheckStatus::Ok);
    assert_eq!(status("dkim"), CheckStatus::Missing);
    assert_eq!(status("tls-rpt"), CheckStatus::Missing);
    assert!(matches!(status("mx"), CheckStatus::Wrong { found } if found.contains("old-mx")));
    assert!(matches!(status("dmarc"), CheckStatus::Wrong { found } if found.contains("p=none")));
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("missing  remailer-rsa._domainkey.remailer.test TXT")),
        "{text:#?}"
    );
}

#[test]
fn zone_lines_have_the_documented_shape() {
    let s = setup();
    let records = dns_records::records(&s.config, &s.keys);
    let zone = dns_records::format_zone(&records);
    for line in zone.lines().filter(|l| !l.starts_with(';')) {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        assert!(fields[0].ends_with('.'), "{line}");
        assert_eq!(fields[1], "3600", "{line}");
        assert_eq!(fields[2], "IN", "{line}");
        if fields[3] == "TXT" {
            let parts = support::dns_server::unquote(fields[4]);
            assert!(parts.iter().all(|p| p.len() <= 255), "{line}");
        }
    }
    let rsa = zone
        .lines()
        .find(|l| l.starts_with("remailer-rsa._domainkey.remailer.test. "))
        .unwrap();
    assert!(rsa.contains("\" \""), "2048-bit key must be split: {rsa}");
    assert!(zone.contains("remailer.test. 3600 IN MX 10 mx.remailer.test.\n"));
    assert!(zone.contains("_dmarc.remailer.test. 3600 IN TXT \"v=DMARC1; p=reject;"));
    assert!(zone.contains("_smtp._tls.remailer.test. 3600 IN TXT \"v=TLSRPTv1;"));
}

/// Signing cost per message (both signatures). Run in release mode:
/// `cargo test --release --test dkim_sign -- --ignored --nocapture sign_cost`
#[test]
#[ignore]
fn sign_cost() {
    let s = setup();
    let body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n".repeat(64);
    let message = format!("{}{body}", MESSAGE);
    let n = 2000;
    for _ in 0..50 {
        s.keys.sign(message.as_bytes()).unwrap();
    }
    let start = Instant::now();
    for _ in 0..n {
        s.keys.sign(message.as_bytes()).unwrap();
    }
    let per = start.elapsed() / n;
    println!(
        "sign (rsa-2048 + ed25519, {} byte message): {per:?} per message, {:.0} messages/s on one core",
        message.len(),
        1.0 / per.as_secs_f64()
    );
}
