//! TLS end to end against the real binary on loopback: inbound STARTTLS with the configured
//! certificate (and its reload on SIGHUP), STARTTLS command injection, bad TLS config, and
//! outbound opportunistic STARTTLS with `delivery.require_tls`.

mod harness;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::tls::{connector, TestCa};
use harness::{message, wait_for, Client, Service, Sink, SinkMode, SinkTls, TestCert};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(15);
const NAMES: &[&str] = &["mx.remailer.test", "localhost"];

/// `smtp.tls_cert` / `smtp.tls_key` lines for PEM files in `dir`.
fn tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "smtp.tls_cert = \"{}\"\nsmtp.tls_key = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// A service whose certificate files live in `tls_dir` (cert.pem, key.pem) holding `cert`.
async fn start_with_cert(sink_port: u16, tls_dir: &Path, cert: &TestCert, extra: &str) -> Service {
    let (c, k) = cert.write(tls_dir);
    let svc = Service::start(sink_port, &format!("{}{extra}", tls_lines(&c, &k))).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    svc
}

/// Connects, says EHLO (which must offer STARTTLS), upgrades, and returns the TLS client and
/// the certificate the server presented.
async fn upgrade(port: u16, trusted: &[&TestCert]) -> (Client, Vec<u8>) {
    let mut c = Client::connect(port).await;
    let r = c.cmd("EHLO client.real.example").await;
    assert_eq!(r.code, 250, "{r:?}");
    assert!(
        r.text.lines().any(|l| l == "STARTTLS"),
        "STARTTLS offered: {r:?}"
    );
    let r = c.cmd("STARTTLS").await;
    assert_eq!(r.code, 220, "{r:?}");
    let (c, chain) = c
        .starttls(&connector(trusted))
        .await
        .expect("TLS handshake");
    assert!(!chain.is_empty(), "the server presented a certificate");
    (c, chain[0].as_ref().to_vec())
}

fn signal(svc: &Service, sig: &str) {
    let pid = svc.pid().expect("running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

// ---------------------------------------------------------------------------------------
// Inbound

#[tokio::test]
async fn starttls_presents_the_configured_certificate_and_carries_a_message() {
    let sink = Sink::start(SinkMode::Accept).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = TestCert::new(NAMES);
    let svc = start_with_cert(sink.port, tmp.path(), &cert, "").await;

    let (mut c, presented) = upgrade(svc.smtp_port, &[&cert]).await;
    assert_eq!(presented, cert.der.as_ref(), "the configured certificate");

    // A fresh EHLO inside TLS: no STARTTLS any more, and a second STARTTLS is refused.
    let r = c.cmd("EHLO client.real.example").await;
    assert_eq!(r.code, 250, "{r:?}");
    assert!(
        !r.text.contains("STARTTLS"),
        "no STARTTLS inside TLS: {r:?}"
    );
    assert_eq!(c.cmd("STARTTLS").await.code, 502);

    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "Over TLS", "Sent inside TLS."),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("QUIT").await.code, 221);

    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert_eq!(d.rcpt_to, vec![ANN.to_string()]);
    assert_eq!(d.header("Subject").as_deref(), Some("Over TLS"));
    assert!(d.text().contains("Sent inside TLS."));
}

#[tokio::test]
async fn the_session_state_is_reset_by_starttls() {
    // RFC 3207 §4.2: the client must start over (EHLO) after the handshake.
    let sink = Sink::start(SinkMode::Accept).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = TestCert::new(NAMES);
    let svc = start_with_cert(sink.port, tmp.path(), &cert, "").await;
    let (mut c, _) = upgrade(svc.smtp_port, &[&cert]).await;
    let r = c.cmd(&format!("MAIL FROM:<{JOE}>")).await;
    assert_eq!(r.code, 503, "EHLO needed again inside TLS: {r:?}");
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    // CVE-2011-0411: commands sent in the clear in the same packet as STARTTLS must not be
    // executed as if they had come over TLS.
    let sink = Sink::start(SinkMode::Accept).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = TestCert::new(NAMES);
    let svc = start_with_cert(sink.port, tmp.path(), &cert, "").await;

    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    c.send_raw(
        format!("STARTTLS\r\nHELP\r\nEHLO evil.example\r\nMAIL FROM:<{JOE}>\r\n").as_bytes(),
    )
    .await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 220, "{r:?}");
    // `starttls` also checks that nothing else came after the 220 in the clear.
    let (mut c, _) = c.starttls(&connector(&[&cert])).await.expect("handshake");

    // A vulnerable server would now answer the injected HELP (214), EHLO and MAIL first.
    let r = c.cmd("RCPT TO:<ann@remailer.test>").await;
    assert_eq!(
        r.code, 503,
        "the first reply inside TLS answers our RCPT, and no MAIL was injected: {r:?}"
    );
    let r = c.cmd("NOOP").await;
    assert_eq!((r.code, r.text.as_str()), (250, "2.0.0 OK"), "{r:?}");
    // The session still works normally.
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(c.cmd("QUIT").await.code, 221);
    assert!(sink.delivered().is_empty());
}

#[tokio::test]
async fn a_client_silent_after_starttls_is_dropped_within_the_command_timeout() {
    let sink = Sink::start(SinkMode::Accept).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = TestCert::new(NAMES);
    let svc = start_with_cert(sink.port, tmp.path(), &cert, "smtp.command_timeout = 2\n").await;

    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    assert_eq!(c.cmd("STARTTLS").await.code, 220);
    // Never start the handshake: the server must give up on its own, like for a command.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.try_read_reply()).await;
    assert!(
        matches!(closed, Ok(None)),
        "the server closed the connection: {closed:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(6),
        "closed after {waited:?}, expected about the 2 s command timeout"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let sink = Sink::start(SinkMode::Accept).await;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (TestCert::new(NAMES), TestCert::new(NAMES));
    let svc = start_with_cert(sink.port, tmp.path(), &a, "").await;

    let (_old_session, presented) = upgrade(svc.smtp_port, &[&a, &b]).await;
    assert_eq!(presented, a.der.as_ref(), "cert A before the reload");

    b.write(tmp.path());
    signal(&svc, "HUP");
    wait_for("the reload to be logged", T, || {
        svc.log()
            .contains("reloaded the TLS certificate")
            .then_some(())
    })
    .await;
    let (mut c, presented) = upgrade(svc.smtp_port, &[&a, &b]).await;
    assert_eq!(presented, b.der.as_ref(), "cert B after the reload");
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    assert_eq!(c.cmd("QUIT").await.code, 221);
}

#[tokio::test]
async fn sighup_right_after_start_does_not_kill_the_service() {
    // The harness treats the service as ready once its SMTP port answers, so SIGHUP must be
    // handled from then on (the default action of SIGHUP is to terminate).
    for _ in 0..3 {
        let sink = Sink::start(SinkMode::Accept).await;
        let tmp = tempfile::tempdir().unwrap();
        let cert = TestCert::new(NAMES);
        let (c, k) = cert.write(tmp.path());
        let mut svc = Service::start(sink.port, &tls_lines(&c, &k)).await;
        signal(&svc, "HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (c, presented) = upgrade(svc.smtp_port, &[&cert]).await;
        assert_eq!(presented, cert.der.as_ref());
        drop(c);
        assert_eq!(svc.terminate().await, Some(0), "log:\n{}", svc.log());
    }
}

#[tokio::test]
async fn sighup_with_a_broken_pem_keeps_the_old_certificate() {
    let sink = Sink::start(SinkMode::Accept).await;
    let tmp = tempfile::tempdir().unwrap();
    let a = TestCert::new(NAMES);
    let svc = start_with_cert(sink.port, tmp.path(), &a, "").await;

    // A broken certificate file (a truncated PEM), and then a certificate without its key.
    let truncated = &a.cert_pem[..a.cert_pem.len() / 2];
    std::fs::write(tmp.path().join("cert.pem"), truncated).unwrap();
    signal(&svc, "HUP");
    wait_for("the failed reload to be logged", T, || {
        svc.log().contains("TLS reload failed").then_some(())
    })
    .await;
    let (_c, presented) = upgrade(svc.smtp_port, &[&a]).await;
    assert_eq!(presented, a.der.as_ref(), "still cert A");

    let other = TestCert::new(NAMES);
    std::fs::write(tmp.path().join("cert.pem"), &other.cert_pem).unwrap();
    signal(&svc, "HUP");
    wait_for("the second failed reload to be logged", T, || {
        (svc.log().matches("TLS reload failed").count() >= 2).then_some(())
    })
    .await;
    let (mut c, presented) = upgrade(svc.smtp_port, &[&a, &other]).await;
    assert_eq!(
        presented,
        a.der.as_ref(),
        "a key that does not match: still A"
    );
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    drop(c);

    // A key file with no key in it.
    std::fs::write(tmp.path().join("cert.pem"), &a.cert_pem).unwrap();
    std::fs::write(tmp.path().join("key.pem"), "not a key\n").unwrap();
    signal(&svc, "HUP");
    wait_for("the third failed reload to be logged", T, || {
        (svc.log().matches("TLS reload failed").count() >= 3).then_some(())
    })
    .await;
    let (_c, presented) = upgrade(svc.smtp_port, &[&a]).await;
    assert_eq!(presented, a.der.as_ref(), "still A");

    let log = svc.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS reload failed"))
        .collect();
    assert_eq!(failures.len(), 3, "{log}");
    for line in &failures {
        assert!(line.contains("ERROR"), "logged as an error: {line}");
    }
    assert!(
        failures[0].contains("cert.pem"),
        "names the file: {}",
        failures[0]
    );
    assert!(
        failures[1].contains("cert.pem") && failures[1].contains("key.pem"),
        "names both files: {}",
        failures[1]
    );
    assert!(
        failures[2].contains("key.pem"),
        "names the file: {}",
        failures[2]
    );
    assert!(!log.contains("reloaded the TLS certificate"), "{log}");
}

#[tokio::test]
async fn a_missing_certificate_file_stops_serve_with_an_error_naming_it() {
    for missing in ["cert", "key"] {
        let tmp = tempfile::tempdir().unwrap();
        let (c, k) = TestCert::new(NAMES).write(tmp.path());
        let gone = if missing == "cert" { &c } else { &k };
        std::fs::remove_file(gone).unwrap();
        let svc = Service::prepare(harness::free_port(), &tls_lines(&c, &k));

        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
            .arg("--config")
            .arg(&svc.config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(T, child.wait_with_output())
            .await
            .expect("serve exits by itself")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{missing}: non-zero exit: {stderr}");
        assert!(
            stderr.contains(&gone.display().to_string()),
            "{missing}: the error names {}: {stderr}",
            gone.display()
        );
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", svc.smtp_port))
                .await
                .is_err(),
            "nothing listens"
        );
        assert!(
            !svc.dir.join("data").exists(),
            "{missing}: serve stopped before opening the data dir (keys, store, queue)"
        );
    }
}

#[tokio::test]
async fn a_certificate_file_without_a_certificate_stops_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, k) = TestCert::new(NAMES).write(tmp.path());
    std::fs::write(&c, "").unwrap();
    let svc = Service::prepare(harness::free_port(), &tls_lines(&c, &k));
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
            .arg("--config")
            .arg(&svc.config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve exits by itself")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&c.display().to_string()) && stderr.contains("no certificate"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Outbound

async fn setup_outbound(sink: &Sink, extra: &str) -> Service {
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    svc
}

async fn send(svc: &Service, from: &str, to: &str, subject: &str) {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(from, &[to], &message(from, to, subject, "Hello."))
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT").await;
}

#[tokio::test]
async fn delivery_uses_starttls_when_the_destination_offers_it() {
    let sink_cert = TestCert::new(&["sink.test"]);
    let sink = Sink::start_tls(SinkMode::Accept, &sink_cert).await;
    let svc = setup_outbound(&sink, "").await;
    send(&svc, JOE, "ann@remailer.test", "Encrypted hop").await;
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert!(d.tls, "delivered inside TLS");
    assert_eq!(d.rcpt_to, vec![ANN.to_string()]);
    assert_eq!(sink.starttls_count(), 1);
}

#[tokio::test]
async fn delivery_goes_in_the_clear_when_starttls_is_not_offered() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = setup_outbound(&sink, "").await;
    send(&svc, JOE, "ann@remailer.test", "Plain hop").await;
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert!(!d.tls);
    assert_eq!(sink.starttls_count(), 0);
}

#[tokio::test]
async fn a_failed_opportunistic_handshake_falls_back_to_the_clear() {
    let sink = Sink::start_with(0, SinkMode::Accept, SinkTls::Broken).await;
    let svc = setup_outbound(&sink, "").await;
    send(&svc, JOE, "ann@remailer.test", "Fallback").await;
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert!(!d.tls);
    assert_eq!(sink.starttls_count(), 1, "TLS was tried once");
    assert_eq!(sink.delivered().len(), 1);
    assert!(svc.log().contains("delivered"), "{}", svc.log());
}

#[tokio::test]
async fn require_tls_defers_until_the_destination_offers_tls() {
    let sink = Sink::start(SinkMode::Accept).await;
    let port = sink.port;
    // The relay is 127.0.0.1: its certificate must verify for that address, from a CA that
    // `delivery.tls_ca_file` trusts (tests/verified_tls.rs covers the certificate checks).
    let ca = TestCa::new();
    let ca_dir = tempfile::tempdir().unwrap();
    ca.write(&ca_dir.path().join("ca.pem"));
    let svc = setup_outbound(
        &sink,
        &format!(
            "delivery.require_tls = [\"mail.example\"]\ndelivery.retry_base = 1\ndelivery.retry_max = 2\n\
             delivery.tls_ca_file = \"{}\"\n",
            ca_dir.path().join("ca.pem").display()
        ),
    )
    .await;

    // A domain without the requirement goes in the clear (and leaves an idle connection to
    // the same relay in the pool)...
    send(&svc, ANN, "joe@remailer.test", "To Joe, clear is fine").await;
    let d = wait_for("delivery to joe", T, || sink.delivered().pop()).await;
    assert_eq!(d.rcpt_to, vec![JOE.to_string()]);
    assert!(!d.tls);

    // ...but mail for mail.example must not travel in the clear, not even over that
    // connection.
    send(&svc, JOE, "ann@remailer.test", "To Ann, TLS only").await;
    wait_for("two deferrals", T, || {
        let delivered = sink.delivered();
        assert_eq!(
            delivered.len(),
            1,
            "delivered in the clear despite require_tls: {:?}",
            delivered.last().map(|d| (&d.rcpt_to, d.tls))
        );
        (svc.log().matches("deferred").count() >= 2).then_some(())
    })
    .await;
    let log = svc.log();
    assert!(
        log.lines()
            .any(|l| l.contains("deferred") && l.contains("TLS is required")),
        "the log says why:\n{log}"
    );
    assert_eq!(queued(&svc).await, 1, "still queued");

    // A destination whose TLS is broken does not get it either.
    sink.stop().await;
    let broken = Sink::start_with(port, SinkMode::Accept, SinkTls::Broken).await;
    wait_for("a TLS attempt on the broken sink", T, || {
        (broken.starttls_count() >= 1).then_some(())
    })
    .await;
    let deferred = svc.log().matches("deferred").count();
    wait_for("one more deferral", T, || {
        (svc.log().matches("deferred").count() > deferred).then_some(())
    })
    .await;
    assert!(broken.delivered().is_empty(), "no fallback to the clear");

    // The same port now offers TLS: the message goes through, encrypted.
    broken.stop().await;
    let cert = ca.issue(&["127.0.0.1"]);
    let tls_sink = Sink::start_with(port, SinkMode::Accept, SinkTls::Offer(cert.acceptor())).await;
    let d = wait_for("delivery over TLS", T, || tls_sink.delivered().pop()).await;
    assert!(d.tls, "delivered inside TLS");
    assert_eq!(d.rcpt_to, vec![ANN.to_string()]);
    let start = Instant::now();
    while queued(&svc).await > 0 {
        assert!(start.elapsed() < T, "the queue did not empty");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many entries `remailer queue list` reports.
async fn queued(svc: &Service) -> usize {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .arg("--config")
        .arg(&svc.config_path)
        .args(["queue", "list"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(T, run)
        .await
        .expect("queue list in time")
        .expect("queue list runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "queue list: {text}");
    text.lines()
        .last()
        .and_then(|l| l.strip_suffix(" queued"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("queue list output: {text}"))
}
