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
    /// The reconcile panicked (reason `ReconcilePanicked`).
    Panicked,
    /// The spec names another cloud account: what the old credentials recorded was undone
    /// with them (`remaining` is what is left); the new account takes over next.
    Draining { remaining: usize },
    /// The finalizer was just added; the watch brings the object back with it.
    FinalizerAdded,
    /// Deleted, and the operator's finalizer is not on it: there is nothing to clean up.
    NoFinalizer,
    /// The shared list still pages and has not read the resource's item: nothing was decided,
    /// and the page that holds it (or the list's end) recalls the resource.
    NotListedYet,
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
        (_, Settled::Panicked) => next(Backoff, true, false, false),
        (_, Settled::FinalizerAdded) => next(OnChange, false, false, true),
        (_, Settled::NoFinalizer) => next(OnChange, false, false, true),
        // Recalled by its page; the resync only in case the recall is lost.
        (_, Settled::NotListedYet) => next(Resync, false, false, false),
        // Straight on to the new account (the drain may take more rounds).
        (_, Settled::Draining { .. }) => next(After(STALE_RETRY), false, false, true),

        (Stage::Apply, Settled::Suspended) => next(OnChange, false, false, true),
        (Stage::Apply, Settled::CredentialsUnavailable { .. }) => next(Resync, true, false, true),
        (Stage::Apply, Settled::CloudFailed { class, .. }) if class.is_retryable() => next(Backoff, true, false, false),
        (Stage::Apply, Settled::CloudFailed { .. }) => next(Resync, true, false, true),
        // Looked at again at the resync, but a window boundary the plan holds to comes first:
        // one unknown desktop id must not cost the others their window.
        (
            Stage::Apply,
            Settled::Planned {
                reason: Reason::NotFound | Reason::Conflict,
                requeue_after,
                ..
            },
        ) => {
            let requeue = match requeue_after {
                Some(d) if *d < resync => After(*d),
                _ => Resync,
            };
            next(requeue, false, false, true)
        }
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
        // An undo waiting for its turn under the cloud's quota comes back at that turn.
        (
            Stage::Cleanup,
            Settled::Planned {
                reason: Reason::Throttled,
                requeue_after: Some(d),
                remaining: 1..,
            },
        ) => next(After(*d), false, false, false),
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

    fn render_requeue(n: &Next, settled: &Settled) -> String {
        if n.release_finalizer || matches!(settled, Settled::ObjectGone | Settled::NoFinalizer) {
            return "none".into();
        }
        match n.requeue {
            Requeue::Resync => "resync".into(),
            Requeue::After(d) => format!("after {} s", d.as_secs()),
            Requeue::Backoff => "backoff".into(),
            Requeue::OnChange => "on change".into(),
        }
    }

    fn render_finalizer(n: &Next, settled: &Settled) -> &'static str {
        match (n.release_finalizer, settled) {
            (true, _) => "**released**",
            (false, Settled::ObjectGone) => "(gone)",
            (false, Settled::NoFinalizer) => "(none)",
            (false, Settled::FinalizerAdded) => "added",
            (false, _) => "kept",
        }
    }

    /// The README's "What the operator does next" table, row for row: each row is rendered
    /// from `next_step` and must appear in the README, and the README has no other rows.
    #[test]
    fn the_readme_table_is_this_function() {
        use Stage::{Apply, Cleanup};
        let throttled = |class| Settled::CloudFailed { class, remaining: 0 };
        let rows: Vec<(&str, Vec<Stage>, &str, Settled)> = vec![
            (
                "apply",
                vec![Apply],
                "ready, nothing due sooner",
                planned(Reason::InSync, None, 0),
            ),
            (
                "apply",
                vec![Apply],
                "writes sent (`Applying`)",
                planned(Reason::Applying, Some(10), 0),
            ),
            (
                "apply",
                vec![Apply],
                "ready, the next window boundary after the resync",
                planned(Reason::Active, Some(7200), 0),
            ),
            (
                "apply",
                vec![Apply],
                "a write waits for its turn under the cloud's quota (`Throttled`), due in 42 s",
                planned(Reason::Throttled, Some(42), 0),
            ),
            (
                "apply",
                vec![Apply],
                "`DriftDetected`",
                planned(Reason::DriftDetected, None, 0),
            ),
            ("apply", vec![Apply], "`NotFound`", planned(Reason::NotFound, None, 0)),
            (
                "apply",
                vec![Apply],
                "`NotFound` for some desktop ids, the next window boundary due in 42 s",
                planned(Reason::NotFound, Some(42), 0),
            ),
            ("apply", vec![Apply], "`Conflict`", planned(Reason::Conflict, None, 0)),
            (
                "apply",
                vec![Apply],
                "`InvalidSpec`",
                planned(Reason::InvalidSpec, None, 0),
            ),
            (
                "apply",
                vec![Apply],
                "`StartTimeInPast`",
                planned(Reason::StartTimeInPast, None, 0),
            ),
            (
                "apply",
                vec![Apply],
                "`InvalidSpec` while an open window holds desktops, 30 s before its recorded end",
                planned(Reason::InvalidSpec, Some(30), 2),
            ),
            ("apply", vec![Apply], "`Suspended`", Settled::Suspended),
            (
                "apply",
                vec![Apply],
                "the finalizer was just added",
                Settled::FinalizerAdded,
            ),
            (
                "apply",
                vec![Apply],
                "credentialsRef moved to another account: the old record was undone with the old credentials",
                Settled::Draining { remaining: 0 },
            ),
            (
                "apply",
                vec![Apply],
                "the Secret cannot be read (`CredentialsInvalid`)",
                Settled::CredentialsUnavailable { remaining: 0 },
            ),
            (
                "apply",
                vec![Apply],
                "cloud throttling (`Throttled`)",
                throttled(ErrorClass::Throttled),
            ),
            (
                "apply",
                vec![Apply],
                "cloud unavailable (`CloudUnavailable`)",
                throttled(ErrorClass::Transient),
            ),
            (
                "apply",
                vec![Apply],
                "cloud refused the request (`CloudRejected`)",
                throttled(ErrorClass::Invalid),
            ),
            (
                "apply",
                vec![Apply],
                "cloud refused the credentials (`CredentialsInvalid`)",
                throttled(ErrorClass::Credentials),
            ),
            (
                "apply",
                vec![Apply],
                "cloud object not found (`NotFound`)",
                throttled(ErrorClass::NotFound),
            ),
            (
                "delete",
                vec![Cleanup],
                "nothing recorded remains",
                planned(Reason::InSync, None, 0),
            ),
            (
                "delete",
                vec![Cleanup],
                "something still recorded after the writes",
                planned(Reason::Applying, None, 2),
            ),
            (
                "delete",
                vec![Cleanup],
                "an undo waits for its turn under the cloud's quota (`Throttled`), due in 42 s",
                planned(Reason::Throttled, Some(42), 1),
            ),
            (
                "delete",
                vec![Cleanup],
                "cloud failure, something still recorded",
                Settled::CloudFailed {
                    class: ErrorClass::Transient,
                    remaining: 5,
                },
            ),
            (
                "delete",
                vec![Cleanup],
                "cloud failure, nothing recorded",
                Settled::CloudFailed {
                    class: ErrorClass::Transient,
                    remaining: 0,
                },
            ),
            (
                "delete",
                vec![Cleanup],
                "the Secret cannot be read, something still recorded",
                Settled::CredentialsUnavailable { remaining: 4 },
            ),
            (
                "delete",
                vec![Cleanup],
                "the Secret cannot be read, nothing recorded",
                Settled::CredentialsUnavailable { remaining: 0 },
            ),
            (
                "delete",
                vec![Cleanup],
                "`skip-cleanup: \"true\"`",
                Settled::CleanupSkipped,
            ),
            (
                "delete",
                vec![Cleanup],
                "the operator's finalizer is not on it",
                Settled::NoFinalizer,
            ),
            (
                "either",
                vec![Apply, Cleanup],
                "the object changed since it was read (HTTP 409)",
                Settled::StaleObject,
            ),
            (
                "either",
                vec![Apply, Cleanup],
                "the object is gone (HTTP 404)",
                Settled::ObjectGone,
            ),
            (
                "either",
                vec![Apply, Cleanup],
                "another Kubernetes API failure",
                Settled::KubeFailed,
            ),
            (
                "either",
                vec![Apply, Cleanup],
                "the reconcile panicked (`ReconcilePanicked`)",
                Settled::Panicked,
            ),
            (
                "either",
                vec![Apply, Cleanup],
                "the shared list is still paging and has not read the cloud object yet (the page that holds it brings the resource back at once; nothing is written)",
                Settled::NotListedYet,
            ),
        ];
        let readme = include_str!("../../README.md");
        let start = readme.find("### What the operator does next").expect("README section");
        let table: Vec<&str> = readme[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| stage |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(table.len(), rows.len(), "README rows: {table:#?}");
        for ((label, stages, ended, settled), line) in rows.iter().zip(&table) {
            let nexts: Vec<Next> = stages.iter().map(|s| next_step(*s, settled, RESYNC)).collect();
            assert!(nexts.windows(2).all(|w| w[0] == w[1]), "{ended}: the stages differ");
            let n = nexts[0];
            let row = format!(
                "| {label} | {ended} | {} | {} | {} |",
                render_requeue(&n, settled),
                if n.warn { "yes" } else { "no" },
                render_finalizer(&n, settled)
            );
            assert_eq!(*line, row.as_str());
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
