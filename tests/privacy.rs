//! What the service keeps and logs, through the real binary (issue 10, points 3, 4 and 6):
//! the optional send log (off by default; aliases only; `remailer log` and its filters;
//! purged after `privacy.send_log_days`), expiring aliases (`--expires`, the web form's
//! `expires`, 550 5.1.1 at RCPT, retired like a removal, never reused), and log lines that
//! name no real domain or MX host, only keyed tags (unless `log.show_domains`).

mod harness;
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harness::web::{confirm_token, csrf_of};
use harness::{message, wait_for, Client, Delivered, Service, Sink, SinkMode, WebClient};
use support::dns_server::TestDns;
use support::signing::{publish, signed, BAD_IP, GOOD_IP};

const ANN: &str = "ann.lee@real.example";
const JOE: &str = "joe@mail.example";
const BOB: &str = "bob@other.example";
/// Every real address and domain of the members above.
const SECRETS: [&str; 6] = [
    ANN,
    JOE,
    BOB,
    "real.example",
    "mail.example",
    "other.example",
];

async fn db(svc: &Service) -> sqlx::SqlitePool {
    let db = svc.dir.join("data/remailer.db");
    sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap()
}

async fn count(pool: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn send(svc: &Service, from: &str, to: &str) -> harness::client::Reply {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(from, &[to], &message(from, to, "hello", "a few words"))
        .await;
    c.cmd("QUIT").await;
    r
}

/// The reply to `RCPT TO:<to>` after `MAIL FROM:<from>`.
async fn rcpt(svc: &Service, from: &str, to: &str) -> harness::client::Reply {
    let mut c = Client::connect(svc.smtp_port).await;
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).await.code, 250);
    let r = c.cmd(&format!("RCPT TO:<{to}>")).await;
    c.cmd("QUIT").await;
    r
}

async fn delivered(sink: &Sink, n: usize) -> Vec<Delivered> {
    wait_for(&format!("{n} deliveries"), Duration::from_secs(20), || {
        let d = sink.delivered();
        (d.len() >= n).then_some(d)
    })
    .await
}

fn assert_no_secret(what: &str, text: &str) {
    let lower = text.to_lowercase();
    for secret in SECRETS {
        assert!(!lower.contains(secret), "{what} holds {secret}:\n{text}");
    }
}

/// The database file and its WAL, as text.
fn db_bytes(svc: &Service) -> String {
    let mut all = Vec::new();
    for name in ["remailer.db", "remailer.db-wal"] {
        all.extend(std::fs::read(svc.dir.join("data").join(name)).unwrap_or_default());
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn the_send_log_is_off_by_default_and_says_so() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("ann", ANN);
    svc.add_alias("joe", JOE);
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    assert_eq!(send(&svc, ANN, "joe@remailer.test").await.code, 250);
    delivered(&sink, 2).await;
    let pool = db(&svc).await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM send_log").await, 0);
    let (code, out, err) = svc.cli(&["log"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 entries"), "{out}");
    assert!(err.contains("privacy.send_log is off"), "{err}");
    let home = WebClient::new(svc.web_port).get("/").await;
    assert!(
        home.body.contains("This service keeps no send log."),
        "{}",
        home.body
    );
}

#[tokio::test]
async fn the_send_log_holds_aliases_only_is_filtered_and_purged() {
    let sink = Sink::start(SinkMode::Accept).await;
    let mut svc = Service::start(sink.port, "privacy.send_log = true").await;
    for (name, real) in [("ann", ANN), ("joe", JOE), ("bob", BOB)] {
        svc.add_alias(name, real);
    }
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    assert_eq!(send(&svc, ANN, "joe@remailer.test").await.code, 250);
    delivered(&sink, 2).await;
    sink.set_mode(SinkMode::Reject);
    assert_eq!(send(&svc, JOE, "bob@remailer.test").await.code, 250);

    let pool = db(&svc).await;
    wait_for("three outcomes", Duration::from_secs(20), || {
        let (_, out, _) = svc.cli(&["log"]);
        (out.matches(" delivered").count() == 2 && out.matches(" failed").count() == 1)
            .then_some(())
    })
    .await;
    let rows: Vec<(String, i64, String, String, i64, String)> = sqlx::query_as(
        "SELECT queue_id, at, sender_alias, recipient_alias, size, outcome FROM send_log ORDER BY at, queue_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let mut pairs: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.2.clone(), r.3.clone(), r.5.clone()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("ann".into(), "joe".into(), "delivered".into()),
            ("joe".into(), "ann".into(), "delivered".into()),
            ("joe".into(), "bob".into(), "failed".into()),
        ]
    );
    for r in &rows {
        assert!(r.4 > 100, "size {r:?}");
        assert!((now() - r.1).abs() < 120, "time {r:?}");
        assert_no_secret("a send-log row", &format!("{r:?}"));
    }
    assert_no_secret("the database", &db_bytes(&svc));

    // remailer log, and its filters
    let (code, out, err) = svc.cli(&["log"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 entries"), "{out}");
    assert!(
        out.contains("joe@remailer.test") && out.contains("bob@remailer.test"),
        "{out}"
    );
    assert_no_secret("remailer log", &out);
    let (_, out, _) = svc.cli(&["log", "--alias", "bob"]);
    assert!(
        out.contains("1 entries") && out.contains(" failed"),
        "{out}"
    );
    let (_, out, _) = svc.cli(&["log", "--alias", "ann@remailer.test"]);
    assert!(out.contains("2 entries"), "{out}");
    let (_, out, _) = svc.cli(&["log", "--since", "1h"]);
    assert!(out.contains("3 entries"), "{out}");
    let bob_id = &rows.iter().find(|r| r.3 == "bob").unwrap().0;
    sqlx::query("UPDATE send_log SET at = ? WHERE queue_id = ?")
        .bind(now() - 3 * 3600)
        .bind(bob_id)
        .execute(&pool)
        .await
        .unwrap();
    let (_, out, _) = svc.cli(&["log", "--since", "2h"]);
    assert!(
        out.contains("2 entries") && !out.contains(bob_id.as_str()),
        "{out}"
    );
    let (_, out, _) = svc.cli(&["log", "--since", "4h", "--alias", "joe"]);
    assert!(out.contains("3 entries"), "{out}");
    for bad in ["2", "2x", "1.5h", "0m", "-1h"] {
        let (code, _, err) = svc.cli(&["log", &format!("--since={bad}")]);
        assert_eq!(code, 2, "--since {bad}: {err}");
        assert!(err.contains("--since"), "{err}");
        assert!(
            err.contains("not a duration") || err.contains("zero"),
            "{bad}: {err}"
        );
    }
    let (code, _, err) = svc.cli(&["log", "--alias", "no such!"]);
    assert_eq!(code, 1, "{err}");

    let home = WebClient::new(svc.web_port).get("/").await;
    assert!(
        home.body.contains("This service keeps a send log.") && home.body.contains("7 days"),
        "{}",
        home.body
    );

    // entries older than send_log_days (7) go at the purge (which also runs at start)
    let ann_to_joe = &rows.iter().find(|r| r.2 == "ann").unwrap().0;
    let joe_to_ann = &rows
        .iter()
        .find(|r| r.2 == "joe" && r.3 == "ann")
        .unwrap()
        .0;
    for (id, age_days) in [(ann_to_joe, 8), (joe_to_ann, 6)] {
        sqlx::query("UPDATE send_log SET at = ? WHERE queue_id = ?")
            .bind(now() - age_days * 86_400)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    svc.terminate().await;
    svc.spawn().await;
    let remaining = wait_for("the purge", Duration::from_secs(20), || {
        let (_, out, _) = svc.cli(&["log"]);
        (!out.contains(ann_to_joe.as_str())).then_some(out)
    })
    .await;
    assert!(
        remaining.contains("2 entries") && remaining.contains(joe_to_ann.as_str()),
        "{remaining}"
    );
    assert!(svc.log().contains("old send-log entries removed"));

    // removing an alias removes its entries
    let (code, _, err) = svc.cli(&["alias", "remove", "bob"]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = svc.cli(&["log"]);
    assert!(out.contains("1 entries") && !out.contains("bob@"), "{out}");
}

#[tokio::test]
async fn a_message_given_up_as_too_old_is_logged_as_expired() {
    let sink = Sink::start(SinkMode::Defer(1000)).await;
    let svc = Service::start(sink.port, "privacy.send_log = true\ndelivery.max_age = 4").await;
    svc.add_alias("ann", ANN);
    svc.add_alias("joe", JOE);
    assert_eq!(send(&svc, JOE, "ann@remailer.test").await.code, 250);
    let (_, out, _) = svc.cli(&["log"]);
    assert!(
        out.contains(" queued") && out.contains("1 entries"),
        "{out}"
    );
    let out = wait_for("the expired outcome", Duration::from_secs(20), || {
        let (_, out, _) = svc.cli(&["log"]);
        out.contains(" expired").then_some(out)
    })
    .await;
    assert!(
        out.contains("joe@remailer.test") && out.contains("ann@remailer.test"),
        "{out}"
    );
    assert!(sink.attempts() >= 1);
}

#[tokio::test]
async fn an_expired_alias_is_refused_retired_and_never_given_out_again() {
    let sink = Sink::start(SinkMode::Accept).await;
    let mut svc = Service::start(sink.port, "").await;
    svc.add_alias("ann", ANN);
    svc.add_alias("joe", JOE);
    for bad in ["abc", "30", "0d", "1y", "3651d", "1.5d", ""] {
        let (code, _, err) =
            svc.cli(&["alias", "add", "zed", "zed@real.example", "--expires", bad]);
        assert_eq!(code, 2, "--expires {bad:?}: {err}");
        assert!(err.contains("--expires"), "{err}");
    }
    let (code, _, err) = svc.cli(&[
        "alias",
        "add",
        "zed",
        "zed@real.example",
        "--expires",
        "abc",
    ]);
    assert!(err.contains("not a duration"), "{code} {err}");
    let (_, list, _) = svc.cli(&["alias", "list"]);
    assert!(
        !list.contains("zed@"),
        "a bad --expires added nothing: {list}"
    );

    for (name, real) in [
        ("bob", BOB),
        ("carl", "carl@real.example"),
        ("dan", "dan@real.example"),
    ] {
        let (code, out, err) = svc.cli(&["alias", "add", name, real, "--expires", "5s"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("expires 20"), "{out}");
    }
    let (_, out, _) = svc.cli(&[
        "alias",
        "add",
        "long",
        "long@real.example",
        "--expires",
        "30d",
    ]);
    assert!(out.contains("expires"), "{out}");
    let (_, list, _) = svc.cli(&["alias", "list"]);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name}@")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("bob").contains("\tactive\texpires 20"), "{list}");
    assert!(
        line("ann").ends_with("\tactive"),
        "no expiry, no fourth column: {list}"
    );
    assert!(line("long").contains("expires 20"), "{list}");

    // before the expiry, mail goes through
    assert_eq!(rcpt(&svc, JOE, "bob@remailer.test").await.code, 250);
    tokio::time::sleep(Duration::from_millis(5500)).await;

    // after it: 550 5.1.1 saying it has expired, at once and afterwards
    for _ in 0..2 {
        let r = rcpt(&svc, JOE, "bob@remailer.test").await;
        assert_eq!(r.code, 550, "{r:?}");
        assert!(
            r.text.starts_with("5.1.1") && r.text.contains("expired"),
            "{r:?}"
        );
    }
    let pool = db(&svc).await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM aliases WHERE name = 'bob'").await,
        0,
        "the sealed address is gone"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM removed_aliases WHERE name = 'bob' AND expired = 1"
        )
        .await,
        1
    );
    // an outsider still learns nothing: the same answer as for any name
    let r = rcpt(&svc, "eve@outside.example", "bob@remailer.test").await;
    assert!(r.code == 550 && r.text.contains("not registered"), "{r:?}");

    // an expired member's mail is an unregistered sender's
    let r = send(&svc, "carl@real.example", "ann@remailer.test").await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.text.starts_with("5.7.1") && r.text.contains("not registered"),
        "{r:?}"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM aliases WHERE name = 'carl'").await,
        0
    );

    // the name is never given out again: CLI and web
    let (code, _, err) = svc.cli(&["alias", "add", "bob", "new@real.example"]);
    assert_eq!(code, 1);
    assert!(err.contains("never given out again"), "{err}");
    let web = WebClient::new(svc.web_port);
    let a = web
        .submit(
            "/register",
            &[("alias", "bob"), ("address", "new@real.example")],
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);

    // the periodic purge (it runs at start) retires an expired alias nobody wrote to
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM aliases WHERE name = 'dan'").await,
        1
    );
    svc.terminate().await;
    svc.spawn().await;
    wait_for("dan retired", Duration::from_secs(20), || {
        let (_, list, _) = svc.cli(&["alias", "list"]);
        (!list.contains("dan@")).then_some(())
    })
    .await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM removed_aliases WHERE name = 'dan' AND expired = 1"
        )
        .await,
        1
    );
    let (_, list, _) = svc.cli(&["alias", "list"]);
    assert!(list.contains("long@") && list.contains("ann@"), "{list}");
    assert!(
        svc.log().contains("expired aliases retired"),
        "{}",
        svc.log()
    );
}

#[tokio::test]
async fn the_web_form_offers_an_expiry_carried_through_the_confirmation() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    let web = WebClient::new(svc.web_port);
    let form = web.get("/register").await;
    for option in [
        "value=\"never\" selected",
        "value=\"1d\"",
        "value=\"7d\"",
        "value=\"30d\"",
    ] {
        assert!(form.body.contains(option), "{option}: {}", form.body);
    }
    let bad = web
        .submit(
            "/register",
            &[
                ("alias", "eve"),
                ("address", "eve@real.example"),
                ("expires", "2d"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("id=\"expires-error\""), "{}", bad.body);

    let a = web
        .submit(
            "/register",
            &[
                ("alias", "eve"),
                ("address", "eve@real.example"),
                ("expires", "1d"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mail = wait_for("the confirmation mail", Duration::from_secs(20), || {
        sink.delivered().pop()
    })
    .await;
    let token = confirm_token(&mail.body_text()).unwrap();
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    assert!(
        page.body.contains("expires 1 day after activation"),
        "{}",
        page.body
    );
    let done = web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let pool = db(&svc).await;
    let at: Option<i64> = sqlx::query_scalar("SELECT expires_at FROM aliases WHERE name = 'eve'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let at = at.expect("an expiry is stored");
    assert!((at - (now() + 86_400)).abs() < 120, "{at}");
    let (_, list, _) = svc.cli(&["alias", "list"]);
    assert!(
        list.contains("eve@remailer.test\teve@real.example\tactive\texpires 20"),
        "{list}"
    );

    // without a choice: never
    let a = web
        .submit(
            "/register",
            &[("alias", "fay"), ("address", "fay@real.example")],
        )
        .await;
    assert_eq!(a.status, 200);
    let mail = wait_for(
        "the second confirmation mail",
        Duration::from_secs(20),
        || {
            sink.delivered()
                .into_iter()
                .find(|d| d.rcpt_to == ["fay@real.example"])
        },
    )
    .await;
    let token = confirm_token(&mail.body_text()).unwrap();
    let path = format!("/confirm/{token}");
    let page = web.get(&path).await;
    assert!(page.body.contains("It does not expire."), "{}", page.body);
    web.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    let at: Option<i64> = sqlx::query_scalar("SELECT expires_at FROM aliases WHERE name = 'fay'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(at, None);
}

/// The `dom-…` tags in the log lines that contain `marker`, after `field=`.
fn tags(log: &str, marker: &str, field: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let at = l.find(&format!("{field}="))? + field.len() + 1;
            Some(l[at..].chars().take(12).collect())
        })
        .collect()
}

struct AuthWorld {
    _dns: TestDns,
    svc: Service,
    sink: Sink,
    good: support::signing::Key,
}

/// joe@good.test (DMARC p=reject) and ann@mail.example are members; ann's mail goes by MX
/// to mx1.provider.example (the sink, which defers the first message).
async fn auth_world(extra: &str) -> AuthWorld {
    let dns = TestDns::start().await;
    let good = publish(&dns, "good.test", "-", Some("v=DMARC1; p=reject"));
    dns.add_mx("mail.example", 10, "mx1.provider.example");
    dns.add_a("mx1.provider.example", Ipv4Addr::new(127, 0, 0, 1));
    let sink = Sink::start(SinkMode::Defer(1)).await;
    let svc = Service::start(
        0,
        &format!(
            "policy.sender_auth = \"dmarc\"\ndns.nameservers = [\"{}\"]\n\
             delivery.relay = \"\"\ndelivery.mx_port = {}\n{extra}",
            dns.addr(),
            sink.port
        ),
    )
    .await;
    svc.add_alias("joe", "joe@good.test");
    svc.add_alias("ann", "ann@mail.example");
    AuthWorld {
        _dns: dns,
        svc,
        sink,
        good,
    }
}

fn auth_message(from: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: ann@remailer.test\r\nSubject: auth\r\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{}@client.test>\r\n\r\n{body}\r\n",
        harness::rand_id()
    )
    .into_bytes()
}

async fn send_from(svc: &Service, source: &str, from: &str, data: &[u8]) -> harness::client::Reply {
    let mut c = Client::connect_from(svc.smtp_port, source).await;
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    assert_eq!(r.code, 250, "{r:?}");
    let r = c.cmd("RCPT TO:<ann@remailer.test>").await;
    if r.code != 250 {
        return r;
    }
    assert_eq!(c.cmd("DATA").await.code, 354);
    c.send_raw(&harness::client::dot_stuff(std::str::from_utf8(data).unwrap()).into_bytes())
        .await;
    c.send_raw(b".\r\n").await;
    let r = c.read_reply().await;
    c.cmd("QUIT").await;
    r
}

#[tokio::test]
async fn log_lines_name_no_real_domain_nor_mx_host_only_stable_tags() {
    let w = auth_world("").await;
    for body in ["forged once", "forged twice"] {
        let r = send_from(
            &w.svc,
            BAD_IP,
            "joe@good.test",
            &auth_message("joe@good.test", body),
        )
        .await;
        assert_eq!(r.code, 550, "{r:?}");
        // the reply may name the client's own domain
        assert!(r.text.contains("DMARC check failed for good.test"), "{r:?}");
    }
    let r = send_from(
        &w.svc,
        GOOD_IP,
        "eve@outsider.example",
        &auth_message("eve@outsider.example", "x"),
    )
    .await;
    assert!(r.code == 550 && r.text.contains("not registered"), "{r:?}");
    let ok = signed(
        &w.good,
        "good.test",
        &auth_message("joe@good.test", "genuine"),
    );
    let r = send_from(&w.svc, GOOD_IP, "joe@good.test", &ok).await;
    assert_eq!(r.code, 250, "{r:?}\n{}", w.svc.log());
    let d = delivered(&w.sink, 1).await;
    assert_eq!(d[0].rcpt_to, ["ann@mail.example"]);
    wait_for("the delivery logged", Duration::from_secs(10), || {
        w.svc.log().contains(" delivered").then_some(())
    })
    .await;

    let log = w.svc.log();
    for secret in [
        "good.test",
        "outsider.example",
        "mail.example",
        "provider.example",
        "joe@",
        "eve@",
        "ann@mail",
    ] {
        assert!(!log.contains(secret), "the log names {secret}:\n{log}");
    }
    let failed = tags(&log, "sender not authenticated", "from_domain");
    assert_eq!(failed.len(), 2, "{log}");
    assert!(
        failed[0].starts_with("dom-") && failed[0].len() == 12,
        "{failed:?}"
    );
    assert_eq!(failed[0], failed[1], "the same domain gives the same tag");
    assert!(
        log.contains(&format!("DMARC check failed for {}", failed[0])),
        "the reason is logged with the tag:\n{log}"
    );
    let outsider = tags(&log, "refused unregistered sender", "sender_domain");
    assert_eq!(outsider.len(), 1, "{log}");
    assert!(
        outsider[0].starts_with("dom-") && outsider[0] != failed[0],
        "{outsider:?}"
    );
    let mx = tags(&log, "deferred", "server");
    assert_eq!(mx.len(), 1, "one deferred attempt:\n{log}");
    assert!(mx[0].starts_with("dom-"), "{mx:?}");
}

#[tokio::test]
async fn with_show_domains_the_log_names_them_and_warns() {
    let w = auth_world("log.show_domains = true").await;
    let r = send_from(
        &w.svc,
        BAD_IP,
        "joe@good.test",
        &auth_message("joe@good.test", "forged"),
    )
    .await;
    assert_eq!(r.code, 550, "{r:?}");
    wait_for("the failure logged", Duration::from_secs(10), || {
        w.svc
            .log()
            .contains("sender not authenticated")
            .then_some(())
    })
    .await;
    let log = w.svc.log();
    assert!(log.contains("log.show_domains = true"), "{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("from_domain=good.test"), "{log}");
    assert!(log.contains("DMARC check failed for good.test"), "{log}");
    assert!(!log.contains("joe@good.test"), "still no address:\n{log}");
}
