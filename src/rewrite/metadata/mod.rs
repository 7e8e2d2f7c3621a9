//! Attachment metadata (`privacy.strip_attachment_metadata`, ARCHITECTURE.md §3): what a file
//! says about who made it, where and on what, removed while what it shows stays the same.
//!
//! - [`sniff`] tells the format by its **magic bytes** (a JPEG labelled
//!   `application/octet-stream` or named `.dat` is still a JPEG); the declared type and file
//!   name only decide whether a zip archive that does not look like an office document is
//!   treated as one (so a broken one is refused rather than passed).
//! - [`strip`] cleans the formats it knows: JPEG, PNG and WebP ([`image`], segment and chunk
//!   level, pixels never re-encoded), TIFF ([`tiff`], the file rebuilt from the image tags
//!   only), PDF ([`pdf`], a full rewrite without Info, XMP and unreferenced objects) and
//!   Office Open XML / OpenDocument files ([`office`], the property parts neutral, images
//!   inside cleaned). Other formats pass unchanged.
//! - Fail closed: a file that is recognisably one of these formats but cannot be read or
//!   cleaned (truncated, encrypted, damaged, too large once inflated) is a [`Failure`], which
//!   refuses the message. A parser panic on hostile input is caught and is a failure too.

mod image;
mod office;
mod pdf;
mod tiff;

use std::panic::{catch_unwind, AssertUnwindSafe};

use memchr::memmem;

/// A format whose metadata the service removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Tiff,
    Pdf,
    /// Office Open XML (docx, xlsx, pptx...).
    Ooxml,
    /// OpenDocument (odt, ods, odp...).
    Odf,
}

impl Format {
    /// How the format is named in a refusal.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG image",
            Format::Png => "PNG image",
            Format::Webp => "WebP image",
            Format::Tiff => "TIFF image",
            Format::Pdf => "PDF document",
            Format::Ooxml => "Office Open XML document",
            Format::Odf => "OpenDocument file",
        }
    }
}

/// A file of a known format that cannot be cleaned; `reason` names no content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub format: Format,
    pub reason: &'static str,
}

/// What `strip` needs besides the bytes.
pub struct Options<'a> {
    /// The declared media type (`type/subtype`, any case) and file name, for zip archives.
    pub declared_type: Option<&'a str>,
    pub file_name: Option<&'a str>,
    /// 16 bytes for the new PDF trailer `/ID` (derived from the message nonce, so the rewrite
    /// stays deterministic).
    pub pdf_id: [u8; 16],
}

/// PDF allows up to 1024 bytes of anything before `%PDF-`.
const PDF_HEADER_WINDOW: usize = 1024;

/// The format of `data` by its first bytes (and, for zip archives, their contents or the
/// declared type and name); None for everything this module does not clean.
pub fn sniff(data: &[u8], opts: &Options<'_>) -> Option<Format> {
    if data.starts_with(b"\xff\xd8\xff") {
        return Some(Format::Jpeg);
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
        return Some(Format::Webp);
    }
    if tiff::is_tiff(data) {
        return Some(Format::Tiff);
    }
    if memmem::find(&data[..data.len().min(PDF_HEADER_WINDOW)], b"%PDF-").is_some() {
        return Some(Format::Pdf);
    }
    if data.starts_with(b"PK\x03\x04") {
        return office::sniff(data, opts.declared_type, opts.file_name);
    }
    None
}

/// `data` without its metadata: `Ok(None)` when it is no format this module knows (it
/// passes as it is).
pub fn strip(data: &[u8], opts: &Options<'_>) -> Result<Option<Vec<u8>>, Failure> {
    let Some(format) = sniff(data, opts) else {
        return Ok(None);
    };
    let cleaned = catch_unwind(AssertUnwindSafe(|| clean(format, data, opts)))
        .unwrap_or(Err("the file could not be read"));
    cleaned
        .map(Some)
        .map_err(|reason| Failure { format, reason })
}

fn clean(format: Format, data: &[u8], opts: &Options<'_>) -> Result<Vec<u8>, &'static str> {
    match format {
        Format::Jpeg => image::jpeg(data),
        Format::Png => image::png(data),
        Format::Webp => image::webp(data),
        Format::Tiff => tiff::strip(data),
        Format::Pdf => pdf::strip(data, opts.pdf_id),
        Format::Ooxml => office::strip(data, office::Package::Ooxml),
        Format::Odf => office::strip(data, office::Package::Odf),
    }
}

/// An image inside another file (a photo in a docx): cleaned when it is one of the image
/// formats, else None.
fn clean_embedded_image(data: &[u8]) -> Option<Result<Vec<u8>, &'static str>> {
    let opts = Options {
        declared_type: None,
        file_name: None,
        pdf_id: [0; 16],
    };
    match sniff(data, &opts)? {
        f @ (Format::Jpeg | Format::Png | Format::Webp | Format::Tiff) => {
            Some(clean(f, data, &opts))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
