//! The one-way anonymous form and recipient opt-out, over real HTTP and SMTP against the real
//! binary: the message as it arrives (footer, RFC 8058 headers, DKIM verified by dkimpy,
//! from no-reply, no Reply-To), replies to no-reply refused at RCPT, every refusal reason,
//! every limit at its threshold, opt-out through the form and through the footer's one-click
//! link, the switch, and the opt-out CLI.

mod harness;
mod support;

use std::time::Duration;

use harness::web::{start, Answer};
use harness::{Client, Service, WebClient};

const EVE: &str = "eve@outside.example";

/// Fills the one-way form like a browser.
async fn send(web: &WebClient, to: &str, subject: &str, body: &str) -> Answer {
    web.submit("/send", &[("to", to), ("subject", subject), ("body", body)])
        .await
}

/// The token of the first `/opt-out/TOKEN` link in a text.
fn opt_out_token(text: &str) -> Option<String> {
    let at = text.find("/opt-out/")? + "/opt-out/".len();
    let token: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (token.len() >= 40).then_some(token)
}

fn assert_sent(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("on its way"), "{}", a.body);
}

/// A refusal page: status, the reason shown, and the form refilled with what was typed.
fn assert_refused(a: &Answer, status: u16, reason: &str, refilled_to: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert!(a.body.contains(reason), "expected '{reason}' in {}", a.body);
    assert!(
        a.body.contains(&format!("value=\"{refilled_to}\"")),
        "form refilled: {}",
        a.body
    );
    assert!(a.body.contains("name=\"csrf\""), "the form is shown again");
}

#[tokio::test]
async fn one_way_message_arrives_signed_with_footer_and_one_click_opt_out() {
    let (svc, sink, web) = start("web.operator = \"Example Remailer Org\"").await;
    let form = web.get("/send").await;
    assert_eq!(form.status, 200);
    for field in ["name=\"to\"", "name=\"subject\"", "name=\"body\""] {
        assert!(form.body.contains(field), "{field}: {}", form.body);
    }
    assert!(form.body.contains("<label for=\"body\">"));
    assert_eq!(form.header("cache-control"), Some("no-store"));
    assert!(form
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'none'"));

    let a = send(
        &web,
        EVE,
        "A secret subject",
        "Hello Eve,\r\nsomeone likes you.",
    )
    .await;
    assert_sent(&a);
    let mail = sink.nth_mail(EVE, 1).await;
    assert!(
        mail.mail_from.starts_with("b+"),
        "VERP sender: {}",
        mail.mail_from
    );
    assert!(mail.mail_from.ends_with("@remailer.test"));
    assert_eq!(
        mail.header("From").as_deref(),
        Some("\"Anonymous web form\" <no-reply@remailer.test>")
    );
    assert!(mail.header("Reply-To").is_none(), "{}", mail.text());
    assert_eq!(mail.header("Subject").as_deref(), Some("A secret subject"));
    let body = mail.body_text();
    assert!(
        body.starts_with("Hello Eve,\r\nsomeone likes you.\r\n"),
        "{body}"
    );
    assert!(
        body.contains("sent through an anonymous web form (https://remailer.test/send), run by Example Remailer Org"),
        "{body}"
    );
    let token = opt_out_token(&body).expect("the footer has an opt-out link");
    let url = format!("https://remailer.test/opt-out/{token}");
    assert_eq!(
        mail.header("List-Unsubscribe").as_deref(),
        Some(format!("<{url}>").as_str())
    );
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let dkim = mail.header("DKIM-Signature").unwrap().to_ascii_lowercase();
    assert!(
        dkim.contains(":list-unsubscribe:") && dkim.contains(":list-unsubscribe-post"),
        "the one-click headers are signed (RFC 8058): {dkim}"
    );
    let (code, zone, err) = svc.cli(&["dns"]);
    assert_eq!(code, 0, "{err}");
    let (ok, report) = support::dkimpy::verify(&svc.dir, &mail.data, &zone);
    assert!(ok, "dkimpy: {report}");

    // Replies are refused at RCPT, with an explanation.
    let mut smtp = Client::connect(svc.smtp_port).await;
    let r = smtp
        .send_mail(
            EVE,
            &["no-reply@remailer.test"],
            "Subject: re\r\n\r\nwho?\r\n",
        )
        .await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.text.contains("5.7.1") && r.text.contains("cannot be replied to"),
        "{r:?}"
    );

    // The link: GET shows one button and changes nothing; one POST as a mail provider sends
    // it (RFC 8058, no CSRF token) opts out.
    let path = format!("/opt-out/{token}");
    let page = web.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body.matches("<button").count(), 1);
    assert!(page.body.contains(&format!("action=\"{path}\"")));
    assert_sent(&send(&web, EVE, "second", "still reaches Eve").await);
    sink.nth_mail(EVE, 2).await;
    let one_click = web
        .post_raw(
            &path,
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click".to_vec(),
        )
        .await;
    assert_eq!(one_click.status, 200, "{}", one_click.body);
    assert!(one_click.body.contains("You have opted out"));
    assert_refused(
        &send(&web, "Eve@Outside.Example", "third", "never arrives").await,
        422,
        "has asked not to receive messages",
        "Eve@Outside.Example",
    );
    assert_eq!(svc.cli(&["opt-out", "check", EVE]).0, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.mails_to(EVE).len(), 2);

    // A forged or garbled link changes nothing.
    let forged = format!("/opt-out/{}A", &token[..token.len() - 1]);
    assert_eq!(web.get(&forged).await.status, 404);
    assert_eq!(
        web.post_raw(
            &forged,
            "application/x-www-form-urlencoded",
            b"List-Unsubscribe=One-Click".to_vec()
        )
        .await
        .status,
        404
    );

    let log = svc.log();
    for secret in [
        "eve@",
        "outside.example",
        "A secret subject",
        "likes you",
        &token,
    ] {
        assert!(
            !log.to_lowercase().contains(&secret.to_lowercase()),
            "log holds {secret}:\n{log}"
        );
    }
    assert!(log.contains("one-way message queued"), "{log}");
}

#[tokio::test]
async fn each_refusal_shows_its_reason_with_the_form_refilled() {
    let (svc, sink, web) = start("web.one_way_max_body = 100").await;
    svc.add_alias("ann", "ann@real.example");
    let cases: [(&str, &str, &str, &str); 8] = [
        ("not an address", "s", "hi", "not a valid email address"),
        ("postmaster@remailer.test", "s", "hi", "except members"),
        ("nobody@remailer.test", "s", "hi", "except members"),
        ("x@sub.remailer.test", "s", "hi", "except members"),
        (EVE, "s", " \r\n ", "The message is empty"),
        (EVE, "s", &"x".repeat(101), "too long: at most 100 bytes"),
        (EVE, "two\r\nlines", "hi", "one line of at most 200"),
        (EVE, &"s".repeat(201), "hi", "one line of at most 200"),
    ];
    for (to, subject, body, reason) in cases {
        let a = send(&web, to, subject, body).await;
        assert_refused(&a, 422, reason, &to.replace('\"', "&quot;"));
    }
    // An opt-out added by the operator counts too.
    assert_eq!(svc.cli(&["opt-out", "add", EVE]).0, 0);
    assert_refused(
        &send(&web, EVE, "s", "hi").await,
        422,
        "has asked not to",
        EVE,
    );
    // A forged CSRF token is a 403, and nothing is sent.
    let forged = web
        .post(
            "/send",
            &[
                ("to", "joe@outside.example"),
                ("body", "hi"),
                ("csrf", "1-00"),
            ],
        )
        .await;
    assert_eq!(forged.status, 403);

    // A member's alias may be written to: it reaches the member, addressed to the alias.
    assert_sent(&send(&web, "ann@remailer.test", "", "for the member").await);
    let mail = sink.nth_mail("ann@real.example", 1).await;
    assert_eq!(mail.header("To").as_deref(), Some("<ann@remailer.test>"));
    assert_eq!(mail.header("Subject").as_deref(), Some("(no subject)"));
    assert!(!mail.text().contains("ann@real.example"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().len(), 1, "only the message to the member");
}

#[tokio::test]
async fn per_recipient_and_global_limits_trigger_at_their_thresholds() {
    let (_svc, sink, web) = start(
        "web.one_way_per_recipient_per_day = 2\nweb.one_way_per_hour = 3\nweb.one_way_per_client_per_hour = 100",
    )
    .await;
    assert_sent(&send(&web, EVE, "1", "one").await);
    assert_sent(&send(&web, EVE, "2", "two").await);
    let third = send(&web, EVE, "3", "three").await;
    assert_refused(
        &third,
        429,
        "as many messages from this form as it may today",
        EVE,
    );
    // The refused message did not use up the global budget: one more goes out.
    assert_sent(&send(&web, "joe@outside.example", "4", "four").await);
    let fifth = send(&web, "zoe@outside.example", "5", "five").await;
    assert_refused(
        &fifth,
        429,
        "as many messages as it may this hour",
        "zoe@outside.example",
    );
    sink.nth_mail("joe@outside.example", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().len(), 3);
}

#[tokio::test]
async fn per_client_limit_triggers_at_its_threshold() {
    let (svc, sink, web) = start("web.one_way_per_client_per_hour = 2").await;
    assert_sent(&send(&web, "a@outside.example", "", "one").await);
    assert_sent(&send(&web, "b@outside.example", "", "two").await);
    let third = send(&web, "c@outside.example", "", "three").await;
    assert_eq!(third.status, 429, "{}", third.body);
    assert!(
        third.body.contains("Too many messages from you"),
        "{}",
        third.body
    );
    assert!(third.body.contains("value=\"c@outside.example\""));
    sink.nth_mail("b@outside.example", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.delivered().len(), 2);
    let log = svc.log();
    let client_lines: Vec<&str> = log
        .lines()
        // The listener lines and the first line name the configured addresses, not clients.
        .filter(|l| {
            l.contains("127.0.0.1") && !l.contains("listening") && !l.contains("starting config=")
        })
        .collect();
    assert!(
        client_lines.is_empty(),
        "client address in the log: {client_lines:?}"
    );
    assert!(log.contains("client-limit"), "{log}");
}

#[tokio::test]
async fn opt_out_through_the_form_and_its_mailed_link() {
    let (svc, sink, web) = start("").await;
    let form = web.get("/opt-out").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<label for=\"address\">"));
    let bad = web.submit("/opt-out", &[("address", "nope")]).await;
    assert_refused(&bad, 422, "not a valid email address", "nope");
    let own = web
        .submit("/opt-out", &[("address", "ann@remailer.test")])
        .await;
    assert_eq!(own.status, 422, "{}", own.body);
    let forged = web
        .post("/opt-out", &[("address", EVE), ("csrf", "1-00")])
        .await;
    assert_eq!(forged.status, 403);

    let a = web.submit("/opt-out", &[("address", EVE)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Check your mailbox"));
    let mail = sink.nth_mail(EVE, 1).await;
    assert_eq!(mail.mail_from, "", "an automatic mail: null sender");
    assert!(mail.header("DKIM-Signature").is_some());
    let token = opt_out_token(&mail.body_text()).expect("the mail has a link");
    // Not opted out until the button is pressed.
    assert_sent(&send(&web, EVE, "", "before").await);
    let path = format!("/opt-out/{token}");
    let page = web.get(&path).await;
    assert_eq!(page.status, 200);
    assert_ne!(
        svc.cli(&["opt-out", "check", EVE]).0,
        0,
        "GET changes nothing"
    );
    let pressed = web.post(&path, &[("List-Unsubscribe", "One-Click")]).await;
    assert_eq!(pressed.status, 200, "{}", pressed.body);
    assert_refused(
        &send(&web, EVE, "", "after").await,
        422,
        "has asked not to",
        EVE,
    );
    let (code, out, _) = svc.cli(&["opt-out", "count"]);
    assert_eq!((code, out.trim()), (0, "1 opted out"));

    // At most a few confirmation mails a day to one address, and the page does not say so.
    for _ in 0..3 {
        let again = web.submit("/opt-out", &[("address", EVE)]).await;
        assert_eq!(again.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let confirmations = sink
        .mails_to(EVE)
        .iter()
        .filter(|m| m.mail_from.is_empty())
        .count();
    assert_eq!(confirmations, 3, "three confirmation mails a day at most");
}

#[tokio::test]
async fn the_form_can_be_switched_off() {
    let (svc, sink, web) = start("web.one_way = false").await;
    let page = web.get("/send").await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(page.body.contains("switched off"));
    let post = web
        .post("/send", &[("to", EVE), ("body", "hi"), ("csrf", "1-00")])
        .await;
    assert_eq!(post.status, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.delivered().is_empty());
    assert!(svc.log().contains("web listening"));
}

#[tokio::test]
async fn the_operator_manages_opt_outs_on_the_command_line() {
    let svc = Service::prepare(1, "");
    let run = |args: &[&str]| svc.cli(args);
    let (code, out, err) = run(&["opt-out", "add", "Eve@Outside.Example"]);
    assert_eq!((code, out.trim()), (0, "opted out"), "{err}");
    assert_eq!(run(&["opt-out", "add", EVE]).1.trim(), "already opted out");
    assert_eq!(run(&["opt-out", "check", EVE]).0, 0);
    assert_eq!(run(&["opt-out", "count"]).1.trim(), "1 opted out");
    assert_eq!(run(&["opt-out", "remove", EVE]).0, 0);
    let (code, _, err) = run(&["opt-out", "check", EVE]);
    assert_eq!(code, 1);
    assert!(err.contains("error: not opted out"), "{err}");
    let (code, _, err) = run(&["opt-out", "remove", EVE]);
    assert_eq!(code, 1);
    assert!(err.contains("has not opted out"), "{err}");
    let (code, _, err) = run(&["opt-out", "add", "not an address"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a valid email address"), "{err}");
    assert_eq!(run(&["opt-out"]).0, 2, "usage error");
    // The database holds only a hash.
    run(&["opt-out", "add", EVE]);
    for file in ["remailer.db", "remailer.db-wal"] {
        let bytes = std::fs::read(svc.dir.join("data").join(file)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes)
            .to_lowercase()
            .contains("eve@"));
    }
}
