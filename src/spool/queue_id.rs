//! [`QueueId`]: a queue id held inline (no heap allocation), for the structures that keep
//! one per queued entry — the spool's index and the delivery scheduler — where a `String`
//! (24 bytes plus a heap block) per entry was a large part of the memory a big queue takes.
//! Ids are the text [`super::Spool::new_id`] issues (24 hex digits); any id of at most
//! [`QueueId::MAX`] bytes is held, so records written by older code or by tests still read
//! back. Ids compare as their text.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueId {
    len: u8,
    bytes: [u8; QueueId::MAX],
}

impl QueueId {
    /// The longest id held.
    pub const MAX: usize = 24;

    /// `text` as an id; None when it is longer than [`QueueId::MAX`] bytes.
    pub fn parse(text: &str) -> Option<QueueId> {
        let b = text.as_bytes();
        if b.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        bytes[..b.len()].copy_from_slice(b);
        Some(QueueId {
            len: b.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("copied from a str")
    }
}

impl Ord for QueueId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for QueueId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<str> for QueueId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for QueueId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_round_trip_and_bad_ones_are_refused() {
        let id = super::super::Spool::new_id();
        let q = QueueId::parse(&id).expect("an issued id fits");
        assert_eq!(q.to_string(), id);
        assert_eq!(q, id.as_str());
        assert_eq!(
            QueueId::parse("0000000000010aa").unwrap().as_str(),
            "0000000000010aa"
        );
        assert_eq!(QueueId::parse("a\rb").unwrap().as_str(), "a\rb");
        assert!(QueueId::parse(&"a".repeat(25)).is_none());
        assert!(
            QueueId::parse("ab").unwrap() < QueueId::parse("b").unwrap(),
            "text order"
        );
        assert!(std::mem::size_of::<QueueId>() <= 25);
    }
}
