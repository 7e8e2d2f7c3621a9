//! The on-disk framing of one spool record. The magic is the format version.
//!
//! `RSP2` (written): `"RSP2" | sealed length u32 | CRC-32 of sealed | sealed`, where `sealed`
//! is the whole record sealed with the service key (XChaCha20-Poly1305, [`Keys::seal`]):
//! `header length u32 | header | message`. Nothing of a record is in clear on disk: not the
//! recipient, not the message's own headers (a notice's `To:` is a member's real address).
//!
//! `RSP1` (read only, spools written before `RSP2`): `"RSP1" | header length u32 | body
//! length u32 | CRC-32 of header and body | header | body`, where only the header is sealed.
//!
//! Integers are little-endian; the header is the JSON `{id, envelope, history}` (`history`,
//! the attempts so far, only in a copy moved forward by [`super::Spool::relocate`]; older
//! readers ignore it). A torn or garbled record fails its length, CRC or seal check and ends
//! the log. [`scan`] reads a segment one record at a time, so recovery never holds more than
//! one message body.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::retry::Attempt;
use super::{Entry, Envelope};
use crate::keys::Keys;

const MAGIC_V1: &[u8; 4] = b"RSP1";
const MAGIC_V2: &[u8; 4] = b"RSP2";
const FIXED_V1: usize = 16;
const FIXED_V2: usize = 12;
/// No record header is this large; a larger length means garbage.
const MAX_HEADER: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    envelope: Envelope,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<Attempt>,
}

fn header_json(entry: &Entry) -> Vec<u8> {
    serde_json::to_vec(&Header {
        id: entry.id.clone(),
        envelope: entry.envelope.clone(),
        history: entry.history.clone(),
    })
    .expect("a header serialises")
}

/// Appends the framed, sealed record for `entry` to `out`.
pub fn encode(entry: &Entry, keys: &Keys, out: &mut Vec<u8>) {
    let json = header_json(entry);
    let mut plain = Vec::with_capacity(4 + json.len() + entry.message.len());
    plain.extend_from_slice(&(json.len() as u32).to_le_bytes());
    plain.extend_from_slice(&json);
    plain.extend_from_slice(&entry.message);
    let sealed = keys.seal(&plain);
    out.extend_from_slice(MAGIC_V2);
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&sealed).to_le_bytes());
    out.extend_from_slice(&sealed);
}

/// Appends `entry` in the old `RSP1` framing (header sealed, message in clear): what spools
/// written before `RSP2` hold, for the tests and fuzz targets that read such spools.
#[doc(hidden)]
pub fn encode_v1(entry: &Entry, keys: &Keys, out: &mut Vec<u8>) {
    let header = keys.seal(&header_json(entry));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(&entry.message);
    out.extend_from_slice(MAGIC_V1);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&(entry.message.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&entry.message);
}

/// What decoding the record at the front of `bytes` gave.
pub enum Decoded {
    /// A whole, valid record, and its length in bytes.
    Record(Box<Entry>, usize),
    /// The bytes end in the middle of a record, or it is corrupt: the log ends here.
    End,
}

fn u32_at(bytes: &[u8], i: usize) -> usize {
    u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes")) as usize
}

pub fn decode(bytes: &[u8], keys: &Keys) -> Decoded {
    match bytes.get(..4) {
        Some(m) if m == MAGIC_V2 => decode_v2(bytes, keys),
        Some(m) if m == MAGIC_V1 => decode_v1(bytes, keys),
        _ => Decoded::End,
    }
}

fn decode_v2(bytes: &[u8], keys: &Keys) -> Decoded {
    if bytes.len() < FIXED_V2 {
        return Decoded::End;
    }
    let (sealed_len, crc) = (u32_at(bytes, 4), u32_at(bytes, 8) as u32);
    let total = FIXED_V2 + sealed_len;
    if bytes.len() < total {
        return Decoded::End;
    }
    let sealed = &bytes[FIXED_V2..total];
    if crc32fast::hash(sealed) != crc {
        return Decoded::End;
    }
    let Ok(plain) = keys.open(sealed) else {
        return Decoded::End;
    };
    if plain.len() < 4 {
        return Decoded::End;
    }
    let header_len = u32_at(&plain, 0);
    if header_len > MAX_HEADER || plain.len() < 4 + header_len {
        return Decoded::End;
    }
    let (header, body) = plain[4..].split_at(header_len);
    match entry(header, body) {
        Some(e) => Decoded::Record(Box::new(e), total),
        None => Decoded::End,
    }
}

fn decode_v1(bytes: &[u8], keys: &Keys) -> Decoded {
    if bytes.len() < FIXED_V1 {
        return Decoded::End;
    }
    let (header_len, body_len) = (u32_at(bytes, 4), u32_at(bytes, 8));
    let crc = u32_at(bytes, 12) as u32;
    let total = FIXED_V1 + header_len + body_len;
    if header_len > MAX_HEADER || bytes.len() < total {
        return Decoded::End;
    }
    let header = &bytes[FIXED_V1..FIXED_V1 + header_len];
    let body = &bytes[FIXED_V1 + header_len..total];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(body);
    if hasher.finalize() != crc {
        return Decoded::End;
    }
    let Ok(json) = keys.open(header) else {
        return Decoded::End;
    };
    match entry(&json, body) {
        Some(e) => Decoded::Record(Box::new(e), total),
        None => Decoded::End,
    }
}

/// The entry of a header's JSON and a message body, if the JSON is a record header.
fn entry(json: &[u8], body: &[u8]) -> Option<Entry> {
    let h = serde_json::from_slice::<Header>(json).ok()?;
    Some(Entry {
        id: h.id,
        envelope: h.envelope,
        message: std::sync::Arc::new(body.to_vec()),
        history: h.history,
    })
}

/// Reads every valid record of a segment; returns them and the length of the valid prefix.
pub fn decode_all(bytes: &[u8], keys: &Keys) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Decoded::Record(entry, len) = decode(&bytes[at..], keys) {
        entries.push(*entry);
        at += len;
    }
    (entries, at)
}

/// How many bytes the record whose fixed part starts `fixed` takes in all (None: not a
/// record header, or a length no record has).
fn record_len(fixed: &[u8]) -> Option<usize> {
    match fixed.get(..4)? {
        m if m == MAGIC_V2 => Some(FIXED_V2 + u32_at(fixed, 4)),
        m if m == MAGIC_V1 && fixed.len() >= FIXED_V1 => {
            let header_len = u32_at(fixed, 4);
            (header_len <= MAX_HEADER).then(|| FIXED_V1 + header_len + u32_at(fixed, 8))
        }
        _ => None,
    }
}

/// Largest record [`scan`] reads (a record is one message: intake limits it far below).
const MAX_RECORD: usize = 1 << 30;

/// Reads the segment at `path` record by record, calling `each(entry, offset, length)` for
/// every valid one; returns the length of the valid prefix. Only one record is in memory at
/// a time.
pub fn scan(
    path: &Path,
    keys: &Keys,
    mut each: impl FnMut(Entry, u64, u32),
) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut at = 0u64;
    let mut buf = Vec::new();
    loop {
        let left = size - at;
        let mut fixed = [0u8; FIXED_V1];
        let fixed_len = if left >= FIXED_V1 as u64 {
            FIXED_V1
        } else {
            FIXED_V2
        };
        if left < fixed_len as u64 || reader.read_exact(&mut fixed[..fixed_len]).is_err() {
            return Ok(at);
        }
        let Some(total) = record_len(&fixed[..fixed_len]) else {
            return Ok(at);
        };
        if total < fixed_len || total > MAX_RECORD || total as u64 > left {
            return Ok(at);
        }
        buf.clear();
        buf.extend_from_slice(&fixed[..fixed_len]);
        buf.resize(total, 0);
        if reader.read_exact(&mut buf[fixed_len..]).is_err() {
            return Ok(at);
        }
        match decode(&buf, keys) {
            Decoded::Record(entry, len) if len == total => each(*entry, at, total as u32),
            _ => return Ok(at),
        }
        at += total as u64;
    }
}
