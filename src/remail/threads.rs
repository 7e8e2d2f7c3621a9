//! Thread links (issued Message-ID → sealed original Message-ID) on their way to the store.
//! Links are written in batches: whatever arrived while the previous write ran goes in the
//! next one (one statement on PostgreSQL), so a busy service writes far fewer transactions
//! than messages. No link waits for a timer: another node sharing the store must find it as
//! soon as the message has left. Until a link is written it is kept in memory, and
//! [`ThreadLinks::pending`] finds it there: a reply to this node that comes back before the
//! write finished still threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

use crate::store::{Store, ThreadLink};

/// At most this many links go in one write.
const BATCH_MAX: usize = 500;

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
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(l) => batch.push(l),
                Err(_) => break,
            }
        }
        if let Err(e) = store.put_threads(&batch).await {
            tracing::warn!(error = %e, links = batch.len(), "could not record thread links");
        }
        let mut held = pending.lock().expect("pending links");
        for link in &batch {
            held.remove(&link.0);
        }
    }
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
