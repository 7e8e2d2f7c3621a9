//! The web forms over real HTTP against the real binary: every route, every bad input, the
//! security headers, and the register and remove flows with the confirmation mail caught at
//! the sink and its link followed.

mod harness;

use std::time::Duration;

use harness::web::{confirm_token, csrf_of, field_value, start, Answer};
use harness::{Service, Sink, WebClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANN: &str = "ann.lee@real.example";

fn aliases(svc: &Service) -> String {
    let (code, out, err) = svc.cli(&["alias", "list"]);
    assert_eq!(code, 0, "{err}");
    out
}

/// The service's own SQLite database, opened next to it (WAL mode allows that).
async fn db_pool(svc: &Service) -> sqlx::SqlitePool {
    let db = svc.dir.join("data/remailer.db");
    sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

fn assert_headers(path: &str, a: &Answer) {
    assert_eq!(
        a.header("content-security-policy"),
        Some("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        "CSP on {path} ({})",
        a.status
    );
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{path}");
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    if a.header("content-type")
        .unwrap_or("")
        .starts_with("text/html")
    {
        assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
        let lower = a.body.to_lowercase();
        assert!(!lower.contains("<script"), "{path} holds a script");
        for attr in [
            "src=\"http",
            "href=\"http",
            "href=\"//",
            "src=\"//",
            "action=\"http",
        ] {
            assert!(!lower.contains(attr), "{path} loads from elsewhere: {attr}");
        }
        assert!(
            lower.contains("<link rel=\"stylesheet\" href=\"/style.css\">"),
            "{path}"
        );
        assert!(
            !lower.contains("panicked") && !lower.contains("src/"),
            "{path}"
        );
    }
}

/// Registers `alias` for `address` on the form; returns the confirmation link's token.
async fn register(web: &WebClient, sink: &Sink, alias: &str, address: &str) -> String {
    let before = sink.mails_to(address).len();
    let a = web
        .submit("/register", &[("alias", alias), ("address", address)])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Check your mailbox"), "{}", a.body);
    let mail = sink.nth_mail(address, before + 1).await;
    confirm_token(&mail.body_text()).expect("the mail carries a confirmation link")
}

/// Opens a confirmation link and presses its button.
async fn press(web: &WebClient, token: &str) -> Answer {
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    web.post(&path, &[("csrf", &csrf)]).await
}

#[tokio::test]
async fn every_route_answers_with_the_security_headers() {
    let (svc, _sink, web) = start("").await;
    svc.add_alias("bob", "bob@real.example");
    let home = web.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("mostly anonymous"), "{}", home.body);
    assert!(home.body.contains("The operator of this service"));
    assert!(home.body.contains("href=\"/register\"") && home.body.contains("href=\"/remove\""));
    let health = web.get("/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let css = web.get("/style.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    let forged = [("csrf", "1-00")];
    let cases: Vec<(&str, Answer, u16)> = vec![
        ("/", home, 200),
        ("/healthz", health, 200),
        ("/style.css", css, 200),
        ("/register", web.get("/register").await, 200),
        ("/remove", web.get("/remove").await, 200),
        ("/nowhere", web.get("/nowhere").await, 404),
        (
            "DELETE /register",
            web.request("DELETE", "/register").await,
            405,
        ),
        ("PUT /", web.request("PUT", "/").await, 405),
        ("POST /healthz", web.post("/healthz", &[]).await, 405),
        (
            "POST /register forged",
            web.post("/register", &forged).await,
            403,
        ),
        (
            "POST /remove forged",
            web.post("/remove", &forged).await,
            403,
        ),
        (
            "GET /confirm/bad",
            web.get("/confirm/not-a-token").await,
            410,
        ),
        (
            "GET /confirm/unknown",
            web.get(&format!("/confirm/{}", "ab".repeat(32))).await,
            410,
        ),
        (
            "POST /confirm forged",
            web.post(&format!("/confirm/{}", "ab".repeat(32)), &forged)
                .await,
            403,
        ),
        (
            "POST /register big",
            web.post_oversized("/register", vec![b'a'; 200_000]).await,
            413,
        ),
        (
            "POST /register json",
            web.post_raw("/register", "application/json", b"{}".to_vec())
                .await,
            415,
        ),
        (
            "POST /register alias taken",
            web.submit("/register", &[("alias", "bob"), ("address", "x@y.example")])
                .await,
            409,
        ),
        (
            "POST /register bad",
            web.submit("/register", &[("alias", "a b"), ("address", "x")])
                .await,
            422,
        ),
    ];
    for (what, answer, status) in &cases {
        assert_eq!(answer.status, *status, "{what}: {}", answer.body);
        assert_headers(what, answer);
    }
    let not_allowed = &cases[6].1;
    assert_eq!(not_allowed.header("allow"), Some("GET,HEAD,POST"));
    assert!(not_allowed.body.contains("Method not allowed"));
    assert!(cases[9].1.body.contains("Form expired"));
    assert!(cases[14].1.body.contains("Too large"));
    assert!(cases[11].1.body.contains("does not work any more"));
}

#[tokio::test]
async fn bad_fields_are_explained_next_to_the_field_and_the_form_is_refilled() {
    let (_svc, sink, web) = start("").await;
    // (fields, the field with the error, the reason)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("alias", "a b"), ("address", ANN)],
            "alias",
            "may contain only",
        ),
        (
            &[("alias", "postmaster"), ("address", ANN)],
            "alias",
            "reserved",
        ),
        (
            &[("alias", &"x".repeat(65)), ("address", ANN)],
            "alias",
            "1 to 64 characters",
        ),
        (
            &[("alias", "ann@other.example"), ("address", ANN)],
            "alias",
            "must be at remailer.test",
        ),
        (
            &[("alias", "ann"), ("address", "not-an-address")],
            "address",
            "not a valid email address",
        ),
        (
            &[("alias", "ann"), ("address", "")],
            "address",
            "enter your email address",
        ),
        (
            &[("alias", "ann"), ("address", "me@remailer.test")],
            "address",
            "service's own domain",
        ),
        (
            &[
                ("alias", "ann"),
                ("address", ANN),
                ("display_name", "Ann <x@y>"),
            ],
            "display_name",
            "may not contain",
        ),
        (
            &[("alias", ""), ("address", ANN)],
            "alias",
            "1 to 64 characters",
        ),
    ];
    for (fields, field, reason) in cases {
        let a = web.submit("/register", fields).await;
        assert_eq!(a.status, 422, "{fields:?}: {}", a.body);
        let error = format!("<span class=\"error\" id=\"{field}-error\">");
        let at = a
            .body
            .find(&error)
            .unwrap_or_else(|| panic!("{fields:?}: no error at {field}: {}", a.body));
        let next = &a.body[at..];
        assert!(
            next[..next.find("</span>").unwrap()].contains(reason),
            "{fields:?}: {next}"
        );
        assert!(
            next.contains(&format!("name=\"{field}\"")),
            "the error sits before its field"
        );
        for (name, value) in fields.iter() {
            let expect = value.replace('<', "&lt;").replace('>', "&gt;");
            assert_eq!(
                field_value(&a.body, name).as_deref(),
                Some(expect.as_str()),
                "{name} refilled"
            );
        }
        assert!(
            a.body.contains("name=\"csrf\""),
            "a fresh CSRF token to submit again"
        );
    }
    let a = web.submit("/remove", &[("address", "nope")]).await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("not a valid email address"));
    assert_eq!(field_value(&a.body, "address").as_deref(), Some("nope"));
    // a missing, forged or stale CSRF token is refused and changes nothing
    for token in [
        "",
        "garbage",
        "0-0123456789abcdef0123456789abcdef",
        "ffffffffff-0123456789abcdef0123456789abcdef",
    ] {
        let a = web
            .post(
                "/register",
                &[("alias", "ann"), ("address", ANN), ("csrf", token)],
            )
            .await;
        assert_eq!(a.status, 403, "{token}");
    }
    // a token of one form does not work for another
    let remove_token = csrf_of(&web.get("/remove").await.body);
    let a = web
        .post(
            "/register",
            &[("alias", "ann"), ("address", ANN), ("csrf", &remove_token)],
        )
        .await;
    assert_eq!(a.status, 403);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.delivered().is_empty(), "no bad request sent a mail");
}

#[tokio::test]
async fn register_confirm_from_the_mailed_link_and_welcome() {
    let (mut svc, sink, web) = start("").await;
    let a = web
        .submit(
            "/register",
            &[("alias", "Ann"), ("address", ANN), ("display_name", "Ann")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mail = sink.nth_mail(ANN, 1).await;
    assert!(
        mail.header("DKIM-Signature").is_some(),
        "signed like every mail"
    );
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    let body = mail.body_text();
    assert!(body.contains("ann@remailer.test"), "{body}");
    assert!(body.contains("https://remailer.test/confirm/"), "{body}");
    let token = confirm_token(&body).unwrap();
    assert_eq!(token.len(), 64, "256 random bits");

    // following the link shows a button and changes nothing
    let path = format!("/confirm/{token}");
    for _ in 0..2 {
        let page = web.get(&path).await;
        assert_eq!(page.status, 200);
        assert_headers(&path, &page);
        assert!(page.body.contains("ann@remailer.test"), "{}", page.body);
        assert!(
            page.body.contains(&format!("action=\"{path}\"")),
            "{}",
            page.body
        );
        assert!(page
            .body
            .contains("<button type=\"submit\">Activate</button>"));
    }
    assert!(!aliases(&svc).contains("ann@"), "a GET activated the alias");
    // the button without the form's CSRF token does nothing
    assert_eq!(web.post(&path, &[]).await.status, 403);
    assert!(!aliases(&svc).contains("ann@"));

    let page = web.get(&path).await;
    let done = web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("is active"), "{}", done.body);
    assert_headers(&path, &done);
    assert!(
        aliases(&svc).contains(&format!("ann@remailer.test\t{ANN}\tactive")),
        "{}",
        aliases(&svc)
    );

    let welcome = sink.nth_mail(ANN, 2).await;
    let text = welcome.body_text();
    assert!(welcome.header("Subject").unwrap().contains("is active"));
    assert!(
        text.contains("How to use it") && text.contains("https://remailer.test/remove"),
        "{text}"
    );
    assert!(welcome.header("DKIM-Signature").is_some());

    // the link works once; afterwards it says what to do
    let again = web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(again.status, 410);
    assert!(again.body.contains("already used") && again.body.contains("href=\"/register\""));
    assert_eq!(web.get(&path).await.status, 410);

    // the store holds the token only as a keyed hash; the logs hold neither token nor address
    svc.terminate().await;
    let db = std::fs::read(svc.dir.join("data/remailer.db")).unwrap();
    let wal = std::fs::read(svc.dir.join("data/remailer.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        let s = String::from_utf8_lossy(&bytes);
        assert!(!s.contains(&token) && !s.contains(ANN));
    }
    let log = svc.log();
    assert!(log.contains("web listening"), "{log}");
    assert!(
        !log.contains(&token) && !log.contains("real.example"),
        "{log}"
    );
}

#[tokio::test]
async fn a_member_address_and_a_stranger_get_the_same_page() {
    let (svc, sink, web) = start("").await;
    svc.add_alias("bob", "bob@real.example");
    let member = web
        .submit(
            "/register",
            &[("alias", "robert"), ("address", "bob@real.example")],
        )
        .await;
    let stranger = web
        .submit(
            "/register",
            &[("alias", "carol"), ("address", "carol@real.example")],
        )
        .await;
    assert_eq!((member.status, stranger.status), (200, 200));
    assert_eq!(
        member.body, stranger.body,
        "nobody can tell a member from the page"
    );
    let note = sink.nth_mail("bob@real.example", 1).await;
    let text = note.body_text();
    assert!(
        text.contains("already has an alias: bob@remailer.test"),
        "{text}"
    );
    assert!(confirm_token(&text).is_none(), "no link for a second alias");
    sink.nth_mail("carol@real.example", 1).await;
    let r1 = web
        .submit("/remove", &[("address", "bob@real.example")])
        .await;
    let r2 = web
        .submit("/remove", &[("address", "nobody@real.example")])
        .await;
    assert_eq!((r1.status, r1.body.as_str()), (r2.status, r2.body.as_str()));
    sink.nth_mail("bob@real.example", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sink.mails_to("nobody@real.example").is_empty(),
        "no mail for a non-member"
    );
}

#[tokio::test]
async fn taken_pending_and_removed_names_are_reported_on_the_form() {
    let (svc, sink, web) = start("").await;
    svc.add_alias("bob", "bob@real.example");
    let taken = web
        .submit(
            "/register",
            &[("alias", "bob"), ("address", "other@real.example")],
        )
        .await;
    assert_eq!(taken.status, 409);
    assert!(taken.body.contains("already taken"), "{}", taken.body);
    assert_eq!(
        field_value(&taken.body, "address").as_deref(),
        Some("other@real.example")
    );

    // a pending registration holds its name, on the web and in the CLI
    register(&web, &sink, "carl", "carl@real.example").await;
    let held = web
        .submit(
            "/register",
            &[("alias", "carl"), ("address", "mallory@real.example")],
        )
        .await;
    assert_eq!(held.status, 409);
    assert!(
        held.body.contains("waiting for confirmation"),
        "{}",
        held.body
    );
    let (code, _, err) = svc.cli(&["alias", "add", "carl", "x@real.example"]);
    assert_ne!(code, 0);
    assert!(err.contains("waiting for confirmation"), "{err}");

    // a name removed in the CLI is never given out again
    let (code, _, err) = svc.cli(&["alias", "remove", "bob"]);
    assert_eq!(code, 0, "{err}");
    let removed = web
        .submit(
            "/register",
            &[("alias", "bob"), ("address", "new@real.example")],
        )
        .await;
    assert_eq!(removed.status, 409);
    assert!(
        removed.body.contains("never given out again"),
        "{}",
        removed.body
    );
    let (code, _, err) = svc.cli(&["alias", "add", "bob", "new@real.example"]);
    assert_ne!(code, 0);
    assert!(err.contains("never given out again"), "{err}");
}

#[tokio::test]
async fn removal_is_confirmed_by_mail_and_the_name_is_never_reused() {
    let (svc, sink, web) = start("").await;
    let token = register(&web, &sink, "ann", ANN).await;
    assert_eq!(press(&web, &token).await.status, 200);
    sink.nth_mail(ANN, 2).await; // welcome

    // Ann writes to Bob: the store now holds a thread link from her message
    svc.add_alias("bob", "bob@real.example");
    let mut c = harness::Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    let msg = harness::message(ANN, "bob@remailer.test", "Hi", "Hello Bob");
    let r = c.send_mail(ANN, &["bob@remailer.test"], &msg).await;
    assert_eq!(r.code, 250, "{r:?}");
    sink.nth_mail("bob@real.example", 1).await;
    let links_of_ann = "SELECT COUNT(*) FROM thread_map WHERE alias_id = (SELECT id FROM aliases WHERE name = 'ann')";
    let db = db_pool(&svc).await;
    let mut links = 0;
    for _ in 0..100 {
        links = sqlx::query_scalar::<_, i64>(links_of_ann)
            .fetch_one(&db)
            .await
            .unwrap();
        if links > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(links, 1, "the thread link names its writer");

    let a = web.submit("/remove", &[("address", ANN)]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("Check your mailbox"));
    let mail = sink.nth_mail(ANN, 3).await;
    let text = mail.body_text();
    assert!(
        text.contains("remove your alias ann@remailer.test"),
        "{text}"
    );
    let token = confirm_token(&text).unwrap();
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    assert!(
        page.body
            .contains("<button type=\"submit\">Remove</button>"),
        "{}",
        page.body
    );
    assert!(aliases(&svc).contains("ann@"), "a GET removed the alias");
    let done = web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("is removed"));
    assert!(!aliases(&svc).contains("ann@"));
    assert_eq!(
        web.post(&path, &[("csrf", &csrf_of(&page.body))])
            .await
            .status,
        410
    );
    // nothing of Ann is left: no thread link, no pending link, the name is only retired
    for (table, query) in [
        ("thread_map", "SELECT COUNT(*) FROM thread_map"),
        (
            "pending",
            "SELECT COUNT(*) FROM pending WHERE alias = 'ann'",
        ),
        ("aliases", "SELECT COUNT(*) FROM aliases WHERE name = 'ann'"),
    ] {
        let n = sqlx::query_scalar::<_, i64>(query)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} still holds something of Ann");
    }
    let retired =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM removed_aliases WHERE name = 'ann'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(retired, 1);

    // mail to the old alias is refused, and nobody can have the name again
    let mut c = harness::Client::connect(svc.smtp_port).await;
    c.cmd("EHLO client.example").await;
    c.cmd("MAIL FROM:<x@real.example>").await;
    assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 550);
    let again = web
        .submit(
            "/register",
            &[("alias", "ann"), ("address", "stranger@real.example")],
        )
        .await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("never given out again"));
    let (code, _, err) = svc.cli(&["alias", "add", "ann", "stranger@real.example"]);
    assert_ne!(code, 0, "{err}");
    // the old address may register a new name
    let token = register(&web, &sink, "ann2", ANN).await;
    assert_eq!(press(&web, &token).await.status, 200);
    assert!(aliases(&svc).contains("ann2@remailer.test"));
}

#[tokio::test]
async fn an_expired_link_gives_a_clear_page_and_frees_the_name() {
    let (svc, sink, web) = start("").await;
    let token = register(&web, &sink, "dora", "dora@real.example").await;
    let pool = db_pool(&svc).await;
    let n = sqlx::query("UPDATE pending SET expires_at = 1")
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1);
    pool.close().await;
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("has expired"), "{}", page.body);
    // pressing the button anyway (with a valid form token from a live link) does nothing
    let form_token = {
        let t = register(&web, &sink, "eve", "eve@real.example").await;
        csrf_of(&web.get(&format!("/confirm/{t}")).await.body)
    };
    assert_eq!(web.post(&path, &[("csrf", &form_token)]).await.status, 410);
    assert!(!aliases(&svc).contains("dora@"));
    // the expired hold is gone: someone else may take the name
    register(&web, &sink, "dora", "dora2@real.example").await;
}

#[tokio::test]
async fn one_address_gets_only_a_few_confirmation_mails_a_day() {
    let (_svc, sink, web) = start("web.mails_per_address_day = 3").await;
    let victim = "victim@real.example";
    for i in 0..6 {
        let alias = format!("bomb{i}");
        let a = web
            .submit("/register", &[("alias", &alias), ("address", victim)])
            .await;
        assert_eq!(a.status, 200, "the page is the same over the limit");
        assert!(a.body.contains("Check your mailbox"));
    }
    for _ in 0..3 {
        let a = web.submit("/remove", &[("address", victim)]).await;
        assert_eq!(a.status, 200);
    }
    sink.nth_mail(victim, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.mails_to(victim).len(), 3, "at most 3 a day");
    // another address is not affected
    register(&web, &sink, "other", "other@real.example").await;
}

#[tokio::test]
async fn over_the_hourly_budget_the_form_answers_429() {
    let (_svc, sink, web) = start("web.mails_per_hour = 2").await;
    register(&web, &sink, "one", "one@real.example").await;
    register(&web, &sink, "two", "two@real.example").await;
    let a = web
        .submit(
            "/register",
            &[("alias", "three"), ("address", "three@real.example")],
        )
        .await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(a.body.contains("Too many requests"));
    assert_headers("429", &a);
}

#[tokio::test]
async fn slow_and_oversized_clients_are_cut_off() {
    let (mut svc, _sink, web) = start("web.request_timeout = 1").await;
    // headers that never end: the connection is closed after the timeout
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", svc.web_port))
        .await
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow client was not cut off");
    assert!(started.elapsed() < Duration::from_secs(5));
    // a connection that sends nothing at all is closed too
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", svc.web_port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the idle client was not cut off");
    assert!(started.elapsed() < Duration::from_secs(5));
    // headers larger than the limit get 431, not a crash
    let mut big = tokio::net::TcpStream::connect(("127.0.0.1", svc.web_port))
        .await
        .unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let _ = big.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), big.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // the service still answers, and stops cleanly on SIGTERM
    assert_eq!(web.get("/healthz").await.status, 200);
    assert_eq!(svc.terminate().await, Some(0), "{}", svc.log());
}

#[tokio::test]
async fn onion_location_is_sent_when_configured() {
    let (_svc, _sink, web) =
        start("web.onion_location = \"http://exampleonionaddressxyz.onion\"").await;
    let a = web.get("/register?x=1").await;
    assert_eq!(
        a.header("onion-location"),
        Some("http://exampleonionaddressxyz.onion/register?x=1")
    );
    let (_svc2, _sink2, plain) = start("").await;
    assert!(plain.get("/").await.header("onion-location").is_none());
}

#[test]
fn help_describes_the_web_forms() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("web forms"), "{text}");
    assert!(!text.contains("web UI"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("register and remove an alias, confirmed by mail"),
        "{text}"
    );
}
