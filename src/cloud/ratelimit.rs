//! Client-side rate limits, so the operator stays inside the cloud's quotas instead of
//! discovering them through `Throttling` errors.
//!
//! - A token bucket per (credential set, product, region), with configurable QPS and burst;
//!   the set is the AccessKeyId plus a digest of its secret (`Credentials::account_key`).
//! - Per-account lanes for actions with a documented quota, such as ModifyImageShareStatus
//!   ("10 times per minute per account"). A lane is exact: never more than `count` calls in
//!   any `window`, which a bucket cannot promise. A call counts from when it is sent and,
//!   once answered, from its answer, which is never earlier than the cloud received it.
//!
//! Callers that name a *holder* (the operator names the resource) never wait long: when the
//! bucket or the quota has no room, they get a [`Deferral`] that says when to come back, and
//! the holder keeps its place in a first-come, first-served queue. A reconcile therefore
//! never holds a worker while it waits for quota. Callers without a holder (the `call` CLI)
//! wait in place.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::endpoint::Product;

#[derive(Clone, Debug)]
pub struct ActionQuota {
    pub action: &'static str,
    pub count: usize,
    pub window: Duration,
}

#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// Requests per second per (credential set, product, region); 0 turns the bucket off.
    pub qps: f64,
    pub burst: u32,
    pub action_quotas: Vec<ActionQuota>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            qps: 10.0,
            burst: 20,
            action_quotas: vec![ActionQuota {
                action: "ModifyImageShareStatus",
                count: 10,
                window: Duration::from_secs(60),
            }],
        }
    }
}

/// The longest a holder waits in place for the bucket; a longer wait is a [`Deferral`].
pub const INLINE_WAIT: Duration = Duration::from_secs(1);
/// An admitted holder that has not sent its call within this long gives its slot back.
const ADMISSION_TTL: Duration = Duration::from_secs(30);
/// A waiting holder that has not come back this long after its turn loses its place.
const ABANDONED_AFTER: Duration = Duration::from_secs(120);

/// Why a call is not sent now, and when to try again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    pub action: &'static str,
    pub retry_after: Duration,
    /// For people: stays the same while the holder waits for the same turn, so a status
    /// that quotes it is not rewritten on every visit.
    pub reason: String,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, qps: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * qps).min(burst);
        self.updated = now;
    }

    /// How long until a token is free, counting the tokens already promised.
    fn wait(&self, qps: f64) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / qps)
        }
    }
}

/// A quota'd call that was counted; its time moves to the answer with [`RateLimiter::answered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    lane: usize,
    id: u64,
}

#[derive(Default)]
struct Lane {
    /// Calls counted in the window: (ticket id, send or answer time).
    sent: Vec<(u64, Instant)>,
    /// Holders given a slot that have not sent yet, with when.
    admitted: HashMap<String, Instant>,
    /// Holders waiting for a slot, in arrival order, with the turn promised to each.
    waiting: VecDeque<(String, Instant, DateTime<Utc>)>,
}

impl Lane {
    fn prune(&mut self, now: Instant, window: Duration) {
        self.sent.retain(|(_, t)| *t + window > now);
        self.admitted
            .retain(|_, t| now.saturating_duration_since(*t) < ADMISSION_TTL);
        self.waiting
            .retain(|(_, promised, _)| now < *promised + ABANDONED_AFTER);
    }

    fn used(&self) -> usize {
        self.sent.len() + self.admitted.len()
    }

    /// When the `k`-th slot frees (0 = the next one) after the `ahead` holders in front
    /// take the free slots now.
    fn estimate(&self, k: usize, ahead: usize, now: Instant, window: Duration) -> Instant {
        let mut frees: Vec<Instant> = self.sent.iter().map(|(_, t)| *t + window).collect();
        frees.extend(self.admitted.values().map(|_| now + window));
        frees.extend(std::iter::repeat_n(now + window, ahead));
        frees.sort();
        if frees.is_empty() {
            return now;
        }
        let rounds = u32::try_from(k / frees.len()).unwrap_or(u32::MAX);
        frees[k % frees.len()] + window.saturating_mul(rounds)
    }

    /// Gives `holder` a slot now, or its place in the queue and a promised turn.
    fn admit(&mut self, holder: &str, quota: &ActionQuota, now: Instant) -> Result<(), (Instant, DateTime<Utc>)> {
        if self.admitted.contains_key(holder) {
            return Ok(());
        }
        let free = quota.count.saturating_sub(self.used());
        let pos = self.waiting.iter().position(|(h, ..)| h == holder);
        let turn = pos.unwrap_or(self.waiting.len());
        if turn < free {
            if let Some(p) = pos {
                self.waiting.remove(p);
            }
            self.admitted.insert(holder.to_string(), now);
            return Ok(());
        }
        let promise = |lane: &Lane| {
            let at = lane.estimate(turn - free, free, now, quota.window);
            (at, wall_clock(at, now))
        };
        match pos {
            // The promise stands while it is in the future.
            Some(p) if self.waiting[p].1 > now => Err((self.waiting[p].1, self.waiting[p].2)),
            Some(p) => {
                let (at, wall) = promise(self);
                self.waiting[p].1 = at;
                self.waiting[p].2 = wall;
                Err((at, wall))
            }
            None => {
                let (at, wall) = promise(self);
                self.waiting.push_back((holder.to_string(), at, wall));
                Err((at, wall))
            }
        }
    }

    /// The earliest a call could be counted without a holder.
    fn free_at(&self, quota: &ActionQuota, now: Instant) -> Option<Instant> {
        (self.used() >= quota.count).then(|| self.estimate(0, 0, now, quota.window))
    }
}

/// The wall-clock time of `at`, rounded up to the second (it goes into messages).
fn wall_clock(at: Instant, now: Instant) -> DateTime<Utc> {
    let t = Utc::now() + chrono::Duration::from_std(at.saturating_duration_since(now)).unwrap_or_default();
    let whole = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(whole, 0).unwrap_or(t)
}

pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<(String, Product, String), Bucket>>,
    lanes: Mutex<HashMap<(String, &'static str), Lane>>,
    tickets: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimiter")
    }
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            config,
            buckets: Default::default(),
            lanes: Default::default(),
            tickets: Default::default(),
        }
    }

    /// The lane of `account` for `action`. A new lane first forgets the lanes that hold
    /// nothing any more (no call in the window, no admission, nobody waiting): an account
    /// that stops writing leaves nothing behind.
    fn lane<'a>(
        &self,
        lanes: &'a mut HashMap<(String, &'static str), Lane>,
        account: &str,
        action: &'static str,
        now: Instant,
    ) -> &'a mut Lane {
        let key = (account.to_string(), action);
        if !lanes.contains_key(&key) {
            lanes.retain(|(_, action), lane| {
                let window = self.quota(action).map_or(Duration::ZERO, |(_, q)| q.window);
                lane.prune(now, window);
                !(lane.sent.is_empty() && lane.admitted.is_empty() && lane.waiting.is_empty())
            });
        }
        lanes.entry(key).or_default()
    }

    /// How many buckets and lanes the limiter holds (they are forgotten once idle).
    pub fn held(&self) -> (usize, usize) {
        (
            self.buckets.lock().expect("bucket lock").len(),
            self.lanes.lock().expect("lane lock").len(),
        )
    }

    fn quota(&self, action: &str) -> Option<(usize, &ActionQuota)> {
        self.config
            .action_quotas
            .iter()
            .enumerate()
            .find(|(_, q)| q.action == action)
    }

    /// Takes a bucket token (when `take`), or says how long until one is free when that is
    /// longer than `max_wait` (then nothing is taken). Returns the wait before sending.
    fn bucket(
        &self,
        account: &str,
        product: Product,
        region: &str,
        max_wait: Option<Duration>,
        take: bool,
    ) -> Result<Duration, Duration> {
        if self.config.qps <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let now = Instant::now();
        let burst = f64::from(self.config.burst.max(1));
        let mut buckets = self.buckets.lock().expect("bucket lock");
        let key = (account.to_string(), product, region.to_string());
        if !buckets.contains_key(&key) {
            // A bucket idle long enough to be full is the same as a new one: forget it, so
            // credentials that come and go (STS keys rotate at every refresh) leave nothing.
            let full_after = Duration::from_secs_f64(burst / self.config.qps);
            buckets.retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.refill(now, self.config.qps, burst);
        let wait = bucket.wait(self.config.qps);
        if max_wait.is_some_and(|m| wait > m) {
            return Err(wait);
        }
        if take {
            bucket.tokens -= 1.0;
        }
        Ok(wait)
    }

    fn take_token(
        &self,
        account: &str,
        product: Product,
        region: &str,
        max_wait: Option<Duration>,
    ) -> Result<Duration, Duration> {
        self.bucket(account, product, region, max_wait, true)
    }

    fn bucket_deferral(&self, action: &'static str, wait: Duration) -> Deferral {
        Deferral {
            action,
            retry_after: wait,
            reason: format!(
                "{action}: the operator paces this account's requests at {} a second, and earlier requests are \
                 queued; trying again shortly",
                self.config.qps
            ),
        }
    }

    fn quota_deferral(quota: &ActionQuota, (at, wall): (Instant, DateTime<Utc>)) -> Deferral {
        Deferral {
            action: quota.action,
            retry_after: at.saturating_duration_since(Instant::now()),
            reason: format!(
                "{}: the cloud allows {} calls per {} s per account, and this account's are used up; this write \
                 waits its turn and is sent at about {}",
                quota.action,
                quota.count,
                quota.window.as_secs(),
                wall.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        }
    }

    /// Whether `holder` may send `action` now. When it may, a quota slot is kept for it
    /// (for [`ADMISSION_TTL`]); when not, it keeps its place in the queue and learns when
    /// to come back. Nothing is sent and no bucket token is taken.
    pub fn admit(
        &self,
        holder: &str,
        account: &str,
        product: Product,
        region: &str,
        action: &'static str,
    ) -> Result<(), Deferral> {
        self.bucket(account, product, region, Some(INLINE_WAIT), false)
            .map_err(|wait| self.bucket_deferral(action, wait))?;
        let Some((index, quota)) = self.quota(action) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut lanes = self.lanes.lock().expect("lane lock");
        let lane = self.lane(&mut lanes, account, self.config.action_quotas[index].action, now);
        lane.prune(now, quota.window);
        lane.admit(holder, quota, now)
            .map_err(|p| Self::quota_deferral(quota, p))
    }

    /// Counts a call about to be sent. With a holder it never waits longer than
    /// [`INLINE_WAIT`]: it is a [`Deferral`] instead. Without one it waits as long as needed.
    /// Pass the ticket to [`RateLimiter::answered`] once the call is answered.
    pub async fn acquire(
        &self,
        holder: Option<&str>,
        account: &str,
        product: Product,
        region: &str,
        action: &'static str,
    ) -> Result<Option<Ticket>, Deferral> {
        let max_wait = holder.map(|_| INLINE_WAIT);
        let wait = self
            .take_token(account, product, region, max_wait)
            .map_err(|w| self.bucket_deferral(action, w))?;
        if !wait.is_zero() {
            tracing::debug!(%product, action, wait_ms = wait.as_millis() as u64, "client-side rate limit");
            tokio::time::sleep(wait).await;
        }
        let Some((index, quota)) = self.quota(action) else {
            return Ok(None);
        };
        loop {
            let now = Instant::now();
            let retry_at = {
                let mut lanes = self.lanes.lock().expect("lane lock");
                let lane = self.lane(&mut lanes, account, quota.action, now);
                lane.prune(now, quota.window);
                let admitted = match holder {
                    Some(h) => {
                        lane.admit(h, quota, now).map_err(|p| Self::quota_deferral(quota, p))?;
                        lane.admitted.remove(h);
                        // Admitted slots of others are promised; only sent calls count here.
                        (lane.sent.len() < quota.count)
                            .then_some(())
                            .ok_or_else(|| lane.sent.iter().map(|(_, t)| *t + quota.window).min().unwrap_or(now))
                    }
                    None => lane.free_at(quota, now).map_or(Ok(()), Err),
                };
                match admitted {
                    Ok(()) => {
                        let id = self.tickets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        lane.sent.push((id, now));
                        return Ok(Some(Ticket { lane: index, id }));
                    }
                    Err(at) => at,
                }
            };
            if holder.is_some() {
                return Err(Self::quota_deferral(quota, (retry_at, wall_clock(retry_at, now))));
            }
            tracing::debug!(
                action,
                wait_ms = retry_at.saturating_duration_since(now).as_millis() as u64,
                "waiting for the action's quota"
            );
            tokio::time::sleep_until(retry_at).await;
        }
    }

    /// The call of `ticket` was answered (or failed): from now on it counts from this
    /// moment, which is no earlier than when the cloud counted it.
    pub fn answered(&self, account: &str, ticket: Ticket) {
        let Some(quota) = self.config.action_quotas.get(ticket.lane) else {
            return;
        };
        let mut lanes = self.lanes.lock().expect("lane lock");
        if let Some(lane) = lanes.get_mut(&(account.to_string(), quota.action))
            && let Some(entry) = lane.sent.iter_mut().find(|(id, _)| *id == ticket.id)
        {
            entry.1 = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(qps: f64, burst: u32, quotas: Vec<ActionQuota>) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            qps,
            burst,
            action_quotas: quotas,
        })
    }

    fn share_quota() -> ActionQuota {
        ActionQuota {
            action: "ModifyImageShareStatus",
            count: 10,
            window: Duration::from_secs(60),
        }
    }

    const SHARE: &str = "ModifyImageShareStatus";

    /// Keys that come and go (STS keys rotate at every refresh) leave no bucket and no lane
    /// behind once they are idle: what a new key would get is what is forgotten.
    #[tokio::test(start_paused = true)]
    async fn idle_buckets_and_lanes_are_forgotten() {
        let l = limiter(10.0, 20, vec![share_quota()]);
        for i in 0..50 {
            let account = format!("STS.key-{i}");
            l.acquire(Some("holder"), &account, Product::SwasOpen, "cn-hangzhou", SHARE)
                .await
                .unwrap();
            tokio::time::advance(Duration::from_secs(61)).await;
        }
        assert_eq!(l.held(), (1, 1), "only the last key's bucket and lane remain");
        // A lane that still counts a call in its window is kept.
        l.acquire(Some("holder"), "busy", Product::SwasOpen, "cn-hangzhou", SHARE)
            .await
            .unwrap();
        l.acquire(Some("holder"), "other", Product::SwasOpen, "cn-hangzhou", SHARE)
            .await
            .unwrap();
        assert_eq!(
            l.held().1,
            2,
            "STS.key-49's lane is idle; busy's and other's count a call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_paces_at_qps() {
        let l = limiter(2.0, 3, vec![]);
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..6 {
            l.acquire(None, "ak", Product::Ecd, "cn-hangzhou", "DescribeDesktops")
                .await
                .unwrap();
            sent.push(start.elapsed());
        }
        assert_eq!(&sent[..3], &[Duration::ZERO; 3]);
        assert_eq!(sent[3], Duration::from_millis(500));
        assert_eq!(sent[4], Duration::from_millis(1000));
        assert_eq!(sent[5], Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_separate_per_key_product_and_region() {
        let l = limiter(1.0, 1, vec![]);
        assert_eq!(l.take_token("ak", Product::Ecd, "r1", None), Ok(Duration::ZERO));
        assert_eq!(l.take_token("ak", Product::Ecd, "r2", None), Ok(Duration::ZERO));
        assert_eq!(l.take_token("ak", Product::SwasOpen, "r1", None), Ok(Duration::ZERO));
        assert_eq!(l.take_token("other", Product::Ecd, "r1", None), Ok(Duration::ZERO));
        assert_eq!(l.take_token("ak", Product::Ecd, "r1", None), Ok(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_is_deferred_instead_of_waiting_for_the_bucket() {
        let l = limiter(1.0, 1, vec![]);
        l.acquire(Some("a"), "ak", Product::Ecd, "r", "UpdateFotaTask")
            .await
            .unwrap();
        // One second to the next token: waited in place.
        let started = Instant::now();
        l.acquire(Some("b"), "ak", Product::Ecd, "r", "UpdateFotaTask")
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // Two promised tokens ahead: more than INLINE_WAIT, so deferred, and nothing is taken.
        l.take_token("ak", Product::Ecd, "r", None).unwrap();
        let d = l
            .acquire(Some("c"), "ak", Product::Ecd, "r", "UpdateFotaTask")
            .await
            .unwrap_err();
        assert_eq!(d.retry_after, Duration::from_secs(2));
        assert!(l.admit("c", "ak", Product::Ecd, "r", "UpdateFotaTask").is_err());
        // Another account is not held back.
        assert!(l.admit("c", "other", Product::Ecd, "r", "UpdateFotaTask").is_ok());
    }

    /// The quota is exact however late the answers come: a call counts until a full window
    /// after its answer.
    #[tokio::test(start_paused = true)]
    async fn a_quota_lane_never_exceeds_its_count_in_any_window() {
        let l = limiter(0.0, 1, vec![share_quota()]);
        let start = Instant::now();
        let mut counted: Vec<Instant> = Vec::new();
        for i in 0..25 {
            let t = l
                .acquire(None, "ak", Product::SwasOpen, "r", SHARE)
                .await
                .unwrap()
                .unwrap();
            // Every third answer takes 7 s to come back.
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_secs(7)).await;
            }
            l.answered("ak", t);
            counted.push(Instant::now());
        }
        for (i, t) in counted.iter().enumerate() {
            let in_window = counted
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 10, "call {i}: {in_window} answers in the minute from it");
        }
        assert!(start.elapsed() >= Duration::from_secs(120));
        // Other actions are not held back by the quota.
        assert_eq!(
            l.acquire(None, "ak", Product::SwasOpen, "r", "ListCustomImages").await,
            Ok(None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn holders_wait_their_turn_outside_the_call_first_come_first_served() {
        let l = limiter(0.0, 1, vec![share_quota()]);
        for i in 0..10 {
            let t = l
                .acquire(Some(&format!("h{i}")), "ak", Product::SwasOpen, "r", SHARE)
                .await
                .unwrap()
                .unwrap();
            l.answered("ak", t);
        }
        // The quota is used up: the next holders are deferred at once, in order, and the
        // promise to each stays the same when it asks again early.
        let late: Vec<Deferral> = (10..25)
            .map(|i| {
                l.admit(&format!("h{i}"), "ak", Product::SwasOpen, "r", SHARE)
                    .unwrap_err()
            })
            .collect();
        assert_eq!(late[0].retry_after, Duration::from_secs(60));
        assert_eq!(late[9].retry_after, Duration::from_secs(60));
        assert_eq!(late[10].retry_after, Duration::from_secs(120));
        assert!(late[0].reason.contains("10 calls per 60 s"), "{}", late[0].reason);
        let again = l.admit("h12", "ak", Product::SwasOpen, "r", SHARE).unwrap_err();
        assert_eq!(again.reason, late[2].reason);
        // A newcomer queues behind them even when it asks at the moment a slot frees.
        tokio::time::advance(Duration::from_secs(60)).await;
        let newcomer = l.admit("new", "ak", Product::SwasOpen, "r", SHARE).unwrap_err();
        assert!(newcomer.retry_after >= Duration::from_secs(60), "{newcomer:?}");
        for i in 10..20 {
            l.admit(&format!("h{i}"), "ak", Product::SwasOpen, "r", SHARE).unwrap();
        }
        assert!(l.admit("h20", "ak", Product::SwasOpen, "r", SHARE).is_err());
        // Admitted holders send without waiting.
        for i in 10..20 {
            l.acquire(Some(&format!("h{i}")), "ak", Product::SwasOpen, "r", SHARE)
                .await
                .unwrap();
        }
        // Another account has its own lane.
        assert!(l.admit("h99", "other", Product::SwasOpen, "r", SHARE).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_never_comes_back_gives_its_place_up() {
        let l = limiter(0.0, 1, vec![share_quota()]);
        for i in 0..10 {
            l.admit(&format!("h{i}"), "ak", Product::SwasOpen, "r", SHARE).unwrap();
        }
        assert!(l.admit("gone", "ak", Product::SwasOpen, "r", SHARE).is_err());
        // The admitted ones never sent: their slots return after ADMISSION_TTL, and the
        // waiting one that never came back is dropped after its turn.
        tokio::time::advance(ADMISSION_TTL + ABANDONED_AFTER + Duration::from_secs(60)).await;
        assert!(l.admit("next", "ak", Product::SwasOpen, "r", SHARE).is_ok());
    }
}
