//! The end-of-data receiver for `DATA` (RFC 5321 §4.1.1.4, §4.5.2): finds the one sequence
//! that ends a message, `<CR><LF>.<CR><LF>`, undoes dot-stuffing and enforces the size limit.
//! It is pure (bytes in, outcome out) and works across any split of the input into reads.
//!
//! **SMTP smuggling** (CVE-2023-51764 class; ARCHITECTURE.md §2): a receiver that also ends
//! DATA at a look-alike (`<LF>.<LF>`, `<CR><LF>.<CR><CR><LF>`, …) while the next hop does
//! not lets a sender hide a second transaction inside one message. Here DATA ends **only**
//! at `<CR><LF>.<CR><LF>`, where the `<CR><LF>` before the dot is a real line end (or the
//! one that ended the `DATA` command). Every look-alike is ordinary data, and because each
//! of them contains a bare CR or a bare LF, **a message with any bare CR or bare LF is
//! refused as a whole** ([`DataEnd::BareLineEnd`], answered `550 5.6.0`): RFC 5321 §2.3.8
//! allows neither in mail data, this service offers no BINARYMIME, and relaying such bytes
//! would hand the smuggling payload to the next MTA. So whatever follows a look-alike is
//! never executed as commands and never delivered, not even as body text.
//!
//! Dot-stuffing: a line (after `<CR><LF>`) that starts with `.` loses that dot. A bare LF
//! does not start a line. Once a message is known to be refused (too big, bare line end)
//! its bytes are no longer kept, but the receiver still reads to the real end of data.

/// A bare line end: a line end that is not `<CR><LF>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLineEnd {
    /// A `<LF>` not preceded by `<CR>`.
    Lf,
    /// A `<CR>` not followed by `<LF>`.
    Cr,
}

/// How the data ended (at `<CR><LF>.<CR><LF>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEnd {
    /// The message, dot-stuffing undone, ending with `<CR><LF>` (or empty).
    Message(Vec<u8>),
    /// Over the size limit (counted after unstuffing); the message was discarded.
    TooBig,
    /// A bare CR or LF was found (the first one is named); the message was discarded.
    BareLineEnd(BareLineEnd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after `<CR><LF>`, or right after the `DATA` command).
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.` `<CR>` at the start of a line: one `<LF>` more and the data ends.
    DotCr,
    /// Inside a line.
    Mid,
    /// After a `<CR>` (inside a line).
    Cr,
}

/// Reads one message's data, as many reads as it takes.
#[derive(Debug)]
pub struct DataReceiver {
    state: State,
    limit: usize,
    message: Vec<u8>,
    /// Bytes of the message (unstuffed), also counted after it stopped being kept.
    size: usize,
    bare: Option<BareLineEnd>,
}

impl DataReceiver {
    /// A receiver for data that follows a `354` reply; `limit` is the largest message kept.
    pub fn new(limit: usize) -> Self {
        DataReceiver {
            state: State::LineStart,
            limit,
            message: Vec::with_capacity(limit.min(8 * 1024)),
            size: 0,
            bare: None,
        }
    }

    /// Bytes of message data received so far (after unstuffing), kept or not.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Feeds the next bytes read. Returns `None` when all of `input` was data and more is
    /// needed, or the number of bytes of `input` used up to and including the final
    /// `<CR><LF>` and how the data ended; what follows those bytes is the next command.
    pub fn ingest(&mut self, input: &[u8]) -> Option<(usize, DataEnd)> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Fast path: copy up to the next CR or LF.
                let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                self.keep(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            let byte = input[i];
            i += 1;
            if self.step(byte) {
                return Some((i, self.finish()));
            }
        }
        None
    }

    /// One byte outside the fast path; true at the end of data.
    fn step(&mut self, byte: u8) -> bool {
        use State::*;
        self.state = match (self.state, byte) {
            (DotCr, b'\n') => return true,
            (LineStart, b'.') => Dot,
            (Dot, b'\r') => DotCr,
            // `.` `<CR>` and no `<LF>`: that CR was bare (and the dot a stuffing dot); the
            // byte is read as inside a line (a second CR may still end the line).
            (DotCr, _) => {
                self.bare(BareLineEnd::Cr);
                self.keep(b"\r");
                self.state = Mid;
                return self.step(byte);
            }
            (Cr, b'\n') => {
                self.keep(b"\n");
                LineStart
            }
            (Cr, _) => {
                self.bare(BareLineEnd::Cr);
                self.state = Mid;
                return self.step(byte);
            }
            (_, b'\r') => {
                self.keep(b"\r");
                Cr
            }
            (_, b'\n') => {
                self.bare(BareLineEnd::Lf);
                self.keep(b"\n");
                Mid
            }
            // Inside a line, at a line start, or the byte after a stuffing dot.
            (_, other) => {
                self.keep(&[other]);
                Mid
            }
        };
        false
    }

    fn bare(&mut self, kind: BareLineEnd) {
        if self.bare.is_none() {
            self.bare = Some(kind);
            self.message = Vec::new();
        }
    }

    /// Appends message bytes while the message is still wanted.
    fn keep(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        if self.bare.is_some() || self.size > self.limit {
            if self.message.capacity() > 0 {
                self.message = Vec::new();
            }
            return;
        }
        self.message.extend_from_slice(bytes);
    }

    fn finish(&mut self) -> DataEnd {
        let message = std::mem::take(&mut self.message);
        match self.bare {
            Some(kind) => DataEnd::BareLineEnd(kind),
            None if self.size > self.limit => DataEnd::TooBig,
            None => DataEnd::Message(message),
        }
    }
}

#[cfg(test)]
mod tests;
