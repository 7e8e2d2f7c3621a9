//! The one-way form's limits. Per client: in memory only (governor's keyed GCRA limiter),
//! keyed by the web server's client key (a keyed hash of the client address; the address
//! itself never gets here), never stored. Per recipient and globally: fixed-window counters
//! in the store ([`SendCounter`]), under a keyed hash of the recipient, so they hold across
//! restarts and nodes; rows are purged once their window has passed.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::address::RealAddress;
use crate::keys::{Keys, Purpose};
use crate::store::SendCounter;

/// The client limiter forgets idle clients when it holds more than this many.
const SWEEP_AT: usize = 50_000;

/// A client as the limiter knows it: a keyed hash of its address.
pub type ClientId = [u8; 16];

/// Counts requests per client per hour.
pub struct ClientLimiter {
    limiter: Option<DefaultKeyedRateLimiter<ClientId>>,
}

impl ClientLimiter {
    /// `per_hour` requests an hour for each client (0: none at all).
    pub fn new(per_hour: u32) -> Self {
        let limiter = NonZeroU32::new(per_hour).map(|n| RateLimiter::keyed(Quota::per_hour(n)));
        ClientLimiter { limiter }
    }

    /// Takes one request for `client`; false when it is over its limit.
    pub fn allow(&self, client: &ClientId) -> bool {
        let Some(limiter) = &self.limiter else {
            return false;
        };
        if limiter.len() > SWEEP_AT {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(client).is_ok()
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
    fn client_limit_is_per_client() {
        let l = ClientLimiter::new(2);
        let (a, b) = ([1; 16], [2; 16]);
        assert!(l.allow(&a) && l.allow(&a));
        assert!(!l.allow(&a));
        assert!(l.allow(&b));
        assert!(!ClientLimiter::new(0).allow(&a));
    }
}
