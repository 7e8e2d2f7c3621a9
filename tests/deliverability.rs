//! What goes out is deliverable: every message the running service sends (remailed mail and
//! its own notices) carries RSA and Ed25519 DKIM signatures for DOMAIN that an independent
//! implementation (dkimpy, via tests/dkim_verify.py) verifies against exactly the records
//! `remailer dns` prints. Needs `scripts/test-deps.sh` (the test command runs it).

mod harness;
mod support;

use std::time::Duration;

use harness::{message, wait_for, Client, Delivered, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

/// dkimpy's report on `message`, verified against what `remailer dns` prints.
fn dkimpy(svc: &Service, message: &[u8]) -> (bool, String) {
    let (code, zone, err) = svc.cli(&["dns"]);
    assert_eq!(code, 0, "{err}");
    support::dkimpy::verify(&svc.dir, message, &zone)
}

fn dkimpy_verifies(svc: &Service, d: &Delivered) -> String {
    let (ok, report) = dkimpy(svc, &d.data);
    assert!(ok, "dkimpy did not verify:\n{report}\n{}", d.text());
    report
}

#[tokio::test]
async fn remailed_mail_and_notices_verify_with_dkimpy() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "dkim.selector = \"t1\"").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "Signed", "Body text."),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("delivery", Duration::from_secs(10), || {
        sink.delivered().pop()
    })
    .await;
    let report = dkimpy_verifies(&svc, &d);
    assert!(
        report.contains("rsa-sha256") && report.contains("ed25519-sha256"),
        "{report}"
    );
    assert!(
        report.contains("t1-rsa") && report.contains("t1-ed"),
        "configured selector: {report}"
    );
    let signature = d.header("DKIM-Signature").unwrap();
    assert!(signature.contains("d=remailer.test"), "{signature}");
    for h in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
    ] {
        assert!(
            signature.to_ascii_lowercase().contains(h),
            "{h} not signed: {signature}"
        );
    }

    // A header added on the way breaks the signature (over-signing).
    let forged = [b"From: <mallory@evil.example>\r\n".as_slice(), &d.data].concat();
    let (ok, report) = dkimpy(&svc, &forged);
    assert!(!ok, "an added From must fail verification: {report}");

    // The service's own notice is signed too.
    sink.set_mode(SinkMode::Reject);
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "Refused", "x"),
        )
        .await;
    assert_eq!(r.code, 250);
    let notice = wait_for("notice", Duration::from_secs(10), || {
        sink.delivered()
            .into_iter()
            .find(|d| d.mail_from.is_empty())
    })
    .await;
    dkimpy_verifies(&svc, &notice);
}

#[test]
fn dns_prints_the_records_to_publish() {
    let svc = Service::prepare(harness::free_port(), "");
    let (code, _, err) = svc.cli(&["dns"]);
    assert_eq!(code, 1, "dns reads keys, it does not create them");
    assert!(err.contains("--create-keys"), "{err}");
    let (code, out, err) = svc.cli(&["dns", "--create-keys"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with(';')).collect();
    let has = |prefix: &str, rtype: &str, value: &str| {
        lines.iter().any(|l| {
            let f: Vec<&str> = l.splitn(5, ' ').collect();
            f.len() == 5 && f[0] == prefix && f[2] == "IN" && f[3] == rtype && f[4].contains(value)
        })
    };
    assert!(has("remailer.test.", "MX", "mx.remailer.test."), "{out}");
    assert!(has("remailer.test.", "TXT", "v=spf1"), "{out}");
    assert!(
        has("remailer-rsa._domainkey.remailer.test.", "TXT", "k=rsa"),
        "{out}"
    );
    assert!(
        has("remailer-ed._domainkey.remailer.test.", "TXT", "k=ed25519"),
        "{out}"
    );
    assert!(has("_dmarc.remailer.test.", "TXT", "p=reject"), "{out}");
    assert!(
        !out.contains("rua=") && !out.contains("_smtp._tls"),
        "no report address without an operator: {out}"
    );
    let with_operator = Service::prepare(
        harness::free_port(),
        "policy.postmaster = \"ops@operator.example\"",
    );
    let (_, out, _) = with_operator.cli(&["dns", "--create-keys"]);
    assert!(
        out.contains("rua=mailto:postmaster@remailer.test")
            && out.contains("_smtp._tls.remailer.test."),
        "{out}"
    );
    for l in &lines {
        for part in l.split('"').skip(1).step_by(2) {
            assert!(part.len() <= 255, "TXT strings are split at 255: {l}");
        }
    }
    let dkim_dir = svc.dir.join("data/dkim");
    use std::os::unix::fs::PermissionsExt;
    for f in std::fs::read_dir(&dkim_dir).unwrap() {
        let mode = f.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "DKIM key files are private");
    }
}

// Multi-threaded: the CLI runs as a blocking child process while the in-process DNS
// server answers on another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_check_says_what_is_missing() {
    let dns = support::dns_server::TestDns::start().await;
    let extra = format!(
        "dns.nameservers = [\"{}\"]\npolicy.postmaster = \"ops@operator.example\"",
        dns.addr()
    );
    let svc = Service::prepare(harness::free_port(), &extra);
    let (_, zone, _) = svc.cli(&["dns", "--create-keys"]);
    let (code, out, err) = svc.cli(&["dns", "check"]);
    assert_eq!(code, 1, "nothing published yet: {out}{err}");
    assert!(
        out.contains("missing") && err.contains("missing or wrong"),
        "{out}{err}"
    );

    dns.add_zone(&zone);
    let (code, out, err) = svc.cli(&["dns", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("all 8 records are published correctly"),
        "{out}"
    );
    assert!(!out.contains("missing"), "{out}");

    dns.remove("_dmarc.remailer.test");
    dns.add_txt("_dmarc.remailer.test", "v=DMARC1; p=none");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the test server's TTL is 1 s
    let (code, out, _) = svc.cli(&["dns", "check"]);
    assert_eq!(code, 1);
    assert!(
        out.lines()
            .any(|l| l.starts_with("wrong") && l.contains("_dmarc")),
        "{out}"
    );
}

#[tokio::test]
async fn mail_for_postmaster_and_abuse_reaches_the_operator() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "policy.postmaster = \"ops@operator.example\"").await;
    for (n, to) in ["postmaster@remailer.test", "Abuse@remailer.test"]
        .iter()
        .enumerate()
    {
        let mut c = Client::connect(svc.smtp_port).await;
        let subject = format!("complaint {n}");
        let r = c
            .send_mail(
                "someone@outside.example",
                &[to],
                &message("someone@outside.example", to, &subject, "Spam from you?"),
            )
            .await;
        assert_eq!(r.code, 250, "anyone may write to {to}: {r:?}");
        let attached = |d: &Delivered| {
            let parsed = mail_parser::MessageParser::default().parse(&d.data)?;
            let part = parsed.attachment(0)?;
            Some(String::from_utf8_lossy(part.contents()).into_owned())
        };
        let d = wait_for("the forward", Duration::from_secs(10), || {
            sink.delivered()
                .into_iter()
                .find(|d| attached(d).is_some_and(|a| a.contains(&subject)))
        })
        .await;
        assert_eq!(d.rcpt_to, vec!["ops@operator.example".to_string()]);
        assert_eq!(d.mail_from, "", "sent as a notice, never bounced");
        assert!(
            attached(&d).unwrap().contains("Spam from you?"),
            "the original is attached unchanged"
        );
        dkimpy_verifies(&svc, &d);
    }
    // Without an operator address these names are refused like any unknown alias.
    let plain = Service::start(sink.port, "").await;
    let mut c = Client::connect(plain.smtp_port).await;
    let r = c
        .send_mail(
            "someone@outside.example",
            &["postmaster@remailer.test"],
            "x",
        )
        .await;
    assert_eq!(r.code, 550, "{r:?}");
}
