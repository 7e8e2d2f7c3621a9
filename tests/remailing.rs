//! Member-to-member remailing end to end: real SMTP in, the real service, real SMTP out.

mod harness;

use std::time::Duration;

use harness::{message, wait_for, Client, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(15);

async fn setup(mode: SinkMode, extra: &str) -> (Service, Sink) {
    let sink = Sink::start(mode).await;
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    (svc, sink)
}

async fn send(svc: &Service, from: &str, to: &str, data: &str) -> harness::client::Reply {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.send_mail(from, &[to], data).await;
    c.cmd("QUIT").await;
    r
}

#[tokio::test]
async fn a_members_message_arrives_rewritten_at_the_recipients_real_address() {
    let (svc, sink) = setup(SinkMode::Accept, "").await;
    let r = send(
        &svc,
        JOE,
        "ann@remailer.test",
        &message(JOE, "ann@remailer.test", "Hello Ann", "See you at noon."),
    )
    .await;
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text.contains("Queued as"), "{r:?}");
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;

    assert_eq!(
        d.rcpt_to,
        vec![ANN.to_string()],
        "delivered to the real address"
    );
    assert!(
        d.mail_from.starts_with("b+") && d.mail_from.ends_with("@remailer.test"),
        "VERP sender: {}",
        d.mail_from
    );
    let from = d.header("From").unwrap();
    assert!(
        from.contains("joe@remailer.test") && !from.contains("Joe Smith"),
        "From: {from}"
    );
    assert!(d.header("To").unwrap().contains("ann@remailer.test"));
    assert_eq!(d.header("Subject").as_deref(), Some("Hello Ann"));
    assert!(d.header("Message-ID").unwrap().ends_with("@remailer.test>"));
    assert!(
        !d.header("Date").unwrap().contains("13 Jan 2025"),
        "Date regenerated"
    );
    let text = d.text();
    for leak in [
        "real.example",
        "198.51.100.23",
        "Received:",
        "X-Mailer",
        "X-Originating-IP",
        "Joe Smith",
    ] {
        assert!(!text.contains(leak), "{leak} leaked:\n{text}");
    }
    assert!(text.contains("See you at noon."));
    let log = svc.log();
    assert!(
        !log.contains(JOE) && !log.contains(ANN),
        "a real address in the log:\n{log}"
    );
}

#[tokio::test]
async fn replies_flow_back_and_keep_the_thread() {
    let (svc, sink) = setup(SinkMode::Accept, "").await;
    let first = message(JOE, "ann@remailer.test", "Lunch?", "Lunch on Friday?");
    let original_id = first
        .lines()
        .find(|l| l.starts_with("Message-ID:"))
        .unwrap()[12..]
        .trim()
        .to_string();
    assert_eq!(send(&svc, JOE, "ann@remailer.test", &first).await.code, 250);
    let to_ann = wait_for("first delivery", T, || sink.delivered().pop()).await;
    let issued = to_ann.header("Message-ID").unwrap();

    let reply = format!(
        "From: Ann Lee <{ANN}>\r\nTo: <joe@remailer.test>\r\nSubject: Re: Lunch?\r\nIn-Reply-To: {issued}\r\n\
         References: {issued}\r\nMessage-ID: <reply.1@mx.mail.example>\r\n\r\nYes, Friday works.\r\n"
    );
    assert_eq!(send(&svc, ANN, "joe@remailer.test", &reply).await.code, 250);
    let to_joe = wait_for("reply delivery", T, || {
        sink.delivered().into_iter().find(|d| d.rcpt_to == [JOE])
    })
    .await;
    assert!(to_joe.header("From").unwrap().contains("ann@remailer.test"));
    assert_eq!(
        to_joe.header("In-Reply-To").as_deref(),
        Some(original_id.as_str()),
        "Joe's client threads it"
    );
    assert!(!to_joe.text().contains("mail.example"), "{}", to_joe.text());
}

#[tokio::test]
async fn a_temporary_failure_is_retried_until_delivered() {
    let (svc, sink) = setup(SinkMode::Defer(2), "").await;
    assert_eq!(
        send(
            &svc,
            JOE,
            "ann@remailer.test",
            &message(JOE, "ann@remailer.test", "retry", "x")
        )
        .await
        .code,
        250
    );
    let d = wait_for("delivery after two deferrals", T, || sink.delivered().pop()).await;
    assert_eq!(d.rcpt_to, vec![ANN.to_string()]);
    assert_eq!(sink.attempts(), 3, "two 451s, then success");
    assert!(svc.log().contains("deferred"));
}

#[tokio::test]
async fn a_permanent_refusal_ends_in_a_notice_that_names_only_aliases() {
    let (svc, sink) = setup(SinkMode::Reject, "").await;
    assert_eq!(
        send(
            &svc,
            JOE,
            "ann@remailer.test",
            &message(JOE, "ann@remailer.test", "doomed", "x")
        )
        .await
        .code,
        250
    );
    let notice = wait_for("the failure notice", T, || sink.delivered().pop()).await;
    assert_eq!(notice.rcpt_to, vec![JOE.to_string()], "the sender is told");
    assert_eq!(notice.mail_from, "", "notices have a null sender");
    let text = notice.text();
    let body = notice.body_text();
    assert!(
        body.contains("Your message to ann@remailer.test was not delivered"),
        "{body}"
    );
    assert!(!text.contains(ANN), "the recipient's real address: {text}");
    assert!(
        !text.contains("secret-real-address") && !text.contains("user unknown"),
        "remote text: {text}"
    );
    assert!(text.contains("Auto-Submitted: auto-replied"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.delivered().len(), 1, "one notice, nothing else");
}

#[tokio::test]
async fn a_message_past_its_maximum_age_is_given_up_with_a_notice() {
    let (svc, sink) = setup(SinkMode::Defer(1000), "delivery.max_age = 3").await;
    assert_eq!(
        send(
            &svc,
            JOE,
            "ann@remailer.test",
            &message(JOE, "ann@remailer.test", "slow", "x")
        )
        .await
        .code,
        250
    );
    let notice = wait_for("the expiry notice", T, || sink.delivered().pop()).await;
    assert_eq!(notice.rcpt_to, vec![JOE.to_string()]);
    assert!(
        notice
            .body_text()
            .contains("could not be delivered within 1 day,"),
        "{}",
        notice.text()
    );
    let (_, out, _) = svc.cli(&["queue", "list"]);
    assert!(out.contains("0 queued"), "{out}");
}

#[tokio::test]
async fn queue_list_and_flush() {
    let (svc, sink) = setup(
        SinkMode::Defer(1000),
        "delivery.retry_base = 3600\ndelivery.retry_max = 3600",
    )
    .await;
    assert_eq!(
        send(
            &svc,
            JOE,
            "ann@remailer.test",
            &message(JOE, "ann@remailer.test", "held", "x")
        )
        .await
        .code,
        250
    );
    wait_for("first attempt", T, || (sink.attempts() >= 1).then_some(())).await;
    let (code, out, err) = svc.cli(&["queue", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("1 queued") && out.contains("ann@remailer.test"),
        "{out}"
    );
    assert!(!out.contains(ANN), "queue list shows aliases only: {out}");
    sink.set_mode(SinkMode::Accept);
    let (code, out, err) = svc.cli(&["queue", "flush"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for("delivery after flush", T, || sink.delivered().pop()).await;
}

#[tokio::test]
async fn queue_flush_without_a_running_service_says_so() {
    let svc = Service::prepare(harness::free_port(), "");
    let (code, _, err) = svc.cli(&["queue", "flush"]);
    assert_eq!(code, 1);
    assert!(err.contains("not running"), "{err}");
}

#[tokio::test]
async fn a_restart_resumes_the_queue() {
    let sink_port = harness::free_port();
    let mut svc = Service::start(sink_port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    for n in 0..3 {
        let subject = format!("queued {n}");
        assert_eq!(
            send(
                &svc,
                JOE,
                "ann@remailer.test",
                &message(JOE, "ann@remailer.test", &subject, "x")
            )
            .await
            .code,
            250
        );
    }
    assert_eq!(svc.terminate().await, Some(0), "clean exit on SIGTERM");
    let sink = Sink::start_on(sink_port, SinkMode::Accept).await;
    svc.spawn().await;
    wait_for("all three after restart", T, || {
        (sink.delivered().len() == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_a_session_in_flight_finish() {
    let (mut svc, sink) = setup(SinkMode::Accept, "").await;
    let mut c = Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    assert_eq!(c.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    let msg = harness::client::dot_stuff(&message(JOE, "ann@remailer.test", "in flight", "half"));
    let (a, b) = msg.split_at(msg.len() / 2);
    c.send_raw(a.as_bytes()).await;
    let pid = svc.pid().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", svc.smtp_port))
            .await
            .is_err(),
        "no new connections after SIGTERM"
    );
    c.send_raw(b.as_bytes()).await;
    c.send_raw(b".\r\n").await;
    assert_eq!(
        c.read_reply().await.code,
        250,
        "the message in flight is accepted"
    );
    c.cmd("QUIT").await;
    let status = svc.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(
        status,
        Some(0),
        "clean exit after the session; log:\n{}",
        svc.log()
    );
    // Accepted means not lost: delivered before the exit, or delivered after a restart.
    svc.spawn().await;
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert_eq!(d.header("Subject").as_deref(), Some("in flight"));
}

#[tokio::test]
async fn signed_messages_are_refused_with_an_explanation() {
    let (svc, sink) = setup(SinkMode::Accept, "").await;
    let signed = format!(
        "From: <{JOE}>\r\nTo: <ann@remailer.test>\r\nSubject: signed\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=\"S\"\r\n\r\n\
         --S\r\nContent-Type: text/plain\r\n\r\nSigned words.\r\n--S\r\nContent-Type: application/pgp-signature\r\n\r\n\
         -----BEGIN PGP SIGNATURE-----\r\niQEzBAEBCAAdFiEE\r\n-----END PGP SIGNATURE-----\r\n--S--\r\n"
    );
    let r = send(&svc, JOE, "ann@remailer.test", &signed).await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.text.starts_with("5.7.1") && r.text.contains("signed"),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.delivered().is_empty());

    // With policy.strip_signatures the signature is removed and the text goes through.
    let (svc, sink) = setup(SinkMode::Accept, "policy.strip_signatures = true").await;
    assert_eq!(
        send(&svc, JOE, "ann@remailer.test", &signed).await.code,
        250
    );
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert!(
        d.body_text().contains("Signed words.") && !d.text().contains("PGP SIGNATURE"),
        "{}",
        d.text()
    );
}

#[tokio::test]
async fn mail_that_cannot_be_scrubbed_is_refused_with_5_6_and_never_delivered() {
    let (svc, sink) = setup(SinkMode::Accept, "policy.strip_signatures = true").await;
    let head =
        format!("From: Joe Smith <{JOE}>\r\nTo: <ann@remailer.test>\r\nMIME-Version: 1.0\r\n");
    // The name sits base64-encoded in parts of a multipart whose boundary (a folded RFC 2231
    // continuation) never appears; a piece of a split message; an encrypted forward.
    let lost = format!(
        "{head}Subject: lost\r\nContent-Type: multipart/mixed;\r\n\tboundary*0=\"=_a\";\r\n\tboundary*1=\"b\"\r\n\r\n\
         --=_x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nSm9lIFNtaXRo\r\n--=_x--\r\n"
    );
    let partial = format!(
        "{head}Subject: part 1\r\nContent-Type: message/partial; id=\"a@b\"; number=1; total=2\r\n\r\n\
         From: Joe Smith <{JOE}>\r\nSubject: whole\r\n\r\nfirst half\r\n"
    );
    let encrypted = format!(
        "{head}Subject: fwd\r\nContent-Type: multipart/mixed; boundary=O\r\n\r\n--O\r\n\
         Content-Type: message/rfc822\r\n\r\nFrom: <{ANN}>\r\nContent-Type: multipart/encrypted;\r\n \
         protocol=\"application/pgp-encrypted\"; boundary=I\r\n\r\n--I\r\n\
         Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--I--\r\n--O--\r\n"
    );
    for (data, status, words) in [
        (&lost, "5.6.0", "MIME structure"),
        (&partial, "5.6.1", "message/partial"),
        (&encrypted, "5.6.1", "encrypted"),
    ] {
        let r = send(&svc, JOE, "ann@remailer.test", data).await;
        assert_eq!(r.code, 550, "{r:?}");
        assert!(
            r.text.starts_with(status) && r.text.contains(words),
            "{r:?}"
        );
        assert!(!r.text.contains("real.example"), "{r:?}");
    }
    // Ordinary mail still goes through, and it is the only thing that arrives.
    let plain = format!("{head}Subject: plain\r\n\r\nHello from Joe Smith.\r\n");
    assert_eq!(send(&svc, JOE, "ann@remailer.test", &plain).await.code, 250);
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    assert_eq!(d.header("Subject").as_deref(), Some("plain"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().len(), 1, "only the plain message arrives");
}

#[tokio::test]
async fn our_own_mail_coming_back_is_dropped() {
    let (svc, sink) = setup(SinkMode::Accept, "").await;
    assert_eq!(
        send(
            &svc,
            JOE,
            "ann@remailer.test",
            &message(JOE, "ann@remailer.test", "once", "x")
        )
        .await
        .code,
        250
    );
    let out = wait_for("delivery", T, || sink.delivered().pop()).await;
    // Ann's mail system sends the very message back (a forwarding loop): same Message-ID.
    let looped = out
        .text()
        .replacen("From: <joe@remailer.test>", &format!("From: <{ANN}>"), 1);
    let r = send(&svc, ANN, "joe@remailer.test", &looped).await;
    assert_eq!(
        r.code, 250,
        "accepted and dropped, so the loop ends here: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.delivered().len(), 1, "nothing more was sent");
    assert!(svc.log().contains("loop"), "{}", svc.log());
}

#[tokio::test]
async fn thread_links_expire_with_the_configured_retention() {
    let (svc, sink) = setup(SinkMode::Accept, "privacy.thread_map_days = 0").await;
    let first = message(JOE, "ann@remailer.test", "Lunch?", "Lunch on Friday?");
    assert_eq!(send(&svc, JOE, "ann@remailer.test", &first).await.code, 250);
    let issued = wait_for("delivery", T, || sink.delivered().pop())
        .await
        .header("Message-ID")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = format!("From: <{ANN}>\r\nTo: <joe@remailer.test>\r\nSubject: Re\r\nIn-Reply-To: {issued}\r\n\r\nYes.\r\n");
    assert_eq!(send(&svc, ANN, "joe@remailer.test", &reply).await.code, 250);
    let to_joe = wait_for("reply", T, || {
        sink.delivered().into_iter().find(|d| d.rcpt_to == [JOE])
    })
    .await;
    let parent = to_joe.header("In-Reply-To").unwrap();
    assert!(
        parent.ends_with("@remailer.test>") && parent != issued,
        "expired: mapped to an opaque ID, not the original: {parent}"
    );
    assert!(!parent.contains("real.example"));
}
