//! [`Interner`]: one shared copy of each of a few texts that many queued entries repeat
//! (failure replies, recipient domains, destination keys), so a large queue holds a pointer
//! per entry instead of a string. Bounded: past its limit it starts afresh, which only loses
//! sharing (texts compare by content, never by pointer).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub struct Interner {
    set: Mutex<HashSet<Arc<str>>>,
    max: usize,
}

impl Interner {
    /// An interner that holds at most `max` texts.
    pub fn new(max: usize) -> Self {
        Interner {
            set: Mutex::new(HashSet::new()),
            max,
        }
    }

    /// The one copy of `text`.
    pub fn intern(&self, text: &str) -> Arc<str> {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = set.get(text) {
            return known.clone();
        }
        if set.len() >= self.max {
            set.clear();
        }
        let shared: Arc<str> = Arc::from(text);
        set.insert(shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_copy_and_the_bound_only_loses_sharing() {
        let interner = Interner::new(2);
        let a = interner.intern("451 try later");
        assert!(Arc::ptr_eq(&a, &interner.intern("451 try later")));
        interner.intern("b");
        interner.intern("c"); // past the bound: starts afresh
        let again = interner.intern("451 try later");
        assert_eq!(again, a);
        assert!(!Arc::ptr_eq(&again, &a));
    }
}
