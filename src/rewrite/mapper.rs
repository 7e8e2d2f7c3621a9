//! The [`Mapper`]: which strings of a message belong to members and what replaces them.
//!
//! It resolves addresses (the sender and recipients from the [`Context`] first, then the
//! [`Directory`]), caches every answer for the message, remembers the real display names the
//! message attaches to members, and replaces both in free text in one pass, so a replacement
//! is never itself rewritten again.

use std::borrow::Cow;
use std::collections::HashMap;

use super::find::for_each_hit;
use super::{Context, Directory, Member};
use crate::address::RealAddress;

/// Names shorter than this (in characters) are too common to replace blindly.
const MIN_NAME_CHARS: usize = 4;

/// Resolves and replaces members' real addresses and names for one message.
pub struct Mapper<'m> {
    dir: &'m dyn Directory,
    /// Members seen so far; replacements refer to them by index.
    members: Vec<&'m Member>,
    /// Lower-cased address → member index (None: not a member).
    cache: HashMap<String, Option<usize>>,
    /// Lower-cased name words → member index.
    names: Vec<(Vec<String>, usize)>,
    /// The service's domain, lower case, with a leading `@`.
    at_domain: String,
}

/// How an address appears in a rebuilt address header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub address: String,
    pub name: Option<String>,
}

impl<'m> Mapper<'m> {
    pub fn new(ctx: &'m Context<'m>, dir: &'m dyn Directory) -> Self {
        let mut mapper = Mapper {
            dir,
            members: Vec::with_capacity(4),
            cache: HashMap::with_capacity(8),
            names: Vec::new(),
            at_domain: format!("@{}", ctx.domain.as_str()),
        };
        for m in std::iter::once(ctx.sender).chain(ctx.recipients.iter()) {
            mapper.add_member(m);
        }
        mapper
    }

    fn add_member(&mut self, m: &'m Member) -> usize {
        if let Some(i) = self.members.iter().position(|k| k.alias == m.alias) {
            return i;
        }
        self.members.push(m);
        let i = self.members.len() - 1;
        self.cache
            .insert(m.real.normalized().to_lowercase(), Some(i));
        i
    }

    /// The member whose real address `addr` is (any case).
    pub fn member_index(&mut self, addr: &str) -> Option<usize> {
        if let Some(hit) = self.cache.get(addr) {
            return *hit;
        }
        let lower = addr.to_lowercase();
        if let Some(hit) = self.cache.get(&lower) {
            let hit = *hit;
            self.cache.insert(addr.to_string(), hit);
            return hit;
        }
        let dir = self.dir;
        let found = RealAddress::parse_any(&lower)
            .ok()
            .and_then(|real| dir.member_by_real(&real))
            .map(|m| self.add_member(m));
        self.cache.insert(lower, found);
        found
    }

    /// The member whose real address or alias `addr` is.
    fn member_index_any(&mut self, addr: &str) -> Option<usize> {
        if self.is_service_address(addr) {
            let addr = addr.to_ascii_lowercase();
            return self.members.iter().position(|m| m.alias.address() == addr);
        }
        self.member_index(addr)
    }

    /// The text that replaces a member's real address or name.
    fn alias_address(&self, index: usize) -> String {
        self.members[index].alias.address()
    }

    fn alias_name(&self, index: usize) -> String {
        let m = self.members[index];
        m.display_name.clone().unwrap_or_else(|| m.alias.address())
    }

    /// True when `addr` is at the service's own domain (an alias or a service address).
    pub fn is_service_address(&self, addr: &str) -> bool {
        let d = &self.at_domain;
        addr.len() > d.len()
            && addr.is_char_boundary(addr.len() - d.len())
            && addr[addr.len() - d.len()..].eq_ignore_ascii_case(d)
    }

    /// How `addr` appears in a rebuilt To/Cc/Reply-To header, or None to drop it.
    pub fn map_header_address(&mut self, addr: &str) -> Option<Mapped> {
        let addr = addr.trim();
        if self.is_service_address(addr) {
            // Kept as written only when it is a plain address: mail-parser hands over
            // whatever stood before `@DOMAIN` (spaces, other addresses, host names...).
            let local = &addr[..addr.len() - self.at_domain.len()];
            if !is_dot_atom(local) {
                return None;
            }
            let address = addr.to_ascii_lowercase();
            let name = self
                .members
                .iter()
                .find(|m| m.alias.address() == address)
                .and_then(|m| m.display_name.clone());
            return Some(Mapped { address, name });
        }
        let i = self.member_index(addr)?;
        Some(Mapped {
            address: self.alias_address(i),
            name: self.members[i].display_name.clone(),
        })
    }

    /// Remembers `name` as a real name of the member with real address `addr`.
    pub fn learn_name(&mut self, name: &str, addr: &str) {
        let Some(i) = self.member_index_any(addr) else {
            return;
        };
        let name = strip_comments(name);
        let name = name.trim().trim_matches(|c| c == '"' || c == '\'').trim();
        if name.contains('@') || name.chars().count() < MIN_NAME_CHARS {
            return;
        }
        if !name.chars().any(char::is_alphabetic) {
            return;
        }
        self.push_name(name, i);
        // "Smith, Joe" is also written "Joe Smith".
        if let Some((last, first)) = name.split_once(',') {
            let flipped = format!("{} {}", first.trim(), last.trim());
            self.push_name(&flipped, i);
        }
    }

    /// Learns names written right before a member's address in free text, as quoted-reply
    /// attributions and forwarded headers do: `Joe Smith <joe@…>`, `"Joe Smith" <joe@…>`,
    /// `Joe Smith &lt;joe@…&gt;`, `Joe Smith [mailto:joe@…]`.
    pub fn learn_from_text(&mut self, text: &str) {
        let mut hits = Vec::new();
        for_each_hit(text.as_bytes(), |h| hits.push(h.clone()));
        for hit in hits {
            let Some(&start) = hit
                .starts
                .iter()
                .find(|&&s| self.member_index(&text[s..hit.end]).is_some())
            else {
                continue;
            };
            let addr = &text[start..hit.end];
            if let Some(phrase) = phrase_before(&text[..start]) {
                let words: Vec<&str> = phrase.split_whitespace().collect();
                self.learn_name(&phrase, addr);
                if words.len() > 2 {
                    self.learn_name(&words[words.len() - 2..].join(" "), addr);
                }
            }
            if let Some(cn) = calendar_name(&text[..start]) {
                self.learn_name(cn, addr);
            }
        }
    }

    fn push_name(&mut self, name: &str, i: usize) {
        let words: Vec<String> = name
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        if !words.is_empty() && !self.names.iter().any(|(w, _)| *w == words) {
            self.names.push((words, i));
        }
    }

    /// Replaces every member's real address and every learnt real name in `text`.
    pub fn replace<'t>(&mut self, text: &'t str) -> Cow<'t, str> {
        let mut spans = self.address_spans(text);
        if text.contains("%40") {
            self.percent_spans(text, &mut spans);
        }
        if !self.names.is_empty() {
            self.name_spans(text, &mut spans);
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable_by_key(|s| s.0);
        let mut out = String::with_capacity(text.len() + 32 * spans.len());
        let mut pos = 0;
        for (start, end, repl) in spans {
            if start < pos {
                continue;
            }
            out.push_str(&text[pos..start]);
            out.push_str(&repl);
            pos = end;
        }
        out.push_str(&text[pos..]);
        Cow::Owned(out)
    }

    /// A file name: [`Self::replace`], and then learnt names also where `_`, `.` or `-`
    /// stand between their words (`Joe_Smith_CV.pdf`, `joe.smith.jpg`); the alias name put
    /// there has `_` for blanks.
    pub fn replace_file_name(&mut self, name: &str) -> String {
        let first = self.replace(name).into_owned();
        if self.names.is_empty() {
            return first;
        }
        // One ASCII byte for another: the offsets of `spaced` are those of `first`.
        let spaced: String = first
            .chars()
            .map(|c| if matches!(c, '_' | '.' | '-') { ' ' } else { c })
            .collect();
        let mut spans = Vec::new();
        self.name_spans(&spaced, &mut spans);
        if spans.is_empty() {
            return first;
        }
        spans.sort_unstable_by_key(|s| s.0);
        let mut out = String::with_capacity(first.len() + 16 * spans.len());
        let mut pos = 0;
        for (start, end, repl) in spans {
            if start < pos {
                continue;
            }
            out.push_str(&first[pos..start]);
            out.push_str(&repl.replace(' ', "_"));
            pos = end;
        }
        out.push_str(&first[pos..]);
        out
    }

    fn address_spans(&mut self, text: &str) -> Vec<(usize, usize, String)> {
        let mut hits = Vec::new();
        for_each_hit(text.as_bytes(), |h| hits.push(h.clone()));
        let mut spans = Vec::new();
        for hit in hits {
            for &s in &hit.starts {
                if let Some(i) = self.member_index(&text[s..hit.end]) {
                    spans.push((s, hit.end, self.alias_address(i)));
                    break;
                }
            }
        }
        spans
    }

    /// Addresses written with a percent-encoded `@` (`mailto:joe%40real.example`).
    fn percent_spans(&mut self, text: &str, spans: &mut Vec<(usize, usize, String)>) {
        let b = text.as_bytes();
        for (at, _) in text.match_indices("%40") {
            let mut start = at;
            while start > 0
                && (b[start - 1].is_ascii_alphanumeric() || b"._+-".contains(&b[start - 1]))
            {
                start -= 1;
            }
            let mut end = at + 3;
            while end < b.len() && (b[end].is_ascii_alphanumeric() || b".-".contains(&b[end])) {
                end += 1;
            }
            let addr = format!(
                "{}@{}",
                &text[start..at],
                text[at + 3..end].trim_end_matches('.')
            );
            if let Some(i) = self.member_index(&addr) {
                let end = at + 3 + text[at + 3..end].trim_end_matches('.').len();
                spans.push((start, end, self.alias_address(i).replace('@', "%40")));
            }
        }
    }

    fn name_spans(&self, text: &str, spans: &mut Vec<(usize, usize, String)>) {
        let lower = text.to_ascii_lowercase();
        for (words, i) in &self.names {
            let mut from = 0;
            while let Some(pos) = lower[from..].find(words[0].as_str()) {
                let start = from + pos;
                from = start + words[0].len();
                if let Some(end) = match_words(&lower, start, words) {
                    if !overlaps(spans, start, end) {
                        spans.push((start, end, self.alias_name(*i)));
                    }
                    from = end;
                }
            }
        }
    }
}

/// The capitalised words just before an opening `<`, `&lt;`, `[mailto:` or `(` at the end
/// of `before` (the last 2 to 4 of them, stopping at a sentence end), if any.
fn phrase_before(before: &str) -> Option<String> {
    let b = before.trim_end();
    let b = ["<", "&lt;", "[mailto:", "mailto:", "("]
        .iter()
        .find_map(|p| b.strip_suffix(p))?;
    let b = b.trim_end().trim_end_matches(['"', '\'']).trim_end();
    let mut words = Vec::new();
    for w in b.split_whitespace().rev() {
        let w = w.trim_start_matches(['"', '\'']);
        let name_like = w.chars().next().is_some_and(char::is_uppercase)
            && w.chars()
                .all(|c| c.is_alphabetic() || matches!(c, '.' | '-' | '\''));
        let sentence_end = w.ends_with('.') && w.chars().count() > 2 && !words.is_empty();
        if !name_like || sentence_end || words.len() == 4 {
            break;
        }
        words.push(w);
    }
    words.reverse();
    (words.len() >= 2).then(|| words.join(" "))
}

/// The `CN=` parameter of the iCalendar content line that ends with `before`.
fn calendar_name(before: &str) -> Option<&str> {
    let line = &before[before.rfind('\n').map_or(0, |p| p + 1)..];
    let value = &line[line.rfind("CN=")? + 3..];
    let value = value.split([';', ':']).next()?;
    Some(value.trim_matches('"'))
}

/// `name` without parenthesised comments ("Joe Smith (work)" → "Joe Smith").
fn strip_comments(name: &str) -> Cow<'_, str> {
    if !name.contains('(') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    Cow::Owned(out)
}

fn overlaps(spans: &[(usize, usize, String)], start: usize, end: usize) -> bool {
    spans.iter().any(|&(s, e, _)| start < e && s < end)
}

/// True when the character before `pos` and the one at `pos` are both alphanumeric.
fn inside_word(text: &str, pos: usize) -> bool {
    let before = text[..pos].chars().next_back();
    let after = text[pos..].chars().next();
    matches!((before, after), (Some(a), Some(b)) if a.is_alphanumeric() && b.is_alphanumeric())
}

/// Length of the whitespace between two words of a name: blanks and line breaks, and
/// after a line break also the `>` of quoted lines.
fn gap(b: &[u8]) -> usize {
    let mut n = 0;
    let mut newline = false;
    while let Some(&c) = b.get(n) {
        let skip = match c {
            b' ' | b'\t' | b'\r' => 1,
            b'\n' => {
                newline = true;
                1
            }
            b'>' if newline => 1,
            // A no-break space, raw or as an HTML entity.
            0xc2 if b.get(n + 1) == Some(&0xa0) => 2,
            b'&' if b[n..].starts_with(b"&nbsp;") => 6,
            b'&' if b[n..].starts_with(b"&#160;") => 6,
            _ => break,
        };
        n += skip;
    }
    n
}

/// Matches `words` at `start` of `text` (already lower-cased), any whitespace between
/// them, on word boundaries. Returns the end offset.
fn match_words(text: &str, start: usize, words: &[String]) -> Option<usize> {
    let b = text.as_bytes();
    if inside_word(text, start) {
        return None;
    }
    let mut pos = start;
    for (n, w) in words.iter().enumerate() {
        if n > 0 {
            let ws = gap(&b[pos..]);
            if ws == 0 {
                return None;
            }
            pos += ws;
        }
        if !b[pos..].starts_with(w.as_bytes()) {
            return None;
        }
        pos += w.len();
    }
    (!inside_word(text, pos)).then_some(pos)
}

/// An RFC 5322 `dot-atom-text` local part of at most 64 bytes.
fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_before_addresses() {
        let p = |s: &str| phrase_before(s);
        assert_eq!(
            p("On Mon, 3 Jun 2024, Carol\r\nDiaz\r\n<").as_deref(),
            Some("Carol Diaz")
        );
        assert_eq!(
            p("at 10:00 AM Joe Smith <").as_deref(),
            Some("AM Joe Smith")
        );
        assert_eq!(
            p("moves on Thursday. Carol Diaz &lt;").as_deref(),
            Some("Carol Diaz")
        );
        assert_eq!(p("\"Ann Lee\" <").as_deref(), Some("Ann Lee"));
        assert_eq!(p("please write to <"), None);
        assert_eq!(p("Joe Smith wrote"), None);
        assert_eq!(
            calendar_name("ATTENDEE;CN=Ann Lee;RSVP=TRUE:mailto:"),
            Some("Ann Lee")
        );
    }

    #[test]
    fn names_match_across_breaks_and_quotes() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let w = words("ann lee");
        assert_eq!(match_words("ann\r\n> lee!", 0, &w), Some(10));
        assert_eq!(match_words("ann&nbsp;lee", 0, &w), Some(12));
        assert_eq!(match_words("ann leex", 0, &w), None);
        assert_eq!(match_words("joann lee", 2, &w), None);
    }
}
