//! The spine every kind shares, with no Kubernetes API in it: the gates (skip-cleanup,
//! suspend, credentials, the credentials drain), then plan (re-reading fresh before writes
//! where the kind needs it), admission, intent, act, and the conditions; it ends in one
//! [`Report`], which [`super::next_step`] turns into what happens next. The controller runs
//! it with the status subresource as its [`StatusSink`] and the cluster's Secrets as its
//! [`CloudSides`]; `plan` runs the gates and the plan with the Secrets of its input; tests
//! run all of it in memory against the emulator.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::context::{CredentialsError, RECONCILE_REQUESTED_AT, SKIP_CLEANUP};
use super::events;
use super::kind::{
    ClaimsTargets, KindEnv, ManagedKind, ObjectKey, Recaller, Rival, Stage, account_name, full_name, resync_for,
};
use super::metrics::ObjectState;
use super::next_step::Settled;
use crate::api::common::CredentialsRef;
use crate::cloud::{CloudError, ErrorClass};
use crate::reconcile::{Outcome, PlanContext, Reason, Verdict};

/// Reads the cloud and plans `obj` ([`ManagedKind::read_and_plan`]); a kind that reads fresh
/// before writing plans again on a fresh read when the plan has writes. `fresh` skips the
/// shared lists from the start (a requested reconcile).
pub async fn decide<K: ManagedKind>(
    obj: &K,
    env: &KindEnv,
    peers: &[Arc<K>],
    ctx: &PlanContext,
    stage: Stage,
    fresh: bool,
) -> Result<Outcome<K::Action, K::Status>, CloudError> {
    let outcome = obj.read_and_plan(env, peers, ctx, stage, fresh).await?;
    if fresh {
        return Ok(outcome);
    }
    if obj.fresh_read_before_write() && !outcome.actions.is_empty() {
        // The snapshot may be seconds old; decide again on what the cloud says now.
        return obj.read_and_plan(env, peers, ctx, stage, true).await;
    }
    Ok(outcome)
}

/// Asks the client-side limits whether this resource's write may go now (see
/// [`crate::cloud::ratelimit`]); asking again is harmless and gives the same answer.
async fn admission<K: ManagedKind>(obj: &K, env: &KindEnv, first: &K::Action) -> Result<(), CloudError> {
    let (product, action) = K::write_of(first);
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
    /// The cloud failure that stopped the reconcile, if any; [`CloudError::NotListedYet`]
    /// when the shared list had not read the resource's item: nothing was decided or written,
    /// and the list's page recalls the resource.
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
    let planned = decide(obj, env, peers, ctx, stage, fresh).await;
    let refused = match &planned {
        Ok(outcome) if !outcome.actions.is_empty() => admission(obj, env, &outcome.actions[0]).await.err(),
        _ => None,
    };
    if let Err(e @ CloudError::NotListedYet(_)) = planned {
        return Ok(Reconciled {
            recorded: obj.recorded(&previous),
            status: previous,
            verdict: Verdict::not_ready(Reason::Throttled, e.summary()),
            requeue_after: None,
            applied,
            events,
            error: Some(e),
            drift: false,
        });
    }
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
    let status = write_conditions(obj, status, &verdict, synced && error.is_none(), ctx, sink).await?;
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

/// The one way conditions are written: the Ready and Synced conditions from `verdict`, written
/// only when something changed. `synced` is false when the reconcile failed.
pub async fn write_conditions<K: ManagedKind, S: StatusSink<K>>(
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

/// Where a reconcile finds the cloud side of a resource: the controller reads the Secrets of
/// the cluster ([`super::context::Context`]), `plan` those of its input.
pub trait CloudSides: Send + Sync {
    /// A client with the credentials `credentials_ref` names in `namespace` (`None`: the
    /// operator's own), keyed by cloud account; and where the credentials came from, in words.
    fn env_for(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> impl Future<Output = Result<(KindEnv, String), CredentialsError>> + Send;

    /// The account key the credentials act in, asked now (`None`: they cannot be read, or
    /// the cloud cannot say). A drain is decided on this, never on a cached failure.
    fn resolve_account(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> impl Future<Output = Option<String>> + Send {
        async move {
            let (env, _) = self.env_for(namespace, credentials_ref).await.ok()?;
            env.cloud.account().await.ok().map(|a| account_name(&a))
        }
    }

    /// The resources that claim cloud objects ([`crate::controller::kind::Claim`]), of every kind but `kind`
    /// (see [`ManagedKind::CLAIMS_TARGETS`]).
    fn claimants(&self, kind: &str) -> Vec<Arc<dyn ClaimsTargets>> {
        let _ = kind;
        Vec::new()
    }

    /// What brings `key` back to a worker of its controller ([`KindEnv::recall`]); `None`
    /// where no controller runs (`plan`, tests): lookups then wait in place.
    fn recaller(&self, key: &ObjectKey) -> Option<Recaller> {
        let _ = key;
        None
    }

    /// [`CloudSides::resolve_account`], possibly cached: for the peers of every reconcile.
    fn account_of(
        &self,
        namespace: &str,
        credentials_ref: Option<&CredentialsRef>,
    ) -> impl Future<Output = Option<String>> + Send {
        self.resolve_account(namespace, credentials_ref)
    }
}

/// What the gates let through, or why they stop a reconcile before the cloud is read.
pub enum Gate {
    /// Plan with `env`, resyncing every `resync`; `draining`: the record is undone with the
    /// credentials that made it first (the spec names another cloud account now), so the
    /// plan is a cleanup.
    Open {
        env: KindEnv,
        origin: String,
        draining: bool,
        resync: Duration,
    },
    /// The spec is invalid in a way admission could not catch (terminal `InvalidSpec`).
    InvalidSpec { message: String },
    /// Deletion with `skip-cleanup: "true"`: released without cloud cleanup.
    CleanupSkipped { message: String },
    /// `spec.suspend: true`.
    Suspended,
    /// The credentials cannot be used; `remaining` counts what they are needed to undo.
    NoCredentials { error: CredentialsError, remaining: usize },
}

/// "a, b, c, d, e, ... (n in all)", for messages about what a resource recorded.
pub fn summarize(items: &[String]) -> String {
    if items.len() > 5 {
        format!("{}, ... ({} in all)", items[..5].join(", "), items.len())
    } else {
        items.join(", ")
    }
}

/// The gates, in order: skip-cleanup, suspend, the resync interval, then the credentials.
///
/// Recorded writes are undone with the credentials that made them. When the spec now names
/// another cloud account, the record is undone first (a "drain"), then the new one takes
/// over. A key rotated within one account (a new Secret name, another RAM user) is no drain,
/// and neither are credentials that cannot be resolved (a Secret pruned by the same apply, a
/// typo): nothing is exited on a guess.
pub async fn gates<K: ManagedKind, C: CloudSides>(obj: &K, stage: Stage, sides: &C, default_resync: Duration) -> Gate {
    let previous = obj.status().cloned().unwrap_or_default();
    let recorded = obj.recorded(&previous);
    if stage == Stage::Cleanup
        && obj
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(SKIP_CLEANUP))
            .map(String::as_str)
            == Some("true")
    {
        let message = if recorded.is_empty() {
            format!("{SKIP_CLEANUP}=true: released without cloud cleanup")
        } else {
            format!(
                "{SKIP_CLEANUP}=true: released without cloud cleanup, leaving {} as they are: {}",
                recorded.len(),
                summarize(&recorded)
            )
        };
        return Gate::CleanupSkipped { message };
    }
    if stage == Stage::Apply && obj.common().suspend {
        return Gate::Suspended;
    }
    // A deletion is never held up by it: it cleans up at the operator's resync.
    let resync = match resync_for(obj, default_resync) {
        Ok(d) => d,
        Err(message) if stage == Stage::Apply => return Gate::InvalidSpec { message },
        Err(_) => default_resync,
    };
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    let spec_ref = obj.common().credentials_ref.clone();
    let pinned =
        K::recorded_with(&previous).filter(|p| !recorded.is_empty() && p.credentials_ref() != spec_ref.as_ref());
    let use_pinned = match &pinned {
        Some(p) => {
            let old = sides.resolve_account(&ns, p.credentials_ref()).await;
            let new = sides.resolve_account(&ns, spec_ref.as_ref()).await;
            matches!((old, new), (Some(old), Some(new)) if old != new)
        }
        None => false,
    };
    let credentials_ref = match pinned {
        Some(p) if use_pinned => p.credentials_ref().cloned(),
        _ => spec_ref,
    };
    match sides.env_for(&ns, credentials_ref.as_ref()).await {
        Ok((env, origin)) => Gate::Open {
            env,
            origin,
            draining: use_pinned && stage == Stage::Apply,
            resync,
        },
        Err(error) => Gate::NoCredentials {
            error,
            remaining: recorded.len(),
        },
    }
}

/// How many peers' accounts one reconcile resolves at once.
const PEER_READS_AT_ONCE: usize = 8;

/// The account keys of `obj`'s peers in its region (by `namespace/name`), for kinds whose
/// conflicts are decided by cloud account; resolved side by side, each Secret once.
pub async fn peer_accounts<K: ManagedKind, C: CloudSides>(
    obj: &K,
    peers: &[Arc<K>],
    sides: &C,
) -> BTreeMap<String, String> {
    // By name, not uid: `plan`'s manifests may have none yet.
    let this = full_name(obj.meta());
    let wanted: Vec<(String, String, Option<CredentialsRef>)> = peers
        .iter()
        .filter(|p| p.region() == obj.region() && full_name(p.meta()) != this)
        .map(|p| {
            (
                full_name(p.meta()),
                p.meta().namespace.clone().unwrap_or_default(),
                p.common().credentials_ref.clone(),
            )
        })
        .collect();
    futures::stream::iter(wanted)
        .map(|(key, ns, credentials)| async move { (key, sides.account_of(&ns, credentials.as_ref()).await) })
        .buffer_unordered(PEER_READS_AT_ONCE)
        .filter_map(|(key, account)| async move { Some((key, account?)) })
        .collect()
        .await
}

/// The rivals of a resource of kind `K` (see [`KindEnv::rivals`]), each with its account.
pub async fn rivals<K: ManagedKind, C: CloudSides>(sides: &C) -> Vec<Rival> {
    let mut out = Vec::new();
    for obj in sides.claimants(K::KIND).into_iter().filter(|c| c.acts()) {
        out.push(rival(obj, sides).await);
    }
    out
}

async fn rival<C: CloudSides>(obj: Arc<dyn ClaimsTargets + 'static>, sides: &C) -> Rival {
    let ns = obj.object_meta().namespace.clone().unwrap_or_default();
    let account = sides.account_of(&ns, obj.credentials()).await;
    Rival { obj, account }
}

/// The context of one decision about `obj`, now.
pub fn plan_context<K: ManagedKind>(obj: &K, resync: Duration) -> PlanContext {
    PlanContext {
        now: chrono::Utc::now(),
        generation: obj.meta().generation.unwrap_or_default(),
        policy: obj.common().management_policy,
        resync,
        request: None,
    }
}

/// An Event of a reconcile that went as it should (a write sent, cleanup skipped, a drain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub reason: &'static str,
    /// `Apply` or `Delete`.
    pub action: &'static str,
    pub note: String,
    /// A Warning Event (a person should look), else Normal.
    pub warning: bool,
}

/// How one reconcile of one object ended: everything the glue does afterwards (Events,
/// metrics, the requeue, the finalizer) follows from it and [`super::next_step`].
#[derive(Clone, Debug)]
pub struct Report {
    pub settled: Settled,
    /// The reason and message of a Warning Event, when [`super::next_step`] asks for one.
    pub reason: String,
    pub message: String,
    /// Normal Events, in order.
    pub notes: Vec<Note>,
    /// What `/metrics` shows of the object now; `None` when the reconcile decided nothing.
    pub observed: Option<ObjectState>,
    /// Whether the plan found the cloud differing from the spec.
    pub drift: bool,
    /// The resync interval the reconcile used (`None`: it got no further than the gates
    /// that need none; the operator's default applies).
    pub resync: Option<Duration>,
}

/// The HTTP status of a Kubernetes API error, if it was one.
pub fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Report {
    pub fn new(settled: Settled, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Report {
            settled,
            reason: reason.into(),
            message: message.into(),
            notes: Vec::new(),
            observed: None,
            drift: false,
            resync: None,
        }
    }

    /// A Kubernetes API call failed (a status write, the finalizer).
    pub fn kube(what: &str, err: kube::Error) -> Self {
        let settled = match api_status(&err) {
            Some(409) => Settled::StaleObject,
            Some(404) => Settled::ObjectGone,
            _ => Settled::KubeFailed,
        };
        Report::new(settled, "Kubernetes", format!("{what}: {err}"))
    }

    fn observed<K: ManagedKind>(mut self, status: Option<&K::Status>, verdict: &Verdict) -> Self {
        self.observed = Some(observed::<K>(status, verdict));
        self
    }

    /// The label of `alicloud_ops_reconcile_errors_total`, for a failed reconcile.
    pub fn error_label(&self) -> Option<&str> {
        match &self.settled {
            Settled::CloudFailed { class, .. } => Some(class.as_str()),
            Settled::CredentialsUnavailable { .. } => Some("Credentials"),
            Settled::StaleObject => Some("Conflict"),
            Settled::KubeFailed => Some("Kubernetes"),
            Settled::Panicked => Some("ReconcilePanicked"),
            _ => None,
        }
    }
}

/// What `/metrics` shows of a resource: the verdict, since when it has not been Ready (the
/// Ready condition's lastTransitionTime in `status` when that already says False, else now),
/// and its kind's figures.
fn observed<K: ManagedKind>(status: Option<&K::Status>, verdict: &Verdict) -> ObjectState {
    let not_ready_since = (!verdict.ready).then(|| {
        status
            .cloned()
            .and_then(|mut s| {
                let ready = K::common_status(&mut s).condition("Ready")?.clone();
                (ready.status == "False").then_some(ready.last_transition_time)
            })
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map_or_else(chrono::Utc::now, |t| t.to_utc())
            .timestamp() as f64
    });
    ObjectState {
        ready: verdict.ready,
        reason: verdict.reason.as_str(),
        not_ready_since,
        gauges: status.map(K::status_gauges).unwrap_or_default(),
    }
}

/// The whole route of one stage of one object through the spine: gates, plan, admission,
/// intent, act, conditions. `peers` are the other resources of the kind (empty for kinds
/// that do not read them); `default_resync` is the operator's.
pub async fn run_stage<K: ManagedKind, S: StatusSink<K>, C: CloudSides>(
    obj: &K,
    stage: Stage,
    peers: &[Arc<K>],
    sides: &C,
    sink: &S,
    default_resync: Duration,
) -> Report {
    let previous = obj.status().cloned().unwrap_or_default();
    // The conditions of a reconcile stopped at a gate; the interval is not read there.
    let gate_ctx = plan_context(obj, default_resync);
    let (mut env, origin, draining, resync) = match gates(obj, stage, sides, default_resync).await {
        Gate::Open {
            env,
            origin,
            draining,
            resync,
        } => (env, origin, draining, resync),
        Gate::InvalidSpec { message } => {
            let v = Verdict::not_ready(Reason::InvalidSpec, message);
            return match write_conditions(obj, previous, &v, false, &gate_ctx, sink).await {
                Ok(status) => Report::new(
                    Settled::Planned {
                        reason: v.reason,
                        requeue_after: None,
                        remaining: obj.recorded(&status).len(),
                    },
                    v.reason.as_str(),
                    &v.message,
                )
                .observed::<K>(Some(&status), &v),
                Err(e) => Report::kube("writing status", e),
            };
        }
        Gate::CleanupSkipped { message } => {
            let mut report = Report::new(Settled::CleanupSkipped, "CleanupSkipped", message.clone());
            report.notes.push(Note {
                reason: events::CLEANUP_SKIPPED,
                action: "Delete",
                note: message,
                warning: false,
            });
            return report;
        }
        Gate::Suspended => {
            let v = Verdict::not_ready(Reason::Suspended, "spec.suspend is true: nothing is read or written");
            return match write_conditions(obj, previous, &v, false, &gate_ctx, sink).await {
                Ok(_) => Report::new(Settled::Suspended, v.reason.as_str(), &v.message).observed::<K>(obj.status(), &v),
                Err(e) => Report::kube("writing status", e),
            };
        }
        // Kubernetes failed to answer: back off and read again; the Secret may be fine.
        Gate::NoCredentials { error, .. } if error.is_transient() => {
            return Report::new(Settled::KubeFailed, "Kubernetes", error.to_string());
        }
        Gate::NoCredentials { error, remaining } => {
            let message = if remaining > 0 {
                format!(
                    "{error}; it is needed to undo what this resource did ({remaining}: {}). Restore the Secret, or \
                     set the annotation {SKIP_CLEANUP}=true to release the resource without cloud cleanup",
                    summarize(&obj.recorded(&previous))
                )
            } else {
                error.to_string()
            };
            let v = Verdict::not_ready(Reason::CredentialsInvalid, message);
            let report = Report::new(
                Settled::CredentialsUnavailable { remaining },
                v.reason.as_str(),
                &v.message,
            )
            .observed::<K>(obj.status(), &v);
            return match write_conditions(obj, previous, &v, false, &gate_ctx, sink).await {
                Ok(_) => report,
                // On deletion the object may already be gone; that is not a reason to stay.
                Err(e) if stage == Stage::Cleanup && remaining == 0 && api_status(&e) == Some(404) => report,
                Err(e) => Report::kube("writing status", e),
            };
        }
    };
    let mut plan_ctx = plan_context(obj, resync);
    let key = ObjectKey::of(obj);
    tracing::debug!(credentials = %origin, draining, "resolved credentials");
    env.max_age = plan_ctx.resync;
    env.cloud = env.cloud.for_holder(&key.to_string());
    env.recall = sides.recaller(&key);
    // Each value of the annotation is honoured once: the status records it, so a restart
    // does not read the whole fleet fresh again.
    let requested = obj
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(RECONCILE_REQUESTED_AT))
        .cloned();
    let honoured = K::common_status(&mut previous.clone()).reconcile_requested_at.clone();
    let fresh = requested.is_some() && requested != honoured;
    if fresh {
        plan_ctx.request = requested;
    }
    if K::PEERS_BY_ACCOUNT {
        env.peer_accounts = Arc::new(peer_accounts(obj, peers, sides).await);
    }
    if K::CLAIMS_TARGETS {
        env.rivals = Arc::new(rivals::<K, _>(sides).await);
    }
    let plan_stage = if draining { Stage::Cleanup } else { stage };
    let r: Reconciled<K> = match reconcile_once(obj, &env, peers, &plan_ctx, plan_stage, fresh, sink).await {
        Ok(r) => r,
        Err(e) => return Report::kube("writing status", e),
    };
    if let Some(CloudError::NotListedYet(_)) = r.error {
        return Report {
            resync: Some(resync),
            ..Report::new(Settled::NotListedYet, "", "")
        };
    }
    let mut notes: Vec<Note> = r
        .events
        .iter()
        .map(|(reason, note)| Note {
            reason,
            action: "Apply",
            note: note.clone(),
            warning: false,
        })
        .chain(K::transitions(&previous, &r.status).into_iter().map(|t| Note {
            reason: t.reason,
            action: "Apply",
            note: t.note,
            warning: t.warning,
        }))
        .collect();
    let remaining = r.recorded.len();
    let mut report = if let Some(err) = &r.error {
        let message = if stage == Stage::Cleanup && remaining > 0 {
            format!(
                "{err}; {remaining} change(s) still to undo ({}). Deletion waits for them; set the \
                 annotation {SKIP_CLEANUP}=true to release the resource without cloud cleanup",
                summarize(&r.recorded)
            )
        } else {
            err.to_string()
        };
        Report::new(
            Settled::CloudFailed {
                class: err.class(),
                remaining,
            },
            r.verdict.reason.as_str(),
            message,
        )
    } else if draining {
        notes.push(Note {
            reason: events::CREDENTIALS_CHANGED,
            action: "Apply",
            note: "credentialsRef changed: what the old credentials did is undone with them first".into(),
            warning: false,
        });
        Report::new(
            Settled::Draining { remaining },
            Reason::Applying.as_str(),
            &r.verdict.message,
        )
    } else {
        let message = if stage == Stage::Cleanup && remaining > 0 {
            format!(
                "{} change(s) still to undo ({}): {}",
                remaining,
                summarize(&r.recorded),
                r.verdict.message
            )
        } else {
            r.verdict.message.clone()
        };
        Report::new(
            Settled::Planned {
                reason: r.verdict.reason,
                requeue_after: r.requeue_after,
                remaining,
            },
            r.verdict.reason.as_str(),
            message,
        )
    };
    report.notes = notes;
    report.drift = r.drift;
    report.resync = Some(resync);
    report.observed::<K>(Some(&r.status), &r.verdict)
}

/// A reconcile panicked (a bug): say so in status (`ReconcilePanicked`) and report it; the
/// object is backed off alone, and the process and every other object go on.
pub async fn report_panic<K: ManagedKind, S: StatusSink<K>>(
    obj: &K,
    panic: &str,
    sink: &S,
    default_resync: Duration,
) -> Report {
    tracing::error!(panic = %panic, "reconcile panicked");
    let message = format!("the reconcile panicked: {panic}; backing off this object");
    let v = Verdict::not_ready(Reason::ReconcilePanicked, message.clone());
    let previous = obj.status().cloned().unwrap_or_default();
    if let Err(e) = write_conditions(obj, previous, &v, false, &plan_context(obj, default_resync), sink).await {
        tracing::warn!(error = %e, "cannot record the panic in status");
    }
    Report::new(Settled::Panicked, v.reason.as_str(), message).observed::<K>(obj.status(), &v)
}

/// Runs `work`, turning a panic into its message.
pub async fn guarded<F: Future>(work: F) -> Result<F::Output, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into())
        })
}

#[cfg(test)]
mod tests {
    use super::{error_verdict, guarded};
    use crate::cloud::CloudError;
    use crate::reconcile::Reason;

    /// A bug of ours (a panicking shared list) is never reported as the cloud's answer.
    #[test]
    fn an_internal_failure_is_reported_as_ours() {
        let v = error_verdict(&CloudError::Internal("a list panicked".into()));
        assert_eq!(v.reason, Reason::ReconcilePanicked);
    }

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(guarded(async { 7 }).await, Ok(7));
        let r: Result<(), String> = guarded(async { panic!("boom {}", 42) }).await;
        assert_eq!(r, Err("boom 42".to_string()));
        let r: Result<(), String> = guarded(async { std::panic::panic_any(3u8) }).await;
        assert_eq!(r, Err("a panic without a message".to_string()));
    }
}
