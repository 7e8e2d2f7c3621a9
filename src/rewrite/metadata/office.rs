//! Office Open XML (docx, xlsx, pptx) and OpenDocument (odt, ods, odp) files (`zip`,
//! `quick-xml`): the archive is written anew, member by member, in the same order.
//!
//! - OOXML: the core, extended and custom property parts (found through `_rels/.rels`,
//!   normally `docProps/core.xml`, `app.xml`, `custom.xml`: author, last modified by,
//!   company, manager, template path, dates, custom fields) are replaced by empty ones of
//!   the same kind, so `[Content_Types].xml` and the relationships stay consistent.
//! - ODF: `meta.xml` (creator, initial creator, printed by, template, user-defined fields,
//!   dates, generator) is replaced by an empty one of the same ODF version; `mimetype` stays
//!   first and stored uncompressed.
//! - Every member that is a JPEG, PNG, WebP or TIFF image (photos pasted into a document,
//!   thumbnails) is cleaned like an attachment ([`super::image`], [`super::tiff`]).
//! - The archive's own metadata goes: timestamps (all set to 1980-01-01), extra fields
//!   (Unix owners, NTFS times), comments.
//!
//! Not removed (said in ARCHITECTURE.md §3): names inside the document body (tracked-change
//! and comment authors, `word/people.xml`), printer settings in ODF `settings.xml`, and
//! embedded objects (a spreadsheet inside a presentation) other than images.
//!
//! Bounded: at most [`MAX_ENTRIES`] members and [`MAX_INFLATED`] bytes inflated in all
//! (counted on what actually inflates, not on the sizes the archive declares); beyond that,
//! and for encrypted or broken archives, the file is refused.

use std::io::{Cursor, Read, Write};

use memchr::memmem;
use quick_xml::events::Event;
use quick_xml::Reader;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::Format;

const MAX_ENTRIES: usize = 10_000;
const MAX_INFLATED: u64 = 256 * 1024 * 1024;
const BROKEN: &str = "the document's zip archive is broken or encrypted";
const TOO_BIG: &str = "the document's zip archive inflates to too much data";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    Ooxml,
    Odf,
}

/// File name endings and media type fragments that declare an office document.
const OFFICE_EXTENSIONS: &[&str] = &[
    ".docx", ".docm", ".dotx", ".dotm", ".xlsx", ".xlsm", ".xltx", ".xltm", ".pptx", ".pptm",
    ".potx", ".potm", ".ppsx", ".ppsm", ".odt", ".ods", ".odp", ".odg", ".odf", ".odc", ".odm",
    ".ott", ".ots", ".otp", ".otg",
];
const OFFICE_TYPES: &[&str] = &[
    "vnd.openxmlformats-officedocument",
    "vnd.oasis.opendocument",
];

/// A zip archive that is an OOXML or ODF package, by its contents, or (when those do not
/// tell) by its declared type or name.
pub fn sniff(data: &[u8], declared_type: Option<&str>, name: Option<&str>) -> Option<Format> {
    // ODF: the first member is `mimetype`, stored, holding the package's media type.
    if data.get(30..38) == Some(b"mimetype")
        && memmem::find(
            &data[..data.len().min(256)],
            b"application/vnd.oasis.opendocument",
        )
        .is_some()
    {
        return Some(Format::Odf);
    }
    if memmem::find(data, b"[Content_Types].xml").is_some() {
        return Some(Format::Ooxml);
    }
    let name = name.map(str::to_ascii_lowercase).unwrap_or_default();
    let ty = declared_type
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let odf = name
        .rsplit('.')
        .next()
        .is_some_and(|e| e.starts_with("od") || e.starts_with("ot"))
        || ty.contains("opendocument");
    let declared = OFFICE_EXTENSIONS.iter().any(|e| name.ends_with(e))
        || OFFICE_TYPES.iter().any(|t| ty.contains(t));
    match (declared, odf) {
        (true, true) => Some(Format::Odf),
        (true, false) => Some(Format::Ooxml),
        _ => None,
    }
}

pub fn strip(data: &[u8], package: Package) -> Result<Vec<u8>, &'static str> {
    strip_within(data, package, MAX_ENTRIES, MAX_INFLATED)
}

/// [`strip`] with the limits given (tests use small ones).
pub(super) fn strip_within(
    data: &[u8],
    package: Package,
    max_entries: usize,
    max_inflated: u64,
) -> Result<Vec<u8>, &'static str> {
    let mut zip = ZipArchive::new(Cursor::new(data)).map_err(|_| BROKEN)?;
    if zip.len() > max_entries {
        return Err("the document's zip archive has too many members");
    }
    let mut budget = max_inflated;
    let properties = match package {
        Package::Ooxml => property_parts(&mut zip, &mut budget)?,
        Package::Odf => vec![(String::from("meta.xml"), Neutral::OdfMeta)],
    };
    let mut order: Vec<usize> = (0..zip.len()).collect();
    if package == Package::Odf {
        let first = zip.index_for_name("mimetype");
        order.sort_by_key(|&i| Some(i) != first);
    }
    let mut out = ZipWriter::new(Cursor::new(Vec::with_capacity(data.len())));
    for i in order {
        let mut member = zip.by_index(i).map_err(|_| BROKEN)?;
        let name = member.name().to_string();
        let options = SimpleFileOptions::default()
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .compression_method(if name == "mimetype" {
                CompressionMethod::Stored
            } else {
                CompressionMethod::Deflated
            });
        if member.is_dir() {
            out.add_directory(name, options).map_err(|_| BROKEN)?;
            continue;
        }
        let body = inflate(&mut member, &mut budget)?;
        drop(member);
        let neutral = properties
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(&name));
        let body = match neutral {
            Some((_, kind)) => kind.xml(&body).into_bytes(),
            None => match super::clean_embedded_image(&body) {
                Some(cleaned) => {
                    cleaned.map_err(|_| "an image inside the document cannot be cleaned")?
                }
                None => body,
            },
        };
        out.start_file(name, options).map_err(|_| BROKEN)?;
        out.write_all(&body).map_err(|_| BROKEN)?;
    }
    Ok(out.finish().map_err(|_| BROKEN)?.into_inner())
}

/// A member's inflated bytes, counted against `budget` (a CRC mismatch is an error).
fn inflate(member: &mut impl Read, budget: &mut u64) -> Result<Vec<u8>, &'static str> {
    let mut body = Vec::new();
    member
        .take(*budget + 1)
        .read_to_end(&mut body)
        .map_err(|_| BROKEN)?;
    let n = body.len() as u64;
    if n > *budget {
        return Err(TOO_BIG);
    }
    *budget -= n;
    Ok(body)
}

/// The property parts a package's `_rels/.rels` names, with what replaces each.
fn property_parts(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    budget: &mut u64,
) -> Result<Vec<(String, Neutral)>, &'static str> {
    let rels = match zip.by_name("_rels/.rels") {
        Ok(mut f) => inflate(&mut f, budget)?,
        Err(zip::result::ZipError::FileNotFound) => Vec::new(),
        Err(_) => return Err(BROKEN),
    };
    let mut parts = vec![
        ("docProps/core.xml".to_string(), Neutral::Core),
        ("docProps/app.xml".to_string(), Neutral::App),
        ("docProps/custom.xml".to_string(), Neutral::Custom),
    ];
    let mut reader = Reader::from_reader(rels.as_slice());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(|_| BROKEN)?;
        let e = match &event {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "Relationship" => e,
            Event::Eof => break,
            _ => continue,
        };
        let (mut ty, mut target) = (None, None);
        for a in e.attributes().flatten() {
            let value = a.value.into_owned();
            match a.key.as_ref() {
                "Type" => ty = Some(value),
                "Target" => target = Some(value),
                _ => {}
            }
        }
        let kind = match ty.as_deref() {
            Some(t) if t.ends_with("/core-properties") => Neutral::Core,
            Some(t) if t.ends_with("/extended-properties") => Neutral::App,
            Some(t) if t.ends_with("/custom-properties") => Neutral::Custom,
            _ => continue,
        };
        if let Some(t) = target {
            parts.push((t.trim_start_matches('/').to_string(), kind));
        }
    }
    Ok(parts)
}

/// An empty property part of each kind.
#[derive(Debug, Clone, Copy)]
enum Neutral {
    Core,
    App,
    Custom,
    OdfMeta,
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n";
const VT: &str = "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes";

impl Neutral {
    fn xml(self, original: &[u8]) -> String {
        match self {
            Neutral::Core => format!(
                "{XML_DECL}<cp:coreProperties \
                 xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
                 xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
                 xmlns:dcterms=\"http://purl.org/dc/terms/\" \
                 xmlns:dcmitype=\"http://purl.org/dc/dcmitype/\" \
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"></cp:coreProperties>"
            ),
            Neutral::App => format!(
                "{XML_DECL}<Properties \
                 xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties\" \
                 xmlns:vt=\"{VT}\"></Properties>"
            ),
            Neutral::Custom => format!(
                "{XML_DECL}<Properties \
                 xmlns=\"http://schemas.openxmlformats.org/officeDocument/2006/custom-properties\" \
                 xmlns:vt=\"{VT}\"></Properties>"
            ),
            Neutral::OdfMeta => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<office:document-meta \
                 xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
                 xmlns:meta=\"urn:oasis:names:tc:opendocument:xmlns:meta:1.0\" \
                 xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
                 office:version=\"{}\"><office:meta/></office:document-meta>",
                odf_version(original)
            ),
        }
    }
}

/// The `office:version` of an ODF part (digits and dots), 1.2 when it has none.
fn odf_version(xml: &[u8]) -> String {
    const KEY: &[u8] = b"office:version=\"";
    let version = memmem::find(xml, KEY).map(|at| {
        xml[at + KEY.len()..]
            .iter()
            .take_while(|&&b| b.is_ascii_digit() || b == b'.')
            .take(8)
            .map(|&b| char::from(b))
            .collect::<String>()
    });
    version
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "1.2".into())
}
