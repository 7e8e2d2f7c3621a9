//! MTA-STS (RFC 8461) against the real binary: `_mta-sts` TXT records and MX hosts from the
//! test's DNS server, policies from a local HTTPS server (support/policy_server.rs,
//! `delivery.mta_sts_port`), MX sinks and the policy server with certificates from a test CA
//! (trusted through `delivery.tls_ca_file`); every MX host is 127.0.0.1 on one port, and
//! the test swaps the sink on it.
//!
//! For an `enforce` domain a wrong name, an expired certificate, a downgrade to plain text
//! and an MX the policy does not list each leave the message queued (deferred, with the
//! reason); for a `testing` domain and a domain without a policy the same cases are
//! delivered (the `testing` domain with a log line saying what failed); a valid setup
//! delivers over TLS; when the policy server goes away (and the TXT id changes), the
//! cached policy stays in force, also across a restart of the service (the policy is kept in
//! the store, never with the domain in clear, and only until its `max_age`).

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harness::tls::TestCa;
use harness::{message, wait_for, Client, Delivered, Service, Sink, SinkMode, SinkTls, TestCert};
use support::dns_server::TestDns;
use support::policy_server::PolicyServer;

const JOE: &str = "joe@real.example";
const T: Duration = Duration::from_secs(20);

/// The domains, each with its MX host; `stray.example`'s MX is not the one its policy lists.
const ENFORCE: (&str, &str) = ("enforce.example", "mx.enforce.example");
const STRAY: (&str, &str) = ("stray.example", "mail.elsewhere.example");
const TESTING: (&str, &str) = ("testing.example", "mx.testing.example");
const TESTING_STRAY: (&str, &str) = ("testing-stray.example", "mail.elsewhere.example");
const PLAIN: (&str, &str) = ("plain.example", "mx.plain.example");
const ALL: [(&str, &str); 5] = [ENFORCE, STRAY, TESTING, TESTING_STRAY, PLAIN];

const TESTING_LOG: &str = "MTA-STS policy (testing) not met; delivering anyway";

fn policy(mode: &str, mx: &str) -> String {
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

struct World {
    svc: Service,
    dns: TestDns,
    policies: PolicyServer,
    ca: TestCa,
    port: u16,
    _dir: tempfile::TempDir,
}

async fn world(sink: &Sink) -> World {
    let dns = TestDns::start().await;
    let ca = TestCa::new();
    let hosts: Vec<String> = ALL.iter().map(|(d, _)| format!("mta-sts.{d}")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let policies = PolicyServer::start(ca.issue(&names).acceptor()).await;
    for (domain, mx) in ALL {
        dns.add_mx(domain, 10, mx);
        dns.add_a(mx, Ipv4Addr::LOCALHOST);
    }
    for (domain, mode, listed) in [
        (ENFORCE.0, "enforce", "mx.enforce.example"),
        (STRAY.0, "enforce", "*.stray.example"),
        (TESTING.0, "testing", "*.testing.example"),
        (TESTING_STRAY.0, "testing", "mx.testing-stray.example"),
    ] {
        dns.add_txt(&format!("_mta-sts.{domain}"), "v=STSv1; id=20260101;");
        dns.add_a(&format!("mta-sts.{domain}"), Ipv4Addr::LOCALHOST);
        policies.set(domain, &policy(mode, listed));
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let extra = format!(
        "dns.nameservers = [\"{}\"]\ndelivery.mx_port = {}\ndelivery.relay = \"\"\n\
         delivery.tls_ca_file = \"{}\"\ndelivery.mta_sts_port = {}\n\
         delivery.retry_base = 1\ndelivery.retry_max = 1\n",
        dns.addr(),
        sink.port,
        ca_file.display(),
        policies.port
    );
    let svc = Service::start(0, &extra).await;
    svc.add_alias("joe", JOE);
    for (i, (domain, _)) in ALL.iter().enumerate() {
        svc.add_alias(&format!("m{i}"), &format!("m{i}@{domain}"));
    }
    World {
        svc,
        dns,
        policies,
        ca,
        port: sink.port,
        _dir: dir,
    }
}

/// The alias of the member at `domain`, and the member's real address.
fn member(domain: &str) -> (String, String) {
    let i = ALL.iter().position(|(d, _)| *d == domain).unwrap();
    (format!("m{i}@remailer.test"), format!("m{i}@{domain}"))
}

async fn send(svc: &Service, domain: &str, subject: &str) {
    let (alias, _) = member(domain);
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(JOE, &[&alias], &message(JOE, &alias, subject, "Hello."))
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT").await;
}

fn delivered_to(sink: &Sink, domain: &str) -> Vec<Delivered> {
    let (_, real) = member(domain);
    sink.delivered()
        .into_iter()
        .filter(|d| d.rcpt_to == [real.clone()])
        .collect()
}

/// Waits until a new deferral line gives `reason`; nothing reaches `sink` for `domain`.
async fn deferred_for(w: &World, sink: &Sink, domain: &str, reason: &str) {
    let count = || {
        w.svc
            .log()
            .lines()
            .filter(|l| l.contains("deferred") && l.contains(reason))
            .count()
    };
    let before = count();
    wait_for(reason, T, || {
        assert!(
            delivered_to(sink, domain).is_empty(),
            "delivered to {domain} despite: {reason}"
        );
        (count() > before).then_some(())
    })
    .await;
}

/// Sends to `domain` and waits for the delivery to `sink`, over TLS or not.
async fn delivered(w: &World, sink: &Sink, domain: &str, subject: &str, tls: bool) {
    send(&w.svc, domain, subject).await;
    let d = wait_for(subject, T, || {
        delivered_to(sink, domain)
            .into_iter()
            .find(|d| d.text().contains(subject))
    })
    .await;
    assert_eq!(d.tls, tls, "{subject}: over TLS");
    let log = w.svc.log();
    let line = log.lines().filter(|l| l.contains("delivered")).count();
    assert!(line > 0, "a log line says it was delivered:\n{log}");
}

/// Sends to the `testing` domain, expects it delivered and a new log line giving `reason`.
async fn delivered_despite_testing(w: &World, sink: &Sink, subject: &str, reason: &str, tls: bool) {
    let count = || {
        w.svc
            .log()
            .lines()
            .filter(|l| l.contains(TESTING_LOG) && l.contains(reason))
            .count()
    };
    let before = count();
    delivered(w, sink, TESTING.0, subject, tls).await;
    wait_for("the testing-mode log line", T, || {
        (count() > before).then_some(())
    })
    .await;
}

async fn sink_with(port: u16, cert: &TestCert) -> Sink {
    Sink::start_with(port, SinkMode::Accept, SinkTls::Offer(cert.acceptor())).await
}

fn all_mx() -> Vec<&'static str> {
    ALL.iter().map(|(_, mx)| *mx).collect()
}

#[tokio::test]
async fn an_enforced_policy_refuses_what_testing_and_no_policy_let_through() {
    let first = Sink::start(SinkMode::Accept).await;
    let w = world(&first).await;
    first.stop().await;

    // A certificate from the trusted CA, but for another name.
    let sink = sink_with(w.port, &w.ca.issue(&["mx.other.example"])).await;
    send(&w.svc, ENFORCE.0, "To enforce").await;
    deferred_for(
        &w,
        &sink,
        ENFORCE.0,
        "MTA-STS policy (enforce): TLS is required but the certificate does not match the MX host name",
    )
    .await;
    let name = "the certificate does not match the MX host name";
    delivered_despite_testing(&w, &sink, "testing, wrong name", name, true).await;
    delivered(&w, &sink, PLAIN.0, "plain, wrong name", true).await;
    sink.stop().await;

    let sink = sink_with(w.port, &w.ca.issue_expired(&all_mx())).await;
    deferred_for(&w, &sink, ENFORCE.0, "the certificate has expired").await;
    let expired = "the certificate has expired";
    delivered_despite_testing(&w, &sink, "testing, expired", expired, true).await;
    delivered(&w, &sink, PLAIN.0, "plain, expired", true).await;
    sink.stop().await;

    // A downgrade: the MX (or someone in between) no longer offers STARTTLS.
    let sink = Sink::start_on(w.port, SinkMode::Accept).await;
    let plain_text = "the server does not offer STARTTLS";
    deferred_for(&w, &sink, ENFORCE.0, plain_text).await;
    delivered_despite_testing(&w, &sink, "testing, plain text", plain_text, false).await;
    delivered(&w, &sink, PLAIN.0, "plain, plain text", false).await;
    sink.stop().await;

    // A valid certificate for every MX name: the enforcing domain's message leaves over
    // verified TLS; an MX its policy does not list is refused even so.
    let sink = sink_with(w.port, &w.ca.issue(&all_mx())).await;
    let d = wait_for("delivery over verified TLS", T, || {
        delivered_to(&sink, ENFORCE.0).pop()
    })
    .await;
    assert!(d.tls && d.text().contains("To enforce"));
    send(&w.svc, STRAY.0, "To stray").await;
    deferred_for(
        &w,
        &sink,
        STRAY.0,
        "MTA-STS policy (enforce): the MX host is not listed in the policy",
    )
    .await;
    let count = |w: &World| {
        let log = w.svc.log();
        log.lines()
            .filter(|l| l.contains(TESTING_LOG) && l.contains("not listed in the policy"))
            .count()
    };
    let before = count(&w);
    delivered(&w, &sink, TESTING_STRAY.0, "testing, stray MX", true).await;
    assert!(
        count(&w) > before,
        "the unlisted MX is logged under testing"
    );

    // Each policy was fetched once and then served from the cache.
    for (domain, _) in [ENFORCE, STRAY, TESTING, TESTING_STRAY] {
        assert_eq!(w.policies.fetches(domain), 1, "{domain}");
    }
    assert_eq!(w.policies.fetches(PLAIN.0), 0, "no TXT record, no fetch");

    let log = w.svc.log();
    for (domain, mx) in ALL {
        assert!(
            !log.contains(domain) && !log.contains(mx),
            "no real domain in the log:\n{log}"
        );
    }
    sink.stop().await;
}

/// Replaces the `_mta-sts` record of the enforcing domain by one with another `id`.
fn new_txt_id(w: &World, id: &str) {
    let txt = format!("_mta-sts.{}", ENFORCE.0);
    w.dns.remove(&txt);
    w.dns.add_txt(&txt, &format!("v=STSv1; id={id};"));
}

/// With the policy server gone and a new TXT id, a message to the enforcing domain (whose
/// MX on `sink` shows a certificate for another name) is refused under the cached policy,
/// and the failed fetch is logged.
async fn refused_under_the_cached_policy(w: &World, sink: &Sink, subject: &str) {
    send(&w.svc, ENFORCE.0, subject).await;
    deferred_for(
        w,
        sink,
        ENFORCE.0,
        "MTA-STS policy (enforce): TLS is required but the certificate does not match the MX host name",
    )
    .await;
    let log = w.svc.log();
    assert!(
        log.lines()
            .any(|l| l.contains("could not fetch the MTA-STS policy")
                && l.contains("the cached policy stays in force")),
        "the failed fetch is logged:\n{log}"
    );
}

/// Once the enforcing domain's MX shows a valid certificate, the message `subject` leaves.
async fn delivered_once_the_mx_is_valid(w: &World, subject: &str) {
    let sink = sink_with(w.port, &w.ca.issue(&[ENFORCE.1])).await;
    wait_for("delivery once the MX is valid again", T, || {
        delivered_to(&sink, ENFORCE.0)
            .into_iter()
            .find(|d| d.text().contains(subject))
    })
    .await;
    sink.stop().await;
}

#[tokio::test]
async fn the_cached_policy_stays_in_force_when_the_policy_server_goes_away() {
    let first = Sink::start(SinkMode::Accept).await;
    let w = world(&first).await;
    first.stop().await;
    let sink = sink_with(w.port, &w.ca.issue(&[ENFORCE.1])).await;
    delivered(&w, &sink, ENFORCE.0, "first, fetches the policy", true).await;
    assert_eq!(w.policies.fetches(ENFORCE.0), 1);
    sink.stop().await;

    // The policy server goes away and the TXT id changes (so the policy is fetched again,
    // and the fetch fails); the MX presents a certificate for another name.
    w.policies.stop();
    new_txt_id(&w, "20260202");
    tokio::time::sleep(Duration::from_millis(1500)).await; // the TXT record's TTL
    let sink = sink_with(w.port, &w.ca.issue(&["mx.other.example"])).await;
    refused_under_the_cached_policy(&w, &sink, "second, with the cached policy").await;
    sink.stop().await;
    delivered_once_the_mx_is_valid(&w, "second, with the cached policy").await;
}

/// The bytes of the SQLite store (the database and its write-ahead log).
fn store_bytes(svc: &Service) -> Vec<u8> {
    let db = svc.dir.join("data").join("remailer.db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
    bytes
}

#[tokio::test]
async fn a_stored_policy_stays_in_force_after_a_restart_without_the_policy_server() {
    let first = Sink::start(SinkMode::Accept).await;
    let mut w = world(&first).await;
    first.stop().await;
    // The stray domain's policy lives 3 seconds: after that the store no longer gives it.
    let brief = "version: STSv1\r\nmode: enforce\r\nmx: *.stray.example\r\nmax_age: 3\r\n";
    w.policies.set(STRAY.0, brief);
    let sink = sink_with(w.port, &w.ca.issue(&[ENFORCE.1])).await;
    delivered(&w, &sink, ENFORCE.0, "before the restart", true).await;
    send(&w.svc, STRAY.0, "To stray").await;
    let unlisted = "MTA-STS policy (enforce): the MX host is not listed in the policy";
    deferred_for(&w, &sink, STRAY.0, unlisted).await;
    assert_eq!(w.policies.fetches(ENFORCE.0), 1);

    // Stopped; the policy server goes away and the TXT id changes (so the restarted service
    // tries to fetch the policy again, and fails); the MX shows a certificate for another name.
    assert_eq!(w.svc.terminate().await, Some(0));
    w.policies.stop();
    new_txt_id(&w, "20260303");
    let stored = store_bytes(&w.svc);
    for (domain, mx) in ALL {
        let clear = |s: &str| stored.windows(s.len()).any(|b| b == s.as_bytes());
        assert!(
            !clear(domain) && !clear(mx),
            "{domain} in clear in the store"
        );
    }
    sink.stop().await;
    let sink = sink_with(w.port, &w.ca.issue(&["mx.other.example"])).await;
    w.svc.spawn().await;
    refused_under_the_cached_policy(&w, &sink, "after the restart").await;
    // The stray domain's policy expired (by max_age) and cannot be fetched: no policy, so
    // its message leaves as for any domain.
    let d = wait_for(
        "the stray domain's message once its policy expired",
        T,
        || delivered_to(&sink, STRAY.0).pop(),
    )
    .await;
    assert!(d.text().contains("To stray"));
    assert!(delivered_to(&sink, ENFORCE.0).is_empty());
    sink.stop().await;
    delivered_once_the_mx_is_valid(&w, "after the restart").await;
    let log = w.svc.log();
    for (domain, mx) in ALL {
        assert!(!log.contains(domain) && !log.contains(mx), "{log}");
    }
}

/// The policy `remailer dns` prints (as `;   ` comment lines) and its `_mta-sts` record.
fn printed_policy(svc: &Service) -> (String, String) {
    let (code, out, err) = svc.cli(&["dns", "--create-keys"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("https://mta-sts.remailer.test/.well-known/mta-sts.txt"),
        "{out}"
    );
    let record = out
        .lines()
        .find(|l| l.starts_with("_mta-sts.remailer.test. 3600 IN TXT "))
        .unwrap_or_else(|| panic!("an _mta-sts record: {out}"));
    let policy: String = out
        .lines()
        .filter_map(|l| l.strip_prefix(";   "))
        .map(|l| format!("{l}\n"))
        .collect();
    (record.to_string(), policy)
}

#[test]
fn remailer_dns_prints_the_mta_sts_record_and_policy_to_publish() {
    use remailer::delivery::mta_sts::{txt_id, Mode, Policy};
    let svc = Service::prepare(harness::free_port(), "");
    let (record, text) = printed_policy(&svc);
    let txt = support::dns_server::unquote(record.split_once(" TXT ").unwrap().1).concat();
    assert!(txt_id(&[txt]).is_some(), "a valid record: {record}");
    let policy = Policy::parse(&text).unwrap();
    assert!(policy.matches("mx.remailer.test"), "{text}");
    assert_eq!(
        policy.mode,
        Mode::Testing,
        "no STARTTLS without smtp.tls_cert"
    );

    let cert = TestCert::new(&["mx.remailer.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = cert.write(dir.path());
    let extra = format!(
        "smtp.tls_cert = \"{}\"\nsmtp.tls_key = \"{}\"",
        cert_file.display(),
        key_file.display()
    );
    let with_tls = Service::prepare(harness::free_port(), &extra);
    let (record2, text2) = printed_policy(&with_tls);
    assert_eq!(
        Policy::parse(&text2).unwrap().mode,
        Mode::Enforce,
        "{text2}"
    );
    assert_ne!(record, record2, "a changed policy gets a new id");
}
