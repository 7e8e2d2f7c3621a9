//! The open sessions, as the accept loop sees them when the service is full
//! (`smtp.max_connections`): each says whether it is idle (waiting for a command) and since
//! when, and the one idle longest can be asked to close (`421`), so that a new connection, a
//! member's perhaps, gets its slot instead of being turned away by sessions that do nothing.
//! At shutdown every session is asked to close as soon as it is idle ([`Slots::close_all`]):
//! idle ones at once, one in a transaction once its reply is sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Slots {
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// The service is stopping: every session closes when it next waits for a command.
    stopping: AtomicBool,
}

/// One session's entry.
#[derive(Default)]
pub struct Slot {
    /// Since when the session waits for a command; `None` while it is busy.
    idle_since: Mutex<Option<Instant>>,
    close: Notify,
}

/// A session's registration; dropping it removes the entry.
pub struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
    slot: Arc<Slot>,
}

impl Slots {
    pub fn register(self: &Arc<Self>) -> SlotGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        if self.stopping.load(Ordering::SeqCst) {
            slot.close.notify_one();
        }
        self.open
            .lock()
            .expect("slots lock")
            .insert(id, slot.clone());
        SlotGuard {
            slots: self.clone(),
            id,
            slot,
        }
    }

    /// Shutdown: asks every session to close when it waits for a command (at once for those
    /// waiting now; after the reply for one in a transaction).
    pub fn close_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for slot in self.open.lock().expect("slots lock").values() {
            slot.close.notify_one();
        }
    }

    /// Asks the session idle longest to close; false when none is idle.
    pub fn close_idlest(&self) -> bool {
        let open = self.open.lock().expect("slots lock");
        let idlest = open
            .values()
            .filter_map(|s| Some((s.idle_since()?, s)))
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, slot)) => {
                // Marked busy so that it is not picked twice.
                *slot.idle_since.lock().expect("slot lock") = None;
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Slot {
    fn idle_since(&self) -> Option<Instant> {
        *self.idle_since.lock().expect("slot lock")
    }

    /// The session waits for a command.
    pub fn idle(&self) {
        let mut since = self.idle_since.lock().expect("slot lock");
        if since.is_none() {
            *since = Some(Instant::now());
        }
    }

    /// The session works on a command or reads message data.
    pub fn busy(&self) {
        *self.idle_since.lock().expect("slot lock") = None;
    }

    /// Completes when the accept loop asks this session to close.
    pub async fn close_requested(&self) {
        self.close.notified().await
    }
}

impl SlotGuard {
    /// The service is shutting down.
    pub fn stopping(&self) -> bool {
        self.slots.stopping.load(Ordering::SeqCst)
    }
}

impl std::ops::Deref for SlotGuard {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.open.lock().expect("slots lock").remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_session_idle_longest_is_asked_to_close() {
        let slots = Arc::new(Slots::default());
        let (a, b, c) = (slots.register(), slots.register(), slots.register());
        b.slot.idle();
        std::thread::sleep(std::time::Duration::from_millis(5));
        a.slot.idle();
        c.slot.busy();
        assert!(slots.close_idlest());
        tokio::time::timeout(std::time::Duration::from_secs(1), b.slot.close_requested())
            .await
            .expect("b was idle longest");
        assert!(slots.close_idlest(), "then a");
        assert!(!slots.close_idlest(), "c is busy");
        drop((a, b, c));
        assert!(slots.open.lock().unwrap().is_empty());
    }
}
