//! SMTP intake over real TCP against the real binary: protocol, limits and refusals.

mod harness;

use std::time::Duration;

use harness::{message, Client, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

async fn service_with_members(extra: &str) -> (Service, Sink) {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    (svc, sink)
}

#[tokio::test]
async fn ehlo_advertises_the_extensions() {
    let (svc, _sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.cmd("EHLO client.example").await;
    assert_eq!(r.code, 250);
    for ext in [
        "PIPELINING",
        "8BITMIME",
        "SIZE 65536",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
    ] {
        assert!(r.text.lines().any(|l| l == ext), "missing {ext} in {r:?}");
    }
    assert!(
        !r.text.contains("STARTTLS"),
        "no certificate configured, so no STARTTLS: {r:?}"
    );
    assert_eq!(c.cmd("STARTTLS").await.code, 502);
    assert_eq!(c.cmd("NOOP").await.code, 250);
    assert_eq!(c.cmd("QUIT").await.code, 221);
}

#[tokio::test]
async fn bad_commands_get_clear_errors_and_too_many_close_the_session() {
    let (svc, _sink) = service_with_members("smtp.max_errors = 4").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.cmd("MAIL FROM:<joe@real.example>").await;
    assert_eq!(r.code, 503, "EHLO first: {r:?}");
    assert_eq!(c.cmd("HELO client.example").await.code, 250);
    let r = c.cmd("RCPT TO:<ann@remailer.test>").await;
    assert_eq!(r.code, 503, "RCPT before MAIL: {r:?}");
    let r = c.cmd("FROBNICATE").await;
    assert_eq!(r.code, 500, "{r:?}");
    let r = c
        .cmd(&format!("MAIL FROM:<{}@real.example>", "x".repeat(5000)))
        .await;
    assert_eq!(r.code, 500, "line too long: {r:?}");
    assert!(r.text.contains("too long"), "{r:?}");
    let r = c.read_reply().await;
    assert_eq!(r.code, 421, "fourth error closes: {r:?}");
    assert!(c.try_read_reply().await.is_none(), "connection closed");
}

#[tokio::test]
async fn transaction_order_is_enforced() {
    let (svc, _sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    assert_eq!(c.cmd("DATA").await.code, 503);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code,
        503,
        "nested MAIL"
    );
    let r = c.cmd("DATA").await;
    assert_eq!(r.code, 554, "DATA without recipients: {r:?}");
    assert_eq!(c.cmd("RSET").await.code, 250);
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code,
        250,
        "RSET ends the transaction"
    );
    let r = c.cmd("MAIL FROM:<not an address>").await;
    assert!(r.code >= 500, "{r:?}");
}

#[tokio::test]
async fn open_relay_attempts_are_refused() {
    let (svc, sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    for rcpt in [
        ANN,
        "someone@elsewhere.example",
        "ann@remailer.test.evil.example",
        "ann%mail.example@remailer.test",
    ] {
        c.cmd("RSET").await;
        let r = c
            .send_mail(JOE, &[rcpt], &message(JOE, rcpt, "relay?", "x"))
            .await;
        assert!(r.code >= 550 && r.code < 560, "{rcpt}: {r:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.delivered().is_empty());
}

#[tokio::test]
async fn unknown_aliases_get_550_5_1_1() {
    let (svc, _sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    for rcpt in [
        "nobody@remailer.test",
        "postmaster@remailer.test",
        "b+1.2.3.deadbeef@remailer.test",
    ] {
        c.cmd("RSET").await;
        let r = c.send_mail(JOE, &[rcpt], "x").await;
        assert_eq!(r.code, 550, "{rcpt}: {r:?}");
        assert!(r.text.starts_with("5.1.1"), "{rcpt}: {r:?}");
    }
}

#[tokio::test]
async fn unregistered_senders_are_told_how_to_register() {
    let (svc, sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail("mallory@evil.example", &["ann@remailer.test"], "x")
        .await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.starts_with("5.7.1"), "{r:?}");
    assert!(r.text.contains("not registered"), "{r:?}");
    assert!(r.text.contains("https://remailer.test/register"), "{r:?}");
    // a bounce (null sender) may not reach an alias either
    c.cmd("RSET").await;
    let r = c.send_mail("", &["ann@remailer.test"], "x").await;
    assert_eq!(r.code, 550, "{r:?}");
    // and a member may not write to their own alias
    c.cmd("RSET").await;
    let r = c.send_mail(JOE, &["joe@remailer.test"], "x").await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.contains("own alias"), "{r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.delivered().is_empty());
    assert!(
        !svc.log().contains("mallory@evil.example"),
        "no address in the log"
    );
}

#[tokio::test]
async fn oversized_messages_get_552_and_the_session_goes_on() {
    let (svc, sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    let r = c.cmd(&format!("MAIL FROM:<{JOE}> SIZE=100000")).await;
    assert_eq!(r.code, 552, "declared SIZE over the limit: {r:?}");
    let big = message(
        JOE,
        "ann@remailer.test",
        "big",
        &"0123456789abcdef\r\n".repeat(5000),
    );
    let r = c.send_mail(JOE, &["ann@remailer.test"], &big).await;
    assert_eq!(r.code, 552, "{r:?}");
    assert!(r.text.starts_with("5.3.4"), "{r:?}");
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "small", "fine"),
        )
        .await;
    assert_eq!(r.code, 250, "the session still works: {r:?}");
    harness::wait_for("delivery", Duration::from_secs(10), || {
        (sink.delivered().len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn too_many_recipients_get_452() {
    let (svc, _sink) = service_with_members("").await;
    for n in 0..6 {
        svc.add_alias(&format!("m{n}"), &format!("m{n}@real{n}.example"));
    }
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    c.cmd(&format!("MAIL FROM:<{JOE}>")).await;
    for n in 0..5 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<m{n}@remailer.test>")).await.code,
            250
        );
    }
    let r = c.cmd("RCPT TO:<m5@remailer.test>").await;
    assert_eq!(r.code, 452, "{r:?}");
}

#[tokio::test]
async fn pipelined_input_is_answered_in_order() {
    let (svc, sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    let msg = harness::client::dot_stuff(&message(
        JOE,
        "ann@remailer.test",
        "pipelined",
        ".a line with a dot",
    ));
    let batch = format!(
        "MAIL FROM:<{JOE}>\r\nRCPT TO:<nobody@remailer.test>\r\nRCPT TO:<ann@remailer.test>\r\nDATA\r\n{msg}.\r\nQUIT\r\n"
    );
    c.send_raw(batch.as_bytes()).await;
    let codes: Vec<u16> = [(); 6].iter().map(|_| 0).collect();
    let mut got = Vec::new();
    for _ in codes {
        got.push(c.read_reply().await.code);
    }
    assert_eq!(got, vec![250, 550, 250, 354, 250, 221]);
    let d = harness::wait_for("delivery", Duration::from_secs(10), || {
        sink.delivered().pop()
    })
    .await;
    assert!(
        d.text().contains("\r\n.a line with a dot"),
        "dot-unstuffed once: {}",
        d.text()
    );
}

#[tokio::test]
async fn idle_clients_are_disconnected() {
    let (svc, _sink) = service_with_members("smtp.command_timeout = 1").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.try_read_reply().await.is_none());
}

#[tokio::test]
async fn connection_limit_is_enforced() {
    let (svc, _sink) = service_with_members("smtp.max_connections = 2").await;
    // Two sessions busy in DATA hold both slots (idle ones would be closed to make room,
    // see tests/intake_security.rs).
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(svc.smtp_port).await;
        c.cmd("EHLO client.example").await;
        assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
        assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
        assert_eq!(c.cmd("DATA").await.code, 354);
        busy.push(c);
    }
    let mut c = Client::connect_raw(svc.smtp_port).await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    busy.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _d = Client::connect(svc.smtp_port).await;
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly printable, with CR, LF, NUL, dots and high bytes mixed in.
            match x % 16 {
                0 => b'\r',
                1 => b'\n',
                2 => b'.',
                3 => 0,
                4 => (x >> 8) as u8 | 0x80,
                _ => b' ' + (x >> 16) as u8 % 95,
            }
        })
        .collect()
}

#[tokio::test]
async fn random_input_never_crashes_the_service() {
    let (svc, sink) = service_with_members("smtp.command_timeout = 2").await;
    for seed in 1..=40u64 {
        let mut c = Client::connect(svc.smtp_port).await;
        if seed % 2 == 0 {
            // garbage as commands
            c.send_raw(&noise(seed, 3000)).await;
        } else {
            // garbage as a message body
            c.cmd("EHLO fuzz.example").await;
            c.cmd(&format!("MAIL FROM:<{JOE}>")).await;
            c.cmd("RCPT TO:<ann@remailer.test>").await;
            if c.cmd("DATA").await.code == 354 {
                let mut body = noise(seed, 4000);
                body.extend_from_slice(b"\r\n.\r\n");
                c.send_raw(&body).await;
            }
        }
        drop(c);
    }
    // The service is alive and still does its job.
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "after the noise", "ok"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    harness::wait_for("delivery", Duration::from_secs(10), || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("after the noise"))
    })
    .await;
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}
