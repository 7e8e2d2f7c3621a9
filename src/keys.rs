//! The service's secrets: one master key in `DATA_DIR/keys/master.key` (0600, created on
//! first start, never in the database) and the keys derived from it for each purpose:
//! sealing real addresses (XChaCha20-Poly1305), the keyed lookup hash of an address, opaque
//! thread IDs, the marker on mail the service sent, bounce-address tokens, and the opt-out
//! hash, opt-out links and send counts of the one-way form, and the tags domains are logged as.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;

use crate::address::RealAddress;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} is malformed (expected 64 hex digits)")]
    Malformed(String),
    #[error("key file {0} is readable by others; run: chmod 600 {0}")]
    Permissions(String),
    #[error("sealed data could not be opened (wrong key or corrupted)")]
    Open,
}

/// What a derived key is for; each purpose has its own key.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Seal,
    AddressHash,
    ThreadId,
    Marker,
    Bounce,
    /// The keyed hash under which a bounce token is remembered as seen.
    BounceRecord,
    Token,
    /// The keyed hash an opt-out is stored as (not the alias lookup hash, so the two tables
    /// cannot be joined).
    OptOut,
    /// The MAC that makes an opt-out link a proof of receipt.
    OptOutLink,
    /// The keyed hash one-way send counts are kept under.
    SendCount,
    /// The signed CSRF token of a web form.
    Csrf,
    /// The per-address counter of confirmation mails.
    MailLimit,
    /// The in-memory key of a web client's address.
    Client,
    /// The tag a domain is logged as (see [`crate::logtag`]).
    LogTag,
    /// The fingerprint of the master key kept in the database.
    KeyCheck,
    /// The keyed hash a recipient domain's cached MTA-STS policy is stored under.
    MtaStsDomain,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Seal => b"remailer/seal/v1",
            Purpose::AddressHash => b"remailer/address-hash/v1",
            Purpose::ThreadId => b"remailer/thread-id/v1",
            Purpose::Marker => b"remailer/marker/v1",
            Purpose::Bounce => b"remailer/bounce/v1",
            Purpose::BounceRecord => b"remailer/bounce-record/v1",
            Purpose::Token => b"remailer/token/v1",
            Purpose::OptOut => b"remailer/opt-out/v1",
            Purpose::OptOutLink => b"remailer/opt-out-link/v1",
            Purpose::SendCount => b"remailer/send-count/v1",
            Purpose::Csrf => b"remailer/csrf/v1",
            Purpose::MailLimit => b"remailer/mail-limit/v1",
            Purpose::Client => b"remailer/client/v1",
            Purpose::LogTag => b"remailer/log-tag/v1",
            Purpose::KeyCheck => b"remailer/key-check/v1",
            Purpose::MtaStsDomain => b"remailer/mta-sts-domain/v1",
        }
    }
}

/// The derived keys. Cheap to clone behind an `Arc`.
pub struct Keys {
    master: [u8; 32],
    cipher: XChaCha20Poly1305,
    /// Per purpose, the HMAC state already keyed with its derived key (made on first use):
    /// a MAC then costs the data's hashing only, not a derivation and a key set-up each time.
    macs: [OnceLock<HmacSha256>; PURPOSES],
}

/// Room for this many purposes (checked by a test).
const PURPOSES: usize = 32;

impl Keys {
    /// The path of the master key file in `data_dir`.
    pub fn path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join("keys").join("master.key")
    }

    /// Loads `DATA_DIR/keys/master.key`; `None` when the file does not exist. Creates
    /// nothing.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, KeyError> {
        let path = Self::path(data_dir);
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mode = fs::metadata(&path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions(path.display().to_string()));
        }
        let bytes = hex::decode(text.trim())
            .map_err(|_| KeyError::Malformed(path.display().to_string()))?;
        let master: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Malformed(path.display().to_string()))?;
        Ok(Some(Self::from_master(master)))
    }

    /// Creates a new master key file (and the 0700 folder); fails if the file exists.
    /// Callers must first make sure no data sealed with an earlier key exists.
    pub fn create(data_dir: &Path) -> Result<Self, KeyError> {
        let dir = data_dir.join("keys");
        let path = Self::path(data_dir);
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        let mut master = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut master);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        f.write_all(format!("{}\n", hex::encode(master)).as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)?;
        tracing::info!(path = %path.display(), "created a new master key");
        Ok(Self::from_master(master))
    }

    /// Loads the master key, creating it when it does not exist yet (tests and fresh data
    /// dirs; the service goes through [`crate::data_dir`], which checks for sealed data first).
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        match Self::load(data_dir)? {
            Some(keys) => Ok(keys),
            None => Self::create(data_dir),
        }
    }

    /// A fingerprint of the master key (a keyed hash of a fixed string), stored in the
    /// database so that a start with another key is stopped before it touches sealed data.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.mac(Purpose::KeyCheck, b"remailer master key check")
    }

    pub fn from_master(master: [u8; 32]) -> Self {
        let seal_key = derive(&master, Purpose::Seal);
        Keys {
            master,
            cipher: XChaCha20Poly1305::new(&seal_key.into()),
            macs: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// HMAC-SHA256 under the key for `purpose`.
    pub fn mac(&self, purpose: Purpose, data: &[u8]) -> [u8; 32] {
        let keyed = self.macs[purpose as usize].get_or_init(|| {
            let key = derive(&self.master, purpose);
            <HmacSha256 as Mac>::new_from_slice(&key).expect("any key length")
        });
        let mut mac = keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a MAC (or a prefix of one, at least 8 bytes).
    pub fn verify_mac(&self, purpose: Purpose, data: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let full = self.mac(purpose, data);
        tag.len() >= 8 && tag.len() <= 32 && bool::from(full[..tag.len()].ct_eq(tag))
    }

    /// The keyed lookup hash of an address (over its normalised form).
    pub fn address_hash(&self, addr: &RealAddress) -> [u8; 32] {
        self.mac(Purpose::AddressHash, addr.normalized().as_bytes())
    }

    /// Encrypts with a random nonce; output is `nonce || ciphertext+tag`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(XNonce::from_slice(&nonce), plaintext)
                .expect("encryption cannot fail"),
        );
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 24 + 16 {
            return Err(KeyError::Open);
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| KeyError::Open)
    }
}

fn derive(master: &[u8; 32], purpose: Purpose) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("any key length");
    mac.update(purpose.label());
    mac.finalize().into_bytes().into()
}

/// Random bytes, hex-encoded (for IDs and tokens).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purpose_has_a_mac_slot_and_the_cached_state_gives_the_same_mac() {
        assert!((Purpose::MtaStsDomain as usize) < PURPOSES);
        assert!((Purpose::LogTag as usize) < PURPOSES);
        let keys = Keys::from_master([7; 32]);
        let fresh = |p: Purpose, data: &[u8]| -> [u8; 32] {
            let key = derive(&[7; 32], p);
            let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().into()
        };
        for _ in 0..2 {
            assert_eq!(
                keys.mac(Purpose::ThreadId, b"a"),
                fresh(Purpose::ThreadId, b"a")
            );
            assert_eq!(
                keys.mac(Purpose::Marker, b"b"),
                fresh(Purpose::Marker, b"b")
            );
        }
        assert_ne!(
            keys.mac(Purpose::ThreadId, b"a"),
            keys.mac(Purpose::Marker, b"a")
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = Keys::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join("keys/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = Keys::load_or_create(dir.path()).unwrap();
        let sealed = k1.seal(b"joe@real.example");
        assert_ne!(&sealed[24..], b"joe@real.example");
        assert_eq!(k2.open(&sealed).unwrap(), b"joe@real.example");
        assert_eq!(k1.mac(Purpose::Marker, b"x"), k2.mac(Purpose::Marker, b"x"));
        assert_ne!(k1.mac(Purpose::Marker, b"x"), k1.mac(Purpose::Bounce, b"x"));
    }

    #[test]
    fn tampered_or_loose_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keys::load_or_create(dir.path()).unwrap();
        let mut sealed = k.seal(b"secret");
        sealed[30] ^= 1;
        assert!(k.open(&sealed).is_err());
        let path = dir.path().join("keys/master.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keys::load_or_create(dir.path()),
            Err(KeyError::Permissions(_))
        ));
    }

    #[test]
    fn mac_prefix_verification() {
        let k = Keys::from_master([7; 32]);
        let tag = k.mac(Purpose::Bounce, b"id");
        assert!(k.verify_mac(Purpose::Bounce, b"id", &tag[..10]));
        assert!(!k.verify_mac(Purpose::Bounce, b"id2", &tag[..10]));
        assert!(!k.verify_mac(Purpose::Bounce, b"id", &tag[..4]));
    }
}
