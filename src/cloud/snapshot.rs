//! Shared cloud reads: resources of one kind, account and region share one paged list
//! instead of one describe call each.
//!
//! - A list's age counts from when it completed, not from when it started: a list that
//!   takes longer than a reader's limit still serves that reader.
//! - At most one list per key is in flight. It runs as its own task, so a reader that gives
//!   up (a cancelled reconcile) neither stops nor restarts it; later readers join it.
//! - Each reader says how old a list it accepts (the controller passes the resource's
//!   resync interval), so a steady resync of N resources costs one list per interval, and a
//!   reader never waits for a list while the one it has is young enough.
//! - The operator's own writes are applied to the list (also to one in flight, when it
//!   lands), so N writes do not cost N lists. Failures are not cached.
//! - Each list's cost (calls, time, time waiting for the client-side limits) is exported.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cloud::{CloudError, measure};

/// What a snapshot is of: the list call, the account (credential set) and the region.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    pub list: &'static str,
    pub account: String,
    pub region: String,
}

type Value = Arc<dyn Any + Send + Sync>;
type Update = Box<dyn FnMut(&mut dyn Any) + Send>;
/// A list and the wall-clock time it started.
type Listed = (Value, chrono::DateTime<chrono::Utc>);
type Landing = Shared<BoxFuture<'static, Result<Listed, CloudError>>>;

struct InFlight {
    id: u64,
    landing: Landing,
    /// Writes made while the list runs, applied to its result (and to its pages so far).
    updates: Vec<Update>,
    /// A write with an unknown effect happened meanwhile: the result is stale on arrival.
    invalidated: bool,
    /// When the list started (the wall clock).
    listed_at: chrono::DateTime<chrono::Utc>,
    /// What the pages read so far hold, for readers looking up one item ([`SnapshotCache::lookup`]);
    /// `None` until a list publishes its first page ([`Pages`]).
    partial: Option<Box<dyn Any + Send + Sync>>,
    /// Counts the pages published, so that lookups waiting for theirs look again.
    progress: tokio::sync::watch::Sender<u64>,
    /// Readers that did not wait for their page ([`SnapshotCache::lookup_or_recall`]).
    recalls: Recalls,
}

/// Brings a reader back: called once, when the list it looked in reads a page holding its
/// item, or when that list ends (landed, failed, or replaced).
pub type Recall = Box<dyn FnOnce() + Send>;

/// Whether the pages read so far hold a reader's item.
type Holds = Box<dyn Fn(&dyn Any) -> bool + Send>;

/// A reader that did not wait for its page.
struct Waiting {
    holds: Holds,
    recall: Recall,
}

/// The readers a list in flight owes a page. Whoever is still here when the list ends, however
/// it ends, is recalled then: nobody is left waiting for a list that will not come.
#[derive(Default)]
struct Recalls(Vec<Waiting>);

impl Recalls {
    /// Recalls the readers whose items `so_far` now holds.
    fn answered_by(&mut self, so_far: &dyn Any) {
        let (found, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.0).into_iter().partition(|w| (w.holds)(so_far));
        self.0 = still;
        for w in found {
            (w.recall)();
        }
    }
}

impl Drop for Recalls {
    fn drop(&mut self) {
        for w in self.0.drain(..) {
            (w.recall)();
        }
    }
}

/// What [`SnapshotCache::lookup_or_recall`] found.
pub enum Lookup<R> {
    /// The item (`None`: the whole list shows no such item) and when the list that answered
    /// started, as [`SnapshotCache::lookup`] answers.
    Found(Option<R>, chrono::DateTime<chrono::Utc>),
    /// The list in flight has not read the item's page yet. The reader is recalled when it
    /// has, or when the list ends; nothing waited.
    Later,
}

/// Hands the pages of a list in flight to its readers as they arrive: a reader that looks up
/// one item ([`SnapshotCache::lookup`]) is answered by the first page that holds it, so the
/// work of the resources whose items come early starts while the list still pages.
pub struct Pages<T> {
    entries: Arc<Mutex<HashMap<SnapshotKey, Entry>>>,
    key: SnapshotKey,
    id: u64,
    _list: std::marker::PhantomData<fn(T)>,
}

impl<T: Default + Send + Sync + 'static> Pages<T> {
    /// Adds a page to what the list shows so far (`add` puts its items into `T`). The writes
    /// of ours made meanwhile are applied again, so a page read before a write does not undo it.
    pub fn publish(&self, add: impl FnOnce(&mut T)) {
        let mut entries = self.entries.lock().expect("snapshot lock");
        let Some(flight) = entries
            .get_mut(&self.key)
            .and_then(|e| e.in_flight.as_mut())
            .filter(|f| f.id == self.id)
        else {
            return;
        };
        let partial = flight.partial.get_or_insert_with(|| Box::new(T::default()));
        if let Some(so_far) = partial.downcast_mut::<T>() {
            add(so_far);
            for update in &mut flight.updates {
                update(so_far);
            }
        }
        flight.recalls.answered_by(&**partial);
        flight.progress.send_modify(|n| *n += 1);
    }

    /// What the pages published hold, as the list's result: a list that files every page
    /// here returns this instead of a second copy it kept itself. Readers that come before
    /// the list lands wait for the landing.
    pub fn into_listed(self) -> T {
        let mut entries = self.entries.lock().expect("snapshot lock");
        entries
            .get_mut(&self.key)
            .and_then(|e| e.in_flight.as_mut())
            .filter(|f| f.id == self.id)
            .and_then(|f| f.partial.take())
            .and_then(|p| p.downcast::<T>().ok())
            .map(|p| *p)
            .unwrap_or_default()
    }
}

struct Entry {
    /// The newest list, when it completed (for its age), and the wall-clock time it started.
    value: Option<(Value, Instant, chrono::DateTime<chrono::Utc>)>,
    stale: bool,
    in_flight: Option<InFlight>,
    /// When a reader last asked for it: lists nobody asks for are forgotten. (Tokio's
    /// clock, which tests can move.)
    read: tokio::time::Instant,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            value: None,
            stale: false,
            in_flight: None,
            read: tokio::time::Instant::now(),
        }
    }
}

impl Entry {
    /// The list, if it is not stale and completed less than `limit` ago, with when it started.
    fn young(&self, limit: Duration) -> Option<(Value, chrono::DateTime<chrono::Utc>)> {
        let (value, completed, listed_at) = self.value.as_ref()?;
        (!self.stale && completed.elapsed() < limit).then(|| (value.clone(), *listed_at))
    }
}

/// The entry of `key`, marked as read now; lists nobody reads any more go when a new key comes.
fn read_entry<'a>(entries: &'a mut HashMap<SnapshotKey, Entry>, key: &SnapshotKey) -> &'a mut Entry {
    if !entries.contains_key(key) {
        entries.retain(|_, e| e.in_flight.is_some() || e.read.elapsed() < UNREAD_FOR);
    }
    let entry = entries.entry(key.clone()).or_default();
    entry.read = tokio::time::Instant::now();
    entry
}

/// A list nobody has asked for this long is dropped (credentials that are gone, a region no
/// resource names any more); it is listed again if someone asks.
pub const UNREAD_FOR: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListLabel {
    pub list: String,
}

/// The cost of shared lists, by list call.
#[derive(Clone)]
pub struct SnapshotMetrics {
    pub lists: Family<ListLabel, Counter>,
    pub calls: Family<ListLabel, Counter>,
    pub limiter_wait: Family<ListLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    pub duration: Family<ListLabel, Histogram, fn() -> Histogram>,
}

fn list_histogram() -> Histogram {
    // 10 ms .. ~80 s
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

impl Default for SnapshotMetrics {
    fn default() -> Self {
        SnapshotMetrics {
            lists: Family::default(),
            calls: Family::default(),
            limiter_wait: Family::default(),
            duration: Family::new_with_constructor(list_histogram),
        }
    }
}

impl SnapshotMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "snapshot_lists",
            "Shared cloud lists completed or failed, by list call",
            self.lists.clone(),
        );
        registry.register(
            "snapshot_list_calls",
            "Cloud calls (pages, every attempt) made by shared lists, by list call",
            self.calls.clone(),
        );
        registry.register(
            "snapshot_list_ratelimit_wait_seconds",
            "Time shared lists waited for the client-side rate limits, by list call",
            self.limiter_wait.clone(),
        );
        registry.register(
            "snapshot_list_duration_seconds",
            "How long a shared list took from start to completion, by list call",
            self.duration.clone(),
        );
    }

    /// Lists completed or failed so far, for one list call.
    pub fn lists_of(&self, list: &str) -> u64 {
        self.lists.get_or_create(&ListLabel { list: list.into() }).get()
    }
}

pub struct SnapshotCache {
    /// The oldest a list may be for any reader, whatever the reader accepts.
    cap: Duration,
    entries: Arc<Mutex<HashMap<SnapshotKey, Entry>>>,
    next_id: std::sync::atomic::AtomicU64,
    pub metrics: SnapshotMetrics,
}

/// The list as the reader's type. Two readers of one key that disagree on its type are a
/// bug of ours, reported as such (never a panic in a reconcile).
fn typed<T: Send + Sync + 'static>(list: &str, v: Value) -> Result<Arc<T>, CloudError> {
    v.downcast::<T>().map_err(|_| {
        CloudError::Internal(format!(
            "the shared list {list} is read as {}, but holds another type",
            std::any::type_name::<T>()
        ))
    })
}

impl SnapshotCache {
    /// How many lists the cache holds.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("snapshot lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A cache whose lists serve readers for at most `cap` after they complete.
    pub fn new(cap: Duration) -> Self {
        SnapshotCache {
            cap,
            entries: Arc::default(),
            next_id: Default::default(),
            metrics: SnapshotMetrics::default(),
        }
    }

    /// The list for `key` if it completed less than `max_age` ago (and less than the cap);
    /// otherwise the list in flight, or a new one started with `fetch`.
    pub async fn get<T, F, Fut>(&self, key: SnapshotKey, max_age: Duration, fetch: F) -> Result<Arc<T>, CloudError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        self.get_listed(key, max_age, fetch).await.map(|(v, _)| v)
    }

    /// As [`SnapshotCache::get`], with when the list started: a reader that wrote since can
    /// tell that the list cannot be relied on to show its write (even one replayed onto it).
    pub async fn get_listed<T, F, Fut>(
        &self,
        key: SnapshotKey,
        max_age: Duration,
        fetch: F,
    ) -> Result<(Arc<T>, chrono::DateTime<chrono::Utc>), CloudError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        let limit = max_age.min(self.cap);
        let list = key.list;
        let landing = {
            let mut entries = self.entries.lock().expect("snapshot lock");
            let entry = read_entry(&mut entries, &key);
            if let Some((value, listed_at)) = entry.young(limit) {
                return Ok((typed(key.list, value)?, listed_at));
            }
            match &entry.in_flight {
                Some(f) => f.landing.clone(),
                None => self.begin(entry, key, |_| fetch()),
            }
        };
        let (v, at) = landing.await?;
        Ok((typed(list, v)?, at))
    }

    /// Starts the entry's list in flight: `fetch` makes it, given the list's id.
    fn begin<T, Fut>(&self, entry: &mut Entry, key: SnapshotKey, fetch: impl FnOnce(u64) -> Fut) -> Landing
    where
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fetch = fetch(id);
        // The list shows the cloud as of some time after it started; writes made while it
        // runs may or may not show (our own are replayed onto it), so a reader compares its
        // writes with the start.
        let listed_at = chrono::Utc::now();
        let landing = self.start(key, id, listed_at, fetch);
        entry.in_flight = Some(InFlight {
            id,
            landing: landing.clone(),
            updates: Vec::new(),
            invalidated: false,
            listed_at,
            partial: None,
            progress: tokio::sync::watch::channel(0).0,
            recalls: Recalls::default(),
        });
        landing
    }

    /// One item of the list for `key`, as `look` finds it, with when the list that answered
    /// started: from a list young enough (as [`SnapshotCache::get_listed`]), else from the
    /// pages the list in flight has read so far, as soon as one holds it. `None` once the
    /// whole list shows no such item. `fetch` gets the [`Pages`] to publish its pages to.
    pub async fn lookup<T, R, F, Fut>(
        &self,
        key: SnapshotKey,
        max_age: Duration,
        fetch: F,
        look: impl Fn(&T) -> Option<R>,
    ) -> Result<(Option<R>, chrono::DateTime<chrono::Utc>), CloudError>
    where
        T: Default + Send + Sync + 'static,
        F: FnOnce(Pages<T>) -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        let limit = max_age.min(self.cap);
        let list = key.list;
        let mut fetch = Some(fetch);
        let mut followed: Option<Landing> = None;
        loop {
            let (mut progress, landing) = {
                let mut entries = self.entries.lock().expect("snapshot lock");
                let entry = read_entry(&mut entries, &key);
                if let Some((value, listed_at)) = entry.young(limit) {
                    return Ok((look(&*typed::<T>(list, value)?), listed_at));
                }
                match (&entry.in_flight, fetch.take()) {
                    (Some(f), fetch_unused) => {
                        fetch = fetch_unused;
                        let so_far = f.partial.as_ref().and_then(|p| p.downcast_ref::<T>());
                        if let Some(found) = so_far.and_then(&look) {
                            return Ok((Some(found), f.listed_at));
                        }
                        (Some(f.progress.subscribe()), f.landing.clone())
                    }
                    (None, Some(fetch)) => {
                        let entries = self.entries.clone();
                        let pages = |id| Pages {
                            entries,
                            key: key.clone(),
                            id,
                            _list: std::marker::PhantomData,
                        };
                        let landing = self.begin(entry, key.clone(), |id| fetch(pages(id)));
                        let progress = entry.in_flight.as_ref().map(|f| f.progress.subscribe());
                        (progress, landing)
                    }
                    // The list this reader followed has landed, and a write made it stale
                    // meanwhile: its answer is what the reader gets, as from `get_listed`.
                    (None, None) => (None, followed.take().expect("a list was followed")),
                }
            };
            followed = Some(landing.clone());
            let page = async {
                match &mut progress {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => false,
                }
            };
            tokio::select! {
                more = page => if more { continue },
                landed = landing.clone() => {
                    let (v, at) = landed?;
                    return Ok((look(&*typed::<T>(list, v)?), at));
                }
            }
            // No more pages will come (the list landed or went): its landing answers.
            let (v, at) = landing.await?;
            return Ok((look(&*typed::<T>(list, v)?), at));
        }
    }

    /// As [`SnapshotCache::lookup`], without waiting for a page: while the list in flight
    /// pages and has not read the item yet, `recall` is kept and called when it has (or when
    /// the list ends), and the answer is [`Lookup::Later`]. A worker is then free for
    /// resources whose items came early. Before the list's first page (and when no list is in
    /// flight) the reader waits as [`SnapshotCache::lookup`] does, and gets its failure: a
    /// list that keeps failing is not started again by every reader it recalled.
    pub async fn lookup_or_recall<T, R, F, Fut>(
        &self,
        key: SnapshotKey,
        max_age: Duration,
        fetch: F,
        look: impl Fn(&T) -> Option<R> + Send + 'static,
        recall: Recall,
    ) -> Result<Lookup<R>, CloudError>
    where
        T: Default + Send + Sync + 'static,
        F: FnOnce(Pages<T>) -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        {
            let mut entries = self.entries.lock().expect("snapshot lock");
            let entry = read_entry(&mut entries, &key);
            if entry.young(max_age.min(self.cap)).is_none()
                && let Some(flight) = entry.in_flight.as_mut()
                && let Some(so_far) = flight.partial.as_ref().and_then(|p| p.downcast_ref::<T>())
            {
                if let Some(found) = look(so_far) {
                    return Ok(Lookup::Found(Some(found), flight.listed_at));
                }
                flight.recalls.0.push(Waiting {
                    holds: Box::new(move |so_far| so_far.downcast_ref::<T>().and_then(&look).is_some()),
                    recall,
                });
                return Ok(Lookup::Later);
            }
        }
        let (found, listed_at) = self.lookup(key, max_age, fetch, look).await?;
        Ok(Lookup::Found(found, listed_at))
    }

    /// Runs one list as its own task and lands its result in the entry.
    fn start<T, Fut>(&self, key: SnapshotKey, id: u64, listed_at: chrono::DateTime<chrono::Utc>, fetch: Fut) -> Landing
    where
        T: Send + Sync + 'static,
        Fut: Future<Output = Result<T, CloudError>> + Send + 'static,
    {
        let entries = self.entries.clone();
        let metrics = self.metrics.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let (result, cost) = measure(std::panic::AssertUnwindSafe(fetch).catch_unwind()).await;
            let label = ListLabel {
                list: key.list.to_string(),
            };
            metrics.lists.get_or_create(&label).inc();
            metrics.calls.get_or_create(&label).inc_by(cost.calls);
            metrics
                .limiter_wait
                .get_or_create(&label)
                .inc_by(cost.limiter_wait.as_secs_f64());
            metrics
                .duration
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            let result = result.unwrap_or_else(|_| Err(CloudError::Internal(format!("listing {} panicked", key.list))));
            let mut entries = entries.lock().expect("snapshot lock");
            let entry = entries.entry(key).or_default();
            let Some(flight) = entry.in_flight.take_if(|f| f.id == id) else {
                return result.map(|v| (Arc::new(v) as Value, listed_at));
            };
            let mut value = result?;
            for mut update in flight.updates {
                update(&mut value);
            }
            let value: Value = Arc::new(value);
            entry.value = Some((value.clone(), Instant::now(), listed_at));
            entry.stale = flight.invalidated;
            Ok((value, listed_at))
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(CloudError::Internal(format!("a shared list stopped: {e}"))))
        }
        .boxed()
        .shared()
    }

    /// Applies a write's known effect to the list, and to the list in flight when it lands,
    /// so the next reader sees it without listing again.
    pub fn update<T: Clone + Send + Sync + 'static>(&self, key: &SnapshotKey, f: impl Fn(&mut T) + Send + 'static) {
        let mut entries = self.entries.lock().expect("snapshot lock");
        let Some(entry) = entries.get_mut(key) else { return };
        if let Some((value, ..)) = &mut entry.value {
            // Changed in place when no reader holds the list now; copied only when one does
            // (a copy of 10,000 items per write-through adds up at a cold start).
            let held = std::mem::replace(value, Arc::new(()));
            *value = match held.downcast::<T>() {
                Ok(mut current) => {
                    f(Arc::make_mut(&mut current));
                    current
                }
                Err(other) => other,
            };
        }
        if let Some(flight) = &mut entry.in_flight {
            if let Some(so_far) = flight.partial.as_mut().and_then(|p| p.downcast_mut::<T>()) {
                f(so_far);
            }
            flight.updates.push(Box::new(move |any: &mut dyn Any| {
                if let Some(v) = any.downcast_mut::<T>() {
                    f(v);
                }
            }));
        }
    }

    /// After a write whose effect is unknown: the next reader lists again (a list in flight
    /// may have read before the write, so its result is stale too).
    pub fn invalidate(&self, key: &SnapshotKey) {
        let mut entries = self.entries.lock().expect("snapshot lock");
        if let Some(entry) = entries.get_mut(key) {
            entry.stale = true;
            if let Some(flight) = &mut entry.in_flight {
                flight.invalidated = true;
            }
        }
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

    const LONG: Duration = Duration::from_secs(3600);

    fn counted<T: Send + 'static>(
        calls: &Arc<AtomicU32>,
        took: Duration,
        value: T,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<T, CloudError>> {
        let calls = calls.clone();
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(took).await;
                Ok(value)
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_readers_share_one_fetch_and_invalidate_refetches() {
        let cache = Arc::new(SnapshotCache::new(LONG));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(
                        key("r"),
                        LONG,
                        counted(&calls, Duration::from_millis(20), vec![1, 2, 3]),
                    )
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(*t.await.unwrap(), vec![1, 2, 3]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.metrics.lists_of("DescribeDesktops"), 1);
        cache.invalidate(&key("r"));
        let v = cache
            .get(key("r"), LONG, counted(&calls, Duration::ZERO, vec![4]))
            .await
            .unwrap();
        assert_eq!(*v, vec![4]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// A list slower than every reader's limit is still fetched once: readers that come
    /// while it runs join it, its age counts from when it completed, and a reader that gives
    /// up does not restart it.
    #[tokio::test]
    async fn a_slow_list_longer_than_the_limit_is_fetched_once() {
        let cache = Arc::new(SnapshotCache::new(LONG));
        let calls = Arc::new(AtomicU32::new(0));
        let limit = Duration::from_millis(100);
        let slow = Duration::from_millis(400);
        // The first reader gives up after 50 ms.
        let first = {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move { cache.get(key("r"), limit, counted(&calls, slow, 7u32)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.abort();
        let mut readers = Vec::new();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let (cache, calls) = (cache.clone(), calls.clone());
            readers.push(tokio::spawn(async move {
                cache.get(key("r"), limit, counted(&calls, slow, 8u32)).await.unwrap()
            }));
        }
        for r in readers {
            assert_eq!(*r.await.unwrap(), 7);
        }
        // Just completed: young enough for the limit, though it started 400 ms ago.
        let v = cache.get(key("r"), limit, counted(&calls, slow, 9u32)).await.unwrap();
        assert_eq!(*v, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_reader_with_a_shorter_limit_refreshes_for_everyone() {
        let cache = SnapshotCache::new(LONG);
        let calls = Arc::new(AtomicU32::new(0));
        cache
            .get(key("r"), LONG, counted(&calls, Duration::ZERO, 1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Young enough for a resync of an hour; too old for one of 10 ms.
        assert_eq!(
            *cache
                .get(key("r"), LONG, counted(&calls, Duration::ZERO, 2))
                .await
                .unwrap(),
            1
        );
        let short = Duration::from_millis(10);
        assert_eq!(
            *cache
                .get(key("r"), short, counted(&calls, Duration::ZERO, 3))
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            *cache
                .get(key("r"), LONG, counted(&calls, Duration::ZERO, 4))
                .await
                .unwrap(),
            3
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn writes_apply_to_the_list_and_to_one_in_flight() {
        let cache = Arc::new(SnapshotCache::new(LONG));
        let calls = Arc::new(AtomicU32::new(0));
        cache
            .get(key("r"), LONG, counted(&calls, Duration::ZERO, vec![1, 2]))
            .await
            .unwrap();
        cache.update::<Vec<i32>>(&key("r"), |v| v.push(3));
        let v = cache
            .get(key("r"), LONG, counted(&calls, Duration::ZERO, Vec::<i32>::new()))
            .await
            .unwrap();
        assert_eq!(*v, vec![1, 2, 3]);
        // A write made while a list runs is applied to what the list brings back.
        cache.invalidate(&key("r"));
        let reader = {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get(key("r"), LONG, counted(&calls, Duration::from_millis(100), vec![5]))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        cache.update::<Vec<i32>>(&key("r"), |v| v.push(6));
        assert_eq!(*reader.await.unwrap(), vec![5, 6]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Nothing cached: nothing to update, and the next read fetches.
        cache.update::<Vec<i32>>(&key("other"), |v| v.push(9));
        let v = cache
            .get(key("other"), LONG, counted(&calls, Duration::ZERO, vec![7]))
            .await
            .unwrap();
        assert_eq!(*v, vec![7]);
    }

    /// A write replayed onto a list in flight must not make the list look as if it had read
    /// the write from the cloud: the list is dated from its start, before the write.
    #[tokio::test]
    async fn a_list_in_flight_is_dated_before_a_write_replayed_onto_it() {
        let cache = Arc::new(SnapshotCache::new(LONG));
        let calls = Arc::new(AtomicU32::new(0));
        let reader = {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_listed(key("r"), LONG, counted(&calls, Duration::from_millis(200), vec![1]))
                    .await
                    .unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let written_at = chrono::Utc::now();
        cache.update::<Vec<i32>>(&key("r"), |v| v.push(2));
        let (value, listed_at) = reader.await.unwrap();
        assert_eq!(*value, vec![1, 2], "the write is replayed onto the list");
        assert!(
            listed_at < written_at,
            "the list is dated {listed_at}, after the write replayed onto it at {written_at}"
        );
    }

    /// A list that panics is a bug of ours, never reported as the cloud refusing a request.
    #[tokio::test]
    async fn a_panicking_list_is_ours_not_the_clouds() {
        let cache = SnapshotCache::new(LONG);
        let err = cache
            .get::<Vec<i32>, _, _>(key("r"), LONG, || async { panic!("a bug in a list") })
            .await
            .unwrap_err();
        assert_eq!(err.class(), crate::cloud::ErrorClass::Internal, "{err}");
    }

    /// A reader looking up one item is answered by the first page that holds it, while the
    /// list still pages; a reader whose item no page holds is answered, `None`, by the whole
    /// list; and a write of ours made meanwhile holds for the pages read before it.
    #[tokio::test]
    async fn a_lookup_is_answered_by_the_first_page_that_holds_the_item() {
        type Map = HashMap<String, i32>;
        let cache = Arc::new(SnapshotCache::new(LONG));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let released = Arc::new(Mutex::new(Some(released)));
        let fetch = {
            let released = released.clone();
            move |pages: Pages<Map>| async move {
                pages.publish(|m: &mut Map| {
                    m.insert("a".into(), 1);
                });
                let rx = released.lock().unwrap().take().unwrap();
                rx.await.unwrap();
                // A page read before the write below, showing the old value again.
                pages.publish(|m: &mut Map| {
                    m.insert("a".into(), 1);
                    m.insert("b".into(), 2);
                });
                Ok(Map::from([("a".into(), 1), ("b".into(), 2)]))
            }
        };
        let look = |name: &'static str| move |m: &Map| m.get(name).copied();
        let (a, _) = cache.lookup(key("r"), LONG, fetch, look("a")).await.unwrap();
        assert_eq!(a, Some(1), "answered by the first page, before the list lands");
        let never = |_: Pages<Map>| async { Ok(Map::new()) };
        let missing = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.lookup(key("r"), LONG, never, look("z")).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !missing.is_finished(),
            "no page holds z yet, and the list has not landed"
        );
        cache.update(&key("r"), |m: &mut Map| {
            m.insert("a".into(), 10);
        });
        release.send(()).unwrap();
        assert_eq!(missing.await.unwrap().unwrap().0, None, "the whole list has no z");
        let (a, _) = cache.lookup(key("r"), LONG, never, look("a")).await.unwrap();
        assert_eq!(a, Some(10), "the write holds over the pages read before it");
    }

    type Map = HashMap<String, i32>;

    /// A page-by-page list driven by the test: each message on `pages` is published as one
    /// page; the list lands (with what its pages hold) or fails when the channel says so.
    fn driven(
        pages: tokio::sync::mpsc::UnboundedReceiver<Result<Vec<(&'static str, i32)>, ()>>,
    ) -> impl FnOnce(Pages<Map>) -> BoxFuture<'static, Result<Map, CloudError>> {
        move |p: Pages<Map>| {
            async move {
                let mut pages = pages;
                while let Some(page) = pages.recv().await {
                    match page {
                        Ok(items) => {
                            p.publish(|m: &mut Map| m.extend(items.into_iter().map(|(k, v)| (k.to_string(), v))))
                        }
                        Err(()) => return Err(CloudError::Internal("the list failed".into())),
                    }
                }
                Ok(p.into_listed())
            }
            .boxed()
        }
    }

    /// Counts its calls: a reader recalled.
    fn recall(calls: &Arc<AtomicU32>) -> Recall {
        let calls = calls.clone();
        Box::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// A reader whose item is on a page not read yet does not wait: it is recalled when the
    /// page that holds it comes, and then finds it; a reader whose item no page holds is
    /// recalled when the list lands, and finds that it is not there.
    #[tokio::test]
    async fn a_reader_whose_page_has_not_come_is_recalled_when_it_comes() {
        let cache = Arc::new(SnapshotCache::new(LONG));
        let (pages, rx) = tokio::sync::mpsc::unbounded_channel();
        let look = |name: &'static str| move |m: &Map| m.get(name).copied();
        let unused = |_: Pages<Map>| async { Ok(Map::new()) };
        pages.send(Ok(vec![("a", 1)])).unwrap();
        // The first reader starts the list and waits for its first page, as `lookup` does.
        let first = cache
            .lookup_or_recall(key("r"), LONG, driven(rx), look("a"), Box::new(|| ()))
            .await
            .unwrap();
        assert!(matches!(first, Lookup::Found(Some(1), _)), "the first page holds a");
        let (b_calls, z_calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let b = cache
            .lookup_or_recall(key("r"), LONG, unused, look("b"), recall(&b_calls))
            .await
            .unwrap();
        let z = cache
            .lookup_or_recall(key("r"), LONG, unused, look("z"), recall(&z_calls))
            .await
            .unwrap();
        assert!(
            matches!(b, Lookup::Later) && matches!(z, Lookup::Later),
            "no page holds b or z yet"
        );
        pages.send(Ok(vec![("c", 3)])).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(b_calls.load(Ordering::SeqCst), 0, "the page with c does not hold b");
        pages.send(Ok(vec![("b", 2)])).unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b_calls.load(Ordering::SeqCst), 1, "recalled by the page that holds b");
        assert_eq!(z_calls.load(Ordering::SeqCst), 0, "z is still owed");
        let b = cache
            .lookup_or_recall(key("r"), LONG, unused, look("b"), Box::new(|| ()))
            .await
            .unwrap();
        assert!(
            matches!(b, Lookup::Found(Some(2), _)),
            "back, b is found in the pages read"
        );
        drop(pages);
        let (z, _) = cache.lookup(key("r"), LONG, unused, look("z")).await.unwrap();
        assert_eq!(z, None, "the list landed without z");
        assert_eq!(z_calls.load(Ordering::SeqCst), 1, "recalled once, when the list landed");
        assert_eq!(b_calls.load(Ordering::SeqCst), 1, "b is not recalled twice");
    }

    /// A list that fails recalls the readers it owed a page, and they get the failure of the
    /// list they start next by waiting for it: a failing list is not started again and again
    /// by the readers it recalls.
    #[tokio::test]
    async fn a_failed_list_recalls_its_readers_and_the_next_list_answers_them() {
        let cache = Arc::new(SnapshotCache::new(LONG));
        let (pages, rx) = tokio::sync::mpsc::unbounded_channel();
        let look = |name: &'static str| move |m: &Map| m.get(name).copied();
        pages.send(Ok(vec![("a", 1)])).unwrap();
        cache
            .lookup_or_recall(key("r"), LONG, driven(rx), look("a"), Box::new(|| ()))
            .await
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let unused = |_: Pages<Map>| async { Ok(Map::new()) };
        let b = cache
            .lookup_or_recall(key("r"), LONG, unused, look("b"), recall(&calls))
            .await
            .unwrap();
        assert!(matches!(b, Lookup::Later));
        pages.send(Err(())).unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "recalled when the list failed");
        let (again, rx) = tokio::sync::mpsc::unbounded_channel();
        again.send(Err(())).unwrap();
        let back = cache
            .lookup_or_recall(key("r"), LONG, driven(rx), look("b"), recall(&calls))
            .await;
        assert!(
            back.is_err(),
            "the reader waits for the list it starts, and gets its failure"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "and is not recalled again");
    }

    /// A list that files its pages in [`Pages`] and returns what they hold lands whole, with
    /// a write of ours made while it paged, and keeps no second copy: the pages it held are
    /// what readers get.
    #[tokio::test]
    async fn a_list_made_of_its_published_pages_lands_whole() {
        type Map = HashMap<String, i32>;
        let cache = Arc::new(SnapshotCache::new(LONG));
        let (paged, wait_paged) = tokio::sync::oneshot::channel::<()>();
        let (go_on, wait_go_on) = tokio::sync::oneshot::channel::<()>();
        let fetch = move |pages: Pages<Map>| async move {
            pages.publish(|m: &mut Map| {
                m.insert("a".into(), 1);
            });
            paged.send(()).unwrap();
            wait_go_on.await.unwrap();
            pages.publish(|m: &mut Map| {
                m.insert("b".into(), 2);
            });
            Ok(pages.into_listed())
        };
        let reader = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.lookup(key("r"), LONG, fetch, |m: &Map| m.get("b").copied()).await })
        };
        wait_paged.await.unwrap();
        cache.update(&key("r"), |m: &mut Map| {
            m.insert("a".into(), 10);
        });
        go_on.send(()).unwrap();
        assert_eq!(reader.await.unwrap().unwrap().0, Some(2));
        let whole = cache
            .get::<Map, _, _>(key("r"), LONG, || async { Ok(Map::new()) })
            .await
            .unwrap();
        assert_eq!(*whole, Map::from([("a".into(), 10), ("b".into(), 2)]));
    }

    /// Two readers of one list that disagree on its type are a bug of ours: an error that
    /// says so, never a panic in a reconcile.
    #[tokio::test]
    async fn a_list_read_as_another_type_is_an_error_of_ours() {
        let cache = SnapshotCache::new(LONG);
        cache
            .get::<Vec<i32>, _, _>(key("r"), LONG, || async { Ok(vec![1]) })
            .await
            .unwrap();
        let err = cache
            .get::<String, _, _>(key("r"), LONG, || async { Ok(String::new()) })
            .await
            .unwrap_err();
        assert_eq!(err.class(), crate::cloud::ErrorClass::Internal, "{err}");
        assert!(err.to_string().contains("holds another type"), "{err}");
    }

    /// Lists nobody reads any more (rotated keys, a region no resource names) are dropped.
    #[tokio::test(start_paused = true)]
    async fn lists_nobody_reads_are_forgotten() {
        let cache = SnapshotCache::new(LONG);
        for region in ["a", "b"] {
            cache
                .get(key(region), LONG, || async { Ok::<_, CloudError>(1) })
                .await
                .unwrap();
        }
        tokio::time::advance(UNREAD_FOR / 2).await;
        cache
            .get(key("a"), LONG, || async { Ok::<_, CloudError>(1) })
            .await
            .unwrap();
        tokio::time::advance(UNREAD_FOR / 2 + Duration::from_secs(1)).await;
        cache
            .get(key("c"), LONG, || async { Ok::<_, CloudError>(1) })
            .await
            .unwrap();
        assert_eq!(cache.len(), 2, "b was not read for an hour; a and c were");
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = SnapshotCache::new(LONG);
        let err = cache
            .get::<Vec<i32>, _, _>(key("r"), LONG, || async {
                Err(CloudError::InvalidRequest("boom".into()))
            })
            .await;
        assert!(err.is_err());
        let ok = cache
            .get(key("r"), LONG, || async { Ok::<_, CloudError>(vec![7]) })
            .await
            .unwrap();
        assert_eq!(*ok, vec![7]);
    }

    #[tokio::test]
    async fn the_cap_bounds_every_reader() {
        let cache = SnapshotCache::new(Duration::from_millis(1));
        cache
            .get(key("r"), LONG, || async { Ok::<_, CloudError>(1) })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let v = cache
            .get(key("r"), LONG, || async { Ok::<_, CloudError>(2) })
            .await
            .unwrap();
        assert_eq!(*v, 2);
    }
}
