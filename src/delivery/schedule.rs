//! When a message may first leave (`delivery.delay`, `delivery.pool_interval`): a release
//! time chosen once, when the message is accepted, and stored in its spool entry, so a
//! restart keeps the schedule (ARCHITECTURE.md §4). The delay is uniform in the configured
//! range; with pooling the release time is rounded up to the next pool tick, and the ticks
//! are multiples of the interval since the Unix epoch (the same after a restart).

use rand::Rng;

use crate::config::DeliveryConfig;

#[derive(Debug, Clone, Copy, Default)]
pub struct Schedule {
    /// Delay range in milliseconds (min, max).
    delay_ms: Option<(i64, i64)>,
    /// Pool interval in milliseconds (0: no pooling).
    pool_ms: i64,
}

impl Schedule {
    pub fn new(config: &DeliveryConfig) -> Self {
        Schedule {
            delay_ms: config
                .delay
                .map(|r| (r.min as i64 * 1000, r.max as i64 * 1000)),
            pool_ms: config.pool_interval as i64 * 1000,
        }
    }

    /// Whether messages are pooled (released in shuffled batches at each tick).
    pub fn pooled(&self) -> bool {
        self.pool_ms > 0
    }

    /// The release time for a message accepted at `now_ms`, or None when neither delay nor
    /// pooling is configured.
    pub fn release_at(&self, now_ms: i64) -> Option<i64> {
        if self.delay_ms.is_none() && !self.pooled() {
            return None;
        }
        let delay = self
            .delay_ms
            .map_or(0, |(min, max)| rand::thread_rng().gen_range(min..=max));
        let at = now_ms + delay;
        Some(if self.pooled() {
            self.tick_at_or_after(at)
        } else {
            at
        })
    }

    /// The first pool tick at or after `t_ms`.
    pub fn tick_at_or_after(&self, t_ms: i64) -> i64 {
        let p = self.pool_ms.max(1);
        t_ms.div_euclid(p) * p + if t_ms.rem_euclid(p) == 0 { 0 } else { p }
    }

    /// The first pool tick strictly after `t_ms`.
    pub fn tick_after(&self, t_ms: i64) -> i64 {
        self.tick_at_or_after(t_ms + 1)
    }
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DelayRange;

    fn schedule(delay: Option<(u64, u64)>, pool: u64) -> Schedule {
        Schedule::new(&DeliveryConfig {
            delay: delay.map(|(min, max)| DelayRange { min, max }),
            pool_interval: pool,
            ..DeliveryConfig::default()
        })
    }

    #[test]
    fn off_by_default() {
        assert_eq!(schedule(None, 0).release_at(1_000), None);
    }

    #[test]
    fn delays_stay_in_the_range() {
        let s = schedule(Some((2, 4)), 0);
        for _ in 0..1000 {
            let t = s.release_at(10_000).unwrap();
            assert!((12_000..=14_000).contains(&t), "{t}");
        }
    }

    #[test]
    fn pooled_releases_fall_on_ticks() {
        let s = schedule(Some((0, 5)), 10);
        for _ in 0..200 {
            let t = s.release_at(123_456).unwrap();
            assert_eq!(t % 10_000, 0);
            assert!((130_000..=130_000 + 10_000).contains(&t), "{t}");
        }
        assert_eq!(s.tick_at_or_after(20_000), 20_000);
        assert_eq!(s.tick_after(20_000), 30_000);
    }
}
