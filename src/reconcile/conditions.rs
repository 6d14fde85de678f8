//! `Ready` and `Synced` conditions, changed only when something in them changes.

use chrono::{DateTime, Utc};

use super::{Verdict, rfc3339};
use crate::api::{Condition, ResourceStatus};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

fn bool_status(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Sets a condition. `lastTransitionTime` moves only when `status` changes, so a status
/// rewritten with the same facts is byte-identical and triggers nothing.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: DateTime<Utc>,
) {
    let next = |last: String| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: Some(generation),
        last_transition_time: last,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let last = if c.status == status {
                c.last_transition_time.clone()
            } else {
                rfc3339(now)
            };
            *c = next(last);
        }
        None => conditions.push(next(rfc3339(now))),
    }
}

/// Applies a plan's verdict and the sync result to the common status.
pub fn apply(
    status: &mut ResourceStatus,
    verdict: &Verdict,
    synced: Result<(), (&str, &str)>,
    generation: i64,
    now: DateTime<Utc>,
) {
    status.observed_generation = Some(generation);
    set(
        &mut status.conditions,
        READY,
        bool_status(verdict.ready),
        verdict.reason.as_str(),
        &verdict.message,
        generation,
        now,
    );
    match synced {
        Ok(()) => set(
            &mut status.conditions,
            SYNCED,
            "True",
            "ReconcileSuccess",
            "",
            generation,
            now,
        ),
        Err((reason, message)) => set(
            &mut status.conditions,
            SYNCED,
            "False",
            reason,
            message,
            generation,
            now,
        ),
    }
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Reason;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let t1 = t0 + chrono::Duration::minutes(5);
        let t2 = t0 + chrono::Duration::minutes(10);
        let mut s = ResourceStatus::default();
        apply(&mut s, &Verdict::not_ready(Reason::Applying, "a"), Ok(()), 1, t0);
        let ready = |s: &ResourceStatus| s.condition(READY).unwrap().clone();
        assert_eq!(ready(&s).last_transition_time, "2026-11-22T10:00:00Z");
        apply(&mut s, &Verdict::not_ready(Reason::Throttled, "b"), Ok(()), 2, t1);
        assert_eq!(ready(&s).last_transition_time, "2026-11-22T10:00:00Z");
        assert_eq!(ready(&s).reason, "Throttled");
        assert_eq!(ready(&s).observed_generation, Some(2));
        apply(&mut s, &Verdict::ready(Reason::InSync, ""), Ok(()), 2, t2);
        assert_eq!(ready(&s).last_transition_time, "2026-11-22T10:10:00Z");
        let before = s.clone();
        apply(
            &mut s,
            &Verdict::ready(Reason::InSync, ""),
            Ok(()),
            2,
            t2 + chrono::Duration::hours(1),
        );
        assert_eq!(s, before, "same facts, same status");
        apply(
            &mut s,
            &Verdict::ready(Reason::InSync, ""),
            Err(("Throttled", "slow down")),
            2,
            t2,
        );
        assert_eq!(s.condition(SYNCED).unwrap().status, "False");
    }
}
