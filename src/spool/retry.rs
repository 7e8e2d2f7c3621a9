//! Retry state on disk: each delivery attempt that ends in a deferral appends one line to
//! the `seg-N.retry` file of the segment that holds the entry (like `seg-N.done`, not
//! synced). A line is the sealed JSON of an [`Attempt`], base64-encoded, so the file shows
//! nothing in clear. At start the lines of every segment are merged per id (by attempt
//! number), so a restart continues the attempt count and waits for the persisted next
//! attempt instead of retrying everything at once.

use crate::intern::Interner;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::QueueId;
use crate::keys::Keys;

/// One attempt that did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt's number (1 for the first).
    pub n: u32,
    /// When it was made (unix milliseconds).
    pub at_ms: i64,
    /// When the next attempt is due (unix milliseconds).
    pub next_ms: i64,
    /// Why it failed, with any host name or address removed ([`safe_error`]). Shared: a
    /// large queue deferred by one destination holds one copy of its reply.
    pub error: Arc<str>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    id: String,
    attempt: Attempt,
}

/// The line appended for `attempt` of `id`, newline included.
pub fn encode(id: &str, attempt: &Attempt, keys: &Keys) -> Vec<u8> {
    let json = serde_json::to_vec(&Line {
        id: id.to_string(),
        attempt: attempt.clone(),
    })
    .expect("an attempt serialises");
    let mut line = base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(keys.seal(&json))
        .into_bytes();
    line.push(b'\n');
    line
}

/// Adds the attempts found in `path` to `into` (unreadable or torn lines are skipped: at
/// worst an attempt is repeated sooner).
/// Texts are shared through `errors`.
pub fn read(
    path: &Path,
    keys: &Keys,
    into: &mut HashMap<QueueId, Vec<Attempt>>,
    errors: &Interner,
) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let Some(l) = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(line.trim())
            .ok()
            .and_then(|sealed| keys.open(&sealed).ok())
            .and_then(|json| serde_json::from_slice::<Line>(&json).ok())
        else {
            continue;
        };
        if let Some(id) = QueueId::parse(&l.id) {
            let mut attempt = l.attempt;
            attempt.error = errors.intern(&attempt.error);
            into.entry(id).or_default().push(attempt);
        }
    }
}

/// At most this many distinct failure texts share one copy (a queue deferred by one
/// destination repeats the same few replies for every entry).
pub const ERRORS_MAX: usize = 1024;

/// Sorts a history by attempt number and drops repeated numbers (a relocated entry's
/// history is written again into its new segment).
pub fn normalise(history: &mut Vec<Attempt>) {
    history.sort_by_key(|a| a.n);
    history.dedup_by_key(|a| a.n);
}

/// `text` with every word that looks like a host name, an IP address or a mail address
/// replaced by `(host)`: a failure shown by `queue list` must not name the recipient's
/// domain or its mail servers. Enhanced status codes (`4.7.1`) and reply codes stay.
pub fn safe_error(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let core = word.trim_matches(|c: char| "()[]<>,;'\"".contains(c));
        let replaced = if names_a_host(core) { "(host)" } else { word };
        if !(replaced == "(host)" && out.last().is_some_and(|w| w == "(host)")) {
            out.push(replaced.to_string());
        }
    }
    let mut s = out.join(" ");
    s.truncate(s.char_indices().nth(200).map(|(i, _)| i).unwrap_or(s.len()));
    s
}

fn names_a_host(word: &str) -> bool {
    if word.contains('@') || word.matches(':').count() >= 2 {
        return true; // a mail address, or an IPv6 address
    }
    let host = word.rsplit_once(':').map(|(h, _)| h).unwrap_or(word);
    let host = host.trim_end_matches('.');
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return false;
    }
    let label = |p: &&str| p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !parts.iter().all(label) {
        return false;
    }
    let numeric = parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()));
    // `5.7.1` is a status code, `192.0.2.1` an address; any letter makes it a name.
    !numeric || parts.len() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_addresses_are_removed_but_codes_stay() {
        assert_eq!(
            safe_error("451 4.7.1 from mx1.mail.example:25 (192.0.2.7) for <ann@mail.example>"),
            "451 4.7.1 from (host) for (host)"
        );
        assert_eq!(
            safe_error("could not connect to [::1]:2525"),
            "could not connect to (host)"
        );
        assert_eq!(
            safe_error("the destination domain does not exist"),
            "the destination domain does not exist"
        );
        assert_eq!(safe_error("550 5.1.1 refused"), "550 5.1.1 refused");
    }

    #[test]
    fn lines_round_trip_sealed() {
        let keys = Keys::from_master([3; 32]);
        let a = Attempt {
            n: 2,
            at_ms: 5,
            next_ms: 9,
            error: "451 4.7.1 later".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.retry");
        let mut bytes = encode("id1", &a, &keys);
        bytes.extend_from_slice(b"garbage\n");
        std::fs::write(&path, &bytes).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("later"));
        let mut found = HashMap::new();
        read(&path, &keys, &mut found, &Interner::new(ERRORS_MAX));
        assert_eq!(found[&QueueId::parse("id1").unwrap()], vec![a]);
    }
}
