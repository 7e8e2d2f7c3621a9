//! PDF (`lopdf`): the document is loaded (every revision of an incremental update merged into
//! the newest), the trailer's `/Info` dictionary (author, creator, producer, dates, title),
//! every `/Metadata` XMP stream (the catalog's and those of pages, images and fonts) and
//! `/PieceInfo` application data are removed, and the file is written anew from the objects
//! still referenced. An incremental update leaves the old Info object in the file (exiftool
//! writes PDF metadata that way), so a full rewrite that drops unreferenced objects is the
//! only way it goes. The trailer `/ID`, which can identify the producing machine, is replaced
//! by one derived from the message's nonce.
//!
//! Refused: encrypted PDFs (the metadata cannot be removed without the password), files
//! lopdf cannot read, and files whose cross-reference table had to be rebuilt by scanning
//! (objects may be missing or come from an older revision). Streams inflate to at most
//! [`MAX_INFLATED`] bytes while loading.

use lopdf::xref::XrefRecovery;
use lopdf::{Document, LoadOptions, Object, StringFormat};

/// Per stream decoded while loading (object and cross-reference streams).
const MAX_INFLATED: usize = 64 * 1024 * 1024;

/// Dictionary keys that carry metadata, wherever they appear.
const DROP_KEYS: &[&[u8]] = &[b"Metadata", b"PieceInfo"];

pub fn strip(data: &[u8], id: [u8; 16]) -> Result<Vec<u8>, &'static str> {
    let options = LoadOptions {
        max_decompressed_size: Some(MAX_INFLATED),
        ..LoadOptions::default()
    };
    let mut doc =
        Document::load_mem_with_options(data, options).map_err(|_| "the PDF cannot be read")?;
    if doc.is_encrypted() || doc.trailer.has(b"Encrypt") {
        return Err("the PDF is encrypted");
    }
    if matches!(doc.xref_recovery, Some(XrefRecovery::Reconstructed)) {
        return Err("the PDF is damaged (its cross-reference table is broken)");
    }
    for key in [&b"Info"[..], b"Prev", b"XRefStm", b"ID"] {
        doc.trailer.remove(key);
    }
    for object in doc.objects.values_mut() {
        let dict = match object {
            Object::Dictionary(d) => d,
            Object::Stream(s) => &mut s.dict,
            _ => continue,
        };
        for key in DROP_KEYS {
            dict.remove(key);
        }
    }
    doc.prune_objects();
    let id = Object::String(id.to_vec(), StringFormat::Hexadecimal);
    doc.trailer.set("ID", Object::Array(vec![id.clone(), id]));
    let mut out = Vec::with_capacity(data.len());
    doc.save_to(&mut out)
        .map_err(|_| "the PDF cannot be written again")?;
    Ok(out)
}
