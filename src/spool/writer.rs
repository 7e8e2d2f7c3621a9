//! The group-commit writer: one thread owns the active segment. Callers hand it encoded
//! records; it appends everything that is waiting, `fdatasync`s once for the whole batch,
//! registers the records in the index and only then answers every caller. Under load many
//! messages share one sync, and no file is created or deleted per message.

use super::QueueId;
use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Index, Loc, SpoolError};

/// At most this many requests share one sync.
const MAX_BATCH: usize = 512;

pub struct Request {
    /// Framed records, back to back.
    pub bytes: Vec<u8>,
    /// The id of each of those records, its offset in `bytes` and its length.
    pub records: Vec<(QueueId, usize, u32)>,
    pub done: oneshot::Sender<Result<(), String>>,
}

pub struct Writer {
    pub index: Arc<Mutex<Index>>,
    pub segment: u64,
    pub file: File,
    pub size: u64,
    /// A segment this large is sealed and a new one started.
    pub max: u64,
    pub open_segment: Box<dyn Fn(u64) -> Result<File, SpoolError> + Send>,
}

/// Starts the writer thread; it ends when the sender is dropped, after the work it was
/// given (the caller joins it before giving up the spool's lock).
pub fn spawn(writer: Writer) -> (Sender<Request>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<Request>();
    let thread = std::thread::Builder::new()
        .name("spool-writer".into())
        .spawn(move || writer.run(rx))
        .expect("spawn the spool writer");
    (tx, thread)
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let result = self.commit(&batch);
            for request in batch {
                let _ = request.done.send(result.clone());
            }
            if self.size >= self.max {
                self.rotate();
            }
        }
    }

    /// Appends and syncs the batch; on success the records are in the index.
    fn commit(&mut self, batch: &[Request]) -> Result<(), String> {
        let total: usize = batch.iter().map(|r| r.bytes.len()).sum();
        let mut buf = Vec::with_capacity(total);
        for r in batch {
            buf.extend_from_slice(&r.bytes);
        }
        let started = std::time::Instant::now();
        let written = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data());
        let messages = batch.iter().map(|r| r.records.len()).sum();
        crate::metrics::spool_commit(messages, started.elapsed());
        if let Err(e) = written {
            tracing::error!(error = %e, segment = self.segment, "spool write failed");
            // A partial append would confuse later records: start a fresh segment.
            self.rotate();
            return Err(e.to_string());
        }
        let mut index = self.index.lock().expect("index lock");
        let mut base = self.size;
        for r in batch {
            for (id, offset, len) in &r.records {
                let at = Loc {
                    segment: self.segment,
                    offset: base + *offset as u64,
                    len: *len,
                };
                index.add(*id, at);
            }
            base += r.bytes.len() as u64;
        }
        self.size += total as u64;
        Ok(())
    }

    fn rotate(&mut self) {
        match (self.open_segment)(self.segment + 1) {
            Ok(file) => {
                let old = self.segment;
                self.segment += 1;
                self.file = file;
                self.size = 0;
                self.index.lock().expect("index lock").seal(old);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start a new spool segment; appending to the old one")
            }
        }
    }
}
