//! The DNS records the service needs, as printed by `remailer dns` (ARCHITECTURE.md §5), and a check of
//! what the configured resolver actually returns for them.
//!
//! Records for `DOMAIN` (served by `HOSTNAME`):
//! - `DOMAIN MX 10 HOSTNAME.` — mail for aliases comes here;
//! - `DOMAIN TXT "v=spf1 mx -all"` — only the MX hosts send with envelope senders at DOMAIN
//!   (every bounce address `b+…@DOMAIN` is one). With `[delivery] relay`, the relay's addresses
//!   must be added by hand;
//! - `HOSTNAME TXT "v=spf1 a -all"` when HOSTNAME differs from DOMAIN, for receivers that check
//!   the HELO name;
//! - the two DKIM keys, `SELECTOR-rsa._domainkey` and `SELECTOR-ed._domainkey`;
//! - `_dmarc.DOMAIN TXT "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:postmaster@DOMAIN"`
//!   (the `rua` only when `policy.postmaster` is set, so reports reach someone)
//!   — nothing but the service itself may send as DOMAIN;
//! - `_smtp._tls.DOMAIN TXT "v=TLSRPTv1; rua=mailto:postmaster@DOMAIN"` (RFC 8460), only
//!   when `policy.postmaster` is set;
//! - `_mta-sts.DOMAIN TXT "v=STSv1; id=ID"` (RFC 8461), with the policy the operator serves
//!   at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` ([`mta_sts_policy`], printed as
//!   comment lines after the records): `mode: enforce` for HOSTNAME when `smtp.tls_cert` is
//!   set (`testing` otherwise). ID is derived from the policy text, so it changes with it.
//!
//! The host's own A/AAAA records are not printed: the service does not know its public address.
//!
//! Lines are zone-file lines `NAME. TTL IN TYPE VALUE`; a TXT value is written as one or more
//! quoted strings of at most 255 characters each, so a script can parse them back by joining
//! the quoted strings of a line.

use std::fmt;

use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::config::Config;
use crate::dkim::DkimKeys;

/// TTL printed for every record.
pub const TTL: u32 = 3600;

/// One record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// Owner name without the trailing dot, e.g. `_dmarc.remailer.example`.
    pub name: String,
    pub ttl: u32,
    /// `MX` or `TXT`.
    pub rtype: &'static str,
    /// The value unquoted: `10 mx.remailer.example.` or the TXT text.
    pub value: String,
    /// What the record is for: `mx`, `spf`, `spf-helo`, `dkim`, `dmarc`, `tls-rpt`, `mta-sts`.
    pub purpose: &'static str,
}

impl ZoneRecord {
    fn txt(name: String, value: String, purpose: &'static str) -> Self {
        ZoneRecord {
            name,
            ttl: TTL,
            rtype: "TXT",
            value,
            purpose,
        }
    }

    /// The zone-file line (no newline).
    pub fn zone_line(&self) -> String {
        let value = if self.rtype == "TXT" {
            quote_txt(&self.value)
        } else {
            self.value.clone()
        };
        format!("{}. {} IN {} {}", self.name, self.ttl, self.rtype, value)
    }
}

impl fmt::Display for ZoneRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zone_line())
    }
}

/// The records for `config`'s domain and hostname and the DKIM `keys`.
pub fn records(config: &Config, keys: &DkimKeys) -> Vec<ZoneRecord> {
    let domain = config.domain.as_str().to_string();
    let hostname = config.hostname().trim_end_matches('.').to_ascii_lowercase();
    let mut out = vec![
        ZoneRecord {
            name: domain.clone(),
            ttl: TTL,
            rtype: "MX",
            value: format!("10 {hostname}."),
            purpose: "mx",
        },
        ZoneRecord::txt(domain.clone(), "v=spf1 mx -all".into(), "spf"),
    ];
    if hostname != domain {
        out.push(ZoneRecord::txt(
            hostname,
            "v=spf1 a -all".into(),
            "spf-helo",
        ));
    }
    for key in keys.public_keys() {
        let name = format!("{}._domainkey.{}", key.selector, keys.domain());
        out.push(ZoneRecord::txt(name, key.txt, "dkim"));
    }
    // Reports go to postmaster@, which works only when an operator address is configured.
    let rua = config
        .policy
        .postmaster
        .as_ref()
        .map(|_| format!("; rua=mailto:postmaster@{domain}"));
    out.push(ZoneRecord::txt(
        format!("_dmarc.{domain}"),
        format!(
            "v=DMARC1; p=reject; adkim=s; aspf=s{}",
            rua.as_deref().unwrap_or("")
        ),
        "dmarc",
    ));
    if rua.is_some() {
        out.push(ZoneRecord::txt(
            format!("_smtp._tls.{domain}"),
            format!("v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
            "tls-rpt",
        ));
    }
    let policy = mta_sts_policy(config);
    out.push(ZoneRecord::txt(
        format!("_mta-sts.{domain}"),
        format!("v=STSv1; id={}", mta_sts_id(&policy)),
        "mta-sts",
    ));
    out
}

/// How long receivers cache the MTA-STS policy (one week, in seconds).
pub const MTA_STS_MAX_AGE: u64 = 604_800;

/// The MTA-STS policy (RFC 8461 §3.2) for DOMAIN's one MX, HOSTNAME: `enforce` when the
/// service offers STARTTLS (`smtp.tls_cert`), else `testing`.
pub fn mta_sts_policy(config: &Config) -> String {
    let hostname = config.hostname().trim_end_matches('.').to_ascii_lowercase();
    let mode = match config.smtp.tls_cert {
        Some(_) => "enforce",
        None => "testing",
    };
    format!("version: STSv1\r\nmode: {mode}\r\nmx: {hostname}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n")
}

/// The `id` of the `_mta-sts` record: 20 hex digits of the policy's SHA-256, so a changed
/// policy gets a new id (and receivers fetch it again).
pub fn mta_sts_id(policy: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(policy.as_bytes())[..10])
}

/// The comment lines that tell the operator how to publish the MTA-STS policy.
fn mta_sts_note(config: &Config) -> String {
    let domain = &config.domain;
    let mut out = format!(
        "; MTA-STS (RFC 8461): serve the policy below as text/plain at\n\
         ; https://mta-sts.{domain}/.well-known/mta-sts.txt over HTTPS, with a certificate valid\n\
         ; for mta-sts.{domain} (which needs its own A/AAAA record), and no redirect.\n\
         ; Change the policy and the id of the _mta-sts record together.\n"
    );
    if config.smtp.tls_cert.is_none() {
        out.push_str(
            "; mode is testing: smtp.tls_cert is not set. Set it (a certificate valid for the\n\
             ; MX host name) and run `remailer dns` again for an enforcing policy.\n",
        );
    }
    for line in mta_sts_policy(config).lines() {
        out.push_str(&format!(";   {line}\n"));
    }
    out
}

/// All records as zone-file text, one line each, with a comment header.
pub fn format_zone(records: &[ZoneRecord]) -> String {
    let mut out = String::from("; DNS records for remailer (paste into the zone)\n");
    for r in records {
        out.push_str(&r.zone_line());
        out.push('\n');
    }
    out
}

/// What `remailer dns` prints: [`format_zone`], then (as comment lines) how to publish the
/// MTA-STS policy, and the policy.
pub fn format_dns(config: &Config, records: &[ZoneRecord]) -> String {
    format_zone(records) + &mta_sts_note(config)
}

/// `text` as quoted strings of at most 255 characters each, separated by a space.
pub fn quote_txt(text: &str) -> String {
    let chunks = split_txt(text);
    let quoted: Vec<String> = chunks
        .iter()
        .map(|c| format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    quoted.join(" ")
}

/// Splits into pieces of at most 255 bytes, never inside a UTF-8 character.
fn split_txt(text: &str) -> Vec<&str> {
    let mut rest = text;
    let mut out = Vec::new();
    loop {
        if rest.len() <= 255 {
            out.push(rest);
            return out;
        }
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
}

/// What the resolver returned for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    Missing,
    /// Published, but not as expected; `found` is what the resolver returned.
    Wrong {
        found: String,
    },
    /// The lookup failed (timeout, SERVFAIL, …).
    Error(String),
}

/// One line of `remailer dns --check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    pub record: ZoneRecord,
    pub status: CheckStatus,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        let what = format!("{} {} ({})", r.name, r.rtype, r.purpose);
        match &self.status {
            CheckStatus::Ok => write!(f, "ok       {what}"),
            CheckStatus::Missing => write!(f, "missing  {what}: publish {}", r.zone_line()),
            CheckStatus::Wrong { found } => {
                write!(
                    f,
                    "wrong    {what}: found {found}; expected {}",
                    r.zone_line()
                )
            }
            CheckStatus::Error(e) => write!(f, "error    {what}: lookup failed: {e}"),
        }
    }
}

/// Looks every record of [`records`] up with `resolver` and says whether it is published.
pub async fn check(config: &Config, keys: &DkimKeys, resolver: &TokioResolver) -> Vec<CheckLine> {
    let mut out = Vec::new();
    for record in records(config, keys) {
        let status = check_one(&record, resolver).await;
        out.push(CheckLine { record, status });
    }
    out
}

async fn check_one(record: &ZoneRecord, resolver: &TokioResolver) -> CheckStatus {
    let rtype = match record.rtype {
        "MX" => RecordType::MX,
        _ => RecordType::TXT,
    };
    let lookup = match resolver.lookup(format!("{}.", record.name), rtype).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return CheckStatus::Missing,
        Err(e) => return CheckStatus::Error(e.to_string()),
    };
    let found: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(crate::delivery::mta_sts::txt_text(txt)),
            RData::MX(mx) => Some(format!("{} {}", mx.preference, mx.exchange)),
            _ => None,
        })
        .collect();
    judge(record, &found)
}

/// Compares the expected record with the values found at its name (same type).
pub fn judge(record: &ZoneRecord, found: &[String]) -> CheckStatus {
    if record.rtype == "MX" {
        return judge_mx(&record.value, found);
    }
    let prefix = tag_value(&record.value, "v").unwrap_or_default();
    let relevant: Vec<&String> = found
        .iter()
        .filter(|f| tag_value(f, "v").is_some_and(|v| v.eq_ignore_ascii_case(&prefix)))
        .collect();
    match relevant.as_slice() {
        [] => CheckStatus::Missing,
        [one] if txt_matches(record, one) => CheckStatus::Ok,
        [one] => CheckStatus::Wrong {
            found: quote_txt(one),
        },
        many => CheckStatus::Wrong {
            found: format!(
                "{} records of this kind (there must be one): {}",
                many.len(),
                many.iter()
                    .map(|m| quote_txt(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

fn judge_mx(expected: &str, found: &[String]) -> CheckStatus {
    let host = |v: &str| {
        v.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    };
    let want = host(expected);
    if found.is_empty() {
        CheckStatus::Missing
    } else if found.iter().any(|f| host(f) == want) {
        CheckStatus::Ok
    } else {
        CheckStatus::Wrong {
            found: found.join(", "),
        }
    }
}

/// DKIM records match on their key (`k=` and `p=`); an `_mta-sts` record on being valid
/// (any id: the operator may number policies their own way); the others on all their tags,
/// compared without regard to spacing and tag case.
fn txt_matches(record: &ZoneRecord, found: &str) -> bool {
    if record.purpose == "mta-sts" {
        return crate::delivery::mta_sts::txt_id(&[found.to_string()]).is_some();
    }
    if record.purpose == "dkim" {
        let key = |v: &str| {
            (
                tag_value(v, "k").unwrap_or_else(|| "rsa".into()),
                tag_value(v, "p").map(|p| p.replace(char::is_whitespace, "")),
            )
        };
        return key(&record.value) == key(found);
    }
    normalise(&record.value) == normalise(found)
}

fn normalise(v: &str) -> String {
    if v.starts_with("v=spf1") {
        return v
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
    }
    let mut tags: Vec<String> = v
        .split(';')
        .map(|t| t.trim().replace(char::is_whitespace, ""))
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, val)) => format!("{}={val}", k.to_ascii_lowercase()),
            None => t,
        })
        .collect();
    if tags.len() > 1 {
        tags[1..].sort();
    }
    tags.join(";")
}

/// The value of `tag` in a `tag=value; …` record (SPF: `v` only).
fn tag_value(v: &str, tag: &str) -> Option<String> {
    if tag == "v" && v.starts_with("v=spf1") {
        return Some("spf1".into());
    }
    v.split(';').find_map(|t| {
        let (k, val) = t.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(tag)
            .then(|| val.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(purpose: &'static str, rtype: &'static str, value: &str) -> ZoneRecord {
        ZoneRecord {
            name: "x.test".into(),
            ttl: TTL,
            rtype,
            value: value.into(),
            purpose,
        }
    }

    #[test]
    fn short_txt_is_one_quoted_string() {
        let r = rec("spf", "TXT", "v=spf1 mx -all");
        assert_eq!(r.zone_line(), "x.test. 3600 IN TXT \"v=spf1 mx -all\"");
    }

    #[test]
    fn long_txt_is_split_at_255() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(600));
        let line = rec("dkim", "TXT", &value).zone_line();
        let parts: Vec<&str> = line
            .split_once("TXT ")
            .unwrap()
            .1
            .split("\" \"")
            .map(|p| p.trim_matches('"'))
            .collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts[0].len(), 255);
        assert_eq!(parts.concat(), value);
    }

    #[test]
    fn exactly_255_is_one_string_and_quotes_are_escaped() {
        assert_eq!(split_txt(&"a".repeat(255)).len(), 1);
        assert_eq!(split_txt(&"a".repeat(256)).len(), 2);
        assert_eq!(quote_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn mx_line_has_fqdn() {
        let r = rec("mx", "MX", "10 mx.x.test.");
        assert_eq!(r.zone_line(), "x.test. 3600 IN MX 10 mx.x.test.");
    }

    #[test]
    fn judge_txt_records() {
        let dmarc = rec(
            "dmarc",
            "TXT",
            "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:p@x.test",
        );
        let same = "v=DMARC1;p=reject;aspf=s; adkim=s; rua=mailto:p@x.test".to_string();
        let other = "v=spf1 -all".to_string();
        assert_eq!(judge(&dmarc, &[other.clone(), same]), CheckStatus::Ok);
        assert_eq!(judge(&dmarc, &[other]), CheckStatus::Missing);
        let weak = "v=DMARC1; p=none".to_string();
        assert!(
            matches!(judge(&dmarc, &[weak]), CheckStatus::Wrong { found } if found.contains("p=none"))
        );
        let spf = rec("spf", "TXT", "v=spf1 mx -all");
        let two = ["v=spf1 mx -all".to_string(), "v=spf1 a -all".to_string()];
        assert!(
            matches!(judge(&spf, &two), CheckStatus::Wrong { found } if found.starts_with("2 records"))
        );
    }

    #[test]
    fn judge_dkim_by_key() {
        let dkim = rec("dkim", "TXT", "v=DKIM1; k=ed25519; p=AAAA");
        assert_eq!(
            judge(&dkim, &["v=DKIM1; k=ed25519; t=s; p=AA AA".into()]),
            CheckStatus::Ok
        );
        assert!(matches!(
            judge(&dkim, &["v=DKIM1; k=ed25519; p=BBBB".into()]),
            CheckStatus::Wrong { .. }
        ));
    }

    #[test]
    fn judge_mx_records() {
        let mx = rec("mx", "MX", "10 mx.x.test.");
        assert_eq!(judge(&mx, &["20 MX.x.test.".into()]), CheckStatus::Ok);
        assert_eq!(judge(&mx, &[]), CheckStatus::Missing);
        assert!(matches!(
            judge(&mx, &["10 other.test.".into()]),
            CheckStatus::Wrong { .. }
        ));
    }
}
