//! A throw-away PostgreSQL cluster for tests: `initdb` in a temp dir, run as an
//! unprivileged user (PostgreSQL refuses root; `scripts/test-deps.sh` creates
//! `remailer-test`), listening only on a free port on 127.0.0.1, `fsync=off`. One cluster
//! per test binary ([`cluster`]), one database per test ([`Cluster::database`]). Stopped and
//! removed on drop (and at process exit for the shared one).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The unprivileged user the cluster runs as when the tests run as root.
const TEST_USER: &str = "remailer-test";

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Runs initdb/pg_ctl as this user (None: the current, non-root user).
    run_as: Option<String>,
}

/// The PostgreSQL binaries (initdb, pg_ctl), newest version under /usr/lib/postgresql.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/test-deps.sh")
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no /usr/lib/postgresql/*/bin/initdb: run scripts/test-deps.sh")
        .1
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Cluster {
    /// initdb + pg_ctl start; panics with the server log when it does not come up.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let run_as = is_root().then(|| TEST_USER.to_string());
        let dir = std::env::temp_dir().join(format!(
            "remailer-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .arg(user)
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(
                ok,
                "chown {user} failed: run scripts/test-deps.sh (creates the user)"
            );
        }
        let cluster = Cluster {
            dir,
            bin,
            port: free_port(),
            run_as,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        cluster.start_server();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
        out
    }

    /// Starts the server (again, after [`Cluster::stop`]) on the same port and waits for it.
    pub fn start_server(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
             -c shared_preload_libraries=pg_stat_statements",
            self.port,
            self.dir.display()
        );
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` (which need not exist).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn database(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        self.run(
            "createdb",
            &["-h", &dir, "-p", &port, "-U", "postgres", &name],
        );
        self.url(&name)
    }

    /// The cluster's directory (its server.log is there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SHARED: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(m) = SHARED.get() {
        if let Ok(mut c) = m.lock() {
            c.take();
        }
    }
}

/// The cluster shared by every test of this binary (started on first use, stopped at exit).
/// Tests that stop the server start their own with [`Cluster::start`].
pub fn cluster() -> std::sync::MutexGuard<'static, Option<Cluster>> {
    let m = SHARED.get_or_init(|| {
        // SAFETY: registers a plain function that only drops the cluster.
        unsafe { libc::atexit(stop_shared) };
        Mutex::new(Some(Cluster::start()))
    });
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh database on the shared cluster.
pub fn database() -> String {
    cluster().as_ref().expect("cluster stopped").database()
}
