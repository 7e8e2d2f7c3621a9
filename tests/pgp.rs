//! Encrypted delivery (OpenPGP, RFC 3156), end to end through the real `remailer` binary:
//! keys made and used by GnuPG (an implementation independent of ours, in a temp
//! GNUPGHOME), registered through the CLI and the web form; mail sent over SMTP, decrypted
//! on the sink with `gpg --decrypt`, checked for content and leaks, and DKIM-verified with
//! dkimpy. Needs `bash scripts/test-deps.sh` (gnupg, dkimpy).

mod harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::web::{confirm_token, csrf_of, start, WebClient};
use harness::{message, Client, Delivered, Service, Sink, SinkMode};
use mail_parser::MimeHeaders;

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

/// GnuPG in its own home directory (removed, with its agent stopped, when dropped).
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        // The agent's socket path must stay short: a directory right under /tmp.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str], input: Option<&[u8]>) -> (bool, Vec<u8>, String) {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--no-tty", "--quiet"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg not found; run: bash scripts/test-deps.sh");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.unwrap_or_default().to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        (
            out.status.success(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Makes a key for `uid` (no passphrase) and returns its armored public key.
    fn key(&self, uid: &str, algo: &str, usage: &str, expire: &str, extra: &[&str]) -> String {
        let mut args = vec!["--passphrase", "", "--pinentry-mode", "loopback"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--quick-gen-key", uid, algo, usage, expire]);
        let (ok, _, err) = self.run(&args, None);
        assert!(ok, "gpg --quick-gen-key: {err}");
        let (ok, out, err) = self.run(&["--armor", "--export", uid], None);
        assert!(ok && !out.is_empty(), "gpg --export: {err}");
        String::from_utf8(out).unwrap()
    }

    /// An ordinary key (ed25519 with a cv25519 encryption subkey) that never expires.
    fn member_key(&self, uid: &str) -> String {
        self.key(uid, "future-default", "default", "never", &[])
    }

    /// Decrypts the armored block of an RFC 3156 message; panics if gpg cannot.
    fn decrypt(&self, delivered: &Delivered) -> String {
        self.try_decrypt(delivered)
            .unwrap_or_else(|err| panic!("gpg --decrypt failed: {err}\n{}", delivered.text()))
    }

    fn try_decrypt(&self, delivered: &Delivered) -> Result<String, String> {
        let block = armored_block(&delivered.text());
        let (ok, out, err) = self.run(&["--decrypt"], Some(block.as_bytes()));
        if ok {
            Ok(String::from_utf8(out).unwrap())
        } else {
            Err(err)
        }
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

fn armored_block(text: &str) -> String {
    let start = text
        .find("-----BEGIN PGP MESSAGE-----")
        .unwrap_or_else(|| panic!("no PGP message in:\n{text}"));
    let end = text[start..].find("-----END PGP MESSAGE-----").unwrap() + start + 25;
    text[start..end].to_string()
}

fn write_key(svc: &Service, name: &str, armored: &str) -> PathBuf {
    let path = svc.dir.join(name);
    std::fs::write(&path, armored).unwrap();
    path
}

fn set_key(svc: &Service, alias: &str, path: &Path) {
    let (code, out, err) = svc.cli(&["alias", "key", alias, path.to_str().unwrap()]);
    assert_eq!(code, 0, "alias key: {out}{err}");
}

/// Checks the outer message is RFC 3156 with `Subject: ...` and DKIM-verifies with dkimpy.
fn assert_rfc3156_and_signed(svc: &Service, d: &Delivered) {
    assert_eq!(d.header("Subject").as_deref(), Some("..."), "{}", d.text());
    let ct = d.header("Content-Type").unwrap();
    assert!(
        ct.starts_with("multipart/encrypted;")
            && ct.contains("protocol=\"application/pgp-encrypted\""),
        "{ct}"
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(&d.data)
        .unwrap();
    let types: Vec<String> = parsed
        .parts
        .iter()
        .map(|p| {
            p.content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        types,
        [
            "multipart/encrypted",
            "application/pgp-encrypted",
            "application/octet-stream"
        ]
    );
    assert_eq!(
        parsed.parts[1].contents(),
        b"Version: 1\r\n",
        "the version part"
    );
    let (code, zone, err) = svc.cli(&["dns"]);
    assert_eq!(code, 0, "{err}");
    let (ok, report) = support::dkimpy::verify(&svc.dir, &d.data, &zone);
    assert!(ok, "dkimpy did not verify the outer message:\n{report}");
}

/// The decoded text body of a decrypted inner entity.
fn inner_body(inner: &str) -> String {
    let parsed = mail_parser::MessageParser::default()
        .parse(inner.as_bytes())
        .expect("the inner entity parses");
    parsed
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn mail_to_a_keyed_member_arrives_encrypted_and_decrypts_with_gnupg() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let gpg = Gpg::new();
    let armored = gpg.member_key("Ann <ann@mail.example>");
    let key = write_key(&svc, "ann.asc", &armored);
    set_key(&svc, "ann", &key);
    // The store holds the key sealed: no line of its armor, in the database or its WAL.
    let line = armored
        .lines()
        .find(|l| l.len() == 64)
        .expect("a base64 line");
    for file in ["remailer.db", "remailer.db-wal"] {
        let path = svc.dir.join("data").join(file);
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            file.ends_with("-wal") || !bytes.is_empty(),
            "{path:?} is the database"
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(line) && !text.contains("mail.example"),
            "{file}"
        );
    }

    let (code, shown, _) = svc.cli(&["alias", "show", "ann"]);
    assert_eq!(code, 0);
    assert!(
        shown.contains("key\t") && !shown.contains("none"),
        "{shown}"
    );
    assert!(
        !shown.contains(ANN) && !shown.contains("mail.example"),
        "{shown}"
    );
    let (_, listed, _) = svc.cli(&["alias", "list"]);
    let ann_line = listed.lines().find(|l| l.starts_with("ann@")).unwrap();
    assert!(ann_line.contains("\tkey "), "{listed}");
    assert!(!listed
        .lines()
        .find(|l| l.starts_with("joe@"))
        .unwrap()
        .contains("key"));

    let mut c = Client::connect(svc.smtp_port).await;
    let body = "Meet me at the old mill at noon.\r\nJoe Smith <joe@real.example>";
    let msg = message(JOE, "ann@remailer.test", "The secret plan", body);
    let r = c.send_mail(JOE, &["ann@remailer.test"], &msg).await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = sink.nth_mail(ANN, 1).await;
    assert_rfc3156_and_signed(&svc, &d);
    let outer = d.text();
    for leak in [
        "secret plan",
        "old mill",
        "Joe Smith",
        "joe@real.example",
        "real.example",
    ] {
        assert!(
            !outer.contains(leak),
            "{leak} in the outer message:\n{outer}"
        );
    }
    assert_eq!(d.header("From").as_deref(), Some("<joe@remailer.test>"));

    let inner = gpg.decrypt(&d);
    assert!(inner.contains("Subject: The secret plan\r\n"), "{inner}");
    assert!(inner.contains("protected-headers=\"v1\""), "{inner}");
    assert!(inner.contains("From: <joe@remailer.test>\r\n"), "{inner}");
    assert!(inner_body(&inner).contains("Meet me at the old mill at noon."));
    for leak in ["Joe Smith", "real.example", "198.51.100.23", "ExampleMail"] {
        assert!(
            !inner.contains(leak),
            "{leak} in the decrypted message:\n{inner}"
        );
    }

    // Joe has no key: Ann's reply reaches him in clear. Removing Ann's key makes her mail
    // clear again (the service sees the CLI's change within the members cache's TTL).
    let reply = message(ANN, "joe@remailer.test", "Re: plan", "Fine.");
    assert_eq!(
        c.send_mail(ANN, &["joe@remailer.test"], &reply).await.code,
        250
    );
    let to_joe = sink.nth_mail(JOE, 1).await;
    assert_eq!(to_joe.header("Subject").as_deref(), Some("Re: plan"));
    let (code, out, err) = svc.cli(&["alias", "key", "ann", "--remove"]);
    assert_eq!(code, 0, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let msg = message(JOE, "ann@remailer.test", "In clear now", "Hello.");
    assert_eq!(
        c.send_mail(JOE, &["ann@remailer.test"], &msg).await.code,
        250
    );
    let clear = sink.nth_mail(ANN, 2).await;
    assert_eq!(clear.header("Subject").as_deref(), Some("In clear now"));
    let log = svc.log();
    assert!(!log.contains(ANN) && !log.contains("mail.example"), "{log}");
}

#[tokio::test]
async fn bad_keys_are_refused_by_the_cli_with_the_reason() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("ann", ANN);
    let gpg = Gpg::new();
    let sign_only = gpg.key("Sign <sign@mail.example>", "ed25519", "sign", "never", &[]);
    let expired = gpg.key(
        "Old <old@mail.example>",
        "future-default",
        "default",
        "1d",
        &["--faked-system-time", "20200101T000000"],
    );
    let cases = [
        (
            "junk.asc",
            "this is not a key".to_string(),
            "not an OpenPGP public key",
        ),
        ("sign.asc", sign_only, "no valid encryption subkey"),
        ("old.asc", expired, "expired"),
        ("big.asc", "x".repeat(40 * 1024), "larger than"),
    ];
    for (file, content, why) in cases {
        let path = write_key(&svc, file, &content);
        let (code, out, err) = svc.cli(&["alias", "key", "ann", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{file} accepted: {out}");
        assert!(err.contains(why), "{file}: {err}");
    }
    let (_, shown, _) = svc.cli(&["alias", "show", "ann"]);
    assert!(shown.contains("key\tnone"), "{shown}");
    let good = write_key(&svc, "good.asc", &gpg.member_key("Ann <ann@mail.example>"));
    let (code, _, err) = svc.cli(&["alias", "key", "nosuch", good.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no alias named nosuch"), "{err}");
}

#[tokio::test]
async fn web_registration_with_a_key_confirms_and_welcomes_encrypted() {
    let (svc, sink, web) = start("").await;
    svc.add_alias("joe", JOE);
    let gpg = Gpg::new();
    let sign_only = gpg.key("Sign <sign@mail.example>", "ed25519", "sign", "never", &[]);
    let expired = gpg.key(
        "Old <old@mail.example>",
        "future-default",
        "default",
        "1d",
        &["--faked-system-time", "20200101T000000"],
    );
    let big = format!(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n{}",
        "A".repeat(33 * 1024)
    );
    for (key, why) in [
        ("not a key".to_string(), "not an OpenPGP public key"),
        (sign_only, "no valid encryption subkey"),
        (expired, "has expired"),
        (big, "larger than"),
    ] {
        let a = register_with(&web, "ann", ANN, &key).await;
        assert_eq!(a.status, 422, "{}", a.body);
        assert!(a.body.contains("id=\"pgp_key-error\""), "{}", a.body);
        assert!(a.body.contains(why), "{why}: {}", a.body);
    }
    assert!(sink.mails_to(ANN).is_empty(), "a refused form mails nobody");

    let good = gpg.member_key("Ann <ann@mail.example>");
    let a = register_with(&web, "ann", ANN, &good).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let confirm = sink.nth_mail(ANN, 1).await;
    assert_rfc3156_and_signed(&svc, &confirm);
    assert!(
        confirm_token(&confirm.text()).is_none(),
        "the link is not in clear"
    );
    let inner = gpg.decrypt(&confirm);
    let token = confirm_token(&inner_body(&inner)).expect("the decrypted mail has the link");
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    let done = web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(done.status, 200, "{}", done.body);

    let welcome = sink.nth_mail(ANN, 2).await;
    assert_rfc3156_and_signed(&svc, &welcome);
    assert!(gpg.decrypt(&welcome).contains("ann@remailer.test"));
    let mut c = Client::connect(svc.smtp_port).await;
    let msg = message(JOE, "ann@remailer.test", "Welcome aboard", "Hi Ann.");
    assert_eq!(
        c.send_mail(JOE, &["ann@remailer.test"], &msg).await.code,
        250
    );
    let mail = sink.nth_mail(ANN, 3).await;
    assert_rfc3156_and_signed(&svc, &mail);
    assert!(gpg.decrypt(&mail).contains("Subject: Welcome aboard"));
}

async fn register_with(
    web: &WebClient,
    alias: &str,
    address: &str,
    key: &str,
) -> harness::web::Answer {
    web.submit(
        "/register",
        &[("alias", alias), ("address", address), ("pgp_key", key)],
    )
    .await
}

/// A key that expires a few seconds after it is registered: per `privacy.pgp_expired`,
/// a clear notice instead (the default), a refusal at DATA, or the clear message and the
/// notice. Never silent clear text.
#[tokio::test]
async fn a_key_that_expires_later_falls_back_per_config() {
    let sink = Sink::start(SinkMode::Accept).await;
    let modes = [
        "",
        "privacy.pgp_expired = \"refuse\"",
        "privacy.pgp_expired = \"plain\"",
    ];
    let mut services = Vec::new();
    for extra in modes {
        let svc = Service::start(sink.port, extra).await;
        svc.add_alias("joe", JOE);
        services.push(svc);
    }
    let gpg = Gpg::new();
    let made = Instant::now();
    let armored = gpg.key(
        "Ann <ann@mail.example>",
        "future-default",
        "default",
        "seconds=4",
        &[],
    );
    for (i, svc) in services.iter().enumerate() {
        let name = format!("ann{i}");
        svc.add_alias(&name, &format!("ann{i}@mail.example"));
        set_key(svc, &name, &write_key(svc, "ann.asc", &armored));
    }
    assert!(
        made.elapsed() < Duration::from_secs(4),
        "registered while valid"
    );
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(made.elapsed())).await;

    let send = |svc: &Service, i: usize| {
        let port = svc.smtp_port;
        async move {
            let to = format!("ann{i}@remailer.test");
            let msg = message(JOE, &to, "Expired secret", "The body nobody may read.");
            Client::connect(port)
                .await
                .send_mail(JOE, &[&to], &msg)
                .await
        }
    };
    // notice (the default): the message is withheld, a clear notice names only aliases.
    assert_eq!(send(&services[0], 0).await.code, 250);
    let notice = sink.nth_mail("ann0@mail.example", 1).await;
    assert_key_notice(&notice, "ann0@remailer.test", "not delivered");
    // refuse: the sender learns at DATA that it was not delivered.
    let r = send(&services[1], 1).await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.text.contains("5.7.1") && r.text.contains("encryption key has expired"),
        "{r:?}"
    );
    // plain: the message in clear and the notice beside it.
    assert_eq!(send(&services[2], 2).await.code, 250);
    let first = sink.nth_mail("ann2@mail.example", 2).await;
    let both = sink.mails_to("ann2@mail.example");
    let clear = both
        .iter()
        .find(|d| d.header("Subject").as_deref() == Some("Expired secret"));
    assert!(clear.is_some(), "the clear copy arrives: {}", first.text());
    let notice = both
        .iter()
        .find(|d| d.header("Subject") != Some("Expired secret".into()));
    assert_key_notice(notice.unwrap(), "ann2@remailer.test", "without encryption");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.mails_to("ann0@mail.example").len(),
        1,
        "nothing else for ann0"
    );
    assert!(
        sink.mails_to("ann1@mail.example").is_empty(),
        "nothing for ann1"
    );
    let (_, shown, _) = services[0].cli(&["alias", "show", "ann0"]);
    assert!(shown.contains("key expired\t"), "{shown}");
}

fn assert_key_notice(d: &Delivered, alias: &str, fate: &str) {
    let text = d.text();
    let from = d.header("From").unwrap_or_default();
    assert!(from.contains("<mailer-daemon@remailer.test>"), "{text}");
    let body = d.body_text();
    assert!(
        body.contains(alias) && body.contains("joe@remailer.test"),
        "{body}"
    );
    assert!(
        body.contains("has expired") && body.contains(fate),
        "{body}"
    );
    for leak in ["Expired secret", "nobody may read", JOE, "real.example"] {
        assert!(!text.contains(leak), "{leak} in the notice:\n{text}");
    }
}

/// A bounce report for a message Joe sent: the notice to Joe, who has a key, is encrypted
/// to it and, decrypted, names only aliases.
#[tokio::test]
async fn a_bounce_notice_to_a_keyed_member_arrives_encrypted() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let gpg = Gpg::new();
    set_key(
        &svc,
        "joe",
        &write_key(&svc, "joe.asc", &gpg.member_key("Joe <joe@real.example>")),
    );
    let mut c = Client::connect(svc.smtp_port).await;
    let msg = message(JOE, "ann@remailer.test", "Will bounce", "hi");
    assert_eq!(
        c.send_mail(JOE, &["ann@remailer.test"], &msg).await.code,
        250
    );
    let to_ann = sink.nth_mail(ANN, 1).await;
    assert_eq!(
        to_ann.header("Subject").as_deref(),
        Some("Will bounce"),
        "Ann has no key"
    );
    let verp = to_ann.mail_from.clone();
    let dsn = format!(
        "From: MAILER-DAEMON@mx.mail.example\r\nTo: {verp}\r\nSubject: Undelivered Mail\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{ANN}>: 550 5.1.1 User unknown\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.mail.example\r\n\r\n\
         Final-Recipient: rfc822; {ANN}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n"
    );
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.send_mail("", &[&verp], &dsn).await.code, 250);
    let notice = sink.nth_mail(JOE, 1).await;
    assert_rfc3156_and_signed(&svc, &notice);
    assert!(
        !notice.text().contains("ann@remailer.test"),
        "the alias is inside only"
    );
    let inner = gpg.decrypt(&notice);
    assert!(inner.contains("protected-headers=\"v1\""), "{inner}");
    let body = inner_body(&inner);
    assert!(body.contains("ann@remailer.test"), "{body}");
    assert!(
        !inner.contains(ANN) && !inner.contains("mx.mail.example"),
        "{inner}"
    );
}

/// Opens a mailed link and presses its button; returns the result page.
async fn press(web: &WebClient, token: &str, expect: &str) -> String {
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(expect), "{expect}: {}", page.body);
    let done = web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.body
}

/// `/key`: a member replaces the key (the link is encrypted to the current one, so only its
/// holder can swap it) and removes it (the link encrypted to the key then in use).
#[tokio::test]
async fn a_member_replaces_and_removes_the_key_on_the_web() {
    let (svc, sink, web) = start("").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let (old, new) = (Gpg::new(), Gpg::new());
    let old_key = old.member_key("Ann <ann@mail.example>");
    set_key(&svc, "ann", &write_key(&svc, "old.asc", &old_key));
    let new_key = new.member_key("Ann <ann@mail.example>");

    let a = web
        .submit("/key", &[("address", ANN), ("pgp_key", "junk")])
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("id=\"pgp_key-error\""), "{}", a.body);
    let stranger = "nobody@else.example";
    let a = web
        .submit("/key", &[("address", stranger), ("pgp_key", &new_key)])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Check your mailbox"));

    let a = web
        .submit("/key", &[("address", ANN), ("pgp_key", &new_key)])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let link = sink.nth_mail(ANN, 1).await;
    assert_rfc3156_and_signed(&svc, &link);
    assert!(
        new.try_decrypt(&link).is_err(),
        "the new key alone cannot confirm"
    );
    let token = confirm_token(&inner_body(&old.decrypt(&link))).expect("a link");
    let fingerprint = new_key_fingerprint(&new);
    let done = press(&web, &token, &fingerprint).await;
    assert!(done.contains(&fingerprint), "{done}");

    let mut c = Client::connect(svc.smtp_port).await;
    let msg = message(JOE, "ann@remailer.test", "To the new key", "Hello.");
    assert_eq!(
        c.send_mail(JOE, &["ann@remailer.test"], &msg).await.code,
        250
    );
    let mail = sink.nth_mail(ANN, 2).await;
    assert!(old.try_decrypt(&mail).is_err(), "the old key is out");
    assert!(new.decrypt(&mail).contains("Subject: To the new key"));

    let a = web
        .submit("/key", &[("address", ANN), ("pgp_key", "")])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let link = sink.nth_mail(ANN, 3).await;
    let token = confirm_token(&inner_body(&new.decrypt(&link))).expect("a link");
    press(&web, &token, "remove the OpenPGP key").await;
    let msg = message(JOE, "ann@remailer.test", "In clear again", "Hello.");
    assert_eq!(
        c.send_mail(JOE, &["ann@remailer.test"], &msg).await.code,
        250
    );
    let mail = sink.nth_mail(ANN, 4).await;
    assert_eq!(mail.header("Subject").as_deref(), Some("In clear again"));
    assert!(
        sink.mails_to(stranger).is_empty(),
        "a non-member gets no mail"
    );
    let log = svc.log();
    assert!(!log.contains(ANN) && !log.contains(&token), "{log}");
}

fn new_key_fingerprint(gpg: &Gpg) -> String {
    let (ok, out, err) = gpg.run(&["--with-colons", "--list-keys"], None);
    assert!(ok, "{err}");
    let text = String::from_utf8(out).unwrap();
    let fpr = text
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .expect("a fingerprint");
    fpr.split(':').nth(9).unwrap().to_string()
}
