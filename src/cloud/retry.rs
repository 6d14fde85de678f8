//! Backoff for retried cloud calls: exponential, full jitter, bounded in attempts and time.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts once this much time has passed since the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before retry number `retry` (1 for the first retry):
    /// `min(max_delay, base_delay * 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1).min(20));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// A delay drawn uniformly from `[0, ceiling(retry)]` ("full jitter"), so that many
    /// clients throttled together do not retry together.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ceiling_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(2), Duration::from_millis(400));
        assert_eq!(p.ceiling(5), Duration::from_millis(3200));
        assert_eq!(p.ceiling(7), Duration::from_secs(10));
        assert_eq!(p.ceiling(1000), Duration::from_secs(10));
    }

    #[test]
    fn jittered_delays_stay_within_bounds_and_spread() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 1..10 {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = p.delay(retry, &mut rng);
                assert!(d <= p.ceiling(retry), "{d:?} > {:?}", p.ceiling(retry));
                seen.insert(d.as_micros() * 10 / p.ceiling(retry).as_micros().max(1));
            }
            // Full jitter spreads over the whole range, not a narrow band near the ceiling.
            assert!(seen.len() >= 8, "retry {retry}: only {} deciles hit", seen.len());
        }
    }
}
