//! What `remailer queue list` and `queue show` print about spool entries: aliases, sizes,
//! times, the persisted attempts and their errors — never a real address, and error texts
//! go through [`safe_error`] again (no host name, no address, not even the recipient's
//! domain). Times are UTC, RFC 3339, to the second.

use std::fmt::Write;

use crate::spool::retry::safe_error;
use crate::spool::{Entry, Kind};

/// An id as `queue show`/`queue delete` accept it: what [`crate::spool::Spool::new_id`]
/// makes (hex digits), so nothing else reaches the spool or the control socket.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

fn kind(e: &Entry) -> &'static str {
    match e.envelope.kind {
        Kind::Remail => "remail",
        Kind::Notice => "notice",
    }
}

/// The recipient as an alias, or what kind of address it is.
fn recipient(e: &Entry) -> &str {
    match (&e.envelope.recipient_alias, e.envelope.kind) {
        (Some(alias), _) => alias,
        (None, Kind::Notice) if e.envelope.mail_from.is_empty() => "(a member: service notice)",
        (None, _) => "(outside address: one-way letter)",
    }
}

/// When the next attempt is due: the release time or the persisted next attempt.
fn next_ms(e: &Entry) -> Option<i64> {
    match e.history.last() {
        Some(a) => Some(a.next_ms),
        None => e.envelope.release_ms,
    }
}

pub fn list_header() -> String {
    format!(
        "{:<26} {:<6} {:>7} {:>3} {:<20} {:<20} {:<24} LAST-ERROR",
        "QUEUE-ID", "KIND", "AGE-S", "TRY", "NEXT-ATTEMPT", "RELEASE", "RECIPIENT"
    )
}

/// One `queue list` line.
pub fn list_line(e: &Entry, now: i64) -> String {
    let dash = || "-".to_string();
    format!(
        "{:<26} {:<6} {:>7} {:>3} {:<20} {:<20} {:<24} {}",
        e.id,
        kind(e),
        now - e.envelope.created,
        e.history.last().map_or(0, |a| a.n),
        next_ms(e).map_or_else(dash, time),
        e.envelope.release_ms.map_or_else(dash, time),
        recipient(e),
        e.history.last().map_or_else(dash, |a| safe_error(&a.error)),
    )
}

/// `queue show ID`: the envelope (aliases only), size, times and every persisted attempt.
/// `sender_alias` is the sending member's alias, when the entry has one that still exists.
pub fn show(e: &Entry, sender_alias: Option<&str>, now: i64) -> String {
    let mut out = String::new();
    let from = match (sender_alias, e.envelope.sender_id) {
        (Some(alias), _) => alias,
        (None, Some(_)) => "(a removed alias)",
        (None, None) => "(the service)",
    };
    let _ = writeln!(out, "queue id:  {}", e.id);
    let _ = writeln!(out, "kind:      {}", kind(e));
    let _ = writeln!(out, "from:      {from}");
    let _ = writeln!(out, "to:        {}", recipient(e));
    let _ = writeln!(out, "size:      {} bytes", e.message.len());
    let _ = writeln!(
        out,
        "queued:    {} ({} s ago)",
        time(e.envelope.created * 1000),
        now - e.envelope.created
    );
    let release = e.envelope.release_ms.map_or("-".into(), time);
    let _ = writeln!(out, "release:   {release}");
    let _ = writeln!(out, "attempts:  {}", e.history.last().map_or(0, |a| a.n));
    let next = next_ms(e).map_or("-".into(), time);
    let _ = writeln!(out, "next:      {next}");
    let _ = writeln!(out, "history:");
    if e.history.is_empty() {
        let _ = writeln!(out, "  (no attempt has failed yet)");
    }
    for a in &e.history {
        let _ = writeln!(
            out,
            "  #{:<3} {}  {}  (next {})",
            a.n,
            time(a.at_ms),
            safe_error(&a.error),
            time(a.next_ms)
        );
    }
    out
}
