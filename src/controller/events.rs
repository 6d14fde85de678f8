//! The reasons of the Events the operator publishes, in one place.
//!
//! kube-runtime's Recorder merges Events that share a reason and an action into one series
//! and keeps the first note. Every distinct kind of write therefore has a reason of its own,
//! so a series counts only repeats of the same write and its note describes it.

/// ModifyImageShareStatus `Share`.
pub const SHARED: &str = "Shared";
/// ModifyImageShareStatus `UnShare`.
pub const UNSHARED: &str = "Unshared";
/// SetDesktopMaintenance `ENTER`.
pub const ENTERED_MAINTENANCE: &str = "EnteredMaintenance";
/// SetDesktopMaintenance `EXIT`.
pub const EXITED_MAINTENANCE: &str = "ExitedMaintenance";
/// A warning to the people on a window's computers (and its console message, if any).
pub const MAINTENANCE_NOTICE: &str = "MaintenanceNotice";
/// DisconnectDesktopSessions at a window's drain deadline.
pub const DISCONNECTED_SESSIONS: &str = "SessionsDisconnected";
/// ApproveOtaTask.
pub const APPROVED: &str = "Approved";
/// An UpdateRollout's wave made its first approval.
pub const WAVE_STARTED: &str = "WaveStarted";
/// An UpdateRollout's wave has every group done (within its failure budget).
pub const WAVE_SUCCEEDED: &str = "WaveSucceeded";
/// A person promoted an UpdateRollout's wave.
pub const WAVE_PROMOTED: &str = "WavePromoted";
/// An UpdateRollout's wave had more failures than `maxFailures`: the rollout stopped (Warning).
pub const WAVE_PAUSED: &str = "WavePaused";
/// A group of an UpdateRollout failed its upgrade.
pub const TARGET_FAILED: &str = "TargetFailed";
/// UpdateFotaTask `UserStatus=Running`: the task is pushed to users automatically.
pub const AUTO_PUSH_SET: &str = "AutoPushSet";
/// UpdateFotaTask `UserStatus=Pending`: the task waits for users to update.
pub const AUTO_PUSH_CLEARED: &str = "AutoPushCleared";
/// The credentials changed: what the old ones did is undone with them first.
pub const CREDENTIALS_CHANGED: &str = "CredentialsChanged";
/// `ops.alicloud.dev/skip-cleanup: "true"`: released without cloud cleanup.
pub const CLEANUP_SKIPPED: &str = "CleanupSkipped";
