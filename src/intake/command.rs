//! Command lines: framing (one line at a time, at most [`MAX_COMMAND_LINE`] bytes, across
//! any split of the input into reads) and the check of the raw bytes that smtp-proto's
//! parser would otherwise repair: it decodes invalid UTF-8 lossily, so `MAIL FROM:<j\xffoe@…>`
//! would become a different, valid address. Malformed input is refused, not repaired.

use smtp_proto::Request;

use crate::reply::{Answer, Reply};

/// Longest command line accepted (Postfix's `line_length_limit`); RFC 5321 asks for 512.
pub const MAX_COMMAND_LINE: usize = 2048;

/// What a read of command input produced.
#[derive(Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, with its line end.
    Line(Vec<u8>),
    /// The line grew past [`MAX_COMMAND_LINE`]; the rest of it, up to its LF, is skipped.
    TooLong,
}

/// Collects command lines from reads of any size.
#[derive(Debug, Default)]
pub struct LineReader {
    line: Vec<u8>,
    skipping: bool,
}

impl LineReader {
    /// Takes bytes from `input` up to the end of one line (or the point where it became too
    /// long); returns how many bytes it used and the line, if one is complete.
    pub fn ingest(&mut self, input: &[u8]) -> (usize, Option<LineEvent>) {
        let newline = memchr::memchr(b'\n', input);
        let take = newline.map_or(input.len(), |p| p + 1);
        if self.skipping {
            self.skipping = newline.is_none();
            return (take, None);
        }
        // The limit is on the line without its CR LF.
        if self.line.len() + take > MAX_COMMAND_LINE + 1 + usize::from(newline.is_some()) {
            self.line.clear();
            self.skipping = newline.is_none();
            return (take, Some(LineEvent::TooLong));
        }
        self.line.extend_from_slice(&input[..take]);
        match newline {
            Some(_) => (take, Some(LineEvent::Line(std::mem::take(&mut self.line)))),
            None => (take, None),
        }
    }

    /// True while part of a command line has been received.
    pub fn is_partial(&self) -> bool {
        !self.line.is_empty() || self.skipping
    }
}

/// Parses one complete command line after checking its raw bytes.
pub fn parse(line: &[u8]) -> Result<Request<String>, Refused> {
    if std::str::from_utf8(line).is_err() {
        return Err(Refused::Reply(Answer::InvalidUtf8.into()));
    }
    Request::parse(&mut line.iter())
        .map(|r| r.into_owned())
        .map_err(Refused::Syntax)
}

/// Why a command line was not understood.
#[derive(Debug)]
pub enum Refused {
    /// Refused before parsing, with this reply.
    Reply(Reply),
    /// smtp-proto's parser refused it.
    Syntax(smtp_proto::Error),
}

/// The refusal of a non-ASCII address in a transaction without `SMTPUTF8` (RFC 6531 §3.5).
pub fn needs_smtputf8() -> Reply {
    Answer::NeedsSmtpUtf8.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(reader: &mut LineReader, mut input: &[u8]) -> Vec<LineEvent> {
        let mut events = Vec::new();
        while !input.is_empty() {
            let (used, event) = reader.ingest(input);
            input = &input[used..];
            events.extend(event);
        }
        events
    }

    #[test]
    fn lines_are_framed_across_reads() {
        let mut r = LineReader::default();
        assert!(feed(&mut r, b"NOOP\r\nEH").len() == 1);
        assert!(r.is_partial());
        assert_eq!(
            feed(&mut r, b"LO x\r\nQUIT\r\n"),
            vec![
                LineEvent::Line(b"EHLO x\r\n".to_vec()),
                LineEvent::Line(b"QUIT\r\n".to_vec())
            ]
        );
        assert!(!r.is_partial());
    }

    #[test]
    fn an_overlong_line_is_refused_once_and_skipped() {
        let mut r = LineReader::default();
        let exact = [vec![b'a'; MAX_COMMAND_LINE], b"\r\n".to_vec()].concat();
        assert_eq!(feed(&mut r, &exact), vec![LineEvent::Line(exact.clone())]);
        let mut events = feed(&mut r, &vec![b'a'; 1500]);
        events.extend(feed(&mut r, &vec![b'a'; 1500]));
        events.extend(feed(&mut r, &vec![b'a'; 5000]));
        events.extend(feed(&mut r, b"a\r\nNOOP\r\n"));
        assert_eq!(
            events,
            vec![LineEvent::TooLong, LineEvent::Line(b"NOOP\r\n".to_vec())]
        );
    }

    #[test]
    fn invalid_utf8_is_refused_not_repaired() {
        for line in [
            b"MAIL FROM:<j\xffoe@real.example>\r\n".as_slice(),
            b"MAIL FROM:<j\xc0\xafoe@real.example>\r\n", // overlong '/'
            b"MAIL FROM:<j\xed\xa0\x80oe@real.example>\r\n", // surrogate U+D800
            b"RCPT TO:<ann@remailer.test> NOTIFY=\xfe\r\n",
            b"MAIL FROM:<j\xc3oe@real.example> SMTPUTF8\r\n", // truncated sequence
        ] {
            match parse(line) {
                Err(Refused::Reply(r)) => assert_eq!((r.code, r.esc), (501, [5, 5, 4])),
                other => panic!("{line:?}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("MAIL FROM:<jöe@real.example> SMTPUTF8\r\n".as_bytes()),
            Ok(Request::Mail { .. })
        ));
    }
}
