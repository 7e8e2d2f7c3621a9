//! Report parts, rebuilt as header blocks: `message/delivery-status` (RFC 3464),
//! `message/disposition-notification` (RFC 8098), `message/feedback-report` (RFC 5965) and
//! their `global-` forms (RFC 6533).
//!
//! A report part is one or more groups of header fields, and it names people and hosts
//! (`Final-Recipient`, `Original-Recipient`, `X-Postfix-Sender`, `Reporting-MTA`,
//! `Source-IP`...). It is rebuilt field by field from an **allowlist**, like the message
//! headers; nothing of it is copied:
//! - address fields keep only members (mapped to their aliases) and addresses at the
//!   service's domain; a field naming anyone else is dropped, like To/Cc;
//! - `Action`, `Status`, `Disposition`, `Feedback-Type`... keep their value only when it is
//!   a plain token of the expected form; `Diagnostic-Code` keeps only its type and reply
//!   codes (remote servers' words are never passed on); `Original-Message-ID` is mapped like
//!   `References`;
//! - everything else (MTA and user-agent names, dates, IP addresses, log and envelope ids,
//!   `X-*` fields) is dropped.
//!
//! The groups are read with mail-parser (one header block at a time), not by hand.

use mail_parser::MessageParser;

use super::emit::Writer;
use super::{headers, ids};

/// The kinds of report part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    DeliveryStatus,
    Disposition,
    Feedback,
}

/// Header groups read from one report part at most (a DSN has one per recipient).
const MAX_GROUPS: usize = 1000;

/// What is kept of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// `type; address`: mapped, or the field is dropped.
    TypedAddress,
    /// A bare address or `<address>`: mapped, or the field is dropped.
    Address,
    /// The first word, letters, digits, `-` and `.` only.
    Word,
    /// A status code `class.subject.detail`.
    Status,
    /// `manual-action/MDN-sent-manually; displayed`.
    Disposition,
    /// `type; 550 5.1.1`: the type and leading reply codes only.
    Diagnostic,
    /// `<id>`, mapped like References.
    MessageId,
}

/// The allowlist: the canonical field name and its rule.
fn rule(report: Report, name: &str) -> Option<(&'static str, Rule)> {
    use Report::*;
    Some(match (report, name) {
        (DeliveryStatus | Disposition, "original-recipient") => {
            ("Original-Recipient", Rule::TypedAddress)
        }
        (DeliveryStatus | Disposition, "final-recipient") => {
            ("Final-Recipient", Rule::TypedAddress)
        }
        (DeliveryStatus, "action") => ("Action", Rule::Word),
        (DeliveryStatus, "status") => ("Status", Rule::Status),
        (DeliveryStatus, "diagnostic-code") => ("Diagnostic-Code", Rule::Diagnostic),
        (Disposition, "disposition") => ("Disposition", Rule::Disposition),
        (Disposition, "original-message-id") => ("Original-Message-ID", Rule::MessageId),
        (Feedback, "feedback-type") => ("Feedback-Type", Rule::Word),
        (Feedback, "version") => ("Version", Rule::Word),
        (Feedback, "incidents") => ("Incidents", Rule::Word),
        (Feedback, "delivery-result") => ("Delivery-Result", Rule::Word),
        (Feedback, "auth-failure") => ("Auth-Failure", Rule::Word),
        (Feedback, "original-mail-from") => ("Original-Mail-From", Rule::Address),
        (Feedback, "original-rcpt-to") => ("Original-Rcpt-To", Rule::Address),
        (Feedback, "removal-recipient") => ("Removal-Recipient", Rule::Address),
        _ => return None,
    })
}

/// Writes the rebuilt body of a report part of kind `report` whose decoded body is `data`.
pub fn write_body(w: &mut Writer<'_>, report: Report, data: &[u8], out: &mut Vec<u8>) {
    let mut first = true;
    for group in groups(data) {
        let mut block = Vec::new();
        for (name, value) in group {
            let Some((label, rule)) = rule(report, &name) else {
                continue;
            };
            if let Some(value) = keep(w, rule, &value) {
                block.extend_from_slice(label.as_bytes());
                block.extend_from_slice(b": ");
                block.extend_from_slice(value.as_bytes());
                block.extend_from_slice(b"\r\n");
            }
        }
        if block.is_empty() {
            continue;
        }
        if !first {
            out.extend_from_slice(b"\r\n");
        }
        first = false;
        out.extend_from_slice(&block);
    }
}

/// Writes a header block alone (`text/rfc822-headers`, `message/global-headers`) by the
/// rules of an embedded message's headers.
pub fn write_headers(w: &mut Writer<'_>, data: &[u8], out: &mut Vec<u8>) {
    if let Some(msg) = super::parser().parse_headers(data) {
        headers::write_nested(w, &msg, out);
    }
}

/// The header groups of `data` (lower-cased names, values with folding undone).
fn groups(data: &[u8]) -> Vec<Vec<(String, String)>> {
    let parser = MessageParser::new();
    let mut rest = data;
    let mut out = Vec::new();
    while out.len() < MAX_GROUPS {
        let blank = rest
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
            .count();
        rest = &rest[blank..];
        // A full parse: parse_headers does not say where the header block ends.
        let Some(msg) = parser.parse(rest) else {
            break;
        };
        let Some(part) = msg.parts.first() else {
            break;
        };
        let fields = part
            .headers
            .iter()
            .filter_map(|h| {
                let value = h.value.as_text()?.split_whitespace().collect::<Vec<_>>();
                Some((h.name.as_str().to_ascii_lowercase(), value.join(" ")))
            })
            .collect();
        out.push(fields);
        let end = part.offset_body as usize;
        if end == 0 || end >= rest.len() {
            break;
        }
        rest = &rest[end..];
    }
    out
}

/// The value kept of a field under `rule`, or None to drop the field.
fn keep(w: &mut Writer<'_>, rule: Rule, value: &str) -> Option<String> {
    let value = strip_comments(value);
    let value = value.trim();
    match rule {
        Rule::TypedAddress => {
            let (_, addr) = value.split_once(';')?;
            let m = w.map.map_header_address(bare(addr))?;
            Some(format!("rfc822; {}", m.address))
        }
        Rule::Address => {
            let m = w.map.map_header_address(bare(value))?;
            Some(m.address)
        }
        Rule::Word => {
            let word = value.split_whitespace().next()?;
            is_word(word).then(|| word.to_string())
        }
        Rule::Status => {
            let code = value.split_whitespace().next()?;
            is_status(code).then(|| code.to_string())
        }
        Rule::Disposition => {
            let ok = value.len() <= 100
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " -/;,".contains(c));
            (ok && !value.is_empty()).then(|| value.to_string())
        }
        Rule::Diagnostic => diagnostic(value),
        Rule::MessageId => {
            let id = value.trim_start_matches('<').split('>').next()?.trim();
            if id.is_empty() || !id.contains('@') {
                return None;
            }
            let ctx = w.context();
            let mapped = ids::map_reference(id, w.directory(), ctx.keys, ctx.domain);
            Some(format!("<{mapped}>"))
        }
    }
}

/// `type; 550 5.1.1 words...` → `type; 550 5.1.1` (None when no code is left).
fn diagnostic(value: &str) -> Option<String> {
    let (ty, rest) = value.split_once(';')?;
    let ty = ty.trim();
    if !is_word(ty) {
        return None;
    }
    let mut codes = Vec::new();
    'words: for word in rest.split_whitespace() {
        for piece in word.split('-') {
            let reply = piece.len() == 3 && piece.bytes().all(|b| b.is_ascii_digit());
            if !(reply || is_status(piece)) || codes.len() == 2 {
                break 'words;
            }
            codes.push(piece);
        }
    }
    (!codes.is_empty()).then(|| format!("{ty}; {}", codes.join(" ")))
}

/// The address of a field value: inside the angle brackets if there are any
/// (`Ann Lee <ann@…>`), else the whole value.
fn bare(addr: &str) -> &str {
    let addr = addr.trim();
    match addr.rfind('<') {
        Some(start) => addr[start + 1..].split('>').next().unwrap_or("").trim(),
        None => addr,
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `2.0.0`, `5.1.10`: RFC 3463 status codes.
fn is_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `value` without parenthesised comments.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_keep_only_codes() {
        assert_eq!(
            diagnostic("smtp; 550 5.1.1 <joe@real.example>: Recipient address rejected").as_deref(),
            Some("smtp; 550 5.1.1")
        );
        assert_eq!(
            diagnostic("smtp;550-5.7.1 host mx.real.example said no").as_deref(),
            Some("smtp; 550 5.7.1")
        );
        assert_eq!(diagnostic("X-Postfix; host mx.real.example"), None);
        assert_eq!(diagnostic("no type here"), None);
    }

    #[test]
    fn groups_are_read_one_block_at_a_time() {
        let data = b"Reporting-MTA: dns; mx.real.example\r\nArrival-Date: Mon, 3 Jun 2024\r\n\r\n\
Final-Recipient: rfc822;\r\n joe@real.example\r\nAction: failed\r\n\r\n\r\nFinal-Recipient: rfc822; x@y.example\r\n";
        let g = groups(data);
        assert_eq!(g.len(), 3, "{g:?}");
        assert_eq!(
            g[0][0],
            ("reporting-mta".into(), "dns; mx.real.example".into())
        );
        assert_eq!(
            g[1][0],
            ("final-recipient".into(), "rfc822; joe@real.example".into())
        );
        assert_eq!(g[2].len(), 1);
        assert!(
            is_status("5.1.1") && is_status("2.0.0") && !is_status("5.1") && !is_status("9.1.1")
        );
    }
}
