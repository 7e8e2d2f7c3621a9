//! An operator's rough edges (issue 10, point 7), each through the real binary: the master
//! key, read-only commands, file modes, relative paths, host:port keys, error text, the
//! first log line, signals, the postmaster warning, internationalised addresses, the DKIM
//! key format, `check-config` and `backup`.

mod harness;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{wait_for, Client, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(20);

/// Every path under `dir` (relative) with its mode, so two listings can be compared.
fn listing(dir: &Path) -> BTreeMap<PathBuf, u32> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u32>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            out.insert(
                path.strip_prefix(base).unwrap().to_path_buf(),
                meta.permissions().mode() & 0o7777,
            );
            if meta.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Runs the binary with `args` (a config first if given), killed after `limit`; returns
/// (exit code, stdout, stderr).
fn run(config: Option<&Path>, args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_remailer"));
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run remailer");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello.\r\n")
}

#[test]
fn a_lost_master_key_is_never_replaced_while_sealed_data_exists() {
    let svc = Service::prepare(harness::free_port(), "");
    svc.add_alias("ann", ANN);
    let data = svc.dir.join("data");
    let key = data.join("keys/master.key");
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let before = listing(&data);
    for args in [
        &["serve"][..],
        &["alias", "add", "joe", JOE],
        &["alias", "list"],
    ] {
        let (code, _, err) = run(Some(&svc.config_path), args, T);
        assert_ne!(code, 0, "{args:?} must stop: {err}");
        assert!(
            err.contains(&format!("restore {}", key.display())),
            "{args:?}: the error names the file to restore: {err}"
        );
        assert_eq!(err.matches("error:").count(), 1, "one error line: {err}");
        assert!(!key.exists(), "{args:?} created a new key");
        assert_eq!(listing(&data), before, "{args:?} created something");
    }
    // Another key (a wrong backup restored) is refused too: the database has its fingerprint.
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = svc.cli(&["alias", "add", "joe", JOE]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not the key") && err.contains(&key.display().to_string()),
        "{err}"
    );
    std::fs::write(&key, &original).unwrap();
    let (code, out, err) = svc.cli(&["alias", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(ANN), "{out}");
}

#[test]
fn alias_import_is_checked_first_and_can_be_rerun() {
    let svc = Service::prepare(harness::free_port(), "");
    let list = svc.dir.join("list.txt");
    let path = list.to_str().unwrap();
    std::fs::write(&list, "alice alice@real.test\nbob bob@real.test\nbad name x@real.test\nal.ice other@real.test\nalice again@real.test\n").unwrap();
    let (code, _, err) = svc.cli(&["alias", "import", path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 3") && err.contains("line 5"),
        "every bad line: {err}"
    );
    assert!(err.contains("nothing was added"), "{err}");
    let (_, out, _) = svc.cli(&["alias", "list"]);
    assert_eq!(out, "", "all or nothing: {out}");

    std::fs::write(&list, "alice alice@real.test\nbob bob@real.test\n").unwrap();
    let (code, out, err) = svc.cli(&["alias", "import", path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added 2 aliases, skipped 0"), "{out}");
    std::fs::write(
        &list,
        "alice alice@real.test\nbob bob@real.test\ncarol carol@real.test\n",
    )
    .unwrap();
    let (code, out, err) = svc.cli(&["alias", "import", path]);
    assert_eq!(code, 0, "a rerun works: {err}");
    assert!(
        out.contains("added 1 aliases, skipped 2 already present"),
        "{out}"
    );
    // A conflict with the database is found before anything is added.
    std::fs::write(&list, "dave dave@real.test\nalice changed@real.test\n").unwrap();
    let (code, _, err) = svc.cli(&["alias", "import", path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 2") && err.contains("already taken"),
        "{err}"
    );
    let (_, out, _) = svc.cli(&["alias", "list"]);
    assert!(!out.contains("dave"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn host_port_keys_get_a_default_port_or_a_clear_refusal() {
    let svc = Service::prepare(harness::free_port(), "delivery.relay = \"127.0.0.1\"");
    let (code, out, err) = svc.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("relay:        127.0.0.1:25\n"), "{out}");
    let cases = [
        ("delivery.relay = \"::1\"", "[ADDRESS]:PORT"),
        ("delivery.relay = \"127.0.0.1:x\"", "port"),
        (
            "smtp.listen = [\"127.0.0.1\"]",
            "has no port: write 127.0.0.1:25",
        ),
        ("web.listen = \"localhost:8080\"", "not an IP:PORT"),
    ];
    for (line, expect) in cases {
        let svc = Service::prepare(harness::free_port(), line);
        let (code, out, err) = svc.cli(&["serve"]);
        assert_eq!(code, 1, "{line}: {out}{err}");
        assert!(err.contains(expect), "{line}: {err}");
        let (code, out, _) = svc.cli(&["check-config"]);
        assert_eq!(code, 3, "{line}: {out}");
    }
}

#[test]
fn os_errors_are_said_once() {
    let (code, _, err) = run(
        Some(Path::new("/nonexistent/remailer.toml")),
        &["alias", "list"],
        T,
    );
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/remailer.toml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let svc = Service::prepare(
        harness::free_port(),
        "smtp.tls_cert = \"/nonexistent/cert.pem\"\nsmtp.tls_key = \"/nonexistent/key.pem\"",
    );
    let (code, _, err) = svc.cli(&["serve"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    svc.add_alias("ann", ANN);
    let (code, _, err) = svc.cli(&["backup", "/nonexistent/dir/copy.db"]);
    assert_eq!(code, 1);
    assert!(
        err.matches("/nonexistent/dir/copy.db").count() == 1,
        "{err}"
    );
}

#[test]
fn read_only_commands_create_nothing() {
    let svc = Service::prepare(harness::free_port(), "");
    let data = svc.dir.join("data");
    let read_only: &[&[&str]] = &[
        &["alias", "list"],
        &["queue", "list"],
        &["dns"],
        &["opt-out", "count"],
        &["opt-out", "check", "x@real.example"],
        &["check-config"],
    ];
    // No data dir at all, then an empty one.
    for make in [false, true] {
        if make {
            std::fs::create_dir(&data).unwrap();
        }
        for args in read_only {
            let (code, out, err) = svc.cli(args);
            assert!(
                !err.contains("os error"),
                "{args:?}: a clear message: {err}"
            );
            if args[0] == "check-config" {
                assert_eq!(code, 0, "{out}{err}");
                assert!(out.contains("not set up yet"), "{out}");
            } else {
                assert_eq!(code, 1, "{args:?}: {out}{err}");
                assert!(
                    err.contains("does not exist")
                        || err.contains("no database")
                        || err.contains("no DKIM keys"),
                    "{args:?}: {err}"
                );
            }
            assert_eq!(data.exists(), make, "{args:?} made the data dir");
            assert!(
                listing(&data).is_empty() || !make,
                "{args:?} created {:?}",
                listing(&data)
            );
        }
    }
    // With a database and a key but no spool: the queue is empty, and still nothing is made.
    svc.add_alias("ann", ANN);
    let before = listing(&data);
    let (code, out, err) = svc.cli(&["queue", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0 queued") && out.contains("has not run"),
        "{out}"
    );
    for args in read_only {
        svc.cli(args);
    }
    assert_eq!(listing(&data), before);
}

#[tokio::test]
async fn files_are_private_under_umask_022() {
    let sink = Sink::start(SinkMode::Accept).await;
    let mut svc = Service::prepare(sink.port, "");
    let sh = |args: &str| {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 022 && exec \"$0\" --config \"$1\" {args}"))
            .arg(env!("CARGO_BIN_EXE_remailer"))
            .arg(&svc.config_path)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args}");
    };
    sh("alias add joe joe@real.example");
    sh("alias add ann ann@mail.example");
    let log = std::fs::File::create(svc.log_path()).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" --config \"$1\" serve")
        .arg(env!("CARGO_BIN_EXE_remailer"))
        .arg(&svc.config_path)
        .stderr(log)
        .spawn()
        .unwrap();
    let port = svc.smtp_port;
    wait_for("SMTP", T, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let mut c = Client::connect(port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "modes"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("delivery", T, || {
        (!sink.delivered().is_empty()).then_some(())
    })
    .await;
    let files = listing(&svc.dir.join("data"));
    let _ = child.kill();
    let _ = child.wait();
    svc.kill9();
    let names: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
    for expected in [
        "remailer.db",
        "keys/master.key",
        "dkim/remailer-ed.pem",
        "spool",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} in {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("spool/seg-")),
        "{names:?}"
    );
    let root = std::fs::metadata(svc.dir.join("data"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(root, 0o700, "the data dir");
    for (path, mode) in &files {
        let meta = std::fs::symlink_metadata(svc.dir.join("data").join(path)).unwrap();
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode & 0o777, want, "{} is {mode:o}", path.display());
    }
}

#[test]
fn a_relative_data_dir_follows_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let conf_dir = tmp.path().join("etc");
    let elsewhere = tmp.path().join("cwd");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        conf_dir.join("remailer.toml"),
        "domain = \"remailer.test\"\ndata_dir = \"state\"\n[store]\nurl = \"sqlite://db/remailer.db\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(conf_dir.join("db")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_remailer"))
        .current_dir(&elsewhere)
        .args([
            "--config",
            "../etc/remailer.toml",
            "alias",
            "add",
            "ann",
            ANN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(conf_dir.join("state/keys/master.key").exists());
    assert!(conf_dir.join("db/remailer.db").exists());
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing in the cwd"
    );
}

#[tokio::test]
async fn the_first_log_line_names_what_runs_and_failures_name_the_relay() {
    let relay_port = harness::free_port(); // nobody listens there
    let svc = Service::start(relay_port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let log = svc.log();
    let first = log.lines().next().unwrap_or_default();
    for part in [
        format!("config={}", svc.config_path.display()),
        "domain=remailer.test".to_string(),
        format!("data_dir={}", svc.dir.join("data").display()),
        format!("smtp=127.0.0.1:{}", svc.smtp_port),
        format!("web=127.0.0.1:{}", svc.web_port),
        format!("relay=127.0.0.1:{relay_port}"),
    ] {
        assert!(first.contains(&part), "{part} in the first line: {first}");
    }
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "x"),
        )
        .await;
    assert_eq!(r.code, 250);
    let want = format!("relay 127.0.0.1:{relay_port}:");
    wait_for("a deferral naming the relay", T, || {
        svc.log()
            .lines()
            .any(|l| l.contains("deferred") && l.contains(&want))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn sighup_without_tls_says_there_is_nothing_to_reload() {
    let svc = Service::start(harness::free_port(), "").await;
    let pid = svc.pid().unwrap().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_for("the SIGHUP line", T, || {
        svc.log().contains("nothing to reload").then_some(())
    })
    .await;
    assert!(
        !svc.log().contains("reloaded the TLS certificate"),
        "{}",
        svc.log()
    );
}

#[tokio::test]
async fn sigterm_closes_idle_sessions_at_once_and_finishes_a_transaction() {
    let sink = Sink::start(SinkMode::Accept).await;
    let mut svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let mut idle = Client::connect(svc.smtp_port).await;
    assert_eq!(idle.cmd("EHLO idle.example").await.code, 250);
    let mut busy = Client::connect(svc.smtp_port).await;
    busy.cmd("EHLO busy.example").await;
    assert_eq!(busy.cmd(&format!("MAIL FROM:<{JOE}>")).await.code, 250);
    assert_eq!(busy.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(busy.cmd("DATA").await.code, 354);
    let msg = harness::client::dot_stuff(&message(JOE, "ann@remailer.test", "in flight"));
    let (a, b) = msg.split_at(msg.len() / 2);
    busy.send_raw(a.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = svc.pid().unwrap().to_string();
    let sent = Instant::now();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let reply = idle
        .poll_reply(Duration::from_secs(1))
        .await
        .expect("the idle session is told within a second");
    assert!(sent.elapsed() < Duration::from_secs(1));
    assert_eq!(reply.code, 421, "{reply:?}");
    assert!(reply.text.contains("4.3.2"), "{reply:?}");
    assert!(idle.try_read_reply().await.is_none(), "and closed");
    busy.send_raw(b.as_bytes()).await;
    busy.send_raw(b".\r\n").await;
    assert_eq!(
        busy.read_reply().await.code,
        250,
        "the transaction in progress completes"
    );
    let after = busy.read_reply().await;
    assert_eq!(
        after.code, 421,
        "then that session is closed too: {after:?}"
    );
    let status = svc.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status, Some(0), "{}", svc.log());
}

#[test]
fn a_public_domain_without_postmaster_is_warned_about() {
    let port = harness::free_port();
    let public = format!("domain = \"remailer-ops.org\"\nsmtp.listen = [\"0.0.0.0:{port}\"]");
    let svc = Service::prepare(harness::free_port(), &public);
    let (code, out, err) = svc.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: policy.postmaster is not set"),
        "{out}"
    );
    assert!(out.contains("RFC 5321"), "{out}");
    let with = Service::prepare(
        harness::free_port(),
        &format!("{public}\npolicy.postmaster = \"ops@operator.example\""),
    );
    let (_, out, _) = with.cli(&["check-config"]);
    assert!(!out.contains("policy.postmaster is not set"), "{out}");
    let test_domain = Service::prepare(harness::free_port(), "");
    let (_, out, _) = test_domain.cli(&["check-config"]);
    assert!(
        !out.contains("policy.postmaster is not set"),
        "a .test domain: {out}"
    );
}

#[tokio::test]
async fn internationalised_addresses_are_accepted_with_smtputf8_and_normalised() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", "joe@bücher.example");
    svc.add_alias("ann", ANN);
    let (_, out, _) = svc.cli(&["alias", "list"]);
    assert!(
        out.contains("joe@xn--bcher-kva.example"),
        "stored as an A-label: {out}"
    );
    let mut c = Client::connect(svc.smtp_port).await;
    let ehlo = c.cmd("EHLO client.example").await;
    assert!(ehlo.text.contains("SMTPUTF8"), "{ehlo:?}");
    let r = c.cmd("MAIL FROM:<joe@bücher.example>").await;
    assert_eq!(r.code, 553, "non-ASCII without SMTPUTF8: {r:?}");
    assert_eq!(
        c.cmd("MAIL FROM:<joe@bücher.example> SMTPUTF8").await.code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<ann@remailer.test>").await.code, 250);
    assert_eq!(c.cmd("DATA").await.code, 354);
    let msg = message("Joe <joe@bücher.example>", "ann@remailer.test", "IDN");
    c.send_raw(harness::client::dot_stuff(&msg).as_bytes())
        .await;
    c.send_raw(b".\r\n").await;
    assert_eq!(c.read_reply().await.code, 250);
    // And the other way: mail to joe goes to the A-label domain.
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            ANN,
            &["joe@remailer.test"],
            &message(ANN, "joe@remailer.test", "back"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
    wait_for("both deliveries", T, || {
        (sink.delivered().len() == 2).then_some(())
    })
    .await;
    let got = sink.delivered();
    let to_ann = got.iter().find(|d| d.rcpt_to == [ANN]).expect("to ann");
    assert_eq!(
        to_ann.header("From").as_deref(),
        Some("<joe@remailer.test>")
    );
    assert!(!to_ann.text().contains("bücher") && !to_ann.text().contains("xn--"));
    let to_joe = got.iter().find(|d| d.rcpt_to != [ANN]).unwrap();
    assert_eq!(to_joe.rcpt_to, ["joe@xn--bcher-kva.example"]);
}

#[test]
fn openssl_reads_the_ed25519_key() {
    let svc = Service::prepare(harness::free_port(), "");
    let (code, zone, err) = svc.cli(&["dns", "--create-keys"]);
    assert_eq!(code, 0, "{err}");
    let key = svc.dir.join("data/dkim/remailer-ed.pem");
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
    let check = Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(public.status.success());
    let raw = &public.stdout[public.stdout.len() - 32..];
    use base64::Engine;
    let p = base64::engine::general_purpose::STANDARD.encode(raw);
    assert!(
        zone.contains(&format!("k=ed25519; p={p}")),
        "openssl's public key is the published one: {p}\n{zone}"
    );
}

#[test]
fn check_config_exit_codes() {
    let (code, help, _) = run(None, &["check-config", "--help"], T);
    assert_eq!(code, 0);
    for part in [
        "0 everything",
        "3 the config",
        "4 the data dir",
        "5 a listener",
    ] {
        assert!(help.contains(part), "{part}: {help}");
    }
    let (_, help, _) = run(None, &["alias", "add", "--help"], T);
    assert!(
        help.contains("The member's real mailbox"),
        "positional help: {help}"
    );
    let svc = Service::prepare(harness::free_port(), "");
    let (code, out, _) = svc.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("domain:       remailer.test") && out.contains("effective settings"));
    let bad = Service::prepare(harness::free_port(), "smtp.colour = 1");
    let (code, out, _) = bad.cli(&["check-config"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("colour"), "{out}");
    svc.add_alias("ann", ANN);
    let (code, out, _) = svc.cli(&["check-config"]);
    assert_eq!(code, 0, "{out}");
    let key = svc.dir.join("data/keys/master.key");
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let (code, out, _) = svc.cli(&["check-config"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains(&key.display().to_string()), "{out}");
    assert!(!key.exists());
    std::fs::write(&key, saved).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let taken = std::net::TcpListener::bind(("127.0.0.1", svc.smtp_port)).unwrap();
    let (code, out, _) = svc.cli(&["check-config"]);
    assert_eq!(code, 5, "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{}: FAILED", svc.smtp_port)),
        "{out}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_is_a_valid_database_with_the_aliases() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let copy = svc.dir.join("backup.db");
    let (code, out, err) = svc.cli(&["backup", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("master.key"), "the note about the key: {out}");
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sqlite = |sql: &str| {
        let out = Command::new("sqlite3")
            .arg(&copy)
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(sqlite("PRAGMA integrity_check"), "ok");
    assert_eq!(sqlite("SELECT name FROM aliases ORDER BY name"), "ann\njoe");
    assert_eq!(sqlite("SELECT COUNT(*) FROM key_check"), "1");
    let (code, _, err) = svc.cli(&["backup", copy.to_str().unwrap()]);
    assert_eq!(code, 1, "an existing file is not overwritten");
    assert!(err.contains("exists"), "{err}");
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "after"),
        )
        .await;
    assert_eq!(r.code, 250, "the service still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dkim_keys_with_published_records_are_warned_about() {
    let dns = support::dns_server::TestDns::start().await;
    let extra = format!("dns.nameservers = [\"{}\"]", dns.addr());
    let mut svc = Service::prepare(harness::free_port(), &extra);
    dns.add_txt(
        "remailer-rsa._domainkey.remailer.test",
        "v=DKIM1; k=rsa; p=AAAA",
    );
    svc.spawn().await;
    wait_for("the warning", T, || {
        svc.log()
            .contains("the DKIM key files for this selector are missing")
            .then_some(())
    })
    .await;
    svc.kill9();
    // Keys present now: no warning on the next start.
    let before = svc.log().len();
    svc.spawn().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !svc.log()[before..].contains("DKIM key files"),
        "{}",
        svc.log()
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/remailer.service"
    ))
    .unwrap();
    for line in [
        "User=remailer",
        "ProtectSystem=strict",
        "StateDirectory=remailer",
        "NoNewPrivileges=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: only the unit's contents were checked");
        return;
    }
    // Verified with the binary under test in place of the installed path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remailer.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/remailer", env!("CARGO_BIN_EXE_remailer")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_mx_failure_names_the_address_tried_but_not_the_members_domain() {
    let dns = support::dns_server::TestDns::start().await;
    dns.add_mx("mail.example", 10, "mx1.mail.example");
    dns.add_a("mx1.mail.example", std::net::Ipv4Addr::new(127, 0, 0, 1));
    let dead = harness::free_port(); // nobody listens there
    let extra = format!(
        "dns.nameservers = [\"{}\"]\ndelivery.mx_port = {dead}\ndelivery.relay = \"\"",
        dns.addr()
    );
    let svc = Service::start(0, &extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(
            JOE,
            &["ann@remailer.test"],
            &message(JOE, "ann@remailer.test", "mx"),
        )
        .await;
    assert_eq!(r.code, 250);
    // The MX host as its keyed tag and the port tried: neither its name nor its address
    // (either would tell the member's provider).
    let want = format!(":{dead}:");
    wait_for("a deferral naming the MX host's tag and port", T, || {
        svc.log()
            .lines()
            .any(|l| l.contains("deferred") && l.contains("MX host dom-") && l.contains(&want))
            .then_some(())
    })
    .await;
    assert!(!svc.log().contains("mail.example"), "{}", svc.log());
    assert!(!svc.log().contains("MX host 127.0.0.1"), "{}", svc.log());
}
