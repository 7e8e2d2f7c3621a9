//! Test domains that send signed mail: publish SPF/DKIM/DMARC records for a domain in the
//! test DNS server, and DKIM-sign messages with its key (mail-auth's signer), as a real
//! provider would.

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};

use super::dns_server::TestDns;

/// The loopback address the test domains' SPF records authorise.
pub const GOOD_IP: &str = "127.0.0.2";
/// A loopback address no SPF record authorises.
pub const BAD_IP: &str = "127.0.0.66";

/// A sending domain's signing key.
pub enum Key {
    Ed(Vec<u8>),
    Rsa(Vec<u8>),
}

/// Publishes SPF (GOOD_IP allowed, `all_qualifier` for the rest), an Ed25519 DKIM key at
/// selector `s1`, and the DMARC record if given. Returns the private key.
pub fn publish(dns: &TestDns, domain: &str, all_qualifier: &str, dmarc: Option<&str>) -> Key {
    dns.add_txt(domain, &format!("v=spf1 ip4:{GOOD_IP} {all_qualifier}all"));
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let public = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap().public_key();
    dns.add_txt(
        &format!("s1._domainkey.{domain}"),
        &format!("v=DKIM1; k=ed25519; p={}", b64(&public)),
    );
    if let Some(record) = dmarc {
        dns.add_txt(&format!("_dmarc.{domain}"), record);
    }
    Key::Ed(pkcs8)
}

/// Like [`publish`] with an RSA-2048 DKIM key.
pub fn publish_rsa(dns: &TestDns, domain: &str, dmarc: &str) -> Key {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    dns.add_txt(domain, &format!("v=spf1 ip4:{GOOD_IP} -all"));
    let pair =
        aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap().as_ref().to_vec();
    let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
    dns.add_txt(
        &format!("s1._domainkey.{domain}"),
        &format!("v=DKIM1; k=rsa; p={}", b64(&spki)),
    );
    dns.add_txt(&format!("_dmarc.{domain}"), dmarc);
    Key::Rsa(pkcs8)
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `message` with a DKIM-Signature of `domain` (selector s1) prepended.
pub fn signed(key: &Key, domain: &str, message: &[u8]) -> Vec<u8> {
    let headers = ["From", "To", "Subject", "Date", "Message-ID"];
    let signature = match key {
        Key::Ed(pkcs8) => DkimSigner::from_key(Ed25519Key::from_pkcs8_der(pkcs8).unwrap())
            .domain(domain)
            .selector("s1")
            .headers(headers)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .unwrap(),
        Key::Rsa(pkcs8) => {
            let der = rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8.as_slice().into());
            DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
                .domain(domain)
                .selector("s1")
                .headers(headers)
                .sign(message)
                .unwrap()
        }
    };
    let mut out = signature.to_header().into_bytes();
    out.extend_from_slice(message);
    out
}
