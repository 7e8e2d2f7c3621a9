//! `privacy.strip_attachment_metadata` end to end (issue 13, point 2): a member sends another
//! member a message with a JPEG, PNG, WebP and TIFF image, a PDF, a .docx and an .odt, all
//! carrying metadata that names the sender, their camera, their company and where the photo
//! was taken (`tests/fixtures/attachments/`, README.md there), over SMTP through the real
//! binary. What arrives at the sink is checked with independent tools: `exiftool -j` (no
//! GPS, serial, artist, author, creator, company...), `pdfinfo`, pixels decoded by the
//! `image` crate, PDF pages rendered by `pdftoppm`, the documents' body XML. A broken JPEG and
//! a damaged PDF are refused with a 550 naming the attachment; with the step off, the
//! metadata arrives (so the checks can fail).

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use harness::{wait_for, Client, Service, Sink, SinkMode};
use mail_parser::{MimeHeaders, PartType};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";

/// Strings of the fixtures' metadata that must not arrive (any case).
const SECRETS: &[&str] = &[
    "joe smith",
    "joe q smith",
    "joesmith",
    "secretcam",
    "camserial4711",
    "secretcorp",
    "mary boss",
    "joes-laptop",
    "secretwriter",
    "secretpdf",
    "paris",
    "at home",
    "48 deg",
    "48.85",
    "secret.dotm",
];

/// exiftool tag names (without group) that must not appear.
const FORBIDDEN_TAGS: &[&str] = &[
    "GPSLatitude",
    "GPSLongitude",
    "GPSPosition",
    "SerialNumber",
    "Artist",
    "Author",
    "Creator",
    "Company",
    "LastModifiedBy",
    "OwnerName",
    "Make",
    "Model",
    "By-line",
    "Manager",
    "Template",
    "InitialCreator",
    "PrintedBy",
];

const ATTACHMENTS: &[(&str, &str)] = &[
    ("photo.jpg", "image/jpeg"),
    ("photo.png", "image/png"),
    ("photo.webp", "image/webp"),
    ("photo.tiff", "image/tiff"),
    ("report.pdf", "application/pdf"),
    (
        "report.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("report.odt", "application/vnd.oasis.opendocument.text"),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/attachments")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

/// A multipart/mixed message from Joe to Ann with the given attachments (name as sent, media
/// type, bytes).
fn message(files: &[(String, &str, Vec<u8>)]) -> String {
    let mut m = format!(
        "From: Joe Smith <{JOE}>\r\nTo: Ann Lee <ann@remailer.test>\r\nSubject: the files\r\n\
         Message-ID: <att-{}@real.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n\
         --b0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Here they are, <b>Ann</b>.</p>\r\n",
        harness::rand_id()
    );
    for (name, ty, data) in files {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        m.push_str(&format!(
            "--b0\r\nContent-Type: {ty}\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; {name}\r\n\r\n"
        ));
        for line in b64.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(line).unwrap());
            m.push_str("\r\n");
        }
    }
    m.push_str("--b0--\r\n");
    m
}

fn all_fixtures() -> Vec<(String, &'static str, Vec<u8>)> {
    ATTACHMENTS
        .iter()
        .map(|(n, t)| (format!("filename=\"{n}\""), *t, fixture(n)))
        .collect()
}

struct Sent {
    code: u16,
    text: String,
    /// (file name, decoded bytes) of what arrived, when it was accepted.
    files: Vec<(String, Vec<u8>)>,
}

async fn send(extra: &str, files: &[(String, &str, Vec<u8>)]) -> Sent {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, extra).await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c
        .send_mail(JOE, &["ann@remailer.test"], &message(files))
        .await;
    c.cmd("QUIT").await;
    if r.code != 250 {
        return Sent {
            code: r.code,
            text: r.text,
            files: Vec::new(),
        };
    }
    let d = wait_for("delivery", Duration::from_secs(20), || {
        sink.delivered().pop()
    })
    .await;
    assert_eq!(d.rcpt_to, vec![ANN.to_string()]);
    let msg = remailer::rewrite::parse(&d.data).expect("delivered mail parses");
    let files = msg
        .parts
        .iter()
        .filter_map(|p| {
            let name = p.attachment_name()?.to_string();
            match &p.body {
                PartType::Binary(b) | PartType::InlineBinary(b) => Some((name, b.to_vec())),
                _ => None,
            }
        })
        .collect();
    Sent {
        code: r.code,
        text: r.text,
        files,
    }
}

fn file<'a>(sent: &'a Sent, name: &str) -> &'a [u8] {
    let f = sent.files.iter().find(|(n, _)| n == name);
    &f.unwrap_or_else(|| panic!("{name} did not arrive")).1
}

/// `bytes` written to a temporary file named `name` (in a fresh directory).
fn temp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn run(cmd: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(cmd)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} (bash scripts/test-deps.sh installs it): {e}"));
    assert!(out.status.success(), "{cmd} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What exiftool reads from `bytes` (every tag, with its group), as JSON.
fn exiftool(name: &str, bytes: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let (_dir, path) = temp(name, bytes);
    let json = run("exiftool", &["-j", "-a", "-G1", "-n"], &path);
    let mut list: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    match list.pop() {
        Some(serde_json::Value::Object(m)) => m,
        other => panic!("exiftool said {other:?}"),
    }
}

/// The metadata exiftool finds in `bytes` that names the sender (empty: clean).
fn leaks(name: &str, bytes: &[u8]) -> Vec<String> {
    let tags = exiftool(name, bytes);
    let mut found = Vec::new();
    for (key, value) in &tags {
        let tag = key.rsplit(':').next().unwrap_or(key);
        if tag.starts_with("GPS") || FORBIDDEN_TAGS.contains(&tag) {
            found.push(format!("{key} = {value}"));
            continue;
        }
        let v = value.to_string().to_lowercase();
        if let Some(s) = SECRETS.iter().find(|s| v.contains(*s)) {
            found.push(format!("{key} = {value} ({s})"));
        }
    }
    found
}

fn pixels(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes).unwrap().to_rgba8()
}

/// The first page of a PDF rendered at 50 dpi by poppler.
fn render(pdf: &[u8]) -> image::RgbaImage {
    let (dir, path) = temp("doc.pdf", pdf);
    let prefix = dir.path().join("page");
    let out = Command::new("pdftoppm")
        .args(["-r", "50", "-png", "-singlefile"])
        .arg(&path)
        .arg(&prefix)
        .output()
        .expect("pdftoppm (bash scripts/test-deps.sh installs poppler-utils)");
    assert!(out.status.success(), "pdftoppm: {out:?}");
    pixels(&std::fs::read(prefix.with_extension("png")).unwrap())
}

fn zip_members(bytes: &[u8]) -> Vec<(String, Vec<u8>, zip::CompressionMethod)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid zip");
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().to_string(), data, f.compression())
        })
        .collect()
}

fn member<'a>(m: &'a [(String, Vec<u8>, zip::CompressionMethod)], name: &str) -> &'a [u8] {
    &m.iter().find(|(n, _, _)| n == name).unwrap().1
}

#[tokio::test]
async fn attachments_between_members_arrive_without_their_metadata() {
    for (name, _) in ATTACHMENTS {
        assert!(
            !leaks(name, &fixture(name)).is_empty(),
            "the fixture {name} has no metadata to remove"
        );
    }
    let sent = send("", &all_fixtures()).await;
    assert_eq!(sent.code, 250, "{}", sent.text);
    for (name, _) in ATTACHMENTS {
        let out = file(&sent, name);
        let found = leaks(name, out);
        assert!(found.is_empty(), "{name} still says: {found:#?}");
        let lower = String::from_utf8_lossy(out).to_lowercase();
        if !name.ends_with(".docx") && !name.ends_with(".odt") {
            // Not even in unreferenced bytes (zip members are compressed: checked below).
            for s in SECRETS {
                assert!(!lower.contains(s), "{name} still holds {s:?}");
            }
        }
    }
    for name in ["photo.jpg", "photo.png", "photo.webp", "photo.tiff"] {
        let (before, after) = (fixture(name), file(&sent, name).to_vec());
        assert_eq!(pixels(&before), pixels(&after), "{name}: pixels changed");
        assert!(after.len() < before.len(), "{name}: nothing removed");
    }
    // The photo was taken upright on a phone held sideways: it must still show turned.
    let jpeg = exiftool("photo.jpg", file(&sent, "photo.jpg"));
    assert_eq!(jpeg.get("IFD0:Orientation"), Some(&serde_json::json!(6)));
    check_pdf(file(&sent, "report.pdf"));
    check_docx(file(&sent, "report.docx"));
    check_odt(file(&sent, "report.odt"));
}

fn check_pdf(out: &[u8]) {
    let before = fixture("report.pdf");
    let (_dir, path) = temp("report.pdf", out);
    let info = run("pdfinfo", &[], &path).to_lowercase();
    assert!(info.contains("pages:           1"), "{info}");
    for field in ["author:", "creator:", "producer:", "title:"] {
        assert!(!info.contains(field), "pdfinfo still shows {field}\n{info}");
    }
    let xmp = run("pdfinfo", &["-meta"], &path);
    assert!(xmp.trim().is_empty(), "XMP left: {xmp}");
    assert!(
        !out.windows(8).any(|w| w == b"JOESLAPT"),
        "the old /ID is left"
    );
    assert_eq!(render(&before), render(out), "the page renders differently");
}

fn check_docx(out: &[u8]) {
    let before = zip_members(&fixture("report.docx"));
    let after = zip_members(out);
    let names = |m: &[(String, Vec<u8>, zip::CompressionMethod)]| -> Vec<String> {
        m.iter().map(|x| x.0.clone()).collect()
    };
    assert_eq!(names(&before), names(&after));
    for same in ["word/document.xml", "[Content_Types].xml", "_rels/.rels"] {
        assert_eq!(
            member(&before, same),
            member(&after, same),
            "{same} changed"
        );
    }
    for part in [
        "docProps/core.xml",
        "docProps/app.xml",
        "docProps/custom.xml",
    ] {
        let xml = String::from_utf8(member(&after, part).to_vec()).unwrap();
        assert!(xml.starts_with("<?xml"), "{part}: {xml}");
        for s in SECRETS {
            assert!(!xml.to_lowercase().contains(s), "{part} holds {s}: {xml}");
        }
    }
    let photo = member(&after, "word/media/image1.jpeg");
    assert!(
        leaks("image1.jpeg", photo).is_empty(),
        "the photo inside keeps metadata"
    );
    assert_eq!(
        pixels(member(&before, "word/media/image1.jpeg")),
        pixels(photo)
    );
}

fn check_odt(out: &[u8]) {
    let before = zip_members(&fixture("report.odt"));
    let after = zip_members(out);
    assert_eq!(after[0].0, "mimetype");
    assert_eq!(after[0].2, zip::CompressionMethod::Stored);
    assert_eq!(after[0].1, b"application/vnd.oasis.opendocument.text");
    assert_eq!(&out[30..38], b"mimetype");
    for same in ["content.xml", "META-INF/manifest.xml"] {
        assert_eq!(
            member(&before, same),
            member(&after, same),
            "{same} changed"
        );
    }
    let meta = String::from_utf8(member(&after, "meta.xml").to_vec()).unwrap();
    assert!(meta.contains("office:version=\"1.2\""), "{meta}");
    for s in SECRETS {
        assert!(
            !meta.to_lowercase().contains(s),
            "meta.xml holds {s}: {meta}"
        );
    }
    assert!(leaks("photo.jpg", member(&after, "Pictures/photo.jpg")).is_empty());
}

#[tokio::test]
async fn with_the_step_off_the_metadata_arrives() {
    let sent = send("privacy.strip_attachment_metadata = false", &all_fixtures()).await;
    assert_eq!(sent.code, 250, "{}", sent.text);
    for (name, _) in ATTACHMENTS {
        assert_eq!(file(&sent, name), fixture(name), "{name} changed");
        assert!(!leaks(name, file(&sent, name)).is_empty(), "{name}");
    }
}

#[tokio::test]
async fn a_truncated_jpeg_is_refused_naming_it() {
    let photo = fixture("photo.jpg");
    let cut = photo[..photo.len() * 2 / 3].to_vec();
    // Declared as anything and named .dat: found by its bytes.
    let files = vec![(
        "filename=\"holiday.dat\"".to_string(),
        "application/octet-stream",
        cut,
    )];
    let sent = send("", &files).await;
    assert_eq!(sent.code, 550, "{}", sent.text);
    assert!(sent.text.contains("5.6.0"), "{}", sent.text);
    assert!(
        sent.text.contains("\"holiday.dat\" (JPEG image)") && sent.text.contains("truncated"),
        "{}",
        sent.text
    );
}

#[tokio::test]
async fn a_damaged_pdf_is_refused_naming_it() {
    let pdf = fixture("report.pdf");
    let mut broken = pdf[..pdf.len() / 2].to_vec();
    broken.extend_from_slice(b"\r\n%%EOF garbage");
    let files = vec![(
        "filename=\"minutes.pdf\"".to_string(),
        "application/pdf",
        broken,
    )];
    let sent = send("", &files).await;
    assert_eq!(sent.code, 550, "{}", sent.text);
    assert!(
        sent.text.contains("\"minutes.pdf\" (PDF document)"),
        "{}",
        sent.text
    );
}

#[tokio::test]
async fn file_names_lose_members_names_and_addresses() {
    let photo = fixture("photo.png");
    let files = vec![
        (
            "filename=\"Joe_Smith_passport.png\"".to_string(),
            "image/png",
            photo.clone(),
        ),
        (
            "filename*=utf-8''joe%40real.example%20Joe%20Smith%20%E2%80%93%20cv.png".to_string(),
            "image/png",
            photo,
        ),
    ];
    let sent = send("", &files).await;
    assert_eq!(sent.code, 250, "{}", sent.text);
    let names: Vec<&str> = sent.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        let lower = n.to_lowercase();
        assert!(
            !lower.contains("joe") || lower.contains("remailer.test"),
            "{n}"
        );
        assert!(
            !lower.contains("smith") && !lower.contains("real.example"),
            "{n}"
        );
    }
    assert!(names[0].ends_with("_passport.png"), "{names:?}");
    assert!(names[1].ends_with(" – cv.png"), "{names:?}");
}

/// Writes the plain images the fixtures start from (`tests/fixtures/attachments/make.sh`
/// runs it, then adds the metadata with exiftool): 64×48 pixels of a fixed pattern.
#[test]
#[ignore = "regenerates fixtures; run by tests/fixtures/attachments/make.sh"]
fn write_plain_images() {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x ^ y) * 8) as u8])
    });
    let dir = fixtures();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&img)
        .unwrap();
    std::fs::write(dir.join("plain.jpg"), jpeg).unwrap();
    for (name, format) in [
        ("plain.png", image::ImageFormat::Png),
        ("plain.webp", image::ImageFormat::WebP),
        ("plain.tiff", image::ImageFormat::Tiff),
    ] {
        img.save_with_format(dir.join(name), format).unwrap();
    }
}
