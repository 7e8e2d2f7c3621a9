//! The real `remailer` binary, started with a config on ephemeral loopback ports and a
//! temporary data dir. Dropping it kills the process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Service {
    pub smtp_port: u16,
    /// The web server's port (`web.listen`); `web.public_url` stays `https://DOMAIN`.
    pub web_port: u16,
    /// The admin server's port (`admin.listen`: `/metrics`, `/healthz`), unless a test
    /// switched it off.
    pub admin_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

pub const DOMAIN: &str = "remailer.test";

impl Service {
    /// A config for a service relaying to `relay_port`. `extra` holds `section.key = value`
    /// lines (or top-level `key = value`); each replaces the default of the same key.
    /// The rate limits of `[limits]` are off unless `extra` sets them (tests send many
    /// messages from one member and client); `admin.listen` is a free port.
    pub fn config(smtp_port: u16, relay_port: u16, dir: &Path, extra: &str) -> String {
        Self::config_with_web(smtp_port, super::free_port(), relay_port, dir, extra)
    }

    /// [`Service::config`] with the web server on `web_port`.
    pub fn config_with_web(
        smtp_port: u16,
        web_port: u16,
        relay_port: u16,
        dir: &Path,
        extra: &str,
    ) -> String {
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut set = |section: &str, key: &str, value: &str| {
            let idx = match sections.iter().position(|(s, _)| s == section) {
                Some(i) => i,
                None => {
                    sections.push((section.to_string(), Vec::new()));
                    sections.len() - 1
                }
            };
            let entries = &mut sections[idx].1;
            entries.retain(|(k, _)| k != key);
            entries.push((key.to_string(), value.to_string()));
        };
        set("", "domain", &format!("\"{DOMAIN}\""));
        set("", "data_dir", &format!("\"{}\"", dir.display()));
        set("smtp", "listen", &format!("[\"127.0.0.1:{smtp_port}\"]"));
        set("smtp", "hostname", &format!("\"mx.{DOMAIN}\""));
        set("smtp", "max_message_size", "65536");
        set("smtp", "max_recipients", "5");
        set("web", "listen", &format!("\"127.0.0.1:{web_port}\""));
        set("web", "public_url", &format!("\"https://{DOMAIN}\""));
        set("delivery", "relay", &format!("\"127.0.0.1:{relay_port}\""));
        set("delivery", "retry_base", "1");
        set("delivery", "retry_max", "2");
        set("policy", "sender_auth", "\"none\"");
        set(
            "admin",
            "listen",
            &format!("\"127.0.0.1:{}\"", super::free_port()),
        );
        for key in [
            "member_per_hour",
            "member_per_day",
            "alias_per_hour",
            "connections_per_client_per_minute",
            "commands_per_client_per_minute",
            "outbound_per_minute",
        ] {
            set("limits", key, "0");
        }
        for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').expect("extra lines are key = value");
            let (section, key) = key.trim().split_once('.').unwrap_or(("", key.trim()));
            set(section, key, value.trim());
        }
        let mut out = String::new();
        for (section, entries) in &sections {
            if !section.is_empty() {
                out.push_str(&format!("[{section}]\n"));
            }
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    }

    /// Prepares a data dir and config without starting the service.
    pub fn prepare(relay_port: u16, extra: &str) -> Service {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let smtp_port = super::free_port();
        let web_port = super::free_port();
        let config_path = dir.join("remailer.toml");
        let admin_port = super::free_port();
        let extra = format!("admin.listen = \"127.0.0.1:{admin_port}\"\n{extra}");
        std::fs::write(
            &config_path,
            Self::config_with_web(smtp_port, web_port, relay_port, &dir.join("data"), &extra),
        )
        .unwrap();
        Service {
            smtp_port,
            web_port,
            admin_port,
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
                && tokio::net::TcpStream::connect(("127.0.0.1", self.web_port))
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

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}
