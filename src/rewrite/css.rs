//! Remote loads in CSS (`style` attributes and `<style>` elements of HTML parts): every
//! `url(…)` that is not `cid:` or `data:` becomes `none`, every `@import` rule is dropped,
//! and a quoted string that holds a remote URL (what `image-set("…")` and `@import "…"`
//! load) becomes `""`. Identifiers are read with CSS escapes undone (`\75 rl(` is `url(`),
//! so an escaped function name does not slip through. The hosts of what was blocked are
//! reported to the caller (for the placeholder text).

use std::borrow::Cow;

/// True when `url` (as written, trimmed) is a `cid:` or `data:` reference, the only loads
/// kept. Anything else (also a relative URL, which a `<base>` or the client resolves to a
/// server) counts as remote.
pub fn is_local(url: &str) -> bool {
    let u = url.trim_start_matches(|c: char| c.is_ascii_whitespace() || c.is_control());
    let head = u.get(..5).unwrap_or(u);
    head.len() >= 4
        && (head[..4].eq_ignore_ascii_case("cid:") || head.eq_ignore_ascii_case("data:"))
}

/// True for a value that loads nothing: empty or a same-document `#fragment`.
pub fn is_empty_ref(url: &str) -> bool {
    let u = url.trim();
    u.is_empty() || u.starts_with('#')
}

/// The host a remote `url` names, in lower case, when it looks like a host name.
pub fn host_of(url: &str) -> Option<String> {
    let u = url.trim().to_ascii_lowercase();
    let rest = match u.find("//") {
        Some(p)
            if u[..p]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+.-:".contains(&b)) =>
        {
            &u[p + 2..]
        }
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then(|| host.to_string())
}

/// A quoted CSS string's content that is a remote URL.
fn is_remote_string(s: &str) -> bool {
    let l = s.trim().to_ascii_lowercase();
    l.starts_with("//") || l.contains("://") || l.starts_with("http:") || l.starts_with("https:")
}

/// `css` without remote loads; `blocked` gets the host (or None) of each one removed.
pub fn strip<'c>(css: &'c str, blocked: &mut Vec<Option<String>>) -> Cow<'c, str> {
    let lower = css.to_ascii_lowercase();
    let suspicious = lower.contains("url")
        || lower.contains("@import")
        || lower.contains('\\')
        || lower.contains("//")
        || lower.contains("image");
    if !suspicious {
        return Cow::Borrowed(css);
    }
    let mut s = Scanner {
        b: css.as_bytes(),
        css,
        i: 0,
        out: String::with_capacity(css.len()),
        blocked,
    };
    s.run();
    if s.out == css {
        Cow::Borrowed(css)
    } else {
        Cow::Owned(s.out)
    }
}

struct Scanner<'c, 'b> {
    b: &'c [u8],
    css: &'c str,
    i: usize,
    out: String,
    blocked: &'b mut Vec<Option<String>>,
}

impl Scanner<'_, '_> {
    fn run(&mut self) {
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'/' && self.b.get(self.i + 1) == Some(&b'*') {
                let end = self.css[self.i + 2..]
                    .find("*/")
                    .map_or(self.b.len(), |p| self.i + 2 + p + 2);
                self.copy_to(end);
            } else if c == b'"' || c == b'\'' {
                let end = self.string_end(self.i);
                let inner = &self.css[self.i + 1..end.saturating_sub(1).max(self.i + 1)];
                if is_remote_string(inner) {
                    self.blocked.push(host_of(inner));
                    self.out.push_str("\"\"");
                    self.i = end;
                } else {
                    self.copy_to(end);
                }
            } else if c == b'@' {
                let (name, end) = self.ident(self.i + 1);
                if name == "import" {
                    self.skip_rule(end);
                } else {
                    self.copy_to(end.max(self.i + 1));
                }
            } else if is_ident_start(c) {
                let (name, end) = self.ident(self.i);
                if name == "url" && self.b.get(end) == Some(&b'(') {
                    self.url(end + 1);
                } else {
                    self.copy_to(end.max(self.i + 1));
                }
            } else {
                let len = self.css[self.i..].chars().next().map_or(1, char::len_utf8);
                self.copy_to(self.i + len);
            }
        }
    }

    fn copy_to(&mut self, end: usize) {
        let end = end.min(self.b.len());
        self.out.push_str(&self.css[self.i..end]);
        self.i = end;
    }

    /// The offset after the string that starts with the quote at `start`.
    fn string_end(&self, start: usize) -> usize {
        let q = self.b[start];
        let mut j = start + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                x if x == q => return j + 1,
                b'\n' => return j,
                _ => j += 1,
            }
        }
        self.b.len()
    }

    /// The identifier at `start`, lower case with escapes undone, and its end.
    fn ident(&self, start: usize) -> (String, usize) {
        let mut name = String::new();
        let mut j = start;
        while j < self.b.len() {
            let c = self.b[j];
            if c == b'\\' {
                let (ch, next) = unescape(self.b, j);
                name.push(ch.to_ascii_lowercase());
                j = next;
            } else if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c >= 0x80 {
                name.push((c as char).to_ascii_lowercase());
                j += 1;
            } else {
                break;
            }
        }
        while !self.css.is_char_boundary(j) {
            j += 1;
        }
        (name, j)
    }

    /// `url(` whose argument starts at `start`: kept when local, else `none`.
    fn url(&mut self, start: usize) {
        let mut j = start;
        while j < self.b.len() && self.b[j].is_ascii_whitespace() {
            j += 1;
        }
        let (arg, mut end) = match self.b.get(j) {
            Some(b'"' | b'\'') => {
                let e = self.string_end(j);
                (&self.css[j + 1..e.saturating_sub(1).max(j + 1)], e)
            }
            _ => {
                let e = self.css[j..].find(')').map_or(self.b.len(), |p| j + p);
                (&self.css[j..e], e)
            }
        };
        while end < self.b.len() && self.b[end] != b')' {
            end += 1;
        }
        let end = (end + 1).min(self.b.len());
        if is_local(arg) && !arg.contains('\\') {
            self.copy_to(end);
        } else {
            self.blocked.push(host_of(arg));
            self.out.push_str("none");
            self.i = end;
        }
    }

    /// Drops an `@import` rule (up to its `;`, outside strings).
    fn skip_rule(&mut self, from: usize) {
        let mut j = from;
        let mut host = None;
        while j < self.b.len() && self.b[j] != b';' {
            if matches!(self.b[j], b'"' | b'\'') {
                let e = self.string_end(j);
                host = host.or_else(|| host_of(&self.css[j + 1..e.saturating_sub(1).max(j + 1)]));
                j = e;
            } else {
                j += 1;
            }
        }
        let rule = &self.css[from..j.min(self.b.len())];
        let inner = rule.trim().trim_start_matches("url(").trim_end_matches(')');
        self.blocked
            .push(host.or_else(|| host_of(inner.trim_matches(['"', '\'']))));
        self.i = (j + 1).min(self.b.len());
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'-' || c == b'_' || c == b'\\'
}

/// A CSS escape at `at` (`\` then 1–6 hex digits and one optional blank, or one other
/// character): the character and the offset after it.
fn unescape(b: &[u8], at: usize) -> (char, usize) {
    let mut j = at + 1;
    let mut value = 0u32;
    while j < b.len() && j < at + 7 && b[j].is_ascii_hexdigit() {
        value = value * 16 + (b[j] as char).to_digit(16).unwrap_or(0);
        j += 1;
    }
    if j > at + 1 {
        if j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        return (char::from_u32(value).unwrap_or('\u{fffd}'), j);
    }
    match b.get(j) {
        Some(&c) if c < 0x80 => (c as char, j + 1),
        // A multi-byte character: keep it as an identifier character.
        Some(_) => ('\u{fffd}', j + 1),
        None => ('\u{fffd}', j),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(css: &str) -> (String, Vec<Option<String>>) {
        let mut blocked = Vec::new();
        let out = strip(css, &mut blocked).into_owned();
        (out, blocked)
    }

    #[test]
    fn remote_urls_and_imports_go_local_ones_stay() {
        let (out, b) = run("@import url(https://fonts.example/a.css);\n\
             td{background:url( 'https://cdn.example/bg.png' ) no-repeat}\
             .l{background-image:URL(cid:logo)} .d{background:url(data:image/png;base64,AA==)}");
        assert_eq!(
            out,
            "\ntd{background:none no-repeat}.l{background-image:URL(cid:logo)} \
             .d{background:url(data:image/png;base64,AA==)}"
        );
        assert_eq!(
            b,
            vec![Some("fonts.example".into()), Some("cdn.example".into())]
        );
    }

    #[test]
    fn escaped_names_strings_and_image_set_are_caught() {
        let (out, b) = run(
            r#"a{background:\75 rl(//t.example/p.gif)} b{background:image-set("https://i.example/x.png" 1x)} @\69mport "https://s.example/s.css";"#,
        );
        assert!(!out.contains("example"), "{out}");
        assert_eq!(b.len(), 3);
        assert_eq!(run("p{color:red}").0, "p{color:red}");
    }
}
