//! Pure decisions: (spec, observed cloud, now, previous status) → (actions, new status,
//! next requeue). No I/O here, so every edge case can be unit-tested.

pub mod conditions;
pub mod duration;
pub mod fota;
pub mod image_share;
pub mod maintenance;
pub mod ota;
pub mod rollout;
pub mod schedule;
pub mod update_rollout;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::ManagementPolicy;

/// Why a resource is (not) ready. Terminal reasons wait for a spec change; the others are
/// retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The cloud matches the spec.
    InSync,
    /// Writes were sent; the next read confirms them.
    Applying,
    /// ObserveOnly: the cloud differs from the spec and nothing was written.
    DriftDetected,
    Suspended,
    /// The spec is wrong in a way the schema cannot catch (a cron expression, a time zone).
    InvalidSpec,
    /// A cloud object the spec names does not exist.
    NotFound,
    /// Another resource manages the same cloud object differently, and it is older.
    Conflict,
    CredentialsInvalid,
    Throttled,
    CloudUnavailable,
    /// The cloud refused the request as invalid.
    CloudRejected,
    /// FotaTaskPolicy: the region's global auto-update switch keeps tasks pushed.
    GlobalAutoUpdateEnabled,
    /// DesktopMaintenanceWindow phases.
    Scheduled,
    Active,
    Completed,
    /// DesktopMaintenanceWindow (SkipBusy): some targets are not entered because people work
    /// on them; they are looked at again.
    WaitingForBusy,
    /// DesktopMaintenanceWindow (SkipBusy): the last window ended with computers skipped
    /// because people were working on them.
    PartiallyMaintained,
    /// DesktopMaintenanceWindow: the window that would be open now starts inside a blackout,
    /// so it does not open.
    BlackedOut,
    /// DesktopMaintenanceWindow: the window is open and every target was entered, but some
    /// still have users connected; they are in maintenance once the users leave.
    Draining,
    /// OtaSchedule: the upgrade it approved ended in failure, as the cloud shows it.
    UpgradeFailed,
    /// OtaSchedule: no new version.
    UpToDate,
    /// OtaSchedule: a new version is approved for a start time.
    Approved,
    /// OtaSchedule: the upgrade is running.
    UpgradeRunning,
    /// OtaSchedule: the one-off start time passed before the version appeared.
    StartTimeInPast,
    /// UpdateRollout: groups of the current wave are approved or updating.
    Progressing,
    /// UpdateRollout: the current wave is done and must stay healthy until its soak ends.
    Soaking,
    /// UpdateRollout: the current wave is done and waits for a person to promote it.
    WaitingForPromotion,
    /// UpdateRollout: `spec.paused`.
    Paused,
    /// UpdateRollout: a wave had more failures than `maxFailures`; nothing more is approved
    /// until a person resumes it.
    PausedByFailures,
    /// The reconcile panicked (a bug); the object is retried with backoff.
    ReconcilePanicked,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InSync => "InSync",
            Reason::Applying => "Applying",
            Reason::DriftDetected => "DriftDetected",
            Reason::Suspended => "Suspended",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::NotFound => "NotFound",
            Reason::Conflict => "Conflict",
            Reason::CredentialsInvalid => "CredentialsInvalid",
            Reason::Throttled => "Throttled",
            Reason::CloudUnavailable => "CloudUnavailable",
            Reason::CloudRejected => "CloudRejected",
            Reason::GlobalAutoUpdateEnabled => "GlobalAutoUpdateEnabled",
            Reason::Scheduled => "Scheduled",
            Reason::Active => "Active",
            Reason::Completed => "Completed",
            Reason::Draining => "Draining",
            Reason::BlackedOut => "BlackedOut",
            Reason::WaitingForBusy => "WaitingForBusy",
            Reason::PartiallyMaintained => "PartiallyMaintained",
            Reason::UpgradeFailed => "UpgradeFailed",
            Reason::UpToDate => "UpToDate",
            Reason::Approved => "Approved",
            Reason::UpgradeRunning => "UpgradeRunning",
            Reason::StartTimeInPast => "StartTimeInPast",
            Reason::Progressing => "Progressing",
            Reason::Soaking => "Soaking",
            Reason::WaitingForPromotion => "WaitingForPromotion",
            Reason::Paused => "Paused",
            Reason::PausedByFailures => "PausedByFailures",
            Reason::ReconcilePanicked => "ReconcilePanicked",
        }
    }

    pub const ALL: [Reason; 30] = [
        Reason::InSync,
        Reason::Applying,
        Reason::DriftDetected,
        Reason::Suspended,
        Reason::InvalidSpec,
        Reason::NotFound,
        Reason::Conflict,
        Reason::CredentialsInvalid,
        Reason::Throttled,
        Reason::CloudUnavailable,
        Reason::CloudRejected,
        Reason::GlobalAutoUpdateEnabled,
        Reason::Scheduled,
        Reason::Active,
        Reason::Completed,
        Reason::Draining,
        Reason::BlackedOut,
        Reason::WaitingForBusy,
        Reason::PartiallyMaintained,
        Reason::UpgradeFailed,
        Reason::UpToDate,
        Reason::Approved,
        Reason::UpgradeRunning,
        Reason::StartTimeInPast,
        Reason::Progressing,
        Reason::Soaking,
        Reason::WaitingForPromotion,
        Reason::Paused,
        Reason::PausedByFailures,
        Reason::ReconcilePanicked,
    ];

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// What the operator does next about a resource with this Ready reason, in a few words
    /// for people (`kubectl alicloud-ops status`); the README's reasons table holds the same
    /// words, checked by a test.
    pub fn next_step(self) -> &'static str {
        self.row().1
    }

    /// How Argo CD shows a resource whose Ready condition has this reason
    /// (`deploy/argocd/health.lua`, checked by a test).
    pub fn health(self) -> Health {
        self.row().0
    }

    /// Terminal: not retried; only a change of the spec can fix it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Reason::InvalidSpec | Reason::StartTimeInPast)
    }

    /// A person must act (Degraded in Argo CD, an error in `plan`, a Warning Event). The
    /// terminal reasons, and those the operator retries at the resync but that do not fix
    /// themselves: a Secret, a RAM policy, a missing cloud object, an older resource.
    pub fn needs_attention(self) -> bool {
        self.health() == Health::Degraded
    }

    /// The one table of reasons: Argo CD's health, and what the operator does next.
    fn row(self) -> (Health, &'static str) {
        use Health::*;
        match self {
            Reason::InSync
            | Reason::Scheduled
            | Reason::Active
            | Reason::Completed
            | Reason::BlackedOut
            | Reason::UpToDate
            | Reason::Approved
            | Reason::UpgradeRunning => (Healthy, "looks again at the resync or the next window boundary"),
            Reason::GlobalAutoUpdateEnabled => (Progressing, "looks again at the resync"),
            Reason::WaitingForBusy => (
                Progressing,
                "looks at the busy computers again every drain.retryEvery until too little of the window is left",
            ),
            Reason::PartiallyMaintained => (
                Degraded,
                "tries the skipped computers again at the next window; status.skippedDesktops names them",
            ),
            Reason::UpgradeFailed => (
                Degraded,
                "looks again at the resync; the version is not approved again (an approval cannot be withdrawn): a person decides",
            ),
            Reason::Draining => (
                Progressing,
                "looks again every 30s until the users have left, and at the window's end",
            ),
            Reason::Applying => (Progressing, "confirms the writes within 10s"),
            Reason::Progressing => (
                Progressing,
                "looks every 15s while groups update (60s while computers update or wait for their users), and approves the wave's next targets within maxUnavailable",
            ),
            Reason::Soaking => (Progressing, "looks again when the soak ends, then starts the next wave"),
            Reason::WaitingForPromotion => (
                Suspended,
                "waits for kubectl alicloud-ops promote (the annotation ops.alicloud.dev/promote)",
            ),
            Reason::Paused => (Suspended, "approves nothing until spec.paused is false"),
            Reason::PausedByFailures => (
                Degraded,
                "approves nothing until a person resumes it (kubectl alicloud-ops resume); status.failures names the targets",
            ),
            Reason::DriftDetected => (Progressing, "reports again at the resync; writes nothing (ObserveOnly)"),
            Reason::Suspended => (Suspended, "nothing until spec.suspend is false"),
            Reason::InvalidSpec | Reason::StartTimeInPast => (Degraded, "waits for a change of the spec"),
            Reason::NotFound => (Degraded, "looks again at the resync"),
            Reason::Conflict => (
                Degraded,
                "stands back while the older resource exists; looks again at the resync",
            ),
            Reason::CredentialsInvalid => (Degraded, "retries at the resync; fix the Secret or the RAM policy"),
            Reason::CloudRejected => (Degraded, "retries at the resync; the message has the cloud's code"),
            Reason::Throttled => (
                Progressing,
                "sends at its turn under the quota, or retries with backoff",
            ),
            Reason::CloudUnavailable => (Progressing, "retries with backoff"),
            Reason::ReconcilePanicked => (Progressing, "retries with backoff (a bug: please report it)"),
        }
    }

    /// Whether a resource with this reason is Ready (`True`).
    pub fn is_ready(self) -> bool {
        self.health() == Health::Healthy
    }
}

/// How Argo CD shows a resource, by its Ready reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Progressing,
    Suspended,
    Degraded,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Suspended => "Suspended",
            Health::Degraded => "Degraded",
        }
    }
}

/// The `Ready` condition a plan arrives at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub reason: Reason,
    pub message: String,
}

impl Verdict {
    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        debug_assert!(reason.is_ready(), "{reason:?} is not a Ready reason");
        Verdict {
            ready: true,
            reason,
            message: message.into(),
        }
    }

    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
        debug_assert!(!reason.is_ready(), "{reason:?} is a Ready reason");
        Verdict {
            ready: false,
            reason,
            message: message.into(),
        }
    }
}

/// What a reconcile should do.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<A, S> {
    /// Cloud writes, in order. Empty under ObserveOnly.
    pub actions: Vec<A>,
    /// A status to write before the actions run, recording what is about to be done, so a
    /// restart part-way can tell what happened.
    pub intent: Option<S>,
    /// The status once every action has succeeded (or now, with no actions).
    pub status: S,
    pub verdict: Verdict,
    /// When to look again, if sooner than the resync interval (a window boundary).
    pub requeue_after: Option<Duration>,
}

impl<A, S> Outcome<A, S> {
    /// No writes: `status` as it is, with `verdict`.
    pub fn settled(status: S, verdict: Verdict, requeue_after: Option<Duration>) -> Self {
        Outcome {
            actions: Vec::new(),
            intent: None,
            status,
            verdict,
            requeue_after,
        }
    }

    /// The resource is being deleted and has nothing in the cloud to undo.
    pub fn nothing_to_undo(status: S) -> Self {
        Self::settled(status, Verdict::ready(Reason::InSync, "deleted"), None)
    }

    /// Drift means writes are needed (or would be, under ObserveOnly).
    pub fn has_drift(&self) -> bool {
        !self.actions.is_empty() || self.verdict.reason == Reason::DriftDetected
    }
}

/// What every plan gets besides its own inputs.
#[derive(Clone, Debug)]
pub struct PlanContext {
    pub now: DateTime<Utc>,
    pub generation: i64,
    pub policy: ManagementPolicy,
    pub resync: Duration,
    /// The `reconcile-requested-at` value this reconcile honours with fresh reads, recorded
    /// in status so that a restart does not honour it again.
    pub request: Option<String>,
}

impl PlanContext {
    pub fn manages(&self) -> bool {
        self.policy == ManagementPolicy::Manage
    }
}

/// After writes, look again soon to confirm them.
pub const VERIFY_AFTER: Duration = Duration::from_secs(10);

/// The time until `at`, at least one second (a boundary in the past means "now").
pub fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_secs(1))
}

pub fn min_requeue(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's reasons table is [`Reason::row`]: each row's reasons share one health
    /// and one next step, shown in its columns, and every reason has exactly one row.
    #[test]
    fn the_readme_reasons_table_is_the_reason_table() {
        let readme = include_str!("../../README.md");
        let rows: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| Ready reason |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let mut seen = Vec::new();
        for row in rows {
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "{row}");
            let reasons: Vec<Reason> = cells[0]
                .split(", ")
                .map(|r| Reason::parse(r.trim_matches('`')).unwrap_or_else(|| panic!("{row}: {r} is no reason")))
                .collect();
            for r in &reasons {
                assert_eq!(cells[2], r.health().as_str(), "{row}: the health of {r:?}");
                assert_eq!(cells[3], r.next_step(), "{row}: the next step of {r:?}");
                assert_eq!(
                    cells[1].contains("**terminal**"),
                    r.is_terminal(),
                    "{row}: terminal or not, as {r:?}"
                );
            }
            seen.extend(reasons);
        }
        let mut all = Reason::ALL.to_vec();
        let key = |r: &Reason| r.as_str();
        seen.sort_by_key(key);
        all.sort_by_key(key);
        assert_eq!(seen, all, "every reason has exactly one row");
    }

    #[test]
    fn terminal_reasons_need_a_person() {
        for r in Reason::ALL {
            assert!(!r.is_terminal() || r.needs_attention(), "{r:?}");
        }
    }
}
