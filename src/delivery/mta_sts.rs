//! MTA-STS (RFC 8461) for MX deliveries: the `_mta-sts.DOMAIN` TXT record, the policy
//! fetched from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (verified certificate, no
//! redirects, at most [`MAX_POLICY`] bytes, bounded in time), cached for its `max_age`, and
//! the [`Rule`] a delivery follows: `enforce` means only an MX the policy lists, over
//! verified TLS, or no delivery (a temporary failure); `testing` delivers anyway and logs
//! what would have failed; `none` or no policy changes nothing.
//!
//! The cache follows RFC 8461 §5.1: a cached policy is used while the TXT id is unchanged;
//! a new id refetches; when the TXT lookup or the fetch fails, the cached policy (not yet
//! expired) stays in force. It lives in memory and in the store ([`super::sts_cache`]):
//! each policy fetched is written there, and a domain the memory cache does not know is read
//! from there first, so a restart keeps every policy in force for its `max_age`. Log lines
//! name domains and hosts only by their keyed tags ([`crate::logtag`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::route::Target;
use super::sts_cache::PolicyStore;
use super::Failure;
use crate::logtag;
use crate::store::now_unix;

/// The largest policy body read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY: usize = 64 * 1024;
/// The longest `max_age` honoured (RFC 8461 §3.2: 31557600 seconds, about a year).
const MAX_AGE_LIMIT: u64 = 31_557_600;
/// After a failed fetch (no policy to fall back on, or a new id), how long before trying again.
const FETCH_RETRY: Duration = Duration::from_secs(300);
/// Policies cached at most (least recently used go first).
const CACHE_MAX: u64 = 10_000;

/// A TXT record's text: its character-strings joined with nothing between them (RFC 7208
/// §3.3, RFC 8461 §3.1), bytes that are not UTF-8 replaced.
pub fn txt_text(txt: &TXT) -> String {
    txt.txt_data
        .iter()
        .map(|part| String::from_utf8_lossy(part))
        .collect()
}

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub mode: Mode,
    /// MX host patterns, lower case: `mx.example.com` or `*.example.com`.
    pub mx: Vec<String>,
    pub max_age: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the policy has no version: STSv1")]
    Version,
    #[error("the policy's mode is missing or not enforce, testing or none")]
    Mode,
    #[error("the policy's max_age is missing or not a number of seconds")]
    MaxAge,
    #[error("the policy lists no mx")]
    NoMx,
}

impl Policy {
    /// Parses the policy text (RFC 8461 §3.2): `key: value` lines, LF or CRLF; unknown keys
    /// are ignored.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value == "STSv1"),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        _ => return Err(PolicyError::Mode),
                    })
                }
                "max_age" => {
                    let secs: u64 = value.parse().map_err(|_| PolicyError::MaxAge)?;
                    max_age = Some(secs.min(MAX_AGE_LIMIT));
                }
                "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
                _ => {}
            }
        }
        if version != Some(true) {
            return Err(PolicyError::Version);
        }
        let mode = mode.ok_or(PolicyError::Mode)?;
        let max_age = max_age.ok_or(PolicyError::MaxAge)?;
        if mx.is_empty() && mode != Mode::None {
            return Err(PolicyError::NoMx);
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether an MX host matches one of the patterns (RFC 8461 §4.1): exactly, or
    /// `*.example.com` for one more label in front (`mx.example.com`, not `a.b.example.com`
    /// nor `example.com`). Case-insensitive, a trailing dot ignored.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }
}

/// The id of the one `v=STSv1` TXT record (RFC 8461 §3.1), or None when there is none,
/// several, or it is not valid.
pub fn txt_id(records: &[String]) -> Option<String> {
    let mut sts = records.iter().filter(|r| r.starts_with("v=STSv1"));
    let (record, None) = (sts.next()?, sts.next()) else {
        return None;
    };
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=STSv1" {
        return None;
    }
    let id = fields.find_map(|f| f.strip_prefix("id="))?;
    let valid = (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then(|| id.to_string())
}

/// What the policy of a recipient domain asks of one delivery.
#[derive(Debug, Clone)]
pub enum Rule {
    /// No policy (or `mode: none`, or a relay delivers): opportunistic TLS as always.
    None,
    Testing {
        domain: String,
        policy: Arc<Policy>,
    },
    Enforce {
        domain: String,
        policy: Arc<Policy>,
    },
}

impl Rule {
    /// Only verified TLS to a listed MX may carry the message.
    pub fn enforced(&self) -> bool {
        matches!(self, Rule::Enforce { .. })
    }

    /// Verified TLS is tried, and a failure logged ([`Rule::note_testing_failure`]).
    pub fn testing(&self) -> bool {
        matches!(self, Rule::Testing { .. })
    }

    /// Whether `target` may be tried: an MX the policy does not list is refused under
    /// `enforce` and logged under `testing`.
    pub fn check_mx(&self, target: &Target) -> Result<(), Failure> {
        match self {
            Rule::Enforce { policy, .. } if !policy.matches(&target.name) => {
                Err(Failure::Temporary(
                    "MTA-STS policy (enforce): the MX host is not listed in the policy".into(),
                ))
            }
            Rule::Testing { policy, .. } if !policy.matches(&target.name) => {
                self.note_testing_failure(target, "the MX host is not listed in the policy");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Logs, for a `testing` policy, what an `enforce` policy would have refused.
    pub fn note_testing_failure(&self, target: &Target, why: &str) {
        if let Rule::Testing { domain, .. } = self {
            tracing::warn!(
                domain = %logtag::domain(domain),
                mx = %logtag::host(&target.name),
                reason = why,
                "MTA-STS policy (testing) not met; delivering anyway"
            );
        }
    }
}

/// Why a policy could not be fetched (no domain or host in the words).
#[derive(Debug, Error)]
pub enum FetchError {
    #[error("the policy host has no address")]
    NoAddress,
    #[error("could not connect to the policy host")]
    Connect,
    #[error("TLS to the policy host failed: {0}")]
    Tls(&'static str),
    #[error("HTTP to the policy host failed")]
    Http,
    #[error("the policy host answered HTTP {0} (redirects are not followed)")]
    Status(u16),
    #[error("the policy is not served as text/plain")]
    ContentType,
    #[error("the policy is larger than {MAX_POLICY} bytes or was cut short")]
    Body,
    #[error("the policy is not UTF-8")]
    NotText,
    #[error("fetching the policy timed out")]
    Timeout,
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

#[derive(Clone)]
struct Cached {
    id: String,
    policy: Arc<Policy>,
    expires: Instant,
}

/// Looks up, fetches and caches the policies of recipient domains.
pub struct MtaSts {
    enabled: bool,
    resolver: TokioResolver,
    port: u16,
    tls: TlsConnector,
    timeout: Duration,
    /// Per domain: its policy, or None when the store had none when asked.
    cache: moka::sync::Cache<String, Option<Cached>>,
    /// Where policies outlive the process (None: memory only).
    stored: Option<PolicyStore>,
    /// `(domain, id)` whose fetch failed lately (not retried before [`FETCH_RETRY`]).
    failed: moka::sync::Cache<(String, String), ()>,
    /// Held while a domain's policy is fetched.
    fetching: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
}

impl MtaSts {
    /// `tls` must verify certificates (the policy host's is checked like a `require_tls` MX's).
    pub fn new(
        enabled: bool,
        resolver: TokioResolver,
        port: u16,
        tls: TlsConnector,
        timeout: Duration,
        stored: Option<PolicyStore>,
    ) -> Self {
        MtaSts {
            enabled,
            resolver,
            port,
            tls,
            timeout,
            cache: moka::sync::Cache::new(CACHE_MAX),
            stored,
            failed: moka::sync::Cache::builder()
                .max_capacity(CACHE_MAX)
                .time_to_live(FETCH_RETRY)
                .build(),
            fetching: moka::sync::Cache::builder()
                .max_capacity(CACHE_MAX)
                .time_to_idle(FETCH_RETRY)
                .build(),
        }
    }

    /// The rule for a delivery to `domain`.
    pub async fn rule(&self, domain: &str) -> Rule {
        if !self.enabled {
            return Rule::None;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let Some(policy) = self.policy(&domain).await else {
            return Rule::None;
        };
        match policy.mode {
            Mode::Enforce => Rule::Enforce { domain, policy },
            Mode::Testing => Rule::Testing { domain, policy },
            Mode::None => Rule::None,
        }
    }

    /// The policy in force for `domain` (RFC 8461 §5.1), if any.
    async fn policy(&self, domain: &str) -> Option<Arc<Policy>> {
        let Some(id) = self.lookup_id(domain).await else {
            return self.cached(domain).await.map(|c| c.policy);
        };
        if let Some(c) = self.cached(domain).await.filter(|c| c.id == id) {
            return Some(c.policy.clone());
        }
        // One fetch per domain at a time: the deliveries waiting meanwhile use its result.
        let lock = self.fetching.get_with(domain.to_string(), Arc::default);
        let _fetching = lock.lock().await;
        let cached = self.cached(domain).await;
        if let Some(c) = cached.as_ref().filter(|c| c.id == id) {
            return Some(c.policy.clone());
        }
        let key = (domain.to_string(), id.clone());
        if self.failed.contains_key(&key) {
            return cached.map(|c| c.policy);
        }
        match tokio::time::timeout(self.timeout, self.fetch(domain)).await {
            Ok(Ok(policy)) => Some(self.keep(domain, id, policy).await),
            result => {
                let why = match result {
                    Ok(Err(e)) => e,
                    _ => FetchError::Timeout,
                };
                self.failed.insert(key, ());
                tracing::warn!(
                    domain = %logtag::domain(domain),
                    reason = %why,
                    cached = cached.is_some(),
                    "could not fetch the MTA-STS policy{}",
                    if cached.is_some() { "; the cached policy stays in force" } else { "" }
                );
                cached.map(|c| c.policy)
            }
        }
    }

    /// The unexpired cached policy of `domain`: from memory, or, for a domain the memory
    /// cache does not know, from the store (read once; after a store error, again next time).
    async fn cached(&self, domain: &str) -> Option<Cached> {
        let slot = match self.cache.get(domain) {
            Some(slot) => slot,
            None => {
                let loaded = self.load(domain).await?;
                // A policy fetched meanwhile is newer than what the store gave.
                self.cache
                    .entry(domain.to_string())
                    .or_insert(loaded)
                    .into_value()
            }
        };
        slot.filter(|c| c.expires > Instant::now())
    }

    /// What the store holds for `domain` (`Some(None)`: nothing); None when it cannot be read.
    async fn load(&self, domain: &str) -> Option<Option<Cached>> {
        let stored = self.stored.as_ref()?;
        match stored.load(domain).await {
            Ok(found) => Some(found.map(|s| {
                let left = u64::try_from(s.expires_at - now_unix()).unwrap_or(0);
                Cached {
                    id: s.id,
                    policy: Arc::new(s.policy),
                    expires: Instant::now() + Duration::from_secs(left),
                }
            })),
            Err(e) => {
                tracing::warn!(
                    domain = %logtag::domain(domain),
                    error = %e,
                    "could not read the stored MTA-STS policy"
                );
                None
            }
        }
    }

    /// Caches a policy just fetched for `domain` under the TXT `id`, in memory and in the
    /// store (a store error is logged; the policy is in force in memory all the same).
    async fn keep(&self, domain: &str, id: String, policy: Policy) -> Arc<Policy> {
        let policy = Arc::new(policy);
        let expires = Instant::now() + Duration::from_secs(policy.max_age);
        let entry = Cached {
            id: id.clone(),
            policy: policy.clone(),
            expires,
        };
        self.cache.insert(domain.to_string(), Some(entry));
        if let Some(stored) = &self.stored {
            let until = now_unix().saturating_add(policy.max_age as i64);
            if let Err(e) = stored.save(domain, &id, &policy, until).await {
                tracing::warn!(
                    domain = %logtag::domain(domain),
                    error = %e,
                    "could not store the MTA-STS policy; it is cached in memory only"
                );
            }
        }
        policy
    }

    /// The id of `_mta-sts.DOMAIN`'s record; None when there is no valid one or the lookup
    /// fails (both leave a cached policy in force).
    async fn lookup_id(&self, domain: &str) -> Option<String> {
        let name = format!("_mta-sts.{domain}.");
        let lookup = tokio::time::timeout(self.timeout, self.resolver.txt_lookup(name.as_str()))
            .await
            .ok()?
            .ok()?;
        let records: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(txt_text(txt)),
                _ => None,
            })
            .collect();
        txt_id(&records)
    }

    /// One GET of `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (on `delivery.mta_sts_port`).
    async fn fetch(&self, domain: &str) -> Result<Policy, FetchError> {
        let host = format!("mta-sts.{domain}");
        let ips = self
            .resolver
            .lookup_ip(format!("{host}.").as_str())
            .await
            .map_err(|_| FetchError::NoAddress)?;
        let mut tcp = None;
        for ip in ips.iter().take(4) {
            if let Ok(stream) = TcpStream::connect(SocketAddr::new(ip, self.port)).await {
                tcp = Some(stream);
                break;
            }
        }
        let tcp = tcp.ok_or(FetchError::Connect)?;
        let name = ServerName::try_from(host.clone()).map_err(|_| FetchError::NoAddress)?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| {
            let why = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .map_or("the TLS handshake failed", super::tls::why_rustls);
            FetchError::Tls(why)
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|_| FetchError::Http)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, &host)
            .body(Empty::<Bytes>::new())
            .map_err(|_| FetchError::Http)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| FetchError::Http)?;
        if response.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let text_plain = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/plain"));
        if !text_plain {
            return Err(FetchError::ContentType);
        }
        let body = Limited::new(response.into_body(), MAX_POLICY)
            .collect()
            .await
            .map_err(|_| FetchError::Body)?
            .to_bytes();
        let text = std::str::from_utf8(&body).map_err(|_| FetchError::NotText)?;
        Ok(Policy::parse(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str =
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n";

    #[test]
    fn a_policy_parses_and_its_patterns_match_as_rfc_8461_says() {
        let p = Policy::parse(POLICY).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604_800);
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.Example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("example.net"), "a wildcard needs one label");
        assert!(
            !p.matches("a.b.example.net"),
            "a wildcard covers one label only"
        );
        assert!(!p.matches("mail.example.com.evil"));
        assert!(!p.matches("xmail.example.com"));
    }

    #[test]
    fn bad_policies_are_refused() {
        let without = |key: &str| {
            POLICY
                .lines()
                .filter(|l| !l.starts_with(key))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            Policy::parse(&without("version")),
            Err(PolicyError::Version)
        );
        assert_eq!(Policy::parse(&without("mode")), Err(PolicyError::Mode));
        assert_eq!(Policy::parse(&without("max_age")), Err(PolicyError::MaxAge));
        assert_eq!(Policy::parse(&without("mx")), Err(PolicyError::NoMx));
        let bad_mode = POLICY.replace("enforce", "strict");
        assert_eq!(Policy::parse(&bad_mode), Err(PolicyError::Mode));
        let none = "version: STSv1\nmode: none\nmax_age: 86400\n";
        assert_eq!(Policy::parse(none).unwrap().mode, Mode::None);
        let huge = POLICY.replace("604800", "999999999");
        assert_eq!(Policy::parse(&huge).unwrap().max_age, MAX_AGE_LIMIT);
    }

    #[test]
    fn exactly_one_valid_sts_record_gives_its_id() {
        let id =
            |records: &[&str]| txt_id(&records.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            id(&["v=STSv1; id=20260101T000000;"]).as_deref(),
            Some("20260101T000000")
        );
        assert_eq!(
            id(&["v=spf1 -all", "v=STSv1;id=abc"]).as_deref(),
            Some("abc")
        );
        assert_eq!(id(&["v=STSv1; id=a", "v=STSv1; id=b"]), None, "two records");
        assert_eq!(id(&["v=STSv1;"]), None, "no id");
        assert_eq!(id(&["v=STSv1; id=not-alnum"]), None);
        assert_eq!(id(&["v=STSv10; id=a"]), None);
        assert_eq!(id(&[]), None);
    }
}
