//! Rebuilding the MIME tree. Every part is written anew from what mail-parser decoded, by
//! the kind [`super::classify`] gives its declared Content-Type (which also refuses what
//! cannot be checked), read as a mail client reads it ([`super::leaf`]): text parts are
//! rewritten and re-encoded as UTF-8 (or, when the rewrite changed nothing, written as they
//! came), other leaves keep their decoded bytes (re-encoded as base64), multiparts get fresh
//! boundaries (original boundaries can carry host names), `message/rfc822`, `message/global`
//! and `message/news` parts are rewritten recursively by the same rules as the message itself
//! (see the module documentation of [`super`]), and report parts are rebuilt from an
//! allowlist ([`super::report`]). A `message/*` or `multipart/*` part never gets a transfer
//! encoding (RFC 2045 §6.4: identity only). Part headers keep only Content-Type,
//! Content-Transfer-Encoding, Content-Disposition, Content-Language, Content-Description and
//! an opaque Content-ID.

use std::borrow::Cow;

use mail_builder::headers::content_type::ContentType as OutContentType;
use mail_builder::headers::text::Text;
use mail_parser::{ContentType, HeaderValue, Message, MessagePart, MimeHeaders, PartType};

use super::body::{self, choose_encoding, write_base64, write_text};
use super::classify::{self, Kind};
use super::emit::{write_header, write_raw, Writer};
use super::leaf;
use super::{headers, report, RewriteError, Uncheckable};

/// Subtypes whose lines are folded iCalendar/vCard style.
const FOLDED_SUBTYPES: &[&str] = &["calendar", "vcard", "x-vcard", "directory", "ics"];

/// Non-text types that are text underneath and name people (calendar files attached as
/// `application/ics`); they are rewritten like text parts when they are valid UTF-8.
const TEXTUAL_APPLICATION: &[&str] = &["ics", "x-vcard", "vcard"];

impl<'m> Writer<'m> {
    /// First pass over the whole tree: learn members' real names from every address
    /// header and give every Content-ID its opaque replacement.
    pub fn prepare(&mut self, msg: &Message<'_>) {
        headers::learn_names(&mut self.map, msg);
        for part in &msg.parts {
            if let Some(id) = part.content_id() {
                let id = id.trim_matches(|c| c == '<' || c == '>');
                let new = super::ids::opaque(&format!("cid:{id}"), self.ctx.keys, self.ctx.domain);
                self.content_ids.insert(id.to_string(), new);
            }
            match &part.body {
                PartType::Text(t) | PartType::Html(t) if is_folded(part.content_type()) => {
                    self.map.learn_from_text(&body::unfold(t))
                }
                PartType::Text(t) | PartType::Html(t) => self.map.learn_from_text(t),
                PartType::Binary(b) => {
                    if let Some(t) = textual(part.content_type(), b) {
                        self.map.learn_from_text(&body::unfold(t));
                    }
                }
                PartType::Message(nested) => self.prepare(nested),
                _ => {}
            }
        }
    }

    /// Writes part `id` of `msg`: its Content-* headers, a blank line and its body.
    pub fn write_part(
        &mut self,
        msg: &Message<'_>,
        id: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let part = msg
            .parts
            .get(id as usize)
            .ok_or(RewriteError::Unparseable)?;
        let kind = classify::classify(msg, part)?;
        if !kind.nests() {
            return self.write_leaf(msg, part, kind, out);
        }
        if self.depth >= classify::MAX_DEPTH {
            return Err(Uncheckable::TooDeep.into());
        }
        self.depth += 1;
        let written = self.write_container(msg, part, kind, out);
        self.depth -= 1;
        written
    }

    /// Multiparts and embedded messages; the body must be what the declared type says.
    fn write_container(
        &mut self,
        msg: &Message<'_>,
        part: &MessagePart<'_>,
        kind: Kind,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        if kind == Kind::Signed && !self.ctx.strip_signatures {
            return Err(RewriteError::Signed);
        }
        match (kind, &part.body) {
            (Kind::Signed, PartType::Multipart(children)) => match children.first() {
                Some(&first) => self.write_part(msg, first, out),
                None => Err(Uncheckable::Structure.into()),
            },
            (Kind::Multipart, PartType::Multipart(children)) => {
                self.write_multipart(msg, part, children, out)
            }
            (Kind::Embedded, PartType::Message(nested)) => {
                self.write_message_part(part, nested, out)
            }
            // message/news, which mail-parser leaves as bytes.
            (Kind::Embedded, PartType::Binary(b)) if !part.is_encoding_problem => {
                let nested = super::parse(b).ok_or(Uncheckable::Structure)?;
                self.write_message_part(part, &nested, out)
            }
            // An encoded embedded message nested deeper than mail-parser decodes.
            (Kind::Embedded, PartType::Binary(_)) => Err(Uncheckable::TooDeep.into()),
            (_, PartType::Text(t)) if t.trim().is_empty() => self.write_empty(part, out),
            _ => Err(Uncheckable::Structure.into()),
        }
    }

    /// Leaves, header blocks and report parts.
    fn write_leaf(
        &mut self,
        msg: &Message<'_>,
        part: &MessagePart<'_>,
        kind: Kind,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        match (kind, &part.body) {
            (Kind::Headers | Kind::Report(_), body) => {
                if part.is_encoding_problem {
                    return Err(Uncheckable::Undecodable.into());
                }
                let data: &[u8] = match body {
                    PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
                    PartType::Binary(b) | PartType::InlineBinary(b) => b,
                    _ => return Err(Uncheckable::Structure.into()),
                };
                self.write_report(part, kind, data, out);
                Ok(())
            }
            (_, PartType::Text(t) | PartType::Html(t)) => {
                if kind == Kind::Text {
                    classify::check_text(part, t)?;
                }
                let text = leaf::text(msg, part, t);
                let unchanged = leaf::unchanged_body(msg, part);
                self.write_text_part(part, &text, unchanged, out)
            }
            (_, PartType::Binary(b) | PartType::InlineBinary(b)) => {
                self.write_binary(part, &leaf::binary(part, b), out)
            }
            _ => Err(Uncheckable::Structure.into()),
        }
    }

    /// A header block or report part, rebuilt (never transfer-encoded).
    fn write_report(&mut self, part: &MessagePart<'_>, kind: Kind, data: &[u8], out: &mut Vec<u8>) {
        let ct = part.content_type();
        let c_type = match ct {
            Some(c) => format!(
                "{}/{}",
                c.ctype().to_ascii_lowercase(),
                c.subtype().unwrap_or("").to_ascii_lowercase()
            ),
            None => "text/rfc822-headers".to_string(),
        };
        write_content_type(out, c_type, Vec::new());
        write_raw(out, "Content-Transfer-Encoding", "7bit");
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        match kind {
            Kind::Report(r) => report::write_body(self, r, data, out),
            _ => report::write_headers(self, data, out),
        }
    }

    /// A multipart or embedded message with an empty body: an empty text part.
    fn write_empty(
        &mut self,
        part: &MessagePart<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        write_raw(out, "Content-Type", "text/plain; charset=us-ascii");
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn write_multipart(
        &mut self,
        msg: &Message<'_>,
        part: &MessagePart<'_>,
        children: &[u32],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let ct = part.content_type();
        let sub = token(ct.and_then(|c| c.subtype()), "mixed");
        if children.is_empty() {
            return self.write_empty(part, out);
        }
        let boundary = self.next_boundary();
        let mut attrs = self.kept_attributes(ct, &["boundary", "start"]);
        // multipart/related `start` names a Content-ID, which is replaced too.
        let start = ct.and_then(|c| c.attribute("start"));
        let start = start.map(|s| s.trim().trim_matches(|c| c == '<' || c == '>'));
        if let Some(new) = start.and_then(|s| self.content_ids.get(s)) {
            attrs.push(("start".into(), format!("<{new}>").into()));
        }
        attrs.push(("boundary".into(), boundary.clone().into()));
        write_content_type(out, format!("multipart/{sub}"), attrs);
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        for &child in children {
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary.as_bytes());
            out.extend_from_slice(b"\r\n");
            self.write_part(msg, child, out)?;
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        Ok(())
    }

    /// A text part, rewritten. `unchanged` is its original encoded body when that may go out
    /// as it came ([`leaf::unchanged_body`]); it does when the rewrite changed nothing.
    fn write_text_part(
        &mut self,
        part: &MessagePart<'_>,
        text: &str,
        unchanged: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let ct = part.content_type();
        let (ty, sub) = text_type(ct);
        let folded = FOLDED_SUBTYPES.contains(&sub.as_str());
        let original = text;
        let mut text = body::normalize_breaks(text);
        if let Some(c) = ct.filter(|c| attr_is(c, "format", "flowed")) {
            text = Cow::Owned(body::unflow(&text, attr_is(c, "delsp", "yes")));
        }
        if folded {
            text = Cow::Owned(self.calendar_uids(&body::unfold(&text)));
        }
        let text = super::signed::inline_pgp(text, self.ctx.strip_signatures)?;
        let mut new = if sub == "html" {
            let strip = self.ctx.strip_remote_content;
            let html = super::html::rewrite(&text, &mut self.map, &self.content_ids, strip)?;
            // The net for what lies outside text, attribute values and comments (tag and
            // attribute names, a doctype): the text rewrite of the whole part.
            let net = self.map.replace(&html).into_owned();
            Cow::Owned(net)
        } else {
            self.map.replace(&text)
        };
        if folded {
            new = Cow::Owned(body::fold(&new));
        }
        if let Some(raw) = unchanged.filter(|_| new.as_ref() == original) {
            return self.write_unchanged_text(part, raw, out);
        }
        let enc = choose_encoding(&new);
        let mut attrs = vec![("charset".into(), "utf-8".into())];
        attrs.extend(self.kept_attributes(ct, &["charset", "format", "delsp"]));
        write_content_type(out, format!("{ty}/{sub}"), attrs);
        write_raw(out, "Content-Transfer-Encoding", enc.header_value());
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        write_text(&new, enc, out);
        Ok(())
    }

    /// A text part that the rewrite left as it was: its own charset, format and transfer
    /// encoding, and its encoded body byte for byte (line ends made CRLF).
    fn write_unchanged_text(
        &mut self,
        part: &MessagePart<'_>,
        raw: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let ct = part.content_type();
        let (ty, sub) = text_type(ct);
        let attrs = self.kept_attributes(ct, &[]);
        write_content_type(out, format!("{ty}/{sub}"), attrs);
        write_raw(
            out,
            "Content-Transfer-Encoding",
            leaf::unchanged_encoding(part),
        );
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        body::write_lines(raw, out);
        Ok(())
    }

    fn write_binary(
        &mut self,
        part: &MessagePart<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let ct = part.content_type();
        super::signed::check_pkcs7(ct)?;
        if let Some(text) = textual(ct, data) {
            return self.write_text_part(part, text, None, out);
        }
        let cleaned = self.clean_attachment(part, data)?;
        let data = cleaned.as_deref().unwrap_or(data);
        let c_type = match ct.filter(|c| is_token(c.ctype())) {
            Some(c) => format!(
                "{}/{}",
                c.ctype().to_ascii_lowercase(),
                token(c.subtype(), "octet-stream")
            ),
            None => "application/octet-stream".to_string(),
        };
        let attrs = self.kept_attributes(ct, &[]);
        write_content_type(out, c_type, attrs);
        write_raw(out, "Content-Transfer-Encoding", "base64");
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        write_base64(data, out);
        Ok(())
    }

    fn write_message_part(
        &mut self,
        part: &MessagePart<'_>,
        nested: &Message<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let sub = token(part.content_type().and_then(|c| c.subtype()), "rfc822");
        write_content_type(out, format!("message/{sub}"), Vec::new());
        self.write_common(part, out);
        out.extend_from_slice(b"\r\n");
        if nested.parts.is_empty() {
            return Ok(());
        }
        headers::write_nested(self, nested, out);
        self.write_part(nested, 0, out)
    }

    /// Content-Disposition, Content-Language, Content-Description and Content-ID.
    fn write_common(&mut self, part: &MessagePart<'_>, out: &mut Vec<u8>) {
        if let Some(cd) = part.content_disposition() {
            let attrs = self.kept_attributes(Some(cd), &[]);
            write_content_type_named(
                out,
                "Content-Disposition",
                token(Some(cd.ctype()), "attachment"),
                attrs,
            );
        }
        if let Some(lang) = language(part.content_language()) {
            write_raw(out, "Content-Language", &lang);
        }
        if let Some(desc) = part.content_description() {
            let desc = self.map.replace(desc).into_owned();
            write_header(out, "Content-Description", &Text::new(desc));
        }
        if let Some(id) = part.content_id() {
            let id = id.trim_matches(|c| c == '<' || c == '>');
            if let Some(new) = self.content_ids.get(id) {
                let value = format!("<{new}>");
                write_raw(out, "Content-ID", &value);
            }
        }
    }

    /// The attributes of `ct` except `skip`, with file names rewritten.
    fn kept_attributes(
        &mut self,
        ct: Option<&ContentType<'_>>,
        skip: &[&str],
    ) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        let Some(attrs) = ct.and_then(|c| c.attributes()) else {
            return Vec::new();
        };
        let mut kept = Vec::with_capacity(attrs.len());
        for a in attrs {
            let name = a.name.to_ascii_lowercase();
            if !is_token(&name)
                || skip.contains(&name.as_str())
                || kept.iter().any(|(n, _)| *n == name)
            {
                continue;
            }
            let value = if self.ctx.strip_attachment_metadata && is_file_name(&name) {
                self.map.replace_file_name(&a.value)
            } else {
                self.map.replace(&a.value).into_owned()
            };
            kept.push((Cow::Owned(name), Cow::Owned(value)));
        }
        kept
    }

    /// Replaces iCalendar `UID:` values (which name the organiser's provider) by stable
    /// opaque ones, so updates to an event still match.
    fn calendar_uids(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for (n, line) in text.split('\n').enumerate() {
            if n > 0 {
                out.push('\n');
            }
            match line.trim_end_matches('\r').strip_prefix("UID:") {
                Some(uid) => {
                    out.push_str("UID:");
                    let keys = self.ctx.keys;
                    out.push_str(&super::ids::opaque(uid.trim(), keys, self.ctx.domain));
                }
                None => out.push_str(line),
            }
        }
        out
    }
}

/// The parameters that carry an attachment's file name (Content-Disposition `filename`,
/// Content-Type `name`; RFC 2231 forms arrive decoded under these names).
fn is_file_name(param: &str) -> bool {
    matches!(param, "filename" | "name")
}

/// The lower-case type and subtype of a text part (text/plain when it has none or when
/// they are not tokens).
fn text_type(ct: Option<&ContentType<'_>>) -> (String, String) {
    let ty = token(ct.map(|c| c.ctype()), "text");
    let sub = token(ct.and_then(|c| c.subtype()), "plain");
    (ty, sub)
}

/// True for an RFC 2045 `token` (what a media type, subtype, disposition or parameter name
/// is): printable ASCII without spaces or specials. Anything else (mail-parser takes whatever
/// stands before the `/` or `=`) could carry an address or a host name and is not copied.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// `s` in lower case when it is a token, else `default`.
fn token(s: Option<&str>, default: &str) -> String {
    s.filter(|s| is_token(s))
        .unwrap_or(default)
        .to_ascii_lowercase()
}

fn is_folded(ct: Option<&ContentType<'_>>) -> bool {
    ct.and_then(|c| c.subtype())
        .is_some_and(|s| FOLDED_SUBTYPES.contains(&s.to_ascii_lowercase().as_str()))
}

/// `data` as text when `ct` is one of [`TEXTUAL_APPLICATION`] and `data` is UTF-8.
fn textual<'d>(ct: Option<&ContentType<'_>>, data: &'d [u8]) -> Option<&'d str> {
    let ct = ct?;
    let sub = ct.subtype()?.to_ascii_lowercase();
    let textual = ct.ctype().eq_ignore_ascii_case("application")
        && TEXTUAL_APPLICATION.contains(&sub.as_str());
    textual.then(|| std::str::from_utf8(data).ok()).flatten()
}

fn attr_is(ct: &ContentType<'_>, name: &str, value: &str) -> bool {
    ct.attribute(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// A Content-Language value reduced to language tags.
fn language(value: &HeaderValue<'_>) -> Option<String> {
    let tags: Vec<&str> = match value {
        HeaderValue::Text(t) => t.split(',').collect(),
        HeaderValue::TextList(list) => list.iter().flat_map(|t| t.split(',')).collect(),
        _ => return None,
    };
    let tags: Vec<&str> = tags
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 35)
        .filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .collect();
    (!tags.is_empty()).then(|| tags.join(", "))
}

fn write_content_type(
    out: &mut Vec<u8>,
    c_type: String,
    attrs: Vec<(Cow<'static, str>, Cow<'static, str>)>,
) {
    write_content_type_named(out, "Content-Type", c_type, attrs)
}

fn write_content_type_named(
    out: &mut Vec<u8>,
    name: &str,
    c_type: String,
    mut attributes: Vec<(Cow<'static, str>, Cow<'static, str>)>,
) {
    for (_, value) in attributes.iter_mut() {
        if let Cow::Owned(clean) = body::single_line(value) {
            *value = Cow::Owned(clean);
        }
    }
    let value = OutContentType {
        c_type: c_type.into(),
        attributes,
    };
    write_header(out, name, &value);
}
