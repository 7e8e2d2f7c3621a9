//! DKIM signing cost: a 4 KB message signed as every outbound message is (RSA-2048 and
//! Ed25519, [`remailer::dkim::DkimKeys::sign`]), and RSA-2048 alone (mail-auth's signer with
//! the same key). Each phase runs `ROUNDS` times, interleaved, and the best mean per
//! signature is printed.
//!
//! Run: `cargo bench --bench dkim` (`DKIM_BENCH_N`, default 2000, sets the signatures per round).

use std::time::{Duration, Instant};

use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use remailer::address::Domain;
use remailer::dkim::DkimKeys;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

const ROUNDS: usize = 5;

fn message() -> Vec<u8> {
    let mut m = b"From: alias@remailer.test\r\nTo: ann@mail.example\r\nSubject: bench\r\n\
Date: Tue, 1 Dec 2026 12:00:00 +0000\r\nMessage-ID: <bench@remailer.test>\r\n\r\n"
        .to_vec();
    while m.len() < 4096 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    m
}

fn best(label: &str, times: &[Duration], n: usize) {
    let best = times.iter().min().unwrap();
    let per = best.as_secs_f64() * 1e6 / n as f64;
    println!("{label:<34} {per:>8.1} us per message (best of {ROUNDS} rounds of {n})");
}

fn main() {
    let n: usize = std::env::var("DKIM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let domain = Domain::parse("remailer.test").unwrap();
    let keys = DkimKeys::load_or_create(dir.path(), &domain, "bench").unwrap();
    let der = PrivateKeyDer::from_pem_file(dir.path().join("dkim/bench-rsa.pem")).unwrap();
    let rsa = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
        .domain("remailer.test")
        .selector("bench-rsa")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed);
    let msg = message();
    let (mut both, mut rsa_only) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(keys.sign(&msg).unwrap());
        }
        both.push(t.elapsed());
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(rsa.sign(&msg).unwrap().to_header());
        }
        rsa_only.push(t.elapsed());
    }
    best("RSA-2048 + Ed25519 (DkimKeys::sign)", &both, n);
    best("RSA-2048 alone (mail-auth)", &rsa_only, n);
}
