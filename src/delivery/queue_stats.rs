//! What the queue gauges need: the acceptance times of the messages waiting for delivery,
//! in memory (one entry per delivery task, removed when the task ends).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::now_unix;

#[derive(Default)]
pub struct QueueStats {
    /// (accepted at, unix seconds; a sequence number to keep equal times apart)
    waiting: Mutex<BTreeSet<(i64, u64)>>,
    next: AtomicU64,
}

/// One waiting message; dropping it takes it out of the count.
pub struct Waiting {
    stats: Arc<QueueStats>,
    key: (i64, u64),
}

impl QueueStats {
    pub fn track(self: &Arc<Self>, accepted: i64) -> Waiting {
        let key = (accepted, self.next.fetch_add(1, Ordering::Relaxed));
        self.waiting.lock().expect("queue stats").insert(key);
        Waiting {
            stats: self.clone(),
            key,
        }
    }

    /// How many messages wait, and the age in seconds of the oldest (0 when none).
    pub fn snapshot(&self) -> (usize, i64) {
        let waiting = self.waiting.lock().expect("queue stats");
        let oldest = waiting.first().map(|(t, _)| (now_unix() - t).max(0));
        (waiting.len(), oldest.unwrap_or(0))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.stats
            .waiting
            .lock()
            .expect("queue stats")
            .remove(&self.key);
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
