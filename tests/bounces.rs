//! What comes back to the per-message bounce address (VERP), end to end over SMTP.

mod harness;

use std::time::Duration;

use harness::{message, wait_for, Client, Delivered, Service, Sink, SinkMode};

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

    // The second hard bounce reaches the limit (2): Ann's alias is paused, Ann is told once.
    let verp = joe_writes_to_ann(&svc, &sink, "second").await;
    assert_eq!(report_to(&svc, &verp, &dsn(&verp, "5.1.1")).await, 250);
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
