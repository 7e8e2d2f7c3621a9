//! TIFF: the file is rebuilt from an allowlist of the tags that describe the image (size,
//! sample layout, compression, colour, resolution, orientation, strips or tiles, ICC
//! profile), each page's image data copied byte for byte. Everything else goes: the Exif,
//! GPS and Interoperability IFDs, XMP (700), IPTC (33723), Photoshop (34377), Artist,
//! Copyright, HostComputer, Make, Model, Software, DateTime, ImageDescription, DocumentName,
//! PageName, SubIFDs (reduced images), and every private tag. Only what the new IFDs point
//! at is written, so no removed value stays behind in unreferenced bytes.
//!
//! Bounded: at most [`MAX_PAGES`] IFDs, no IFD read twice, every offset checked against the
//! file, and at most twice the input written (a file that points many strips at the same
//! bytes is refused). BigTIFF and old-style JPEG compression (6) are refused.

use std::collections::HashSet;

const BROKEN: &str = "the TIFF structure is broken or truncated";

/// IFDs (pages) followed at most.
const MAX_PAGES: usize = 256;

/// Tags that stay (TIFF 6.0 baseline and extensions that change what is shown).
const KEEP: &[u16] = &[
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 282,
    283, 284, 290, 291, 292, 293, 296, 297, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 332,
    334, 336, 338, 339, 340, 341, 342, 347, 529, 530, 531, 532, 34675,
];

const STRIP_OFFSETS: u16 = 273;
const STRIP_BYTE_COUNTS: u16 = 279;
const TILE_OFFSETS: u16 = 324;
const TILE_BYTE_COUNTS: u16 = 325;
const COMPRESSION: u16 = 259;
const TYPE_SHORT: u16 = 3;
const TYPE_LONG: u16 = 4;

pub fn is_tiff(d: &[u8]) -> bool {
    d.starts_with(b"II*\0")
        || d.starts_with(b"MM\0*")
        || d.starts_with(b"II+\0")
        || d.starts_with(b"MM\0+")
}

struct Input<'a> {
    d: &'a [u8],
    le: bool,
}

impl Input<'_> {
    fn bytes(&self, at: usize, len: usize) -> Result<&[u8], &'static str> {
        let end = at.checked_add(len).ok_or(BROKEN)?;
        self.d.get(at..end).ok_or(BROKEN)
    }

    fn u16(&self, at: usize) -> Result<u16, &'static str> {
        let b = self.bytes(at, 2)?;
        Ok(if self.le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    fn u32(&self, at: usize) -> Result<u32, &'static str> {
        let b: [u8; 4] = self.bytes(at, 4)?.try_into().map_err(|_| BROKEN)?;
        Ok(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn put_u16(&self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        });
    }

    fn put_u32(&self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        });
    }

    fn patch_u32(&self, out: &mut [u8], at: usize, v: u32) {
        let b = if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        out[at..at + 4].copy_from_slice(&b);
    }
}

/// One kept IFD entry: its value bytes in the file's byte order.
struct Entry {
    tag: u16,
    typ: u16,
    count: u32,
    value: Vec<u8>,
}

fn type_size(typ: u16) -> Result<usize, &'static str> {
    Ok(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 => 8,
        _ => return Err(BROKEN),
    })
}

pub fn strip(d: &[u8]) -> Result<Vec<u8>, &'static str> {
    if d.get(2) == Some(&b'+') || d.get(3) == Some(&b'+') {
        return Err("BigTIFF files are not supported");
    }
    let input = Input {
        d,
        le: d.starts_with(b"II"),
    };
    let budget = d.len().saturating_mul(2).saturating_add(64 * 1024);
    let mut out = d[..4].to_vec();
    input.put_u32(&mut out, 0);
    let mut link = 4; // where the offset of the next IFD goes
    let mut seen = HashSet::new();
    let mut offset = input.u32(4)? as usize;
    while offset != 0 {
        if !seen.insert(offset) || seen.len() > MAX_PAGES {
            return Err(BROKEN);
        }
        let (entries, next) = read_ifd(&input, offset)?;
        let entries = relocate_data(&input, entries, &mut out, budget)?;
        link = write_ifd(&input, &entries, link, &mut out, budget)?;
        if out.len() > budget {
            return Err("the TIFF points at the same data many times");
        }
        offset = next as usize;
    }
    if seen.is_empty() {
        return Err(BROKEN);
    }
    Ok(out)
}

/// The kept entries of the IFD at `offset` and the offset of the next IFD.
fn read_ifd(input: &Input<'_>, offset: usize) -> Result<(Vec<Entry>, u32), &'static str> {
    let n = usize::from(input.u16(offset)?);
    let mut entries = Vec::with_capacity(n.min(KEEP.len()));
    for i in 0..n {
        let at = offset + 2 + 12 * i;
        let tag = input.u16(at)?;
        if !KEEP.contains(&tag) {
            continue;
        }
        let typ = input.u16(at + 2)?;
        let count = input.u32(at + 4)?;
        let size = type_size(typ)?
            .checked_mul(count as usize)
            .filter(|&s| s <= input.d.len())
            .ok_or(BROKEN)?;
        let value = if size <= 4 {
            input.bytes(at + 8, size)?
        } else {
            input.bytes(input.u32(at + 8)? as usize, size)?
        };
        if entries.iter().any(|e: &Entry| e.tag == tag) {
            return Err(BROKEN);
        }
        entries.push(Entry {
            tag,
            typ,
            count,
            value: value.to_vec(),
        });
    }
    let next = input.u32(offset + 2 + 12 * n)?;
    if let Some(c) = entries.iter().find(|e| e.tag == COMPRESSION) {
        if read_numbers(input, c)?.first() == Some(&6) {
            return Err("old-style JPEG TIFF files are not supported");
        }
    }
    entries.sort_by_key(|e| e.tag);
    Ok((entries, next))
}

/// The values of a SHORT or LONG entry.
fn read_numbers(input: &Input<'_>, e: &Entry) -> Result<Vec<u32>, &'static str> {
    let src = Input {
        d: &e.value,
        le: input.le,
    };
    match e.typ {
        TYPE_SHORT => (0..e.count as usize)
            .map(|i| src.u16(2 * i).map(u32::from))
            .collect(),
        TYPE_LONG => (0..e.count as usize).map(|i| src.u32(4 * i)).collect(),
        _ => Err(BROKEN),
    }
}

/// Copies the strips or tiles of one IFD into `out` and points its offsets entry at them.
fn relocate_data(
    input: &Input<'_>,
    mut entries: Vec<Entry>,
    out: &mut Vec<u8>,
    budget: usize,
) -> Result<Vec<Entry>, &'static str> {
    for (offsets_tag, counts_tag) in [
        (STRIP_OFFSETS, STRIP_BYTE_COUNTS),
        (TILE_OFFSETS, TILE_BYTE_COUNTS),
    ] {
        let Some(oi) = entries.iter().position(|e| e.tag == offsets_tag) else {
            continue;
        };
        let counts = entries.iter().find(|e| e.tag == counts_tag).ok_or(BROKEN)?;
        let counts = read_numbers(input, counts)?;
        let offsets = read_numbers(input, &entries[oi])?;
        if counts.len() != offsets.len() {
            return Err(BROKEN);
        }
        let mut new = Vec::with_capacity(offsets.len() * 4);
        for (&off, &len) in offsets.iter().zip(&counts) {
            let data = input.bytes(off as usize, len as usize)?;
            if out.len() + data.len() > budget {
                return Err("the TIFF points at the same data many times");
            }
            if !out.len().is_multiple_of(2) {
                out.push(0);
            }
            input.put_u32(&mut new, u32::try_from(out.len()).map_err(|_| BROKEN)?);
            out.extend_from_slice(data);
        }
        entries[oi] = Entry {
            tag: offsets_tag,
            typ: TYPE_LONG,
            count: offsets.len() as u32,
            value: new,
        };
    }
    Ok(entries)
}

/// Writes an IFD (entries, next-IFD link, then the values that do not fit in 4 bytes),
/// points `link` at it and returns where its own next-IFD link is.
fn write_ifd(
    input: &Input<'_>,
    entries: &[Entry],
    link: usize,
    out: &mut Vec<u8>,
    budget: usize,
) -> Result<usize, &'static str> {
    if !out.len().is_multiple_of(2) {
        out.push(0);
    }
    let start = out.len();
    let pos = |n: usize| u32::try_from(n).map_err(|_| BROKEN);
    input.patch_u32(out, link, pos(start)?);
    input.put_u16(out, entries.len() as u16);
    let mut pending = Vec::new();
    for e in entries {
        input.put_u16(out, e.tag);
        input.put_u16(out, e.typ);
        input.put_u32(out, e.count);
        if e.value.len() <= 4 {
            let mut field = e.value.clone();
            field.resize(4, 0);
            out.extend_from_slice(&field);
        } else {
            pending.push((out.len(), &e.value));
            out.extend_from_slice(&[0; 4]);
        }
    }
    let next_link = out.len();
    out.extend_from_slice(&[0; 4]);
    for (at, value) in pending {
        if out.len() + value.len() > budget {
            return Err("the TIFF points at the same data many times");
        }
        if !out.len().is_multiple_of(2) {
            out.push(0);
        }
        let here = pos(out.len())?;
        input.patch_u32(out, at, here);
        out.extend_from_slice(value);
    }
    Ok(next_link)
}

/// The Orientation (274) of IFD0 of an Exif TIFF structure, when it is 2 to 8 (a picture
/// shown rotated or mirrored: removing it would change what is shown).
pub fn exif_orientation(exif: &[u8]) -> Option<u16> {
    let exif = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    if !(exif.starts_with(b"II*\0") || exif.starts_with(b"MM\0*")) {
        return None;
    }
    let input = Input {
        d: exif,
        le: exif.starts_with(b"II"),
    };
    let ifd = input.u32(4).ok()? as usize;
    let n = usize::from(input.u16(ifd).ok()?);
    (0..n.min(1024)).find_map(|i| {
        let at = ifd + 2 + 12 * i;
        let is_orientation = input.u16(at).ok()? == 274 && input.u16(at + 2).ok()? == TYPE_SHORT;
        let v = if is_orientation {
            input.u16(at + 8).ok()?
        } else {
            0
        };
        (2..=8).contains(&v).then_some(v)
    })
}

/// An Exif TIFF structure holding only an Orientation tag (little-endian, IFD0, one entry).
pub fn orientation_only_exif(orientation: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    t.extend_from_slice(&1u16.to_le_bytes());
    t.extend_from_slice(&274u16.to_le_bytes());
    t.extend_from_slice(&TYPE_SHORT.to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&orientation.to_le_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}
