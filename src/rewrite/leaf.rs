//! Leaf bodies as the recipient's mail client reads them, which is what the rewrite must keep:
//! - the bytes under the transfer encoding, including `x-uuencode`, which mail-parser leaves
//!   encoded (relabelling it base64 would hand the recipient the uuencoded text as the file);
//! - text decoded as clients decode it: a part labelled US-ASCII (or with no charset) whose
//!   bytes are not ASCII is read as UTF-8 when it is valid UTF-8 and as windows-1252
//!   otherwise (the WHATWG encoding standard maps ASCII labels to windows-1252);
//! - the original encoded body of a text part that the rewrite leaves unchanged, when it can
//!   go out as it came ([`unchanged_body`]): no re-encoding, so no charset conversion either.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderName, Message, MessagePart, MimeHeaders};

/// Charset labels that name US-ASCII (RFC 2046 §4.1.2 and the IANA aliases).
const ASCII_LABELS: &[&str] = &[
    "us-ascii",
    "ascii",
    "ansi_x3.4-1968",
    "ansi_x3.4-1986",
    "iso646-us",
    "iso_646.irv:1991",
    "iso-ir-6",
    "us",
    "ibm367",
    "cp367",
    "csascii",
];

/// Transfer encodings mail-parser passes through that are uuencode.
const UUENCODE: &[&str] = &["x-uuencode", "x-uue", "uuencode", "uue"];

/// Transfer encodings whose encoded body may be sent again as it is.
const PASSABLE: &[&str] = &["7bit", "8bit", "binary", "quoted-printable"];

/// RFC 5322 §2.1.1.
const MAX_LINE: usize = 998;

/// The Content-Transfer-Encoding of `part`, trimmed, if it has one.
fn transfer_encoding<'a>(part: &'a MessagePart<'_>) -> Option<&'a str> {
    part.headers
        .iter()
        .find(|h| h.name == HeaderName::ContentTransferEncoding)
        .and_then(|h| h.value.as_text())
        .map(str::trim)
}

fn is_uuencoded(part: &MessagePart<'_>) -> bool {
    part.encoding == Encoding::None
        && transfer_encoding(part)
            .is_some_and(|e| UUENCODE.iter().any(|u| e.eq_ignore_ascii_case(u)))
}

/// The decoded bytes of a non-text leaf: what mail-parser decoded, or the uudecoded file.
/// Uuencoded data that does not decode stays as it came.
pub fn binary<'a>(part: &MessagePart<'_>, parsed: &'a [u8]) -> Cow<'a, [u8]> {
    if is_uuencoded(part) {
        if let Some(file) = uudecode(parsed) {
            return Cow::Owned(file);
        }
    }
    Cow::Borrowed(parsed)
}

/// The text of a text part as a mail client reads it (see the module documentation); `parsed`
/// is mail-parser's reading.
pub fn text<'a>(msg: &Message<'_>, part: &MessagePart<'_>, parsed: &'a str) -> Cow<'a, str> {
    let label = part.content_type().and_then(|c| c.attribute("charset"));
    if is_uuencoded(part) {
        let raw = body_bytes(msg, part);
        if let Some(bytes) = uudecode(raw) {
            return Cow::Owned(decode_charset(&bytes, label));
        }
        return Cow::Borrowed(parsed);
    }
    if parsed.is_ascii() || !label.is_none_or(is_ascii_label) {
        return Cow::Borrowed(parsed);
    }
    match transfer_decoded(msg, part) {
        Some(bytes) => Cow::Owned(decode_charset(&bytes, label)),
        None => Cow::Borrowed(parsed),
    }
}

fn is_ascii_label(label: &str) -> bool {
    let label = label.trim();
    ASCII_LABELS.iter().any(|l| label.eq_ignore_ascii_case(l))
}

/// `bytes` in charset `label`, ASCII labels and no label read as UTF-8 or windows-1252.
fn decode_charset(bytes: &[u8], label: Option<&str>) -> String {
    if label.is_none_or(is_ascii_label) {
        return match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned(),
        };
    }
    match label.and_then(|l| charset_decoder(l.trim().as_bytes())) {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The body of `part` as it stands in the message, still transfer-encoded.
fn body_bytes<'a>(msg: &'a Message<'_>, part: &MessagePart<'_>) -> &'a [u8] {
    let raw: &[u8] = msg.raw_message.as_ref();
    let end = (part.offset_end as usize).min(raw.len());
    let start = (part.offset_body as usize).min(end);
    &raw[start..end]
}

/// The body of `part` with its transfer encoding undone (as mail-parser undoes it), before
/// any charset decoding. None when the offsets do not point at the body.
fn transfer_decoded<'a>(msg: &'a Message<'_>, part: &MessagePart<'_>) -> Option<Cow<'a, [u8]>> {
    let raw = body_bytes(msg, part);
    if raw.is_empty() {
        return None;
    }
    let bytes = match part.encoding {
        Encoding::None => Cow::Borrowed(raw),
        Encoding::QuotedPrintable => MessageStream::new(raw).decode_quoted_printable_mime(b"").1,
        Encoding::Base64 => MessageStream::new(raw).decode_base64_mime(b"").1,
    };
    Some(bytes)
}

/// The encoded body of a text part, when it may go out as it came: a transfer encoding that
/// needs no change (7bit, 8bit, binary, quoted-printable), 7-bit bytes, no bare CR, lines of
/// at most 998 octets, and a charset that maps ASCII to itself and that mail-parser knows.
pub fn unchanged_body<'a>(msg: &'a Message<'_>, part: &MessagePart<'_>) -> Option<&'a [u8]> {
    if part.is_encoding_problem
        || !matches!(part.encoding, Encoding::None | Encoding::QuotedPrintable)
    {
        return None;
    }
    if !transfer_encoding(part).is_none_or(|e| PASSABLE.iter().any(|p| e.eq_ignore_ascii_case(p))) {
        return None;
    }
    let label = part.content_type().and_then(|c| c.attribute("charset"));
    if !label.is_none_or(|l| is_ascii_label(l) || is_plain_charset(l)) {
        return None;
    }
    let raw = body_bytes(msg, part);
    let clean = raw.is_ascii()
        && raw
            .split(|&b| b == b'\n')
            .all(|l| l.len() <= MAX_LINE && !l.strip_suffix(b"\r").unwrap_or(l).contains(&b'\r'));
    clean.then_some(raw)
}

/// The Content-Transfer-Encoding a text part passed on by [`unchanged_body`] goes out with
/// (its body is 7-bit).
pub fn unchanged_encoding(part: &MessagePart<'_>) -> &'static str {
    if part.encoding == Encoding::QuotedPrintable {
        "quoted-printable"
    } else {
        "7bit"
    }
}

/// A charset in which every ASCII byte means itself (so the scrubber's reading of an address
/// is every client's reading), known to mail-parser.
fn is_plain_charset(label: &str) -> bool {
    let label = label.trim();
    encoding_rs::Encoding::for_label(label.as_bytes()).is_some_and(|e| e.is_ascii_compatible())
        && charset_decoder(label.as_bytes()).is_some()
}

/// Decodes uuencoded data (`begin MODE NAME` … `end`); None when it is not uuencode.
pub fn uudecode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.find(|l| l.starts_with(b"begin "))?;
    let mut out = Vec::with_capacity(raw.len() * 3 / 4);
    for line in lines {
        if line == b"end" {
            return Some(out);
        }
        let Some((&count, data)) = line.split_first() else {
            continue; // a blank line
        };
        let n = usize::from(count.checked_sub(b' ')? & 0x3f);
        if n == 0 {
            continue; // the "`" line before "end"
        }
        let mut group = [0u8; 4];
        let mut got = 0;
        for chunk in
            (0..n.div_ceil(3)).map(|i| data.get(i * 4..).map_or(&[][..], |d| &d[..d.len().min(4)]))
        {
            for (slot, c) in group
                .iter_mut()
                .zip(chunk.iter().chain(std::iter::repeat(&b' ')))
            {
                if !(b' '..=b'`').contains(c) {
                    return None;
                }
                *slot = (c - b' ') & 0x3f;
            }
            let bytes = [
                group[0] << 2 | group[1] >> 4,
                group[1] << 4 | group[2] >> 2,
                group[2] << 6 | group[3],
            ];
            let take = (n - got).min(3);
            out.extend_from_slice(&bytes[..take]);
            got += take;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuencode_round_trips() {
        // `printf 'Cat\x00\xff\n' | uuencode x` and an empty file.
        let raw = b"begin 644 x\r\n&0V%T`/\\*\r\n`\r\nend\r\n";
        assert_eq!(uudecode(raw).unwrap(), b"Cat\x00\xff\n");
        assert_eq!(uudecode(b"begin 644 e\n`\nend\n").unwrap(), b"");
        assert_eq!(uudecode(b"no begin line\n"), None);
        assert_eq!(uudecode(b"begin 644 x\n&0V\x01T\nend\n"), None);
        // Trailing blanks stripped by a mail system read as zero bits.
        assert_eq!(uudecode(b"begin 644 x\n!80\nend\n").unwrap(), b"a");
    }

    #[test]
    fn ascii_labels_read_utf8_then_windows_1252() {
        assert_eq!(
            decode_charset("envoyé".as_bytes(), Some("us-ascii")),
            "envoyé"
        );
        assert_eq!(
            decode_charset(b"envoy\xe9 \x93q\x94", Some("US-ASCII")),
            "envoyé \u{201c}q\u{201d}"
        );
        assert_eq!(decode_charset(b"na\xefve", None), "naïve");
        assert_eq!(decode_charset(b"\xe9", Some("iso-8859-1")), "é");
    }
}
