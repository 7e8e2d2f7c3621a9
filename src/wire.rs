//! `wire`: the form of every byte stream the service sends, whatever wrote it (remailed mail,
//! notices, postmaster forwards). On the wire a line ends with CRLF and nowhere else: a bare
//! CR or LF is what SMTP smuggling needs (`<CR>.<CR><LF>`, `<LF>.<LF>`), and it breaks DKIM
//! verification on the way. Two functions enforce it, and every outbound message goes through
//! both:
//! - [`seal`]: the one way a message becomes ready for the spool: line ends normalised, then
//!   DKIM-signed, so the signature covers exactly the bytes that will be sent;
//! - [`frame`]: what the delivery client writes after DATA: line ends normalised again (a
//!   no-op for sealed messages; it guards entries written by older versions), lines starting
//!   with `.` doubled (RFC 5321 §4.5.2), and the terminating `.` line.
//!
//! A line break is `CR* LF` (one break, however many CRs precede the LF) or a lone CR.

use std::borrow::Cow;

use crate::dkim::{DkimError, DkimKeys};

/// Calls `line` with every line of `bytes` (without its break) and whether a break followed.
fn lines(bytes: &[u8], mut line: impl FnMut(&[u8], bool)) {
    let mut rest = bytes;
    while let Some(pos) = memchr::memchr2(b'\r', b'\n', rest) {
        line(&rest[..pos], true);
        let mut next = pos + 1;
        if rest[pos] == b'\r' {
            let crs = rest[pos..].iter().take_while(|&&b| b == b'\r').count();
            if rest.get(pos + crs) == Some(&b'\n') {
                next = pos + crs + 1;
            }
        }
        rest = &rest[next..];
    }
    if !rest.is_empty() {
        line(rest, false);
    }
}

/// True when every CR in `bytes` is followed by LF and every LF preceded by CR.
pub fn is_normal(bytes: &[u8]) -> bool {
    let mut from = 0;
    while let Some(pos) = memchr::memchr2(b'\r', b'\n', &bytes[from..]) {
        let at = from + pos;
        if bytes[at] == b'\n' || bytes.get(at + 1) != Some(&b'\n') {
            return false;
        }
        from = at + 2;
    }
    true
}

/// `bytes` with every line break as CRLF (borrowed when it already is).
pub fn normalize(bytes: &[u8]) -> Cow<'_, [u8]> {
    if is_normal(bytes) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    lines(bytes, |line, brk| {
        out.extend_from_slice(line);
        if brk {
            out.extend_from_slice(b"\r\n");
        }
    });
    Cow::Owned(out)
}

/// Normalises `message` and prepends its DKIM signatures: the bytes to spool and send.
pub fn seal(dkim: &DkimKeys, message: &[u8]) -> Result<Vec<u8>, DkimError> {
    let message = normalize(message);
    let mut signed = dkim.sign(&message)?;
    signed.extend_from_slice(&message);
    Ok(signed)
}

/// The message as DATA carries it: CRLF line ends, lines starting with `.` doubled, a final
/// CRLF, then `.` CRLF.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    lines(message, |line, _| {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    });
    if message.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_become_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\nb", b"a\r\nb"),
            (b"a\rb\r", b"a\r\nb\r\n"),
            (b"a\r\r\nb", b"a\r\nb"),
            (b"a\r\rb", b"a\r\n\r\nb"),
            (b"\n\r\n\r", b"\r\n\r\n\r\n"),
            (b"", b""),
        ];
        for (input, want) in cases {
            assert_eq!(&*normalize(input), *want, "{input:?}");
            assert!(is_normal(want), "{want:?}");
        }
        assert!(matches!(normalize(b"x\r\ny"), Cow::Borrowed(_)));
        assert!(!is_normal(b"x\r"));
        assert!(!is_normal(b"\n"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(frame(b"a\r\n.b\r\n..c\r\n"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(frame(b".x"), b"..x\r\n.\r\n");
        assert_eq!(frame(b""), b"\r\n.\r\n");
    }

    #[test]
    fn smuggling_look_alikes_are_framed_as_plain_lines() {
        // Every bare CR or LF becomes a CRLF, and the dot after it is doubled: the only
        // `CRLF . CRLF` on the wire is the terminator.
        let framed = frame(b"x\r.\r\ny\n.\nz\r\n.\r\r\nw\r\n.\rv");
        assert_eq!(
            framed,
            b"x\r\n..\r\ny\r\n..\r\nz\r\n..\r\nw\r\n..\r\nv\r\n.\r\n".to_vec()
        );
        assert!(is_normal(&framed));
        let end = framed.windows(5).position(|w| w == b"\r\n.\r\n");
        assert_eq!(end, Some(framed.len() - 5));
    }
}
