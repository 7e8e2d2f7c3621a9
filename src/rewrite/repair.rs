//! Input repair before the rewrite: a MIME part whose header block runs straight into its body
//! without the blank line (`Content-Transfer-Encoding: base64` followed by the base64 lines).
//! Mail clients end the header block at the first line that is neither a header field nor a
//! continuation; mail-parser instead skips such lines looking for more fields, so the part
//! arrives empty, or the part and everything after it is lost. [`repaired`] inserts the
//! missing blank line where a client would see the body begin, and says so; the caller
//! parses the repaired bytes.
//!
//! Only part header blocks are repaired (the ones after a boundary line, and those of
//! embedded messages), never the top-level header block, where mail-parser's skipping of a
//! stray line (an mbox `From ` line) is what clients do too. At most [`MAX_REPAIRS`] blocks
//! are repaired per message.

use mail_parser::{Message, PartType};

/// Bounds the work on hostile input: each repair costs one more parse.
pub const MAX_REPAIRS: usize = 16;

/// True when `line` (without its line break) may stand in a header block: a field, a
/// continuation, or the blank line that ends it.
fn is_header_line(line: &[u8]) -> bool {
    let Some(&first) = line.first() else {
        return true;
    };
    if first == b' ' || first == b'\t' {
        return true;
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
}

/// The offset in `raw` of the first line of the header block starting at `start` that is not
/// a header line, before the block's end (a blank line, or `end`).
fn first_body_line(raw: &[u8], start: usize, end: usize) -> Option<usize> {
    let mut pos = start;
    let mut first = true;
    while pos < end {
        let stop = memchr::memchr(b'\n', &raw[pos..end]).map_or(end, |p| pos + p);
        let line = raw[pos..stop]
            .strip_suffix(b"\r")
            .unwrap_or(&raw[pos..stop]);
        if line.is_empty() {
            return None;
        }
        let mbox = first && line.starts_with(b"From ");
        if !is_header_line(line) && !mbox {
            return Some(pos);
        }
        first = false;
        pos = stop + 1;
    }
    None
}

/// Where a blank line is missing in `msg` (whose `raw_message` is `raw`): the offset of the
/// first body line of a part header block, if there is one.
fn missing_blank_line(msg: &Message<'_>, raw: &[u8], top: bool) -> Option<usize> {
    // Nested messages that were transfer-encoded have their own buffer: not repairable here.
    let own = msg.raw_message.as_ref();
    if own.as_ptr() != raw.as_ptr() || own.len() != raw.len() {
        return None;
    }
    for (i, part) in msg.parts.iter().enumerate() {
        if !(top && i == 0) {
            let (start, end) = (part.offset_header as usize, part.offset_body as usize);
            if let Some(at) = first_body_line(raw, start, end.min(raw.len())) {
                return Some(at);
            }
        }
        match &part.body {
            PartType::Message(nested) => {
                if let Some(at) = missing_blank_line(nested, raw, false) {
                    return Some(at);
                }
            }
            PartType::Multipart(children) => {
                if let Some(at) = lost_part(msg, raw, part, children) {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

/// A part of multipart `part` that the parser lost: a delimiter line after its last child,
/// before the closing delimiter, whose header block has a body line.
fn lost_part(
    msg: &Message<'_>,
    raw: &[u8],
    part: &mail_parser::MessagePart<'_>,
    children: &[u32],
) -> Option<usize> {
    use mail_parser::MimeHeaders;
    let boundary = part.content_type()?.attribute("boundary")?;
    let last = msg.parts.get(*children.last()? as usize)?;
    let from = (last.offset_end as usize).min(raw.len());
    let delimiter = format!("--{boundary}");
    let mut pos = from;
    while let Some(found) = find(&raw[pos..], delimiter.as_bytes()) {
        let at = pos + found;
        let after = at + delimiter.len();
        pos = after;
        if at > 0 && raw[at - 1] != b'\n' {
            continue;
        }
        if raw[after..].starts_with(b"--") {
            return None; // the closing delimiter: nothing after it is a part
        }
        let block = raw[after..].iter().position(|&b| b == b'\n')? + after + 1;
        return first_body_line(raw, block, raw.len());
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// `raw` with the missing blank lines inserted, or None when `msg` (parsed from `raw`) needs
/// no repair. `parse` is the parser the caller uses.
pub fn repaired(
    raw: &[u8],
    msg: &Message<'_>,
    parse: impl Fn(&[u8]) -> Option<Message<'_>>,
) -> Option<Vec<u8>> {
    let mut at = missing_blank_line(msg, raw, true)?;
    let mut fixed = raw.to_vec();
    for _ in 0..MAX_REPAIRS {
        fixed.splice(at..at, *b"\r\n");
        let Some(next) = parse(&fixed).and_then(|m| missing_blank_line(&m, &fixed, true)) else {
            break;
        };
        at = next;
    }
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_are_told_from_body_lines() {
        assert!(is_header_line(b"Content-Type: text/plain"));
        assert!(is_header_line(b"Subject : x"));
        assert!(is_header_line(b"\tcontinued"));
        assert!(is_header_line(b""));
        assert!(!is_header_line(
            b"JVBERi0xLjQKAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
        ));
        assert!(!is_header_line(b"hello world"));
        assert!(!is_header_line(b": no name"));
        assert!(!is_header_line(b"two words: no field"));
    }
}
