//! Unit tests of [`super::rewrite`] and [`super::scan`], one group per rule of ARCHITECTURE.md §3.

use mail_parser::MimeHeaders;
use time::macros::datetime;

use super::*;
use crate::address::{AliasName, RealAddress};

fn domain() -> Domain {
    Domain::parse("remailer.test").unwrap()
}

fn member(alias: &str, real: &str, name: Option<&str>) -> Member {
    Member {
        alias: Alias::new(AliasName::parse(alias).unwrap(), &domain()),
        real: RealAddress::parse(real, &domain()).unwrap(),
        display_name: name.map(str::to_string),
    }
}

fn cast() -> (Member, Member, Lookup) {
    let joe = member("joe", "joe@real.example", None);
    let ann = member("ann", "ann@mail.example", None);
    let carol = member("carol", "carol@corp.example", Some("Carol (alias)"));
    let mut dir = Lookup::default();
    for m in [joe.clone(), ann.clone(), carol] {
        dir.add_member(m);
    }
    (joe, ann, dir)
}

fn run(raw: &str) -> Result<(String, Rewritten), RewriteError> {
    run_with(raw, false, &cast().2)
}

fn run_with(raw: &str, strip: bool, dir: &Lookup) -> Result<(String, Rewritten), RewriteError> {
    let (joe, ann, _) = cast();
    let keys = Keys::from_master([3; 32]);
    let d = domain();
    let recipients = [ann];
    let ctx = Context {
        domain: &d,
        sender: &joe,
        recipients: &recipients,
        now: datetime!(2024-06-03 10:00:00 +02:00),
        nonce: [0xab; 16],
        keys: &keys,
        strip_signatures: strip,
    };
    let out = rewrite(raw.as_bytes(), &ctx, dir)?;
    let text = String::from_utf8(out.message.clone()).unwrap();
    Ok((text, out))
}

/// The output, decoded: headers as text, every text part decoded.
fn decoded(out: &str) -> String {
    let msg = parse(out.as_bytes()).expect("output parses");
    let mut all =
        String::from_utf8_lossy(&msg.raw_message[..msg.parts[0].offset_body as usize]).into_owned();
    for h in msg.headers() {
        if let Some(t) = h.value.as_text() {
            all.push_str(t);
        }
    }
    for p in &msg.parts {
        if let PartType::Text(t) | PartType::Html(t) = &p.body {
            all.push_str(t);
        }
    }
    all
}

const SIMPLE: &str = "Received: from [203.0.113.7] by mx.real.example\r\n\
X-Originating-IP: [203.0.113.7]\r\n\
x-mailer: Thunderbird\r\n\
From: \"Joe Smith\" <joe@real.example>\r\n\
To: Ann Lee <ann@mail.example>, Outsider <out@else.example>\r\n\
Cc: carol@corp.example, other@else.example\r\n\
Reply-To: Joe Smith <joe@real.example>\r\n\
Sender: joe@real.example\r\n\
Subject: Lunch with Joe Smith?\r\n\
Date: Mon, 3 Jun 2024 09:00:00 -0700\r\n\
Message-ID: <abc123@mail.real.example>\r\n\
DKIM-Signature: v=1; d=real.example\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hi Ann, write to joe@real.example or JOE@REAL.EXAMPLE.\r\n\
-- \r\n\
Joe Smith\r\n";

#[test]
fn rule1_only_allowed_headers_survive() {
    let (out, _) = run(SIMPLE).unwrap();
    let head = &out[..out.find("\r\n\r\n").unwrap()];
    let names: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "From",
            "To",
            "Cc",
            "Reply-To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding"
        ]
    );
    assert!(!out.contains("203.0.113.7"));
    assert!(!out.to_lowercase().contains("thunderbird"));
}

#[test]
fn rule2_addresses_are_mapped_and_outsiders_dropped() {
    let (out, _) = run(SIMPLE).unwrap();
    assert!(
        out.contains("From: <joe@remailer.test>\r\n")
            || out.contains("From: joe@remailer.test\r\n"),
        "{out}"
    );
    assert!(
        out.contains("To: <ann@remailer.test>\r\n") || out.contains("To: ann@remailer.test\r\n"),
        "{out}"
    );
    assert!(out.contains("Carol (alias)"));
    assert!(out.contains("carol@remailer.test"));
    assert!(
        out.contains("Reply-To: <joe@remailer.test>")
            || out.contains("Reply-To: joe@remailer.test")
    );
    assert!(!out.contains("else.example"));
    assert!(!out.contains("Sender:"));
}

#[test]
fn rule2_empty_to_becomes_undisclosed() {
    let raw = "From: joe@real.example\r\nTo: someone@else.example\r\nSubject: x\r\n\r\nbody\r\n";
    let (out, _) = run(raw).unwrap();
    assert!(out.contains("To: undisclosed-recipients:;\r\n"));
    assert!(!out.contains("Cc:"));
    assert!(!out.contains("Reply-To:"));
}

#[test]
fn rule2_groups_encoded_words_and_comments() {
    let raw = "From: =?UTF-8?Q?Jo=C3=A9_Smith?= <joe@real.example>\r\n\
To: friends: \"Lee, Ann\" <ann@MAIL.example> (work), x@else.example;\r\n\
Subject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\n\r\nJoé Smith and Ann Lee say hi\r\n";
    let (out, _) = run(raw).unwrap();
    let text = decoded(&out);
    assert!(text.contains("ann@remailer.test"), "{out}");
    assert!(!text.contains("Joé Smith"), "{text}");
    assert!(!text.contains("Ann Lee"), "{text}");
    assert!(text.contains("Grüße"));
    assert!(!text.contains("friends"));
}

#[test]
fn rule3_date_and_message_id() {
    let (out, r) = run(SIMPLE).unwrap();
    assert!(
        out.contains("Date: Mon, 3 Jun 2024 08:00:00 +0000\r\n"),
        "{out}"
    );
    assert!(out.contains(&format!("Message-ID: <{}>\r\n", r.message_id)));
    assert!(r.message_id.ends_with("@remailer.test"));
    assert!(is_own_message_id(
        &r.message_id,
        &Keys::from_master([3; 32]),
        &domain()
    ));
    assert!(!is_own_message_id(
        "abc123@mail.real.example",
        &Keys::from_master([3; 32]),
        &domain()
    ));
    assert_eq!(
        r.original_message_id.as_deref(),
        Some("abc123@mail.real.example")
    );
    assert!(!out.contains("mail.real.example"));
}

#[test]
fn rule4_threading_maps_back_or_hides() {
    let (_, _, mut dir) = cast();
    dir.add_issued(
        "issued1@remailer.test".into(),
        "orig@ann.host.example".into(),
    );
    let raw = "From: joe@real.example\r\nTo: ann@mail.example\r\n\
In-Reply-To: <issued1@remailer.test>\r\n\
References: <root@smtp.gmail.com>\r\n <issued1@remailer.test>\r\n\
Subject: Re: x\r\n\r\nbody\r\n";
    let (out, _) = run_with(raw, false, &dir).unwrap();
    assert!(
        out.contains("In-Reply-To: <orig@ann.host.example>\r\n"),
        "{out}"
    );
    assert!(!out.contains("gmail"));
    let keys = Keys::from_master([3; 32]);
    let opaque = ids::opaque("root@smtp.gmail.com", &keys, &domain());
    let unfolded = out.replace("\r\n ", " ");
    assert!(
        unfolded.contains(&format!(
            "References: <{opaque}> <orig@ann.host.example>\r\n"
        )),
        "{out}"
    );
}

#[test]
fn rule5_bodies_are_rewritten_through_encodings() {
    let raw = "From: Joe Smith <joe@real.example>\r\nTo: ann@mail.example\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Caf=E9 with Joe =\r\nSmith <joe@real=\r\n.example> and carol@corp.example\r\n\
--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGEgaHJlZj0ibWFpbHRvOmpvZUByZWFsLmV4YW1wbGUiPkpvZSBTbWl0aDwvYT4=\r\n--b1--\r\n";
    let (out, _) = run(raw).unwrap();
    let text = decoded(&out);
    assert!(
        text.contains("Café with joe@remailer.test <joe@remailer.test> and carol@remailer.test"),
        "{text}"
    );
    assert!(
        text.contains("<a href=\"mailto:joe@remailer.test\">joe@remailer.test</a>"),
        "{text}"
    );
    assert!(!text.contains("real.example"));
    assert!(!text.contains("b1"));
}

#[test]
fn rule5_attribution_lines_and_flowed_text() {
    let raw = "From: Joe Smith <joe@real.example>\r\nTo: Ann Lee <ann@mail.example>\r\n\
Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n\
Sounds good.\r\n\r\nOn Mon, 3 Jun 2024, Ann Lee <ann@mail.example> \r\nwrote:\r\n> Hi Joe \r\n> Smith, see you.\r\n";
    let (out, _) = run(raw).unwrap();
    let text = decoded(&out);
    assert!(
        text.contains("On Mon, 3 Jun 2024, ann@remailer.test <ann@remailer.test> wrote:"),
        "{text}"
    );
    assert!(text.contains("> Hi joe@remailer.test, see you."), "{text}");
    assert!(!out.contains("format=flowed"));
}

#[test]
fn rule5_attachments_pass_unchanged() {
    let raw = "From: joe@real.example\r\nTo: ann@mail.example\r\n\
Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee file\r\n\
--XX\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--XX--\r\n";
    let (out, _) = run(raw).unwrap();
    let msg = parse(out.as_bytes()).unwrap();
    let att = msg.attachments().next().expect("attachment");
    assert_eq!(att.contents(), &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9][..]);
    assert_eq!(att.attachment_name(), Some("data.bin"));
}

#[test]
fn rule6_signed_mail_is_refused_or_stripped() {
    let raw = "From: joe@real.example\r\nTo: ann@mail.example\r\n\
Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=S\r\n\r\n\
--S\r\nContent-Type: text/plain\r\n\r\nsigned words from joe@real.example\r\n\
--S\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nxyz\r\n-----END PGP SIGNATURE-----\r\n--S--\r\n";
    assert_eq!(run(raw).unwrap_err(), RewriteError::Signed);
    let (out, _) = run_with(raw, true, &cast().2).unwrap();
    assert!(out.contains("signed words from joe@remailer.test"));
    assert!(!out.contains("PGP"));
    assert!(!out.contains("multipart/signed"));
    let smime = "From: joe@real.example\r\nContent-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
    assert_eq!(run(smime).unwrap_err(), RewriteError::Signed);
}

#[test]
fn rule7_own_mail_is_a_loop() {
    let (out, r) = run(SIMPLE).unwrap();
    assert_eq!(run(&out).unwrap_err(), RewriteError::Loop);
    let _ = r;
}

#[test]
fn rule8_output_is_crlf_and_parses() {
    let raw = SIMPLE.replace("\r\n", "\n");
    let (out, _) = run(&raw).unwrap();
    let bytes = out.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(bytes[i - 1], b'\r');
        }
    }
    assert!(out.split("\r\n").all(|l| l.len() <= 78));
    assert!(parse(bytes).is_some());
}

#[test]
fn garbage_is_unparseable_or_harmless() {
    assert!(matches!(run(""), Err(RewriteError::Unparseable) | Ok(_)));
}

#[test]
fn scan_lists_addresses_and_ids() {
    let s = scan(SIMPLE.as_bytes());
    assert_eq!(s.from.as_deref(), Some("joe@real.example"));
    assert_eq!(s.message_id.as_deref(), Some("abc123@mail.real.example"));
    for a in [
        "joe@real.example",
        "ann@mail.example",
        "out@else.example",
        "carol@corp.example",
    ] {
        assert!(
            s.addresses.iter().any(|x| x == a),
            "{a} in {:?}",
            s.addresses
        );
    }
    let raw = "From: a@b.example\r\nIn-Reply-To: <x@y.example>\r\nReferences: <w@v.example> <x@y.example>\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
ZGF2ZUBib2R5LmV4YW1wbGU=\r\n";
    let s = scan(raw.as_bytes());
    assert_eq!(s.referenced_ids, ["x@y.example", "w@v.example"]);
    assert!(
        s.addresses.iter().any(|x| x == "dave@body.example"),
        "{:?}",
        s.addresses
    );
}

#[test]
fn rule5_names_in_attributions_are_learnt_from_bodies() {
    let raw = "From: joe@real.example\r\nTo: ann@mail.example\r\nSubject: fwd\r\n\r\n\
Please write to <joe@real.example>.\r\n\
On Mon, Jun 3, 2024 at 10:00 AM Carol Diaz <carol@corp.example> wrote:\r\n\
> Carol Diaz here, and \"Ann Lee\" <ann@mail.example>.\r\n> Ann\r\n> Lee\r\n";
    let (out, _) = run(raw).unwrap();
    let text = decoded(&out);
    assert!(!text.contains("Carol Diaz"), "{text}");
    assert!(
        !text.contains("Ann Lee") && !text.contains("Ann\r\n> Lee"),
        "{text}"
    );
    assert!(
        text.contains("Please write to <joe@remailer.test>"),
        "{text}"
    );
}

/// Found by the `rewrite` fuzz target: mail-parser takes whatever stands before `/` as the
/// media type and whatever stands before `@DOMAIN` as the address, and both were copied.
#[test]
fn malformed_content_types_and_service_addresses_carry_no_real_address() {
    let raw = "From: joe@real.example\r\n\
To: Ann <x joe@real.example y.ann@remailer.test>, ann@remailer.test\r\n\
Subject: s\r\n\
Content-Type: a<joe@real.example>b/plain; x<ann@mail.example>=1\r\n\
Content-Disposition: in<carol@corp.example>line\r\n\
\r\n\
body\r\n";
    let (out, _) = run(raw).unwrap();
    for real in ["joe@real.example", "ann@mail.example", "carol@corp.example"] {
        assert!(!out.to_lowercase().contains(real), "{real} in:\n{out}");
    }
    assert!(
        out.contains("To: <ann@remailer.test>") || out.contains("To: ann@remailer.test"),
        "{out}"
    );
}
