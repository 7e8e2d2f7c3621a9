//! Finding address-like strings in free text (headers, decoded bodies, URLs).
//!
//! The finder is byte based and allocation free: it jumps from `@` to `@` and widens each
//! hit to the longest local part and domain around it. Because free text often glues
//! punctuation to an address (`'joe@x.example'`, `=joe@x.example`, `mailto:joe@x.example`),
//! every hit comes with its candidate starts, widest first; the caller takes the first one
//! it recognises.

/// Bytes allowed in a local part: RFC 5322 `atext` plus the dot.
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b)
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// One address-like hit: the candidate start offsets (widest first) and the end offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub starts: Vec<usize>,
    pub end: usize,
}

/// Calls `f` for every address-like hit in `text`.
pub fn for_each_hit(text: &[u8], mut f: impl FnMut(&Hit)) {
    let mut hit = Hit {
        starts: Vec::new(),
        end: 0,
    };
    let mut from = 0;
    while let Some(pos) = text[from..].iter().position(|&b| b == b'@') {
        let at = from + pos;
        from = at + 1;
        if fill_hit(text, at, &mut hit) {
            from = hit.end.max(from);
            f(&hit);
        }
    }
}

/// Widens the `@` at `at` into a hit; false when it is not address-like.
fn fill_hit(text: &[u8], at: usize, hit: &mut Hit) -> bool {
    let mut end = at + 1;
    while end < text.len() && is_domain(text[end]) {
        end += 1;
    }
    while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &text[at + 1..end];
    if domain.len() < 3 || !domain.contains(&b'.') || !domain[0].is_ascii_alphanumeric() {
        return false;
    }
    let mut start = at;
    while start > 0 && is_local(text[start - 1]) {
        start -= 1;
    }
    hit.starts.clear();
    for s in start..at {
        let boundary = s == start || !text[s - 1].is_ascii_alphanumeric();
        if boundary && text[s].is_ascii_alphanumeric() {
            hit.starts.push(s);
        }
    }
    hit.end = end;
    !hit.starts.is_empty()
}

/// Every address-like string in `text` (widest reading of each hit).
pub fn addresses(text: &str) -> impl Iterator<Item = &str> {
    let mut found = Vec::new();
    for_each_hit(text.as_bytes(), |hit| found.push((hit.starts[0], hit.end)));
    found.into_iter().map(move |(s, e)| &text[s..e])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Vec<&str>> {
        let mut out = Vec::new();
        for_each_hit(text.as_bytes(), |h| {
            out.push(h.starts.iter().map(|&s| &text[s..h.end]).collect())
        });
        out
    }

    #[test]
    fn finds_addresses_with_glued_punctuation() {
        assert_eq!(
            all("write to 'joe@real.example'. or mailto:ann.lee@mail.example!"),
            vec![
                vec!["joe@real.example"],
                vec!["ann.lee@mail.example", "lee@mail.example"]
            ]
        );
        assert_eq!(
            all("=joe@real.example x-y@a.b.example."),
            vec![
                vec!["joe@real.example"],
                vec!["x-y@a.b.example", "y@a.b.example"]
            ]
        );
    }

    #[test]
    fn ignores_non_addresses() {
        assert!(all("a @ b, x@y, @home, user@localhost, é@").is_empty());
    }
}
