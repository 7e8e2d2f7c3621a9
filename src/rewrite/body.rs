//! Text bodies: line breaks made one kind (decoded text can hold `\r\r\n` and bare CRs),
//! undoing `format=flowed` and iCalendar line folding before the rewrite, and choosing and
//! writing a transfer encoding after it (7bit when the text is short-lined ASCII,
//! quoted-printable when it is mostly ASCII, base64 otherwise). Output is UTF-8 with CRLF
//! line ends only and lines of at most 76 characters (7bit: 998). The quoted-printable
//! encoder is our own: mail-builder's writes a CR in the text raw (and a bare CR on the wire
//! breaks DKIM and is what SMTP smuggling needs).

use std::borrow::Cow;

use mail_builder::encoders::Base64Encoder;

/// The transfer encoding chosen for a rewritten text part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    SevenBit,
    QuotedPrintable,
    Base64,
}

impl TextEncoding {
    pub fn header_value(self) -> &'static str {
        match self {
            TextEncoding::SevenBit => "7bit",
            TextEncoding::QuotedPrintable => "quoted-printable",
            TextEncoding::Base64 => "base64",
        }
    }
}

/// Picks the encoding for `text`, in one pass over its bytes.
pub fn choose_encoding(text: &str) -> TextEncoding {
    let bytes = text.as_bytes();
    let mut non_ascii = 0usize;
    // Anything that 7bit cannot carry as it is: a control byte, a bare CR, a long line.
    let mut needs_qp = false;
    let mut line_start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x80 {
            non_ascii += 1;
        } else if b < 0x20 {
            match b {
                b'\n' => {
                    let end = if i > line_start && bytes[i - 1] == b'\r' {
                        i - 1
                    } else {
                        i
                    };
                    // RFC 5322 §2.1.1: lines may be up to 998 octets.
                    needs_qp |= end - line_start > 998;
                    line_start = i + 1;
                }
                b'\r' => needs_qp |= bytes.get(i + 1) != Some(&b'\n'),
                b'\t' => {}
                _ => needs_qp = true,
            }
        }
    }
    if non_ascii * 4 > bytes.len() {
        return TextEncoding::Base64;
    }
    let last = bytes.len() - line_start;
    if non_ascii == 0 && !needs_qp && last <= 998 {
        TextEncoding::SevenBit
    } else {
        TextEncoding::QuotedPrintable
    }
}

/// Writes `text` in `encoding`, CRLF line ends, ending with CRLF.
pub fn write_text(text: &str, encoding: TextEncoding, out: &mut Vec<u8>) {
    match encoding {
        TextEncoding::SevenBit => {
            for line in text.split('\n') {
                out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        TextEncoding::QuotedPrintable => write_quoted_printable(text, out),
        TextEncoding::Base64 => {
            let crlf = to_crlf(text);
            write_base64(crlf.as_bytes(), out);
        }
    }
}

/// Text in which every CR is part of a CRLF: decoded text can hold `\r\r\n` or bare CRs,
/// which no line-based encoding can carry. A run of CRs before an LF is one line break; a
/// lone CR is one line break. Text without such CRs is returned as it is.
pub fn normalize_breaks(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let stray = memchr::memchr_iter(b'\r', b).any(|i| b.get(i + 1) != Some(&b'\n'));
    if !stray {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(pos) = rest.find('\r') {
        out.push_str(&rest[..pos]);
        let crs = rest[pos..].bytes().take_while(|&c| c == b'\r').count();
        let after = &rest[pos + crs..];
        match after.strip_prefix('\n') {
            Some(tail) => {
                out.push_str("\r\n");
                rest = tail;
            }
            None => {
                for _ in 0..crs {
                    out.push_str("\r\n");
                }
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Quoted-printable (RFC 2045 §6.7) of `text`, each line break a hard CRLF break, lines of at
/// most 76 characters, ending with CRLF. Everything but printable ASCII is escaped, and so is
/// a space or tab before a line break; a CR left in `text` is escaped too, never written raw.
pub fn write_quoted_printable(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal =
                matches!(b, b'!'..=b'<' | b'>'..=b'~') || (matches!(b, b' ' | b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `raw` line by line with CRLF line ends, ending with CRLF (an encoded body passed on).
pub fn write_lines(raw: &[u8], out: &mut Vec<u8>) {
    for line in raw.split(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
}

/// A header parameter value on one line: control characters (CR and LF above all, which
/// would start a new header field) become spaces.
pub fn single_line(value: &str) -> Cow<'_, str> {
    if !value.chars().any(char::is_control) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

/// Base64 with 76-character lines, ending with CRLF.
pub fn write_base64(data: &[u8], out: &mut Vec<u8>) {
    Base64Encoder::new().wrap_lines().encode_into(data, out);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
}

/// Text with every line break as CRLF.
fn to_crlf(text: &str) -> Cow<'_, str> {
    let b = text.as_bytes();
    let needs = b
        .iter()
        .enumerate()
        .any(|(i, &c)| c == b'\n' && (i == 0 || b[i - 1] != b'\r'));
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
    }
    Cow::Owned(out)
}

/// Joins the soft line breaks of `format=flowed` text (RFC 3676). The output is plain text
/// whose paragraphs are single lines; quoted lines keep their quote prefix.
pub fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<usize> = None; // quote depth of a paragraph still being joined
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches(['\r', '\n']);
        let depth = line.bytes().take_while(|&b| b == b'>').count();
        let mut content = &line[depth..];
        if content.starts_with(' ') {
            content = &content[1..]; // space-stuffing
        }
        match open {
            Some(d) if d == depth => {}
            Some(_) => {
                out.push('\n');
                out.push_str(&line[..depth]);
                if depth > 0 {
                    out.push(' ');
                }
            }
            None => {
                out.push_str(&line[..depth]);
                if depth > 0 {
                    out.push(' ');
                }
            }
        }
        let soft = content.ends_with(' ') && content != "-- ";
        if soft {
            let keep = if delsp {
                &content[..content.len() - 1]
            } else {
                content
            };
            out.push_str(keep);
            open = Some(depth);
        } else {
            out.push_str(content);
            out.push('\n');
            open = None;
        }
    }
    if out.ends_with('\n') && !text.ends_with('\n') {
        out.pop();
    }
    out
}

/// Undoes iCalendar/vCard line folding (RFC 5545 §3.1).
pub fn unfold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if n > 0 {
            if let Some(rest) = line.strip_prefix([' ', '\t']) {
                out.push_str(rest);
                continue;
            }
            out.push('\n');
        }
        out.push_str(line);
    }
    out
}

/// Folds iCalendar/vCard content lines at 75 octets, on character boundaries.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 64);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let mut width = 0;
        for c in line.chars() {
            if width + c.len_utf8() > 75 {
                out.push_str("\n ");
                width = 1;
            }
            out.push(c);
            width += c.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flowed_text_is_joined() {
        let t = "Hello Joe \r\nSmith here.\r\n> quoted \r\n> more\r\n-- \r\nsig\r\n";
        assert_eq!(
            unflow(t, false),
            "Hello Joe Smith here.\n> quoted more\n-- \nsig\n"
        );
        assert_eq!(unflow("ab \r\ncd", true), "abcd");
    }

    #[test]
    fn calendar_folding_round_trips() {
        let t = "ORGANIZER;CN=Joe Smith:mailto:joe@re\r\n al.example\r\nEND:VEVENT";
        assert_eq!(
            unfold(t),
            "ORGANIZER;CN=Joe Smith:mailto:joe@real.example\nEND:VEVENT"
        );
        let long = "X:".to_string() + &"é".repeat(60);
        let folded = fold(&long);
        assert!(folded.split('\n').all(|l| l.len() <= 75));
        assert_eq!(unfold(&folded), long);
    }

    #[test]
    fn stray_crs_become_line_breaks() {
        assert!(matches!(normalize_breaks("a\r\nb\nc"), Cow::Borrowed(_)));
        assert_eq!(
            normalize_breaks("a\r\r\nb\rc\r\rd\r"),
            "a\r\nb\r\nc\r\n\r\nd\r\n"
        );
    }

    #[test]
    fn quoted_printable_escapes_cr_and_trailing_blanks() {
        let mut out = Vec::new();
        write_quoted_printable("a \r\nb\t\nc\rd=\x01\n.\r\n", &mut out);
        assert_eq!(out, b"a=20\r\nb=09\r\nc=0Dd=3D=01\r\n.\r\n\r\n");
        let mut out = Vec::new();
        let long = format!("{} {}", "x".repeat(74), "é".repeat(30));
        write_quoted_printable(&long, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.split("\r\n").all(|l| l.len() <= 76), "{s}");
        assert!(!s.contains("\r\n\r\n") && !s.replace("\r\n", "").contains(['\r', '\n']));
        let decoded =
            mail_parser::decoders::quoted_printable::quoted_printable_decode(s.as_bytes());
        assert_eq!(decoded.unwrap(), format!("{long}\r\n").into_bytes());
    }

    #[test]
    fn encodings_are_chosen_and_written_with_crlf() {
        assert_eq!(choose_encoding("short\nlines\n"), TextEncoding::SevenBit);
        assert_eq!(
            choose_encoding("café au lait"),
            TextEncoding::QuotedPrintable
        );
        assert_eq!(choose_encoding(&"x".repeat(100)), TextEncoding::SevenBit);
        assert_eq!(
            choose_encoding(&"x".repeat(999)),
            TextEncoding::QuotedPrintable
        );
        assert_eq!(choose_encoding("日本語のテキスト"), TextEncoding::Base64);
        let mut out = Vec::new();
        write_text("a\nb", TextEncoding::SevenBit, &mut out);
        assert_eq!(out, b"a\r\nb\r\n");
        let mut out = Vec::new();
        write_text(
            &format!("{}\ncafé\n", "x".repeat(100)),
            TextEncoding::QuotedPrintable,
            &mut out,
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.lines().all(|l| l.len() <= 76), "{s}");
        assert!(!s.replace("\r\n", "").contains('\n'));
    }
}
