//! Unit tests on hand-made files; the fixtures and the independent checks (exiftool,
//! pdfinfo, pixel and page-render comparisons) are in tests/attachment_metadata.rs.

use super::*;

fn opts() -> Options<'static> {
    Options {
        declared_type: None,
        file_name: None,
        pdf_id: [7; 16],
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/attachments/");
    std::fs::read(format!("{dir}{name}")).unwrap()
}

fn clean(data: &[u8]) -> Vec<u8> {
    strip(data, &opts()).unwrap().expect("a known format")
}

fn holds(data: &[u8], needle: &str) -> bool {
    memmem::find(data, needle.as_bytes()).is_some()
}

#[test]
fn formats_are_told_by_their_bytes_not_their_label() {
    let labelled = Options {
        declared_type: Some("application/octet-stream"),
        file_name: Some("holiday.dat"),
        pdf_id: [0; 16],
    };
    assert_eq!(sniff(&fixture("photo.jpg"), &labelled), Some(Format::Jpeg));
    assert_eq!(sniff(&fixture("photo.png"), &labelled), Some(Format::Png));
    assert_eq!(sniff(&fixture("photo.webp"), &labelled), Some(Format::Webp));
    assert_eq!(sniff(&fixture("photo.tiff"), &labelled), Some(Format::Tiff));
    assert_eq!(sniff(&fixture("report.pdf"), &labelled), Some(Format::Pdf));
    assert_eq!(
        sniff(&fixture("report.docx"), &labelled),
        Some(Format::Ooxml)
    );
    assert_eq!(sniff(&fixture("report.odt"), &labelled), Some(Format::Odf));
    // A labelled image that is not one passes as it is.
    let jpeg_label = Options {
        declared_type: Some("image/jpeg"),
        file_name: Some("x.jpg"),
        pdf_id: [0; 16],
    };
    assert_eq!(strip(b"just text", &jpeg_label), Ok(None));
}

#[test]
fn a_plain_zip_passes_and_a_broken_declared_office_file_is_refused() {
    let mut plain = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    plain
        .start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut plain, b"Joe Smith").unwrap();
    let plain = plain.finish().unwrap().into_inner();
    assert_eq!(strip(&plain, &opts()), Ok(None));
    let docx = Options {
        declared_type: None,
        file_name: Some("cv.DOCX"),
        pdf_id: [0; 16],
    };
    let broken = &plain[..plain.len() - 10];
    let err = strip(broken, &docx).unwrap_err();
    assert_eq!(err.format, Format::Ooxml);
}

#[test]
fn jpeg_loses_exif_xmp_iptc_and_comments_but_keeps_its_orientation() {
    let photo = fixture("photo.jpg");
    for s in [
        "CAMSERIAL4711",
        "Joe Smith",
        "SecretCam",
        "at home",
        "http://ns.adobe.com",
    ] {
        assert!(holds(&photo, s), "the fixture lacks {s}");
    }
    let out = clean(&photo);
    for s in [
        "CAMSERIAL4711",
        "Joe Smith",
        "SecretCam",
        "at home",
        "http://ns.adobe.com",
        "Photoshop",
    ] {
        assert!(!holds(&out, s), "{s} left");
    }
    let exif = out
        .windows(6)
        .position(|w| w == b"Exif\0\0")
        .expect("an Exif block");
    assert_eq!(tiff::exif_orientation(&out[exif..]), Some(6));
    assert_eq!(clean(&out), out, "cleaning twice changes nothing more");
}

#[test]
fn jpeg_trailing_images_are_dropped_and_truncation_refused() {
    let photo = clean(&fixture("photo.jpg"));
    let mut appended = photo.clone();
    appended.extend_from_slice(&fixture("photo.jpg"));
    assert_eq!(clean(&appended), photo);
    for cut in [photo.len() - 2, photo.len() / 2, 200, 3] {
        let err = strip(&photo[..cut], &opts()).unwrap_err();
        assert_eq!(err.format, Format::Jpeg, "cut at {cut}");
    }
}

#[test]
fn png_loses_text_and_exif_chunks() {
    let photo = fixture("photo.png");
    let out = clean(&photo);
    for chunk in [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"] {
        assert!(!out.windows(4).any(|w| w == chunk), "{chunk:?} left");
    }
    assert!(!holds(&out, "Joe Smith") && !holds(&out, "CAMSERIAL4711"));
    let err = strip(&out[..out.len() - 12], &opts()).unwrap_err();
    assert_eq!(err.format, Format::Png, "no IEND: truncated");
}

#[test]
fn webp_loses_exif_and_xmp_and_their_flags() {
    let photo = fixture("photo.webp");
    assert_eq!(&photo[12..16], b"VP8X");
    assert_ne!(photo[20] & 0x0c, 0, "the fixture announces Exif or XMP");
    let out = clean(&photo);
    assert_eq!(&out[12..16], b"VP8X");
    assert_eq!(out[20] & 0x0c, 0);
    assert!(!holds(&out, "EXIF") && !holds(&out, "XMP ") && !holds(&out, "Joe Smith"));
    let size = u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
    assert_eq!(size + 8, out.len(), "the RIFF size is right");
}

#[test]
fn tiff_keeps_only_image_tags_and_refuses_loops_and_overlaps() {
    let out = clean(&fixture("photo.tiff"));
    for s in [
        "Joe Smith",
        "SecretCam",
        "CAMSERIAL4711",
        "Paris",
        "x:xmpmeta",
    ] {
        assert!(!holds(&out, s), "{s} left");
    }
    // An IFD whose next-IFD link points at itself.
    let mut looped = b"II*\0\x08\0\0\0\x01\0".to_vec();
    looped.extend_from_slice(&[0x00, 0x01, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
    looped.extend_from_slice(&8u32.to_le_bytes());
    assert_eq!(strip(&looped, &opts()).unwrap_err().format, Format::Tiff);
    // 4000 strips all pointing at the same 4000 bytes: more than twice the input.
    let n = 4000u32;
    let mut bomb = b"II*\0\x08\0\0\0\x02\0".to_vec();
    let arrays = 8 + 2 + 24 + 4;
    for (tag, value) in [(273u16, arrays), (279, arrays + 4 * n)] {
        bomb.extend_from_slice(&tag.to_le_bytes());
        bomb.extend_from_slice(&4u16.to_le_bytes());
        bomb.extend_from_slice(&n.to_le_bytes());
        bomb.extend_from_slice(&value.to_le_bytes());
    }
    bomb.extend_from_slice(&0u32.to_le_bytes());
    bomb.extend((0..n).flat_map(|_| 0u32.to_le_bytes()));
    bomb.extend((0..n).flat_map(|_| 4000u32.to_le_bytes()));
    let err = strip(&bomb, &opts()).unwrap_err();
    assert_eq!(err.reason, "the TIFF points at the same data many times");
    assert!(strip(b"MM\0+\0\x08\0\0", &opts()).is_err(), "BigTIFF");
}

#[test]
fn pdf_loses_info_xmp_and_the_old_revision() {
    let pdf = fixture("report.pdf");
    assert!(holds(&pdf, "SecretWriter") && holds(&pdf, "Joe Q Smith"));
    let out = clean(&pdf);
    for s in [
        "SecretWriter",
        "Joe Smith",
        "Joe Q Smith",
        "SecretPDF",
        "/Info",
        "/Metadata",
    ] {
        assert!(!holds(&out, s), "{s} left");
    }
    assert!(holds(&out, "070707070707"), "the new /ID");
    assert!(holds(&out, "Quarterly report"), "the page text stays");
}

#[test]
fn pdf_encrypted_or_unreadable_is_refused() {
    let mut enc = fixture("report.pdf");
    let at = memmem::rfind(&enc, b"trailer").unwrap();
    let tail = String::from_utf8_lossy(&enc[at..]).replace(
        "<<",
        "<< /Encrypt << /Filter /Standard /V 1 /R 2 /O <00> /U <00> /P -4 >>",
    );
    enc.truncate(at);
    enc.extend_from_slice(tail.as_bytes());
    assert_eq!(strip(&enc, &opts()).unwrap_err().format, Format::Pdf);
    assert!(strip(b"%PDF-1.4\nnothing else", &opts()).is_err());
}

#[test]
fn office_bombs_are_refused() {
    let docx = fixture("report.docx");
    let err = office::strip_within(&docx, office::Package::Ooxml, 1000, 2000).unwrap_err();
    assert_eq!(err, "the document's zip archive inflates to too much data");
    let err = office::strip_within(&docx, office::Package::Ooxml, 3, 1 << 20).unwrap_err();
    assert_eq!(err, "the document's zip archive has too many members");
    assert!(office::strip_within(&docx, office::Package::Ooxml, 100, 1 << 20).is_ok());
}
