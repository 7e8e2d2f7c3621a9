//! Delivery by MX lookup (no relay): the recipient's domain is looked up in a real DNS server
//! (the test's, via `dns.nameservers`), and the message goes to its mail server.

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harness::{message, wait_for, Client, Service, Sink, SinkMode};
use support::dns_server::TestDns;

const JOE: &str = "joe@real.example";

async fn setup(dns: &TestDns, sink: &Sink) -> Service {
    // The harness always sets a relay; an empty relay key is not valid TOML, so the MX setup
    // writes its own config through `extra` and removes the relay with `delivery.relay`.
    let extra = format!(
        "dns.nameservers = [\"{}\"]\ndelivery.mx_port = {}\ndelivery.relay = \"\"",
        dns.addr(),
        sink.port
    );
    let svc = Service::start(0, &extra).await;
    svc.add_alias("joe", JOE);
    svc
}

#[tokio::test]
async fn mail_goes_to_the_recipient_domains_mx() {
    let dns = TestDns::start().await;
    dns.add_mx("mail.example", 10, "mx1.mail.example");
    dns.add_a("mx1.mail.example", Ipv4Addr::new(127, 0, 0, 1));
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = setup(&dns, &sink).await;
    svc.add_alias("ann", "ann@mail.example");
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "via MX", "x"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("delivery via MX", Duration::from_secs(15), || {
        sink.delivered().pop()
    })
    .await;
    assert_eq!(d.rcpt_to, vec!["ann@mail.example".to_string()]);
}

#[tokio::test]
async fn a_domain_without_mx_uses_its_address_and_a_null_mx_fails_at_once() {
    let dns = TestDns::start().await;
    dns.add_a("plain.example", Ipv4Addr::new(127, 0, 0, 1));
    dns.add_mx("nomail.example", 0, ".");
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = setup(&dns, &sink).await;
    svc.add_alias("pia", "pia@plain.example");
    svc.add_alias("nell", "nell@nomail.example");
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["pia@remailer.test"],
            &message(JOE, "pia@remailer.test", "implicit MX", "x"),
        )
        .await;
    assert_eq!(r.code, 250);
    wait_for(
        "delivery to the implicit MX",
        Duration::from_secs(15),
        || {
            sink.delivered()
                .into_iter()
                .find(|d| d.rcpt_to == ["pia@plain.example"])
        },
    )
    .await;

    // Joe's notice about the null MX goes to real.example, which has no mail server either:
    // give it one so the notice can be observed.
    dns.add_mx("real.example", 10, "mx1.mail.example");
    dns.add_a("mx1.mail.example", Ipv4Addr::new(127, 0, 0, 1));
    let r = c
        .send_mail(
            JOE,
            &["nell@remailer.test"],
            &message(JOE, "nell@remailer.test", "null MX", "x"),
        )
        .await;
    assert_eq!(r.code, 250);
    let notice = wait_for("the notice", Duration::from_secs(15), || {
        sink.delivered().into_iter().find(|d| d.rcpt_to == [JOE])
    })
    .await;
    assert!(
        notice.body_text().contains("nell@remailer.test"),
        "{}",
        notice.body_text()
    );
    assert!(!notice.text().contains("nomail.example"));
}
