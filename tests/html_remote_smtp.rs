//! `privacy.remote_content` end to end (issue 13, point 3): the newsletter-shaped HTML
//! message of `tests/fixtures/rewrite/newsletter_tracking_pixels.eml`, sent by one member to
//! another over SMTP through the real binary, arrives with its remote images, CSS `url()`s
//! and `<link>`s removed and placeholders naming the blocked hosts (the default), or with
//! them kept under `privacy.remote_content = "keep"`.

mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::{wait_for, Client, Service, Sink, SinkMode};
use mail_parser::PartType;

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

/// The HTML part of what Ann receives when Joe sends the newsletter.
async fn delivered_html(extra: &str) -> String {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    svc.add_alias("carol", "carol@corp.example");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rewrite/newsletter_tracking_pixels.eml");
    let data = String::from_utf8(std::fs::read(path).unwrap()).unwrap();
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.send_mail(JOE, &["ann@remailer.test"], &data).await;
    c.cmd("QUIT").await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("delivery", Duration::from_secs(20), || {
        sink.delivered().pop()
    })
    .await;
    assert_eq!(d.rcpt_to, vec![ANN.to_string()]);
    let msg = remailer::rewrite::parse(&d.data).expect("delivered mail parses");
    let html = msg.parts.iter().find_map(|p| match &p.body {
        PartType::Html(t) => Some(t.to_string()),
        _ => None,
    });
    html.expect("an HTML part")
}

#[tokio::test]
async fn a_newsletter_between_members_arrives_without_remote_content() {
    let html = delivered_html("").await;
    for host in [
        "open.tracker.example/o",
        "https://cdn.mcusercontent.example",
        "https://fonts.googleapis.example",
        "//static.substack.example",
        "https://img.substack.example",
        "https://fonts.mailchimp.example",
    ] {
        assert!(!html.contains(host), "{host} still loaded:\n{html}");
    }
    assert!(
        html.contains("[remote image from open.tracker.example removed]"),
        "{html}"
    );
    assert!(html.contains("[remote image from cdn.mcusercontent.example removed]"));
    assert!(html.contains("src=\"cid:") && html.contains("src=\"data:image/gif;base64,"));
    assert!(html.contains("KEEP:newsletter_tracking_pixels"));
    assert!(html.contains("mailto:joe@remailer.test"));
    let lower = html.to_lowercase();
    for secret in [
        JOE,
        ANN,
        "carol@corp.example",
        "joe smith",
        "ann lee",
        "carol diaz",
    ] {
        assert!(!lower.contains(secret), "{secret} left:\n{html}");
    }
}

#[tokio::test]
async fn with_keep_the_remote_content_arrives_as_written() {
    let html = delivered_html("privacy.remote_content = \"keep\"").await;
    assert!(html.contains("https://open.tracker.example/o/"), "{html}");
    assert!(html.contains("<link rel=\"stylesheet\" href=\"https://fonts.googleapis.example"));
    assert!(!html.contains("[remote "));
    assert!(!html.to_lowercase().contains(JOE));
}
