//! Outbound DKIM signing (RFC 6376, RFC 8463): every message the service sends carries two
//! `DKIM-Signature` fields for `d=DOMAIN`, one `rsa-sha256` (what every receiver checks) and
//! one `ed25519-sha256` (short, fast, and what newer receivers prefer).
//!
//! # Keys
//! [`DkimKeys::load_or_create`] keeps the keys in `DATA_DIR/dkim/` (folder 0700, files 0600,
//! PEM-encoded PKCS#8 `PRIVATE KEY`; Ed25519 as PKCS#8 v1, RFC 8410, which OpenSSL 3, OpenDKIM
//! and rspamd read; files written as v2 by earlier versions are still read): `SELECTOR-rsa.pem` (RSA-2048) and `SELECTOR-ed.pem` (Ed25519). They are
//! made on first start and reloaded after; a key file readable by others is refused. The public
//! halves are published at `SELECTOR-rsa._domainkey.DOMAIN` and `SELECTOR-ed._domainkey.DOMAIN`
//! (see [`crate::dns_records`], printed by `remailer dns`). Keys are generated with aws-lc (the
//! crypto backend mail-auth already uses), so key generation takes milliseconds even in debug
//! builds and no second RSA implementation is linked in.
//!
//! # What is signed
//! Canonicalisation relaxed/relaxed, no `l=` (a body cannot be extended), no `x=`. The header
//! fields [`SIGNED_HEADERS`] are *over-signed*: each name is listed in `h=` once more than it
//! occurs in the message, so a header field of that name added anywhere after signing (a second
//! `From:`, a `Reply-To:`) breaks the signature.
//!
//! # Key rotation
//! 1. Set a new `[dkim] selector` in the config (e.g. `remailer2026`).
//! 2. Run `remailer dns --create-keys`: it creates the new key pair (nothing is signed with it
//!    yet) and prints its records. Publish the two new DKIM records next to the old ones.
//! 3. Once the new records resolve (wait at least their TTL), restart `remailer serve`; it now
//!    signs with the new selector.
//! 4. Keep the old records published for a week, so mail still queued or in transit with the
//!    old signatures verifies, then remove them and delete the old `DATA_DIR/dkim/OLD-*.pem`.
//!
//! The message passed to [`DkimKeys::sign`] must be in its final wire form (CRLF line endings,
//! no further header changes except prepending the returned fields).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use base64::Engine;
use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use thiserror::Error;

use crate::address::Domain;

/// Header fields covered by both signatures, each over-signed.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Reply-To",
];

/// Signed (and over-signed) only in messages that have them: the one-click unsubscribe
/// headers of one-way mail, which RFC 8058 requires the signature to cover.
const SIGNED_IF_PRESENT: &[&str] = &["List-Unsubscribe", "List-Unsubscribe-Post"];

#[derive(Debug, Error)]
pub enum DkimError {
    #[error("DKIM key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("DKIM key file {0} is readable by others; run: chmod 600 {0}")]
    Permissions(String),
    #[error("DKIM key file {path} is not a usable key: {reason}")]
    BadKey { path: String, reason: String },
    #[error("DKIM selector '{0}' is not valid (letters, digits, '-', '_' and '.' only)")]
    BadSelector(String),
    #[error("cannot generate a DKIM key: {0}")]
    Generate(String),
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// One DKIM public key as it is published: `SELECTOR._domainkey.DOMAIN TXT "VALUE"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimPublicKey {
    pub selector: String,
    /// `v=DKIM1; k=rsa; p=…` or `v=DKIM1; k=ed25519; p=…`.
    pub txt: String,
}

/// The service's two signing keys for one domain and selector prefix. Share behind an `Arc`;
/// signing needs only `&self`.
pub struct DkimKeys {
    domain: String,
    rsa: Named<RsaKey<Sha256>>,
    ed: Named<Ed25519Key>,
}

struct Named<K> {
    selector: String,
    key: K,
    /// The `p=` value: base64 of SubjectPublicKeyInfo (RSA) or the raw 32 bytes (Ed25519).
    public: String,
}

impl DkimKeys {
    /// Loads the two key files; `None` when either does not exist. Creates nothing.
    pub fn load(
        data_dir: &Path,
        domain: &Domain,
        selector: &str,
    ) -> Result<Option<Self>, DkimError> {
        check_selector(selector)?;
        let dir = data_dir.join("dkim");
        let exists = |s: &str| dir.join(format!("{selector}-{s}.pem")).exists();
        if !exists("rsa") || !exists("ed") {
            return Ok(None);
        }
        Self::load_or_create(data_dir, domain, selector).map(Some)
    }

    /// Loads `DATA_DIR/dkim/{selector}-rsa.pem` and `{selector}-ed.pem`, creating them (and the
    /// 0700 folder) when they do not exist yet.
    pub fn load_or_create(
        data_dir: &Path,
        domain: &Domain,
        selector: &str,
    ) -> Result<Self, DkimError> {
        check_selector(selector)?;
        let dir = data_dir.join("dkim");
        let io = |source| DkimError::Io {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        let rsa_selector = format!("{selector}-rsa");
        let ed_selector = format!("{selector}-ed");
        let rsa_der = load_or_generate(&dir.join(format!("{rsa_selector}.pem")), generate_rsa)?;
        let ed_der = load_or_generate(&dir.join(format!("{ed_selector}.pem")), generate_ed25519)?;
        Ok(DkimKeys {
            domain: domain.as_str().to_string(),
            rsa: rsa_key(rsa_selector, &rsa_der, &dir)?,
            ed: ed_key(ed_selector, &ed_der, &dir)?,
        })
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The two public keys to publish, RSA first.
    pub fn public_keys(&self) -> Vec<DkimPublicKey> {
        vec![
            DkimPublicKey {
                selector: self.rsa.selector.clone(),
                txt: format!("v=DKIM1; k=rsa; p={}", self.rsa.public),
            },
            DkimPublicKey {
                selector: self.ed.selector.clone(),
                txt: format!("v=DKIM1; k=ed25519; p={}", self.ed.public),
            },
        ]
    }

    /// Signs `message` (complete, CRLF line endings) and returns the two `DKIM-Signature:`
    /// header fields, each CRLF-terminated, to prepend to it.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let headers = oversigned_headers(message);
        let mut out = Vec::with_capacity(1024);
        for signature in [
            sign_one(&self.rsa, &self.domain, &headers, message)?,
            sign_one(&self.ed, &self.domain, &headers, message)?,
        ] {
            signature.write_header(&mut out);
        }
        Ok(out)
    }
}

fn sign_one<K: SigningKey<Hasher = Sha256>>(
    named: &Named<K>,
    domain: &str,
    headers: &[&str],
    message: &[u8],
) -> Result<mail_auth::dkim::Signature, DkimError> {
    DkimSigner::from_key(KeyRef(&named.key))
        .domain(domain)
        .selector(named.selector.as_str())
        .headers(headers.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map_err(|e| DkimError::Sign(e.to_string()))
}

/// Lets one long-lived key sign through a per-message [`DkimSigner`] (whose `h=` list depends
/// on the message) without cloning the key.
struct KeyRef<'a, K>(&'a K);

impl<K: SigningKey<Hasher = Sha256>> SigningKey for KeyRef<'_, K> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// The `h=` template for one message: every name of [`SIGNED_HEADERS`] once, plus once more for
/// each name the message has. mail-auth lists every occurrence of a name found in the message
/// and, once, each template entry it found no (further) occurrence for; so a present name ends
/// up listed (occurrences + 1) times and an absent one once.
fn oversigned_headers(message: &[u8]) -> Vec<&'static str> {
    let present = header_names(message);
    let mut h: Vec<&'static str> = SIGNED_HEADERS.to_vec();
    for name in SIGNED_HEADERS {
        if present
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()))
        {
            h.push(name);
        }
    }
    for name in SIGNED_IF_PRESENT {
        if present
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()))
        {
            h.extend([*name, *name]);
        }
    }
    h
}

/// Names of the header fields of `message`, up to the first empty line.
fn header_names(message: &[u8]) -> Vec<&[u8]> {
    let mut names = Vec::with_capacity(16);
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            names.push(line[..colon].trim_ascii());
        }
    }
    names
}

fn check_selector(selector: &str) -> Result<(), DkimError> {
    let ok = !selector.is_empty()
        && selector.len() <= 60
        && selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !selector.starts_with(['.', '-'])
        && !selector.ends_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(DkimError::BadSelector(selector.to_string()))
    }
}

/// Reads the PKCS#8 DER from the PEM file at `path`, or generates it, writes it (0600,
/// created exclusively, fsynced) and returns it.
fn load_or_generate(
    path: &Path,
    generate: fn() -> Result<Vec<u8>, DkimError>,
) -> Result<Vec<u8>, DkimError> {
    let io = |source| DkimError::Io {
        path: path.display().to_string(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(DkimError::Permissions(path.display().to_string()));
            }
            pem_decode(&text).ok_or_else(|| bad_key(path, "no PKCS#8 PRIVATE KEY block"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der = generate()?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(pem_encode(&der).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "created a new DKIM key");
            Ok(der)
        }
        Err(e) => Err(io(e)),
    }
}

fn generate_rsa() -> Result<Vec<u8>, DkimError> {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|e| DkimError::Generate(format!("RSA: {e}")))?;
    let der = pair
        .as_der()
        .map_err(|e| DkimError::Generate(format!("RSA: {e}")))?;
    Ok(der.as_ref().to_vec())
}

/// The DER prefix of an Ed25519 private key in PKCS#8 v1 (RFC 8410 §7): version 0, the
/// algorithm id 1.3.101.112, and the 32-byte seed as an OCTET STRING in an OCTET STRING.
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new Ed25519 key as PKCS#8 v1 (`PRIVATE KEY`, RFC 8410), the form OpenSSL 3, OpenDKIM
/// and rspamd read. aws-lc makes a v2 document (with the public key, RFC 5958); its seed is
/// taken from the same place in both forms. Old v2 files are still read.
fn generate_ed25519() -> Result<Vec<u8>, DkimError> {
    let v2 =
        Ed25519Key::generate_pkcs8().map_err(|e| DkimError::Generate(format!("Ed25519: {e}")))?;
    ed25519_v1(&v2).ok_or_else(|| DkimError::Generate("Ed25519: unexpected PKCS#8 layout".into()))
}

/// The PKCS#8 v1 form of an Ed25519 PKCS#8 v2 document (or None if it is not one).
fn ed25519_v1(v2: &[u8]) -> Option<Vec<u8>> {
    // v2: 30 53 | 02 01 01 | 30 05 06 03 2b 65 70 | 04 22 04 20 SEED(32) | a1 23 03 21 00 PUB(32)
    if v2.len() < 48 || v2[0] != 0x30 || v2[2..5] != [0x02, 0x01, 0x01] {
        return None;
    }
    if v2[5..16] != ED25519_V1_PREFIX[5..16] {
        return None;
    }
    let mut v1 = ED25519_V1_PREFIX.to_vec();
    v1.extend_from_slice(&v2[16..48]);
    Ed25519Key::from_pkcs8_maybe_unchecked_der(&v1).ok()?;
    Some(v1)
}

fn rsa_key(selector: String, der: &[u8], dir: &Path) -> Result<Named<RsaKey<Sha256>>, DkimError> {
    let path = dir.join(format!("{selector}.pem"));
    let pair = RsaKeyPair::from_pkcs8(der).map_err(|e| bad_key(&path, &e.to_string()))?;
    let spki = pair
        .public_key()
        .as_der()
        .map_err(|e| bad_key(&path, &e.to_string()))?;
    let key = RsaKey::<Sha256>::from_key_der(rustls_pki_types_pkcs8(der))
        .map_err(|e| bad_key(&path, &e.to_string()))?;
    Ok(Named {
        selector,
        key,
        public: b64(spki.as_ref()),
    })
}

fn ed_key(selector: String, der: &[u8], dir: &Path) -> Result<Named<Ed25519Key>, DkimError> {
    let path = dir.join(format!("{selector}.pem"));
    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der)
        .map_err(|e| bad_key(&path, &e.to_string()))?;
    let public = b64(&key.public_key());
    Ok(Named {
        selector,
        key,
        public,
    })
}

fn rustls_pki_types_pkcs8(der: &[u8]) -> rustls::pki_types::PrivateKeyDer<'_> {
    rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(der))
}

fn bad_key(path: &Path, reason: &str) -> DkimError {
    DkimError::BadKey {
        path: PathBuf::from(path).display().to_string(),
        reason: reason.to_string(),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

fn pem_encode(der: &[u8]) -> String {
    let body = b64(der);
    let mut out = String::with_capacity(body.len() + 80);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let start = text.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = start + text[start..].find(PEM_END)?;
    let body: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &Path) -> DkimKeys {
        DkimKeys::load_or_create(dir, &Domain::parse("remailer.test").unwrap(), "sel").unwrap()
    }

    #[test]
    fn keys_are_created_private_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let first = keys(tmp.path());
        let dir = tmp.path().join("dkim");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for file in ["sel-rsa.pem", "sel-ed.pem"] {
            let meta = fs::metadata(dir.join(file)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
            let text = fs::read_to_string(dir.join(file)).unwrap();
            assert!(text.starts_with(PEM_BEGIN), "{file}");
        }
        let again = keys(tmp.path());
        assert_eq!(first.public_keys(), again.public_keys());
        assert_eq!(first.public_keys()[0].selector, "sel-rsa");
        assert_eq!(first.public_keys()[1].selector, "sel-ed");
        assert!(first.public_keys()[1]
            .txt
            .starts_with("v=DKIM1; k=ed25519; p="));
    }

    #[test]
    fn ed25519_keys_are_written_as_pkcs8_v1_and_old_v2_files_still_load() {
        let tmp = tempfile::tempdir().unwrap();
        keys(tmp.path());
        let text = fs::read_to_string(tmp.path().join("dkim/sel-ed.pem")).unwrap();
        let der = pem_decode(&text).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_V1_PREFIX);
        // An install from before: the v2 document aws-lc makes.
        let old = tempfile::tempdir().unwrap();
        fs::create_dir_all(old.path().join("dkim")).unwrap();
        let v2 = Ed25519Key::generate_pkcs8().unwrap();
        assert_ne!(v2.len(), 48);
        let v2_file = old.path().join("dkim/sel-ed.pem");
        fs::write(&v2_file, pem_encode(&v2)).unwrap();
        fs::set_permissions(&v2_file, fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = keys(old.path());
        let v1 = ed25519_v1(&v2).unwrap();
        let from_v1 = Ed25519Key::from_pkcs8_maybe_unchecked_der(&v1).unwrap();
        assert_eq!(
            loaded.public_keys()[1].txt,
            format!("v=DKIM1; k=ed25519; p={}", b64(&from_v1.public_key()))
        );
    }

    #[test]
    fn readable_key_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        keys(tmp.path());
        let file = tmp.path().join("dkim/sel-ed.pem");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = DkimKeys::load_or_create(tmp.path(), &Domain::parse("a.test").unwrap(), "sel");
        assert!(matches!(err, Err(DkimError::Permissions(_))));
    }

    #[test]
    fn bad_selector_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Domain::parse("a.test").unwrap();
        for bad in ["", "a b", "../x", "x\n"] {
            assert!(matches!(
                DkimKeys::load_or_create(tmp.path(), &d, bad),
                Err(DkimError::BadSelector(_))
            ));
        }
    }

    #[test]
    fn oversigning_lists_present_names_once_more() {
        let msg = b"From: a@x.test\r\nTo: b@y.test\r\nto: c@y.test\r\n\tcontinued\r\nX-Other: 1\r\n\r\nFrom: body\r\n";
        let h = oversigned_headers(msg);
        assert_eq!(h.iter().filter(|n| **n == "From").count(), 2);
        assert_eq!(h.iter().filter(|n| **n == "To").count(), 2);
        assert_eq!(h.iter().filter(|n| **n == "Reply-To").count(), 1);
        assert_eq!(h.len(), SIGNED_HEADERS.len() + 2);
    }

    #[test]
    fn signature_fields_cover_headers() {
        let tmp = tempfile::tempdir().unwrap();
        let k = keys(tmp.path());
        let msg = b"From: a@remailer.test\r\nTo: b@y.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = String::from_utf8(k.sign(msg).unwrap()).unwrap();
        assert_eq!(out.matches("DKIM-Signature: ").count(), 2, "{out}");
        assert!(out.contains("a=rsa-sha256") && out.contains("a=ed25519-sha256"));
        assert!(out.contains("c=relaxed/relaxed") && out.contains("d=remailer.test"));
        assert!(out.ends_with("\r\n"));
        let unfolded = out.replace("\r\n\t", "");
        assert!(unfolded.contains("h=Subject:To:From:"), "{unfolded}");
    }
}
