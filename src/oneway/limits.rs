//! The one-way form's limits. Per client: in memory only (governor's keyed GCRA limiter),
//! keyed by an HMAC of the client address under a random key made at start and never
//! stored, so neither the address nor a stable hash of it is kept anywhere; an IPv6 client
//! is counted by its /64. Per recipient and globally: fixed-window counters in the store
//! ([`SendCounter`]), under a keyed hash of the recipient, so they hold across restarts and
//! nodes; rows are purged once their window has passed.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::address::RealAddress;
use crate::keys::{Keys, Purpose};
use crate::store::SendCounter;

/// The client limiter forgets idle clients when it holds more than this many.
const SWEEP_AT: usize = 50_000;

/// Counts requests per client (a hash of its address) per hour.
pub struct ClientLimiter {
    key: [u8; 32],
    limiter: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
}

impl ClientLimiter {
    /// `per_hour` requests an hour for each client (0: none at all).
    pub fn new(per_hour: u32) -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let limiter = NonZeroU32::new(per_hour).map(|n| RateLimiter::keyed(Quota::per_hour(n)));
        ClientLimiter { key, limiter }
    }

    /// Takes one request for `client`; false when it is over its limit.
    pub fn allow(&self, client: IpAddr) -> bool {
        let Some(limiter) = &self.limiter else {
            return false;
        };
        if limiter.len() > SWEEP_AT {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(&self.client_key(client)).is_ok()
    }

    fn client_key(&self, client: IpAddr) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        match client {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => mac.update(&v4.octets()),
                None => mac.update(&v6.octets()[..8]),
            },
        }
        let out = mac.finalize().into_bytes();
        out[..16].try_into().expect("16 bytes")
    }
}

/// The keyed hash a recipient's send counts are kept under.
pub fn recipient_key(keys: &Keys, kind: &str, address: &RealAddress) -> Vec<u8> {
    let data = format!("{kind}\n{}", address.normalized());
    keys.mac(Purpose::SendCount, data.as_bytes())[..16].to_vec()
}

/// A counter per recipient per UTC day.
pub fn per_day(kind: &'static str, key: Vec<u8>, limit: u32, now: i64) -> SendCounter {
    let day = now.div_euclid(86_400);
    SendCounter {
        kind,
        key,
        period: day,
        limit,
        expires_at: (day + 1) * 86_400,
    }
}

/// One counter for the whole service per hour.
pub fn per_hour(kind: &'static str, limit: u32, now: i64) -> SendCounter {
    let hour = now.div_euclid(3_600);
    SendCounter {
        kind,
        key: Vec::new(),
        period: hour,
        limit,
        expires_at: (hour + 1) * 3_600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_limit_is_per_client_and_v6_counts_by_prefix() {
        let l = ClientLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(b));
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.allow(v6a) && l.allow(v6b));
        assert!(!l.allow(v6a), "same /64");
        assert!(!ClientLimiter::new(0).allow(a));
        assert_ne!(
            ClientLimiter::new(1).client_key(a),
            l.client_key(a),
            "a fresh random key per start"
        );
    }
}
