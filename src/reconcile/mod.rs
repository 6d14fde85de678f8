//! Pure decisions: (spec, observed cloud, now, previous status) → (actions, new status,
//! next requeue). No I/O here, so every edge case can be unit-tested.

pub mod conditions;
pub mod duration;
pub mod fota;
pub mod image_share;
pub mod maintenance;
pub mod ota;
pub mod schedule;

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
    /// OtaSchedule: no new version.
    UpToDate,
    /// OtaSchedule: a new version is approved for a start time.
    Approved,
    /// OtaSchedule: the upgrade is running.
    UpgradeRunning,
    /// OtaSchedule: the one-off start time passed before the version appeared.
    StartTimeInPast,
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
            Reason::UpToDate => "UpToDate",
            Reason::Approved => "Approved",
            Reason::UpgradeRunning => "UpgradeRunning",
            Reason::StartTimeInPast => "StartTimeInPast",
            Reason::ReconcilePanicked => "ReconcilePanicked",
        }
    }

    pub const ALL: [Reason; 20] = [
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
        Reason::UpToDate,
        Reason::Approved,
        Reason::UpgradeRunning,
        Reason::StartTimeInPast,
        Reason::ReconcilePanicked,
    ];

    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// What the operator does next about a resource with this Ready reason, in a few words
    /// for people: the README's "What the operator does next" table, by reason.
    pub fn next_step(self) -> &'static str {
        match self {
            Reason::InSync
            | Reason::Scheduled
            | Reason::Active
            | Reason::Completed
            | Reason::UpToDate
            | Reason::Approved
            | Reason::UpgradeRunning
            | Reason::GlobalAutoUpdateEnabled => "looks again at the resync or the next window boundary",
            Reason::Applying => "confirms the writes within 10s",
            Reason::DriftDetected => "reports again at the resync; writes nothing (ObserveOnly)",
            Reason::Suspended => "nothing until spec.suspend is false",
            Reason::InvalidSpec | Reason::StartTimeInPast => "waits for a change of the spec",
            Reason::NotFound => "looks again at the resync",
            Reason::Conflict => "stands back while the older resource exists; looks again at the resync",
            Reason::CredentialsInvalid => "retries at the resync; fix the Secret or the RAM policy",
            Reason::CloudRejected => "retries at the resync; the message has the cloud's code",
            Reason::Throttled => "sends at its turn under the quota, or retries with backoff",
            Reason::CloudUnavailable => "retries with backoff",
            Reason::ReconcilePanicked => "retries with backoff (a bug: please report it)",
        }
    }

    /// Terminal: only a change of the spec (or of the Secret) can fix it.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Reason::InvalidSpec
                | Reason::NotFound
                | Reason::Conflict
                | Reason::CredentialsInvalid
                | Reason::CloudRejected
                | Reason::StartTimeInPast
        )
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
        Verdict {
            ready: true,
            reason,
            message: message.into(),
        }
    }

    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
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
