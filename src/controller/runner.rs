//! The steps every kind shares: plan (re-reading fresh before writes where the kind needs
//! it), then write intent, act, and settle the status. Used by the controller and `plan`.

use std::sync::Arc;

use super::kind::{KindEnv, ManagedKind, Stage};
use crate::cloud::{CloudError, ErrorClass};
use crate::reconcile::{Outcome, PlanContext, Reason, Verdict};

/// Plans `obj` against the cloud. `fresh` skips the snapshots (a requested reconcile).
pub async fn plan<K: ManagedKind>(
    obj: &K,
    env: &KindEnv,
    peers: &[Arc<K>],
    ctx: &PlanContext,
    stage: Stage,
    fresh: bool,
) -> Result<Outcome<K::Action, K::Status>, CloudError> {
    let outcome = obj.plan(env, peers, ctx, stage, fresh).await?;
    if fresh {
        return Ok(outcome);
    }
    if K::FRESH_READ_BEFORE_WRITE && !outcome.actions.is_empty() {
        // The snapshot may be seconds old; decide again on what the cloud says now.
        return obj.plan(env, peers, ctx, stage, true).await;
    }
    Ok(outcome)
}

/// Asks the client-side limits whether this resource's write may go now (see
/// [`crate::cloud::ratelimit`]); asking again is harmless and gives the same answer.
async fn admission<K: ManagedKind>(obj: &K, env: &KindEnv) -> Result<(), CloudError> {
    let (product, action) = K::WRITE;
    env.cloud.admit(product, obj.region(), action).await
}

/// The Ready verdict for a failed cloud call.
pub fn error_verdict(err: &CloudError) -> Verdict {
    let reason = match err.class() {
        ErrorClass::Throttled => Reason::Throttled,
        ErrorClass::Transient => Reason::CloudUnavailable,
        ErrorClass::Credentials => Reason::CredentialsInvalid,
        ErrorClass::NotFound => Reason::NotFound,
        ErrorClass::Invalid => Reason::CloudRejected,
        ErrorClass::Internal => Reason::ReconcilePanicked,
    };
    Verdict::not_ready(reason, err.summary())
}

/// Where statuses go: the status subresource for the controller, memory for tests.
///
/// A write must fail (HTTP 409) when the object changed since `obj` was read, so that a
/// decision taken on a stale copy is never acted on; see `KubeStatus`.
pub trait StatusSink<K: ManagedKind>: Send + Sync {
    fn write(&self, obj: &K, status: &K::Status) -> impl std::future::Future<Output = Result<(), kube::Error>> + Send;
}

/// What one reconcile did.
#[derive(Debug)]
pub struct Reconciled<K: ManagedKind> {
    pub status: K::Status,
    pub verdict: Verdict,
    /// When to come back, if sooner than the resync.
    pub requeue_after: Option<std::time::Duration>,
    /// Writes sent, for logs and `plan`.
    pub applied: Vec<String>,
    /// The Event (reason, note) of each write sent.
    pub events: Vec<(&'static str, String)>,
    /// The cloud failure that stopped the reconcile, if any.
    pub error: Option<CloudError>,
    /// Whether the plan found drift.
    pub drift: bool,
    /// What the settled status still records as done in the cloud (what deletion undoes).
    pub recorded: Vec<String>,
}

/// Plans, records intent, acts, and writes the settled status (only when it changed).
///
/// Every plan with writes records its intent first, through the sink's precondition: a
/// plan made from a stale copy of the object fails there, before anything reaches the
/// cloud.
pub async fn reconcile_once<K: ManagedKind, S: StatusSink<K>>(
    obj: &K,
    env: &KindEnv,
    peers: &[Arc<K>],
    ctx: &PlanContext,
    stage: Stage,
    fresh: bool,
    sink: &S,
) -> Result<Reconciled<K>, kube::Error> {
    let previous = obj.status().cloned().unwrap_or_default();
    let mut applied = Vec::new();
    let mut events = Vec::new();
    let mut synced = true;
    let planned = plan(obj, env, peers, ctx, stage, fresh).await;
    let refused = match &planned {
        Ok(outcome) if !outcome.actions.is_empty() => admission(obj, env).await.err(),
        _ => None,
    };
    let (status, verdict, requeue_after, error, drift) = match (planned, refused) {
        // A read for this resource alone that the rate limits could not send at once: it
        // comes back at its turn, and no worker waited for it.
        (Err(e), _) if e.deferred_for().is_some() => {
            synced = false;
            (
                previous.clone(),
                Verdict::not_ready(Reason::Throttled, e.summary()),
                e.deferred_for(),
                None,
                false,
            )
        }
        (Err(e), _) => (
            previous.clone(),
            K::interpret_error(&e).unwrap_or_else(|| error_verdict(&e)),
            None,
            Some(e),
            false,
        ),
        (Ok(outcome), Some(e)) => {
            // The client-side limits have no room now: nothing is recorded or sent, the
            // resource keeps its turn, and comes back when it is due. No worker waits.
            synced = false;
            let kept = K::status_held_back(previous.clone(), outcome.intent.as_ref());
            match e.deferred_for() {
                Some(wait) => (
                    kept,
                    Verdict::not_ready(Reason::Throttled, e.summary()),
                    Some(wait),
                    None,
                    outcome.has_drift(),
                ),
                None => (kept, error_verdict(&e), None, Some(e), outcome.has_drift()),
            }
        }
        (Ok(outcome), None) => {
            let drift = outcome.has_drift();
            let intent = match (&outcome.intent, outcome.actions.is_empty()) {
                (Some(i), _) => Some(i.clone()),
                (None, false) => Some(previous.clone()),
                (None, true) => None,
            };
            if let Some(intent) = &intent {
                sink.write(obj, intent).await?;
            }
            let mut failure = None;
            let mut status = outcome.status;
            for action in &outcome.actions {
                match obj.execute(env, action).await {
                    Ok(()) => {
                        K::record_answer(&mut status, action, chrono::Utc::now());
                        applied.push(K::describe(action));
                        events.push((K::event_reason(action), K::describe(action)));
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => (status, outcome.verdict, outcome.requeue_after, None, drift),
                Some(e) => {
                    let recorded = intent.unwrap_or_else(|| previous.clone());
                    let fallback = K::status_after_failure(recorded, &e);
                    match (K::interpret_error(&e), e.deferred_for()) {
                        (Some(v), _) => (fallback, v, None, None, drift),
                        // Held back before it was sent (a later batch of a write that took
                        // longer than its admission): come back when the limits have room.
                        (None, Some(wait)) => {
                            synced = false;
                            (fallback, error_verdict(&e), Some(wait), None, drift)
                        }
                        (None, None) => (fallback, error_verdict(&e), None, Some(e), drift),
                    }
                }
            }
        }
    };
    let status = settle(obj, status, &verdict, synced && error.is_none(), ctx, sink).await?;
    Ok(Reconciled {
        recorded: obj.recorded(&status),
        status,
        verdict,
        requeue_after,
        applied,
        events,
        error,
        drift,
    })
}

/// The one way a status is settled: the Ready and Synced conditions from `verdict`, written
/// only when something changed. `synced` is false when the reconcile failed.
pub async fn settle<K: ManagedKind, S: StatusSink<K>>(
    obj: &K,
    mut status: K::Status,
    verdict: &Verdict,
    synced: bool,
    ctx: &PlanContext,
    sink: &S,
) -> Result<K::Status, kube::Error> {
    let synced = if synced {
        Ok(())
    } else {
        Err((verdict.reason.as_str(), verdict.message.as_str()))
    };
    let common = K::common_status(&mut status);
    crate::reconcile::conditions::apply(common, verdict, synced, ctx.generation, ctx.now);
    if let Some(request) = &ctx.request {
        common.reconcile_requested_at = Some(request.clone());
    }
    if obj.status() != Some(&status) {
        sink.write(obj, &status).await?;
    }
    Ok(status)
}
