//! Fresh entries kept whole in memory from the moment they are durable until they are first
//! read back ([`super::Spool::take_fresh`]), so that a first delivery attempt does not read
//! from disk a record written a millisecond before (a blocking-pool hand-off, an open, a read
//! and an unseal per message). Only entries due at once and with no attempts are kept; the set
//! is bounded in bytes and count, the oldest going first, so a queue that grows (a slow or
//! failing destination) keeps only metadata. An entry leaves when it is taken, whatever the
//! attempt's outcome: a retry always reads the segment.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::spool::{Entry, QueueId};

/// At most this many message bytes are kept (small next to the memory a big queue takes).
pub const MAX_BYTES: usize = 4 << 20;
/// At most this many entries are kept.
pub const MAX_ENTRIES: usize = 1024;

#[derive(Default)]
pub struct Fresh {
    inner: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    entries: HashMap<QueueId, Entry>,
    /// Insertion order, for eviction; ids already taken are skipped when met.
    order: VecDeque<QueueId>,
    bytes: usize,
}

impl Fresh {
    /// Keeps `entry` (already durable and queued) for its first attempt, when it fits.
    pub fn keep(&self, id: QueueId, entry: &Entry) {
        let size = entry.message.len();
        if size > MAX_BYTES / 4 || !entry.history.is_empty() || entry.envelope.release_ms.is_some()
        {
            return;
        }
        let mut held = self.inner.lock().expect("fresh entries");
        while held.bytes + size > MAX_BYTES || held.entries.len() >= MAX_ENTRIES {
            let Some(old) = held.order.pop_front() else {
                break;
            };
            if let Some(e) = held.entries.remove(&old) {
                held.bytes -= e.message.len();
            }
        }
        if let Some(previous) = held.entries.insert(id, entry.clone()) {
            held.bytes -= previous.message.len();
        }
        held.order.push_back(id);
        held.bytes += size;
        // Ids taken out leave stale slots in `order`; drop them once they dominate.
        if held.order.len() > 2 * MAX_ENTRIES {
            let Held { entries, order, .. } = &mut *held;
            order.retain(|id| entries.contains_key(id));
        }
    }

    /// The entry kept for `id`, taken out (None when it was never kept or was evicted).
    pub fn take(&self, id: &QueueId) -> Option<Entry> {
        let mut held = self.inner.lock().expect("fresh entries");
        let entry = held.entries.remove(id)?;
        held.bytes -= entry.message.len();
        if held.entries.is_empty() {
            held.order.clear();
        }
        Some(entry)
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let held = self.inner.lock().unwrap();
        (held.entries.len(), held.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Envelope, Kind};
    use std::sync::Arc;

    fn entry(n: usize, size: usize) -> (QueueId, Entry) {
        let id = format!("{n:024x}");
        let envelope = Envelope {
            kind: Kind::Remail,
            mail_from: String::new(),
            rcpt: "bob@real.test".into(),
            recipient_alias: None,
            sender_id: None,
            created: 0,
            release_ms: None,
        };
        let e = Entry::new(id.clone(), envelope, Arc::new(vec![b'x'; size]));
        (QueueId::parse(&id).unwrap(), e)
    }

    #[test]
    fn an_entry_is_taken_once() {
        let fresh = Fresh::default();
        let (id, e) = entry(1, 100);
        fresh.keep(id, &e);
        assert_eq!(fresh.take(&id).unwrap().message.len(), 100);
        assert!(fresh.take(&id).is_none());
        assert_eq!(fresh.held(), (0, 0));
    }

    #[test]
    fn bytes_and_count_are_bounded_the_oldest_going_first() {
        let fresh = Fresh::default();
        let size = MAX_BYTES / 8;
        for n in 0..20 {
            let (id, e) = entry(n, size);
            fresh.keep(id, &e);
        }
        let (count, bytes) = fresh.held();
        assert!(bytes <= MAX_BYTES, "{bytes}");
        assert_eq!(count, 8);
        assert!(
            fresh.take(&entry(0, 1).0).is_none(),
            "the oldest went first"
        );
        assert!(fresh.take(&entry(19, 1).0).is_some(), "the newest is kept");
        for n in 0..(3 * MAX_ENTRIES) {
            let (id, e) = entry(100 + n, 10);
            fresh.keep(id, &e);
        }
        assert_eq!(fresh.held().0, MAX_ENTRIES);
    }

    #[test]
    fn a_large_message_or_one_with_history_is_not_kept() {
        let fresh = Fresh::default();
        let (id, e) = entry(1, MAX_BYTES / 2);
        fresh.keep(id, &e);
        let (id2, mut e2) = entry(2, 10);
        e2.history.push(crate::spool::retry::Attempt {
            n: 1,
            at_ms: 0,
            next_ms: 0,
            error: "451".into(),
        });
        fresh.keep(id2, &e2);
        assert_eq!(fresh.held(), (0, 0));
    }
}
