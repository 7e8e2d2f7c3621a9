//! The real `remailer` binary, started with a config on ephemeral loopback ports and a
//! temporary data dir. Dropping it kills the process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Service {
    pub smtp_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

pub const DOMAIN: &str = "remailer.test";

impl Service {
    /// A config for a service relaying to `relay_port`; `extra` is appended (TOML).
    pub fn config(smtp_port: u16, relay_port: u16, dir: &Path, extra: &str) -> String {
        format!(
            "domain = \"{DOMAIN}\"\ndata_dir = \"{dir}\"\n{extra_top}\
             [smtp]\nlisten = [\"127.0.0.1:{smtp_port}\"]\nhostname = \"mx.{DOMAIN}\"\nmax_message_size = 65536\nmax_recipients = 5\n{smtp_extra}\
             [web]\npublic_url = \"https://{DOMAIN}/register\"\n\
             [delivery]\nrelay = \"127.0.0.1:{relay_port}\"\n{retry}{delivery_extra}\
             [policy]\nsender_auth = \"none\"\n",
            dir = dir.display(),
            extra_top = section(extra, "top"),
            smtp_extra = section(extra, "smtp"),
            delivery_extra = section(extra, "delivery"),
            retry = if extra.contains("retry_") { "" } else { "retry_base = 1\nretry_max = 2\n" },
        )
    }

    /// Prepares a data dir and config without starting the service.
    pub fn prepare(relay_port: u16, extra: &str) -> Service {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let smtp_port = super::free_port();
        let config_path = dir.join("remailer.toml");
        std::fs::write(
            &config_path,
            Self::config(smtp_port, relay_port, &dir.join("data"), extra),
        )
        .unwrap();
        Service {
            smtp_port,
            dir,
            config_path,
            child: None,
            _tmp: Some(tmp),
        }
    }

    /// Prepares and starts; waits until SMTP answers.
    pub async fn start(relay_port: u16, extra: &str) -> Service {
        let mut s = Self::prepare(relay_port, extra);
        s.spawn().await;
        s
    }

    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_remailer"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start remailer");
        self.child = Some(child);
        let port = self.smtp_port;
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("remailer exited with {status}; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("remailer did not listen on {port}; log:\n{}", self.log());
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("remailer.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs a CLI command against this service's config; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_remailer"))
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run remailer");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn add_alias(&self, name: &str, real: &str) {
        let (code, out, err) = self.cli(&["alias", "add", name, real]);
        assert_eq!(code, 0, "alias add {name}: {out}{err}");
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (up to 30 s) for a clean exit; returns the exit status code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.pid()?;
        unsafe_kill(pid, "TERM");
        self.wait_exit(Duration::from_secs(30)).await
    }

    /// Waits (without blocking the test's runtime) for the process to exit by itself; returns
    /// its exit code, or None (after killing it) when it did not exit in time.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn section(extra: &str, which: &str) -> String {
    // `extra` holds lines prefixed "smtp.", "delivery." or none (top level).
    extra
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() {
                return None;
            }
            match (which, l.split_once('.')) {
                ("smtp", Some(("smtp", rest))) | ("delivery", Some(("delivery", rest))) => {
                    Some(format!("{rest}\n"))
                }
                ("top", _) if !l.starts_with("smtp.") && !l.starts_with("delivery.") => {
                    Some(format!("{l}\n"))
                }
                _ => None,
            }
        })
        .collect()
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
