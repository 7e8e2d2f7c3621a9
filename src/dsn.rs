//! `dsn`: reads what comes back to a bounce address (`b+TOKEN@DOMAIN`, see [`crate::bounce`])
//! and says what it is: a delivery failure (hard or soft), a delay warning, an automatic reply
//! from the recipient, or anything else. Pure: bytes in, a [`Report`] out, no I/O.
//!
//! Order of evidence:
//! 1. An RFC 3464 `message/delivery-status` (or RFC 6533 `message/global-delivery-status`)
//!    part: the per-recipient `Action:` and `Status:` fields decide, the worst recipient wins
//!    (hard failure > soft failure > delay). A report that only says "delivered" / "relayed" /
//!    "expanded" is [`Report::Unknown`]. Any other `multipart/report` (ARF abuse reports, read
//!    receipts, TLS reports) is [`Report::Unknown`] too.
//! 2. A plain-text bounce from an MTA that sends no DSN: at least two of "From a mailer
//!    daemon / postmaster", "a bounce Subject" and "a bounce phrase in the text". Its text
//!    (before the returned copy of the original) is searched for an RFC 3463 code, then an SMTP
//!    reply code; without either, words like "user unknown" make it hard, anything else soft.
//! 3. An automatic reply: `Auto-Submitted` other than `no`, `X-Autoreply`, `X-Autorespond`,
//!    `Precedence: auto_reply`, or a Subject starting "Automatic reply:", "Out of Office" etc.
//!    A message that is both a bounce and auto-submitted is a bounce (steps 1–2 come first).
//!
//! [`failed_recipients`] says whom a failure report is about (the `Final-Recipient` /
//! `Original-Recipient` of its failed recipients, or the addresses a plain-text bounce
//! names), so that a caller can refuse to act on a report about somebody else.
//!
//! The status carried by [`Report::Bounce`] is rebuilt from digits only (`5.1.1`, or a bare
//! SMTP code such as `550` when the text had no RFC 3463 code): the remote diagnostic text,
//! which may name the recipient's real address, never leaves this module.
//!
//! Work is bounded: only the first [`MAX_RAW`] bytes are parsed, and only the first
//! [`MAX_TEXT`] bytes of at most [`MAX_TEXT_PARTS`] top-level text parts are read.

use std::sync::LazyLock;

use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// Only this many bytes of the input are parsed (a bounce is small; the returned copy of the
/// original message, which comes last, is of no interest).
pub const MAX_RAW: usize = 512 * 1024;
/// Only this many bytes of each text part (and of a delivery-status part) are read.
pub const MAX_TEXT: usize = 16 * 1024;
/// Only this many top-level text parts are read.
pub const MAX_TEXT_PARTS: usize = 4;
/// [`failed_recipients`] returns at most this many addresses.
pub const MAX_NAMED: usize = 20;

/// What came back to a bounce address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A delivery failure: hard (5.x.x / permanent) or soft (4.x.x, or failed without a clear
    /// code).
    Bounce {
        kind: BounceKind,
        /// The RFC 3463 status (`"5.1.1"`), or the SMTP reply code (`"550"`) when a
        /// plain-text bounce gave no RFC 3463 code; digits and dots only.
        status: Option<String>,
    },
    /// A delay warning (Action: delayed): not a failure yet.
    Delayed,
    /// An automatic reply from the recipient (vacation etc.): treat as a reply, not a bounce.
    AutoReply,
    /// Anything else (a human reply to the bounce address, spam, unparsable).
    Unknown,
}

/// How final a delivery failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    /// Permanent (5.x.x): the address does not work.
    Hard,
    /// Transient (4.x.x) or unclear: the address may work later.
    Soft,
}

/// Classifies a message that arrived at a bounce address. Never panics.
pub fn classify(raw: &[u8]) -> Report {
    let Some(msg) = parse(raw) else {
        return Report::Unknown;
    };
    if let Some(report) = report_part_verdict(&msg) {
        return report;
    }
    if let Some(report) = plain_bounce(&msg) {
        return report;
    }
    if auto_reply_headers(&msg) || auto_reply_subject(msg.subject().unwrap_or("")) {
        return Report::AutoReply;
    }
    Report::Unknown
}

/// The addresses a failure report says could not be reached, lower case, at most
/// [`MAX_NAMED`]: for an RFC 3464 report the `Final-Recipient` and `Original-Recipient` of
/// every failed recipient block; for a plain-text bounce (as [`classify`] recognises it) the
/// addresses written in its text before the returned copy of the original. Empty for anything
/// else (delay warnings, auto-replies, reports that only say "delivered"). Never panics.
pub fn failed_recipients(raw: &[u8]) -> Vec<String> {
    let Some(msg) = parse(raw) else {
        return Vec::new();
    };
    let mut named = Vec::new();
    let mut reported = false;
    for part in msg.parts.iter().filter(|p| is_delivery_status(p)) {
        for block in recipient_blocks(&bounded_text(part.contents(), MAX_TEXT)) {
            let verdict = block.verdict();
            reported |= verdict.is_some();
            if matches!(verdict, Some(Verdict::Failed(..))) {
                named.extend(block.recipients);
            }
        }
    }
    if !reported && plain_bounce(&msg).is_some() {
        named = addresses_in(&bounce_text(&msg));
    }
    named.truncate(MAX_NAMED);
    named
}

/// Whether the header block says the message was sent automatically: `Auto-Submitted` with
/// any value but `no` (RFC 3834), or the older `X-Autoreply`, `X-Autorespond`,
/// `Precedence: auto_reply`. Looks at headers only (not the Subject, not the body).
pub fn is_auto_submitted(raw: &[u8]) -> bool {
    let raw = &raw[..raw.len().min(MAX_RAW)];
    parser()
        .parse_headers(raw)
        .filter(|m| !m.parts.is_empty())
        .is_some_and(|m| auto_reply_headers(&m))
}

fn parser() -> &'static MessageParser {
    static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
        MessageParser::new()
            .with_mime_headers()
            .header_address(HeaderName::From)
            .default_header_text()
    });
    &PARSER
}

fn parse(raw: &[u8]) -> Option<Message<'_>> {
    let raw = &raw[..raw.len().min(MAX_RAW)];
    parser().parse(raw).filter(|m| !m.parts.is_empty())
}

// ---------------------------------------------------------------------------------------
// Status codes

/// The first RFC 3463 code (`class.subject.detail`, class 2, 4 or 5, up to three digits
/// each) in `text`, not part of a longer dotted number such as an IP address.
fn enhanced_code(text: &str) -> Option<String> {
    enhanced_codes(text).next()
}

fn enhanced_codes(text: &str) -> impl Iterator<Item = String> + '_ {
    let b = text.as_bytes();
    (0..b.len()).filter_map(move |i| enhanced_code_at(b, i))
}

fn enhanced_code_at(b: &[u8], i: usize) -> Option<String> {
    let class_dot = matches!(b[i], b'2' | b'4' | b'5') && b.get(i + 1) == Some(&b'.');
    if !class_dot {
        return None;
    }
    if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
        return None;
    }
    let (subject, j) = digits(b, i + 2)?;
    if j >= b.len() || b[j] != b'.' {
        return None;
    }
    let (detail, k) = digits(b, j + 1)?;
    let dotted_on = k + 1 < b.len() && b[k] == b'.' && b[k + 1].is_ascii_digit();
    if dotted_on {
        return None;
    }
    Some(format!("{}.{subject}.{detail}", b[i] as char))
}

/// One to three ASCII digits at `start`, not followed by another digit.
fn digits(b: &[u8], start: usize) -> Option<(&str, usize)> {
    let len = b[start.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(1..=3).contains(&len) {
        return None;
    }
    let s = std::str::from_utf8(&b[start..start + len]).ok()?;
    Some((s, start + len))
}

/// SMTP reply codes (`4[0-5]x`, `5[0-5]x`) standing as a word of their own, followed by a
/// space, a hyphen (multi-line reply) or the end of a line.
fn smtp_codes(text: &str) -> impl Iterator<Item = String> + '_ {
    let b = text.as_bytes();
    (0..b.len().saturating_sub(2)).filter_map(move |i| smtp_code_at(b, i))
}

fn smtp_code_at(b: &[u8], i: usize) -> Option<String> {
    let code = &b[i..i + 3];
    let valid = matches!(code[0], b'4' | b'5')
        && (b'0'..=b'5').contains(&code[1])
        && code[2].is_ascii_digit();
    let before_ok = i == 0 || b[i - 1].is_ascii_whitespace() || b"(<>:;\"'".contains(&b[i - 1]);
    let after_ok = b
        .get(i + 3)
        .is_none_or(|c| matches!(c, b' ' | b'\t' | b'-' | b'\r' | b'\n'));
    (valid && before_ok && after_ok).then(|| String::from_utf8_lossy(code).into_owned())
}

/// The first code in `text` of the worst class (5 before 4), RFC 3463 codes before SMTP
/// codes. Class 2 codes (success lines of a transcript) are ignored.
fn worst_code(text: &str) -> Option<String> {
    let pick = |codes: Vec<String>| {
        let five = codes.iter().find(|c| c.starts_with('5'));
        five.or_else(|| codes.iter().find(|c| c.starts_with('4')))
            .cloned()
    };
    pick(enhanced_codes(text).collect()).or_else(|| pick(smtp_codes(text).collect()))
}

fn kind_of(code: &str) -> Option<BounceKind> {
    match code.as_bytes().first() {
        Some(b'5') => Some(BounceKind::Hard),
        Some(b'4') => Some(BounceKind::Soft),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// RFC 3464 delivery-status parts

/// What one recipient block (or a plain bounce) amounts to; ordered from best to worst.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Delivered,
    Delayed,
    Failed(BounceKind, Option<String>),
}

impl Verdict {
    fn rank(&self) -> u8 {
        match self {
            Verdict::Delivered => 0,
            Verdict::Delayed => 1,
            Verdict::Failed(BounceKind::Soft, _) => 2,
            Verdict::Failed(BounceKind::Hard, _) => 3,
        }
    }

    fn worst(a: Option<Verdict>, b: Verdict) -> Verdict {
        match a {
            Some(a) if a.rank() >= b.rank() => a,
            _ => b,
        }
    }

    fn into_report(self) -> Report {
        match self {
            Verdict::Delivered => Report::Unknown,
            Verdict::Delayed => Report::Delayed,
            Verdict::Failed(kind, status) => Report::Bounce { kind, status },
        }
    }
}

/// The verdict of the report part(s), if the message is a `multipart/report` or carries a
/// delivery-status part. `None`: look at it as a plain message.
fn report_part_verdict(msg: &Message<'_>) -> Option<Report> {
    let mut worst: Option<Verdict> = None;
    for part in msg.parts.iter().filter(|p| is_delivery_status(p)) {
        for v in delivery_status_verdicts(&bounded_text(part.contents(), MAX_TEXT)) {
            worst = Some(Verdict::worst(worst, v));
        }
    }
    if let Some(v) = worst {
        return Some(v.into_report());
    }
    let report_type = msg
        .content_type()
        .filter(|ct| ct.ctype().eq_ignore_ascii_case("multipart"))
        .filter(|ct| {
            ct.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        })
        .and_then(|ct| ct.attribute("report-type"));
    match report_type {
        Some(t) if !t.eq_ignore_ascii_case("delivery-status") => Some(Report::Unknown),
        _ => None,
    }
}

fn is_delivery_status(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            })
    })
}

/// One field set per recipient in the body of a delivery-status part.
#[derive(Debug, Default)]
struct RecipientFields {
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
    /// The addresses of `Final-Recipient` and `Original-Recipient` (lower case).
    recipients: Vec<String>,
}

impl RecipientFields {
    fn is_empty(&self) -> bool {
        self.action.is_none() && self.status.is_none()
    }

    /// RFC 3464 §2.3: Action and Status decide; Diagnostic-Code only fills in a missing or
    /// broken Status.
    fn verdict(&self) -> Option<Verdict> {
        let code = self
            .status
            .as_deref()
            .and_then(enhanced_code)
            .or_else(|| self.diagnostic.as_deref().and_then(worst_code));
        let kind = code.as_deref().and_then(kind_of);
        match self.action.as_deref() {
            Some("delayed") => Some(Verdict::Delayed),
            Some("failed") => match kind {
                Some(kind) => Some(Verdict::Failed(kind, code)),
                None => Some(Verdict::Failed(BounceKind::Soft, None)),
            },
            Some("delivered" | "relayed" | "expanded") => Some(Verdict::Delivered),
            _ => match kind {
                Some(kind) => Some(Verdict::Failed(kind, code)),
                None => code.map(|_| Verdict::Delivered),
            },
        }
    }
}

/// Reads the per-recipient field sets of a delivery-status body. A set ends at a blank line,
/// or when a new `Final-Recipient`/`Original-Recipient` or a second `Action` shows up (for
/// reports written without the blank lines).
fn delivery_status_verdicts(text: &str) -> Vec<Verdict> {
    recipient_blocks(text)
        .iter()
        .filter_map(RecipientFields::verdict)
        .collect()
}

/// The per-recipient field sets of a delivery-status body (see [`delivery_status_verdicts`]).
fn recipient_blocks(text: &str) -> Vec<RecipientFields> {
    let mut out = Vec::new();
    let mut cur = RecipientFields::default();
    let mut flush = |cur: &mut RecipientFields| {
        let block = std::mem::take(cur);
        if !block.is_empty() || block.diagnostic.is_some() || !block.recipients.is_empty() {
            out.push(block);
        }
    };
    for field in unfolded_lines(text) {
        let Some((name, value)) = field.split_once(':') else {
            flush(&mut cur);
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        let starts_new = matches!(name.as_str(), "final-recipient" | "original-recipient")
            && !cur.is_empty()
            || (name == "action" && cur.action.is_some());
        if starts_new {
            flush(&mut cur);
        }
        match name.as_str() {
            "action" => cur.action = Some(first_word(value)),
            "status" => cur.status = Some(value.to_string()),
            "diagnostic-code" => cur.diagnostic = Some(value.to_string()),
            "final-recipient" | "original-recipient" if cur.recipients.len() < MAX_NAMED => {
                cur.recipients.extend(typed_address(value))
            }
            _ => {}
        }
    }
    flush(&mut cur);
    out
}

/// The address of an RFC 3464 `address-type; address` value (`rfc822; <a@b>` → `a@b`).
fn typed_address(value: &str) -> Option<String> {
    let address = value.split_once(';').map_or(value, |(_, a)| a).trim();
    let address = address.trim_start_matches('<').trim_end_matches('>').trim();
    address.contains('@').then(|| address.to_ascii_lowercase())
}

/// Address-like words (`x@y`) in a text, in order, at most [`MAX_NAMED`].
fn addresses_in(text: &str) -> Vec<String> {
    let stop = |c: char| c.is_whitespace() || "<>()[],;:\"'`".contains(c);
    text.split(stop)
        .map(|w| w.trim_matches('.'))
        .filter(|w| w.len() <= 320 && w.contains('@') && !w.starts_with('@') && !w.ends_with('@'))
        .map(str::to_ascii_lowercase)
        .take(MAX_NAMED)
        .collect()
}

/// Lines with RFC 5322 folding undone; a blank line comes out as `""`.
fn unfolded_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let folded = line.starts_with([' ', '\t']) && !line.trim().is_empty();
        match out.last_mut() {
            Some(last) if folded && !last.is_empty() => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => out.push(line.trim_end().to_string()),
        }
    }
    out
}

/// The first word of a field value, lower case (`failed (bad mailbox)` → `failed`).
fn first_word(value: &str) -> String {
    value
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------
// Plain-text bounces

const DAEMON_LOCALS: &[&str] = &[
    "mailer-daemon",
    "mailer_daemon",
    "mailerdaemon",
    "mail-daemon",
    "postmaster",
];
const DAEMON_NAMES: &[&str] = &[
    "mail delivery",
    "mailer-daemon",
    "mail administrator",
    "postmaster",
];
const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered mail",
    "delivery status notification",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "failure notice",
    "returned mail",
    "returned to sender",
    "could not be delivered",
    "not delivered",
    "nondeliverable",
    "non-delivery",
    "unzustellbar",
    "nicht zustellbar",
    "non remis",
    "delayed mail",
    "delivery delayed",
    "could not send message for past",
    "mail system error",
];
const BOUNCE_PHRASES: &[&str] = &[
    "this is the qmail-send program",
    "this is the mail system at host",
    "this message was created automatically by mail delivery software",
    "the original message was received at",
    "transcript of session follows",
    "your message did not reach some or all of the intended recipients",
    "delivery has failed to these recipients",
    "the following recipient(s) could not be reached",
    "did not reach the following recipient",
    "could not be delivered to one or more",
    "couldn't be delivered to",
    "message could not be delivered",
    "your message wasn't delivered",
    "i'm sorry to have to inform you that your message could not",
    "the following addresses had permanent fatal errors",
    "delivery to the following recipient failed",
    "delivery to the following recipients failed",
    "delivery to the following recipient has been delayed",
    "this is an automatically generated delivery status notification",
    "has not yet been delivered",
    "could not send message for past",
    "unrouteable address",
    "permanent error",
];
/// A line holding one of these starts the returned copy of the original message.
const COPY_MARKERS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "message follows",
    "original message headers",
    "-----original message-----",
    "message headers follow",
];
const DELAY_SUBJECTS: &[&str] = &[
    "delayed",
    "(delay)",
    "still being retried",
    "could not send message for past",
    "warning: message",
];
const DELAY_PHRASES: &[&str] = &[
    "this is a warning only",
    "you do not need to resend",
    "still being retried",
    "will be retried until",
    "has not yet been delivered",
    "will continue to try",
    "will continue trying",
    "has been delayed",
    "could not send message for past",
];
const NO_SUCH_USER: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such mailbox",
    "no mailbox here by that name",
    "mailbox does not exist",
    "mailbox unavailable",
    "does not exist",
    "doesn't exist",
    "unknown recipient",
    "recipient unknown",
    "invalid recipient",
    "address not found",
    "unrouteable address",
    "not a valid mailbox",
];
const REPLY_PREFIXES: &[&str] = &["re:", "aw:", "sv:", "fw:", "fwd:", "wg:", "tr:"];

/// A bounce written as plain text, by the signals listed in the module docs; one without any
/// text (cut off after the header) says too little to act on.
fn plain_bounce(msg: &Message<'_>) -> Option<Report> {
    let subject = msg.subject().unwrap_or("").trim().to_lowercase();
    let text = bounce_text(msg);
    let signals = [
        from_daemon(msg),
        bounce_subject(&subject),
        contains_any(&text, BOUNCE_PHRASES),
    ];
    if signals.iter().filter(|s| **s).count() < 2 || text.trim().is_empty() {
        return None;
    }
    Some(plain_verdict(&subject, &text).into_report())
}

fn plain_verdict(subject: &str, text: &str) -> Verdict {
    let code = worst_code(text);
    let kind = code.as_deref().and_then(kind_of);
    let delay = contains_any(subject, DELAY_SUBJECTS) || contains_any(text, DELAY_PHRASES);
    match kind {
        Some(BounceKind::Hard) => Verdict::Failed(BounceKind::Hard, code),
        _ if delay => Verdict::Delayed,
        Some(kind) => Verdict::Failed(kind, code),
        None if contains_any(text, NO_SUCH_USER) => Verdict::Failed(BounceKind::Hard, None),
        None => Verdict::Failed(BounceKind::Soft, None),
    }
}

fn from_daemon(msg: &Message<'_>) -> bool {
    let Some(from) = msg.from().and_then(|a| a.first()) else {
        return false;
    };
    let local = from
        .address()
        .and_then(|a| a.rsplit_once('@').map(|(l, _)| l).or(Some(a)))
        .unwrap_or("")
        .to_ascii_lowercase();
    let name = from.name().unwrap_or("").to_lowercase();
    DAEMON_LOCALS.contains(&local.as_str()) || contains_any(&name, DAEMON_NAMES)
}

fn bounce_subject(subject: &str) -> bool {
    !REPLY_PREFIXES.iter().any(|p| subject.starts_with(p)) && contains_any(subject, BOUNCE_SUBJECTS)
}

/// The top-level text of the message (not attachments, not returned headers), lower case,
/// bounded, and cut before the returned copy of the original message.
fn bounce_text(msg: &Message<'_>) -> String {
    let mut text = String::new();
    let parts = msg.parts.iter().filter(|p| is_body_text(p));
    for part in parts.take(MAX_TEXT_PARTS) {
        let body = bounded_text(part.contents(), MAX_TEXT);
        match part.body {
            PartType::Html(_) => text.push_str(&strip_tags(&body)),
            _ => text.push_str(&body),
        }
        text.push('\n');
    }
    let text = text.to_ascii_lowercase();
    cut_at_copy(&text).to_string()
}

fn is_body_text(part: &MessagePart<'_>) -> bool {
    let plain_or_html = part.content_type().is_none_or(|ct| {
        ct.ctype().eq_ignore_ascii_case("text")
            && ct
                .subtype()
                .is_none_or(|s| s.eq_ignore_ascii_case("plain") || s.eq_ignore_ascii_case("html"))
    });
    let attachment = part
        .content_disposition()
        .is_some_and(|d| d.is_attachment());
    part.is_text() && plain_or_html && !attachment
}

fn cut_at_copy(text: &str) -> &str {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if contains_any(line, COPY_MARKERS) {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// Tags replaced by spaces; good enough to find phrases in an HTML-only NDR.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// At most `max` bytes of `bytes` as text (lossy UTF-8).
fn bounded_text(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

// ---------------------------------------------------------------------------------------
// Automatic replies

const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply",
    "auto-reply",
    "autoreply",
    "auto reply",
    "auto:",
    "auto-response",
    "autoresponse",
    "out of office",
    "out of the office",
    "vacation reply",
    "away from my mail",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
];

/// The RFC 3834 header or one of the older hints.
fn auto_reply_headers(msg: &Message<'_>) -> bool {
    msg.root_part().headers().iter().any(|h| {
        let value = first_word(h.value.as_text().unwrap_or(""));
        let name = h.name.as_str();
        let eq = |n: &str| name.eq_ignore_ascii_case(n);
        (eq("Auto-Submitted") && !value.is_empty() && value != "no")
            || ((eq("X-Autoreply") || eq("X-Autorespond"))
                && !matches!(value.as_str(), "no" | "false"))
            || (eq("Precedence") && value == "auto_reply")
    })
}

/// A Subject that starts like an out-of-office reply (not `Re:` a human's subject).
fn auto_reply_subject(subject: &str) -> bool {
    let subject = subject.trim().to_lowercase();
    AUTO_REPLY_SUBJECTS.iter().any(|p| subject.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_found_alone() {
        assert_eq!(enhanced_code("Status: 5.1.1"), Some("5.1.1".into()));
        assert_eq!(enhanced_code("smtp; 550-5.7.26 x"), Some("5.7.26".into()));
        assert_eq!(enhanced_code("<mx.example #5.1.10>"), Some("5.1.10".into()));
        assert_eq!(enhanced_code("4.4.7 (expired)"), Some("4.4.7".into()));
        assert_eq!(enhanced_code("host 5.1.1.1 said"), None);
        assert_eq!(enhanced_code("host 10.5.1.1 said"), None);
        assert_eq!(enhanced_code("3.1.1 6.1.1 5.1234.1 5.1"), None);
        assert_eq!(enhanced_code("5.1.1"), Some("5.1.1".into()));
        assert_eq!(enhanced_code("5.1."), None);
        assert_eq!(enhanced_code(""), None);
    }

    #[test]
    fn smtp_codes_need_a_word_of_their_own() {
        let codes = |t: &str| smtp_codes(t).collect::<Vec<_>>();
        assert_eq!(codes("said: 550 sorry"), vec!["550"]);
        assert_eq!(codes("<<< 452-4.2.2 full"), vec!["452"]);
        assert_eq!(codes("550\r\n"), vec!["550"]);
        assert_eq!(codes("port 465 and 587 and 25"), Vec::<String>::new());
        assert_eq!(codes("[192.0.2.250] 5500 x550 550x"), Vec::<String>::new());
        assert_eq!(codes("55"), Vec::<String>::new());
    }

    #[test]
    fn worst_code_prefers_class_5_and_rfc3463() {
        assert_eq!(
            worst_code("250 2.1.0 ok\n451 4.3.0 try later\n550 5.1.1 no"),
            Some("5.1.1".into())
        );
        assert_eq!(worst_code("250 2.0.0 ok 421 later"), Some("421".into()));
        assert_eq!(worst_code("250 2.0.0 ok"), None);
    }

    #[test]
    fn recipient_fields_decide_by_action_then_status() {
        let v = |a: Option<&str>, s: Option<&str>, d: Option<&str>| {
            RecipientFields {
                action: a.map(str::to_string),
                status: s.map(str::to_string),
                diagnostic: d.map(str::to_string),
                ..Default::default()
            }
            .verdict()
        };
        let hard = |s: &str| Some(Verdict::Failed(BounceKind::Hard, Some(s.into())));
        assert_eq!(v(Some("failed"), Some("5.1.1"), None), hard("5.1.1"));
        assert_eq!(
            v(Some("failed"), Some("4.4.7"), None),
            Some(Verdict::Failed(BounceKind::Soft, Some("4.4.7".into())))
        );
        assert_eq!(
            v(Some("failed"), None, None),
            Some(Verdict::Failed(BounceKind::Soft, None))
        );
        assert_eq!(
            v(Some("failed"), Some("junk"), Some("smtp; 550 no")),
            hard("550")
        );
        assert_eq!(
            v(Some("delayed"), Some("4.4.1"), None),
            Some(Verdict::Delayed)
        );
        assert_eq!(v(Some("relayed"), None, None), Some(Verdict::Delivered));
        assert_eq!(v(None, Some("5.2.2"), None), hard("5.2.2"));
        assert_eq!(v(None, None, None), None);
    }

    #[test]
    fn delivery_status_blocks_split_on_blank_lines_and_new_recipients() {
        let text = "Reporting-MTA: dns; mx.example\r\n\r\n\
                    Final-Recipient: rfc822; a@x\r\nAction: delayed\r\nStatus: 4.4.1\r\n\
                    Final-Recipient: rfc822; b@x\r\nAction: failed\r\n\
                    Status:\r\n 5.1.1\r\n\r\n";
        assert_eq!(
            delivery_status_verdicts(text),
            vec![
                Verdict::Delayed,
                Verdict::Failed(BounceKind::Hard, Some("5.1.1".into()))
            ]
        );
    }

    #[test]
    fn worst_verdict_wins() {
        let soft = Verdict::Failed(BounceKind::Soft, None);
        let hard = Verdict::Failed(BounceKind::Hard, None);
        assert_eq!(Verdict::worst(Some(hard.clone()), soft.clone()), hard);
        assert_eq!(Verdict::worst(Some(Verdict::Delayed), soft.clone()), soft);
        assert_eq!(Verdict::worst(None, Verdict::Delivered), Verdict::Delivered);
    }

    #[test]
    fn plain_verdicts() {
        let hard = |s: Option<&str>| Verdict::Failed(BounceKind::Hard, s.map(Into::into));
        assert_eq!(
            plain_verdict("", "remote said: 550 5.1.1 no"),
            hard(Some("5.1.1"))
        );
        assert_eq!(plain_verdict("", "sorry, user unknown"), hard(None));
        assert_eq!(
            plain_verdict("", "connection refused"),
            Verdict::Failed(BounceKind::Soft, None)
        );
        assert_eq!(
            plain_verdict("delayed mail", "451 4.4.1 later"),
            Verdict::Delayed
        );
    }

    #[test]
    fn text_is_cut_before_the_returned_copy() {
        let text = "hi. failed.\n--- below this line is a copy of the message.\n550 x";
        assert_eq!(cut_at_copy(text), "hi. failed.\n");
        assert_eq!(cut_at_copy("no marker"), "no marker");
    }

    #[test]
    fn subjects() {
        assert!(auto_reply_subject("Automatic reply: hello"));
        assert!(auto_reply_subject("Out of Office: hello"));
        assert!(!auto_reply_subject("Re: out of office plans"));
        assert!(bounce_subject("undelivered mail returned to sender"));
        assert!(!bounce_subject("re: undeliverable: hello"));
        assert!(!bounce_subject("lunch?"));
    }

    #[test]
    fn small_helpers() {
        assert_eq!(first_word("  failed (bad mailbox)"), "failed");
        assert_eq!(first_word("auto-replied; owner-email=x"), "auto-replied");
        assert_eq!(strip_tags("<p>user <b>unknown</b></p>"), " user  unknown  ");
        assert_eq!(bounded_text(b"abc\xff", 3), "abc");
        assert_eq!(
            unfolded_lines("A: 1\r\n 2\r\n\r\nB: 3"),
            vec!["A: 1 2", "", "B: 3"]
        );
    }

    #[test]
    fn failed_recipients_are_read_from_the_report() {
        let dsn = "From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n\
                   Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
                   --B\r\nContent-Type: text/plain\r\n\r\nfailed: other@x.example\r\n\
                   --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n\
                   Original-Recipient: rfc822;<Ann@Mail.Example>\r\n\
                   Final-Recipient: rfc822; ann.lee@mail.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
                   Final-Recipient: rfc822; ok@mail.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n--B--\r\n";
        assert_eq!(
            failed_recipients(dsn.as_bytes()),
            vec!["ann@mail.example", "ann.lee@mail.example"]
        );
        let no_recipient = dsn
            .replace("Original-Recipient: rfc822;<Ann@Mail.Example>\r\n", "")
            .replace("Final-Recipient: rfc822; ann.lee@mail.example\r\n", "");
        assert!(failed_recipients(no_recipient.as_bytes()).is_empty());
        let delayed = dsn.replace("Action: failed", "Action: delayed");
        assert!(failed_recipients(delayed.as_bytes()).is_empty());
    }

    #[test]
    fn a_plain_bounce_names_the_addresses_in_its_text() {
        let plain = "From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n\r\n\
                     This is the qmail-send program at mx.example.\r\n\
                     <Ann@mail.example>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\
                     --- Below this line is a copy of the message.\r\n\r\nTo: joe@real.example\r\n";
        assert_eq!(
            failed_recipients(plain.as_bytes()),
            vec!["ann@mail.example"]
        );
        let vague = plain.replace("<Ann@mail.example>:", "Your message:");
        assert!(failed_recipients(vague.as_bytes()).is_empty());
        assert!(failed_recipients(b"Subject: hi\r\n\r\nann@mail.example").is_empty());
        assert_eq!(
            addresses_in("a@b. (c@d), @x, y@, <e@f>"),
            vec!["a@b", "c@d", "e@f"]
        );
    }

    #[test]
    fn auto_submitted_headers() {
        assert!(is_auto_submitted(b"Auto-Submitted: auto-replied\r\n\r\nx"));
        assert!(is_auto_submitted(b"X-Autoreply: yes\r\n\r\nx"));
        assert!(is_auto_submitted(b"Precedence: auto_reply\r\n\r\nx"));
        assert!(!is_auto_submitted(b"Auto-Submitted: no\r\n\r\nx"));
        assert!(!is_auto_submitted(
            b"Precedence: bulk\r\nSubject: hi\r\n\r\nx"
        ));
        assert!(!is_auto_submitted(b""));
    }
}
