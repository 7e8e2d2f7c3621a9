//! What a MIME part is, and whether it can be scrubbed at all.
//!
//! The decision is taken from the part's *declared* Content-Type as mail-parser parsed it
//! (RFC 2045/2231: folding, quoting, continuations, charset and language; no MIME parameter
//! is read by hand anywhere in `rewrite`), never from what the parser made of the body: a
//! `multipart/signed` whose boundary the parser could not find is still signed. And it
//! **fails closed**: a part that should be scrubbed but cannot be (an encrypted body, a
//! multipart whose boundary never appears, a text part in an unknown charset or transfer
//! encoding, a broken transfer encoding, a `message/partial`, an unparseable Content-Type)
//! makes the whole message refused with a [`RewriteError`], never passed on as it came.
//! Binary leaves pass as they are.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{HeaderName, HeaderValue, Message, MessagePart, MimeHeaders, PartType};

use super::report::Report;
use super::{signed, RewriteError, Uncheckable};

/// Multipart and embedded-message levels a message may nest; deeper is refused.
pub const MAX_DEPTH: u32 = 40;

/// Labels of UTF-8 (which mail-parser decodes without a charset decoder) and of 8-bit
/// text of no declared charset (RFC 1428), which is ASCII underneath.
const ASCII_COMPATIBLE: &[&str] = &[
    "utf-8",
    "utf8",
    "unicode-1-1-utf-8",
    "unicode11utf8",
    "unicode20utf8",
    "x-unicode20utf8",
    "unknown-8bit",
    "x-unknown",
];

/// Transfer encodings whose content the service can read.
/// `x-uuencode` text is decoded by [`super::leaf`].
const KNOWN_ENCODINGS: &[&str] = &[
    "7bit",
    "8bit",
    "binary",
    "base64",
    "quoted-printable",
    "x-uuencode",
];

/// How a part is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `multipart/*` other than signed and encrypted: children rewritten one by one.
    Multipart,
    /// `multipart/signed`: refused, or reduced to its first child when stripping.
    Signed,
    /// `message/rfc822`, `message/global`, `message/news`: rewritten like the message.
    Embedded,
    /// `text/rfc822-headers`, `message/global-headers`: a header block alone.
    Headers,
    /// A report part: header blocks rebuilt from an allowlist ([`super::report`]).
    Report(Report),
    /// `text/*` (and a part without Content-Type): decoded and rewritten.
    Text,
    /// Anything else: passes as it is.
    Binary,
}

impl Kind {
    /// Kinds that contain further parts (counted against [`MAX_DEPTH`]).
    pub fn nests(self) -> bool {
        matches!(self, Kind::Multipart | Kind::Signed | Kind::Embedded)
    }
}

/// Classifies `part` of `msg`, refusing what cannot be checked from its type alone.
pub fn classify(msg: &Message<'_>, part: &MessagePart<'_>) -> Result<Kind, RewriteError> {
    check_content_type(msg, part)?;
    let Some(ct) = part.content_type() else {
        // No Content-Type: text/plain, or message/rfc822 inside a multipart/digest.
        return Ok(match part.body {
            PartType::Message(_) => Kind::Embedded,
            _ => Kind::Text,
        });
    };
    let ty = ct.ctype().to_ascii_lowercase();
    let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
    let kind = match (ty.as_str(), sub.as_str()) {
        ("multipart", "encrypted") => return Err(RewriteError::Encrypted),
        ("multipart", "signed") => Kind::Signed,
        ("multipart", _) => Kind::Multipart,
        ("message", "rfc822" | "global" | "news") => Kind::Embedded,
        ("message", "global-headers") | ("text", "rfc822-headers") => Kind::Headers,
        ("message", "delivery-status" | "global-delivery-status") => {
            Kind::Report(Report::DeliveryStatus)
        }
        ("message", "disposition-notification" | "global-disposition-notification") => {
            Kind::Report(Report::Disposition)
        }
        ("message", "feedback-report") => Kind::Report(Report::Feedback),
        ("message", "partial") => return Err(Uncheckable::Partial.into()),
        ("message", "external-body") => return Err(Uncheckable::ExternalBody.into()),
        ("message", other) => {
            return Err(Uncheckable::MediaType(format!("message/{}", label(other))).into())
        }
        ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
            let data = match &part.body {
                PartType::Binary(b) | PartType::InlineBinary(b) => b.as_ref(),
                _ => &[],
            };
            return Err(signed::smime(ct, data));
        }
        ("text", _) => Kind::Text,
        _ => Kind::Binary,
    };
    if !matches!(kind, Kind::Binary | Kind::Multipart | Kind::Signed) {
        check_transfer_encoding(part)?;
    }
    Ok(kind)
}

/// A text part can be scrubbed: its transfer encoding decoded and its charset known.
pub fn check_text(part: &MessagePart<'_>, text: &str) -> Result<(), RewriteError> {
    if part.is_encoding_problem && !text.trim().is_empty() {
        return Err(Uncheckable::Undecodable.into());
    }
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::trim)
        .filter(|c| !c.is_empty());
    match charset {
        Some(c) if !known_charset(c) => Err(Uncheckable::Charset(label(c)).into()),
        _ => Ok(()),
    }
}

/// True when the text of charset `label` can be decoded (mail-parser has a decoder for it,
/// or it is UTF-8 or ASCII-compatible 8-bit).
pub fn known_charset(label: &str) -> bool {
    let lower = label.trim().trim_matches('"').to_ascii_lowercase();
    ASCII_COMPATIBLE.contains(&lower.as_str()) || charset_decoder(lower.as_bytes()).is_some()
}

/// Every Content-Type header of `part` parsed, and all of them naming the same type (two
/// different ones are read differently by different clients).
fn check_content_type(msg: &Message<'_>, part: &MessagePart<'_>) -> Result<(), RewriteError> {
    let mut seen: Option<(&str, Option<&str>)> = None;
    for h in part
        .headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentType)
    {
        let ct = match &h.value {
            HeaderValue::ContentType(ct) => ct,
            _ if raw_is_blank(msg, h) => continue,
            _ => return Err(Uncheckable::Header("Content-Type").into()),
        };
        let this = (ct.ctype(), ct.subtype());
        match seen {
            Some(first) if !same_type(first, this) => {
                return Err(Uncheckable::Header("Content-Type").into())
            }
            _ => seen = Some(this),
        }
    }
    Ok(())
}

fn same_type(a: (&str, Option<&str>), b: (&str, Option<&str>)) -> bool {
    a.0.eq_ignore_ascii_case(b.0) && a.1.unwrap_or("").eq_ignore_ascii_case(b.1.unwrap_or(""))
}

fn raw_is_blank(msg: &Message<'_>, h: &mail_parser::Header<'_>) -> bool {
    msg.raw_message
        .get(h.offset_start as usize..h.offset_end as usize)
        .is_none_or(|raw| raw.iter().all(u8::is_ascii_whitespace))
}

/// The part's Content-Transfer-Encoding is one the service can decode.
fn check_transfer_encoding(part: &MessagePart<'_>) -> Result<(), RewriteError> {
    let Some(value) = part.content_transfer_encoding() else {
        return Ok(());
    };
    let value = value.trim();
    if value.is_empty()
        || KNOWN_ENCODINGS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(value))
    {
        Ok(())
    } else {
        Err(Uncheckable::TransferEncoding(label(value)).into())
    }
}

/// A label from the message, safe to quote in an SMTP reply (token characters, short).
pub fn label(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | ':'))
        .take(40)
        .collect()
}

impl From<Uncheckable> for RewriteError {
    fn from(u: Uncheckable) -> Self {
        RewriteError::Uncheckable(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets_known_and_unknown() {
        for c in [
            "utf-8",
            "UTF8",
            "iso-8859-1",
            "windows-1252",
            "koi8-r",
            "us-ascii",
        ] {
            assert!(known_charset(c), "{c}");
        }
        for c in ["x-martian", "utf-9", ""] {
            assert!(!known_charset(c), "{c}");
        }
        assert_eq!(label("x-<joe@real>\r\n"), "x-joereal");
    }
}
