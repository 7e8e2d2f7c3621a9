//! What the service puts on the wire (issue: nothing a smuggler could use leaves the service).
//! The raw DATA bytes captured at the sink, still dot-stuffed, must have CRLF line ends only
//! (no bare CR, no bare LF), every line that starts with `.` doubled, and exactly one
//! `CRLF . CRLF`: the terminator. The messages sent in carry bare CRs and `\r.\r\n`-style
//! sequences in their decoded bodies (quoted-printable `=0D`, base64), and, for the
//! postmaster forward, in the raw message itself.

mod harness;
mod support;

use std::time::Duration;

use harness::{wait_for, Client, Delivered, Service, Sink, SinkMode};

const JOE: &str = "joe@real.example";
const ANN: &str = "ann@mail.example";
const T: Duration = Duration::from_secs(15);

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    lines.join("\r\n")
}

/// A member's message whose decoded parts are full of bare CRs and end-of-data look-alikes.
fn smuggling_shaped_message() -> String {
    let html = b"<p>one\r.\r\ntwo\r\n.\r\r\nthree\rfour\n.\nfive</p>\r\n";
    let binary = b"\x00\r.\r\n\r\n.\r\n\xff";
    format!(
        "From: Joe Smith <{JOE}>\r\nTo: <ann@remailer.test>\r\nSubject: wire test\r\n\
         Message-ID: <wire.{}@mail.real.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Raw CR then dot=0D.=0D=0Amail me at {JOE}=0D=0D=0Aline=0Dafter a bare CR\r\n\
         .leading dot line\r\n..two dots\r\n\r\n\
         --b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --b--\r\n",
        harness::rand_id(),
        b64(html),
        b64(binary),
    )
}

/// Checks the raw DATA bytes of `d`; returns the problems found.
fn wire_problems(d: &Delivered) -> Vec<String> {
    let raw = &d.raw;
    let mut problems = Vec::new();
    for (i, &b) in raw.iter().enumerate() {
        let bare_cr = b == b'\r' && raw.get(i + 1) != Some(&b'\n');
        let bare_lf = b == b'\n' && (i == 0 || raw[i - 1] != b'\r');
        if bare_cr || bare_lf {
            problems.push(format!(
                "bare {} at byte {i}: {:?}",
                if bare_cr { "CR" } else { "LF" },
                String::from_utf8_lossy(&raw[i.saturating_sub(20)..(i + 20).min(raw.len())])
            ));
        }
    }
    let end = raw.windows(5).position(|w| w == b"\r\n.\r\n");
    if end != Some(raw.len().saturating_sub(5)) {
        problems.push(format!(
            "CRLF.CRLF at {end:?}, not only at the end ({} bytes)",
            raw.len()
        ));
    }
    // Undoing the stuffing must give back the message the sink read.
    let body = &raw[..raw.len().saturating_sub(3)];
    let mut unstuffed = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    if unstuffed != d.data {
        problems.push("unstuffed DATA differs from the message".into());
    }
    problems
}

async fn send(svc: &Service, from: &str, to: &str, data: &str) -> harness::client::Reply {
    let mut c = Client::connect(svc.smtp_port).await;
    let r = c.send_mail(from, &[to], data).await;
    c.cmd("QUIT").await;
    r
}

#[tokio::test]
async fn remailed_mail_has_crlf_only_and_correct_dot_stuffing_on_the_wire() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "").await;
    svc.add_alias("joe", JOE);
    svc.add_alias("ann", ANN);
    let r = send(&svc, JOE, "ann@remailer.test", &smuggling_shaped_message()).await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("delivery", T, || sink.delivered().pop()).await;
    let problems = wire_problems(&d);
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        String::from_utf8_lossy(&d.raw)
    );
    assert!(
        d.raw.windows(4).any(|w| w == b"\r\n.."),
        "a line starting with a dot is doubled:\n{}",
        d.text()
    );
    let text = d.body_text();
    assert!(
        text.contains(".leading dot line") && text.contains("joe@remailer.test"),
        "{text}"
    );
    assert!(!d.text().contains(JOE), "rewritten");
    let (code, zone, err) = svc.cli(&["dns"]);
    assert_eq!(code, 0, "{err}");
    let (ok, report) = support::dkimpy::verify(&svc.dir, &d.data, &zone);
    assert!(ok, "dkimpy: {report}\n{}", d.text());
}

/// Raw bare CRs and LFs never get as far as a forward: intake refuses them at the end of DATA
/// (they are how SMTP smuggling hides a second transaction). A forward of clean mail with
/// dot lines is CRLF-only and dot-stuffed on the wire.
#[tokio::test]
async fn a_postmaster_forward_has_crlf_only_on_the_wire_and_raw_bare_crs_never_reach_it() {
    let sink = Sink::start(SinkMode::Accept).await;
    let svc = Service::start(sink.port, "policy.postmaster = \"ops@operator.example\"").await;
    let head = "From: <someone@outside.example>\r\nTo: <postmaster@remailer.test>\r\n\
                Subject: raw breaks\r\n\r\n";
    let raw = format!("{head}bare CR\rhere, CR CR LF\r\r\nthere, bare LF\nand\r\nend.\r\n");
    let r = send(
        &svc,
        "someone@outside.example",
        "postmaster@remailer.test",
        &raw,
    )
    .await;
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.contains("5.6.0"), "{r:?}");
    let data = format!("{head}clean line\r\n.dots at a line start\r\n..two dots\r\nend.\r\n");
    let r = send(
        &svc,
        "someone@outside.example",
        "postmaster@remailer.test",
        &data,
    )
    .await;
    assert_eq!(r.code, 250, "{r:?}");
    let d = wait_for("the forward", T, || sink.delivered().pop()).await;
    assert_eq!(d.rcpt_to, vec!["ops@operator.example".to_string()]);
    let problems = wire_problems(&d);
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        String::from_utf8_lossy(&d.raw)
    );
    let (code, zone, err) = svc.cli(&["dns"]);
    assert_eq!(code, 0, "{err}");
    let (ok, report) = support::dkimpy::verify(&svc.dir, &d.data, &zone);
    assert!(ok, "dkimpy: {report}\n{}", d.text());
}
