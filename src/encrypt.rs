//! `encrypt`: a member's OpenPGP public key and encrypted delivery to it (PGP/MIME, RFC 3156).
//!
//! [`PublicKey::parse`] validates a key when a member registers it: it parses (armored or
//! binary, at most [`MAX_KEY_BYTES`]), is an OpenPGP v4 key, is not revoked, and has a
//! self-signed encryption-capable (sub)key that has not expired. Only self-signatures are
//! trusted (others are ignored); the bytes as given are kept, sealed by the caller.
//!
//! [`encrypt_message`] is pure: it takes a message as `rewrite` emitted it and returns the
//! outer RFC 3156 message. Outer headers are the rewritten envelope headers with
//! `Subject: ...`; the encrypted inner entity carries the original Content-Type tree and
//! the protected headers (Subject, From, To, Date, Message-ID, …) with
//! `protected-headers="v1"` on its Content-Type (RFC 9788 / Autocrypt "Memory Hole").
//! The caller DKIM-signs the result, exactly where a clear message is signed
//! (ARCHITECTURE.md §4).

use std::io::Cursor;

use pgp::composed::{ArmorOptions, Deserializable, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, KeyVersion, Tag};
use rand::rngs::OsRng;
use thiserror::Error;

/// The largest key accepted (armored or binary).
pub const MAX_KEY_BYTES: usize = 32 * 1024;

/// Why a key is refused; the texts are shown to the member on the web and in the CLI.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key is larger than {MAX_KEY_BYTES} bytes; export it with gpg --export --export-options export-minimal")]
    TooLarge,
    #[error("this is not an OpenPGP public key (paste the output of gpg --armor --export)")]
    Unparseable,
    #[error("only OpenPGP version 4 keys are supported")]
    Unsupported,
    #[error("the key is revoked")]
    Revoked,
    #[error("the key has expired")]
    Expired,
    #[error("the key has no valid encryption subkey (only signing keys)")]
    NoEncryptionKey,
}

/// Why a message could not be encrypted.
#[derive(Debug, Error)]
pub enum EncryptError {
    #[error("the member's key has expired")]
    Expired,
    #[error("the message has no header section")]
    NoHeader,
    #[error("OpenPGP encryption failed: {0}")]
    Pgp(String),
}

/// Where encryption goes: the primary key itself or one of its subkeys.
#[derive(Debug, Clone, Copy)]
enum Target {
    Primary,
    Subkey(usize),
}

/// One encryption-capable key and the time it expires (Unix seconds; None: never).
#[derive(Debug, Clone)]
struct Encryptor {
    target: Target,
    created: u32,
    expires: Option<u64>,
}

/// A member's validated OpenPGP public key.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: SignedPublicKey,
    bytes: Vec<u8>,
    fingerprint: String,
    /// When the primary key expires (None: never).
    primary_expires: Option<u64>,
    encryptors: Vec<Encryptor>,
}

impl PublicKey {
    /// Validates a key a member registers: it must be usable at `now` (Unix seconds).
    pub fn parse(bytes: &[u8], now: u64) -> Result<Self, KeyError> {
        let key = Self::load(bytes)?;
        if key.primary_expires.is_some_and(|t| t <= now) {
            return Err(KeyError::Expired);
        }
        if key.encryptor(now).is_none() {
            return Err(if key.encryptors.iter().any(|e| e.expires.is_some()) {
                KeyError::Expired
            } else {
                KeyError::NoEncryptionKey
            });
        }
        Ok(key)
    }

    /// Reads a key that was validated when it was stored; it may have expired since.
    pub fn load(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLarge);
        }
        let key = read_key(bytes)?;
        if key.primary_key.version() != KeyVersion::V4 {
            return Err(KeyError::Unsupported);
        }
        let primary = &key.primary_key;
        if key
            .details
            .revocation_signatures
            .iter()
            .any(|s| s.verify_key(primary).is_ok())
        {
            return Err(KeyError::Revoked);
        }
        let self_sig = latest_self_signature(&key).ok_or(KeyError::Unparseable)?;
        let primary_expires = expiry(primary.created_at().as_secs(), self_sig);
        let mut encryptors = Vec::new();
        let flags = self_sig.key_flags();
        if (flags.encrypt_comms() || flags.encrypt_storage()) && primary.algorithm().can_encrypt() {
            encryptors.push(Encryptor {
                target: Target::Primary,
                created: primary.created_at().as_secs(),
                expires: primary_expires,
            });
        }
        for (i, sub) in key.public_subkeys.iter().enumerate() {
            if let Some(e) = subkey_encryptor(&key, i, sub) {
                encryptors.push(e);
            }
        }
        let fingerprint = format!("{:X}", primary.fingerprint());
        Ok(PublicKey {
            bytes: bytes.to_vec(),
            fingerprint,
            primary_expires,
            encryptors,
            key,
        })
    }

    /// The key as the member gave it (to be sealed before it is stored).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The primary key's fingerprint in upper-case hex.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether mail can be encrypted to the key at `now` (Unix seconds).
    pub fn usable_at(&self, now: u64) -> bool {
        self.encryptor(now).is_some()
    }

    /// When the key stops being usable (Unix seconds; None: never).
    pub fn expires_at(&self) -> Option<u64> {
        if self.encryptors.is_empty() {
            return self.primary_expires;
        }
        let sub = self
            .encryptors
            .iter()
            .map(|e| e.expires)
            .try_fold(0u64, |acc, e| e.map(|e| acc.max(e)));
        match (self.primary_expires, sub) {
            (Some(p), Some(s)) => Some(p.min(s)),
            (p, s) => p.or(s),
        }
    }

    /// The newest encryption key valid at `now`.
    fn encryptor(&self, now: u64) -> Option<&Encryptor> {
        if self.primary_expires.is_some_and(|t| t <= now) {
            return None;
        }
        self.encryptors
            .iter()
            .filter(|e| e.expires.is_none_or(|t| t > now))
            .max_by_key(|e| e.created)
    }
}

fn read_key(bytes: &[u8]) -> Result<SignedPublicKey, KeyError> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    let parsed = match text {
        Some(t) if t.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----") => {
            SignedPublicKey::from_string(t).map(|(k, _)| k)
        }
        _ => SignedPublicKey::from_bytes(Cursor::new(bytes)),
    };
    parsed.map_err(|_| KeyError::Unparseable)
}

/// The newest verified self-signature on the primary key (direct-key or User ID).
fn latest_self_signature(key: &SignedPublicKey) -> Option<&Signature> {
    let primary = &key.primary_key;
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.verify_key(primary).is_ok());
    let certs = key.details.users.iter().flat_map(|u| {
        u.signatures.iter().filter(move |s| {
            s.is_certification() && s.verify_certification(primary, Tag::UserId, &u.id).is_ok()
        })
    });
    direct
        .chain(certs)
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

/// The expiry a self-signature gives a key created at `created` (None: never).
fn expiry(created: u32, sig: &Signature) -> Option<u64> {
    sig.key_expiration_time()
        .map(|d| d.as_secs())
        .filter(|&d| d > 0)
        .map(|d| created as u64 + d as u64)
}

/// A subkey that may encrypt: its newest verified binding says so and it is not revoked.
fn subkey_encryptor(
    key: &SignedPublicKey,
    index: usize,
    sub: &pgp::composed::SignedPublicSubKey,
) -> Option<Encryptor> {
    let primary = &key.primary_key;
    let verified: Vec<&Signature> = sub
        .signatures
        .iter()
        .filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok())
        .collect();
    if verified
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
    {
        return None;
    }
    let binding = verified
        .into_iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding))
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))?;
    let flags = binding.key_flags();
    let can = (flags.encrypt_comms() || flags.encrypt_storage())
        && sub.key.algorithm().can_encrypt()
        && sub.key.version() == KeyVersion::V4;
    can.then(|| Encryptor {
        target: Target::Subkey(index),
        created: sub.key.created_at().as_secs(),
        expires: expiry(sub.key.created_at().as_secs(), binding),
    })
}

/// Encrypts a rewritten message to `key` as PGP/MIME (RFC 3156); see the module comment.
pub fn encrypt_message(rewritten: &[u8], key: &PublicKey) -> Result<Vec<u8>, EncryptError> {
    encrypt_message_at(rewritten, key, crate::store::now_unix().max(0) as u64)
}

/// [`encrypt_message`] with the key's validity checked at `now` (Unix seconds).
pub fn encrypt_message_at(
    rewritten: &[u8],
    key: &PublicKey,
    now: u64,
) -> Result<Vec<u8>, EncryptError> {
    let enc = key.encryptor(now).ok_or(EncryptError::Expired)?;
    let normal = crate::wire::normalize(rewritten);
    let (fields, body) = split_header(&normal).ok_or(EncryptError::NoHeader)?;
    let inner = inner_entity(&fields, body);
    let armored = encrypt_bytes(inner, key, enc)?;
    Ok(outer_message(&fields, &armored))
}

fn encrypt_bytes(inner: Vec<u8>, key: &PublicKey, enc: &Encryptor) -> Result<String, EncryptError> {
    let pgp_err = |e: pgp::errors::Error| EncryptError::Pgp(e.to_string());
    let mut builder =
        MessageBuilder::from_bytes("", inner).seipd_v1(OsRng, SymmetricKeyAlgorithm::AES256);
    match enc.target {
        Target::Primary => builder.encrypt_to_key(OsRng, &key.key.primary_key),
        Target::Subkey(i) => builder.encrypt_to_key(OsRng, &key.key.public_subkeys[i].key),
    }
    .map_err(pgp_err)?;
    builder
        .to_armored_string(OsRng, ArmorOptions::default())
        .map_err(pgp_err)
}

/// One header field: its name and the whole raw field (folded lines, CRLF included).
struct Field<'a> {
    name: String,
    raw: &'a [u8],
}

impl Field<'_> {
    fn is_content(&self) -> bool {
        self.name.starts_with("content-")
    }
}

/// The header fields and the body of a message (CRLF line ends, as `rewrite` emits).
fn split_header(msg: &[u8]) -> Option<(Vec<Field<'_>>, &[u8])> {
    let end = memchr::memmem::find(msg, b"\r\n\r\n")?;
    let (head, body) = (&msg[..end + 2], &msg[end + 4..]);
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < head.len() {
        let line_end = memchr::memmem::find(&head[i..], b"\r\n").map_or(head.len(), |p| i + p + 2);
        let continues = head
            .get(line_end)
            .is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continues {
            let raw = &head[start..line_end];
            let name = raw.split(|b| *b == b':').next().unwrap_or_default();
            fields.push(Field {
                name: String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
                raw,
            });
            start = line_end;
        }
        i = line_end;
    }
    Some((fields, body))
}

/// The inner entity: every header but MIME-Version (the protected headers), the Content-Type
/// marked `protected-headers="v1"`, then the original body.
fn inner_entity(fields: &[Field<'_>], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    let mut typed = false;
    for f in fields.iter().filter(|f| f.name != "mime-version") {
        if f.name == "content-type" {
            let value = f.raw.strip_suffix(b"\r\n").unwrap_or(f.raw);
            out.extend_from_slice(value);
            out.extend_from_slice(b";\r\n protected-headers=\"v1\"\r\n");
            typed = true;
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    if !typed {
        out.extend_from_slice(
            b"Content-Type: text/plain; charset=us-ascii;\r\n protected-headers=\"v1\"\r\n",
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The outer RFC 3156 message around the armored ciphertext.
fn outer_message(fields: &[Field<'_>], armored: &str) -> Vec<u8> {
    let boundary = format!("=_pgp_{}", crate::keys::random_hex(12));
    let mut out = Vec::with_capacity(armored.len() + 2048);
    for f in fields
        .iter()
        .filter(|f| !f.is_content() && f.name != "mime-version")
    {
        if f.name == "subject" {
            out.extend_from_slice(b"Subject: ...\r\n");
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    if !fields.iter().any(|f| f.name == "subject") {
        out.extend_from_slice(b"Subject: ...\r\n");
    }
    let head = format!(
        "MIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
         boundary=\"{boundary}\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 3156).\r\n\
         --{boundary}\r\n\
         Content-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\r\n\
         Version: 1\r\n\r\n\
         --{boundary}\r\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
    );
    out.extend_from_slice(head.as_bytes());
    for line in armored.lines() {
        out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests;
