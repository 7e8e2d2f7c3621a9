//! Thread links (issued Message-ID → sealed original Message-ID) on their way to the store.
//! Links are written in batches: whatever arrived while the previous write ran goes in the
//! next one (one statement on PostgreSQL), so a busy service writes far fewer transactions
//! than messages. On a busy service (the previous write ended less than [`BUSY`] ago) a
//! batch also takes the links that arrive within [`LINGER`] of its first one, so batches are
//! not one link each at a steady few hundred messages a second; a quiet service writes each
//! link at once. Either way another node sharing the store finds a link a few milliseconds
//! after the message was accepted, long before it can have been answered. Until a link is
//! written it is kept in memory, and
//! [`ThreadLinks::pending`] finds it there: a reply to this node that comes back before the
//! write finished still threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::store::{Store, ThreadLink};

/// At most this many links go in one write.
const BATCH_MAX: usize = 500;

/// How long a batch on a busy service waits for more links after its first.
const LINGER: Duration = Duration::from_millis(3);

/// A write that ended less than this long ago makes the service busy.
const BUSY: Duration = Duration::from_millis(50);

type Pending = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// The sending side: record links and look up the ones not written yet.
#[derive(Clone)]
pub struct ThreadLinks {
    tx: mpsc::UnboundedSender<ThreadLink>,
    pending: Pending,
}

impl ThreadLinks {
    /// Starts the writer task; it ends when every [`ThreadLinks`] is dropped, after writing
    /// what it holds.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Pending::default();
        tokio::spawn(write_batches(store, rx, pending.clone()));
        ThreadLinks { tx, pending }
    }

    pub fn record(&self, link: ThreadLink) {
        let (issued, sealed) = (link.0.clone(), link.1.clone());
        self.pending
            .lock()
            .expect("pending links")
            .insert(issued, sealed);
        let _ = self.tx.send(link);
    }

    /// The sealed original of a link not written to the store yet.
    pub fn pending(&self, issued: &str) -> Option<Vec<u8>> {
        self.pending
            .lock()
            .expect("pending links")
            .get(issued)
            .cloned()
    }
}

async fn write_batches(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<ThreadLink>,
    pending: Pending,
) {
    let mut last_write: Option<Instant> = None;
    while let Some(first) = rx.recv().await {
        let busy = last_write.is_some_and(|t| t.elapsed() < BUSY);
        let batch = gather(first, &mut rx, busy).await;
        if let Err(e) = store.put_threads(&batch).await {
            tracing::warn!(error = %e, links = batch.len(), "could not record thread links");
        }
        last_write = Some(Instant::now());
        let mut held = pending.lock().expect("pending links");
        for link in &batch {
            held.remove(&link.0);
        }
    }
}

/// The batch that starts with `first`: what is waiting, and when `busy`, what arrives within
/// [`LINGER`].
async fn gather(
    first: ThreadLink,
    rx: &mut mpsc::UnboundedReceiver<ThreadLink>,
    busy: bool,
) -> Vec<ThreadLink> {
    let mut batch = vec![first];
    let until = Instant::now() + LINGER;
    while batch.len() < BATCH_MAX {
        let next = match rx.try_recv() {
            Ok(l) => Some(l),
            Err(_) if busy => tokio::time::timeout_at(until, rx.recv())
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        match next {
            Some(l) => batch.push(l),
            None => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_link_is_found_before_and_after_its_batch_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = crate::store::open(&url).await.unwrap();
        let links = ThreadLinks::spawn(store.clone());
        let far = crate::store::now_unix() + 3600;
        links.record(("<a@remailer.test>".into(), vec![7], far, 1));
        // Held in memory from the start, written soon after; found at every moment between.
        let mut written = false;
        for _ in 0..200 {
            // Memory first: a link leaves it only after the store has it.
            let pending = links.pending("<a@remailer.test>");
            let stored = store.thread_original("<a@remailer.test>", 0).await.unwrap();
            assert!(stored.is_some() || pending.is_some(), "lost in between");
            if stored == Some(vec![7]) && pending.is_none() {
                written = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(written, "the link reached the store and left memory");
    }
}
