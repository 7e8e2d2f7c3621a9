//! `bounce`: the per-message envelope sender `b+TOKEN@DOMAIN` (VERP). The token names the
//! sending and receiving aliases by their never-reused ids and the day it was made, under a
//! keyed MAC, so a returning DSN can be matched without a per-message database row, and a
//! forged or stale bounce address is refused at RCPT time.

use crate::address::Domain;
use crate::keys::{Keys, Purpose};

/// Tokens older than this many days are refused.
pub const TOKEN_DAYS: i64 = 14;
const MAC_BYTES: usize = 8;

/// What a valid bounce token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BounceToken {
    pub sender_id: i64,
    pub recipient_id: i64,
    pub day: i64,
}

impl BounceToken {
    pub fn new(sender_id: i64, recipient_id: i64, now_unix: i64) -> Self {
        BounceToken {
            sender_id,
            recipient_id,
            day: now_unix / 86_400,
        }
    }

    fn body(&self) -> String {
        format!("{}.{}.{}", self.sender_id, self.recipient_id, self.day)
    }

    /// `b+S.R.DAY.MAC@DOMAIN`
    pub fn address(&self, keys: &Keys, domain: &Domain) -> String {
        let body = self.body();
        let mac = keys.mac(Purpose::Bounce, body.as_bytes());
        format!("b+{body}.{}@{domain}", hex::encode(&mac[..MAC_BYTES]))
    }

    /// Parses and verifies a local part `b+…` (constant-time MAC check, age limit).
    pub fn verify(local: &str, keys: &Keys, now_unix: i64) -> Option<BounceToken> {
        let rest = local
            .strip_prefix("b+")
            .or_else(|| local.strip_prefix("B+"))?;
        let mut parts = rest.split('.');
        let (s, r, d, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let token = BounceToken {
            sender_id: s.parse().ok()?,
            recipient_id: r.parse().ok()?,
            day: d.parse().ok()?,
        };
        let mac = hex::decode(mac.to_ascii_lowercase()).ok()?;
        if mac.len() != MAC_BYTES
            || !keys.verify_mac(Purpose::Bounce, token.body().as_bytes(), &mac)
        {
            return None;
        }
        let today = now_unix / 86_400;
        (token.day <= today && today - token.day <= TOKEN_DAYS).then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let keys = Keys::from_master([3; 32]);
        let domain = Domain::parse("remailer.test").unwrap();
        let now = 1_800_000_000;
        let addr = BounceToken::new(12, 34, now).address(&keys, &domain);
        let local = addr.split('@').next().unwrap();
        assert_eq!(
            BounceToken::verify(local, &keys, now),
            Some(BounceToken::new(12, 34, now))
        );
        assert_eq!(
            BounceToken::verify(local, &keys, now + 13 * 86_400).map(|t| t.sender_id),
            Some(12)
        );
        assert_eq!(BounceToken::verify(local, &keys, now + 15 * 86_400), None);
        assert_eq!(
            BounceToken::verify(&local.replace("12.", "13."), &keys, now),
            None
        );
        assert_eq!(
            BounceToken::verify(local, &Keys::from_master([4; 32]), now),
            None
        );
        assert_eq!(BounceToken::verify("b+1.2.3", &keys, now), None);
        assert_eq!(BounceToken::verify("ann", &keys, now), None);
    }
}
