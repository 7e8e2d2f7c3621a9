//! Inbound sender authentication: does a message really come from the address in its `From:`?
//! (ARCHITECTURE.md §1 flow 2b: nobody may forge a member's real address to speak as their alias.)
//!
//! Two steps, matching the SMTP session:
//! 1. at `MAIL FROM`, [`SenderAuthenticator::check_spf`] evaluates SPF for the envelope sender
//!    (or the HELO name for a null sender) and returns an [`SpfCheck`] to keep with the session;
//! 2. after `DATA`, [`SenderAuthenticator::verify`] verifies the DKIM signatures and applies the
//!    configured policy ([`SenderAuth`]) to give a [`Verdict`].
//!
//! Policies:
//! - `dmarc`: an aligned DMARC pass (RFC 7489 / RFC 9989, as implemented by mail-auth: SPF pass
//!   for an envelope domain aligned with the From domain, or a valid DKIM signature whose `d=`
//!   aligns with it, with the domain's own `adkim`/`aspf`). Whatever the published policy
//!   (`p=none`, `quarantine` or `reject`), the pass is required: the question is not what the
//!   domain asks receivers to do, but whether we know the mail comes from that address.
//!   **A domain without a DMARC record fails** with the reason "no DMARC record": without one
//!   there is no alignment rule the domain has committed to. Operators whose members use such
//!   domains choose `spf-or-dkim`.
//! - `spf-or-dkim`: SPF pass for an envelope domain aligned with the From domain, or a valid
//!   DKIM signature with `d=` aligned with it. Alignment here is relaxed, computed without a
//!   public-suffix list: the two domains are equal or one is a subdomain of the other (whoever
//!   controls a domain controls its subdomains, so this is safe; sibling subdomains such as
//!   `mail.example.com` vs `example.com`'s other subdomains do not align). DNS is not consulted
//!   for a DMARC record.
//! - `none`: nothing is checked and every message passes (the service warns at start).
//!
//! DNS trouble (timeouts, SERVFAIL) never becomes a permanent refusal: it gives
//! [`Verdict::TempFail`], to be answered with a 4xx so the sender retries.
//!
//! Reasons are written for the `550 5.7.1` reply: they say what failed and what the member can
//! do, name only domains (never the full sender address), contain no CR/LF and at most
//! [`MAX_REASON_LEN`] characters. Texts from the sender's DNS (SPF `exp=`) are never echoed.
//! In log lines, the domains in them are keyed tags ([`crate::logtag`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};
use thiserror::Error;

use crate::config::{DnsConfig, SenderAuth};
use crate::logtag;

/// Longest reason text, so that `550 5.7.1 ` + reason fits one SMTP reply line (512 octets).
pub const MAX_REASON_LEN: usize = 480;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
}

/// Outcome of [`SenderAuthenticator::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The From address is authenticated. `method`: `"dmarc-dkim"`, `"dmarc-spf"`, `"dkim"`,
    /// `"spf"`, or `"none"` (policy `none`).
    Pass { method: &'static str },
    /// Refuse with `550 5.7.1 {reason}`.
    Fail { reason: String },
    /// A DNS lookup failed temporarily; answer `451 4.7.0 {reason}` so the sender retries.
    TempFail { reason: String },
}

/// The SPF result from `MAIL FROM`, kept with the session until the message is in.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SpfCheck {
    output: Option<Arc<SpfOutput>>,
}

impl SpfCheck {
    /// The SPF result, or `None` when it was not evaluated (policy `none`).
    pub fn result(&self) -> Option<SpfResult> {
        self.output.as_ref().map(|o| o.result())
    }

    /// The domain SPF was evaluated for (envelope sender's domain, or the HELO name).
    pub fn domain(&self) -> Option<&str> {
        self.output.as_ref().map(|o| o.domain())
    }
}

/// Checks senders against SPF, DKIM and DMARC with the configured resolver. Share behind an
/// `Arc` (or clone: the resolver inside is shared).
#[derive(Clone)]
pub struct SenderAuthenticator {
    mode: SenderAuth,
    hostname: String,
    auth: Option<MessageAuthenticator>,
}

/// A resolver for `dns.nameservers` (UDP with TCP fallback, hosts file not used), or the
/// system's (`/etc/resolv.conf`) when the list is empty. Also used for MX lookups and by
/// `remailer dns --check`.
pub fn build_resolver(dns: &DnsConfig) -> Result<TokioResolver, AuthError> {
    if dns.nameservers.is_empty() {
        let builder =
            TokioResolver::builder(TokioRuntimeProvider::default()).map_err(resolver_err)?;
        return builder.build().map_err(resolver_err);
    }
    let servers = dns.nameservers.iter().map(name_server).collect();
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = ResolveHosts::Never;
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .map_err(resolver_err)
}

fn name_server(addr: &SocketAddr) -> NameServerConfig {
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for conn in &mut ns.connections {
        conn.port = addr.port();
    }
    ns
}

fn resolver_err(e: impl std::fmt::Display) -> AuthError {
    AuthError::Resolver(e.to_string())
}

impl SenderAuthenticator {
    /// `hostname` is this server's name (used in SPF macros). Mode `None` builds no resolver.
    pub fn new(dns: &DnsConfig, mode: SenderAuth, hostname: &str) -> Result<Self, AuthError> {
        let auth = match mode {
            SenderAuth::None => None,
            _ => Some(MessageAuthenticator(build_resolver(dns)?)),
        };
        Ok(SenderAuthenticator {
            mode,
            hostname: hostname.to_string(),
            auth,
        })
    }

    pub fn mode(&self) -> SenderAuth {
        self.mode
    }

    /// SPF for the envelope sender `mail_from` (empty for the null sender `<>`, then the HELO
    /// name is checked, RFC 7208 §2.4). Run at `MAIL FROM`.
    pub async fn check_spf(&self, ip: IpAddr, helo: &str, mail_from: &str) -> SpfCheck {
        let Some(auth) = &self.auth else {
            return SpfCheck::default();
        };
        let params = if mail_from.is_empty() {
            SpfParameters::verify_ehlo(ip, helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(ip, helo, &self.hostname, mail_from)
        };
        let output = auth.verify_spf(params).await;
        tracing::debug!(result = %output.result(), domain = %logtag::domain(output.domain()), "SPF checked");
        SpfCheck {
            output: Some(Arc::new(output)),
        }
    }

    /// Verifies the complete message `raw` (as received after `DATA`) under the policy.
    /// `spf` is what [`Self::check_spf`] returned for the same `ip`, `helo` and `mail_from`.
    pub async fn verify(
        &self,
        raw: &[u8],
        _ip: IpAddr,
        helo: &str,
        mail_from: &str,
        spf: &SpfCheck,
    ) -> Verdict {
        let Some(auth) = &self.auth else {
            return Verdict::Pass { method: "none" };
        };
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return fail("the message could not be parsed as an email message".into());
        };
        let from_domain = match author_domain(&message) {
            Ok(domain) => domain,
            Err(reason) => return fail(reason.to_string()),
        };
        let envelope_domain = envelope_domain(mail_from, helo);
        let spf = spf.output.clone().unwrap_or_else(|| {
            Arc::new(SpfOutput::new(envelope_domain.clone()).with_result(SpfResult::None))
        });
        let dkim = auth.verify_dkim(&message).await;
        let verdict = match self.mode {
            SenderAuth::Dmarc => {
                let params = DmarcParameters::new(&message, &dkim, &envelope_domain, &spf);
                let dmarc = auth.verify_dmarc(params).await;
                dmarc_verdict(&dmarc, &from_domain, &envelope_domain, &spf, &dkim)
            }
            _ => spf_or_dkim_verdict(&from_domain, &envelope_domain, &spf, &dkim),
        };
        log_verdict(&verdict, &from_domain);
        verdict
    }
}

/// Logs the verdict with the domains in it as keyed tags ([`logtag`]): the reason texts are
/// written for the client and name its domains.
fn log_verdict(verdict: &Verdict, from_domain: &str) {
    let tag = logtag::domain(from_domain);
    match verdict {
        Verdict::Pass { method } => {
            tracing::debug!(method, from_domain = %tag, "sender authenticated")
        }
        Verdict::Fail { reason } => {
            tracing::info!(from_domain = %tag, reason = %logtag::scrub(reason), "sender not authenticated")
        }
        Verdict::TempFail { reason } => {
            tracing::warn!(from_domain = %tag, reason = %logtag::scrub(reason), "sender check deferred")
        }
    }
}

/// The one domain of the `From:` header field (lower case, A-label), or the reason why there is
/// none we can check.
fn author_domain(message: &AuthenticatedMessage<'_>) -> Result<String, NoAuthorDomain> {
    let mut domains = message.from.iter().map(|addr| {
        addr.rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default()
    });
    let first = domains.next().unwrap_or_default();
    if first.is_empty() || !is_safe_domain(&first) {
        return Err(NoAuthorDomain::NoFrom);
    }
    if domains.any(|d| d != first) {
        return Err(NoAuthorDomain::SeveralDomains);
    }
    Ok(first)
}

/// Why a message has no one author domain to check (the text is the reply's reason).
#[derive(Debug, thiserror::Error)]
enum NoAuthorDomain {
    #[error("the message has no valid From address")]
    NoFrom,
    #[error("the From header has addresses in several domains; send from one address")]
    SeveralDomains,
}

/// The RFC5321.MailFrom domain, or the HELO name for the null sender (RFC 7489 §3.1.2).
fn envelope_domain(mail_from: &str, helo: &str) -> String {
    let domain = match mail_from.rsplit_once('@') {
        Some((_, d)) => d,
        None => helo,
    };
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// Only plain DNS names go into reply texts (no CR/LF, no address, nothing to inject).
fn is_safe_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn shown(d: &str) -> &str {
    if is_safe_domain(d) {
        d
    } else {
        "(invalid domain)"
    }
}

/// Relaxed alignment without a public-suffix list: equal, or one a subdomain of the other.
fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    let sub = |x: &str, y: &str| x.strip_suffix(y).is_some_and(|rest| rest.ends_with('.'));
    a == b || sub(&a, &b) || sub(&b, &a)
}

const ADVICE: &str = "Send this mail through your own mail provider's servers (its SMTP \
submission service), which sign it with DKIM for your domain; forwarders and mailing lists break \
these checks.";

fn fail(what: String) -> Verdict {
    let mut reason = format!("{what}. {ADVICE}");
    reason.retain(|c| c != '\r' && c != '\n');
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    Verdict::Fail { reason }
}

fn temp_fail(from_domain: &str) -> Verdict {
    Verdict::TempFail {
        reason: format!(
            "temporary DNS failure while checking the sender domain {}; please try again later",
            shown(from_domain)
        ),
    }
}

fn dmarc_verdict(
    dmarc: &DmarcOutput,
    from_domain: &str,
    envelope_domain: &str,
    spf: &SpfOutput,
    dkim: &[DkimOutput<'_>],
) -> Verdict {
    if *dmarc.dkim_result() == DmarcResult::Pass {
        return Verdict::Pass {
            method: "dmarc-dkim",
        };
    }
    if *dmarc.spf_result() == DmarcResult::Pass {
        return Verdict::Pass {
            method: "dmarc-spf",
        };
    }
    let temp = |r: &DmarcResult| matches!(r, DmarcResult::TempError(_));
    if temp(dmarc.dkim_result()) || temp(dmarc.spf_result()) {
        return temp_fail(from_domain);
    }
    if dmarc.dmarc_record().is_none() {
        return fail(format!(
            "DMARC check failed for {}: the domain has no DMARC record, so this service cannot \
             tell its mail from forgeries (ask the domain's administrator to publish one)",
            shown(from_domain)
        ));
    }
    fail(format!(
        "DMARC check failed for {}: {}, {}",
        shown(from_domain),
        describe_spf(spf, envelope_domain, from_domain),
        describe_dkim(dkim, from_domain)
    ))
}

fn spf_or_dkim_verdict(
    from_domain: &str,
    envelope_domain: &str,
    spf: &SpfOutput,
    dkim: &[DkimOutput<'_>],
) -> Verdict {
    let dkim_pass = dkim.iter().any(|o| {
        *o.result() == DkimResult::Pass && o.signature().is_some_and(|s| aligned(&s.d, from_domain))
    });
    if dkim_pass {
        return Verdict::Pass { method: "dkim" };
    }
    let spf_aligned = aligned(envelope_domain, from_domain);
    if spf.result() == SpfResult::Pass && spf_aligned {
        return Verdict::Pass { method: "spf" };
    }
    let dkim_temp = dkim.iter().any(|o| {
        matches!(o.result(), DkimResult::TempError(_))
            && o.signature().is_some_and(|s| aligned(&s.d, from_domain))
    });
    if dkim_temp || (spf.result() == SpfResult::TempError && spf_aligned) {
        return temp_fail(from_domain);
    }
    fail(format!(
        "Sender check failed for {}: {}, {}",
        shown(from_domain),
        describe_spf(spf, envelope_domain, from_domain),
        describe_dkim(dkim, from_domain)
    ))
}

fn describe_spf(spf: &SpfOutput, envelope_domain: &str, from_domain: &str) -> String {
    let result = match spf.result() {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror (broken SPF record)",
        SpfResult::None => "none (no SPF record)",
    };
    if aligned(envelope_domain, from_domain) {
        format!("SPF {result}")
    } else {
        format!(
            "SPF {result} for the envelope domain {}, which is not the From domain",
            shown(envelope_domain)
        )
    }
}

fn describe_dkim(dkim: &[DkimOutput<'_>], from_domain: &str) -> String {
    let sigs: Vec<_> = dkim
        .iter()
        .filter_map(|o| o.signature().map(|s| (o.result(), s.d.as_str())))
        .collect();
    if sigs.is_empty() {
        return if dkim.is_empty() {
            "no DKIM signature".into()
        } else {
            "no valid DKIM signature (malformed DKIM-Signature header)".into()
        };
    }
    if let Some((_, d)) = sigs.iter().find(|(r, _)| **r == DkimResult::Pass) {
        return format!(
            "no aligned DKIM signature (valid only for {}, not for {})",
            shown(d),
            shown(from_domain)
        );
    }
    let (result, d) = sigs
        .iter()
        .find(|(_, d)| aligned(d, from_domain))
        .unwrap_or(&sigs[0]);
    let why = match result {
        DkimResult::Fail(e)
        | DkimResult::Neutral(e)
        | DkimResult::PermError(e)
        | DkimResult::TempError(e) => e.to_string(),
        DkimResult::Pass | DkimResult::None => "not verified".into(),
    };
    format!("DKIM signature for {} did not verify ({why})", shown(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_relaxed_without_siblings() {
        assert!(aligned("example.com", "example.com"));
        assert!(aligned("mail.example.com", "example.com"));
        assert!(aligned("Example.COM", "sub.example.com."));
        assert!(!aligned("badexample.com", "example.com"));
        assert!(!aligned("a.example.com", "b.example.com"));
        assert!(!aligned("example.org", "example.com"));
    }

    #[test]
    fn reasons_are_single_line_and_bounded() {
        let Verdict::Fail { reason } = fail(format!("x\r\ny{}", "z".repeat(1000))) else {
            panic!()
        };
        assert!(!reason.contains('\n') && !reason.contains('\r'));
        assert!(reason.len() <= MAX_REASON_LEN);
    }

    #[test]
    fn unsafe_domains_are_not_echoed() {
        assert_eq!(shown("evil\r\n250 ok"), "(invalid domain)");
        assert_eq!(shown("joe@real.example"), "(invalid domain)");
        assert_eq!(shown("real.example"), "real.example");
    }

    #[test]
    fn envelope_domain_falls_back_to_helo() {
        assert_eq!(envelope_domain("joe@Real.Example", "mx.x"), "real.example");
        assert_eq!(envelope_domain("", "MX.Other.Example."), "mx.other.example");
    }

    #[tokio::test]
    async fn mode_none_passes_without_dns() {
        let a =
            SenderAuthenticator::new(&DnsConfig::default(), SenderAuth::None, "mx.test").unwrap();
        let ip = "127.0.0.9".parse().unwrap();
        let spf = a.check_spf(ip, "h.test", "a@b.test").await;
        assert_eq!(spf.result(), None);
        let v = a
            .verify(
                b"From: a@b.test\r\n\r\nx\r\n",
                ip,
                "h.test",
                "a@b.test",
                &spf,
            )
            .await;
        assert_eq!(v, Verdict::Pass { method: "none" });
    }
}
