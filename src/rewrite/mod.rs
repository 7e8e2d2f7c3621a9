//! `rewrite`: the pure heart of the anonymity promise. A message from a member goes in, the
//! message the recipient will see comes out. No I/O: everything it must know about members
//! and earlier Message-IDs comes through a [`Directory`] the caller filled beforehand from
//! what [`scan`] said the message mentions.
//!
//! INTERFACE CONTRACT (callers in `intake` rely on these names):
//! - [`scan`] lists the addresses and Message-IDs a message mentions (headers and text bodies),
//!   so the caller can look them up in the store before calling [`rewrite`].
//! - [`rewrite`] returns the new message bytes (CRLF line ends), the issued Message-ID and the
//!   original one (the caller stores the pair for threading).
//! - [`is_own_message_id`] tells whether a Message-ID was issued by this service (keyed marker).
//!
//! How the message is rebuilt (ARCHITECTURE.md §3):
//! - Nothing of the original header block is copied. The top level gets From (the sender's
//!   alias), To/Cc/Reply-To (members' aliases and addresses at the service's domain; every
//!   other address dropped; an empty To becomes `undisclosed-recipients:;`), Subject (with
//!   members' real addresses and names replaced), a new Date (UTC) and Message-ID (random
//!   part plus keyed marker), mapped In-Reply-To/References and MIME-Version. `Reply-To`
//!   appears only when the original had one and some of its addresses map.
//! - The MIME tree is rebuilt part by part ([`mime`]): fresh boundaries, text parts decoded
//!   (as mail clients decode them, [`leaf`]), rewritten and re-encoded as UTF-8 (a text part
//!   the rewrite leaves unchanged goes out as it came), other leaves re-encoded as base64
//!   with their decoded bytes unchanged (`x-uuencode` decoded first), part headers limited
//!   to Content-Type/-Transfer-Encoding/-Disposition/-Language/-Description and an opaque
//!   Content-ID (`cid:` links in HTML follow it). The output has CRLF line ends only and
//!   lines of at most 998 octets.
//! - A part header block that runs into its body without the blank line is ended where a
//!   mail client ends it ([`repair`]) before anything else looks at the message.
//! - `message/rfc822` parts (forwarded mail) are **rewritten by the same rules**, not passed
//!   opaquely: an embedded message is where a member's real address, name, provider hosts
//!   and `Received` lines sit most often. Its headers keep Subject, MIME-Version and the
//!   mapped From/To/Cc/Reply-To (non-members dropped); no Date, Message-ID or threading.
//! - Every `text/*` part is rewritten (plain, HTML, calendar invitations, vCards...), after
//!   undoing `format=flowed` and iCalendar folding, so an address is found even where a
//!   client wrapped it.
//! - Report parts (delivery-status, disposition-notification, feedback-report) are header
//!   blocks rebuilt from an allowlist ([`report`]); `message/*` and `multipart/*` parts are
//!   never transfer-encoded.
//! - Signed mail is refused unless the caller strips signatures ([`signed`]); encrypted mail
//!   is refused with its own reason; mail whose Message-ID carries the service's marker is
//!   refused as a loop.
//! - Fail closed ([`classify`]): a part that should be scrubbed but cannot be (unknown
//!   charset or transfer encoding, broken encoding, unparseable Content-Type, a structure
//!   the parser cannot follow, `message/partial`, `message/external-body`) refuses the whole
//!   message with [`RewriteError::Uncheckable`]; [`RewriteError::status`] gives the SMTP
//!   reply.
//! - Attachments (`privacy.strip_attachment_metadata`, on by default; [`metadata`]): JPEG,
//!   PNG, WebP, TIFF, PDF, OOXML and ODF files, told by their magic bytes, lose their
//!   metadata (Exif/XMP/IPTC, PDF Info and XMP, document properties) with their visible
//!   content unchanged; one that is recognisably such a file but cannot be cleaned refuses
//!   the message with [`RewriteError::Metadata`], naming the attachment. File names go
//!   through the [`mapper`] like text, also with `_`, `.` or `-` between a name's words.
//!   Other binary attachments pass as they are.

mod attachment;
mod body;
mod classify;
mod css;
mod emit;
mod find;
mod headers;
mod html;
mod ids;
mod leaf;
mod mapper;
mod metadata;
mod mime;
mod repair;
mod report;
mod signed;

use std::sync::LazyLock;

use mail_parser::{HeaderName, MessageParser, PartType};

use time::OffsetDateTime;

pub use crate::address::Member;
use crate::address::{Domain, RealAddress};
use crate::keys::Keys;

/// What rewrite may ask about members and earlier messages. Filled by the caller; no I/O.
pub trait Directory {
    /// The member whose real address this is (compared in normalised form).
    fn member_by_real(&self, addr: &RealAddress) -> Option<&Member>;
    /// For a Message-ID this service issued (without angle brackets), the original ID of the
    /// other side (without angle brackets).
    fn original_message_id(&self, issued: &str) -> Option<&str>;
}

/// A [`Directory`] held in memory: the members and issued Message-IDs a caller looked up
/// (from what [`scan`] found) before calling [`rewrite`].
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    members: std::collections::HashMap<String, Member>,
    issued: std::collections::HashMap<String, String>,
}

impl Lookup {
    pub fn add_member(&mut self, member: Member) {
        self.members.insert(member.real.normalized(), member);
    }

    /// Maps an ID this service issued to the other side's original (both without brackets).
    pub fn add_issued(&mut self, issued: String, original: String) {
        self.issued.insert(issued, original);
    }

    pub fn knows(&self, addr: &RealAddress) -> bool {
        self.members.contains_key(&addr.normalized())
    }
}

impl Directory for Lookup {
    fn member_by_real(&self, addr: &RealAddress) -> Option<&Member> {
        self.members.get(&addr.normalized())
    }

    fn original_message_id(&self, issued: &str) -> Option<&str> {
        self.issued.get(issued).map(String::as_str)
    }
}

/// Everything about the current delivery that is not in the message itself.
pub struct Context<'a> {
    pub domain: &'a Domain,
    /// The member who sent the message (already authenticated by `policy`).
    pub sender: &'a Member,
    /// The members the message is addressed to (the accepted RCPT aliases).
    pub recipients: &'a [Member],
    /// The new `Date`.
    pub now: OffsetDateTime,
    /// 16 random bytes for the new Message-ID (passed in so rewrite stays deterministic).
    pub nonce: [u8; 16],
    pub keys: &'a Keys,
    /// Strip `multipart/signed` signatures instead of refusing the message.
    pub strip_signatures: bool,
    /// Remove remote images, CSS `url()`s and `<link>` loads from HTML parts
    /// (`privacy.remote_content = "strip"`).
    pub strip_remote_content: bool,
    /// Remove metadata from attachments (`privacy.strip_attachment_metadata`).
    pub strip_attachment_metadata: bool,
}

/// What [`scan`] found: look these up, then call [`rewrite`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every address-like string found in headers and decoded text parts (deduplicated).
    pub addresses: Vec<String>,
    /// Message-IDs (without angle brackets) from `In-Reply-To` and `References`.
    pub referenced_ids: Vec<String>,
    /// The message's own Message-ID (without angle brackets), if any.
    pub message_id: Option<String>,
    /// The address in the `From` header, if any.
    pub from: Option<String>,
}

/// The rewritten message.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The complete message, CRLF line ends, ready to be signed and sent.
    pub message: Vec<u8>,
    /// The Message-ID this service issued (without angle brackets).
    pub message_id: String,
    /// The original Message-ID (without angle brackets), to be mapped to `message_id`.
    pub original_message_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    #[error("the message could not be parsed as RFC 5322 mail")]
    Unparseable,
    #[error("signed messages (multipart/signed, PGP or S/MIME) cannot be anonymised without breaking the signature and would reveal the signer; send it unsigned")]
    Signed,
    #[error("encrypted messages (S/MIME or PGP, also inside a forwarded message) cannot be checked for the sender's real address or name, so the service does not pass them on; send it unencrypted")]
    Encrypted,
    #[error(
        "{0}, so it cannot be checked for the sender's real address or name and is not passed on"
    )]
    Uncheckable(Uncheckable),
    #[error("the message is a copy of mail this service sent (mail loop)")]
    Loop,
    #[error("the attachment {name} ({format}) cannot be cleaned of its metadata: {reason}; it could reveal who made it and where, so the message is not passed on (send the file in a form that is not damaged or encrypted, or without it)")]
    Metadata {
        /// The attachment's file name with members' names and addresses replaced, reduced
        /// to safe characters and quoted, or its position when it has no name.
        name: String,
        format: &'static str,
        reason: &'static str,
    },
}

/// Why a message that should be scrubbed cannot be (it is refused, never passed on as it
/// came). The texts name only media types, charsets and encodings, never message content.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Uncheckable {
    #[error("the message has a message/partial part (one piece of a message sent in pieces)")]
    Partial,
    #[error("the message has a message/external-body part (content kept elsewhere)")]
    ExternalBody,
    #[error("the message has a part of type {0}, which the service does not know how to check")]
    MediaType(String),
    #[error("the message has S/MIME compressed content")]
    Compressed,
    #[error("a text part uses the unknown character set {0:?}")]
    Charset(String),
    #[error("a text or message part uses the unknown transfer encoding {0:?}")]
    TransferEncoding(String),
    #[error("a text or message part's transfer encoding is broken and cannot be decoded")]
    Undecodable,
    #[error("the {0} header of a part cannot be parsed")]
    Header(&'static str),
    #[error("the MIME structure cannot be followed (a multipart whose boundary never appears, or an embedded message that is not one)")]
    Structure,
    #[error("the message nests parts or embedded messages too deeply")]
    TooDeep,
    #[error("an HTML part cannot be read unambiguously by the HTML rewriter")]
    Html,
}

impl RewriteError {
    /// The SMTP reply code and enhanced status code (RFC 3463) that refuse the message:
    /// 5.7.1 for signed mail, 5.6.1 (media not supported) for encrypted mail and parts of a
    /// kind that cannot be checked, 5.6.3 for unknown charsets and encodings, 5.6.0 else.
    pub fn status(&self) -> (u16, [u8; 3]) {
        match self {
            RewriteError::Signed => (550, [5, 7, 1]),
            RewriteError::Encrypted => (550, [5, 6, 1]),
            RewriteError::Uncheckable(
                Uncheckable::Partial
                | Uncheckable::ExternalBody
                | Uncheckable::MediaType(_)
                | Uncheckable::Compressed,
            ) => (550, [5, 6, 1]),
            RewriteError::Uncheckable(
                Uncheckable::Charset(_) | Uncheckable::TransferEncoding(_),
            ) => (550, [5, 6, 3]),
            RewriteError::Uncheckable(_)
            | RewriteError::Unparseable
            | RewriteError::Loop
            | RewriteError::Metadata { .. } => (550, [5, 6, 0]),
        }
    }
}

/// The parser configuration rewrite and scan use: MIME, address, ID and Subject headers.
fn parser() -> &'static MessageParser {
    static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
        MessageParser::new()
            .with_mime_headers()
            .with_address_headers()
            .with_message_ids()
            .header_text(HeaderName::Subject)
            .header_text(HeaderName::ContentLanguage)
    });
    &PARSER
}

/// Parses `raw` with the configuration rewrite uses (also handy for tests and callers that
/// want to look at the output the same way), after [`repair`]ing part header blocks that
/// lack the blank line before the body.
pub fn parse(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    let msg = parse_as_is(raw)?;
    match repair::repaired(raw, &msg, parse_as_is) {
        None => Some(msg),
        Some(fixed) => parse_as_is(&fixed).map(mail_parser::Message::into_owned),
    }
}

fn parse_as_is(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    parser().parse(raw).filter(|m| !m.parts.is_empty())
}

/// Lists what `raw` mentions, for the caller to look up before [`rewrite`].
pub fn scan(raw: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let Some(msg) = parse(raw) else {
        return scan;
    };
    scan.message_id = msg.message_id().map(str::to_string);
    scan.from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_string);
    for name in [HeaderName::InReplyTo, HeaderName::References] {
        match msg.header(name) {
            Some(mail_parser::HeaderValue::Text(t)) => push_unique(&mut scan.referenced_ids, t),
            Some(mail_parser::HeaderValue::TextList(l)) => {
                for t in l {
                    push_unique(&mut scan.referenced_ids, t);
                }
            }
            _ => {}
        }
    }
    scan_message(&msg, &mut scan.addresses);
    scan
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// Addresses in the header block, the decoded address headers and Subject, and the text
/// parts of `msg` and of every message embedded in it.
fn scan_message(msg: &mail_parser::Message<'_>, found: &mut Vec<String>) {
    let add = |found: &mut Vec<String>, s: &str| {
        for a in find::addresses(s) {
            let a = a.to_lowercase();
            if !found.contains(&a) {
                found.push(a);
            }
        }
    };
    for part in &msg.parts {
        let header_block = &msg.raw_message[part.offset_header as usize..part.offset_body as usize];
        add(found, &String::from_utf8_lossy(header_block));
        for h in &part.headers {
            match &h.value {
                mail_parser::HeaderValue::Address(list) => {
                    for a in list.iter().filter_map(|a| a.address()) {
                        add(found, a);
                    }
                }
                mail_parser::HeaderValue::Text(t) => add(found, t),
                _ => {}
            }
        }
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => {
                add(found, t);
                add(found, &body::unfold(t));
            }
            PartType::Message(nested) => scan_message(nested, found),
            _ => {}
        }
    }
}

/// Rebuilds `raw` as the recipient will see it (all rules of ARCHITECTURE.md §3; see the module
/// documentation).
pub fn rewrite(raw: &[u8], ctx: &Context, dir: &dyn Directory) -> Result<Rewritten, RewriteError> {
    let msg = parse(raw).ok_or(RewriteError::Unparseable)?;
    let original_message_id = msg.message_id().map(str::to_string);
    if let Some(id) = &original_message_id {
        if is_own_message_id(id, ctx.keys, ctx.domain) {
            return Err(RewriteError::Loop);
        }
    }
    let ctx: &Context<'_> = ctx;
    let message_id = ids::issue(&ctx.nonce, ctx.keys, ctx.domain);
    let mut w = emit::Writer::new(ctx, dir);
    w.prepare(&msg);
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 4 + 512);
    headers::write_top(&mut w, &msg, dir, &message_id, &mut out);
    w.write_part(&msg, 0, &mut out)?;
    Ok(Rewritten {
        message: out,
        message_id,
        original_message_id,
    })
}

/// True when `id` (with or without angle brackets) is a Message-ID this service issued.
pub fn is_own_message_id(id: &str, keys: &Keys, domain: &Domain) -> bool {
    ids::is_own(id, keys, domain)
}

#[cfg(test)]
mod tests;
