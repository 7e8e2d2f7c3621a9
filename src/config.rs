//! The configuration file (TOML, ARCHITECTURE.md §5) and its safe local defaults. Unknown keys are
//! an error that names the key, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::address::Domain;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub domain: String,
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub dkim: DkimConfig,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub listen: Vec<SocketAddr>,
    /// Name in the greeting and EHLO; defaults to `domain`.
    pub hostname: Option<String>,
    /// Bytes; larger messages get `552 5.3.4`.
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    /// Connections one client address (an IPv6 /64) may have open; more get `421 4.7.0`.
    pub max_connections_per_client: usize,
    /// Refused recipients (5xx to RCPT) one client address may collect in `refusal_window`
    /// seconds, over all its connections; then it is cut off (`421 4.7.0`) until the oldest
    /// of them is older than the window.
    pub max_refusals_per_client: usize,
    pub refusal_window: u64,
    /// Seconds to wait for a command line (from the end of the previous command).
    pub command_timeout: u64,
    /// Seconds to wait for each chunk while a message is being transferred.
    pub data_timeout: u64,
    /// Bytes per second message data must average, after a first `data_timeout` seconds.
    pub min_data_rate: u64,
    /// Seconds a whole session may last.
    pub session_timeout: u64,
    /// Commands that fail before the session is closed with 421.
    pub max_errors: u32,
    /// PEM certificate chain and private key; STARTTLS is offered when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec!["127.0.0.1:2525".parse().unwrap()],
            hostname: None,
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 50,
            max_connections: 500,
            max_connections_per_client: 20,
            max_refusals_per_client: 50,
            refusal_window: 600,
            command_timeout: 300,
            data_timeout: 180,
            min_data_rate: 1024,
            session_timeout: 1800,
            max_errors: 10,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// The address people use (clear-web `https://…` or an onion address); links in mails
    /// are `{public_url}/confirm/{token}`.
    pub public_url: String,
    /// Who runs the service, named in the footer of every one-way message.
    pub operator: Option<String>,
    /// The one-way anonymous form (`/send`) is on.
    pub one_way: bool,
    /// Largest one-way message body, in bytes.
    pub one_way_max_body: usize,
    /// One-way messages one address may receive per day (UTC).
    pub one_way_per_recipient_per_day: u32,
    /// One-way messages the service sends per hour, in all.
    pub one_way_per_hour: u32,
    /// One-way messages (and opt-out requests) one client may send per hour; kept in
    /// memory only, under a hash of the client address.
    pub one_way_per_client_per_hour: u32,
    /// When the service is also an onion service: its `http://….onion` address, sent as the
    /// `Onion-Location` header so Tor Browser offers it.
    pub onion_location: Option<String>,
    /// Hours a confirmation link stays valid (and a pending alias name stays held).
    pub token_hours: u64,
    /// Confirmation mails one address may receive per day.
    pub mails_per_address_day: u32,
    /// Confirmation mails the service sends per hour in all (more get a 429 page).
    pub mails_per_hour: u32,
    /// Bytes of a request body; larger gets a 413 page.
    pub max_body: usize,
    /// Bytes of the request line and headers together (larger: 431).
    pub max_header_bytes: usize,
    /// Seconds a client has to send its request headers, and to get its whole request handled.
    pub request_timeout: u64,
    /// Open HTTP connections at most.
    pub max_connections: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: "127.0.0.1:8080".parse().unwrap(),
            public_url: "http://127.0.0.1:8080".into(),
            operator: None,
            one_way: true,
            one_way_max_body: 10 * 1024,
            one_way_per_recipient_per_day: 3,
            one_way_per_hour: 100,
            one_way_per_client_per_hour: 5,
            onion_location: None,
            token_hours: 24,
            mails_per_address_day: 3,
            mails_per_hour: 100,
            max_body: 64 * 1024,
            max_header_bytes: 16 * 1024,
            request_timeout: 20,
            max_connections: 256,
        }
    }
}

impl WebConfig {
    /// `public_url` without a trailing slash, ready to have a path appended.
    pub fn base_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// `host:port`; when set (and not empty) every message goes there instead of to the
    /// recipient's MX.
    pub relay: Option<String>,
    /// Seconds a message may stay queued before it is given up (default 5 days).
    pub max_age: u64,
    /// First retry delay in seconds; doubles after each temporary failure.
    pub retry_base: u64,
    /// Longest retry delay in seconds.
    pub retry_max: u64,
    /// Parallel deliveries to one destination (relay or MX domain).
    pub per_destination: usize,
    /// Parallel deliveries in all.
    pub workers: usize,
    /// Seconds for connect and for each SMTP reply.
    pub timeout: u64,
    /// Port for MX deliveries (25; tests point it elsewhere).
    pub mx_port: u16,
    /// Destination domains that must be reached over TLS (else the message is deferred).
    pub require_tls: Vec<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            relay: None,
            max_age: 5 * 24 * 3600,
            retry_base: 60,
            retry_max: 3600,
            per_destination: 20,
            workers: 100,
            timeout: 60,
            mx_port: 25,
            require_tls: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolvers (`ip:port`) for sender checks and MX lookups; the system's when empty.
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:///path/file.db` or `postgres://…`; defaults to `DATA_DIR/remailer.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SenderAuth {
    /// An aligned DMARC pass for the From domain.
    #[default]
    Dmarc,
    /// SPF or DKIM pass aligned with the From domain.
    SpfOrDkim,
    /// Trust the From address as given (loud warning at start).
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub sender_auth: SenderAuth,
    /// Strip `multipart/signed` signatures instead of refusing signed messages.
    pub strip_signatures: bool,
    /// The operator's address: mail to postmaster@ and abuse@ DOMAIN is forwarded there
    /// (attached to a signed message). Unset, those addresses are refused and the DNS
    /// records name no report address.
    pub postmaster: Option<String>,
    /// Hard-bounced distinct messages, sent on at least two distinct days, after which a
    /// member's alias is paused (the count restarts when the alias is reactivated with
    /// `remailer alias activate`; see [`crate::bounces`]).
    pub hard_bounce_limit: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            sender_auth: SenderAuth::Dmarc,
            strip_signatures: false,
            postmaster: None,
            hard_bounce_limit: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// Selector prefix: keys are published at `SELECTOR-rsa._domainkey` and `SELECTOR-ed._domainkey`.
    pub selector: String,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            selector: "remailer".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Days a Message-ID mapping (for threading) is kept.
    pub thread_map_days: u64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            thread_map_days: 90,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `host:port` of `/metrics` (Prometheus text format) and `/healthz`; empty: off.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

impl AdminConfig {
    /// The address to listen on, `None` when switched off (validated at load).
    pub fn addr(&self) -> Option<SocketAddr> {
        let listen = self.listen.trim();
        (!listen.is_empty()).then(|| listen.parse().expect("validated at load"))
    }
}

/// Rate limits ([`crate::rate_limits`]), counted in memory on each node. 0 switches one off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Messages one member may send (to aliases) per hour, and per day.
    pub member_per_hour: u32,
    pub member_per_day: u32,
    /// Messages one alias may receive per hour.
    pub alias_per_hour: u32,
    /// SMTP connections, and commands, one client address may open/send per minute.
    pub connections_per_client_per_minute: u32,
    pub commands_per_client_per_minute: u32,
    /// Deliveries the service starts per minute, in all (delivery waits; nothing is dropped).
    pub outbound_per_minute: u32,
    /// Lengths of the minute, hour and day above, in seconds (shorten only to test).
    pub minute: u64,
    pub hour: u64,
    pub day: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            member_per_hour: 60,
            member_per_day: 300,
            alias_per_hour: 120,
            connections_per_client_per_minute: 60,
            commands_per_client_per_minute: 1200,
            outbound_per_minute: 1200,
            minute: 60,
            hour: 3600,
            day: 86_400,
        }
    }
}

mod defaults {
    use std::path::PathBuf;
    pub fn data_dir() -> PathBuf {
        PathBuf::from("remailer-data")
    }
}

impl Config {
    /// The configuration used when no file is given: loopback only, data in `./remailer-data`.
    pub fn local_defaults() -> Self {
        Config {
            domain: "remailer.localhost".into(),
            data_dir: defaults::data_dir(),
            smtp: SmtpConfig::default(),
            web: WebConfig::default(),
            delivery: DeliveryConfig::default(),
            dns: DnsConfig::default(),
            store: StoreConfig::default(),
            policy: PolicyConfig::default(),
            dkim: DkimConfig::default(),
            privacy: PrivacyConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.into(),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        if config
            .delivery
            .relay
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            config.delivery.relay = None; // empty means: deliver by MX lookup
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        Domain::parse(&self.domain).map_err(|e| ConfigError::Invalid(format!("domain: {e}")))?;
        if self.smtp.listen.is_empty() {
            return Err(ConfigError::Invalid(
                "smtp.listen needs at least one address".into(),
            ));
        }
        if self.smtp.tls_cert.is_some() != self.smtp.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "smtp.tls_cert and smtp.tls_key go together".into(),
            ));
        }
        if self.smtp.max_message_size < 1024
            || self.smtp.max_recipients == 0
            || self.smtp.max_connections == 0
        {
            return Err(ConfigError::Invalid(
                "smtp.max_message_size (>= 1024), max_recipients and max_connections (>= 1) are too small".into(),
            ));
        }
        let smtp = &self.smtp;
        if smtp.max_connections_per_client == 0
            || smtp.max_refusals_per_client == 0
            || smtp.refusal_window == 0
            || smtp.min_data_rate == 0
            || smtp.session_timeout == 0
        {
            return Err(ConfigError::Invalid(
                "smtp.max_connections_per_client, max_refusals_per_client, refusal_window, \
                 min_data_rate and session_timeout must be >= 1"
                    .into(),
            ));
        }
        if let Some(addr) = &self.policy.postmaster {
            crate::address::RealAddress::parse(addr, &self.domain())
                .map_err(|e| ConfigError::Invalid(format!("policy.postmaster: {e}")))?;
        }
        if self.delivery.per_destination == 0 || self.delivery.workers == 0 {
            return Err(ConfigError::Invalid(
                "delivery.per_destination and workers must be >= 1".into(),
            ));
        }
        if self.web.one_way_max_body == 0 || self.web.one_way_max_body > 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "web.one_way_max_body must be between 1 and 1048576 bytes".into(),
            ));
        }
        if !(self.web.public_url.starts_with("http://")
            || self.web.public_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(
                "web.public_url must start with http:// or https://".into(),
            ));
        }
        if self.web.token_hours == 0
            || self.web.max_body < 1024
            || self.web.max_header_bytes < 8192
            || self.web.max_connections == 0
            || self.web.request_timeout == 0
        {
            return Err(ConfigError::Invalid(
                "web.token_hours, web.request_timeout and web.max_connections must be >= 1, web.max_body >= 1024, web.max_header_bytes >= 8192".into(),
            ));
        }
        let listen = self.admin.listen.trim();
        if !listen.is_empty() && listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "admin.listen must be host:port (like 127.0.0.1:9090) or empty (off), not {listen:?}"
            )));
        }
        let limits = &self.limits;
        if limits.minute == 0 || limits.hour == 0 || limits.day == 0 {
            return Err(ConfigError::Invalid(
                "limits.minute, limits.hour and limits.day must be >= 1 (seconds)".into(),
            ));
        }
        if let Some(url) = &self.store.url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError::Invalid(
                    "store.url must start with sqlite: or postgres://".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn domain(&self) -> Domain {
        Domain::parse(&self.domain).expect("validated at load")
    }

    /// The operator's address for postmaster@/abuse@ mail, if configured (validated at load).
    pub fn postmaster(&self) -> Option<crate::address::RealAddress> {
        let domain = self.domain();
        self.policy
            .postmaster
            .as_deref()
            .and_then(|a| crate::address::RealAddress::parse(a, &domain).ok())
    }

    /// Who runs the service, as the one-way footer names it (`web.operator`, else the domain).
    pub fn operator(&self) -> String {
        match self.web.operator.as_deref().map(str::trim) {
            Some(o) if !o.is_empty() => o.to_string(),
            _ => format!("the operator of {}", self.domain),
        }
    }

    pub fn hostname(&self) -> String {
        self.smtp
            .hostname
            .clone()
            .unwrap_or_else(|| self.domain.clone())
    }

    pub fn store_url(&self) -> String {
        self.store
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("remailer.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_parses() {
        let c = Config::parse(
            r#"
domain = "remailer.example"
data_dir = "/var/lib/remailer"
[smtp]
listen = ["0.0.0.0:25"]
hostname = "mx.remailer.example"
max_message_size = 26214400
[web]
listen = "127.0.0.1:8080"
public_url = "https://remailer.example"
[delivery]
relay = "127.0.0.1:2626"
[dns]
nameservers = ["127.0.0.1:5353"]
[store]
url = "sqlite:///var/lib/remailer/remailer.db"
[policy]
sender_auth = "dmarc"
"#,
        )
        .unwrap();
        assert_eq!(c.hostname(), "mx.remailer.example");
        assert_eq!(c.policy.sender_auth, SenderAuth::Dmarc);
        assert_eq!(c.delivery.max_age, 432000);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("domain = \"a.test\"\n[smtp]\nlisten_on = []\n").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
        let err = Config::parse("domain = \"a.test\"\ncolour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(Config::parse("domain = \"not a domain\"")
            .unwrap_err()
            .to_string()
            .contains("domain"));
        let err = Config::parse("domain = \"a.test\"\n[web]\npublic_url = \"remailer.example\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("web.public_url"), "{err}");
        let err =
            Config::parse("domain = \"a.test\"\n[web]\nmax_header_bytes = 100\n").unwrap_err();
        assert!(err.to_string().contains("max_header_bytes"), "{err}");
        let err =
            Config::parse("domain = \"a.test\"\n[policy]\nsender_auth = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
        let err = Config::parse("domain = \"a.test\"\n[admin]\nlisten = \"9090\"\n").unwrap_err();
        assert!(err.to_string().contains("admin.listen"), "{err}");
        let err = Config::parse("domain = \"a.test\"\n[limits]\nhour = 0\n").unwrap_err();
        assert!(err.to_string().contains("limits.hour"), "{err}");
    }

    #[test]
    fn admin_listen_defaults_to_loopback_and_empty_is_off() {
        let c = Config::parse("domain = \"a.test\"\n").unwrap();
        assert_eq!(c.admin.addr(), Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.limits.member_per_hour, 60);
        let c = Config::parse("domain = \"a.test\"\n[admin]\nlisten = \"\"\n").unwrap();
        assert_eq!(c.admin.addr(), None);
    }
}
