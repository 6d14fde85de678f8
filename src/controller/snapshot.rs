//! Short-lived, shared cloud reads: resources of one kind, account and region share one
//! paged list per TTL instead of one describe call each. Concurrent readers of the same
//! key wait for one fetch; failures are not cached.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::cloud::CloudError;

/// What a snapshot is of: the list call, the account (AccessKeyId) and the region.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    pub list: &'static str,
    pub account: String,
    pub region: String,
}

type Shared = Arc<dyn Any + Send + Sync>;

struct Entry {
    created: Instant,
    cell: Arc<OnceCell<Shared>>,
}

pub struct SnapshotCache {
    ttl: Duration,
    entries: Mutex<HashMap<SnapshotKey, Entry>>,
}

impl SnapshotCache {
    pub fn new(ttl: Duration) -> Self {
        SnapshotCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached list for `key`, or the result of `fetch` shared with every concurrent caller.
    pub async fn get<T, F, Fut>(&self, key: SnapshotKey, fetch: F) -> Result<Arc<T>, CloudError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let cell = {
            let mut entries = self.entries.lock().expect("snapshot lock");
            let fresh = entries.get(&key).is_some_and(|e| e.created.elapsed() < self.ttl);
            if !fresh {
                entries.insert(
                    key.clone(),
                    Entry {
                        created: Instant::now(),
                        cell: Arc::new(OnceCell::new()),
                    },
                );
            }
            entries[&key].cell.clone()
        };
        let value = cell
            .get_or_try_init(|| async { fetch().await.map(|v| Arc::new(v) as Shared) })
            .await?;
        Ok(value.clone().downcast::<T>().expect("one type per snapshot key"))
    }

    /// Applies a write's known effect to the cached list, if there is one, so the next
    /// reader within the TTL sees it without listing again.
    pub fn update<T: Clone + Send + Sync + 'static>(&self, key: &SnapshotKey, f: impl FnOnce(&mut T)) {
        let mut entries = self.entries.lock().expect("snapshot lock");
        let Some(entry) = entries.get_mut(key) else { return };
        let Some(current) = entry.cell.get().and_then(|v| v.clone().downcast::<T>().ok()) else {
            return;
        };
        let mut next = (*current).clone();
        f(&mut next);
        entry.cell = Arc::new(OnceCell::new_with(Some(Arc::new(next) as Shared)));
    }

    /// Forgets `key`, after a write whose effect is unknown.
    pub fn invalidate(&self, key: &SnapshotKey) {
        self.entries.lock().expect("snapshot lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn key(region: &str) -> SnapshotKey {
        SnapshotKey {
            list: "DescribeDesktops",
            account: "ak".into(),
            region: region.into(),
        }
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_fetch_and_invalidate_refetches() {
        let cache = Arc::new(SnapshotCache::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(key("r"), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, CloudError>(vec![1, 2, 3])
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), vec![1, 2, 3]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.invalidate(&key("r"));
        cache
            .get(key("r"), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, CloudError>(vec![4])
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn updates_write_through_without_a_new_fetch() {
        let cache = SnapshotCache::new(Duration::from_secs(60));
        cache
            .get(key("r"), || async { Ok::<_, CloudError>(vec![1, 2]) })
            .await
            .unwrap();
        cache.update::<Vec<i32>>(&key("r"), |v| v.push(3));
        let v = cache
            .get(key("r"), || async { Ok::<Vec<i32>, CloudError>(vec![]) })
            .await
            .unwrap();
        assert_eq!(*v, vec![1, 2, 3]);
        // Nothing cached: nothing to update, and the next read fetches.
        cache.update::<Vec<i32>>(&key("other"), |v| v.push(9));
        let v = cache
            .get(key("other"), || async { Ok::<_, CloudError>(vec![7]) })
            .await
            .unwrap();
        assert_eq!(*v, vec![7]);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = SnapshotCache::new(Duration::from_secs(60));
        let err = cache
            .get::<Vec<i32>, _, _>(key("r"), || async { Err(CloudError::InvalidRequest("boom".into())) })
            .await;
        assert!(err.is_err());
        let ok = cache
            .get(key("r"), || async { Ok::<_, CloudError>(vec![7]) })
            .await
            .unwrap();
        assert_eq!(*ok, vec![7]);
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = SnapshotCache::new(Duration::from_millis(1));
        cache.get(key("r"), || async { Ok::<_, CloudError>(1) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let v = cache.get(key("r"), || async { Ok::<_, CloudError>(2) }).await.unwrap();
        assert_eq!(*v, 2);
    }
}
