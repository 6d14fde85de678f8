//! One bounded cache with expiry, for the operator's small lookups (Secrets read by name,
//! cloud accounts, `/metrics` authorisation decisions).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A map whose entries expire `ttl` after they were written (or, when `sliding`, after they
/// were last read), holding at most `capacity`: when full, expired entries go first, then
/// the least recently touched.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    capacity: usize,
    sliding: bool,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// Entries live `ttl` from when they were written.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
            sliding: false,
        }
    }

    /// Entries live `ttl` from when they were last read or written.
    pub fn sliding(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            sliding: true,
            ..Self::new(ttl, capacity)
        }
    }

    /// The live value of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().expect("cache lock");
        let (value, touched) = entries.get_mut(key)?;
        if touched.elapsed() >= self.ttl {
            entries.remove(key);
            return None;
        }
        if self.sliding {
            *touched = Instant::now();
        }
        Some(value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, touched)| touched.elapsed() < self.ttl);
            while entries.len() >= self.capacity {
                let Some(oldest) = entries.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else {
                    break;
                };
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn remove(&self, key: &K) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    /// How many entries it holds, expired ones included until they are evicted.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_bounded_and_keeps_what_is_used() {
        let cache = TtlCache::sliding(Duration::from_secs(3600), 3);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(cache.get(&"a"), Some(1), "read: the most recent now");
        cache.insert("d", 4);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"b"), None, "the least recently used went");
        assert_eq!((cache.get(&"a"), cache.get(&"d")), (Some(1), Some(4)));
    }

    #[test]
    fn entries_expire() {
        let cache = TtlCache::new(Duration::from_millis(20), 10);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(cache.get(&"a"), None);
        assert!(cache.is_empty(), "an expired entry read is dropped");
    }
}
