//! `rate_limits`: the `[limits]` of the service, counted in memory on each node (governor's
//! GCRA limiters; nothing is written anywhere, a restart starts afresh):
//! - messages per sending member per hour and per day, and messages to one recipient alias
//!   per hour, checked at RCPT once the sender is known (`450 4.7.1`, [`MessageLimits`]);
//! - SMTP connections and commands per client address per minute (in
//!   [`crate::intake`]'s client table, under its keyed hash of the address; [`Limit`]);
//! - the global outbound rate: deliveries wait for it, nothing is dropped ([`Outbound`]).
//!
//! A limit of N per window W lets N through at once and then one more every W/N; after a
//! whole window without traffic all N are back. Every refusal counts in
//! `remailer_messages_refused_total{reason="rate_limit"}`.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;
use crate::metrics;
use crate::reply::Refusal;

/// A keyed limiter forgets idle keys when it holds more than this many.
const SWEEP_AT: usize = 50_000;

/// N events per window for each key (None: no limit).
pub struct Limit<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    per_window: u32,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Limit {
            limiter: NonZeroU32::new(per_window).map(|n| RateLimiter::keyed(quota(n, window))),
            per_window,
        }
    }

    /// Takes one event for `key`; `Err(wait)` when it is over its limit.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > SWEEP_AT {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(key).map_err(|not_until| {
            metrics::refused(metrics::Refusal::RateLimit);
            not_until.wait_time_from(DefaultClock::default().now())
        })
    }

    pub fn per_window(&self) -> u32 {
        self.per_window
    }
}

fn quota(n: NonZeroU32, window: Duration) -> Quota {
    let period = (window / n.get()).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("a period above zero")
        .allow_burst(n)
}

/// Whole seconds to wait, at least 1 (for the reply text).
pub fn seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The per-member and per-alias message limits.
pub struct MessageLimits {
    member_hour: Limit<i64>,
    member_day: Limit<i64>,
    alias_hour: Limit<i64>,
}

impl MessageLimits {
    pub fn new(config: &LimitsConfig) -> Self {
        let hour = Duration::from_secs(config.hour);
        MessageLimits {
            member_hour: Limit::new(config.member_per_hour, hour),
            member_day: Limit::new(config.member_per_day, Duration::from_secs(config.day)),
            alias_hour: Limit::new(config.alias_per_hour, hour),
        }
    }

    /// One message from the member with id `member`.
    pub fn member(&self, member: i64) -> Result<(), Refusal> {
        let refuse = |allowed: u32, per: &'static str, wait: Duration| Refusal::MemberRate {
            allowed,
            per,
            wait_secs: seconds(wait),
        };
        self.member_day
            .check(&member)
            .map_err(|w| refuse(self.member_day.per_window(), "day", w))?;
        self.member_hour
            .check(&member)
            .map_err(|w| refuse(self.member_hour.per_window(), "hour", w))
    }

    /// One message to the alias with id `alias`.
    pub fn alias(&self, alias: i64) -> Result<(), Refusal> {
        self.alias_hour
            .check(&alias)
            .map_err(|wait| Refusal::AliasRate {
                allowed: self.alias_hour.per_window(),
                wait_secs: seconds(wait),
            })
    }
}

/// The global outbound rate: deliveries start at most this often, in all.
pub struct Outbound {
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Outbound {
    pub fn new(config: &LimitsConfig) -> Self {
        let limiter = NonZeroU32::new(config.outbound_per_minute).map(|n| {
            let period =
                (Duration::from_secs(config.minute) / n.get()).max(Duration::from_nanos(1));
            RateLimiter::direct(Quota::with_period(period).expect("a period above zero"))
        });
        Outbound { limiter }
    }

    /// Waits until one more delivery may start.
    pub async fn ready(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_triggers_at_its_threshold_and_refills_over_its_window() {
        let limit = Limit::new(3, Duration::from_millis(300));
        for _ in 0..3 {
            assert!(limit.check(&7u8).is_ok());
        }
        let wait = limit.check(&7u8).expect_err("the fourth is over the limit");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limit.check(&8u8).is_ok(), "another key is not affected");
        std::thread::sleep(Duration::from_millis(320));
        for _ in 0..3 {
            assert!(
                limit.check(&7u8).is_ok(),
                "a whole window later all are back"
            );
        }
        assert!(limit.check(&7u8).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limit = Limit::new(0, Duration::from_secs(1));
        for _ in 0..1000 {
            assert!(limit.check(&1u8).is_ok());
        }
    }

    #[test]
    fn member_refusals_say_what_and_when() {
        let config = LimitsConfig {
            member_per_hour: 1,
            ..LimitsConfig::default()
        };
        let limits = MessageLimits::new(&config);
        assert!(limits.member(1).is_ok());
        let r = crate::reply::Reply::from(limits.member(1).unwrap_err());
        assert_eq!((r.code, r.esc), (450, [4, 7, 1]));
        assert!(
            r.text.contains("1 per hour") && r.text.contains("try again in"),
            "{}",
            r.text
        );
    }
}
