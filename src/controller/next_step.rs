//! What happens after a reconcile, decided in one place: when to come back, whether to say
//! so in a Warning Event, and whether the finalizer may go.
//!
//! The rows of [`next_step`] are the README's "What the operator does next" table, row for
//! row; the table-driven test below holds both to each other.

use std::time::Duration;

use super::kind::Stage;
use crate::cloud::ErrorClass;
use crate::reconcile::Reason;

/// How a reconcile ended, as far as the next step cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// `spec.suspend: true`.
    Suspended,
    /// Deletion with `ops.alicloud.dev/skip-cleanup: "true"`.
    CleanupSkipped,
    /// The plan ran, and every write it asked for was sent. `remaining` counts what the
    /// resource recorded as done in the cloud and has not undone yet (only read on deletion).
    Planned {
        reason: Reason,
        requeue_after: Option<Duration>,
        remaining: usize,
    },
    /// A cloud call failed.
    CloudFailed { class: ErrorClass, remaining: usize },
    /// The resource's credentials cannot be read (the Secret is missing or incomplete).
    CredentialsUnavailable { remaining: usize },
    /// The object changed since it was read (HTTP 409 on a write with a precondition).
    StaleObject,
    /// The object is gone (HTTP 404 on a status write or the finalizer removal).
    ObjectGone,
    /// Any other Kubernetes API failure.
    KubeFailed,
}

/// When to reconcile the object again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// At the resync interval, with a little jitter.
    Resync,
    /// After this long (already capped at the resync interval).
    After(Duration),
    /// After the object's exponential error backoff.
    Backoff,
    /// Only when the object (or its Secret) changes.
    OnChange,
}

/// The next step after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub requeue: Requeue,
    /// Publish a Warning Event with the reconcile's reason and message.
    pub warn: bool,
    /// Remove the finalizer: the cloud is clean (or cleanup was explicitly skipped).
    pub release_finalizer: bool,
    /// The failure count behind the backoff starts again.
    pub reset_backoff: bool,
}

/// A stale read is resolved by the watch delivering the newer object; this is only the
/// fallback in case no event comes.
pub const STALE_RETRY: Duration = Duration::from_secs(1);

const fn next(requeue: Requeue, warn: bool, release_finalizer: bool, reset_backoff: bool) -> Next {
    Next {
        requeue,
        warn,
        release_finalizer,
        reset_backoff,
    }
}

/// The invariant of deletion: the finalizer is released only when nothing the resource
/// recorded as done remains in the cloud, or when `skip-cleanup` says to leave it.
pub fn next_step(stage: Stage, settled: &Settled, resync: Duration) -> Next {
    use Requeue::*;
    match (stage, settled) {
        (_, Settled::StaleObject) => next(After(STALE_RETRY), false, false, false),
        (_, Settled::ObjectGone) => next(OnChange, false, false, true),
        (_, Settled::KubeFailed) => next(Backoff, false, false, false),

        (Stage::Apply, Settled::Suspended) => next(OnChange, false, false, true),
        (Stage::Apply, Settled::CredentialsUnavailable { .. }) => next(Resync, true, false, true),
        (Stage::Apply, Settled::CloudFailed { class, .. }) if class.is_retryable() => next(Backoff, true, false, false),
        (Stage::Apply, Settled::CloudFailed { .. }) => next(Resync, true, false, true),
        (
            Stage::Apply,
            Settled::Planned {
                reason: Reason::NotFound | Reason::Conflict,
                ..
            },
        ) => next(Resync, false, false, true),
        // A terminal reason waits for a change, unless the plan holds something to a time
        // (an invalid edit of an open window still exits at the window's recorded end).
        (
            Stage::Apply,
            Settled::Planned {
                reason, requeue_after, ..
            },
        ) if reason.is_terminal() => {
            let requeue = requeue_after.map_or(OnChange, |d| After(d.min(resync)));
            next(requeue, true, false, true)
        }
        (Stage::Apply, Settled::Planned { requeue_after, .. }) => {
            let requeue = match requeue_after {
                Some(d) if *d < resync => After(*d),
                _ => Resync,
            };
            next(requeue, false, false, true)
        }
        (Stage::Apply, Settled::CleanupSkipped) => next(OnChange, false, false, true),

        (Stage::Cleanup, Settled::CleanupSkipped) => next(OnChange, false, true, true),
        (Stage::Cleanup, Settled::Suspended) => next(Backoff, true, false, false),
        (Stage::Cleanup, Settled::Planned { remaining: 0, .. })
        | (Stage::Cleanup, Settled::CloudFailed { remaining: 0, .. })
        | (Stage::Cleanup, Settled::CredentialsUnavailable { remaining: 0 }) => next(OnChange, false, true, true),
        (Stage::Cleanup, Settled::Planned { .. })
        | (Stage::Cleanup, Settled::CloudFailed { .. })
        | (Stage::Cleanup, Settled::CredentialsUnavailable { .. }) => next(Backoff, true, false, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(600);

    fn planned(reason: Reason, requeue_after: Option<u64>, remaining: usize) -> Settled {
        Settled::Planned {
            reason,
            requeue_after: requeue_after.map(Duration::from_secs),
            remaining,
        }
    }

    /// The README table "What the operator does next", row for row:
    /// (stage, how the reconcile ended, requeue, Warning Event, finalizer released).
    #[test]
    fn the_table() {
        use Requeue::*;
        use Stage::{Apply, Cleanup};
        let rows: Vec<(Stage, Settled, Requeue, bool, bool)> = vec![
            (Apply, planned(Reason::InSync, None, 0), Resync, false, false),
            (
                Apply,
                planned(Reason::Applying, Some(10), 0),
                After(Duration::from_secs(10)),
                false,
                false,
            ),
            (Apply, planned(Reason::Active, Some(7200), 0), Resync, false, false),
            (Apply, planned(Reason::DriftDetected, None, 0), Resync, false, false),
            (Apply, planned(Reason::NotFound, None, 0), Resync, false, false),
            (Apply, planned(Reason::Conflict, None, 0), Resync, false, false),
            (Apply, planned(Reason::InvalidSpec, None, 0), OnChange, true, false),
            (Apply, planned(Reason::CloudRejected, None, 0), OnChange, true, false),
            (Apply, planned(Reason::StartTimeInPast, None, 0), OnChange, true, false),
            (
                Apply,
                planned(Reason::InvalidSpec, Some(30), 2),
                After(Duration::from_secs(30)),
                true,
                false,
            ),
            (Apply, Settled::Suspended, OnChange, false, false),
            (
                Apply,
                Settled::CredentialsUnavailable { remaining: 3 },
                Resync,
                true,
                false,
            ),
            (
                Apply,
                Settled::CloudFailed {
                    class: ErrorClass::Throttled,
                    remaining: 0,
                },
                Backoff,
                true,
                false,
            ),
            (
                Apply,
                Settled::CloudFailed {
                    class: ErrorClass::Transient,
                    remaining: 0,
                },
                Backoff,
                true,
                false,
            ),
            (
                Apply,
                Settled::CloudFailed {
                    class: ErrorClass::Invalid,
                    remaining: 0,
                },
                Resync,
                true,
                false,
            ),
            (
                Apply,
                Settled::CloudFailed {
                    class: ErrorClass::Credentials,
                    remaining: 0,
                },
                Resync,
                true,
                false,
            ),
            (
                Apply,
                Settled::CloudFailed {
                    class: ErrorClass::NotFound,
                    remaining: 0,
                },
                Resync,
                true,
                false,
            ),
            (Cleanup, planned(Reason::InSync, None, 0), OnChange, false, true),
            (Cleanup, planned(Reason::Applying, None, 2), Backoff, true, false),
            (Cleanup, planned(Reason::InvalidSpec, None, 2), Backoff, true, false),
            (
                Cleanup,
                Settled::CloudFailed {
                    class: ErrorClass::Transient,
                    remaining: 5,
                },
                Backoff,
                true,
                false,
            ),
            (
                Cleanup,
                Settled::CloudFailed {
                    class: ErrorClass::NotFound,
                    remaining: 5,
                },
                Backoff,
                true,
                false,
            ),
            (
                Cleanup,
                Settled::CloudFailed {
                    class: ErrorClass::Transient,
                    remaining: 0,
                },
                OnChange,
                false,
                true,
            ),
            (
                Cleanup,
                Settled::CredentialsUnavailable { remaining: 4 },
                Backoff,
                true,
                false,
            ),
            (
                Cleanup,
                Settled::CredentialsUnavailable { remaining: 0 },
                OnChange,
                false,
                true,
            ),
            (Cleanup, Settled::CleanupSkipped, OnChange, false, true),
            (Apply, Settled::StaleObject, After(STALE_RETRY), false, false),
            (Cleanup, Settled::StaleObject, After(STALE_RETRY), false, false),
            (Apply, Settled::ObjectGone, OnChange, false, false),
            (Cleanup, Settled::ObjectGone, OnChange, false, false),
            (Apply, Settled::KubeFailed, Backoff, false, false),
            (Cleanup, Settled::KubeFailed, Backoff, false, false),
        ];
        for (stage, settled, requeue, warn, release) in rows {
            let n = next_step(stage, &settled, RESYNC);
            assert_eq!(
                (n.requeue, n.warn, n.release_finalizer),
                (requeue, warn, release),
                "{stage:?} {settled:?}"
            );
        }
    }

    #[test]
    fn nothing_recorded_is_the_only_clean_state() {
        for remaining in 1..4 {
            for settled in [
                planned(Reason::InSync, None, remaining),
                Settled::CloudFailed {
                    class: ErrorClass::NotFound,
                    remaining,
                },
                Settled::CredentialsUnavailable { remaining },
            ] {
                assert!(
                    !next_step(Stage::Cleanup, &settled, RESYNC).release_finalizer,
                    "{settled:?}"
                );
            }
        }
    }
}
