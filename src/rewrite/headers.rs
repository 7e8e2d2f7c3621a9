//! Message headers, rebuilt from an allowlist. Nothing of the original header block is
//! copied: every header written here is generated from a parsed value (Subject, the mapped
//! address lists, the mapped thread IDs) or set by the service (From, Date, Message-ID,
//! MIME-Version). The Content-* headers of the root part are written by [`super::mime`].

use mail_builder::headers::address::Address as OutAddress;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_parser::{HeaderName, HeaderValue, Message};

use super::emit::{write_header, write_raw, Writer};
use super::ids;
use super::mapper::{Mapped, Mapper};
use super::Directory;

/// Headers whose addresses may carry a member's real name.
const NAMED_HEADERS: &[HeaderName<'static>] = &[
    HeaderName::From,
    HeaderName::To,
    HeaderName::Cc,
    HeaderName::Bcc,
    HeaderName::ReplyTo,
    HeaderName::Sender,
    HeaderName::ResentFrom,
    HeaderName::ResentTo,
    HeaderName::ResentCc,
    HeaderName::ResentSender,
];

/// Learns the real display names `msg`'s headers give members' addresses.
pub fn learn_names(map: &mut Mapper<'_>, msg: &Message<'_>) {
    let Some(root) = msg.parts.first() else {
        return;
    };
    for h in &root.headers {
        if !NAMED_HEADERS.contains(&h.name) {
            continue;
        }
        let Some(list) = h.value.as_address() else {
            continue;
        };
        for a in list.iter() {
            if let (Some(name), Some(addr)) = (a.name(), a.address()) {
                map.learn_name(name, addr);
            }
        }
    }
}

/// The mapped addresses of every `name` header of `msg` (deduplicated), and whether the
/// header was present at all.
fn mapped_list(
    map: &mut Mapper<'_>,
    msg: &Message<'_>,
    name: &HeaderName<'_>,
) -> (Vec<Mapped>, bool) {
    let mut out: Vec<Mapped> = Vec::new();
    let mut present = false;
    let Some(root) = msg.parts.first() else {
        return (out, false);
    };
    for h in root.headers.iter().filter(|h| h.name == *name) {
        present = true;
        let Some(list) = h.value.as_address() else {
            continue;
        };
        for a in list.iter() {
            let Some(m) = a.address().and_then(|addr| map.map_header_address(addr)) else {
                continue;
            };
            if !out.iter().any(|o| o.address == m.address) {
                out.push(m);
            }
        }
    }
    (out, present)
}

fn to_out(list: Vec<Mapped>) -> OutAddress<'static> {
    let mut items: Vec<OutAddress<'static>> = list
        .into_iter()
        .map(|m| OutAddress::new_address(m.name, m.address))
        .collect();
    if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        OutAddress::new_list(items)
    }
}

/// To, Cc and Reply-To with members mapped and everyone else dropped. An empty To becomes
/// `undisclosed-recipients:;` (for the top level only).
fn write_recipients(map: &mut Mapper<'_>, msg: &Message<'_>, top: bool, out: &mut Vec<u8>) {
    let (to, _) = mapped_list(map, msg, &HeaderName::To);
    if !to.is_empty() {
        write_header(out, "To", &to_out(to));
    } else if top {
        write_raw(out, "To", "undisclosed-recipients:;");
    }
    let (cc, _) = mapped_list(map, msg, &HeaderName::Cc);
    if !cc.is_empty() {
        write_header(out, "Cc", &to_out(cc));
    }
    let (reply_to, _) = mapped_list(map, msg, &HeaderName::ReplyTo);
    if !reply_to.is_empty() {
        write_header(out, "Reply-To", &to_out(reply_to));
    }
}

fn write_subject(map: &mut Mapper<'_>, msg: &Message<'_>, out: &mut Vec<u8>) {
    let subject = msg.parts.first().and_then(|root| {
        root.headers
            .iter()
            .find(|h| h.name == HeaderName::Subject)
            .and_then(|h| h.value.as_text())
    });
    if let Some(s) = subject {
        let s = map.replace(s.trim()).into_owned();
        write_header(out, "Subject", &Text::new(s));
    }
}

/// Every ID of every `name` header (In-Reply-To, References), in order.
fn ids_of<'a>(msg: &'a Message<'_>, name: &HeaderName<'_>) -> Vec<&'a str> {
    let mut out = Vec::new();
    let Some(root) = msg.parts.first() else {
        return out;
    };
    for h in root.headers.iter().filter(|h| h.name == *name) {
        match &h.value {
            HeaderValue::Text(t) => out.push(t.as_ref()),
            HeaderValue::TextList(list) => out.extend(list.iter().map(|t| t.as_ref())),
            _ => {}
        }
    }
    out
}

fn write_threading(w: &Writer<'_>, msg: &Message<'_>, dir: &dyn Directory, out: &mut Vec<u8>) {
    let ctx = w.context();
    for (name, label) in [
        (HeaderName::InReplyTo, "In-Reply-To"),
        (HeaderName::References, "References"),
    ] {
        let mut mapped: Vec<String> = Vec::new();
        for id in ids_of(msg, &name) {
            let new = ids::map_reference(id, dir, ctx.keys, ctx.domain);
            if !mapped.contains(&new) {
                mapped.push(new);
            }
        }
        if !mapped.is_empty() {
            write_header(
                out,
                label,
                &MessageId::new_list(mapped.iter().map(String::as_str)),
            );
        }
    }
}

/// The top-level headers: From, To, Cc, Reply-To, Subject, Date, Message-ID, threading and
/// MIME-Version. `issued` is the new Message-ID without brackets.
pub fn write_top(
    w: &mut Writer<'_>,
    msg: &Message<'_>,
    dir: &dyn Directory,
    issued: &str,
    out: &mut Vec<u8>,
) {
    let ctx = w.context();
    let sender = ctx.sender;
    let from = OutAddress::new_address(sender.display_name.as_deref(), sender.alias.address());
    write_header(out, "From", &from);
    write_recipients(&mut w.map, msg, true, out);
    write_subject(&mut w.map, msg, out);
    write_header(out, "Date", &Date::new(ctx.now.unix_timestamp()));
    write_header(out, "Message-ID", &MessageId::new(issued));
    write_threading(w, msg, dir, out);
    write_raw(out, "MIME-Version", "1.0");
}

/// The headers of an embedded `message/rfc822`: the same allowlist, From/To/Cc/Reply-To
/// mapped like the top level (non-members dropped), no Date, Message-ID or threading.
pub fn write_nested(w: &mut Writer<'_>, msg: &Message<'_>, out: &mut Vec<u8>) {
    let (from, _) = mapped_list(&mut w.map, msg, &HeaderName::From);
    if !from.is_empty() {
        write_header(out, "From", &to_out(from));
    }
    write_recipients(&mut w.map, msg, false, out);
    write_subject(&mut w.map, msg, out);
    write_raw(out, "MIME-Version", "1.0");
}
