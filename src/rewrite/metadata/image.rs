//! JPEG, PNG and WebP at the segment and chunk level (`img-parts`): metadata segments and
//! chunks are dropped by an allowlist, the compressed image data is copied byte for byte, so
//! the pixels cannot change.
//!
//! - The Exif Orientation (2 to 8: a picture shown rotated or mirrored) is kept, in a new
//!   Exif block that holds nothing else, since removing it would turn the picture.
//! - JPEG: every APPn segment and COM go except JFIF APP0 (its thumbnail removed), ICC
//!   profiles (APP2 `ICC_PROFILE`, they change the colours shown) and Adobe APP14 (it tells
//!   how the colours are coded). That drops Exif (GPS, camera serial, owner), XMP, IPTC /
//!   Photoshop (APP13), MPF and FlashPix. The scans are walked to the end-of-image marker:
//!   segments between progressive scans are filtered the same way, and whatever follows the
//!   image (MPF secondary images with Exif of their own, appended files) is dropped. A file
//!   without an end-of-image marker is truncated and refused.
//! - PNG: critical chunks and the ancillary chunks that change what is shown (transparency,
//!   colour space and profile, gamma, background, physical size, APNG animation) stay;
//!   text chunks (tEXt, zTXt, iTXt), eXIf, tIME and every private chunk go. A PNG without
//!   IEND is truncated and refused.
//! - WebP: the image chunks (VP8, VP8L, VP8X, ALPH, ANIM, ANMF) and ICCP stay; EXIF, XMP and
//!   unknown chunks go, and the VP8X flags no longer announce Exif or XMP.

use img_parts::jpeg::{markers, Jpeg};
use img_parts::png::{Png, PngChunk};
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;
use img_parts::Bytes;

const TRUNCATED_JPEG: &str = "the JPEG data is broken or truncated";

/// A JFIF APP0 segment without its thumbnail: identifier, version, units, density, 0×0.
const JFIF_LEN: usize = 14;

pub fn jpeg(data: &[u8]) -> Result<Vec<u8>, &'static str> {
    let jpeg = Jpeg::from_bytes(Bytes::copy_from_slice(data)).map_err(|_| TRUNCATED_JPEG)?;
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&[markers::P, markers::SOI]);
    let mut scans = None;
    for seg in jpeg.segments() {
        if seg.has_entropy() {
            // The first scan: its header, then the rest of the file.
            let rest = seg.len_with_entropy() - seg.len();
            scans = Some(data.len().checked_sub(rest).ok_or(TRUNCATED_JPEG)?);
        }
        let contents = seg.contents();
        if seg.marker() == markers::APP1 {
            if let Some(o) = super::tiff::exif_orientation(contents) {
                let mut exif = b"Exif\0\0".to_vec();
                exif.extend_from_slice(&super::tiff::orientation_only_exif(o));
                write_segment(&mut out, markers::APP1, &exif)?;
                continue;
            }
        }
        if !keep_jpeg_segment(seg.marker(), contents) {
            continue;
        }
        let contents: &[u8] = if seg.marker() == markers::APP0 && contents.len() > JFIF_LEN {
            &contents[..JFIF_LEN]
        } else {
            contents
        };
        let mut contents = contents.to_vec();
        if seg.marker() == markers::APP0 {
            contents[JFIF_LEN - 2..].fill(0);
        }
        write_segment(&mut out, seg.marker(), &contents)?;
    }
    let start = scans.ok_or(TRUNCATED_JPEG)?;
    copy_scans(&data[start..], &mut out)?;
    Ok(out)
}

fn write_segment(out: &mut Vec<u8>, marker: u8, contents: &[u8]) -> Result<(), &'static str> {
    let len = u16::try_from(contents.len() + 2).map_err(|_| TRUNCATED_JPEG)?;
    out.extend_from_slice(&[markers::P, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(contents);
    Ok(())
}

/// True for the segments that stay (see the module documentation).
fn keep_jpeg_segment(marker: u8, contents: &[u8]) -> bool {
    match marker {
        markers::APP0 => contents.starts_with(b"JFIF\0") && contents.len() >= JFIF_LEN,
        markers::APP2 => contents.starts_with(b"ICC_PROFILE\0"),
        markers::APP14 => contents.starts_with(b"Adobe"),
        0xe0..=0xef | markers::COM => false,
        _ => true,
    }
}

/// Copies entropy-coded data and the segments between scans up to and including the
/// end-of-image marker, dropping metadata segments met on the way.
fn copy_scans(d: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut i = 0;
    loop {
        let ff = i + memchr::memchr(markers::P, &d[i..]).ok_or(TRUNCATED_JPEG)?;
        out.extend_from_slice(&d[i..ff]);
        let mut m = ff + 1;
        while d.get(m) == Some(&markers::P) {
            m += 1; // fill bytes
        }
        let marker = *d.get(m).ok_or(TRUNCATED_JPEG)?;
        match marker {
            // Stuffed 0xFF, restart markers, TEM: no length.
            0x00 | 0x01 | 0xd0..=0xd7 => {
                out.extend_from_slice(&[markers::P, marker]);
                i = m + 1;
            }
            markers::EOI => {
                out.extend_from_slice(&[markers::P, markers::EOI]);
                return Ok(());
            }
            markers::SOI => return Err(TRUNCATED_JPEG),
            _ => {
                let len = d.get(m + 1..m + 3).ok_or(TRUNCATED_JPEG)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let end = (m + 1)
                    .checked_add(len)
                    .filter(|&e| len >= 2 && e <= d.len());
                let end = end.ok_or(TRUNCATED_JPEG)?;
                let contents = &d[m + 3..end];
                if keep_jpeg_segment(marker, contents) {
                    out.extend_from_slice(&[markers::P, marker]);
                    out.extend_from_slice(&d[m + 1..end]);
                }
                i = end;
            }
        }
    }
}

/// Ancillary PNG chunks that change what is shown (PNG 3rd edition, APNG).
const PNG_KEEP: &[&[u8; 4]] = &[
    b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP", b"mDCV", b"cLLI", b"bKGD",
    b"hIST", b"pHYs", b"sPLT", b"acTL", b"fcTL", b"fdAT",
];

pub fn png(data: &[u8]) -> Result<Vec<u8>, &'static str> {
    const BROKEN: &str = "the PNG data is broken or truncated";
    let mut png = Png::from_bytes(Bytes::copy_from_slice(data)).map_err(|_| BROKEN)?;
    if png.chunks().last().map(|c| c.kind()) != Some(*b"IEND") {
        return Err(BROKEN);
    }
    // Critical chunks (upper-case first letter) always stay: a decoder needs them.
    let orientation = png
        .chunk_by_type(*b"eXIf")
        .and_then(|c| super::tiff::exif_orientation(c.contents()));
    png.chunks_mut()
        .retain(|c| c.kind()[0].is_ascii_uppercase() || PNG_KEEP.contains(&&c.kind()));
    if let Some(o) = orientation {
        // eXIf goes before the first IDAT.
        let at = png.chunks().iter().position(|c| &c.kind() == b"IDAT");
        let exif = Bytes::from(super::tiff::orientation_only_exif(o));
        png.chunks_mut()
            .insert(at.unwrap_or(1), PngChunk::new(*b"eXIf", exif));
    }
    Ok(png.encoder().bytes().to_vec())
}

/// WebP chunks that make up the image.
const WEBP_KEEP: &[&[u8; 4]] = &[
    b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];

/// VP8X flag bits (first byte) announcing Exif and XMP chunks.
const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

pub fn webp(data: &[u8]) -> Result<Vec<u8>, &'static str> {
    const BROKEN: &str = "the WebP data is broken or truncated";
    let mut webp = WebP::from_bytes(Bytes::copy_from_slice(data)).map_err(|_| BROKEN)?;
    let orientation = webp
        .chunk_by_id(*b"EXIF")
        .and_then(|c| c.content().data())
        .and_then(|d| super::tiff::exif_orientation(d));
    webp.chunks_mut().retain(|c| WEBP_KEEP.contains(&&c.id()));
    if !webp
        .chunks()
        .iter()
        .any(|c| matches!(&c.id(), b"VP8 " | b"VP8L" | b"ANMF"))
    {
        return Err(BROKEN);
    }
    for chunk in webp.chunks_mut() {
        if &chunk.id() != b"VP8X" {
            continue;
        }
        match chunk.content_mut() {
            RiffContent::Data(flags) if !flags.is_empty() => {
                let mut v = flags.to_vec();
                v[0] &= !(VP8X_EXIF | VP8X_XMP);
                if orientation.is_some() {
                    v[0] |= VP8X_EXIF;
                }
                *flags = Bytes::from(v);
            }
            _ => return Err(BROKEN),
        }
    }
    if let Some(o) = orientation {
        // EXIF goes after the image data (WebP container specification).
        let exif = RiffContent::Data(Bytes::from(super::tiff::orientation_only_exif(o)));
        webp.chunks_mut().push(RiffChunk::new(*b"EXIF", exif));
    }
    Ok(webp.encoder().bytes().to_vec())
}
