//! The spool recovery target: the fuzz input is read as a recipe for a spool directory
//! (segment files made of valid records in both formats, torn records, flipped bytes, records sealed under
//! another key, sealed non-JSON headers and raw garbage; `.done` files; stray files), which
//! is written to a fresh directory and opened with [`Spool::open`].
//!
//! Invariants: opening never fails or panics on such a directory; exactly the records a
//! model of the log says are live come back (the valid prefix of each segment, later copies
//! winning, done ids removed), byte for byte; every segment is cut to its valid prefix;
//! reopening gives the same entries again (recovery is idempotent); and a message stored
//! after recovery comes back with them on the next open.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use super::MASTER;
use crate::keys::Keys;
use crate::spool::{record, Entry, Envelope, Kind, Spool};

static SPOOL_KEYS: LazyLock<Arc<Keys>> = LazyLock::new(|| Arc::new(Keys::from_master(MASTER)));
static OTHER_KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::from_master([8; 32]));

/// Ids are drawn from a small set so that copies and done marks collide.
const IDS: &[&str] = &[
    "0000000000010aa",
    "0000000000020bb",
    "0000000000030cc",
    "0000000000040dd",
    "00000000000500",
    "zz",
    "a\rb",
    "",
];

/// Reads the recipe; past the end every read is zero.
struct Recipe<'a> {
    data: &'a [u8],
}

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }

    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = (self.byte() as usize).min(max).min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }

    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// One segment as the recipe built it, and what the model says about it.
#[derive(Default)]
struct Segment {
    bytes: Vec<u8>,
    /// The valid records at the front, in order; after the first bad chunk nothing counts.
    valid: Vec<Entry>,
    valid_len: usize,
    broken: bool,
    done: Vec<String>,
}

fn entry(r: &mut Recipe) -> Entry {
    let id = IDS[r.byte() as usize % IDS.len()].to_string();
    let flags = r.byte();
    let envelope = Envelope {
        kind: if flags & 1 == 0 {
            Kind::Remail
        } else {
            Kind::Notice
        },
        mail_from: r.text(40),
        rcpt: r.text(40),
        recipient_alias: (flags & 2 != 0).then(|| r.text(20)),
        sender_id: (flags & 4 != 0).then(|| i64::from(r.byte()) - 128),
        created: i64::from_le_bytes([r.byte(), r.byte(), 0, 0, 0, 0, 0, r.byte()]),
        release_ms: None,
    };
    Entry {
        id,
        envelope,
        message: Arc::new(r.bytes(255).to_vec()),
        history: Vec::new(),
    }
}

/// An `RSP1` record whose framing (and CRC) is right around an arbitrary sealed `header`.
fn framed(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.update(body);
    let mut out = b"RSP1".to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

fn build_segment(r: &mut Recipe) -> Segment {
    let mut seg = Segment::default();
    let chunks = r.byte() % 6;
    for _ in 0..chunks {
        let op = r.byte() % 7;
        let bad = match op {
            0 | 1 => {
                let e = entry(r);
                // Both formats: RSP2 (all sealed) and RSP1 (spools from before it).
                if op == 0 {
                    record::encode(&e, &SPOOL_KEYS, &mut seg.bytes);
                } else {
                    record::encode_v1(&e, &SPOOL_KEYS, &mut seg.bytes);
                }
                if !seg.broken {
                    seg.valid.push(e);
                }
                false
            }
            2 => {
                // A torn write is only ever the last thing in a segment (nothing follows it:
                // the bytes after it could complete it again).
                let mut rec = Vec::new();
                record::encode(&entry(r), &SPOOL_KEYS, &mut rec);
                let cut = 1 + r.byte() as usize % rec.len();
                seg.bytes.extend_from_slice(&rec[..rec.len() - cut]);
                seg.broken = true;
                break;
            }
            3 => {
                let mut rec = Vec::new();
                record::encode(&entry(r), &SPOOL_KEYS, &mut rec);
                let at = usize::from(r.byte()) * 7 % rec.len();
                rec[at] ^= r.byte() | 1;
                seg.bytes.extend_from_slice(&rec);
                true
            }
            4 => {
                let mut rec = Vec::new();
                record::encode(&entry(r), &OTHER_KEYS, &mut rec);
                seg.bytes.extend_from_slice(&rec);
                true
            }
            5 => {
                let json = r.bytes(80).to_vec();
                let body = r.bytes(40).to_vec();
                seg.bytes
                    .extend_from_slice(&framed(&SPOOL_KEYS.seal(&json), &body));
                // Only an object or an array can deserialise into a record header.
                !serde_json::from_slice::<serde_json::Value>(&json)
                    .is_ok_and(|v| v.is_object() || v.is_array())
            }
            _ => {
                let garbage = r.bytes(64).to_vec();
                seg.bytes.extend_from_slice(&garbage);
                !garbage.is_empty()
            }
        };
        if op == 5 && !bad && !seg.broken {
            // A sealed header that may or may not be a record: only the real decoder knows.
            seg.broken = true;
            seg.valid_len = usize::MAX;
        }
        if bad {
            seg.broken = true;
        }
        if !seg.broken {
            seg.valid_len = seg.bytes.len();
        }
    }
    let marks = r.byte() % 4;
    for _ in 0..marks {
        match r.byte() % 3 {
            0 => seg.done.push(r.text(20)),
            _ => seg
                .done
                .push(IDS[r.byte() as usize % IDS.len()].to_string()),
        }
    }
    seg
}

/// A fresh, empty directory for one run: in `/dev/shm` when there is one (the spool syncs
/// every file it creates; a memory file system makes that cheap), else under `TMPDIR`.
fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "remailer-fuzz-spool-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn seg_path(dir: &Path, n: u64, ext: &str) -> PathBuf {
    dir.join(format!("seg-{n:08}.{ext}"))
}

/// Live entries by id after reading every segment in order, as `recover` must find them.
/// `None` when a segment's valid prefix is not known (an ambiguous sealed header).
fn model(segments: &BTreeMap<u64, Segment>) -> Option<BTreeMap<String, Entry>> {
    let mut live = BTreeMap::new();
    for seg in segments.values() {
        if seg.valid_len == usize::MAX {
            return None;
        }
        for e in &seg.valid {
            let done = seg.done.iter().any(|d| done_line_matches(d, &e.id));
            if done {
                live.remove(&e.id);
            } else {
                live.insert(e.id.clone(), e.clone());
            }
        }
    }
    Some(live)
}

/// A `.done` file is read line by line (`str::lines`, which also strips a `\r` before the
/// `\n`); a written id matches when one of its lines is `id`.
fn done_line_matches(written: &str, id: &str) -> bool {
    format!("{written}\n").lines().any(|l| l == id)
}

fn same(a: &Entry, b: &Entry) -> bool {
    a.id == b.id
        && a.message == b.message
        && serde_json::to_value(&a.envelope).ok() == serde_json::to_value(&b.envelope).ok()
}

fn assert_entries(got: &[Entry], want: &BTreeMap<String, Entry>, when: &str) {
    assert_eq!(
        got.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        "{when}: recovered ids differ from the model"
    );
    for e in got {
        assert!(same(e, &want[&e.id]), "{when}: entry {:?} differs", e.id);
    }
}

/// The spool recovery target (see the module documentation).
pub fn spool_recovery(data: &[u8]) {
    let mut r = Recipe { data };
    let mut segments = BTreeMap::new();
    let count = 1 + r.byte() % 4;
    let mut number = 0u64;
    for _ in 0..count {
        number += 1 + u64::from(r.byte() % 3);
        segments.insert(number, build_segment(&mut r));
        if r.is_empty() {
            break;
        }
    }
    let dir = scratch_dir();
    for (n, seg) in &segments {
        fs::write(seg_path(&dir, *n, "log"), &seg.bytes).expect("write segment");
        if !seg.done.is_empty() {
            let lines: String = seg.done.iter().map(|d| format!("{d}\n")).collect();
            fs::write(seg_path(&dir, *n, "done"), lines).expect("write done");
        }
    }
    let stray = r.byte();
    if stray & 1 != 0 {
        fs::write(dir.join("seg-x.log"), b"RSP1junk").expect("stray file");
    }
    if stray & 2 != 0 {
        fs::write(seg_path(&dir, 0, "done"), b"zz\n").expect("stray done");
    }
    check(&dir, &segments);
    let _ = fs::remove_dir_all(&dir);
}

fn check(dir: &Path, segments: &BTreeMap<u64, Segment>) {
    let want = model(segments);
    let spool = Spool::open(dir, SPOOL_KEYS.clone()).expect("a spool with damaged segments opens");
    let first = spool.take_recovered();
    if let Some(want) = &want {
        assert_entries(&first, want, "first open");
        for (n, seg) in segments {
            if let Ok(meta) = fs::metadata(seg_path(dir, *n, "log")) {
                assert_eq!(
                    meta.len(),
                    seg.valid_len as u64,
                    "segment {n} was not cut to its valid prefix"
                );
            }
        }
    }
    let again: BTreeMap<String, Entry> = first.iter().map(|e| (e.id.clone(), e.clone())).collect();
    drop(spool);
    let spool = Spool::open(dir, SPOOL_KEYS.clone()).expect("reopen");
    assert_entries(&spool.take_recovered(), &again, "second open");
    let new = Entry {
        id: "ffffffffffff00".into(),
        envelope: Envelope {
            kind: Kind::Remail,
            mail_from: String::new(),
            rcpt: "new@mail.example".into(),
            recipient_alias: None,
            sender_id: None,
            created: 0,
            release_ms: None,
        },
        message: Arc::new(b"Subject: new\r\n\r\nnew\r\n".to_vec()),
        history: Vec::new(),
    };
    spool
        .store(std::slice::from_ref(&new))
        .expect("store after recovery");
    drop(spool);
    let mut want = again;
    want.insert(new.id.clone(), new);
    let spool = Spool::open(dir, SPOOL_KEYS.clone()).expect("reopen after store");
    assert_entries(&spool.take_recovered(), &want, "after a store");
}
