//! Where a delivery goes: the configured relay, or the recipient domain's MX hosts (RFC 5321
//! §5.1: by preference, the domain itself when it has no MX, nothing for a null MX), and the
//! MTA-STS rule ([`super::mta_sts`]) for an MX delivery.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;

use super::mta_sts::{MtaSts, Rule};
use super::Failure;

/// One host to try, with the name TLS should check.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub name: String,
}

impl Target {
    /// The one place a delivery target is written into a log line or failure reason, as
    /// `host:port`: a relay by its name; an MX host by its keyed tag (`dom-…`), since its
    /// name may be a member's own domain (`mx.real.example`), and never by its IP address,
    /// which tells the provider as well as the name does. `log.show_domains` shows the name
    /// through the tag.
    pub fn label(&self, relay: bool) -> String {
        let port = self.addr.port();
        match relay {
            true => format!("{}:{port}", self.name),
            false => format!("{}:{port}", crate::logtag::host(&self.name)),
        }
    }

    /// [`Target::label`] with what the target is: `relay host:port` or `MX host dom-…:port`.
    pub fn for_log(&self, relay: bool) -> String {
        match relay {
            true => format!("relay {}", self.label(true)),
            false => format!("MX host {}", self.label(false)),
        }
    }
}

pub struct Router {
    relay: Option<String>,
    mx_port: u16,
    resolver: TokioResolver,
    mta_sts: MtaSts,
}

impl Router {
    pub fn new(
        relay: Option<String>,
        mx_port: u16,
        resolver: TokioResolver,
        mta_sts: MtaSts,
    ) -> Self {
        Router {
            relay,
            mx_port,
            resolver,
            mta_sts,
        }
    }

    /// The MTA-STS rule for a delivery to `rcpt_domain`'s MX hosts; none through a relay
    /// (the operator's own, not the recipient's MX).
    pub async fn mta_sts(&self, rcpt_domain: &str) -> Rule {
        match self.relay {
            Some(_) => Rule::None,
            None => self.mta_sts.rule(rcpt_domain).await,
        }
    }

    /// True when everything goes to the configured relay.
    pub fn is_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// The key deliveries are grouped by (for concurrency limits and connection reuse).
    pub fn destination(&self, rcpt_domain: &str) -> String {
        match &self.relay {
            Some(relay) => format!("relay:{relay}"),
            None => rcpt_domain.to_ascii_lowercase(),
        }
    }

    pub async fn targets(&self, rcpt_domain: &str) -> Result<Vec<Target>, Failure> {
        if let Some(relay) = &self.relay {
            let name = relay
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(relay)
                .trim_matches(['[', ']'])
                .to_string();
            let addrs = tokio::net::lookup_host(relay.as_str())
                .await
                .map_err(|e| Failure::Temporary(format!("relay {relay}: lookup failed: {e}")))?;
            return Ok(addrs
                .map(|addr| Target {
                    addr,
                    name: name.clone(),
                })
                .collect());
        }
        let hosts = self.mx_hosts(rcpt_domain).await?;
        let mut targets = Vec::new();
        for host in hosts {
            if let Ok(ips) = self.resolver.lookup_ip(host.as_str()).await {
                targets.extend(ips.iter().map(|ip| Target {
                    addr: SocketAddr::new(ip, self.mx_port),
                    name: host.clone(),
                }));
            }
        }
        if targets.is_empty() {
            return Err(Failure::Temporary(
                "no address found for the destination's mail servers".into(),
            ));
        }
        Ok(targets)
    }

    async fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, Failure> {
        match self.resolver.mx_lookup(domain).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect();
                if mx.iter().any(|(_, host)| host.is_empty()) {
                    return Err(Failure::Permanent(
                        "the destination domain accepts no mail (null MX)".into(),
                    ));
                }
                mx.sort();
                Ok(mx.into_iter().map(|(_, h)| h).collect())
            }
            Err(e) if e.is_no_records_found() => {
                if e.is_nx_domain() {
                    Err(Failure::Permanent(
                        "the destination domain does not exist".into(),
                    ))
                } else {
                    Ok(vec![domain.to_string()])
                }
            }
            Err(_) => Err(Failure::Temporary(
                "DNS lookup of the destination failed".into(),
            )),
        }
    }
}
