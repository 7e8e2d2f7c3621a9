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
    /// The file this config was read from (None for the local defaults); relative paths in
    /// it are resolved against its folder.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// The service's mail domain, parsed once here (A-label form, lower case).
    #[serde(deserialize_with = "domain_key")]
    pub domain: Domain,
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
    pub log: LogConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    #[serde(deserialize_with = "socket::listen_list")]
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
    #[serde(deserialize_with = "socket::listen")]
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
    /// The active window: at most this many queued entries are taken from the scheduler
    /// and in delivery at once (waiting for a worker or being tried); the rest of the queue
    /// is a few bytes of metadata each, whatever its size.
    pub active_limit: usize,
    /// Seconds for connect and for each SMTP reply.
    pub timeout: u64,
    /// Port for MX deliveries (25; tests point it elsewhere).
    pub mx_port: u16,
    /// Destination domains that must be reached over verified TLS: a certificate chain to
    /// the trust roots, valid for the MX host name, not expired (else the message is deferred).
    pub require_tls: Vec<String>,
    /// PEM file of extra trust roots for verified outbound TLS, besides webpki-roots (a
    /// private CA, or the tests' CA).
    pub tls_ca_file: Option<PathBuf>,
    /// Apply recipient domains' MTA-STS policies (RFC 8461) to MX deliveries (default on).
    pub mta_sts: bool,
    /// Port of the HTTPS server an MTA-STS policy is fetched from (443; tests point it
    /// elsewhere).
    pub mta_sts_port: u16,
    /// `"MIN..MAX"` (`5m..2h`): each remailed message waits a uniform random time in this
    /// range before its first attempt (against timing correlation). Absent: no delay.
    pub delay: Option<DelayRange>,
    /// Seconds (or a duration such as `"10m"`) between pool releases: held messages leave
    /// in shuffled batches at each tick. 0 or absent: no pooling.
    #[serde(deserialize_with = "seconds_or_duration")]
    pub pool_interval: u64,
}

/// A range of delays, in seconds (`delivery.delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DelayRange {
    pub min: u64,
    pub max: u64,
}

impl TryFrom<String> for DelayRange {
    type Error = DelayRangeError;

    fn try_from(text: String) -> Result<Self, DelayRangeError> {
        let bad = |why: DelayProblem| DelayRangeError {
            text: text.clone(),
            why,
        };
        let (min, max) = text
            .split_once("..")
            .ok_or_else(|| bad(DelayProblem::NoDots))?;
        let min = parse_duration(min).map_err(|e| bad(e.into()))?;
        let max = parse_duration(max).map_err(|e| bad(e.into()))?;
        if min > max {
            return Err(bad(DelayProblem::MinAboveMax));
        }
        Ok(DelayRange { min, max })
    }
}

/// Why `delivery.delay` is not a range.
#[derive(Debug, Error)]
#[error("delivery.delay {text:?}: {why}; expected MIN..MAX such as \"5m..2h\" (units s, m, h, d)")]
pub struct DelayRangeError {
    text: String,
    #[source]
    why: DelayProblem,
}

#[derive(Debug, Error)]
pub enum DelayProblem {
    #[error("no \"..\"")]
    NoDots,
    #[error(transparent)]
    Duration(#[from] DurationValueError),
    #[error("the minimum is larger than the maximum")]
    MinAboveMax,
}

/// Why a text is not a duration (the text is quoted in the message).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DurationValueError {
    #[error("{0:?} is not a number of seconds or a duration")]
    NotANumber(String),
    #[error("unknown unit {unit:?} in {text:?}")]
    UnknownUnit { unit: String, text: String },
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// `90`, `90s`, `5m`, `2h`, `1d` as seconds.
pub fn parse_duration(text: &str) -> Result<u64, DurationValueError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| DurationValueError::NotANumber(t.to_string()))?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(DurationValueError::UnknownUnit {
                unit: other.to_string(),
                text: t.to_string(),
            })
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| DurationValueError::TooLong(t.to_string()))
}

fn seconds_or_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Seconds(u64),
        Text(String),
    }
    match Value::deserialize(d)? {
        Value::Seconds(n) => Ok(n),
        Value::Text(t) => parse_duration(&t)
            .map_err(|e| serde::de::Error::custom(format!("delivery.pool_interval: {e}"))),
    }
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
            active_limit: 2000,
            timeout: 60,
            mx_port: 25,
            require_tls: Vec::new(),
            tls_ca_file: None,
            mta_sts: true,
            mta_sts_port: 443,
            delay: None,
            pool_interval: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolvers (`ip:port`) for sender checks and MX lookups; the system's when empty.
    #[serde(deserialize_with = "socket::nameservers")]
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:///path/file.db` or `postgres://…`; defaults to `DATA_DIR/remailer.db`.
    pub url: Option<String>,
}

/// Shown by `check-config`: a PostgreSQL URL without its user and password.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url.as_deref().map(crate::store::display_url))
            .finish()
    }
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
    /// Keep a send log (time, queue id, sender and recipient alias, size, outcome; aliases
    /// only). Off by default; `remailer log` reads it.
    pub send_log: bool,
    /// Days a send-log entry is kept before it is purged.
    pub send_log_days: u64,
    /// What happens to remote images, CSS `url()`s and `<link>` loads in HTML parts (which
    /// tell a sender when and from where a member read the message).
    pub remote_content: RemoteContent,
    /// Remove metadata from attachments (Exif/XMP/IPTC of images, PDF Info and XMP, office
    /// document properties) and members' names from file names; a file that cannot be
    /// cleaned refuses the message (ARCHITECTURE.md §3).
    pub strip_attachment_metadata: bool,
    /// What mail to a member whose OpenPGP key has expired becomes (never silent clear text).
    pub pgp_expired: PgpExpired,
}

/// `privacy.pgp_expired`: mail for a member whose registered key has expired since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgpExpired {
    /// The message is withheld; the member gets a clear notice (aliases only) that a message
    /// arrived but could not be encrypted, and how to replace the key.
    #[default]
    Notice,
    /// The message is refused at DATA (`550 5.7.1`), so its sender knows it was not delivered.
    Refuse,
    /// The message goes in clear, with the same notice to the member beside it.
    Plain,
}

/// `privacy.remote_content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteContent {
    /// Removed, or replaced by a short placeholder naming the blocked host.
    #[default]
    Strip,
    /// Passed on as the sender wrote it.
    Keep,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            thread_map_days: 90,
            send_log: false,
            send_log_days: 7,
            remote_content: RemoteContent::Strip,
            strip_attachment_metadata: true,
            pgp_expired: PgpExpired::Notice,
        }
    }
}

/// `[log]`: what operational log lines may show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Show real domains (of senders, From headers, MX hosts) instead of their keyed tags.
    /// For debugging only: the service warns loudly at start.
    pub show_domains: bool,
}

/// `host:port` with the port defaulted to 25 (`host`, `1.2.3.4`, `[::1]`), or why it is not
/// a relay address. A bare IPv6 address is refused (write `[::1]:25`).
pub fn relay_with_port(relay: &str) -> Result<String, RelayError> {
    let bad = |why: &'static str| {
        Err(RelayError {
            relay: relay.to_string(),
            why,
        })
    };
    if relay.is_empty() || relay.contains(char::is_whitespace) {
        return bad("is not host:port");
    }
    let (host, port) = if let Some(rest) = relay.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return bad("has no closing ']'");
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("does not hold an IPv6 address between [ and ]");
        }
        match after {
            "" => (format!("[{ip}]"), None),
            p if p.starts_with(':') => (format!("[{ip}]"), Some(&p[1..])),
            _ => return bad("is not [IPv6]:port"),
        }
    } else {
        match relay.matches(':').count() {
            0 => (relay.to_string(), None),
            1 => {
                let (h, p) = relay.split_once(':').expect("one colon");
                (h.to_string(), Some(p))
            }
            _ => return bad("looks like a bare IPv6 address: write it as [ADDRESS]:PORT"),
        }
    };
    if host.is_empty() || host == "[]" {
        return bad("has no host");
    }
    let port = match port {
        None => 25,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return bad("has a port that is not a number from 1 to 65535"),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// Why `delivery.relay` is not `host:port`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("'{relay}' {why}")]
pub struct RelayError {
    relay: String,
    why: &'static str,
}

/// Socket addresses in the file, with messages that say what is wrong: a listen address
/// needs its port; a name server's port defaults to 53.
mod socket {
    use std::net::{IpAddr, SocketAddr};

    use serde::{de::Error, Deserialize, Deserializer};

    /// Why a text is not a socket address.
    #[derive(Debug, thiserror::Error)]
    pub enum SocketError {
        #[error("'{text}' has no port: write {example}")]
        NoPort { text: String, example: SocketAddr },
        #[error("'{0}' is not an IP:PORT address (names are not resolved here; IPv6 as [::1]:25)")]
        NotIpPort(String),
    }

    pub fn parse(s: &str, default_port: Option<u16>) -> Result<SocketAddr, SocketError> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        match (bare.parse::<IpAddr>(), default_port) {
            (Ok(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
            (Ok(ip), None) => Err(SocketError::NoPort {
                text: s.to_string(),
                example: SocketAddr::new(ip, 25),
            }),
            _ => Err(SocketError::NotIpPort(s.to_string())),
        }
    }

    pub fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parse(&String::deserialize(d)?, None).map_err(D::Error::custom)
    }

    pub fn listen_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s, None).map_err(D::Error::custom))
            .collect()
    }

    pub fn nameservers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s, Some(53)).map_err(D::Error::custom))
            .collect()
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

/// Reads `domain` as a [`Domain`]; a bad one is a parse error that names the key.
fn domain_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Domain, D::Error> {
    let text = String::deserialize(d)?;
    Domain::parse(&text).map_err(|e| serde::de::Error::custom(format!("domain: {e}")))
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
            file: None,
            domain: Domain::parse("remailer.localhost").expect("a valid domain"),
            data_dir: defaults::data_dir(),
            smtp: SmtpConfig::default(),
            web: WebConfig::default(),
            delivery: DeliveryConfig::default(),
            dns: DnsConfig::default(),
            store: StoreConfig::default(),
            policy: PolicyConfig::default(),
            dkim: DkimConfig::default(),
            privacy: PrivacyConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.into(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        config.resolve_paths(&base);
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Makes the relative paths of the file (data dir, TLS files, a `sqlite:` store) relative
    /// to `base`, the folder of the config file, rather than to the working directory.
    fn resolve_paths(&mut self, base: &Path) {
        let absolute = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        self.data_dir = absolute(&self.data_dir);
        self.smtp.tls_cert = self.smtp.tls_cert.as_deref().map(absolute);
        self.delivery.tls_ca_file = self.delivery.tls_ca_file.as_deref().map(absolute);
        self.smtp.tls_key = self.smtp.tls_key.as_deref().map(absolute);
        if let Some(url) = &self.store.url {
            if let Some(path) = crate::store::sqlite_path(url) {
                if path.is_relative() {
                    let query = url.split_once('?').map(|(_, q)| format!("?{q}"));
                    self.store.url = Some(format!(
                        "sqlite://{}{}",
                        absolute(&path).display(),
                        query.unwrap_or_default()
                    ));
                }
            }
        }
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
        if let Some(relay) = &config.delivery.relay {
            config.delivery.relay = Some(
                relay_with_port(relay.trim())
                    .map_err(|e| ConfigError::Invalid(format!("delivery.relay: {e}")))?,
            );
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
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
            crate::address::RealAddress::parse(addr, &self.domain)
                .map_err(|e| ConfigError::Invalid(format!("policy.postmaster: {e}")))?;
        }
        if self.delivery.per_destination == 0
            || self.delivery.workers == 0
            || self.delivery.active_limit == 0
        {
            return Err(ConfigError::Invalid(
                "delivery.per_destination, workers and active_limit must be >= 1".into(),
            ));
        }
        let d = &self.delivery;
        if d.delay.is_some_and(|r| r.max >= d.max_age) || d.pool_interval >= d.max_age {
            return Err(ConfigError::Invalid(
                "delivery.delay and delivery.pool_interval must stay below delivery.max_age".into(),
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
        if self.privacy.send_log_days == 0 || self.privacy.send_log_days > 3650 {
            return Err(ConfigError::Invalid(
                "privacy.send_log_days must be between 1 and 3650".into(),
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

    /// The operator's address for postmaster@/abuse@ mail, if configured (validated at load).
    pub fn postmaster(&self) -> Option<crate::address::RealAddress> {
        self.policy
            .postmaster
            .as_deref()
            .and_then(|a| crate::address::RealAddress::parse(a, &self.domain).ok())
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
            .unwrap_or_else(|| self.domain.to_string())
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
    fn delay_and_pool_interval_parse_or_fail_clearly() {
        let base = "domain = \"r.example\"\n[delivery]\n";
        let c = Config::parse(&format!(
            "{base}delay = \"5m..2h\"\npool_interval = \"10m\""
        ))
        .unwrap();
        assert_eq!(
            c.delivery.delay,
            Some(DelayRange {
                min: 300,
                max: 7200
            })
        );
        assert_eq!(c.delivery.pool_interval, 600);
        let c = Config::parse(&format!("{base}pool_interval = 30")).unwrap();
        assert_eq!(c.delivery.pool_interval, 30);
        for (bad, says) in [
            ("delay = \"2h..5m\"", "larger than the maximum"),
            ("delay = \"5m\"", "expected MIN..MAX"),
            ("delay = \"5x..1h\"", "unknown unit"),
            ("pool_interval = \"soon\"", "not a number"),
            ("delay = \"1s..6d\"", "below delivery.max_age"),
        ] {
            let e = Config::parse(&format!("{base}{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

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
    fn host_port_keys_default_or_explain() {
        let c = Config::parse("domain = \"a.test\"\n[delivery]\nrelay = \"127.0.0.1\"\n").unwrap();
        assert_eq!(c.delivery.relay.as_deref(), Some("127.0.0.1:25"));
        assert_eq!(relay_with_port("[::1]").unwrap(), "[::1]:25");
        assert_eq!(
            relay_with_port("smtp.example:587").unwrap(),
            "smtp.example:587"
        );
        assert!(relay_with_port("::1")
            .unwrap_err()
            .to_string()
            .contains("[ADDRESS]:PORT"));
        assert!(relay_with_port("h:0").is_err() && relay_with_port("h:x").is_err());
        let err =
            Config::parse("domain = \"a.test\"\n[smtp]\nlisten = [\"127.0.0.1\"]\n").unwrap_err();
        assert!(err.to_string().contains("has no port"), "{err}");
        let c =
            Config::parse("domain = \"a.test\"\n[dns]\nnameservers = [\"127.0.0.1\"]\n").unwrap();
        assert_eq!(c.dns.nameservers[0].port(), 53);
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("remailer.toml");
        std::fs::write(
            &path,
            "domain = \"a.test\"\ndata_dir = \"data\"\n[store]\nurl = \"sqlite://db/r.db?mode=rwc\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        let db = dir.path().join("db/r.db");
        assert_eq!(c.store_url(), format!("sqlite://{}?mode=rwc", db.display()));
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
        let err = Config::parse("domain = \"not a domain\"").unwrap_err();
        assert!(err.to_string().contains("domain: "), "{err}");
        let c = Config::parse("domain = \"Bücher.Example.\"").unwrap();
        assert_eq!(c.domain.as_str(), "xn--bcher-kva.example");
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
