//! What the queue gauges need: how many messages wait for delivery and when the oldest was
//! accepted, in memory (a [`Waiting`] per queued entry takes itself out when dropped).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::store::now_unix;

#[derive(Default)]
pub struct QueueStats {
    waiting: Mutex<Counts>,
}

/// How many wait, counted per second of acceptance (a queue of any size accepted over a few
/// minutes is a few hundred counters, not one node per message).
#[derive(Default)]
struct Counts {
    by_second: BTreeMap<i64, u32>,
    total: usize,
}

/// One waiting message; dropping it takes it out of the count.
pub struct Waiting {
    stats: Arc<QueueStats>,
    accepted: i64,
}

impl QueueStats {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn track(self: &Arc<Self>, accepted: i64) -> Waiting {
        let mut c = self.counts();
        *c.by_second.entry(accepted).or_default() += 1;
        c.total += 1;
        drop(c);
        Waiting {
            stats: self.clone(),
            accepted,
        }
    }

    /// How many messages wait, and the age in seconds of the oldest (0 when none).
    pub fn snapshot(&self) -> (usize, i64) {
        let c = self.counts();
        let oldest = c.by_second.keys().next().map(|t| (now_unix() - t).max(0));
        (c.total, oldest.unwrap_or(0))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut c = self.stats.counts();
        if let Some(n) = c.by_second.get_mut(&self.accepted) {
            *n -= 1;
            if *n == 0 {
                c.by_second.remove(&self.accepted);
            }
            c.total -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages_what_waits() {
        let stats = Arc::new(QueueStats::default());
        assert_eq!(stats.snapshot(), (0, 0));
        let old = stats.track(now_unix() - 100);
        let new = stats.track(now_unix());
        let (n, age) = stats.snapshot();
        assert_eq!(n, 2);
        assert!((100..=101).contains(&age), "{age}");
        drop(old);
        assert_eq!(stats.snapshot().0, 1);
        assert!(stats.snapshot().1 <= 1);
        drop(new);
        assert_eq!(stats.snapshot(), (0, 0));
    }
}
