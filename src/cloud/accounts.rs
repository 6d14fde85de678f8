//! Which cloud account each credential set acts in, as STS GetCallerIdentity answers it.
//!
//! A cloud account is an account, not an AccessKey: two RAM users of one account, or a key
//! rotated under a new Secret name, act on the same tasks, desktops and quotas. The book is
//! shared by every client made from one (see [`super::CloudClient::account`]); it is keyed
//! by the credential set ([`super::Credentials::account_key`]), bounded, and forgets sets
//! unused for an hour, so STS keys that rotate at every refresh do not pile up.

use std::time::Duration;

use crate::ttl_cache::TtlCache;

/// A set not used for this long is forgotten (it is resolved again if it comes back).
pub const UNUSED_FOR: Duration = Duration::from_secs(3600);
/// The most sets the book holds; the least recently used goes first.
pub const CAPACITY: usize = 10_000;

pub struct AccountBook {
    entries: TtlCache<String, String>,
}

impl Default for AccountBook {
    fn default() -> Self {
        AccountBook {
            entries: TtlCache::sliding(UNUSED_FOR, CAPACITY),
        }
    }
}

impl std::fmt::Debug for AccountBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccountBook({} sets)", self.len())
    }
}

impl AccountBook {
    /// The account of the credential set `key`, if it was resolved.
    pub fn get(&self, key: &str) -> Option<String> {
        self.entries.get(&key.to_string())
    }

    pub fn insert(&self, key: String, account: String) {
        self.entries.insert(key, account);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_is_bounded_and_keeps_what_is_used() {
        let book = AccountBook::default();
        for i in 0..CAPACITY + 5 {
            book.insert(format!("key-{i}"), "123".into());
            if i == 0 {
                // Used again: the oldest by use is another one.
                assert_eq!(book.get("key-0").as_deref(), Some("123"));
            }
        }
        assert_eq!(book.len(), CAPACITY);
        assert_eq!(book.get(&format!("key-{}", CAPACITY + 4)).as_deref(), Some("123"));
    }
}
