//! Hostile input at the SMTP intake, over real TCP against the real binary (issue 7):
//! SMTP smuggling and BDAT, alias probing and its rate limit, connection hogging (per-client
//! limit, session deadline, minimum data rate, idle sessions closed first when full), and
//! malformed UTF-8 in addresses.

mod harness;

use std::time::{Duration, Instant};

use harness::{message, wait_for, Client, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

async fn service_with_members(extra: &str) -> (Service, Sink) {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    (svc, sink)
}

/// Every end-of-data look-alike (the SMTP smuggling papers, CVE-2023-51764 class), and runs
/// of CR before the LF.
const LOOK_ALIKES: &[&str] = &[
    "\n.\n",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r\n",
    "\r.\r",
    "\r\n.\r",
    "\r\n.\r\r\n",
    "\r\n.\r\r\r\n",
    "\r\n.\r\r\r\r\r\r\n",
    "\n.\r\r\n",
    "\r\r\n.\r\r\n",
];

/// A member's message with a look-alike of end-of-data, then a smuggled second transaction
/// (a message "from Joe" with a marker), then the real end of data.
fn smuggling_payload(n: usize, look: &str) -> String {
    let first = message(JOE, "ann@remailer.test", &format!("first {n}"), "hello");
    let second = message(
        JOE,
        "ann@remailer.test",
        &format!("SMUGGLED-{n}"),
        "I am not Joe",
    );
    format!(
        "{}{look}MAIL FROM:<{JOE}>\r\nRCPT TO:<ann@remailer.test>\r\nDATA\r\n{second}\r\n.\r\n",
        first.trim_end_matches("\r\n")
    )
}

#[tokio::test]
async fn no_end_of_data_look_alike_smuggles_a_second_message() {
    let (svc, sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO client.real.example").await.code, 250);
    for (n, look) in LOOK_ALIKES.iter().enumerate() {
        let shown = look.escape_debug().to_string();
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code,
            250,
            "{shown}"
        );
        assert_eq!(
            c.cmd("RCPT TO:<ann@remailer.test>").await.code,
            250,
            "{shown}"
        );
        assert_eq!(c.cmd("DATA").await.code, 354, "{shown}");
        c.send_raw(smuggling_payload(n, look).as_bytes()).await;
        c.send_raw(b"NOOP look-alike done\r\n").await;
        // One reply to the whole payload: the message is refused as a whole ...
        let r = c.read_reply().await;
        assert_eq!(r.code, 550, "{shown}: {r:?}");
        assert!(r.text.starts_with("5.6.0"), "{shown}: {r:?}");
        assert!(r.text.contains("bare"), "{shown}: {r:?}");
        // ... and the next reply is the NOOP's: no smuggled command was executed.
        let r = c.read_reply().await;
        assert_eq!(
            r.code, 250,
            "{shown}: a smuggled command was answered: {r:?}"
        );
        assert!(r.text.contains("OK"), "{shown}: {r:?}");
    }
    // The session still works, and a clean message after all that is delivered.
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "control", "clean"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("the control message", Duration::from_secs(10), || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("control"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for d in sink.delivered() {
        assert!(
            !d.text().contains("SMUGGLED") && !d.text().contains("I am not Joe"),
            "smuggled content was delivered: {}",
            d.text()
        );
        assert!(
            d.header("Subject").as_deref() == Some("control"),
            "only the control message is delivered, got {:?}",
            d.header("Subject")
        );
    }
}

#[tokio::test]
async fn bdat_is_refused_and_its_chunk_is_never_read_as_commands() {
    let (svc, sink) = service_with_members("").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.cmd("EHLO client.real.example").await;
    assert!(!r.text.contains("CHUNKING"), "{r:?}");
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    let chunk = format!(
        "RSET\r\nMAIL FROM:<{JOE}>\r\nRCPT TO:<ann@remailer.test>\r\nDATA\r\nSubject: SMUGGLED\r\n\r\nx\r\n.\r\n"
    );
    c.send_raw(format!("BDAT {} LAST\r\n{chunk}NOOP\r\n", chunk.len()).as_bytes())
        .await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 502, "{r:?}");
    assert!(r.text.contains("BDAT") && r.text.contains("DATA"), "{r:?}");
    let r = c.read_reply().await;
    assert_eq!(r.code, 250, "the chunk was read as commands: {r:?}");
    assert!(r.text.contains("OK"), "the NOOP's reply: {r:?}");
    // The transaction is still open and DATA works.
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.send_raw(message(JOE, "ann@remailer.test", "after bdat", "x").as_bytes())
        .await;
    let r = c.cmd(".").await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("delivery", Duration::from_secs(10), || {
        sink.delivered().pop()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().len(), 1);
    assert!(!sink.delivered()[0].text().contains("SMUGGLED"));
    // A chunk too big to skip ends the session.
    c.send_raw(b"BDAT 999999999999 LAST\r\n").await;
    let r = c.read_reply().await;
    assert_eq!(r.code, 502, "{r:?}");
    let r = c.read_reply().await;
    assert_eq!(r.code, 421, "{r:?}");
    assert!(c.try_read_reply().await.is_none());
}

// ---- alias probing --------------------------------------------------------------------

#[tokio::test]
async fn outsiders_get_one_answer_for_every_alias() {
    let (svc, _sink) = service_with_members("smtp.max_errors = 30").await;
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO scanner.example").await.code, 250);
    for from in ["mallory@evil.example", ""] {
        assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await.code, 250);
        let mut replies = Vec::new();
        for rcpt in [
            "ann@remailer.test",
            "nobody@remailer.test",
            "Ann@remailer.test",
            "postmaster@remailer.test",
            "b-1.2@remailer.test",
            "joe@remailer.test",
        ] {
            let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
            replies.push((rcpt, r));
        }
        let (_, first) = &replies[0];
        for (rcpt, r) in &replies {
            assert_eq!(
                (r.code, &r.text),
                (first.code, &first.text),
                "{from:?} to {rcpt}: the answer tells an existing alias from an unknown one"
            );
        }
        assert_eq!(first.code, 550, "{from:?}: {first:?}");
        assert!(first.text.starts_with("5.7.1"), "{from:?}: {first:?}");
        if !from.is_empty() {
            assert!(first.text.contains("not registered"), "{first:?}");
            assert!(
                first.text.contains("https://remailer.test/register"),
                "{first:?}"
            );
        }
        assert_eq!(c.cmd("RSET").await.code, 250);
    }
    // A member still learns that an alias does not exist.
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    let r = c.cmd("RCPT TO:<nobody@remailer.test>").await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.starts_with("5.1.1"), "{r:?}");
    assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
}

/// Connects from `source` and returns the client and its greeting.
async fn connect_from_raw(port: u16, source: &str) -> (Client, harness::client::Reply) {
    let mut c = Client::connect_raw_from(port, source).await;
    let greeting = c.read_reply().await;
    (c, greeting)
}

#[tokio::test]
async fn a_scanner_is_cut_off_across_connections() {
    let (svc, sink) =
        service_with_members("smtp.max_refusals_per_client = 5\nsmtp.refusal_window = 60").await;
    let scanner = "127.0.0.3";
    let mut c = Client::connect_from(svc.smtp_port, scanner).await;
    c.cmd("EHLO scanner.example").await;
    assert_eq!(c.cmd("MAIL FROM:<mallory@evil.example>").await.code, 250);
    for n in 0..3 {
        let r = c.cmd(&format!("RCPT TO:<name{n}@remailer.test>")).await;
        assert_eq!(r.code, 550, "{r:?}");
    }
    drop(c);
    // A new connection does not start afresh.
    let mut c = Client::connect_from(svc.smtp_port, scanner).await;
    c.cmd("EHLO scanner.example").await;
    assert_eq!(c.cmd("MAIL FROM:<mallory@evil.example>").await.code, 250);
    for n in 3..5 {
        let r = c.cmd(&format!("RCPT TO:<name{n}@remailer.test>")).await;
        assert_eq!(r.code, 550, "{r:?}");
    }
    let r = c.cmd("RCPT TO:<ann@remailer.test>").await;
    assert_eq!(r.code, 421, "the sixth recipient: {r:?}");
    assert!(
        r.text.starts_with("4.7.0") && r.text.contains("Too many refused"),
        "{r:?}"
    );
    assert!(
        c.try_read_reply().await.is_none(),
        "and the connection is closed"
    );
    let (mut c, greeting) = connect_from_raw(svc.smtp_port, scanner).await;
    assert_eq!(greeting.code, 421, "reconnecting: {greeting:?}");
    assert!(greeting.text.starts_with("4.7.0"), "{greeting:?}");
    assert!(c.try_read_reply().await.is_none());
    // Meanwhile a member elsewhere is served as always.
    let mut m = Client::connect_from(svc.smtp_port, "127.0.0.1").await;
    let r = m
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "member", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("delivery", Duration::from_secs(10), || {
        sink.delivered().pop()
    })
    .await;
    assert!(!svc.log().contains("127.0.0.3"), "no client IP in the log");
}

// ---- connection hogging ---------------------------------------------------------------

#[tokio::test]
async fn a_connection_flood_from_one_address_does_not_lock_out_a_member() {
    let (svc, sink) =
        service_with_members("smtp.max_connections = 12\nsmtp.max_connections_per_client = 4")
            .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        let (mut c, greeting) = connect_from_raw(svc.smtp_port, "127.0.0.2").await;
        match greeting.code {
            220 => {
                assert_eq!(c.cmd("EHLO flood.example").await.code, 250);
                held.push(c);
            }
            421 => {
                assert!(greeting.text.starts_with("4.7.0"), "{greeting:?}");
                assert!(greeting.text.contains("from your address"), "{greeting:?}");
                refused += 1;
            }
            other => panic!("unexpected greeting {other}: {greeting:?}"),
        }
    }
    assert_eq!(held.len(), 4, "only 4 connections from one address");
    assert_eq!(refused, 26);
    // The flood is still open; a member on another address delivers.
    let mut m = Client::connect_from(svc.smtp_port, "127.0.0.1").await;
    let r = m
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "during flood", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("delivery", Duration::from_secs(10), || {
        sink.delivered().pop()
    })
    .await;
    // The held connections still work.
    assert_eq!(held[0].cmd("NOOP").await.code, 250);
    assert!(!svc.log().contains("127.0.0.2"), "no client IP in the log");
}

#[tokio::test]
async fn when_full_the_idle_session_waiting_longest_makes_room() {
    let (svc, sink) = service_with_members("smtp.max_connections = 3").await;
    // One session busy in DATA, two idle ones (the first idle longer).
    let mut busy = Client::connect_from(svc.smtp_port, "127.0.0.4").await;
    busy.cmd("EHLO busy.example").await;
    assert_eq!(busy.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(busy.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(busy.cmd("DATA").await.code, 354);
    busy.send_raw(b"Subject: slow\r\n").await;
    let mut idle_old = Client::connect_from(svc.smtp_port, "127.0.0.2").await;
    idle_old.cmd("EHLO idle.example").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut idle_new = Client::connect_from(svc.smtp_port, "127.0.0.2").await;
    idle_new.cmd("EHLO idle.example").await;
    // The service is full; a member connects and is served.
    let mut m = Client::connect_from(svc.smtp_port, "127.0.0.1").await;
    let r = idle_old.read_reply().await;
    assert_eq!(r.code, 421, "the session idle longest is closed: {r:?}");
    assert!(r.text.starts_with("4.3.2"), "{r:?}");
    assert!(idle_old.try_read_reply().await.is_none());
    assert_eq!(
        idle_new.cmd("NOOP").await.code,
        250,
        "the other idle session stays"
    );
    let r = m
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "member", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    // The busy session was not touched and finishes its message.
    busy.send_raw(b"\r\nstill here\r\n.\r\n").await;
    assert_eq!(busy.read_reply().await.code, 250);
    wait_for("two deliveries", Duration::from_secs(10), || {
        (sink.delivered().len() == 2).then_some(())
    })
    .await;
    // With nothing idle, a new connection is turned away.
    let _ = idle_new.cmd(&format!("MAIL FROM:<{JOE}>")).await;
    let _ = idle_new.cmd("RCPT TO:<ann@remailer.test>").await;
    assert_eq!(idle_new.cmd("DATA").await.code, 354);
    assert_eq!(busy.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(busy.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(busy.cmd("DATA").await.code, 354);
    assert_eq!(m.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(m.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(m.cmd("DATA").await.code, 354);
    let (_c, greeting) = connect_from_raw(svc.smtp_port, "127.0.0.5").await;
    assert_eq!(greeting.code, 421, "{greeting:?}");
    assert!(greeting.text.starts_with("4.3.2"), "{greeting:?}");
}

#[tokio::test]
async fn a_trickling_client_is_cut_off() {
    let (svc, sink) = service_with_members(
        "smtp.data_timeout = 1\nsmtp.min_data_rate = 100\nsmtp.command_timeout = 2",
    )
    .await;
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO trickle.example").await;
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    // One byte every 100 ms: never silent for the 1 s data timeout, but 10 bytes/s.
    let start = Instant::now();
    let body = message(JOE, "ann@remailer.test", "trickle", &"x".repeat(200));
    let mut cut = None;
    for byte in body.as_bytes() {
        if c.try_send_raw(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        if let Some(r) = c.poll_reply(Duration::from_millis(100)).await {
            cut = Some(r);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(8), "never cut off");
    }
    let r = cut.expect("cut off before the message was complete");
    assert_eq!(r.code, 421, "{r:?}");
    assert!(
        r.text.starts_with("4.4.2") && r.text.contains("too slowly"),
        "{r:?}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A command trickled byte by byte is cut off at the command timeout, too.
    let mut c = Client::connect(svc.smtp_port).await;
    let start = Instant::now();
    let mut cut = None;
    for byte in b"NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP\r\n" {
        if c.try_send_raw(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        if let Some(r) = c.poll_reply(Duration::from_millis(150)).await {
            cut = Some(r);
            break;
        }
    }
    let r = cut.expect("cut off while trickling a command");
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text.starts_with("4.4.2"), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(4));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.delivered().is_empty());
}

#[tokio::test]
async fn a_session_ends_at_its_deadline() {
    let (svc, _sink) = service_with_members("smtp.session_timeout = 2").await;
    let mut c = Client::connect(svc.smtp_port).await;
    let start = Instant::now();
    let r = loop {
        let r = c.cmd("NOOP").await;
        if r.code != 250 {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(6), "never cut off");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(r.code, 421, "{r:?}");
    assert!(r.text.contains("Session time limit"), "{r:?}");
    assert!(start.elapsed() >= Duration::from_millis(1800));
}

// ---- malformed input ------------------------------------------------------------------

#[tokio::test]
async fn malformed_utf8_in_addresses_is_refused_not_repaired() {
    let (svc, sink) = service_with_members("smtp.max_errors = 30").await;
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.real.example").await;
    for line in [
        b"MAIL FROM:<j\xffoe@real.example>\r\n".as_slice(),
        b"MAIL FROM:<j\xc0\xafoe@real.example>\r\n",
        b"MAIL FROM:<j\xed\xa0\x80oe@real.example> SMTPUTF8\r\n",
        b"MAIL FROM:<j\xe2\x82oe@real.example> SMTPUTF8\r\n",
        b"MAIL FROM:<joe@real.example\xff>\r\n",
    ] {
        c.send_raw(line).await;
        let r = c.read_reply().await;
        assert_eq!(r.code, 501, "{:?}: {r:?}", String::from_utf8_lossy(line));
        assert!(
            r.text.starts_with("5.5.4") && r.text.contains("UTF-8"),
            "{r:?}"
        );
    }
    // Non-ASCII without SMTPUTF8, in MAIL and in RCPT.
    let r = c.cmd("MAIL FROM:<jöe@real.example>").await;
    assert_eq!(r.code, 553, "{r:?}");
    assert!(
        r.text.starts_with("5.6.7") && r.text.contains("SMTPUTF8"),
        "{r:?}"
    );
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    let r = c.cmd("RCPT TO:<änn@remailer.test>").await;
    assert_eq!(r.code, 553, "{r:?}");
    assert!(r.text.starts_with("5.6.7"), "{r:?}");
    c.send_raw(b"RCPT TO:<ann@remailer.test\xff>\r\n").await;
    assert_eq!(c.read_reply().await.code, 501);
    // With SMTPUTF8 a (valid) non-ASCII address is taken as it is.
    assert_eq!(c.cmd("RSET").await.code, 250);
    let r = c.cmd("MAIL FROM:<jöe@real.example> SMTPUTF8").await;
    assert_eq!(r.code, 250, "{r:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink.delivered().is_empty());
}
