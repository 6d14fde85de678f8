//! Client-side rate limits, so the operator stays inside the cloud's quotas instead of
//! discovering them through `Throttling` errors.
//!
//! - A token bucket per (credential set, product, region), with configurable QPS and burst;
//!   the set is the AccessKeyId plus a digest of its secret (`Credentials::account_key`).
//! - Per-account windows for actions with a documented quota, such as ModifyImageShareStatus
//!   ("10 times per minute per account"). A window is exact: never more than `count` calls
//!   in any `window`, which a bucket cannot promise.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::Mutex;
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

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<(String, Product, String), Bucket>>,
    windows: Mutex<HashMap<(String, &'static str), VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            config,
            buckets: Default::default(),
            windows: Default::default(),
        }
    }

    /// Waits until a call may be sent. Slots are reserved in arrival order, so waiting
    /// callers are served first come, first served.
    pub async fn acquire(&self, account: &str, product: Product, region: &str, action: &'static str) {
        let wait = self.reserve(account, product, region, action).await;
        if !wait.is_zero() {
            tracing::debug!(%product, action, wait_ms = wait.as_millis() as u64, "client-side rate limit");
            tokio::time::sleep(wait).await;
        }
    }

    async fn reserve(&self, account: &str, product: Product, region: &str, action: &'static str) -> Duration {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        if self.config.qps > 0.0 {
            let mut buckets = self.buckets.lock().await;
            let burst = f64::from(self.config.burst.max(1));
            let bucket = buckets
                .entry((account.to_string(), product, region.to_string()))
                .or_insert(Bucket {
                    tokens: burst,
                    updated: now,
                });
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * self.config.qps).min(burst);
            bucket.updated = now;
            bucket.tokens -= 1.0;
            if bucket.tokens < 0.0 {
                wait = Duration::from_secs_f64(-bucket.tokens / self.config.qps);
            }
        }
        if let Some(quota) = self.config.action_quotas.iter().find(|q| q.action == action) {
            let mut windows = self.windows.lock().await;
            let slots = windows.entry((account.to_string(), quota.action)).or_default();
            let earliest = now + wait;
            while slots.front().is_some_and(|t| *t + quota.window <= earliest) {
                slots.pop_front();
            }
            let at = if slots.len() < quota.count {
                earliest
            } else {
                let freed = slots[slots.len() - quota.count] + quota.window;
                freed.max(earliest)
            };
            slots.push_back(at);
            wait = at.saturating_duration_since(now);
        }
        wait
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

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_paces_at_qps() {
        let l = limiter(2.0, 3, vec![]);
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(l.reserve("ak", Product::Ecd, "cn-hangzhou", "DescribeDesktops").await);
        }
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(500));
        assert_eq!(waits[4], Duration::from_millis(1000));
        assert_eq!(waits[5], Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_separate_per_key_product_and_region() {
        let l = limiter(1.0, 1, vec![]);
        assert_eq!(l.reserve("ak", Product::Ecd, "r1", "A").await, Duration::ZERO);
        assert_eq!(l.reserve("ak", Product::Ecd, "r2", "A").await, Duration::ZERO);
        assert_eq!(l.reserve("ak", Product::SwasOpen, "r1", "A").await, Duration::ZERO);
        assert_eq!(l.reserve("other", Product::Ecd, "r1", "A").await, Duration::ZERO);
        assert_eq!(l.reserve("ak", Product::Ecd, "r1", "A").await, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn action_window_never_exceeds_its_count() {
        let quota = ActionQuota {
            action: "ModifyImageShareStatus",
            count: 10,
            window: Duration::from_secs(60),
        };
        let l = limiter(0.0, 1, vec![quota]);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            let w = l.reserve("ak", Product::SwasOpen, "r", "ModifyImageShareStatus").await;
            times.push(start + w);
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 10, "call {i}: {in_window} calls in the minute from it");
        }
        assert_eq!(times[9], start);
        assert_eq!(times[10], start + Duration::from_secs(60));
        assert_eq!(times[20], start + Duration::from_secs(120));
        // Other actions are not held back by the quota.
        assert_eq!(
            l.reserve("ak", Product::SwasOpen, "r", "ListCustomImages").await,
            Duration::ZERO
        );
    }
}
