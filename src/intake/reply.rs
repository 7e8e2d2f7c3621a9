//! SMTP replies: a code, an enhanced status code (RFC 3463) and a text that may span lines.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub esc: [u8; 3],
    pub text: Cow<'static, str>,
}

impl Reply {
    pub fn new(code: u16, esc: [u8; 3], text: impl Into<Cow<'static, str>>) -> Self {
        Reply {
            code,
            esc,
            text: text.into(),
        }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// Writes the reply, one `CODE-X.Y.Z text` line per text line, the last with a space.
    pub fn write(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.lines().collect();
        let [a, b, c] = self.esc;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.extend_from_slice(
                format!("{}{sep}{a}.{b}.{c} {}\r\n", self.code, line.trim_end()).as_bytes(),
            );
        }
        if lines.is_empty() {
            out.extend_from_slice(format!("{} {a}.{b}.{c} \r\n", self.code).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_replies() {
        let mut out = Vec::new();
        Reply::new(550, [5, 7, 1], "first\nsecond").write(&mut out);
        assert_eq!(out, b"550-5.7.1 first\r\n550 5.7.1 second\r\n");
    }
}
