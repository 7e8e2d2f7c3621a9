//! `fuzzing`: the entry points of the coverage-guided fuzz targets in `fuzz/` (one function
//! per target, bytes in), shared with `tests/fuzz_replay.rs`, which feeds every committed
//! corpus file to the same function in the normal test run. Each entry drives the real code
//! and panics when an invariant of that code does not hold; a panic is what the fuzzer (and
//! the replay) reports. Not part of the service's API.

mod smtp;
mod spool;

use std::sync::LazyLock;

use time::macros::datetime;

use crate::address::{Alias, AliasName, Domain, RealAddress};
use crate::bounce::BounceToken;
use crate::keys::Keys;
use crate::rewrite::{self, Context, Lookup, Member};

pub use smtp::{data_end, session as smtp_session};
pub use spool::spool_recovery;

/// The names of the fuzz targets, as in `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: &[&str] = &[
    "rewrite",
    "dsn",
    "bounce_token",
    "spool_recovery",
    "data_end",
    "smtp_session",
];

/// Runs the entry point of the fuzz target `name` on `data`; false for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "rewrite" => rewrite(data),
        "dsn" => dsn(data),
        "bounce_token" => bounce_token(data),
        "spool_recovery" => spool_recovery(data),
        "data_end" => data_end(data),
        "smtp_session" => smtp_session(data),
        _ => return false,
    }
    true
}

/// The service domain and keys every target uses.
const DOMAIN: &str = "remailer.test";
const MASTER: [u8; 32] = [7; 32];
/// "Now" for the targets that need a clock (2027-01-15), fixed so runs are reproducible.
pub const NOW: i64 = 1_800_000_000;

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::from_master(MASTER));
static DOMAIN_: LazyLock<Domain> = LazyLock::new(|| Domain::parse(DOMAIN).expect("domain"));

/// The same cast as the rewrite corpus tests: Joe (the sender), Ann and Carol.
struct Cast {
    members: Vec<Member>,
    dir: Lookup,
}

static CAST: LazyLock<Cast> = LazyLock::new(|| {
    let member = |alias: &str, real: &str, name: Option<&str>| Member {
        alias: Alias::new(AliasName::parse(alias).expect("alias"), &DOMAIN_),
        real: RealAddress::parse(real, &DOMAIN_).expect("address"),
        display_name: name.map(str::to_string),
    };
    let members = vec![
        member("joe", "joe@real.example", None),
        member("ann", "ann@mail.example", None),
        member("carol", "carol@corp.example", Some("Carol (alias)")),
    ];
    let mut dir = Lookup::default();
    for m in &members {
        dir.add_member(m.clone());
    }
    Cast { members, dir }
});

/// `rewrite::scan` and `rewrite::rewrite` on arbitrary bytes as a message from Joe to Ann.
/// Invariants: neither panics; a rewritten message parses again; no member's real address
/// stands in the output as a whole address (the anonymity promise, ARCHITECTURE.md §3).
pub fn rewrite(data: &[u8]) {
    let cast = &*CAST;
    let _ = rewrite::scan(data);
    for strip_signatures in [false, true] {
        let ctx = Context {
            domain: &DOMAIN_,
            sender: &cast.members[0],
            recipients: &cast.members[1..2],
            now: datetime!(2024-06-03 10:00:00 +02:00),
            nonce: [0xab; 16],
            keys: &KEYS,
            strip_signatures,
            strip_remote_content: true,
            strip_attachment_metadata: true,
        };
        let Ok(out) = rewrite::rewrite(data, &ctx, &cast.dir) else {
            continue;
        };
        assert!(
            rewrite::parse(&out.message).is_some(),
            "the rewritten message does not parse"
        );
        for m in &cast.members {
            let real = m.real.normalized();
            assert!(
                !contains_address(&out.message, real.as_bytes()),
                "a member's real address survived rewriting"
            );
        }
    }
}

/// True when `addr` (lower case) stands in `text` (any case) as a whole address: not glued
/// to more local-part bytes before it or domain bytes after it.
fn contains_address(text: &[u8], addr: &[u8]) -> bool {
    let local = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    text.windows(addr.len()).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(addr)
            && (i == 0 || !local(text[i - 1]))
            && whole_after(&text[i + addr.len()..], domain)
    })
}

/// True when `rest` does not continue the domain before it: no domain byte, no `.` and a
/// domain byte, and no quoted-printable soft line break (`=` CRLF), after which the word may
/// go on.
fn whole_after(rest: &[u8], domain: impl Fn(u8) -> bool) -> bool {
    match rest {
        [] => true,
        [b'=', b'\r', b'\n', ..] => false,
        [b'.', next, ..] => !domain(*next),
        [b, ..] => !domain(*b),
    }
}

/// `dsn::classify` and `dsn::is_auto_submitted` on arbitrary bytes. Invariants: no panic;
/// a bounce's status is digits and dots only (the remote text never leaves `dsn`).
pub fn dsn(data: &[u8]) {
    use crate::dsn::{classify, is_auto_submitted, Report};
    let _ = is_auto_submitted(data);
    if let Report::Bounce {
        status: Some(status),
        ..
    } = classify(data)
    {
        assert!(
            !status.is_empty()
                && status.len() <= 16
                && status.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            "a DSN status that is not digits and dots: {status:?}"
        );
    }
}

/// `BounceToken::verify` on arbitrary bytes as a local part. Invariants: no panic; a token
/// that verifies is within the age limit, is exactly its canonical rendering, and that
/// rendering verifies to the same token.
pub fn bounce_token(data: &[u8]) {
    let Ok(local) = std::str::from_utf8(data) else {
        return;
    };
    let Some(token) = BounceToken::verify(local, &KEYS, NOW) else {
        return;
    };
    let today = NOW / 86_400;
    assert!(
        token.day <= today && today - token.day <= crate::bounce::TOKEN_DAYS,
        "an expired or future token verified"
    );
    let canonical = token.local_part(&KEYS);
    assert_eq!(
        local, canonical,
        "a token verified in a spelling other than its canonical one"
    );
    assert_eq!(
        BounceToken::verify(&canonical, &KEYS, NOW),
        Some(token),
        "the canonical rendering of a verified token does not verify"
    );
}

/// True when `data` is a local part the bounce token target's keys verify (used by the replay
/// test to check that the corpus reaches the accepting path).
pub fn bounce_token_verifies(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|l| BounceToken::verify(l, &KEYS, NOW).is_some())
}

/// A valid token of the bounce token target's keys (seeds for its corpus).
pub fn bounce_token_seed(sender_id: i64, recipient_id: i64, days_ago: i64) -> String {
    BounceToken::new(sender_id, recipient_id, NOW - days_ago * 86_400).local_part(&KEYS)
}
