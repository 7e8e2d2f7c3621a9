//! Verified outbound TLS for `delivery.require_tls` domains, against the real binary: MX
//! hosts from the test's DNS server, MX sinks with certificates from a test CA (trusted
//! through `delivery.tls_ca_file`). A wrong name, an expired certificate, a certificate from
//! an unknown CA and a downgrade to plain text (no STARTTLS) each leave the message queued,
//! deferred with the reason; a valid certificate for the MX name delivers. A domain without
//! the requirement is delivered over the same bad TLS (opportunistic encryption).

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harness::tls::TestCa;
use harness::{message, wait_for, Client, Service, Sink, SinkMode, SinkTls, TestCert};
use support::dns_server::TestDns;

const JOE: &str = "joe@real.example";
const T: Duration = Duration::from_secs(20);
const MX: &str = "mx.secure.example";

struct World {
    svc: Service,
    _dns: TestDns,
    _dir: tempfile::TempDir,
    ca: TestCa,
    port: u16,
}

/// `secure.example` requires TLS, `open.example` does not; both have their MX on `port`.
async fn world(sink: &Sink) -> World {
    let dns = TestDns::start().await;
    for (domain, mx) in [("secure.example", MX), ("open.example", "mx.open.example")] {
        dns.add_mx(domain, 10, mx);
        dns.add_a(mx, Ipv4Addr::new(127, 0, 0, 1));
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let extra = format!(
        "dns.nameservers = [\"{}\"]\ndelivery.mx_port = {}\ndelivery.relay = \"\"\n\
         delivery.require_tls = [\"secure.example\"]\ndelivery.tls_ca_file = \"{}\"\n\
         delivery.retry_base = 1\ndelivery.retry_max = 1\n",
        dns.addr(),
        sink.port,
        ca_file.display()
    );
    let svc = Service::start(0, &extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("sam", "sam@secure.example");
    svc.add_alias("ola", "ola@open.example");
    World {
        svc,
        _dns: dns,
        _dir: dir,
        ca,
        port: sink.port,
    }
}

async fn send(svc: &Service, to: &str, subject: &str) {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(JOE, &[to], &message(JOE, to, subject, "Hello."))
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT").await;
}

/// Waits until a new deferral line gives `reason`; nothing reaches `sink` meanwhile.
async fn deferred_for(w: &World, sink: &Sink, reason: &str) {
    let before = w.svc.log().matches(reason).count();
    wait_for(reason, T, || {
        assert!(
            sink.delivered()
                .iter()
                .all(|d| d.rcpt_to != ["sam@secure.example"]),
            "delivered to the require_tls domain despite: {reason}"
        );
        let log = w.svc.log();
        let n = log
            .lines()
            .filter(|l| l.contains("deferred") && l.contains(reason))
            .count();
        (n > before).then_some(())
    })
    .await;
}

async fn sink_with(port: u16, cert: &TestCert) -> Sink {
    Sink::start_with(port, SinkMode::Accept, SinkTls::Offer(cert.acceptor())).await
}

#[tokio::test]
async fn require_tls_delivers_only_over_a_certificate_that_verifies_for_the_mx() {
    let first = Sink::start(SinkMode::Accept).await;
    let w = world(&first).await;
    first.stop().await;

    // A certificate from the trusted CA, but for another name.
    let sink = sink_with(w.port, &w.ca.issue(&["mx.other.example"])).await;
    send(&w.svc, "sam@remailer.test", "To Sam").await;
    deferred_for(&w, &sink, "the certificate does not match the MX host name").await;
    // Opportunistic TLS for a domain without the requirement: delivered over the same TLS.
    send(&w.svc, "ola@remailer.test", "To Ola").await;
    let d = wait_for("delivery to open.example", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.rcpt_to == ["ola@open.example"])
    })
    .await;
    assert!(d.tls, "encrypted, though not verified");
    sink.stop().await;

    let sink = sink_with(w.port, &w.ca.issue_expired(&[MX])).await;
    deferred_for(&w, &sink, "the certificate has expired").await;
    sink.stop().await;

    let sink = sink_with(w.port, &TestCert::new(&[MX])).await;
    deferred_for(&w, &sink, "the certificate is not from a trusted authority").await;
    sink.stop().await;

    // A downgrade: the MX (or someone in between) no longer offers STARTTLS.
    let sink = Sink::start_on(w.port, SinkMode::Accept).await;
    deferred_for(&w, &sink, "the server does not offer STARTTLS").await;
    sink.stop().await;

    let log = w.svc.log();
    assert!(
        !log.contains("secure.example") && !log.contains("mx.other.example"),
        "no real domain in the log:\n{log}"
    );

    // A valid certificate for the MX name: delivered, over TLS.
    let sink = sink_with(w.port, &w.ca.issue(&[MX])).await;
    let d = wait_for("delivery over verified TLS", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.rcpt_to == ["sam@secure.example"])
    })
    .await;
    assert!(d.tls);
}

#[test]
fn check_config_checks_the_tls_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let check = |file: &std::path::Path| {
        let extra = format!("delivery.tls_ca_file = \"{}\"", file.display());
        let svc = Service::prepare(harness::free_port(), &extra);
        let (code, out, _) = svc.cli(&["check-config"]);
        (code, out)
    };
    let ca = dir.path().join("ca.pem");
    TestCa::new().write(&ca);
    let (code, out) = check(&ca);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("trust roots: ok (1 from delivery.tls_ca_file)"),
        "{out}"
    );

    let missing = dir.path().join("missing.pem");
    let (code, out) = check(&missing);
    assert_eq!(code, 4, "{out}");
    let line = format!(
        "trust roots: FAILED: delivery.tls_ca_file {}: No such file",
        missing.display()
    );
    assert!(out.contains(&line), "{out}");

    let key_only = dir.path().join("key.pem");
    std::fs::write(&key_only, TestCert::new(&["x.test"]).key_pem).unwrap();
    let (code, out) = check(&key_only);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("no PEM certificate in it"), "{out}");

    let cut = dir.path().join("cut.pem");
    let pem = TestCa::new().cert_pem;
    std::fs::write(&cut, &pem[..pem.len() / 2]).unwrap();
    let (code, out) = check(&cut);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("not valid PEM"), "{out}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (code, out) = check(&garbage);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("trust roots: FAILED"), "{out}");
}
