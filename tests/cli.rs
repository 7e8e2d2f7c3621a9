//! The admin CLI and the config file: clear errors and exit codes.

mod harness;

use harness::Service;

#[test]
fn alias_add_list_remove() {
    let svc = Service::prepare(harness::free_port(), "");
    let (code, out, err) = svc.cli(&["alias", "add", "Ann", "Ann.Lee@Mail.Example"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("added ann@remailer.test"), "{out}");
    let (code, out, _) = svc.cli(&["alias", "add", "joe@remailer.test", "joe@real.example"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = svc.cli(&["alias", "list"]);
    assert_eq!(code, 0);
    assert_eq!(out, "ann@remailer.test\tAnn.Lee@mail.example\tactive\njoe@remailer.test\tjoe@real.example\tactive\n");
    let (code, _, _) = svc.cli(&["alias", "remove", "ann"]);
    assert_eq!(code, 0);
    let (_, out, _) = svc.cli(&["alias", "list"]);
    assert!(!out.contains("ann@"), "{out}");
    // the database file holds no real address in clear
    let db = std::fs::read(svc.dir.join("data/remailer.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("joe@real.example"));
    let key = svc.dir.join("data/keys/master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn bad_input_gets_a_message_and_a_non_zero_exit() {
    let svc = Service::prepare(harness::free_port(), "");
    let cases: &[(&[&str], &str)] = &[
        (
            &["alias", "add", "postmaster", "p@real.example"],
            "reserved",
        ),
        (
            &["alias", "add", "a b", "p@real.example"],
            "may contain only",
        ),
        (
            &["alias", "add", "ann", "not-an-address"],
            "not a valid email address",
        ),
        (
            &["alias", "add", "ann", "x@remailer.test"],
            "service's own domain",
        ),
        (
            &["alias", "add", "ann@other.example", "x@real.example"],
            "must be at remailer.test",
        ),
        (&["alias", "remove", "ghost"], "no alias named ghost"),
    ];
    for (args, expect) in cases {
        let (code, out, err) = svc.cli(args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    svc.cli(&["alias", "add", "ann", "ann@mail.example"]);
    let (code, _, err) = svc.cli(&["alias", "add", "ann", "other@mail.example"]);
    assert_eq!(code, 1);
    assert!(err.contains("already taken"), "{err}");
    let (code, _, err) = svc.cli(&["alias", "add", "ann2", "ANN@mail.example"]);
    assert_eq!(code, 1);
    assert!(err.contains("already has an alias"), "{err}");
    let (code, _, _) = svc.cli(&["alias", "frobnicate"]);
    assert_eq!(code, 2, "usage errors exit 2");
}

#[test]
fn import_adds_many_and_names_the_bad_line() {
    let svc = Service::prepare(harness::free_port(), "");
    let list = svc.dir.join("list.txt");
    std::fs::write(
        &list,
        "# bench users\nalice alice@real.test\nbob bob@real.test\n",
    )
    .unwrap();
    let (code, out, err) = svc.cli(&["alias", "import", list.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("added 2 aliases"));
    std::fs::write(&list, "carol carol@real.test\nbroken\n").unwrap();
    let (code, _, err) = svc.cli(&["alias", "import", list.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "domain = \"remailer.test\"\n[smtp]\nlisten_on = [\"127.0.0.1:25\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .args(["--config", path.to_str().unwrap(), "alias", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_on"), "{err}");
    // REMAILER_CONFIG is read too
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .args(["alias", "list"])
        .env("REMAILER_CONFIG", &path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_on"));
}

/// `remailer check-config` on a config file holding `text`: its exit code and output.
fn check_config(dir: &std::path::Path, text: &str) -> (Option<i32>, String) {
    let path = dir.join("remailer.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), stdout)
}

#[test]
fn a_bad_domain_is_a_config_error_that_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check_config(dir.path(), "domain = \"remailer test\"\n");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("config: FAILED"), "{out}");
    assert!(
        out.contains("domain: 'remailer test' is not a valid domain"),
        "{out}"
    );
    assert!(!dir.path().join("remailer-data").exists());
    // An internationalised domain is read once, into its A-label form.
    let idn = "domain = \"Bücher.Example\"\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n\
               [web]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"\"\n";
    let (_, out) = check_config(dir.path(), idn);
    assert!(
        out.contains("domain:       xn--bcher-kva.example\n"),
        "{out}"
    );
}

#[test]
fn without_a_config_file_it_says_it_uses_local_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remailer"))
        .args(["alias", "add", "ann", "ann@mail.example"])
        .current_dir(dir.path())
        .env_remove("REMAILER_CONFIG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("safe local defaults") && err.contains("127.0.0.1:2525"),
        "{err}"
    );
    assert!(dir.path().join("remailer-data/keys/master.key").exists());
}
