//! The `[limits]` rate limits through the real binary over real SMTP: each triggers exactly
//! at its threshold (small limits, windows of a few seconds), answers with its code and a
//! text that says what happened and when to try again, counts in
//! `remailer_messages_refused_total{reason="rate_limit"}`, and releases after its window.
//! The global outbound rate delays deliveries and loses none.

mod harness;

use std::time::{Duration, Instant};

use harness::{message, wait_for, Client, Service, Sink, SinkMode, WebClient};

const JOE: &str = "joe@real.example";
const KIM: &str = "kim@other.example";
const ANN: &str = "ann@mail.example";
const BOB: &str = "bob@mail.example";
/// Not 127.0.0.1: the harness's own readiness probe connects from there.
const CLIENT: &str = "127.0.0.3";

async fn setup(limits: &str) -> (Service, Sink) {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, limits).await;
    for (name, real) in [("joe", JOE), ("kim", KIM), ("ann", ANN), ("bob", BOB)] {
        svc.add_alias(name, real);
    }
    (svc, sink)
}

async fn send(svc: &Service, from: &str, to: &str) -> harness::client::Reply {
    let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
    let r = c
        .send_mail(from, &[to], &message(from, to, "limits", "hi"))
        .await;
    c.cmd("QUIT").await;
    r
}

async fn rate_limit_refusals(svc: &Service) -> f64 {
    let body = WebClient::new(svc.admin_port).get("/metrics").await.body;
    body.lines()
        .find_map(|l| l.strip_prefix("remailer_messages_refused_total{reason=\"rate_limit\"} "))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// A 450 4.7.1 whose text names `what` and a wait of 1..=`max_wait` seconds.
fn assert_limited(r: &harness::client::Reply, code: u16, what: &str, max_wait: u64) {
    assert_eq!(r.code, code, "{r:?}");
    assert!(r.text.starts_with("4.7.1 Rate limit: "), "{r:?}");
    assert!(r.text.contains(what), "{what} in {r:?}");
    let secs: u64 = r
        .text
        .split("try again in ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a wait in {r:?}"));
    assert!((1..=max_wait).contains(&secs), "{secs} s in {r:?}");
}

#[tokio::test]
async fn messages_per_member_per_hour() {
    let (svc, _sink) = setup("limits.member_per_hour = 3\nlimits.hour = 3").await;
    for _ in 0..3 {
        assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    }
    let before = rate_limit_refusals(&svc).await;
    let r = send(&svc, JOE, "bob@remailer.test").await;
    assert_limited(
        &r,
        450,
        "you have sent the most messages allowed (3 per hour)",
        3,
    );
    assert_eq!(rate_limit_refusals(&svc).await - before, 1.0);
    assert_eq!(
        send(&svc, KIM, "ann@remailer.test").await.code,
        250,
        "another member is not affected"
    );
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    for _ in 0..3 {
        let r = send(&svc, JOE, "ann@remailer.test").await;
        assert_eq!(r.code, 250, "released after the window: {r:?}");
    }
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 450);
}

#[tokio::test]
async fn messages_per_member_per_day_counted_once_per_message() {
    let (svc, sink) = setup("limits.member_per_day = 2\nlimits.day = 3").await;
    // One message to two aliases counts once.
    let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test", "bob@remailer.test"],
            &message(JOE, "ann@remailer.test", "two", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    c.cmd("QUIT").await;
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    let r = send(&svc, JOE, "ann@remailer.test").await;
    assert_limited(&r, 450, "(2 per day)", 3);
    wait_for("three deliveries", Duration::from_secs(15), || {
        (sink.delivered().len() == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
}

#[tokio::test]
async fn messages_to_one_alias_per_hour() {
    let (svc, _sink) = setup("limits.alias_per_hour = 2\nlimits.hour = 2").await;
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    assert_eq!(send(&svc, KIM, "ann@remailer.test").await.code, 250);
    let before = rate_limit_refusals(&svc).await;
    let r = send(&svc, JOE, "ann@remailer.test").await;
    assert_limited(
        &r,
        450,
        "this alias has received the most messages allowed (2 per hour)",
        2,
    );
    assert_eq!(rate_limit_refusals(&svc).await - before, 1.0);
    assert_eq!(
        send(&svc, JOE, "bob@remailer.test").await.code,
        250,
        "another alias is not affected"
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    assert_eq!(send(&svc, KIM, "ann@remailer.test").await.code, 250);
    assert_eq!(send(&svc, KIM, "ann@remailer.test").await.code, 450);
}

#[tokio::test]
async fn connections_per_client_per_minute() {
    let (svc, _sink) =
        setup("limits.connections_per_client_per_minute = 3\nlimits.minute = 2").await;
    let before = rate_limit_refusals(&svc).await;
    for _ in 0..3 {
        let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
        assert_eq!(c.cmd("QUIT").await.code, 221);
    }
    let mut c = Client::connect_raw_from(svc.smtp_port, CLIENT).await;
    let r = c.read_reply().await;
    assert_limited(
        &r,
        421,
        "too many connections from your address (at most 3 per minute)",
        2,
    );
    assert!(
        c.try_read_reply().await.is_none(),
        "closed after the refusal"
    );
    assert_eq!(rate_limit_refusals(&svc).await - before, 1.0);
    // Another client address is not affected.
    let mut other = Client::connect_from(svc.smtp_port, "127.0.0.4").await;
    assert_eq!(other.cmd("QUIT").await.code, 221);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    for _ in 0..3 {
        let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
        assert_eq!(c.cmd("QUIT").await.code, 221);
    }
}

#[tokio::test]
async fn commands_per_client_per_minute() {
    let (svc, _sink) = setup("limits.commands_per_client_per_minute = 5\nlimits.minute = 2").await;
    let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
    assert_eq!(c.cmd("EHLO client.example").await.code, 250);
    for _ in 0..4 {
        assert_eq!(c.cmd("NOOP").await.code, 250);
    }
    let r = c.cmd("NOOP").await;
    assert_limited(
        &r,
        421,
        "too many commands from your address (at most 5 per minute)",
        2,
    );
    assert!(
        c.try_read_reply().await.is_none(),
        "closed after the refusal"
    );
    // Counted per client, over its connections.
    let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
    assert_eq!(c.cmd("NOOP").await.code, 421);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
    for _ in 0..5 {
        assert_eq!(c.cmd("NOOP").await.code, 250, "released after the window");
    }
}

#[tokio::test]
async fn the_outbound_rate_delays_and_delivers_everything() {
    // Two deliveries a second, in all.
    let (svc, sink) = setup("limits.outbound_per_minute = 2\nlimits.minute = 1").await;
    let start = Instant::now();
    let mut c = Client::connect_from(svc.smtp_port, CLIENT).await;
    for n in 0..5 {
        let subject = format!("paced {n}");
        let r = c
            .send_mail(
                JOE,
                &["ann@remailer.test"],
                &message(JOE, "ann@remailer.test", &subject, "hi"),
            )
            .await;
        assert_eq!(r.code, 250, "accepted at once: {r:?}");
    }
    c.cmd("QUIT").await;
    assert!(
        start.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        start.elapsed()
    );
    wait_for("all five deliveries", Duration::from_secs(20), || {
        (sink.delivered().len() == 5).then_some(())
    })
    .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1_900),
        "five deliveries at two a second take about two seconds, not {took:?}"
    );
    let body = WebClient::new(svc.admin_port).get("/metrics").await.body;
    for result in ["deferred", "failed"] {
        let series = format!("remailer_deliveries_total{{result=\"{result}\"}} ");
        let n = body.lines().find_map(|l| l.strip_prefix(series.as_str()));
        assert!(matches!(n, None | Some("0")), "{body}");
    }
    assert_eq!(
        rate_limit_refusals(&svc).await,
        0.0,
        "slowed, never refused"
    );
}
