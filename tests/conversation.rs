//! A conversation of several replies between two members, over SMTP through the real service:
//! each side's client must be able to thread every message (its In-Reply-To names a message
//! that side has), and no provider host, real address or real name crosses over.

mod harness;

use std::time::Duration;

use harness::{wait_for, Client, Delivered, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

/// A message from `(name, address)`; `thread` is `(In-Reply-To, References)` for a reply.
fn mail(
    from: (&str, &str),
    to: &str,
    subject: &str,
    id: &str,
    thread: Option<(&str, &str)>,
    body: &str,
) -> String {
    let (from_name, from) = from;
    let mut m = format!(
        "From: {from_name} <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n"
    );
    if let Some((parent, refs)) = thread {
        m.push_str(&format!("In-Reply-To: {parent}\r\nReferences: {refs}\r\n"));
    }
    m.push_str(&format!(
        "Date: Mon, 13 Jan 2025 10:00:00 +0000\r\n\r\n{body}\r\n"
    ));
    m
}

async fn send_and_receive(
    svc: &Service,
    sink: &Sink,
    from: &str,
    to_alias: &str,
    to_real: &str,
    data: &str,
    n: usize,
) -> Delivered {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.send_mail(from, &[to_alias], data).await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("delivery", Duration::from_secs(15), || {
        let all = sink.delivered();
        (all.len() == n).then(|| all.last().cloned()).flatten()
    })
    .await;
    assert_eq!(d.rcpt_to, vec![to_real.to_string()]);
    // What identifies the *sender* must not reach the recipient (the recipient's own
    // Message-IDs coming back to them is what lets their client thread the reply).
    let sender_marks: &[&str] = if from == JOE {
        &["real.example", "Joe Smith", "laptop.joe"]
    } else {
        &["mail.example", "Ann Lee", "mx.ann"]
    };
    for leak in sender_marks {
        assert!(
            !d.text().contains(leak),
            "{leak} crossed over:\n{}",
            d.text()
        );
    }
    d
}

fn ids(header: Option<String>) -> Vec<String> {
    header
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_reply_thread_keeps_threading_on_both_sides() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let (o1, o2, o3, o4) = ("m1@laptop.joe", "m2@mx.ann", "m3@laptop.joe", "m4@mx.ann");

    // 1. Joe writes.
    let m1 = mail(
        ("Joe Smith", JOE),
        "ann@remailer.test",
        "Plans",
        o1,
        None,
        "Shall we meet?",
    );
    let at_ann1 = send_and_receive(&svc, &sink, JOE, "ann@remailer.test", ANN, &m1, 1).await;
    let i1 = at_ann1.header("Message-ID").unwrap();

    // 2. Ann replies to what she received.
    let m2 = mail(
        ("Ann Lee", ANN),
        "joe@remailer.test",
        "Re: Plans",
        o2,
        Some((&i1, &i1)),
        "Yes, Friday.",
    );
    let at_joe2 = send_and_receive(&svc, &sink, ANN, "joe@remailer.test", JOE, &m2, 2).await;
    assert_eq!(
        at_joe2.header("In-Reply-To").unwrap(),
        format!("<{o1}>"),
        "Joe's client finds his own message"
    );
    assert_eq!(ids(at_joe2.header("References")), vec![format!("<{o1}>")]);
    let i2 = at_joe2.header("Message-ID").unwrap();

    // 3. Joe replies to Ann's reply; his client lists his original and the reply he got.
    let refs3 = format!("<{o1}> {i2}");
    let m3 = mail(
        ("Joe Smith", JOE),
        "ann@remailer.test",
        "Re: Plans",
        o3,
        Some((&i2, &refs3)),
        "Noon?",
    );
    let at_ann3 = send_and_receive(&svc, &sink, JOE, "ann@remailer.test", ANN, &m3, 3).await;
    assert_eq!(
        at_ann3.header("In-Reply-To").unwrap(),
        format!("<{o2}>"),
        "Ann's client finds her reply"
    );
    let refs = ids(at_ann3.header("References"));
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert!(
        refs[0].ends_with("@remailer.test>") && !refs[0].contains("laptop"),
        "Joe's own ID is opaque: {refs:?}"
    );
    assert_eq!(refs[1], format!("<{o2}>"));
    let i3 = at_ann3.header("Message-ID").unwrap();

    // 4. Ann answers again, quoting the whole chain her client knows.
    let refs4 = format!("{i1} <{o2}> {i3}");
    let m4 = mail(
        ("Ann Lee", ANN),
        "joe@remailer.test",
        "Re: Plans",
        o4,
        Some((&i3, &refs4)),
        "Noon it is.",
    );
    let at_joe4 = send_and_receive(&svc, &sink, ANN, "joe@remailer.test", JOE, &m4, 4).await;
    assert_eq!(at_joe4.header("In-Reply-To").unwrap(), format!("<{o3}>"));
    let refs = ids(at_joe4.header("References"));
    assert_eq!(refs[0], format!("<{o1}>"), "{refs:?}");
    assert!(
        refs[1].ends_with("@remailer.test>"),
        "Ann's own ID is opaque: {refs:?}"
    );
    assert_eq!(refs[2], format!("<{o3}>"));
    // The opaque form of an ID is stable: the same original always maps to the same ID.
    assert_eq!(ids(at_joe4.header("References"))[1], {
        let again = mail(
            ("Ann Lee", ANN),
            "joe@remailer.test",
            "Re: Plans",
            "m5@mx.ann",
            Some((&i3, &format!("<{o2}>"))),
            "PS",
        );
        let d = send_and_receive(&svc, &sink, ANN, "joe@remailer.test", JOE, &again, 5).await;
        ids(d.header("References"))[0].clone()
    });
}
