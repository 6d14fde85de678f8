//! FotaTaskPolicy: which tasks to switch, and when the global switch is in the way.

use chrono::{DateTime, Utc};

use super::{Outcome, PlanContext, Reason, VERIFY_AFTER, Verdict, rfc3339};
use crate::api::fota::{FotaTaskPolicySpec, FotaTaskPolicyStatus, ObservedTask, WrittenStatus};
use crate::cloud::ops::ecd::FotaTask;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTask {
    pub task_uid: String,
    /// `Running` or `Pending`.
    pub user_status: String,
}

/// Another FotaTaskPolicy for the same region and account.
#[derive(Clone, Debug)]
pub struct Peer {
    /// `namespace/name`: the tie-break between policies created at the same instant.
    pub key: String,
    /// How a conflict message names it (another namespace's policy is not named).
    pub shown_as: String,
    pub created: DateTime<Utc>,
    pub auto_push: bool,
    pub task_uids: Option<Vec<String>>,
}

impl Peer {
    fn covers(&self, task_uid: &str) -> bool {
        self.task_uids.as_ref().is_none_or(|u| u.iter().any(|t| t == task_uid))
    }
}

pub struct FotaInput<'a> {
    pub spec: &'a FotaTaskPolicySpec,
    /// This policy's `namespace/name` and creation time (older policies win conflicts).
    pub key: &'a str,
    pub created: DateTime<Utc>,
    pub peers: &'a [Peer],
    /// Every task of the region, as listed.
    pub tasks: &'a [FotaTask],
    pub previous: &'a FotaTaskPolicyStatus,
}

fn user_status(auto_push: bool) -> &'static str {
    if auto_push { "Running" } else { "Pending" }
}

pub fn plan(input: &FotaInput<'_>, ctx: &PlanContext) -> Outcome<UpdateTask, FotaTaskPolicyStatus> {
    let spec = input.spec;
    let desired = user_status(spec.auto_push);
    let wanted: Option<Vec<&str>> = spec
        .task_uids
        .as_ref()
        .map(|u| u.iter().map(|t| t.0.as_str()).collect());
    let matched: Vec<&FotaTask> = input
        .tasks
        .iter()
        .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&t.task_uid.as_str())))
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .flatten()
        .filter(|u| !input.tasks.iter().any(|t| t.task_uid == **u))
        .copied()
        .collect();

    let same_generation = input.previous.common.observed_generation == Some(ctx.generation);
    let mut actions = Vec::new();
    let mut conflicts = Vec::new();
    let mut held = Vec::new();
    let mut drift = Vec::new();
    let mut unknown = Vec::new();
    let mut tasks = Vec::new();
    for t in &matched {
        let previous = input.previous.tasks.iter().find(|p| p.task_uid == t.task_uid);
        let mut observed = ObservedTask {
            task_uid: t.task_uid.clone(),
            app_version: t.app_version.clone(),
            publish_time: t.publish_time.clone(),
            status: t.status.clone(),
            written: None,
        };
        // An older policy that wants the other state wins; this one stands back.
        if let Some(p) = input.peers.iter().find(|p| {
            (p.created, p.key.as_str()) < (input.created, input.key)
                && p.covers(&t.task_uid)
                && p.auto_push != spec.auto_push
        }) {
            conflicts.push(format!("{} (task {})", p.shown_as, t.task_uid));
            tasks.push(observed);
            continue;
        }
        let state = t.push_state();
        if state != Some(desired) {
            let written_at: Option<DateTime<Utc>> = previous
                .and_then(|p| p.written.as_ref())
                .filter(|w| w.user_status == desired)
                .and_then(|w| w.at.parse().ok());
            // "Recently" must cover the look that follows a write, which comes at the
            // resync at the latest: with its jitter, and a second for the reconcile itself.
            let look_after_write =
                super::duration::latest_resync(ctx.resync).saturating_add(std::time::Duration::from_secs(1));
            let recently_written = same_generation
                && written_at
                    .is_some_and(|at| ctx.now - at < chrono::Duration::from_std(look_after_write).unwrap_or_default());
            if state.is_none() && recently_written {
                // The answer does not say Running or Pending: written once, then left until
                // the resync, rather than written at every look.
                unknown.push(format!("{} ({:?})", t.task_uid, t.status));
                observed.written = previous.and_then(|p| p.written.clone());
            } else if desired == "Pending" && state == Some("Running") && recently_written {
                // We switched it off and it stayed on: the global switch holds it. Try again
                // at resync, not before.
                held.push(t.task_uid.clone());
                observed.written = previous.and_then(|p| p.written.clone());
            } else if ctx.manages() {
                actions.push(UpdateTask {
                    task_uid: t.task_uid.clone(),
                    user_status: desired.to_string(),
                });
                observed.written = Some(WrittenStatus {
                    user_status: desired.to_string(),
                    at: rfc3339(ctx.now),
                });
            } else {
                drift.push(t.task_uid.clone());
            }
        } else if let Some(p) = previous.filter(|_| same_generation) {
            observed.written = p.written.clone();
        }
        tasks.push(observed);
    }

    let verdict = if !conflicts.is_empty() {
        Verdict::not_ready(
            Reason::Conflict,
            format!(
                "an older FotaTaskPolicy (or a FOTA UpdateRollout, which holds its task Pending) wants the opposite for: {}",
                conflicts.join(", ")
            ),
        )
    } else if !missing.is_empty() {
        Verdict::not_ready(
            Reason::NotFound,
            format!(
                "no such image-update task in {}: {}",
                spec.region_id,
                missing.join(", ")
            ),
        )
    } else if !held.is_empty() {
        Verdict::not_ready(
            Reason::GlobalAutoUpdateEnabled,
            format!(
                "the global auto-update switch of {} keeps these tasks pushed: {}; turn it off in the console (Operations > Image Updates)",
                spec.region_id,
                held.join(", ")
            ),
        )
    } else if !actions.is_empty() {
        Verdict::not_ready(
            Reason::Applying,
            format!("setting UserStatus {desired} on {} task(s)", actions.len()),
        )
    } else if !drift.is_empty() {
        Verdict::not_ready(
            Reason::DriftDetected,
            format!("UserStatus should be {desired} on: {}", drift.join(", ")),
        )
    } else if !unknown.is_empty() {
        Verdict::not_ready(
            Reason::Applying,
            format!(
                "UserStatus {desired} was sent, but the cloud reports neither Running nor Pending for: {}; \
                 it is sent again at most once per resync",
                unknown.join(", ")
            ),
        )
    } else {
        Verdict::ready(
            Reason::InSync,
            format!("{} task(s) have UserStatus {desired}", matched.len()),
        )
    };
    let mut status = input.previous.clone();
    status.matched_tasks = tasks.len() as i32;
    status.tasks = tasks;
    status.conflicts = conflicts;
    let requeue_after = (!actions.is_empty()).then_some(VERIFY_AFTER);
    Outcome {
        actions,
        intent: None,
        status,
        verdict,
        requeue_after,
    }
}
