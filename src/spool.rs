//! `spool`: the durable queue, one file per delivery (message × recipient), Postfix style.
//!
//! A message is written to `tmp/`, fsynced, renamed into `queue/`, and the `queue/`
//! directory is fsynced; only then does the SMTP client get its `250`. A crash at any point
//! loses nothing that was acknowledged; a file left in `tmp/` was never acknowledged and is
//! removed at start. Delivery deletes the file after the destination accepted it (at-least-
//! once: a crash between the two re-delivers). The envelope line, which holds the recipient's
//! real address, is sealed with the service key, so the spool shows no address in clear.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::{random_hex, Keys};

const MAGIC: &str = "remailer-spool-1";

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool file {0} is corrupt")]
    Corrupt(String),
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
}

/// A queued delivery.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub envelope: Envelope,
    pub message: Arc<Vec<u8>>,
}

pub struct Spool {
    queue: PathBuf,
    tmp: PathBuf,
    keys: Arc<Keys>,
}

impl Spool {
    /// Opens `DIR/queue` and `DIR/tmp`, creating them, and removes unacknowledged leftovers.
    pub fn open(dir: &Path, keys: Arc<Keys>) -> Result<Self, SpoolError> {
        let queue = dir.join("queue");
        let tmp = dir.join("tmp");
        for d in [&queue, &tmp] {
            fs::create_dir_all(d).map_err(|source| SpoolError::Io {
                path: d.clone(),
                source,
            })?;
        }
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Spool { queue, tmp, keys })
    }

    /// A new queue id: time-ordered and unique.
    pub fn new_id() -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{ms:012x}{}", random_hex(6))
    }

    /// Makes the entries durable (blocking: call from `spawn_blocking`). When it returns Ok,
    /// every entry is on disk and in the queue directory.
    pub fn store(&self, entries: &[Entry]) -> Result<(), SpoolError> {
        for entry in entries {
            let tmp = self.tmp.join(&entry.id);
            let io = |source| SpoolError::Io {
                path: tmp.clone(),
                source,
            };
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&self.header(&entry.envelope)).map_err(io)?;
            f.write_all(&entry.message).map_err(io)?;
            f.sync_data().map_err(io)?;
            fs::rename(&tmp, self.queue.join(&entry.id)).map_err(io)?;
        }
        sync_dir(&self.queue)
    }

    fn header(&self, envelope: &Envelope) -> Vec<u8> {
        let json = serde_json::to_vec(envelope).expect("envelope serialises");
        let sealed = base64::engine::general_purpose::STANDARD.encode(self.keys.seal(&json));
        format!("{MAGIC} {sealed}\n").into_bytes()
    }

    /// Reads one queued entry.
    pub fn load(&self, id: &str) -> Result<Entry, SpoolError> {
        let path = self.queue.join(id);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
        let corrupt = || SpoolError::Corrupt(id.to_string());
        let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(corrupt)?;
        let line = std::str::from_utf8(&bytes[..nl]).map_err(|_| corrupt())?;
        let sealed = line
            .strip_prefix(MAGIC)
            .map(str::trim)
            .ok_or_else(corrupt)?;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| corrupt())?;
        let json = self.keys.open(&sealed).map_err(|_| corrupt())?;
        let envelope = serde_json::from_slice(&json).map_err(|_| corrupt())?;
        bytes.drain(..=nl);
        Ok(Entry {
            id: id.to_string(),
            envelope,
            message: Arc::new(bytes),
        })
    }

    /// The ids of every queued entry, oldest first.
    pub fn ids(&self) -> Result<Vec<String>, SpoolError> {
        let rd = fs::read_dir(&self.queue).map_err(|source| SpoolError::Io {
            path: self.queue.clone(),
            source,
        })?;
        let mut ids: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes a delivered (or given-up) entry. A crash before this re-delivers it.
    pub fn remove(&self, id: &str) {
        if let Err(e) = fs::remove_file(self.queue.join(id)) {
            tracing::warn!(queue_id = id, error = %e, "could not remove delivered spool file");
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_entries_survive_reopen_and_hide_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(Keys::from_master([9; 32]));
        let spool = Spool::open(dir.path(), keys.clone()).unwrap();
        let entry = Entry {
            id: Spool::new_id(),
            envelope: Envelope {
                kind: Kind::Remail,
                mail_from: "b+1.2.3.abcd@remailer.test".into(),
                rcpt: "ann@mail.example".into(),
                recipient_alias: Some("ann@remailer.test".into()),
                sender_id: Some(1),
                created: 1,
            },
            message: Arc::new(b"Subject: hi\r\n\r\nbody\r\n".to_vec()),
        };
        spool.store(std::slice::from_ref(&entry)).unwrap();
        fs::write(dir.path().join("tmp/leftover"), b"half").unwrap();

        let spool = Spool::open(dir.path(), keys).unwrap();
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
        assert_eq!(spool.ids().unwrap(), vec![entry.id.clone()]);
        let raw = fs::read(dir.path().join("queue").join(&entry.id)).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("ann@mail.example"));
        let back = spool.load(&entry.id).unwrap();
        assert_eq!(back.envelope.rcpt, "ann@mail.example");
        assert_eq!(&back.message[..], &entry.message[..]);
        spool.remove(&entry.id);
        assert!(spool.ids().unwrap().is_empty());
    }

    #[test]
    fn corrupt_files_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), Arc::new(Keys::from_master([9; 32]))).unwrap();
        fs::write(dir.path().join("queue/bad"), b"garbage\nmore").unwrap();
        assert!(matches!(spool.load("bad"), Err(SpoolError::Corrupt(_))));
    }
}
