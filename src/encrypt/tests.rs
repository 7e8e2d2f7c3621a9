//! Unit tests for [`super`]: key validation and the PGP/MIME structure, decrypted in-process
//! with rpgp (the integration test, `tests/pgp.rs`, decrypts with GnuPG).

use super::*;
use pgp::composed::{Message, SignedSecretKey};
use pgp::ser::Serialize;
use pgp::types::Password;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pgp/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

fn now() -> u64 {
    crate::store::now_unix() as u64
}

fn decrypt(armored: &str, secret: &str) -> Vec<u8> {
    let (sk, _) = SignedSecretKey::from_string(&String::from_utf8(fixture(secret)).unwrap())
        .expect("secret key");
    let (msg, _) = Message::from_string(armored).expect("message");
    let mut plain = msg.decrypt(&Password::empty(), &sk).expect("decrypts");
    plain.as_data_vec().unwrap()
}

const MESSAGE: &[u8] = b"From: joe@remailer.test\r\n\
To: ann@remailer.test\r\n\
Subject: the secret plan\r\n\
Date: Tue, 1 Dec 2026 18:00:00 +0000\r\n\
Message-ID: <abc@remailer.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain;\r\n charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Meet at the old mill.\r\n";

/// The armored block of an outer message.
fn armored_part(outer: &str) -> &str {
    let start = outer.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = outer.find("-----END PGP MESSAGE-----").unwrap() + 25;
    &outer[start..end]
}

#[test]
fn keys_are_validated() {
    let key = PublicKey::parse(&fixture("member.asc"), now()).unwrap();
    assert_eq!(key.fingerprint().len(), 40);
    assert!(key.usable_at(now()) && key.expires_at().is_none());
    assert!(PublicKey::parse(&fixture("rsa.asc"), now()).is_ok());
    assert_eq!(
        PublicKey::parse(&fixture("sign-only.asc"), now()).unwrap_err(),
        KeyError::NoEncryptionKey
    );
    assert_eq!(
        PublicKey::parse(&fixture("expired.asc"), now()).unwrap_err(),
        KeyError::Expired
    );
    // 2020-01-01T12:00Z: the expired key was still valid then.
    assert!(PublicKey::parse(&fixture("expired.asc"), 1_577_880_000).is_ok());
    assert_eq!(
        PublicKey::parse(b"hello", now()).unwrap_err(),
        KeyError::Unparseable
    );
    let mut big = fixture("member.asc");
    big.resize(MAX_KEY_BYTES + 1, b'\n');
    assert_eq!(
        PublicKey::parse(&big, now()).unwrap_err(),
        KeyError::TooLarge
    );
    // A secret key block is not a public key.
    assert!(PublicKey::parse(&fixture("member-secret.asc"), now()).is_err());
}

#[test]
fn binary_keys_are_read_too() {
    let armored = PublicKey::parse(&fixture("member.asc"), now()).unwrap();
    let binary = armored.key.to_bytes().unwrap();
    let key = PublicKey::parse(&binary, now()).unwrap();
    assert_eq!(key.fingerprint(), armored.fingerprint());
}

#[test]
fn the_outer_message_is_rfc_3156_and_hides_the_subject() {
    let key = PublicKey::parse(&fixture("member.asc"), now()).unwrap();
    let outer = String::from_utf8(encrypt_message(MESSAGE, &key).unwrap()).unwrap();
    let (head, body) = outer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Subject: ...\r\n"), "{head}");
    assert!(!outer.contains("secret plan") && !outer.contains("old mill"));
    for kept in [
        "From: joe@remailer.test",
        "To: ann@remailer.test",
        "Message-ID: <abc@remailer.test>",
        "MIME-Version: 1.0",
    ] {
        assert!(head.contains(kept), "{kept} in {head}");
    }
    assert!(head.contains("multipart/encrypted; protocol=\"application/pgp-encrypted\""));
    assert!(!head.contains("charset=utf-8") && !head.contains("Transfer-Encoding"));
    assert!(body.contains("Content-Type: application/pgp-encrypted\r\n"));
    assert!(body.contains("Version: 1\r\n"));
    assert!(body.contains("Content-Type: application/octet-stream"));
    assert!(!outer.replace("\r\n", "").contains('\n'), "CRLF only");
    let parsed = mail_parser::MessageParser::new()
        .parse(outer.as_bytes())
        .unwrap();
    assert_eq!(parsed.parts.len(), 3, "multipart with two parts");
}

#[test]
fn the_inner_entity_round_trips_with_protected_headers() {
    for (public, secret) in [
        ("member.asc", "member-secret.asc"),
        ("rsa.asc", "rsa-secret.asc"),
    ] {
        let key = PublicKey::parse(&fixture(public), now()).unwrap();
        let outer = String::from_utf8(encrypt_message(MESSAGE, &key).unwrap()).unwrap();
        let inner = String::from_utf8(decrypt(armored_part(&outer), secret)).unwrap();
        let (head, body) = inner.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "Meet at the old mill.\r\n");
        assert!(head.contains("Subject: the secret plan\r\n"));
        assert!(head.contains("From: joe@remailer.test\r\n"));
        assert!(head
            .contains("Content-Type: text/plain;\r\n charset=utf-8;\r\n protected-headers=\"v1\""));
        assert!(head.contains("Content-Transfer-Encoding: 8bit"));
        assert!(!head.contains("MIME-Version"));
    }
}

#[test]
fn an_expired_key_encrypts_nothing() {
    let key = PublicKey::load(&fixture("expired.asc")).unwrap();
    assert!(!key.usable_at(now()));
    assert!(matches!(
        encrypt_message(MESSAGE, &key),
        Err(EncryptError::Expired)
    ));
    assert!(encrypt_message_at(MESSAGE, &key, 1_577_880_000).is_ok());
}

#[test]
fn a_message_without_subject_or_content_type_still_gets_both() {
    let key = PublicKey::parse(&fixture("member.asc"), now()).unwrap();
    let msg = b"From: a@remailer.test\r\nTo: b@remailer.test\r\n\r\nhi\r\n";
    let outer = String::from_utf8(encrypt_message(msg, &key).unwrap()).unwrap();
    assert!(outer.contains("Subject: ...\r\n"));
    let inner = String::from_utf8(decrypt(armored_part(&outer), "member-secret.asc")).unwrap();
    assert!(inner.contains(
        "Content-Type: text/plain; charset=us-ascii;\r\n protected-headers=\"v1\"\r\n\r\nhi\r\n"
    ));
    assert!(matches!(
        encrypt_message(b"no header", &key),
        Err(EncryptError::NoHeader)
    ));
}
