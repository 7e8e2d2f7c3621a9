//! Property test: random messages with members' real addresses and names in random spots
//! (headers, body text, `mailto:` links, quoted-reply attributions, wrapped across lines),
//! random charsets (UTF-8, ISO-8859-1, Windows-1252, KOI8-R), random transfer encodings
//! (7bit/8bit, quoted-printable, base64), plain or `format=flowed`, with or without an HTML
//! alternative, MIME parameters written plainly, folded onto continuation lines, or as
//! RFC 2231 continuations, and sometimes a `message/delivery-status` report part (plain or
//! base64) naming members and outsiders. After rewriting and fully decoding, nothing of the
//! members' identities, the sender's IP or the original Message-ID host may remain, no
//! `message/*` or `multipart/*` part may have a transfer encoding, and the text must be kept.

#[path = "fixtures/rewrite/support.rs"]
mod support;

use base64::Engine;
use proptest::prelude::*;
use remailer::rewrite::{rewrite, scan};
use support::{check_output, encoded_containers, fixture_context, identity_leaks, Cast};

const WORDS: &[&str] = &[
    "hello", "the", "meeting", "is", "moved", "to", "Thursday", "please", "bring", "maps",
    "Regards", "thanks", "and", "see", "you", "at", "noon", "OK", "Joe", "Ann",
];
const UTF8: &[&str] = &["café", "Grüße", "Привет", "日本語", "🎉", "naïve"];
const LATIN1: &[&str] = &["café", "Grüße", "naïve", "Köln"];
const CP1252: &[&str] = &["café", "“quoted”", "€5", "it’s"];
const KOI8: &[&str] = &["Привет", "мир", "письмо"];
const REAL: &[&str] = &["joe@real.example", "ann@mail.example", "carol@corp.example"];
const NAMES: &[&str] = &["Joe Smith", "Ann Lee", "Carol Diaz"];

#[derive(Debug, Clone)]
enum Seg {
    Word(usize),
    Foreign(usize),
    Addr(usize, bool),
    Name(usize),
    Mailto(usize),
    Attribution(usize),
}

#[derive(Debug, Clone)]
struct Spec {
    charset: usize,
    cte: usize,
    html: bool,
    flowed: bool,
    cc_carol: bool,
    to_alias: bool,
    wrap: usize,
    ip: u8,
    /// How MIME parameters are written: plain, folded, RFC 2231 continuations, RFC 2231
    /// extended value.
    fold: usize,
    /// A delivery-status part: (reporting member, recipient (3: an outsider), base64).
    report: Option<(usize, usize, bool)>,
    segs: Vec<Seg>,
}

fn seg() -> impl Strategy<Value = Seg> {
    prop_oneof![
        4 => (0..WORDS.len()).prop_map(Seg::Word),
        2 => (0..8usize).prop_map(Seg::Foreign),
        2 => (0..3usize, any::<bool>()).prop_map(|(m, up)| Seg::Addr(m, up)),
        2 => (0..3usize).prop_map(Seg::Name),
        1 => (0..3usize).prop_map(Seg::Mailto),
        1 => (0..3usize).prop_map(Seg::Attribution),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0..4usize, 0..3usize, any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>(), 20..90usize, any::<u8>()),
        prop::collection::vec(seg(), 1..60),
        (
            0..4usize,
            prop::option::of((0..3usize, 0..4usize, any::<bool>())),
        ),
    )
        .prop_map(
            |(
                (charset, cte, html, flowed),
                (cc_carol, to_alias, wrap, ip),
                segs,
                (fold, report),
            )| Spec {
                charset,
                cte,
                html,
                flowed,
                cc_carol,
                to_alias,
                wrap,
                ip,
                fold,
                report,
                segs,
            },
        )
}

fn foreign(charset: usize, i: usize) -> &'static str {
    let list = [UTF8, LATIN1, CP1252, KOI8][charset];
    list[i % list.len()]
}

/// The body as lines of text (before wrapping), names of Carol only where she is known.
fn body_lines(s: &Spec) -> Vec<String> {
    let carol_known = s.cc_carol || s.segs.iter().any(|g| matches!(g, Seg::Attribution(2)));
    let mut lines = vec![String::from("KEEP:prop")];
    for g in &s.segs {
        let line = lines.last_mut().unwrap();
        let piece = match g {
            Seg::Word(i) => WORDS[*i].to_string(),
            Seg::Foreign(i) => foreign(s.charset, *i).to_string(),
            Seg::Addr(m, true) => REAL[*m].to_uppercase(),
            Seg::Addr(m, false) => REAL[*m].to_string(),
            Seg::Name(2) if !carol_known => "Carol".to_string(),
            Seg::Name(m) => NAMES[*m].to_string(),
            Seg::Mailto(m) => format!("mailto:{}", REAL[*m]),
            Seg::Attribution(m) => {
                let at = format!("On Mon, 3 Jun 2024, {} <{}> wrote:", NAMES[*m], REAL[*m]);
                lines.push(at);
                lines.push("> quoted".to_string());
                continue;
            }
        };
        line.push(' ');
        line.push_str(&piece);
    }
    lines
}

/// Wraps each line at spaces; continuation lines keep a quote prefix; flowed text marks soft
/// breaks with a trailing space.
fn wrap(lines: &[String], width: usize, flowed: bool) -> String {
    let mut out = String::new();
    for line in lines {
        let prefix = if line.starts_with('>') { "> " } else { "" };
        let mut current = String::new();
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            if !current.is_empty() && current.chars().count() + word.chars().count() > width {
                out.push_str(&current);
                out.push_str(if flowed { " \n" } else { "\n" });
                current = prefix.to_string();
            }
            if !current.is_empty() && !current.ends_with(' ') {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

fn encode_charset(text: &str, charset: usize) -> (Vec<u8>, &'static str) {
    match charset {
        0 => (text.as_bytes().to_vec(), "utf-8"),
        1 => (text.chars().map(|c| c as u32 as u8).collect(), "iso-8859-1"),
        2 => (
            encoding_rs::WINDOWS_1252.encode(text).0.into_owned(),
            "windows-1252",
        ),
        _ => (encoding_rs::KOI8_R.encode(text).0.into_owned(), "koi8-r"),
    }
}

fn qp(data: &[u8]) -> String {
    let mut out = String::new();
    let mut col = 0;
    for &b in data {
        if b == b'\n' {
            out.push_str("\r\n");
            col = 0;
            continue;
        }
        let piece = if (b' '..=b'~').contains(&b) && b != b'=' {
            (b as char).to_string()
        } else {
            format!("={b:02X}")
        };
        if col + piece.len() > 72 {
            out.push_str("=\r\n");
            col = 0;
        }
        col += piece.len();
        out.push_str(&piece);
    }
    out
}

/// `; name="value"` written the way `s.fold` says.
fn param(s: &Spec, name: &str, value: &str) -> String {
    let (a, b) = value.split_at(value.len() / 2);
    match s.fold {
        0 => format!("; {name}=\"{value}\""),
        1 => format!(";\r\n\t{name}=\"{value}\""),
        2 => format!(";\r\n {name}*0=\"{a}\";\r\n {name}*1=\"{b}\""),
        _ => format!(";\r\n {name}*=us-ascii'en'{value}"),
    }
}

/// A `message/delivery-status` part naming members and maybe an outsider.
fn report_part(s: &Spec, (from, to, b64): (usize, usize, bool)) -> Vec<u8> {
    let rcpt = REAL.get(to).copied().unwrap_or("outsider@else.example");
    let name = NAMES.get(to).copied().unwrap_or("Out Sider");
    let fields = format!(
        "Reporting-MTA: dns; mx.real.example\r\nX-Postfix-Sender: rfc822; {}\r\n\
         Received-From-MTA: dns; smtp.real.example ([198.51.100.{}])\r\n\r\n\
         Final-Recipient: rfc822; {rcpt}\r\nOriginal-Recipient: rfc822;{}\r\nAction: failed\r\n\
         Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <{rcpt}>:\r\n {name} is unknown\r\n",
        REAL[from],
        s.ip,
        rcpt.to_uppercase()
    );
    let mut out = format!(
        "Content-Type: message/delivery-status{}\r\n",
        param(s, "name", "status.txt")
    )
    .into_bytes();
    if b64 {
        out.extend(b"Content-Transfer-Encoding: base64\r\n\r\n");
        let enc = base64::engine::general_purpose::STANDARD.encode(fields.as_bytes());
        for chunk in enc.as_bytes().chunks(76) {
            out.extend(chunk);
            out.extend(b"\r\n");
        }
    } else {
        out.extend(b"\r\n");
        out.extend(fields.bytes());
    }
    out
}

/// One text part (headers and body).
fn part(s: &Spec, subtype: &str, text: &str) -> Vec<u8> {
    let (bytes, charset) = encode_charset(text, s.charset);
    let flowed = if s.flowed && subtype == "plain" {
        "; format=flowed"
    } else {
        ""
    };
    let charset = param(s, "charset", charset);
    let mut out = format!("Content-Type: text/{subtype}{charset}{flowed}\r\n").into_bytes();
    match s.cte {
        0 => {
            let cte = if bytes.is_ascii() { "7bit" } else { "8bit" };
            out.extend(format!("Content-Transfer-Encoding: {cte}\r\n\r\n").bytes());
            for &b in &bytes {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
        }
        1 => {
            out.extend(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
            out.extend(qp(&bytes).bytes());
        }
        _ => {
            out.extend(b"Content-Transfer-Encoding: base64\r\n\r\n");
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            for chunk in b64.as_bytes().chunks(76) {
                out.extend(chunk);
                out.extend(b"\r\n");
            }
        }
    }
    out
}

fn html_of(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut html = String::from("<html><body><p>");
    for word in escaped.split(' ') {
        match REAL.iter().find(|r| word.eq_ignore_ascii_case(r)) {
            Some(r) => html.push_str(&format!("<a href=\"mailto:{r}\">{word}</a> ")),
            None => {
                html.push_str(word);
                html.push(' ');
            }
        }
    }
    html.push_str("</p></body></html>\n");
    html.replace('\n', "<br>\n")
}

fn message(s: &Spec) -> Vec<u8> {
    let text = wrap(&body_lines(s), s.wrap, s.flowed);
    let to = if s.to_alias {
        "ann@remailer.test"
    } else {
        "ann@mail.example"
    };
    let mut head = format!(
        "Received: from [198.51.100.{}] by smtp.real.example; Mon, 3 Jun 2024 10:00:00 +0200\r\n\
         X-Originating-IP: [198.51.100.{}]\r\n\
         From: \"Joe Smith\" <joe@real.example>\r\nTo: \"Ann Lee\" <{to}>\r\n",
        s.ip, s.ip
    );
    if s.cc_carol {
        head.push_str("Cc: Carol Diaz <carol@corp.example>\r\n");
    }
    head.push_str(
        "Subject: note for joe@real.example\r\nMessage-ID: <prop.1@mail.provider.example>\r\n\
         MIME-Version: 1.0\r\n",
    );
    let mut out = head.into_bytes();
    if let Some(report) = s.report {
        let boundary = param(s, "boundary", "PROPREPORT");
        out.extend(
            format!(
                "Content-Type: multipart/report; report-type=delivery-status{boundary}\r\n\r\n"
            )
            .bytes(),
        );
        out.extend(b"--PROPREPORT\r\n");
        out.extend(text_body(s, &text));
        out.extend(b"\r\n--PROPREPORT\r\n");
        out.extend(report_part(s, report));
        out.extend(b"\r\n--PROPREPORT--\r\n");
    } else {
        out.extend(text_body(s, &text));
    }
    out
}

/// The text part, or a multipart/alternative of text and HTML.
fn text_body(s: &Spec, text: &str) -> Vec<u8> {
    if !s.html {
        return part(s, "plain", text);
    }
    let boundary = param(s, "boundary", "PROPB");
    let mut out =
        format!("Content-Type: multipart/alternative{boundary}\r\n\r\n--PROPB\r\n").into_bytes();
    out.extend(part(s, "plain", text));
    out.extend(b"\r\n--PROPB\r\n");
    out.extend(part(s, "html", &html_of(text)));
    out.extend(b"\r\n--PROPB--\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_messages_leak_nothing(s in spec()) {
        let cast = Cast::new();
        let raw = message(&s);
        let scanned = scan(&raw);
        let holder = fixture_context(&cast, &scanned, false);
        let ctx = holder.context();
        let out = rewrite(&raw, &ctx, &cast.dir).expect("rewrites");
        let mut problems = check_output(&raw, &out.message, "KEEP:prop");
        problems.extend(identity_leaks(&out.message));
        problems.extend(encoded_containers(&out.message));
        if s.report.is_some() {
            let text = String::from_utf8_lossy(&out.message);
            if !text.contains("Content-Type: message/delivery-status") || !text.contains("Status: 5.1.1") {
                problems.push("lost the report part".into());
            }
        }
        prop_assert!(
            problems.is_empty(),
            "{:?}\n--- input ---\n{}\n--- output ---\n{}",
            problems,
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&out.message)
        );
    }
}
