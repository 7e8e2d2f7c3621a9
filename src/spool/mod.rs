//! `spool`: the durable queue, as an append-only log of segments (`seg-N.log`).
//!
//! A message is acknowledged (`250`) only after its record is appended to the active segment
//! and the segment is `fdatasync`ed; a single writer thread ([`writer`]) lets every message
//! that is waiting share one sync (group commit), and no file is created or deleted per
//! message. A finished delivery appends its id to the segment's `seg-N.done` (not synced: a
//! crash re-delivers, at least once). A segment whose records are all done is deleted once a
//! newer one is active; a deferred record in an old segment is copied forward
//! ([`Spool::relocate`]) so old segments drain. At start ([`Spool::open`]) the log is read
//! back one record at a time: a torn record at the end is cut off (it was never acknowledged)
//! and every record not marked done is handed back for delivery as a [`Queued`], the little
//! the scheduler keeps (no message, no address); [`Spool::load`] reads the whole record again
//! when a delivery attempt starts. The index knows where each live record is (segment,
//! offset, length).
//!
//! A deferred attempt appends its retry state (attempt number, next-attempt time, a safe
//! error text) to `seg-N.retry` ([`retry`]), sealed; recovery hands it back with the entry so
//! a restart continues each backoff. A copy moved forward carries its history in its own
//! header instead. `remailer queue delete` tombstones an id: a copy the writer is still
//! committing is marked done as soon as it lands.
//!
//! Each record is sealed whole with the service key ([`record`]): its envelope holds the
//! recipient's real address, and a notice's message names it in its `To:`, so nothing of a
//! record is in clear on disk. Records of the older format (header sealed, message in clear)
//! are still read. One `serve` at a time: the spool is locked.

mod fresh;
mod queue_id;
pub(crate) mod record;
pub mod retry;
mod writer;

pub use queue_id::QueueId;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::keys::{random_hex, Keys};

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spool in {0} is in use by another remailer process")]
    Locked(String),
    #[error("spool write failed: {0}")]
    Write(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What kind of delivery a spool entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A member's message, remailed.
    Remail,
    /// A notice from the service (bounce notice, confirmation); never answered by a notice.
    Notice,
}

/// Who a spool entry goes to and who hears about its failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub kind: Kind,
    /// Envelope sender (`b+TOKEN@DOMAIN`, or empty for notices).
    pub mail_from: String,
    /// The recipient's real address (sealed on disk).
    pub rcpt: String,
    /// The recipient alias, for notices and logs (none for notices to members).
    pub recipient_alias: Option<String>,
    /// The sending alias's id: the member told when delivery fails for good.
    pub sender_id: Option<i64>,
    /// Unix seconds when the message was accepted.
    pub created: i64,
    /// Unix milliseconds before which it must not be delivered (`delivery.delay` and
    /// `delivery.pool_interval`), chosen when it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_ms: Option<i64>,
}

/// A store being prepared ([`Spool::coming`]). The writer counts it done when it receives
/// the store ([`Spool::store_coming`]) or, when the ticket is dropped without it (the message
/// was refused), a [`writer::Message::Wake`]: so the writer never waits for a store it has.
pub struct Coming {
    writer: Option<mpsc::Sender<writer::Message>>,
}

impl Drop for Coming {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.send(writer::Message::Wake);
        }
    }
}

/// A queued delivery.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub envelope: Envelope,
    pub message: Arc<Vec<u8>>,
    /// The attempts that deferred it so far (oldest first), as persisted.
    pub history: Vec<retry::Attempt>,
}

impl Entry {
    /// A new entry with no attempts yet.
    pub fn new(id: String, envelope: Envelope, message: Arc<Vec<u8>>) -> Self {
        Entry {
            id,
            envelope,
            message,
            history: Vec::new(),
        }
    }
}

/// What the delivery scheduler keeps of a queued entry: no message and no address. It is
/// kept for every queued entry, so it is small: the id inline, no heap block unless the
/// entry has attempts its record does not carry.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: QueueId,
    pub kind: Kind,
    /// Unix seconds when the message was accepted.
    pub created: i64,
    pub release_ms: Option<i64>,
    /// The latest persisted attempt: its number and when the next one is due.
    pub last: Option<(u32, i64)>,
    /// Persisted attempts that the record itself does not carry (lines of `seg-N.retry`
    /// written after it); [`Spool::load`] plus these is the whole history.
    pub recent: Recent,
}

impl Queued {
    /// What the scheduler keeps of `entry` (its history counted as carried by the record);
    /// None when its id is not one a [`QueueId`] holds.
    pub fn of(entry: &Entry) -> Option<Queued> {
        Some(Queued {
            id: QueueId::parse(&entry.id)?,
            kind: entry.envelope.kind,
            created: entry.envelope.created,
            release_ms: entry.envelope.release_ms,
            last: entry.history.last().map(|a| (a.n, a.next_ms)),
            recent: Recent::default(),
        })
    }
}

/// A queued entry found at start, with the recipient's domain (lower case, a destination
/// key: never logged), which the scheduler needs once, to choose the destination.
#[derive(Debug)]
pub struct Recovered {
    pub queued: Queued,
    /// Shared by the entries recovered for one domain.
    pub rcpt_domain: Arc<str>,
}

/// The attempts of [`Queued::recent`]: none takes no heap block, and the list holds no spare
/// capacity (every deferred entry of a large queue keeps one).
#[derive(Debug, Clone, Default)]
pub struct Recent(Option<Box<[retry::Attempt]>>);

impl Recent {
    pub fn as_slice(&self) -> &[retry::Attempt] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Adds `attempt`, keeping at most `max` (the oldest leave first).
    pub fn push(&mut self, attempt: retry::Attempt, max: usize) {
        let mut all = std::mem::take(self).0.map(Vec::from).unwrap_or_default();
        all.push(attempt);
        let extra = all.len().saturating_sub(max);
        all.drain(..extra);
        *self = Recent::from(all);
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl From<Vec<retry::Attempt>> for Recent {
    fn from(list: Vec<retry::Attempt>) -> Self {
        Recent((!list.is_empty()).then(|| list.into_boxed_slice()))
    }
}

/// The domain of a recipient address, lower case (empty when it has none).
pub fn rcpt_domain(rcpt: &str) -> String {
    rcpt.rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Where a live record is.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// Where each live record is, and how many live records each segment holds.
pub struct Index {
    dir: PathBuf,
    location: HashMap<QueueId, Loc>,
    segments: BTreeMap<u64, Segment>,
    /// Ids deleted by `remailer queue delete`: a copy stored later is marked done at once.
    deleted: HashSet<QueueId>,
}

#[derive(Default)]
struct Segment {
    live: usize,
    sealed: bool,
    done: Option<File>,
    /// Done marks whose write failed; written again with the next mark.
    unwritten: Vec<String>,
    retry: Option<File>,
}

impl Index {
    fn add(&mut self, id: QueueId, at: Loc) {
        let segment = at.segment;
        self.segments.entry(segment).or_default();
        if self.deleted.contains(&id) {
            self.mark_done(id.as_str(), segment);
            return;
        }
        self.segments.entry(segment).or_default().live += 1;
        self.location.insert(id, at);
    }

    fn seal(&mut self, segment: u64) {
        self.segments.entry(segment).or_default().sealed = true;
        self.collect(segment);
    }

    /// Marks the record of `id` in `segment` done; deletes the segment when it is empty.
    fn retire(&mut self, id: QueueId, segment: u64) {
        if !self.mark_done(id.as_str(), segment) {
            return;
        }
        if let Some(seg) = self.segments.get_mut(&segment) {
            seg.live = seg.live.saturating_sub(1);
        }
        self.collect(segment);
    }

    /// Appends `id` to the done file of `segment` (false when the segment is unknown). A
    /// failed write is logged and kept to be written with the next mark; until then a
    /// restart would deliver the entry again (at least once, never lost).
    fn mark_done(&mut self, id: &str, segment: u64) -> bool {
        let path = done_path(&self.dir, segment);
        let Some(seg) = self.segments.get_mut(&segment) else {
            return false;
        };
        // After a failed write, start on a new line: the failure may have left half a line.
        let mut lines = if seg.unwritten.is_empty() { "" } else { "\n" }.to_string();
        seg.unwritten.push(id.to_string());
        lines.extend(seg.unwritten.iter().map(|id| format!("{id}\n")));
        if let Err(e) = append(&mut seg.done, &path, lines.as_bytes()) {
            tracing::error!(segment, queue_id = %id, error = %e, pending = seg.unwritten.len(),
                "could not write a done mark; a restart before the next mark delivers it again");
            return true;
        }
        seg.unwritten.clear();
        true
    }

    /// Appends a retry line for an entry in `segment`.
    fn append_retry(&mut self, segment: u64, lines: &[u8]) -> std::io::Result<()> {
        let path = retry_path(&self.dir, segment);
        let seg = self.segments.entry(segment).or_default();
        append(&mut seg.retry, &path, lines)
    }

    fn collect(&mut self, segment: u64) {
        if let Some(seg) = self.segments.get(&segment) {
            if seg.sealed && seg.live == 0 {
                self.segments.remove(&segment);
                let _ = fs::remove_file(segment_path(&self.dir, segment));
                let _ = fs::remove_file(done_path(&self.dir, segment));
                let _ = fs::remove_file(retry_path(&self.dir, segment));
            }
        }
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:08}.log"))
}

fn done_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:08}.done"))
}

fn retry_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("seg-{n:08}.retry"))
}

/// Appends `bytes` to the file in `slot` (opened on first use); a failed write closes it,
/// so the next write reopens it.
fn append(slot: &mut Option<File>, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if slot.is_none() {
        *slot = Some(OpenOptions::new().create(true).append(true).open(path)?);
    }
    let result = slot.as_mut().map_or(Ok(()), |f| f.write_all(bytes));
    if result.is_err() {
        *slot = None;
    }
    result
}

/// A segment this large is sealed and a new one started.
const SEGMENT_MAX: u64 = 32 * 1024 * 1024;

pub struct Spool {
    keys: Arc<Keys>,
    /// Stores being prepared ([`Coming`]), which the writer waits for before it syncs.
    coming: Arc<AtomicUsize>,
    index: Arc<Mutex<Index>>,
    /// None only while the spool is dropped.
    writer: Mutex<Option<mpsc::Sender<writer::Message>>>,
    /// Entries just stored, kept whole until their first read ([`Spool::take_fresh`]).
    fresh: fresh::Fresh,
    /// Syncs the writer made (for tests).
    syncs: Arc<std::sync::atomic::AtomicU64>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    recovered: Mutex<Vec<Recovered>>,
    _lock: File,
}

impl Drop for Spool {
    /// Ends the writer thread and waits for it before the lock is released: after it sent
    /// its last answer it may still be rotating segments (and deleting emptied ones), which
    /// must not overlap with the next process that opens the spool.
    fn drop(&mut self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`, locks it, and reads back what is still queued
    /// (see [`Spool::take_recovered`]).
    pub fn open(dir: &Path, keys: Arc<Keys>) -> Result<Self, SpoolError> {
        Self::open_with_segment_size(dir, keys, SEGMENT_MAX)
    }

    fn open_with_segment_size(dir: &Path, keys: Arc<Keys>, max: u64) -> Result<Self, SpoolError> {
        Self::open_with(dir, keys, max, writer::GATHER_MAX)
    }

    fn open_with(
        dir: &Path,
        keys: Arc<Keys>,
        max: u64,
        gather: std::time::Duration,
    ) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock(dir)?;
        let (recovered, mut index, last) = recover(dir, &keys)?;
        let segment = last + 1;
        let file = create_segment(dir, segment)?;
        index.segments.entry(segment).or_default();
        let index = Arc::new(Mutex::new(index));
        let dir_owned = dir.to_path_buf();
        let coming = Arc::new(AtomicUsize::new(0));
        let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (writer, writer_thread) = writer::spawn(writer::Writer {
            coming: coming.clone(),
            gather,
            syncs: syncs.clone(),
            index: index.clone(),
            segment,
            file,
            size: 0,
            max,
            open_segment: Box::new(move |n| create_segment(&dir_owned, n)),
        });
        Ok(Spool {
            keys,
            fresh: fresh::Fresh::default(),
            coming,
            syncs,
            index,
            writer: Mutex::new(Some(writer)),
            writer_thread: Some(writer_thread),
            recovered: Mutex::new(recovered),
            _lock: lock,
        })
    }

    /// What was found queued at open (once), in id order: only what the scheduler needs.
    pub fn take_queued(&self) -> Vec<Recovered> {
        std::mem::take(&mut *self.recovered.lock().expect("lock"))
    }

    /// The entries found queued at open (once), each read whole with its history (for
    /// tests and tools; the service takes [`Spool::take_queued`] and loads one at a time).
    pub fn take_recovered(&self) -> Vec<Entry> {
        self.take_queued()
            .into_iter()
            .filter_map(|r| self.load(&r.queued).ok().flatten())
            .collect()
    }

    /// Reads the record of a queued entry back (blocking: call from `spawn_blocking`), with
    /// its whole history; None when it is no longer queued (delivered, deleted).
    pub fn load(&self, queued: &Queued) -> Result<Option<Entry>, SpoolError> {
        let Some(at) = self
            .index
            .lock()
            .expect("index lock")
            .location
            .get(&queued.id)
            .copied()
        else {
            return Ok(None);
        };
        let path = segment_path(&self.index.lock().expect("index lock").dir, at.segment);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut bytes = vec![0u8; at.len as usize];
        file.read_exact_at(&mut bytes, at.offset)
            .map_err(io_err(&path))?;
        match record::decode(&bytes, &self.keys) {
            record::Decoded::Record(entry, _) if queued.id == entry.id.as_str() => {
                let mut entry = *entry;
                entry
                    .history
                    .extend(queued.recent.as_slice().iter().cloned());
                retry::normalise(&mut entry.history);
                Ok(Some(entry))
            }
            _ => Err(SpoolError::Write(format!(
                "the record of {} in segment {} does not read back",
                queued.id, at.segment
            ))),
        }
    }

    /// A new queue id: time-ordered and unique.
    pub fn new_id() -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{ms:012x}{}", random_hex(6))
    }

    /// Hands the entries to the writer; with `coming`, as the store it announced.
    fn submit(
        &self,
        entries: &[Entry],
        coming: Option<&mut Coming>,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (done, rx) = oneshot::channel();
        let mut bytes = Vec::with_capacity(entries.iter().map(|e| e.message.len() + 256).sum());
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(id) = QueueId::parse(&entry.id) else {
                let _ = done.send(Err(format!("{:?} is not a queue id", entry.id)));
                return rx;
            };
            let start = bytes.len();
            record::encode(entry, &self.keys, &mut bytes);
            records.push((id, start, (bytes.len() - start) as u32));
        }
        if let Some(writer) = self.writer.lock().expect("lock").as_ref() {
            let announced = coming.is_some_and(|c| c.writer.take().is_some());
            let _ = writer.send(writer::Message::Store(writer::Request {
                bytes,
                records,
                done,
                announced,
            }));
        }
        rx
    }

    /// Makes the entries durable (blocking: call from `spawn_blocking`). When it returns
    /// Ok, every entry is synced to disk.
    pub fn store(&self, entries: &[Entry]) -> Result<(), SpoolError> {
        self.stored(
            entries,
            committed(self.submit(entries, None).blocking_recv()),
        )
    }

    /// [`Spool::store`] for async callers.
    pub async fn store_async(&self, entries: &[Entry]) -> Result<(), SpoolError> {
        self.stored(entries, committed(self.submit(entries, None).await))
    }

    /// Tells the writer a store is being prepared (a message is being rewritten and signed),
    /// so a sync that starts meanwhile may wait briefly for it (see [`writer`]). Hand the
    /// ticket to [`Spool::store_coming`]; dropping it says nothing is coming after all.
    pub fn coming(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::AcqRel);
        Coming {
            writer: self.writer.lock().expect("lock").clone(),
        }
    }

    /// [`Spool::store_async`] for the store `coming` announced: the ticket ends once the
    /// request is with the writer.
    pub async fn store_coming(
        &self,
        mut coming: Coming,
        entries: &[Entry],
    ) -> Result<(), SpoolError> {
        let done = self.submit(entries, Some(&mut coming));
        drop(coming);
        self.stored(entries, committed(done.await))
    }

    /// Keeps durable `entries` for their first read; passes `result` on.
    fn stored(&self, entries: &[Entry], result: Result<(), SpoolError>) -> Result<(), SpoolError> {
        if result.is_ok() {
            for entry in entries {
                if let Some(id) = QueueId::parse(&entry.id) {
                    self.fresh.keep(id, entry);
                }
            }
        }
        result
    }

    /// The entry stored for `queued` a moment ago, taken from memory (not blocking), when it
    /// is still queued and was kept; else None, and [`Spool::load`] reads it.
    pub fn take_fresh(&self, queued: &Queued) -> Option<Entry> {
        let entry = self.fresh.take(&queued.id)?;
        self.is_queued(&entry.id).then_some(entry)
    }

    /// How many syncs the writer has made.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Marks a delivered (or given-up) entry done. A crash before this re-delivers it.
    pub fn remove(&self, id: &str) {
        let Some(id) = QueueId::parse(id) else {
            return;
        };
        let mut index = self.index.lock().expect("index lock");
        if let Some(at) = index.location.remove(&id) {
            index.retire(id, at.segment);
        }
    }

    /// Deletes a queued entry for good (`remailer queue delete`); false when no entry has
    /// this id. A delivery attempt already under way is not interrupted.
    pub fn delete(&self, id: &str) -> bool {
        let Some(id) = QueueId::parse(id) else {
            return false;
        };
        let mut index = self.index.lock().expect("index lock");
        let Some(at) = index.location.remove(&id) else {
            return false;
        };
        index.deleted.insert(id);
        index.retire(id, at.segment);
        drop(index);
        self.fresh.take(&id);
        tracing::info!(queue_id = %id, "deleted from the queue by the operator");
        true
    }

    /// Whether `id` is still queued (not delivered, given up or deleted).
    pub fn is_queued(&self, id: &str) -> bool {
        QueueId::parse(id).is_some_and(|id| {
            self.index
                .lock()
                .expect("index lock")
                .location
                .contains_key(&id)
        })
    }

    /// Persists the entry's latest attempt (the last of `entry.history`, which holds every
    /// attempt). When its segment is no longer the active one, the entry is moved forward
    /// instead ([`Spool::relocate`]), its whole history in the new copy's header. True when
    /// it moved (the record then carries every attempt; see [`Queued::recent`]).
    pub async fn note_attempt(&self, entry: &Entry) -> Result<bool, SpoolError> {
        if self.relocate(entry).await? {
            return Ok(true);
        }
        let Some(last) = entry.history.last() else {
            return Ok(false);
        };
        let Some(id) = QueueId::parse(&entry.id) else {
            return Ok(false);
        };
        let line = retry::encode(&entry.id, last, &self.keys);
        let mut index = self.index.lock().expect("index lock");
        let Some(at) = index.location.get(&id).copied() else {
            return Ok(false); // delivered or deleted meanwhile
        };
        index
            .append_retry(at.segment, &line)
            .map_err(io_err(&retry_path(&index.dir, at.segment)))?;
        Ok(false)
    }

    /// Copies a waiting entry (with its history) forward when its segment is no longer the
    /// active one, so old segments can be deleted while messages wait for retries. True when
    /// it moved.
    pub async fn relocate(&self, entry: &Entry) -> Result<bool, SpoolError> {
        let Some(id) = QueueId::parse(&entry.id) else {
            return Ok(false);
        };
        let old = {
            let index = self.index.lock().expect("index lock");
            match index.location.get(&id) {
                Some(at) if index.segments.get(&at.segment).is_some_and(|s| s.sealed) => at.segment,
                _ => return Ok(false),
            }
        };
        self.store_async(std::slice::from_ref(entry)).await?;
        let mut index = self.index.lock().expect("index lock");
        if !index.deleted.contains(&id) {
            // (a delete meanwhile already retired the old copy)
            index.retire(id, old);
        }
        Ok(true)
    }

    /// Deletes `id` while no `serve` runs (it holds the spool lock; then the control socket
    /// is the way): marks every copy done. False when no entry has this id.
    pub fn delete_offline(dir: &Path, keys: &Keys, id: &str) -> Result<bool, SpoolError> {
        let _lock = lock(dir)?;
        let mut found = false;
        for (n, path) in segments(dir)? {
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            if read_done(dir, n).contains(id) {
                continue;
            }
            if record::decode_all(&bytes, keys)
                .0
                .iter()
                .any(|e| e.id == id)
            {
                let done = done_path(dir, n);
                append(&mut None, &done, format!("{id}\n").as_bytes()).map_err(io_err(&done))?;
                found = true;
            }
        }
        Ok(found)
    }

    /// Reads what is queued without changing anything (for `remailer queue list`, also while
    /// the service runs).
    pub fn inspect(dir: &Path, keys: &Keys) -> Result<Vec<Entry>, SpoolError> {
        let mut live: BTreeMap<String, Entry> = BTreeMap::new();
        let mut histories = HashMap::new();
        let errors = crate::intern::Interner::new(retry::ERRORS_MAX);
        for (n, path) in segments(dir)? {
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let done = read_done(dir, n);
            retry::read(&retry_path(dir, n), keys, &mut histories, &errors);
            for e in record::decode_all(&bytes, keys).0 {
                if done.contains(&e.id) {
                    live.remove(&e.id);
                } else {
                    live.insert(e.id.clone(), e);
                }
            }
        }
        let mut entries: Vec<Entry> = live.into_values().collect();
        attach_histories(&mut entries, histories);
        Ok(entries)
    }
}

/// The writer's answer to a store request.
fn committed(
    answer: Result<Result<(), String>, oneshot::error::RecvError>,
) -> Result<(), SpoolError> {
    match answer {
        Ok(result) => result.map_err(SpoolError::Write),
        Err(_) => Err(SpoolError::Write("the spool writer stopped".into())),
    }
}

fn lock(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // An exclusive advisory lock (flock on Unix), held for as long as `file` is open.
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(SpoolError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix("seg-")?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

fn read_done(dir: &Path, n: u64) -> HashSet<String> {
    fs::read_to_string(done_path(dir, n))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn create_segment(dir: &Path, n: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(file)
}

/// Reads every segment back, one record at a time: what is queued (later copies win), the
/// index, the last segment number.
fn recover(dir: &Path, keys: &Keys) -> Result<(Vec<Recovered>, Index, u64), SpoolError> {
    let found = segments(dir)?;
    let last = found.last().map(|(n, _)| *n).unwrap_or(0);
    let mut latest: HashMap<QueueId, (Loc, Recovered)> = HashMap::new();
    // Copies not marked done where they are that recovery does not hand back: one
    // superseded by a later copy, or one whose id a later segment marked done.
    let mut stale: Vec<(QueueId, u64)> = Vec::new();
    let mut unreadable = 0usize;
    let errors = crate::intern::Interner::new(retry::ERRORS_MAX);
    let domains = crate::intern::Interner::new(usize::MAX);
    for (n, path) in &found {
        // A retry line is written to the segment that holds the entry's live copy, and a
        // copy moved forward carries its history: each segment's lines are read with it,
        // for the entries whose latest copy is there.
        let mut histories = HashMap::new();
        retry::read(&retry_path(dir, *n), keys, &mut histories, &errors);
        let done = read_done(dir, *n);
        let valid = record::scan(path, keys, |e, offset, len| {
            let Some(queued) = Queued::of(&e) else {
                unreadable += 1;
                return;
            };
            let id = queued.id;
            if done.contains(&e.id) {
                if let Some((old, _)) = latest.remove(&id) {
                    stale.push((id, old.segment));
                }
                return;
            }
            let at = Loc {
                segment: *n,
                offset,
                len,
            };
            let rcpt_domain = domains.intern(&rcpt_domain(&e.envelope.rcpt));
            let found = Recovered {
                queued,
                rcpt_domain,
            };
            if let Some((old, _)) = latest.insert(id, (at, found)) {
                stale.push((id, old.segment));
            }
        })
        .map_err(io_err(path))?;
        cut_torn_end(path, *n, valid)?;
        for (id, lines) in histories {
            if let Some((at, r)) = latest.get_mut(&id) {
                if at.segment == *n {
                    add_recent(&mut r.queued, lines);
                }
            }
        }
    }
    drop(domains);
    if unreadable > 0 {
        tracing::error!(
            records = unreadable,
            "spool records with an id that is not a queue id were left alone"
        );
    }
    let mut index = Index {
        dir: dir.to_path_buf(),
        location: HashMap::new(),
        segments: BTreeMap::new(),
        deleted: HashSet::new(),
    };
    for (n, _) in &found {
        index.segments.insert(
            *n,
            Segment {
                sealed: true,
                ..Segment::default()
            },
        );
    }
    // Marked done, or deleting the later segment (once all its records are done) would
    // bring the stale copy back at the next start.
    // A mark is by id and segment: never for the segment that holds the live copy (a record
    // written twice into one segment has its live copy there too).
    for (id, segment) in stale {
        if latest.get(&id).map(|(at, _)| at.segment) != Some(segment) {
            index.mark_done(id.as_str(), segment);
        }
    }
    let mut queued = Vec::with_capacity(latest.len());
    for (id, (at, r)) in latest {
        index.add(id, at);
        queued.push(r);
    }
    for (n, _) in &found {
        index.collect(*n);
    }
    queued.sort_by_key(|r| r.queued.id);
    Ok((queued, index, last))
}

/// Cuts a segment to its valid prefix when it ends in a torn record.
fn cut_torn_end(path: &Path, n: u64, valid: u64) -> Result<(), SpoolError> {
    let size = fs::metadata(path).map_err(io_err(path))?.len();
    if valid >= size {
        return Ok(());
    }
    tracing::warn!(
        segment = n,
        cut = size - valid,
        "spool segment ends in a torn record; cutting it off"
    );
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(valid)
        .and_then(|_| f.sync_all())
        .map_err(io_err(path))
}

/// Adds to `q` the retry lines found for it that its record does not carry.
fn add_recent(q: &mut Queued, mut lines: Vec<retry::Attempt>) {
    let carried = q.last.map_or(0, |(n, _)| n);
    lines.retain(|a| a.n > carried);
    retry::normalise(&mut lines);
    if let Some(a) = lines.last() {
        q.last = Some((a.n, a.next_ms));
    }
    q.recent = Recent::from(lines);
}

/// Gives each entry the attempts persisted for it besides those its record carries, in order.
fn attach_histories(entries: &mut [Entry], mut histories: HashMap<QueueId, Vec<retry::Attempt>>) {
    for e in entries {
        if let Some(h) = QueueId::parse(&e.id).and_then(|id| histories.remove(&id)) {
            e.history.extend(h);
            retry::normalise(&mut e.history);
        }
    }
}

#[cfg(test)]
mod tests;
