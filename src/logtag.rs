//! `logtag`: how a domain appears in a log line. No log line holds a real address, and not
//! even its domain (ARCHITECTURE.md §5): a domain (of a sender, a From header, an MX host) is
//! logged as a short keyed tag, `dom-` and 8 hex digits of an HMAC of the lower-cased domain
//! under a key derived from the master key. The same domain always gives the same tag, so an
//! operator can correlate ("all these failures come from one domain") without learning it.
//! `log.show_domains = true` logs the domains themselves (for debugging; `serve` warns loudly).
//!
//! [`init`] is called once by `serve`; before that (other commands, unit tests) tags use a
//! random key made for the process, and domains are never shown.

use std::fmt;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::keys::{Keys, Purpose};

struct Tagger {
    key: [u8; 32],
    show: bool,
}

static TAGGER: OnceLock<Tagger> = OnceLock::new();

/// Sets the tag key (derived from the master key) and whether domains are shown. Only the
/// first call counts.
pub fn init(keys: &Keys, show_domains: bool) {
    let _ = TAGGER.set(Tagger {
        key: keys.mac(Purpose::LogTag, b"log tags"),
        show: show_domains,
    });
}

fn tagger() -> &'static Tagger {
    TAGGER.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Tagger { key, show: false }
    })
}

/// True when `log.show_domains` is on: log lines may name domains and mail servers.
pub fn showing_domains() -> bool {
    tagger().show
}

/// A domain as a log line may show it: its tag (or, with `log.show_domains`, itself).
pub struct Tag(String);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tag of `domain` (case and a trailing dot do not matter).
pub fn domain(domain: &str) -> Tag {
    let t = tagger();
    let normal = domain.trim_end_matches('.').to_ascii_lowercase();
    if t.show {
        return Tag(normal);
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&t.key).expect("any key length");
    mac.update(normal.as_bytes());
    let bytes = mac.finalize().into_bytes();
    Tag(format!("dom-{}", hex::encode(&bytes[..4])))
}

/// An MX (or other mail server) host name: tagged like a domain, since it names the
/// member's provider.
pub fn host(name: &str) -> Tag {
    domain(name)
}

fn is_word_byte(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+')
}

/// `text` with every DNS name in it replaced by its tag, and every address by `(address)`
/// (also with `log.show_domains`):
/// for texts written for an SMTP reply (which may name the client's own domain) that also go
/// to a log line. A word is a DNS name when it holds a dot between two non-empty labels and a
/// letter.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_word_byte) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_word_byte(c)).unwrap_or(tail.len());
        out.push_str(&scrub_word(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn scrub_word(word: &str) -> String {
    let core = word.trim_matches(|c| c == '.' || c == '-');
    if core.is_empty() {
        return word.to_string();
    }
    let lead = &word[..word.find(core).unwrap_or(0)];
    let trail = &word[lead.len() + core.len()..];
    let replaced = if core.contains('@') {
        "(address)".to_string() // never an address, even with show_domains
    } else if looks_like_domain(core) {
        domain(core).to_string()
    } else {
        core.to_string()
    };
    format!("{lead}{replaced}{trail}")
}

fn looks_like_domain(word: &str) -> bool {
    word.contains('.')
        && word.split('.').all(|l| !l.is_empty())
        && word.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stable_short_and_hide_the_domain() {
        let a = domain("Mail.Example.").to_string();
        assert_eq!(a, domain("mail.example").to_string());
        assert_ne!(a, domain("other.example").to_string());
        assert!(a.starts_with("dom-") && a.len() == 12, "{a}");
        assert!(!a.contains("example"));
    }

    #[test]
    fn scrub_replaces_domains_and_addresses_only() {
        let text = "DMARC check failed for good.test: SPF fail for the envelope domain \
                    mx.evil.test, which is not the From domain, DKIM signature for \
                    joe@good.test did not verify (version 1.0). Try again.";
        let s = scrub(text);
        for gone in ["good.test", "evil.test", "joe@"] {
            assert!(!s.contains(gone), "{s}");
        }
        assert!(
            s.contains(&format!("failed for {}: SPF", domain("good.test"))),
            "{s}"
        );
        assert!(
            s.contains("(address)") && s.contains("1.0") && s.ends_with("Try again."),
            "{s}"
        );
    }
}
