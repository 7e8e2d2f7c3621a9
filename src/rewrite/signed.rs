//! Signed and encrypted content. A signature would break under the rewrite and would name
//! the signer, so signed mail is refused ([`RewriteError::Signed`]) unless the caller asked
//! to strip signatures. Stripping keeps the signed content: the first part of a
//! `multipart/signed` (done in [`super::mime`]) or the text between the armour lines of an
//! inline PGP signature. Opaque S/MIME signed-data (`application/pkcs7-mime`) wraps the
//! content inside the signature itself, so it cannot be stripped without an ASN.1 parser and
//! is always refused.
//!
//! Encrypted content (`multipart/encrypted`, S/MIME enveloped-data, an inline
//! `-----BEGIN PGP MESSAGE-----`) cannot be checked for leaks at all and is refused with its
//! own explanation ([`RewriteError::Encrypted`]), wherever it sits (also inside a forwarded
//! message). Which S/MIME content it is comes from the `smime-type` parameter (parsed by
//! mail-parser) or, when that is missing, from the content-type OID at the start of the DER.

use std::borrow::Cow;

use mail_parser::ContentType;

use super::{RewriteError, Uncheckable};

const PGP_ARMOUR: &str = "-----BEGIN PGP ";
const PGP_BEGIN: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const PGP_MESSAGE: &str = "-----BEGIN PGP MESSAGE-----";
const PGP_SIG: &str = "-----BEGIN PGP SIGNATURE-----";
const PGP_END: &str = "-----END PGP SIGNATURE-----";

/// DER of the PKCS #7 / CMS content-type OIDs (RFC 5652, RFC 5083, RFC 3274).
const OID_SIGNED: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
const OID_ENVELOPED: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
];
const OID_AUTH_ENVELOPED: &[u8] = &[
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17,
];
const OID_COMPRESSED: &[u8] = &[
    0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x09,
];

/// Why an `application/pkcs7-mime` part (content type `ct`, decoded bytes `data`) is
/// refused: encrypted, compressed, or signed (signed-data, certs-only, anything else).
pub fn smime(ct: &ContentType<'_>, data: &[u8]) -> RewriteError {
    let kind = ct
        .attribute("smime-type")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = match kind.as_str() {
        "" => sniff_cms(data),
        k => k,
    };
    match kind {
        "enveloped-data" | "authenveloped-data" => RewriteError::Encrypted,
        "compressed-data" => RewriteError::Uncheckable(Uncheckable::Compressed),
        _ => RewriteError::Signed,
    }
}

/// The smime-type the first content-type OID of a CMS ContentInfo names.
fn sniff_cms(data: &[u8]) -> &'static str {
    let head = &data[..data.len().min(32)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    if has(OID_ENVELOPED) || has(OID_AUTH_ENVELOPED) {
        "enveloped-data"
    } else if has(OID_COMPRESSED) {
        "compressed-data"
    } else if has(OID_SIGNED) {
        "signed-data"
    } else {
        ""
    }
}

/// Refuses opaque S/MIME content (kept for callers that have only the Content-Type; the
/// full decision is [`smime`], taken first by [`super::classify`]).
pub fn check_pkcs7(ct: Option<&ContentType<'_>>) -> Result<(), RewriteError> {
    let Some(ct) = ct else { return Ok(()) };
    let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
    if !ct.ctype().eq_ignore_ascii_case("application")
        || !(sub == "pkcs7-mime" || sub == "x-pkcs7-mime")
    {
        return Ok(());
    }
    Err(smime(ct, &[]))
}

/// Handles inline PGP in a text part: an encrypted block is refused, a signature refused
/// or stripped.
pub fn inline_pgp(text: Cow<'_, str>, strip: bool) -> Result<Cow<'_, str>, RewriteError> {
    let Some(armour) = text.find(PGP_ARMOUR) else {
        return Ok(text);
    };
    if text[armour..].contains(PGP_MESSAGE) {
        return Err(RewriteError::Encrypted);
    }
    let Some(begin) = text[armour..].find(PGP_BEGIN).map(|p| p + armour) else {
        return Ok(text);
    };
    if !strip {
        return Err(RewriteError::Signed);
    }
    let after = &text[begin + PGP_BEGIN.len()..];
    // Armour headers ("Hash: SHA256") end at the first empty line.
    let body_start = after
        .find("\n\n")
        .or_else(|| after.find("\r\n\r\n").map(|p| p + 2))
        .map_or(0, |p| p + 2);
    let body = &after[body_start..];
    let (signed, rest) = match body.find(PGP_SIG) {
        Some(p) => (&body[..p], &body[p..]),
        None => (body, ""),
    };
    let tail = rest
        .find(PGP_END)
        .map_or("", |p| &rest[p + PGP_END.len()..]);
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..begin]);
    for line in signed.split_inclusive('\n') {
        out.push_str(line.strip_prefix("- ").unwrap_or(line));
    }
    out.push_str(tail.trim_start_matches(['\r', '\n']));
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_pgp_is_refused_or_stripped() {
        let t = "Hi\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nsigned text\n- -- dashes\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\nbye\n";
        assert_eq!(
            inline_pgp(t.into(), false).unwrap_err(),
            RewriteError::Signed
        );
        assert_eq!(
            inline_pgp(t.into(), true).unwrap(),
            "Hi\nsigned text\n-- dashes\nbye\n"
        );
        assert_eq!(inline_pgp("plain".into(), false).unwrap(), "plain");
        let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(inline_pgp(key.into(), false).unwrap(), key);
    }

    #[test]
    fn inline_pgp_encryption_is_refused_as_encrypted() {
        let t = "> -----BEGIN PGP MESSAGE-----\n> hQEMA\n> -----END PGP MESSAGE-----\n";
        for strip in [false, true] {
            assert_eq!(
                inline_pgp(t.into(), strip).unwrap_err(),
                RewriteError::Encrypted
            );
        }
    }

    #[test]
    fn smime_kinds_from_the_parameter_or_the_der() {
        use mail_parser::MimeHeaders;
        let ct = |p: &str, data: &[u8]| {
            let raw = format!("Content-Type: application/pkcs7-mime{p}\r\n\r\nx");
            let msg = mail_parser::MessageParser::new()
                .with_mime_headers()
                .parse(raw.as_bytes())
                .unwrap();
            smime(msg.parts[0].content_type().unwrap(), data)
        };
        assert_eq!(
            ct(";\r\n smime-type*0=enveloped;\r\n smime-type*1=-data", &[]),
            RewriteError::Encrypted
        );
        assert_eq!(
            ct("; smime-type=\"Signed-Data\"", &[]),
            RewriteError::Signed
        );
        assert_eq!(
            ct("; smime-type=compressed-data", &[]),
            RewriteError::Uncheckable(Uncheckable::Compressed)
        );
        let mut der = vec![0x30, 0x80];
        der.extend_from_slice(OID_ENVELOPED);
        assert_eq!(ct("; name=smime.p7m", &der), RewriteError::Encrypted);
        let mut der = vec![0x30, 0x82, 0x01, 0x00];
        der.extend_from_slice(OID_SIGNED);
        assert_eq!(ct("", &der), RewriteError::Signed);
        assert_eq!(ct("", b"garbage"), RewriteError::Signed);
    }
}
