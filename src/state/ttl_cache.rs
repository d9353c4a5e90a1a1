//! A small map whose entries are trusted for a fixed time: the broker's known callers (so a
//! model call costs no database or engine round trip to authenticate) and who keys belong to. Bounded: past
//! `max_entries` it starts over, so a flood of keys cannot grow it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    fresh_for: Duration,
    max_entries: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(fresh_for: Duration, max_entries: usize) -> Self {
        TtlCache { entries: Mutex::default(), fresh_for, max_entries }
    }

    /// The value, if it was put less than `fresh_for` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).filter(|(_, at)| at.elapsed() < self.fresh_for).map(|(value, _)| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.max_entries {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn forget(&self, key: &K) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_remembered_until_forgotten_or_stale_and_the_map_stays_bounded() {
        let book = TtlCache::new(Duration::from_secs(5), 100);
        let key = "sandy-a".to_owned();
        assert_eq!(book.get(&key), None);
        book.put(key.clone(), std::net::IpAddr::from([172, 18, 0, 5]));
        assert_eq!(book.get(&key), Some(std::net::IpAddr::from([172, 18, 0, 5])));
        book.forget(&key);
        assert_eq!(book.get(&key), None);

        let stale = TtlCache::new(Duration::ZERO, 2);
        stale.put(1, "one");
        assert_eq!(stale.get(&1), None, "older than its lifetime");
        let small = TtlCache::new(Duration::from_secs(60), 2);
        for n in 0..3 {
            small.put(n, n);
        }
        assert_eq!((small.get(&0), small.get(&2)), (None, Some(2)), "started over when full");
    }
}
