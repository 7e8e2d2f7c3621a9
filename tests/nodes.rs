//! Several nodes on one PostgreSQL (README "Running several nodes"): two real `serve`
//! processes, each with its own data dir and spool, sharing one database of a throw-away
//! cluster and the key material (`DATA_DIR/keys` and `DATA_DIR/dkim` copied from node A).

mod harness;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::web::{confirm_token, csrf_of};
use harness::{message, wait_for, Client, Service, Sink, SinkMode, WebClient};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(20);

/// Copies the master key and the DKIM keys of `from` into `to`'s (not yet started) data dir,
/// as the README says an operator does.
fn share_keys(from: &Service, to: &Service) {
    let target = to.dir.join("data");
    std::fs::create_dir_all(&target).unwrap();
    for part in ["keys", "dkim"] {
        let src = from.dir.join("data").join(part);
        if src.exists() {
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&target)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cp {}", src.display());
        }
    }
}

/// Node A started on `url` (it makes the keys and records their fingerprint), node B given
/// A's keys, then started.
async fn two_nodes(url: &str, relay: u16, extra: &str) -> (Service, Service) {
    let extra = format!("store.url = \"{url}\"\n{extra}");
    let a = Service::start(relay, &extra).await;
    let mut b = Service::prepare(relay, &extra);
    share_keys(&a, &b);
    b.spawn().await;
    (a, b)
}

async fn send(port: u16, from: &str, to: &str, data: &str) -> harness::client::Reply {
    let mut c = Client::connect(port).await;
    let r = c.send_mail(from, &[to], data).await;
    c.cmd("QUIT").await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_added_on_a_works_on_b_and_replies_thread_across_nodes() {
    let sink = Sink::start(SinkMode::Accept).await;
    let url = support::postgres::database();
    let (a, b) = two_nodes(&url, sink.port, "").await;
    a.add_alias("joe", JOE);

    // Node B looks "ann" up (a cached miss), then node A adds her: B must accept within the
    // member cache TTL (src/members.rs CACHE_TTL, 1 s) plus slack.
    let hello = message(JOE, "ann@remailer.test", "Hello", "hi");
    let r = send(b.smtp_port, JOE, "ann@remailer.test", &hello).await;
    assert_eq!(r.code, 550, "{r:?}");
    a.add_alias("ann", ANN);
    let added = Instant::now();
    loop {
        let r = send(b.smtp_port, JOE, "ann@remailer.test", &hello).await;
        if r.code == 250 {
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(3),
            "node B still refuses an alias added on A: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Joe writes through A; Ann's reply arrives at B and threads to Joe's original.
    let m1 = format!(
        "From: Joe <{JOE}>\r\nTo: <ann@remailer.test>\r\nSubject: Plans\r\n\
         Message-ID: <m1@laptop.joe>\r\n\r\nShall we meet?\r\n"
    );
    assert_eq!(
        send(a.smtp_port, JOE, "ann@remailer.test", &m1).await.code,
        250
    );
    let at_ann = wait_for("delivery to Ann", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("Plans"))
    })
    .await;
    let issued = at_ann.header("Message-ID").unwrap();
    let m2 = format!(
        "From: Ann <{ANN}>\r\nTo: <joe@remailer.test>\r\nSubject: Re: Plans\r\n\
         Message-ID: <m2@mx.ann>\r\nIn-Reply-To: {issued}\r\nReferences: {issued}\r\n\r\nYes.\r\n"
    );
    assert_eq!(
        send(b.smtp_port, ANN, "joe@remailer.test", &m2).await.code,
        250
    );
    let at_joe = wait_for("delivery to Joe", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("Re: Plans"))
    })
    .await;
    assert_eq!(at_joe.header("In-Reply-To").unwrap(), "<m1@laptop.joe>");

    // A removal on B is seen by A within the same bound.
    let (code, out, err) = b.cli(&["alias", "remove", "ann@remailer.test"]);
    assert_eq!(code, 0, "{out}{err}");
    let removed = Instant::now();
    loop {
        let r = send(a.smtp_port, JOE, "ann@remailer.test", &hello).await;
        if r.code >= 500 {
            break;
        }
        assert!(removed.elapsed() < Duration::from_secs(3), "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dsn(to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.mail.example\r\nTo: {to}\r\nSubject: Undelivered Mail\r\n\
         Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\n<{ANN}>: 550 5.1.1 User unknown\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.mail.example\r\n\r\n\
         Final-Recipient: rfc822; {ANN}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{ANN}> User unknown\r\n\r\n--B--\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_to_b_for_a_message_a_sent_is_matched() {
    let sink = Sink::start(SinkMode::Accept).await;
    let url = support::postgres::database();
    let (a, b) = two_nodes(&url, sink.port, "policy.hard_bounce_limit = 1").await;
    a.add_alias("joe", JOE);
    a.add_alias("ann", ANN);
    let hi = message(JOE, "ann@remailer.test", "Bounce me", "hi");
    assert_eq!(
        send(a.smtp_port, JOE, "ann@remailer.test", &hi).await.code,
        250
    );
    let verp = wait_for("delivery to Ann", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("Bounce me"))
    })
    .await
    .mail_from;
    assert!(verp.starts_with("b+"), "{verp}");
    let r = send(b.smtp_port, "", &verp, &dsn(&verp)).await;
    assert_eq!(r.code, 250, "{r:?}");
    // Node B matched the token to the message A sent: Joe gets the failure notice.
    wait_for("the failure notice to Joe", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.mail_from.is_empty() && d.rcpt_to == [JOE])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_link_mailed_by_a_confirms_on_b() {
    let sink = Sink::start(SinkMode::Accept).await;
    let url = support::postgres::database();
    let (a, b) = two_nodes(&url, sink.port, "").await;
    let form = WebClient::new(a.web_port)
        .submit("/register", &[("alias", "ann"), ("address", ANN)])
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let mail = wait_for("the confirmation mail", T, || {
        sink.delivered().into_iter().find(|d| d.rcpt_to == [ANN])
    })
    .await;
    let token = confirm_token(&mail.body_text()).expect("a confirmation link");
    let web_b = WebClient::new(b.web_port);
    let path = format!("/confirm/{token}");
    let page = web_b.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let done = web_b.post(&path, &[("csrf", &csrf_of(&page.body))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let (_, list, _) = a.cli(&["alias", "list"]);
    assert!(list.contains("ann@remailer.test\t"), "{list}");
    // Single use across nodes too.
    assert_eq!(WebClient::new(a.web_port).get(&path).await.status, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_on_two_nodes_have_one_winner() {
    let sink = Sink::start(SinkMode::Accept).await;
    let url = support::postgres::database();
    let (a, b) = two_nodes(&url, sink.port, "").await;
    for round in 0..4 {
        let name = format!("race{round}");
        let (ca, cb) = (a.config_path.clone(), b.config_path.clone());
        let run = |config: std::path::PathBuf, name: String, real: &'static str| {
            std::thread::spawn(move || {
                Command::new(env!("CARGO_BIN_EXE_remailer"))
                    .arg("--config")
                    .arg(config)
                    .args(["alias", "add", &name, real])
                    .output()
                    .unwrap()
            })
        };
        let ta = run(ca, name.clone(), "one@real.example");
        let tb = run(cb, name.clone(), "two@real.example");
        let results = [ta.join().unwrap(), tb.join().unwrap()];
        let won = results.iter().filter(|o| o.status.success()).count();
        assert_eq!(won, 1, "{results:?}");
        let loser = results.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(err.contains("already taken"), "{err}");
        // The addresses must differ per round (one address, one alias).
        let (code, out, e) = a.cli(&["alias", "remove", &format!("{name}@remailer.test")]);
        assert_eq!(code, 0, "{out}{e}");
    }
}

/// Runs `serve` for a node expected to refuse to start: its exit code and log.
fn serve_refused(svc: &Service) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_remailer"))
        .arg("--config")
        .arg(&svc.config_path)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the node started with a key that is not the database's");
}

fn has_key(dir: &Path) -> bool {
    remailer::keys::Keys::path(&dir.join("data")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_master_key_refuses_to_start() {
    let url = support::postgres::database();
    let extra = format!("store.url = \"{url}\"");
    let a = Service::start(1, &extra).await;
    a.add_alias("joe", JOE);
    // A node with a key of its own.
    let c = Service::prepare(1, &extra);
    remailer::keys::Keys::load_or_create(&c.dir.join("data")).unwrap();
    assert!(has_key(&c.dir));
    let (code, log) = serve_refused(&c);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("is not the key the database 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("copy keys/ and dkim/"), "{log}");
    assert!(
        !log.contains("postgres://"),
        "no URL (user, password) in: {log}"
    );
    // A node with no key at all is told to copy it, and makes none of its own.
    let d = Service::prepare(1, &extra);
    let (code, log) = serve_refused(&d);
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("master key") && log.contains("is missing"),
        "{log}"
    );
    assert!(!has_key(&d.dir), "a new key was made over shared data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_gives_451_and_the_node_recovers_by_itself() {
    let sink = Sink::start(SinkMode::Accept).await;
    let cluster = support::postgres::Cluster::start();
    let url = cluster.database();
    let a = Service::start(sink.port, &format!("store.url = \"{url}\"")).await;
    a.add_alias("joe", JOE);
    a.add_alias("ann", ANN);
    let hi = message(JOE, "ann@remailer.test", "Before", "hi");
    assert_eq!(
        send(a.smtp_port, JOE, "ann@remailer.test", &hi).await.code,
        250
    );
    cluster.stop();
    // Past the member cache TTL, RCPT needs the database.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = Client::connect(a.smtp_port).await;
    c.cmd("EHLO client.example").await;
    // The sender is a member (looked up at MAIL): the first lookup already needs the store.
    let r = c.cmd(&format!("MAIL FROM:<{JOE}>")).await;
    assert_eq!(r.code, 451, "{r:?}");
    assert!(r.text.contains("4.3.0"), "{r:?}");
    c.cmd("QUIT").await;
    // The web: a confirmation link needs the store, so its page is 503 (not 500).
    let page = WebClient::new(a.web_port)
        .get(&format!("/confirm/{}", "ab".repeat(32)))
        .await;
    assert_eq!(page.status, 503, "{}", page.body);
    cluster.start_server();
    let back = Instant::now();
    loop {
        let after = message(JOE, "ann@remailer.test", "After", "hi");
        let r = send(a.smtp_port, JOE, "ann@remailer.test", &after).await;
        if r.code == 250 {
            break;
        }
        assert!(back.elapsed() < T, "no recovery: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for("delivery after recovery", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("After"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_a_killed_under_load_loses_no_accepted_message() {
    let sink = Sink::start(SinkMode::Accept).await;
    let url = support::postgres::database();
    let (mut a, b) = two_nodes(&url, sink.port, "").await;
    a.add_alias("joe", JOE);
    a.add_alias("ann", ANN);
    let (a_port, b_port) = (a.smtp_port, b.smtp_port);
    // 4 senders, 15 messages each, alternating between the nodes; A is killed mid-way.
    let senders: Vec<_> = (0..4)
        .map(|s| {
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for i in 0..15 {
                    let subject = format!("load {s}-{i}");
                    let port = if i % 2 == 0 { a_port } else { b_port };
                    if try_send(port, &subject).await == Some(250) {
                        accepted.push(subject);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.kill9();
    let mut accepted = Vec::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    eprintln!("accepted: {} of 60", accepted.len());
    assert!(
        accepted.len() >= 30,
        "node B kept accepting: {}",
        accepted.len()
    );
    assert!(accepted.len() < 60, "node A was not killed mid-load");
    // A comes back on its own data dir and delivers what its spool holds.
    a.spawn().await;
    wait_for(
        "every accepted message delivered",
        Duration::from_secs(60),
        || {
            let got: std::collections::HashSet<String> = sink
                .delivered()
                .into_iter()
                .filter_map(|d| d.header("Subject"))
                .collect();
            accepted.iter().all(|s| got.contains(s)).then_some(())
        },
    )
    .await;
}

/// One message over a fresh connection (in a task of its own, so a connection that breaks
/// when node A is killed is a failed send, not a failed test); the final reply code.
async fn try_send(port: u16, subject: &str) -> Option<u16> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let data = message(JOE, "ann@remailer.test", subject, "x");
    let task = tokio::spawn(async move {
        let mut c = Client::connect(port).await;
        c.send_mail(JOE, &["ann@remailer.test"], &data).await.code
    });
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .ok()?
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_migrate_copies_an_sqlite_store_once_and_a_node_runs_on_the_copy() {
    let sink = Sink::start(SinkMode::Accept).await;
    let mut old = Service::start(sink.port, "").await;
    old.add_alias("joe", JOE);
    old.add_alias("ann", ANN);
    let m1 = format!(
        "From: Joe <{JOE}>\r\nTo: <ann@remailer.test>\r\nSubject: Before\r\n\
         Message-ID: <m1@laptop.joe>\r\n\r\nhi\r\n"
    );
    assert_eq!(
        send(old.smtp_port, JOE, "ann@remailer.test", &m1)
            .await
            .code,
        250
    );
    let issued = wait_for("delivery to Ann", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("Before"))
    })
    .await
    .header("Message-ID")
    .unwrap();
    assert_eq!(old.terminate().await, Some(0));

    let url = support::postgres::database();
    let (code, out, err) = old.cli(&["store", "migrate", "--to", &url]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("aliases\t2 rows, 2 copied, 0 already there"),
        "{out}"
    );
    assert!(out.contains("thread_map\t1 rows, 1 copied"), "{out}");
    assert!(out.contains("key_check\t1 rows, 1 copied"), "{out}");
    assert!(!out.contains("postgres://"), "{out}");
    let (code, again, err) = old.cli(&["store", "migrate", "--to", &url]);
    assert_eq!(code, 0, "{again}{err}");
    assert!(
        again.contains("aliases\t2 rows, 0 copied, 2 already there"),
        "{again}"
    );
    assert!(again.contains("thread_map\t1 rows, 0 copied"), "{again}");

    // A node on the copy, with the old node's keys: Ann's reply threads to Joe's original.
    let mut node = Service::prepare(sink.port, &format!("store.url = \"{url}\""));
    share_keys(&old, &node);
    node.spawn().await;
    let m2 = format!(
        "From: Ann <{ANN}>\r\nTo: <joe@remailer.test>\r\nSubject: Re: Before\r\n\
         Message-ID: <m2@mx.ann>\r\nIn-Reply-To: {issued}\r\n\r\nyes\r\n"
    );
    assert_eq!(
        send(node.smtp_port, ANN, "joe@remailer.test", &m2)
            .await
            .code,
        250
    );
    let at_joe = wait_for("delivery to Joe", T, || {
        sink.delivered()
            .into_iter()
            .find(|d| d.header("Subject").as_deref() == Some("Re: Before"))
    })
    .await;
    assert_eq!(at_joe.header("In-Reply-To").unwrap(), "<m1@laptop.joe>");
    // New aliases get fresh ids after the copied ones.
    node.add_alias("cy", "cy@real.example");
    assert!(node.terminate().await.is_some());
}

/// Round trips a remailed message costs at steady state: statements the server ran
/// (pg_stat_statements) while a node remailed 20 messages, after a warm-up one. The member
/// cache keeps repeated lookups off the path; what is left is one lookup of the address-like
/// strings the message holds that were not seen within the cache TTL (here its unique
/// Message-ID, as in real mail) and the thread link (one statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remailed_message_costs_few_database_round_trips() {
    let sink = Sink::start(SinkMode::Accept).await;
    let url = support::postgres::database();
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&db)
        .await
        .unwrap();
    let a = Service::start(sink.port, &format!("store.url = \"{url}\"")).await;
    a.add_alias("joe", JOE);
    a.add_alias("ann", ANN);
    let mut c = Client::connect(a.smtp_port).await;
    let warm = message(JOE, "ann@remailer.test", "warm", "x");
    assert_eq!(
        c.send_mail(JOE, &["ann@remailer.test"], &warm).await.code,
        250
    );
    wait_for("warm-up delivery", T, || {
        (sink.delivered().len() == 1).then_some(())
    })
    .await;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&db)
        .await
        .unwrap();
    const N: usize = 20;
    for i in 0..N {
        let m = message(JOE, "ann@remailer.test", &format!("n{i}"), "x");
        assert_eq!(c.send_mail(JOE, &["ann@remailer.test"], &m).await.code, 250);
    }
    wait_for("deliveries", T, || {
        (sink.delivered().len() == N + 1).then_some(())
    })
    .await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT query, calls FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let total: i64 = rows.iter().map(|(_, n)| n).sum();
    for (q, n) in &rows {
        eprintln!(
            "{n:>5}  {}",
            q.chars().skip(70).take(80).collect::<String>()
        );
    }
    let per_message = total as f64 / N as f64;
    eprintln!("statements per remailed message: {per_message:.2} ({total} for {N})");
    assert!(per_message <= 2.5, "{per_message} statements per message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_hides_the_password_and_migrate_refuses_another_installation() {
    let base = support::postgres::database();
    // The same database with a password in the URL (the test cluster trusts loopback).
    let url = base.replace("postgres@", "postgres:pw-s3cret@");
    let a = Service::start(1, &format!("store.url = \"{url}\"")).await;
    a.add_alias("joe", JOE);
    let (code, out, err) = a.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("store:        postgres://127.0.0.1:"), "{out}");
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "{out}{err}"
    );
    assert!(!a.log().contains("s3cret"), "{}", a.log());

    // Another (SQLite) installation, with its own key, cannot be poured into this one.
    let mut other = Service::start(1, "").await;
    other.add_alias("ann", ANN);
    assert_eq!(other.terminate().await, Some(0));
    let (code, out, err) = other.cli(&["store", "migrate", "--to", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("another master key"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    let (_, list, _) = a.cli(&["alias", "list"]);
    assert!(!list.contains("ann@"), "nothing copied: {list}");
}
