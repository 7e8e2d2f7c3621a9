//! Only the real sender can speak as an alias: the real service, a real local DNS server with
//! the sending domains' SPF/DKIM/DMARC records, messages signed by those domains' keys, and
//! SMTP clients connecting from authorised (127.0.0.2) or unauthorised (127.0.0.66) addresses.

mod harness;
mod support;

use std::time::Duration;

use harness::{wait_for, Client, Service, Sink, SinkMode};
use support::dns_server::TestDns;
use support::signing::{publish, signed, Key, BAD_IP, GOOD_IP};

struct World {
    dns: TestDns,
    svc: Service,
    sink: Sink,
    good: Key,
    evil: Key,
}

/// joe@good.test (p=reject), pat@lax.test (p=none), quin@quar.test (p=quarantine) and
/// nora@nodmarc.test (no DMARC record) are members; evil.test signs validly for itself.
async fn world(mode: &str) -> World {
    let dns = TestDns::start().await;
    let good = publish(&dns, "good.test", "-", Some("v=DMARC1; p=reject"));
    publish(&dns, "lax.test", "-", Some("v=DMARC1; p=none"));
    publish(&dns, "quar.test", "-", Some("v=DMARC1; p=quarantine"));
    publish(&dns, "nodmarc.test", "-", None);
    let evil = publish(&dns, "evil.test", "-", Some("v=DMARC1; p=reject"));
    let sink = Sink::start(SinkMode::Accept).await;
    let extra = format!(
        "policy.sender_auth = \"{mode}\"\ndns.nameservers = [\"{}\"]",
        dns.addr()
    );
    let svc = Service::start(sink.port, &extra).await;
    for (name, real) in [
        ("joe", "joe@good.test"),
        ("pat", "pat@lax.test"),
        ("quin", "quin@quar.test"),
        ("nora", "nora@nodmarc.test"),
        ("ann", "ann@mail.example"),
    ] {
        svc.add_alias(name, real);
    }
    World {
        dns,
        svc,
        sink,
        good,
        evil,
    }
}

fn message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: ann@remailer.test\r\nSubject: auth test\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{}@client.test>\r\n\r\n{body}\r\n",
        harness::rand_id()
    )
    .into_bytes()
}

async fn send_from(w: &World, source: &str, from: &str, data: &[u8]) -> harness::client::Reply {
    let mut c = Client::connect_from(w.svc.smtp_port, source).await;
    let r = c
        .send_mail(
            from,
            &["ann@remailer.test"],
            std::str::from_utf8(data).unwrap(),
        )
        .await;
    c.cmd("QUIT").await;
    r
}

fn assert_refused(r: &harness::client::Reply, what: &str, address: &str) {
    assert_eq!(r.code, 550, "{what}: {r:?}");
    assert!(
        r.text.starts_with("5.7.1 Sender authentication failed"),
        "{what}: {r:?}"
    );
    assert!(
        !r.text.contains(address),
        "{what}: the reply names the address: {r:?}"
    );
}

#[tokio::test]
async fn dmarc_policy_accepts_only_authenticated_mail() {
    let w = world("dmarc").await;
    // pass: DKIM-signed by good.test, from its authorised IP
    let r = send_from(
        &w,
        GOOD_IP,
        "joe@good.test",
        &signed(&w.good, "good.test", &message("joe@good.test", "signed")),
    )
    .await;
    assert_eq!(r.code, 250, "aligned DKIM and SPF: {r:?}\n{}", w.svc.log());
    // pass: aligned DKIM alone rescues a connection from an unauthorised IP
    let r = send_from(
        &w,
        BAD_IP,
        "joe@good.test",
        &signed(&w.good, "good.test", &message("joe@good.test", "dkim only")),
    )
    .await;
    assert_eq!(r.code, 250, "aligned DKIM: {r:?}");
    // pass: aligned SPF alone
    let r = send_from(
        &w,
        GOOD_IP,
        "joe@good.test",
        &message("joe@good.test", "spf only"),
    )
    .await;
    assert_eq!(r.code, 250, "aligned SPF: {r:?}");
    wait_for("three deliveries", Duration::from_secs(10), || {
        (w.sink.delivered().len() == 3).then_some(())
    })
    .await;

    // SPF fail and no signature
    let r = send_from(
        &w,
        BAD_IP,
        "joe@good.test",
        &message("joe@good.test", "forged"),
    )
    .await;
    assert_refused(&r, "SPF fail", "joe@good.test");
    assert!(r.text.contains("good.test"), "names the domain: {r:?}");
    // DKIM fail: the body was changed after signing
    let mut tampered = signed(&w.good, "good.test", &message("joe@good.test", "original"));
    let n = tampered.len();
    tampered[n - 5] = b'X';
    let r = send_from(&w, BAD_IP, "joe@good.test", &tampered).await;
    assert_refused(&r, "DKIM fail", "joe@good.test");
    // forged From with a valid DKIM signature of another domain
    let r = send_from(
        &w,
        BAD_IP,
        "joe@good.test",
        &signed(&w.evil, "evil.test", &message("joe@good.test", "evil")),
    )
    .await;
    assert_refused(&r, "foreign signature", "joe@good.test");
    // p=none and p=quarantine still require a pass: we must know the mail is theirs
    let r = send_from(
        &w,
        BAD_IP,
        "pat@lax.test",
        &message("pat@lax.test", "forged"),
    )
    .await;
    assert_refused(&r, "p=none", "pat@lax.test");
    let r = send_from(
        &w,
        BAD_IP,
        "quin@quar.test",
        &message("quin@quar.test", "forged"),
    )
    .await;
    assert_refused(&r, "p=quarantine", "quin@quar.test");
    // no DMARC record at all: refused under "dmarc", with the reason
    let r = send_from(
        &w,
        GOOD_IP,
        "nora@nodmarc.test",
        &message("nora@nodmarc.test", "no dmarc"),
    )
    .await;
    assert_refused(&r, "no DMARC record", "nora@nodmarc.test");
    assert!(r.text.contains("no DMARC record"), "{r:?}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.sink.delivered().len(), 3, "nothing refused was delivered");
    assert!(!w.svc.log().contains("@good.test"), "no address in the log");
}

#[tokio::test]
async fn spf_or_dkim_policy() {
    let w = world("spf-or-dkim").await;
    let r = send_from(
        &w,
        GOOD_IP,
        "nora@nodmarc.test",
        &message("nora@nodmarc.test", "spf"),
    )
    .await;
    assert_eq!(r.code, 250, "SPF pass suffices without DMARC: {r:?}");
    let r = send_from(
        &w,
        BAD_IP,
        "joe@good.test",
        &signed(&w.good, "good.test", &message("joe@good.test", "dkim")),
    )
    .await;
    assert_eq!(r.code, 250, "aligned DKIM suffices: {r:?}");
    let r = send_from(
        &w,
        BAD_IP,
        "joe@good.test",
        &signed(&w.evil, "evil.test", &message("joe@good.test", "evil")),
    )
    .await;
    assert_refused(&r, "unaligned DKIM, SPF fail", "joe@good.test");
}

#[tokio::test]
async fn a_dns_failure_is_a_temporary_refusal() {
    let w = world("dmarc").await;
    w.dns.add_servfail("_dmarc.good.test");
    w.dns.add_servfail("good.test");
    let r = send_from(
        &w,
        GOOD_IP,
        "joe@good.test",
        &message("joe@good.test", "servfail"),
    )
    .await;
    assert_eq!(
        r.code / 100,
        4,
        "a DNS outage must not refuse real mail for good: {r:?}"
    );
}
