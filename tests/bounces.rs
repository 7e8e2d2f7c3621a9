//! What comes back to the per-message bounce address (VERP), end to end over SMTP. A bounce
//! address is not a way to write to a member: what a stranger who learnt one sends to it is
//! neither remailed nor counted (ARCHITECTURE.md §1 flow 6).

mod harness;
mod support;

use std::time::Duration;

use harness::{message, wait_for, Client, Delivered, Service, Sink, SinkMode};
use remailer::address::Domain;
use remailer::bounce::BounceToken;
use remailer::keys::Keys;
use support::dns_server::TestDns;
use support::signing::{publish, signed, BAD_IP, GOOD_IP};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(15);

async fn setup() -> (Service, Sink) {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "policy.hard_bounce_limit = 2").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    (svc, sink)
}

/// Joe writes to Ann; returns the bounce address the delivery carried.
async fn joe_writes_to_ann(svc: &Service, sink: &Sink, subject: &str) -> String {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", subject, "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("delivery to Ann", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some(subject))
    })
    .await;
    assert!(d.mail_from.starts_with("b+"), "{}", d.mail_from);
    d.mail_from
}

/// Ann's provider sends `report` to the bounce address with a null sender.
async fn report_to(svc: &Service, bounce_address: &str, report: &str) -> u16 {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.send_mail("", &[bounce_address], report).await;
    c.cmd("QUIT").await;
    r.code
}

fn dsn(to: &str, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.mail.example (Mail Delivery System)\r\nTo: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{ANN}>: host mx.mail.example said: 550 {status} <{ANN}>: \
         Recipient address rejected: User unknown\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.mail.example\r\n\r\n\
         Final-Recipient: rfc822; {ANN}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} <{ANN}> User unknown\r\n\r\n--B--\r\n"
    )
}

/// Another bounce address for the same two aliases, as the service would have made it for a
/// message sent `days_ago` days earlier (made with the service's own key, from its data dir).
fn earlier_token(svc: &Service, verp: &str, days_ago: i64, nonce: u32) -> String {
    let keys = Keys::load_or_create(&svc.dir.join("data")).unwrap();
    let local = verp.split('@').next().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = BounceToken::verify(local, &keys, now).expect("an issued token");
    let earlier = BounceToken {
        day: token.day - days_ago,
        nonce,
        ..token
    };
    earlier.address(&keys, &Domain::parse("remailer.test").unwrap())
}

fn state_of_ann(svc: &Service) -> String {
    let (_, list, _) = svc.cli(&["alias", "list"]);
    let line = list
        .lines()
        .find(|l| l.starts_with("ann@remailer.test\t"))
        .unwrap_or_else(|| panic!("{list}"));
    line.rsplit('\t').next().unwrap().to_string()
}

/// Messages remailed to `to` (not the service's own notices, which have a null sender).
fn remailed_to(sink: &Sink, to: &str) -> Vec<Delivered> {
    sink.delivered()
        .into_iter()
        .filter(|d| !d.mail_from.is_empty() && d.rcpt_to == [to])
        .collect()
}

fn notices_to(sink: &Sink, to: &str) -> Vec<Delivered> {
    sink.delivered()
        .into_iter()
        .filter(|d| d.mail_from.is_empty() && d.rcpt_to == [to])
        .collect()
}

#[tokio::test]
async fn hard_bounces_notify_the_sender_then_pause_the_alias() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "first").await;
    assert_eq!(report_to(&svc, &verp, &dsn(&verp, "5.1.1")).await, 250);
    let notice = wait_for("notice to Joe", T, || notices_to(&sink, JOE).pop()).await;
    let body = notice.body_text();
    assert!(
        body.contains("Your message to ann@remailer.test was not delivered"),
        "{body}"
    );
    assert!(
        !notice.text().contains(ANN) && !notice.text().contains("User unknown"),
        "{}",
        notice.text()
    );

    // A hard bounce for a message of the day before reaches the limit (2 messages, on 2
    // days): Ann's alias is paused, Ann is told once.
    let earlier = earlier_token(&svc, &verp, 1, 7);
    assert_eq!(
        report_to(&svc, &earlier, &dsn(&earlier, "5.1.1")).await,
        250
    );
    let paused = wait_for("notice to Ann", T, || notices_to(&sink, ANN).pop()).await;
    assert!(
        paused
            .body_text()
            .contains("Your alias ann@remailer.test has been paused"),
        "{}",
        paused.body_text()
    );
    let (_, list, _) = svc.cli(&["alias", "list"]);
    assert!(
        list.contains("ann@remailer.test\tann@mail.example\tpaused"),
        "{list}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await; // the service's lookup cache
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "third", "x"),
        )
        .await;
    assert_eq!(r.code, 550, "a paused alias accepts no mail: {r:?}");
    assert!(r.text.starts_with("5.2.1"), "{r:?}");

    // The operator reactivates it.
    let (code, out, err) = svc.cli(&["alias", "activate", "ann"]);
    assert_eq!(code, 0, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    joe_writes_to_ann(&svc, &sink, "fourth").await;
    assert_eq!(notices_to(&sink, ANN).len(), 1, "told once");
}

#[tokio::test]
async fn a_soft_bounce_notifies_but_does_not_count() {
    let (svc, sink) = setup().await;
    for n in 0..2 {
        let verp = joe_writes_to_ann(&svc, &sink, &format!("soft {n}")).await;
        assert_eq!(report_to(&svc, &verp, &dsn(&verp, "4.2.2")).await, 250);
    }
    wait_for("two notices to Joe", T, || {
        (notices_to(&sink, JOE).len() == 2).then_some(())
    })
    .await;
    let (_, list, _) = svc.cli(&["alias", "list"]);
    assert!(
        list.contains("ann@remailer.test\tann@mail.example\tactive"),
        "{list}"
    );
}

#[tokio::test]
async fn an_auto_reply_reaches_the_sender_as_a_reply_from_the_alias() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "are you there?").await;
    let vacation = format!(
        "From: Ann Lee <{ANN}>\r\nTo: {verp}\r\nSubject: Out of Office: are you there?\r\n\
         Auto-Submitted: auto-replied\r\nMessage-ID: <vac.1@mx.mail.example>\r\n\r\n\
         I am away until Monday. Write to {ANN} after that.\r\n"
    );
    assert_eq!(report_to(&svc, &verp, &vacation).await, 250);
    let reply = wait_for("the auto-reply at Joe", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.rcpt_to == [JOE] && !d.mail_from.is_empty())
    })
    .await;
    assert!(
        reply.header("From").unwrap().contains("ann@remailer.test"),
        "{}",
        reply.text()
    );
    assert!(
        reply.body_text().contains("I am away until Monday"),
        "{}",
        reply.text()
    );
    assert!(
        !reply.text().contains("mail.example") && !reply.text().contains("Ann Lee"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn stray_mail_to_a_bounce_address_is_dropped() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "hello").await;
    let before = sink.delivered().len();
    let human = format!(
        "From: someone@else.example\r\nTo: {verp}\r\nSubject: hi\r\n\r\nJust saying hello.\r\n"
    );
    assert_eq!(report_to(&svc, &verp, &human).await, 250);
    let delay = dsn(&verp, "4.4.1").replace("Action: failed", "Action: delayed");
    assert_eq!(report_to(&svc, &verp, &delay).await, 250);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        sink.delivered().len(),
        before,
        "nothing is sent for stray mail or a delay warning"
    );
}

/// A stranger who learnt a bounce address (it is every delivered message's Return-Path)
/// sends "auto-replies" to it; none reaches Joe. Ann's genuine auto-reply still does.
#[tokio::test]
async fn a_strangers_auto_reply_to_a_replayed_token_is_not_remailed() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "are you there?").await;
    let fake = |from: &str| {
        format!(
            "From: {from}\r\nTo: {verp}\r\nSubject: Out of Office: are you there?\r\n\
             Auto-Submitted: auto-replied\r\n\r\nSend your password to eve@evil.example.\r\n"
        )
    };
    let strangers = [
        ("", fake("Eve <eve@evil.example>")),
        ("eve@evil.example", fake("Eve <eve@evil.example>")),
        ("eve@evil.example", fake(&format!("<{ANN}>"))),
        ("", fake(&format!("<{ANN}>, <eve@evil.example>"))),
        ("", fake(&format!("<{JOE}>"))),
    ];
    for (envelope, report) in &strangers {
        let mut c = Client::connect(svc.smtp_port).await;
        let r = c.send_mail(envelope, &[&verp], report).await;
        assert_eq!(r.code, 250, "accepted and discarded: {r:?}");
        c.cmd("QUIT").await;
    }
    let genuine = format!(
        "From: Ann Lee <{ANN}>\r\nTo: {verp}\r\nSubject: Out of Office: are you there?\r\n\
         Auto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n"
    );
    assert_eq!(report_to(&svc, &verp, &genuine).await, 250);
    wait_for("Ann's auto-reply at Joe", T, || {
        remailed_to(&sink, JOE).pop()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_joe = remailed_to(&sink, JOE);
    assert_eq!(at_joe.len(), 1, "only Ann's own auto-reply is remailed");
    assert!(
        at_joe[0].body_text().contains("I am away"),
        "{}",
        at_joe[0].text()
    );
    assert!(sink
        .delivered()
        .iter()
        .all(|d| !d.text().contains("password")));
    assert!(
        notices_to(&sink, JOE).is_empty(),
        "and the sender is not told either"
    );
    let log = svc.log();
    let local = verp.split('@').next().unwrap();
    assert!(
        !log.contains(local) && !log.contains(ANN) && !log.contains("evil.example"),
        "no token or address in the log: {log}"
    );
}

/// Under `policy.sender_auth = "dmarc"` an auto-reply must authenticate as Ann's real
/// address: a forged one (right From, no aligned DKIM or SPF) is dropped, a signed one is
/// remailed.
#[tokio::test]
async fn an_auto_reply_must_pass_dmarc_for_the_recipients_domain() {
    let dns = TestDns::start().await;
    publish(&dns, "good.test", "-", Some("v=DMARC1; p=reject"));
    let ann_key = publish(&dns, "ann.test", "-", Some("v=DMARC1; p=reject"));
    let sink = Sink::start(SinkMode::Accept).await;
    let extra = format!(
        "policy.sender_auth = \"dmarc\"\ndns.nameservers = [\"{}\"]",
        dns.addr()
    );
    let svc = Service::start(sink.port, &extra).await;
    svc.add_alias("joe", "joe@good.test");
    svc.add_alias("ann", "ann@ann.test");
    let mut c = Client::connect_from(svc.smtp_port, GOOD_IP).await;
    let hello = message("joe@good.test", "ann@remailer.test", "hello", "hi");
    let r = c
        .send_mail("joe@good.test", &["ann@remailer.test"], &hello)
        .await;
    assert_eq!(r.code, 250, "{r:?}\n{}", svc.log());
    let verp = wait_for("delivery to Ann", T, || {
        remailed_to(&sink, "ann@ann.test").pop()
    })
    .await
    .mail_from;
    let reply = |body: &str| {
        format!(
            "From: <ann@ann.test>\r\nTo: {verp}\r\nSubject: Automatic reply: hello\r\n\
             Date: Mon, 13 Jan 2025 10:00:00 +0000\r\nMessage-ID: <{}@ann.test>\r\n\
             Auto-Submitted: auto-replied\r\n\r\n{body}\r\n",
            harness::rand_id()
        )
    };
    for (source, data) in [
        (BAD_IP, reply("forged").into_bytes()),
        (
            BAD_IP,
            signed(&ann_key, "ann.test", reply("genuine").as_bytes()),
        ),
    ] {
        let mut c = Client::connect_from(svc.smtp_port, source).await;
        let r = c
            .send_mail("", &[&verp], std::str::from_utf8(&data).unwrap())
            .await;
        assert_eq!(r.code, 250, "{r:?}");
        c.cmd("QUIT").await;
    }
    wait_for("the signed auto-reply at Joe", T, || {
        remailed_to(&sink, "joe@good.test").pop()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_joe = remailed_to(&sink, "joe@good.test");
    assert_eq!(at_joe.len(), 1, "the forged auto-reply is dropped");
    assert!(
        at_joe[0].body_text().contains("genuine"),
        "{}",
        at_joe[0].text()
    );
}

/// One bounce address replayed: the same DSN three times counts once (one notice to Joe, the
/// alias stays active), even with a limit of 2.
#[tokio::test]
async fn fake_dsns_replayed_to_one_token_do_not_pause() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "once").await;
    for _ in 0..3 {
        assert_eq!(report_to(&svc, &verp, &dsn(&verp, "5.1.1")).await, 250);
    }
    wait_for("a notice to Joe", T, || notices_to(&sink, JOE).pop()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(notices_to(&sink, JOE).len(), 1, "one message, one notice");
    assert_eq!(state_of_ann(&svc), "active");
    assert!(notices_to(&sink, ANN).is_empty());
}

/// Hard bounces for three distinct messages of one day do not pause; one for a message of
/// another day then does (limit 2: messages on two distinct days are needed).
#[tokio::test]
async fn dsns_for_distinct_messages_pause_only_over_distinct_days() {
    let (svc, sink) = setup().await;
    let mut last = String::new();
    for n in 0..3 {
        last = joe_writes_to_ann(&svc, &sink, &format!("today {n}")).await;
        assert_eq!(report_to(&svc, &last, &dsn(&last, "5.1.1")).await, 250);
    }
    wait_for("three notices to Joe", T, || {
        (notices_to(&sink, JOE).len() == 3).then_some(())
    })
    .await;
    assert_eq!(state_of_ann(&svc), "active", "one day is not enough");
    let yesterday = earlier_token(&svc, &last, 1, 1);
    assert_eq!(
        report_to(&svc, &yesterday, &dsn(&yesterday, "5.1.1")).await,
        250
    );
    wait_for("notice to Ann", T, || notices_to(&sink, ANN).pop()).await;
    assert_eq!(state_of_ann(&svc), "paused");
}

/// Failure reports that do not name Ann's real address count for nothing (and tell Joe
/// nothing), though they come for messages on two days.
#[tokio::test]
async fn dsns_not_naming_the_recipient_do_not_count() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "who?").await;
    let tokens = [
        verp.clone(),
        earlier_token(&svc, &verp, 1, 1),
        earlier_token(&svc, &verp, 2, 2),
        earlier_token(&svc, &verp, 3, 3),
    ];
    let other =
        dsn(&tokens[0], "5.1.1").replace(&format!("rfc822; {ANN}"), "rfc822; x@mail.example");
    let no_recipient =
        dsn(&tokens[1], "5.1.1").replace(&format!("Final-Recipient: rfc822; {ANN}\r\n"), "");
    let plain = |to: &str, who: &str| {
        format!(
            "From: MAILER-DAEMON@mx.mail.example\r\nTo: {to}\r\nSubject: failure notice\r\n\r\n\
             This is the qmail-send program at mx.mail.example.\r\n\
             {who}:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n"
        )
    };
    let reports = [
        (&tokens[0], other),
        (&tokens[1], no_recipient),
        (&tokens[2], plain(&tokens[2], "<x@mail.example>")),
        (&tokens[3], plain(&tokens[3], "Your message")),
    ];
    for (to, report) in &reports {
        assert_eq!(report_to(&svc, to, report).await, 250);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(state_of_ann(&svc), "active");
    assert!(
        notices_to(&sink, JOE).is_empty(),
        "{:?}",
        notices_to(&sink, JOE)
    );
    assert!(notices_to(&sink, ANN).is_empty());

    // The same plain-text bounce naming Ann counts (control: the reports above were read).
    for to in &tokens[2..] {
        assert_eq!(
            report_to(&svc, to, &plain(to, &format!("<{ANN}>"))).await,
            250
        );
    }
    wait_for("notice to Ann", T, || notices_to(&sink, ANN).pop()).await;
    assert_eq!(state_of_ann(&svc), "paused");
}

/// A token has one spelling; every other spelling of an issued token is unknown at RCPT.
#[tokio::test]
async fn only_the_canonical_spelling_of_a_token_is_accepted() {
    let (svc, sink) = setup().await;
    let verp = joe_writes_to_ann(&svc, &sink, "spelling").await;
    let (local, domain) = verp.split_once('@').unwrap();
    let rest = local.strip_prefix("b+").unwrap();
    let fields: Vec<&str> = rest.split('.').collect();
    let with_field = |i: usize, value: String| {
        let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        f[i] = value;
        format!("b+{}@{domain}", f.join("."))
    };
    let last = fields.len() - 1;
    let spellings = [
        format!("B+{rest}@{domain}"),
        format!("b++{rest}@{domain}"),
        format!("b+0{rest}@{domain}"),
        with_field(1, format!("0{}", fields[1])),
        with_field(2, format!("0{}", fields[2])),
        with_field(last, fields[last].to_ascii_uppercase()),
        with_field(last - 1, fields[last - 1].to_ascii_uppercase()),
        format!("{}@{domain}", local.to_ascii_uppercase()),
    ];
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO mx.mail.example").await.code, 250);
    assert_eq!(c.cmd("MAIL FROM:<>").await.code, 250);
    for spelling in &spellings {
        assert_ne!(spelling, &verp);
        let r = c.cmd(&format!("RCPT TO:<{spelling}>")).await;
        assert_eq!(r.code, 550, "{spelling}: {r:?}");
        assert!(r.text.starts_with("5.1.1"), "{spelling}: {r:?}");
    }
    let r = c.cmd(&format!("RCPT TO:<{verp}>")).await;
    assert_eq!(r.code, 250, "the issued spelling: {r:?}");
    let r = c
        .cmd(&format!(
            "RCPT TO:<{local}@{}>",
            domain.to_ascii_uppercase()
        ))
        .await;
    assert_eq!(r.code, 250, "the domain is not case-sensitive: {r:?}");
}
