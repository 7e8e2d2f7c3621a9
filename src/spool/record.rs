//! The on-disk framing of one spool record:
//! `"RSP1" | header length u32 | body length u32 | CRC-32 of header and body | header | body`,
//! integers little-endian. The header is the sealed (encrypted) `{id, envelope}`, the body
//! the message. A torn or garbled record fails its length or CRC check and ends the log.

use serde::{Deserialize, Serialize};

use super::{Entry, Envelope};
use crate::keys::Keys;

const MAGIC: &[u8; 4] = b"RSP1";
const FIXED: usize = 16;
/// No record header is this large; a larger length means garbage.
const MAX_HEADER: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    envelope: Envelope,
}

/// Appends the framed record for `entry` to `out`.
pub fn encode(entry: &Entry, keys: &Keys, out: &mut Vec<u8>) {
    let json = serde_json::to_vec(&Header {
        id: entry.id.clone(),
        envelope: entry.envelope.clone(),
    })
    .expect("a header serialises");
    let header = keys.seal(&json);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(&entry.message);
    out.extend_from_slice(MAGIC);
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

pub fn decode(bytes: &[u8], keys: &Keys) -> Decoded {
    if bytes.len() < FIXED || &bytes[..4] != MAGIC {
        return Decoded::End;
    }
    let u32_at =
        |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes")) as usize;
    let (header_len, body_len, crc) = (u32_at(4), u32_at(8), u32_at(12) as u32);
    let total = FIXED + header_len + body_len;
    if header_len > MAX_HEADER || bytes.len() < total {
        return Decoded::End;
    }
    let header = &bytes[FIXED..FIXED + header_len];
    let body = &bytes[FIXED + header_len..total];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(body);
    if hasher.finalize() != crc {
        return Decoded::End;
    }
    let Some(h) = keys
        .open(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<Header>(&json).ok())
    else {
        return Decoded::End;
    };
    let entry = Entry {
        id: h.id,
        envelope: h.envelope,
        message: std::sync::Arc::new(body.to_vec()),
        history: Vec::new(),
    };
    Decoded::Record(Box::new(entry), total)
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
