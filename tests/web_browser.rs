//! The web pages in a real browser (issue 9, point 9): Debian's Chromium, headless, with
//! JavaScript disabled, at 320 px (every page is also shot at a desktop width), against the
//! real `remailer` binary whose mail lands at the test sink. A person registers an alias,
//! confirms it from the mailed link, sends a one-way message, its recipient opts out through
//! the footer link, another address opts out through the form, and the alias is removed. Every
//! page is checked by [`browser::Browser::check_page`]: nothing from another origin, no
//! script, labelled fields, fits the width; screenshots land in `target/web-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/test-deps.sh`); without
//! them the test fails and says so.

mod browser;
mod harness;

use std::time::Duration;

use browser::{Browser, Page};
use harness::service::DOMAIN;
use harness::{wait_for, Delivered, Service, Sink, SinkMode};

const REAL: &str = "ann.real@mail.example";
const FRIEND: &str = "friend@elsewhere.example";
const OTHER: &str = "other@elsewhere.example";
const T: Duration = Duration::from_secs(20);
/// The policy every response carries (issue 9, point 1).
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[tokio::test]
async fn a_person_uses_every_form_in_a_real_browser_without_javascript() {
    let sink = Sink::start(SinkMode::Accept).await;
    let (svc, origin) = start_service(&sink).await;
    let mut b = Browser::start(&origin, 320).await;

    home(&mut b).await;
    register(&mut b, &svc, &sink).await;
    let used_link = confirm_registration(&mut b, &svc, &sink).await;
    key_form(&mut b, &sink).await;
    taken_alias_is_reported_on_the_form(&mut b, "register-taken").await;
    one_way_and_footer_opt_out(&mut b, &sink).await;
    opt_out_form(&mut b, &sink).await;
    remove(&mut b, &svc, &sink).await;
    taken_alias_is_reported_on_the_form(&mut b, "register-removed-name").await;

    b.open(&used_link).await;
    let used = b.check_page("confirm-used-link").await;
    assert_eq!(used.status, 410, "a used link: {}", used.text);
    b.open("/no-such-page").await;
    let missing = b.check_page("not-found").await;
    assert_eq!(missing.status, 404);
    b.close().await;

    let log = svc.log();
    for secret in [REAL, FRIEND, OTHER, "mail.example", "elsewhere.example"] {
        assert!(!log.contains(secret), "the log names {secret}:\n{log}");
    }
    let token = used_link.rsplit('/').next().unwrap();
    assert!(!log.contains(token), "the log holds a token");
}

async fn home(b: &mut Browser) {
    b.open("/").await;
    let page = b.check_page("home").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    for form in ["/register", "/remove", "/send"] {
        assert!(
            page.source.contains(&format!("href=\"{form}\"")),
            "the home page links to {form}"
        );
    }
    b.click_link("/register").await;
}

async fn register(b: &mut Browser, svc: &Service, sink: &Sink) {
    let form = b.check_page("register-form").await;
    assert_eq!(form.status, 200);
    assert_no_store(&form);
    b.fill("alias", "ann").await;
    b.fill("address", REAL).await;
    b.fill("display_name", "Ann").await;
    b.submit(Some("alias")).await;
    let sent = b.check_page("register-sent").await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert!(
        sent.text.to_lowercase().contains("mailbox"),
        "{}",
        sent.text
    );
    wait_mails(sink, REAL, 1).await;
    assert_ne!(alias_state(svc, "ann").as_deref(), Some("active"));
}

/// Follows the mailed link (a GET that changes nothing), presses the button; returns the link.
async fn confirm_registration(b: &mut Browser, svc: &Service, sink: &Sink) -> String {
    let mail = wait_mails(sink, REAL, 1).await.remove(0);
    let link = link_in(&mail, &b.origin, "/confirm/");
    b.open(&link).await;
    let ask = b.check_page("register-confirm").await;
    assert_eq!(ask.status, 200);
    assert_no_store(&ask);
    assert!(ask.text.contains(&format!("ann@{DOMAIN}")), "{}", ask.text);
    assert_ne!(
        alias_state(svc, "ann").as_deref(),
        Some("active"),
        "opening the link changed something"
    );
    b.submit(None).await;
    let done = b.check_page("register-active").await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(alias_state(svc, "ann").as_deref(), Some("active"));
    let welcome = wait_mails(sink, REAL, 2).await.remove(1);
    assert!(
        welcome.body_text().contains(&format!("ann@{DOMAIN}")),
        "welcome mail: {}",
        welcome.text()
    );
    link
}

/// The OpenPGP key form: a key that is not one is refused next to the field, with the
/// address kept; a real one (GnuPG-made, `tests/fixtures/pgp/member.asc`) is accepted and
/// the confirmation link is mailed encrypted to it (the member has no key yet).
async fn key_form(b: &mut Browser, sink: &Sink) {
    b.open("/key").await;
    let form = b.check_page("key-form").await;
    assert_eq!(form.status, 200);
    b.fill("address", REAL).await;
    b.fill("pgp_key", "not an OpenPGP key").await;
    b.submit(Some("address")).await;
    let refused = b.check_page("key-refused").await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(b.value("address").await, REAL);
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pgp/member.asc"
    ))
    .unwrap();
    b.fill("pgp_key", &key).await;
    b.submit(Some("address")).await;
    let sent = b.check_page("key-sent").await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert!(
        sent.text.to_lowercase().contains("mailbox"),
        "{}",
        sent.text
    );
    let mail = wait_mails(sink, REAL, 3).await.remove(2);
    assert!(
        mail.text().contains("-----BEGIN PGP MESSAGE-----") && !mail.text().contains("/confirm/"),
        "the key change link goes encrypted to the new key: {}",
        mail.text()
    );
}

/// A taken (or removed) alias is reported next to the field, with the form refilled.
async fn taken_alias_is_reported_on_the_form(b: &mut Browser, name: &str) {
    b.open("/register").await;
    b.check_page(&format!("{name}-form")).await;
    b.fill("alias", "ann").await;
    b.fill("address", OTHER).await;
    b.submit(Some("alias")).await;
    let page = b.check_page(name).await;
    assert_eq!(page.status, 409, "{}", page.text);
    assert_eq!(b.value("alias").await, "ann");
    assert_eq!(b.value("address").await, OTHER);
}

async fn one_way_and_footer_opt_out(b: &mut Browser, sink: &Sink) {
    b.open("/send").await;
    let form = b.check_page("send-form").await;
    assert_eq!(form.status, 200);
    assert_no_store(&form);
    send(b, FRIEND, "A note", "Hello from nobody.\nSecond line.").await;
    let sent = b.check_page("send-done").await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let mail = wait_mails(sink, FRIEND, 1).await.remove(0);
    assert!(mail.body_text().contains("Hello from nobody."));
    assert!(mail.header("DKIM-Signature").is_some());
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let from = mail.header("From").unwrap_or_default();
    assert!(from.contains(&format!("@{DOMAIN}")), "From: {from}");

    // The footer's link is the proof of receipt: one page, one button.
    let link = link_in(&mail, &b.origin, "/opt-out/");
    b.open(&link).await;
    let ask = b.check_page("opt-out-footer-confirm").await;
    assert_eq!(ask.status, 200, "{}", ask.text);
    b.submit(None).await;
    let done = b.check_page("opt-out-footer-done").await;
    assert_eq!(done.status, 200, "{}", done.text);

    b.open("/send").await;
    b.check_page("send-form-again").await;
    send(b, FRIEND, "Again", "Once more.").await;
    let refused = b.check_page("send-refused-opted-out").await;
    assert!(
        (400..500).contains(&refused.status),
        "{}: {}",
        refused.status,
        refused.text
    );
    assert_eq!(b.value("to").await, FRIEND, "the form is refilled");
    assert_eq!(b.value("body").await, "Once more.");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sink.mails_to(FRIEND).len(),
        1,
        "an opted-out address got mail"
    );
}

async fn send(b: &Browser, to: &str, subject: &str, body: &str) {
    b.fill("to", to).await;
    b.fill("subject", subject).await;
    b.fill("body", body).await;
    b.submit(Some("body")).await;
}

async fn opt_out_form(b: &mut Browser, sink: &Sink) {
    b.open("/opt-out").await;
    let form = b.check_page("opt-out-form").await;
    assert_eq!(form.status, 200);
    b.fill("address", OTHER).await;
    b.submit(Some("address")).await;
    let sent = b.check_page("opt-out-sent").await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let mail = wait_mails(sink, OTHER, 1).await.remove(0);
    let link = link_in(&mail, &b.origin, "/opt-out/");
    b.open(&link).await;
    b.check_page("opt-out-confirm").await;
    b.submit(None).await;
    let done = b.check_page("opt-out-done").await;
    assert_eq!(done.status, 200, "{}", done.text);

    b.open("/send").await;
    b.check_page("send-form-other").await;
    send(b, OTHER, "Hi", "Hello.").await;
    let refused = b.check_page("send-refused-other").await;
    assert!((400..500).contains(&refused.status), "{}", refused.text);
    assert_eq!(sink.mails_to(OTHER).len(), 1, "only the confirmation mail");
}

async fn remove(b: &mut Browser, svc: &Service, sink: &Sink) {
    b.open("/remove").await;
    let form = b.check_page("remove-form").await;
    assert_eq!(form.status, 200);
    b.fill("address", REAL).await;
    b.submit(Some("address")).await;
    let sent = b.check_page("remove-sent").await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let mail = wait_mails(sink, REAL, 4).await.remove(3);
    assert!(
        mail.body_text().contains(&format!("ann@{DOMAIN}")),
        "the removal mail names the alias: {}",
        mail.text()
    );
    let link = link_in(&mail, &b.origin, "/confirm/");
    b.open(&link).await;
    let ask = b.check_page("remove-confirm").await;
    assert_eq!(ask.status, 200);
    assert_eq!(alias_state(svc, "ann").as_deref(), Some("active"));
    b.submit(None).await;
    let done = b.check_page("remove-done").await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_ne!(alias_state(svc, "ann").as_deref(), Some("active"));
}

fn assert_no_store(page: &Page) {
    assert_eq!(
        page.header("cache-control"),
        Some("no-store"),
        "{}",
        page.url
    );
}

/// The state `alias list` shows for `name`, if it lists it.
fn alias_state(svc: &Service, name: &str) -> Option<String> {
    let (code, out, err) = svc.cli(&["alias", "list"]);
    assert_eq!(code, 0, "alias list: {err}");
    let alias = format!("{name}@{DOMAIN}");
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split('\t').collect();
        (cols.first() == Some(&alias.as_str()) || cols.first() == Some(&name))
            .then(|| cols.last().unwrap_or(&"").to_string())
    })
}

/// Waits until `rcpt` has received `n` mails; returns them in order.
async fn wait_mails(sink: &Sink, rcpt: &str, n: usize) -> Vec<Delivered> {
    let what = format!("{n} mails to {rcpt}");
    wait_for(&what, T, || {
        let got = sink.mails_to(rcpt);
        (got.len() >= n).then_some(got)
    })
    .await
}

/// The first link in the mail's text under `origin` + `prefix`.
fn link_in(mail: &Delivered, origin: &str, prefix: &str) -> String {
    let body = mail.body_text();
    let start = format!("{origin}{prefix}");
    let at = body
        .find(&start)
        .unwrap_or_else(|| panic!("no link to {start} in:\n{body}"));
    body[at..]
        .split(|c: char| c.is_whitespace() || matches!(c, '>' | '"' | ')'))
        .next()
        .unwrap()
        .to_string()
}

/// The service with `web.public_url` on its own web port, so that mailed links lead back to it.
async fn start_service(sink: &Sink) -> (Service, String) {
    let mut svc = Service::prepare(sink.port, "");
    let origin = format!("http://127.0.0.1:{}", svc.web_port);
    let extra = format!("web.public_url = \"{origin}\"");
    let data = svc.dir.join("data");
    let config = Service::config_with_web(svc.smtp_port, svc.web_port, sink.port, &data, &extra);
    std::fs::write(&svc.config_path, config).unwrap();
    svc.spawn().await;
    (svc, origin)
}
