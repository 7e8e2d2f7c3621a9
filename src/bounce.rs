//! `bounce`: the per-message envelope sender `b+TOKEN@DOMAIN` (VERP). The token names the
//! sending and receiving aliases by their never-reused ids, the day it was made and a random
//! per-message nonce, under a keyed MAC, so a returning DSN can be matched to one message
//! without a per-message database row, and a forged or stale bounce address is refused at
//! RCPT time.
//!
//! Form: `b+S.R.DAY.NONCE.MAC` — decimal ids and day (no sign, no leading zero), 8 lower-case
//! hex digits of nonce, 16 lower-case hex digits of MAC (HMAC-SHA256 over `S.R.DAY.NONCE`,
//! cut to 8 bytes). There is exactly one spelling of a token: a received local part is
//! parsed, the canonical form is rendered again (with its MAC), and the two are compared in
//! constant time, so `B+…`, `b++1…`, leading zeros or an upper-case MAC are refused. With ids
//! below 10^14 the local part stays within 64 octets (RFC 5321 §4.5.3.1.1).

use subtle::ConstantTimeEq;

use crate::address::Domain;
use crate::keys::{Keys, Purpose};

/// Tokens older than this many days are refused.
pub const TOKEN_DAYS: i64 = 14;
const MAC_BYTES: usize = 8;
/// Longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL: usize = 64;

/// What a valid bounce token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BounceToken {
    pub sender_id: i64,
    pub recipient_id: i64,
    /// Days since the Unix epoch (UTC) when the token was made.
    pub day: i64,
    /// Random per message: tells two messages between the same aliases on one day apart.
    pub nonce: u32,
}

impl BounceToken {
    /// A token for a new message, made now, with a fresh random nonce.
    pub fn new(sender_id: i64, recipient_id: i64, now_unix: i64) -> Self {
        BounceToken {
            sender_id,
            recipient_id,
            day: now_unix.div_euclid(86_400),
            nonce: rand::random(),
        }
    }

    /// `S.R.DAY.NONCE`: what the MAC covers.
    fn body(&self) -> String {
        format!(
            "{}.{}.{}.{:08x}",
            self.sender_id, self.recipient_id, self.day, self.nonce
        )
    }

    /// The one canonical local part `b+S.R.DAY.NONCE.MAC`.
    pub fn local_part(&self, keys: &Keys) -> String {
        let body = self.body();
        let mac = keys.mac(Purpose::Bounce, body.as_bytes());
        format!("b+{body}.{}", hex::encode(&mac[..MAC_BYTES]))
    }

    /// `b+S.R.DAY.NONCE.MAC@DOMAIN`
    pub fn address(&self, keys: &Keys, domain: &Domain) -> String {
        format!("{}@{domain}", self.local_part(keys))
    }

    /// A keyed hash naming this token (for "seen once" records; the token itself is never
    /// stored).
    pub fn record_key(&self, keys: &Keys) -> [u8; 32] {
        keys.mac(Purpose::BounceRecord, self.body().as_bytes())
    }

    /// Parses and verifies a local part: it must be exactly the canonical rendering of the
    /// token it names (constant-time comparison), and not older than [`TOKEN_DAYS`].
    pub fn verify(local: &str, keys: &Keys, now_unix: i64) -> Option<BounceToken> {
        if local.len() > MAX_LOCAL {
            return None;
        }
        let token = Self::parse(local)?;
        let canonical = token.local_part(keys);
        let same = canonical.len() == local.len()
            && bool::from(canonical.as_bytes().ct_eq(local.as_bytes()));
        let today = now_unix.div_euclid(86_400);
        let fresh = token.day <= today && today - token.day <= TOKEN_DAYS;
        (same && fresh).then_some(token)
    }

    /// The fields of `b+S.R.DAY.NONCE.MAC`, read loosely enough to re-render (the MAC field is
    /// only checked for shape here; [`Self::verify`] compares the whole text).
    fn parse(local: &str) -> Option<BounceToken> {
        let rest = local.strip_prefix("b+")?;
        let mut parts = rest.split('.');
        let fields: [&str; 5] = std::array::from_fn(|_| parts.next().unwrap_or(""));
        if parts.next().is_some() || fields[4].len() != 2 * MAC_BYTES {
            return None;
        }
        let [s, r, d, nonce, _mac] = fields;
        if nonce.len() != 8 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(BounceToken {
            sender_id: decimal(s)?,
            recipient_id: decimal(r)?,
            day: decimal(d)?,
            nonce: u32::from_str_radix(nonce, 16).ok()?,
        })
    }
}

/// A non-negative decimal number of ASCII digits only (no sign, no spaces).
fn decimal(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn keys() -> Keys {
        Keys::from_master([3; 32])
    }

    fn issued() -> (BounceToken, String) {
        let token = BounceToken {
            sender_id: 12,
            recipient_id: 34,
            day: NOW / 86_400,
            nonce: 0x00ab_cdef,
        };
        let local = token.local_part(&keys());
        (token, local)
    }

    #[test]
    fn tokens_verify_and_expire() {
        let keys = keys();
        let domain = Domain::parse("remailer.test").unwrap();
        let token = BounceToken::new(12, 34, NOW);
        let addr = token.address(&keys, &domain);
        let local = addr.split('@').next().unwrap();
        assert_eq!(BounceToken::verify(local, &keys, NOW), Some(token));
        assert_eq!(
            BounceToken::verify(local, &keys, NOW + 13 * 86_400).map(|t| t.sender_id),
            Some(12)
        );
        assert_eq!(BounceToken::verify(local, &keys, NOW + 15 * 86_400), None);
        assert_eq!(
            BounceToken::verify(local, &keys, NOW - 86_400),
            None,
            "future"
        );
        assert_eq!(
            BounceToken::verify(&local.replace("b+12.", "b+13."), &keys, NOW),
            None
        );
        assert_eq!(
            BounceToken::verify(local, &Keys::from_master([4; 32]), NOW),
            None
        );
        assert_eq!(BounceToken::verify("b+1.2.3", &keys, NOW), None);
        assert_eq!(BounceToken::verify("ann", &keys, NOW), None);
    }

    #[test]
    fn the_canonical_form_is_lower_case_and_short() {
        let (_, local) = issued();
        let day = NOW / 86_400;
        assert!(
            local.starts_with(&format!("b+12.34.{day}.00abcdef.")),
            "{local}"
        );
        assert_eq!(local, local.to_ascii_lowercase());
        let big = BounceToken {
            sender_id: 99_999_999_999_999,
            recipient_id: 99_999_999_999_999,
            day: 99_999,
            nonce: u32::MAX,
        };
        assert!(big.local_part(&keys()).len() <= MAX_LOCAL);
    }

    #[test]
    fn only_the_canonical_spelling_is_accepted() {
        let (token, local) = issued();
        let keys = keys();
        assert_eq!(BounceToken::verify(&local, &keys, NOW), Some(token));
        let (body, mac) = local.rsplit_once('.').unwrap();
        let day = NOW / 86_400;
        let variants = [
            local.replacen("b+", "B+", 1),
            local.replacen("b+", "b++", 1),
            local.replacen("b+12.", "b+012.", 1),
            local.replacen(".34.", ".034.", 1),
            local.replacen(&format!(".{day}."), &format!(".0{day}."), 1),
            local.replacen(".00abcdef.", ".00ABCDEF.", 1),
            local.replacen(".00abcdef.", ".abcdef.", 1),
            format!("{body}.{}", mac.to_ascii_uppercase()),
            format!("{body}.{}", &mac[..14]),
            format!("{body}.{mac}00"),
            format!("{local}."),
            format!(" {local}"),
            local.replacen("b+12.", "b+-12.", 1),
            local.replacen("b+12.", "b+1_2.", 1),
        ];
        for v in &variants {
            assert_ne!(v, &local);
            assert_eq!(BounceToken::verify(v, &keys, NOW), None, "{v}");
        }
    }

    #[test]
    fn odd_input_is_refused_without_panicking() {
        let keys = keys();
        for s in [
            "",
            "b+",
            "b+....",
            "b+.....",
            "b+1.2.3.4.5",
            "b+é.1.1.00000000.0000000000000000",
            "b+1.2.3.zzzzzzzz.0000000000000000",
            "b+99999999999999999999.1.1.00000000.00",
        ] {
            assert_eq!(BounceToken::verify(s, &keys, NOW), None, "{s}");
        }
        assert_eq!(BounceToken::verify(&"b+1".repeat(40), &keys, NOW), None);
    }

    #[test]
    fn record_keys_differ_per_message() {
        let (token, _) = issued();
        let other = BounceToken { nonce: 1, ..token };
        assert_ne!(token.record_key(&keys()), other.record_key(&keys()));
        assert_eq!(token.record_key(&keys()), token.record_key(&keys()));
    }
}
