//! Injected faults: make the next N calls of an action fail, fail at random, or slow down;
//! or apply the call and then lose its answer, as a timeout or a proxy's 5xx does.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::error::ApiFailure;

/// A fault for one action (`*` for every action), as `POST /_emulator/faults` takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    pub action: String,
    /// Error code to answer with; with `throttle: true` it defaults to `Throttling.User`.
    #[serde(default)]
    pub code: Option<String>,
    /// HTTP status of the error (default 400, or 503 for `ServiceUnavailable`).
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
    /// Shorthand for a `Throttling.User` error.
    #[serde(default)]
    pub throttle: bool,
    /// Fail only the next N matching calls.
    #[serde(default)]
    pub count: Option<u64>,
    /// Fail each matching call with this probability (0..=1).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Added latency before answering, in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Apply the call first, then answer with the error (or only after `latencyMs`, to run
    /// past the client's timeout): the write took effect but its answer is lost.
    #[serde(default)]
    pub after_apply: bool,
}

/// The most latency one fault may add: ten minutes.
pub const MAX_LATENCY_MS: u64 = 600_000;

impl Fault {
    pub fn validate(&self) -> Result<(), String> {
        if self.action.is_empty() {
            return Err("action: must name an action or \"*\"".into());
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probability: {p} is not between 0 and 1"));
        }
        if let Some(ms) = self.latency_ms
            && ms > MAX_LATENCY_MS
        {
            return Err(format!("latencyMs: {ms} is more than {MAX_LATENCY_MS} (10 minutes)"));
        }
        if self.count == Some(0) {
            return Err("count: must be at least 1 (leave it out for no limit)".into());
        }
        if self.code.is_none() && !self.throttle && self.latency_ms.is_none() {
            if self.after_apply {
                return Err("afterApply: needs a code (an error answer) or latencyMs (no answer in time)".into());
            }
            return Err("a fault needs a code, throttle: true, or latencyMs".into());
        }
        if let Some(s) = self.status
            && !(400..=599).contains(&s)
            && s != 200
        {
            return Err(format!(
                "status: {s} is not an HTTP error status (400-599), nor 200 (an error Code inside a success answer)"
            ));
        }
        Ok(())
    }

    fn error(&self) -> Option<ApiFailure> {
        let code = match (&self.code, self.throttle) {
            (Some(c), _) => c.clone(),
            (None, true) => "Throttling.User".to_string(),
            (None, false) => return None,
        };
        let default_status = if code == "ServiceUnavailable" {
            503
        } else if code == "InternalError" {
            500
        } else {
            400
        };
        let message = self
            .message
            .clone()
            .unwrap_or_else(|| format!("Injected fault {code}."));
        Some(ApiFailure::new(self.status.unwrap_or(default_status), &code, message))
    }
}

/// What the faults decide for one call.
#[derive(Debug, Default)]
pub struct Outcome {
    pub latency: Duration,
    pub error: Option<ApiFailure>,
    /// Apply the call before the latency and the error: the answer is lost, not the write.
    pub after_apply: bool,
}

#[derive(Debug, Default)]
pub struct Faults {
    active: Vec<Fault>,
}

impl Faults {
    pub fn add(&mut self, f: Fault) {
        self.active.push(f);
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    pub fn list(&self) -> &[Fault] {
        &self.active
    }

    /// Applies the faults to a call of `action`, using up counted ones.
    pub fn apply(&mut self, action: &str) -> Outcome {
        let mut out = Outcome::default();
        let mut rng = rand::rng();
        for f in self.active.iter_mut().filter(|f| f.action == action || f.action == "*") {
            if let Some(ms) = f.latency_ms {
                out.latency = out.latency.saturating_add(Duration::from_millis(ms));
            }
            if out.error.is_some() {
                continue;
            }
            let hit = f.probability.is_none_or(|p| rng.random_bool(p));
            if !hit {
                continue;
            }
            let err = f.error();
            let fired = f.after_apply || err.is_some();
            out.after_apply |= f.after_apply;
            if err.is_some() {
                out.error = err;
            }
            if fired && let Some(n) = f.count.as_mut() {
                *n -= 1;
            }
        }
        self.active.retain(|f| f.count != Some(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: serde_json::Value) -> Fault {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn counted_faults_run_out() {
        let mut faults = Faults::default();
        faults.add(fault(
            serde_json::json!({"action": "DescribeDesktops", "code": "ServiceUnavailable", "count": 2}),
        ));
        assert_eq!(faults.apply("DescribeDesktops").error.unwrap().status.as_u16(), 503);
        assert!(faults.apply("UpdateFotaTask").error.is_none());
        assert!(faults.apply("DescribeDesktops").error.is_some());
        assert!(faults.apply("DescribeDesktops").error.is_none());
        assert!(faults.list().is_empty());
    }

    #[test]
    fn after_apply_faults_are_counted_and_need_an_effect() {
        let mut faults = Faults::default();
        faults.add(fault(
            serde_json::json!({"action": "ApproveOtaTask", "afterApply": true, "latencyMs": 50, "count": 1}),
        ));
        let out = faults.apply("ApproveOtaTask");
        assert!(out.after_apply && out.error.is_none());
        assert_eq!(out.latency, Duration::from_millis(50));
        assert!(!faults.apply("ApproveOtaTask").after_apply, "count used up");
        let e = fault(serde_json::json!({"action": "A", "afterApply": true}))
            .validate()
            .unwrap_err();
        assert!(e.starts_with("afterApply"), "{e}");
    }

    #[test]
    fn throttle_shorthand_and_latency() {
        let mut faults = Faults::default();
        faults.add(fault(
            serde_json::json!({"action": "*", "throttle": true, "latencyMs": 5}),
        ));
        let out = faults.apply("ListCustomImages");
        assert_eq!(out.error.unwrap().code, "Throttling.User");
        assert_eq!(out.latency, Duration::from_millis(5));
    }

    #[test]
    fn probability_zero_never_fires_and_validation_names_fields() {
        let mut faults = Faults::default();
        faults.add(fault(
            serde_json::json!({"action": "A", "code": "X", "probability": 0.0}),
        ));
        for _ in 0..100 {
            assert!(faults.apply("A").error.is_none());
        }
        assert!(
            fault(serde_json::json!({"action": "A", "code": "X", "probability": 2.0}))
                .validate()
                .unwrap_err()
                .starts_with("probability")
        );
        assert!(fault(serde_json::json!({"action": "A"})).validate().is_err());
        assert!(serde_json::from_value::<Fault>(serde_json::json!({"action": "A", "cod": "X"})).is_err());
    }
}
