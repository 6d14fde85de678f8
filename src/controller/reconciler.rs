//! One generic controller for every kind: finalizers where deletion has cloud work,
//! status by server-side apply, Events, metrics, and per-object backoff.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info_span, warn};

use super::context::{CREDENTIALS_LABEL, Context, FIELD_MANAGER, FINALIZER, RECONCILE_REQUESTED_AT, SKIP_CLEANUP};
use super::events;
use super::http::Readiness;
use super::kind::{ManagedKind, Stage, resync_for};
use super::metrics::ObjectState;
use super::next_step::{Requeue, Settled, next_step};
use super::registry::{EachKind, each_kind};
use super::runner::{Reconciled, StatusSink, reconcile_once, settle};
use crate::api::common::CredentialsRef;
use crate::reconcile::{PlanContext, Reason, Verdict, duration};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Kube {
        context: &'static str,
        #[source]
        source: kube::Error,
    },
    /// Deletion waits: something the resource did in the cloud is not undone yet.
    #[error("cleanup not finished: {message}")]
    CleanupPending { message: String, retry_in: Duration },
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// The HTTP status of a Kubernetes API error, if it was one.
fn api_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Error {
    fn is_gone(&self) -> bool {
        matches!(self, Error::Kube { source, .. } if api_status(source) == Some(404))
    }
}

/// Per-kind state: the shared context and this kind's cache of objects.
pub struct KindContext<K: ManagedKind> {
    pub shared: Arc<Context>,
    pub store: Store<K>,
}

/// The status subresource, written by server-side apply with the object's
/// `resourceVersion` as a precondition: a write based on a stale copy fails with 409, and
/// the reconcile starts over from what the watch delivers next. The precondition follows
/// the reconcile's own writes, so intent and settlement can both be written.
pub struct KubeStatus<K: ManagedKind> {
    api: Api<K>,
    resource_version: Mutex<Option<String>>,
}

impl<K: ManagedKind> KubeStatus<K> {
    pub fn new(api: Api<K>, obj: &K) -> Self {
        KubeStatus {
            api,
            resource_version: Mutex::new(obj.meta().resource_version.clone()),
        }
    }
}

impl<K: ManagedKind> StatusSink<K> for KubeStatus<K> {
    async fn write(&self, obj: &K, status: &K::Status) -> Result<(), kube::Error> {
        let rv = self.resource_version.lock().expect("resourceVersion lock").clone();
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"resourceVersion": rv},
            "status": status,
        });
        let written = self
            .api
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        *self.resource_version.lock().expect("resourceVersion lock") = written.meta().resource_version.clone();
        Ok(())
    }
}

fn object_key<K: ManagedKind>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

async fn publish<K: ManagedKind>(ctx: &Context, obj: &K, type_: EventType, reason: &str, action: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, "cannot publish an Event");
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
        reason: verdict.reason.as_str().to_string(),
        not_ready_since,
        gauges: status.map(K::status_gauges).unwrap_or_default(),
    }
}

/// A little jitter on periodic requeues, so resources created together do not resync together.
fn jittered(d: Duration) -> Duration {
    let spread = d.as_secs_f64() * duration::RESYNC_JITTER;
    let extra = rand::Rng::random_range(&mut rand::rng(), 0.0..=spread);
    d.saturating_add(Duration::try_from_secs_f64(extra).unwrap_or_default())
}

/// What a stage came to, with the words for a Warning Event.
struct Report {
    settled: Settled,
    reason: String,
    message: String,
}

impl Report {
    fn new(settled: Settled, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Report {
            settled,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn kube(err: kube::Error) -> Self {
        let settled = match api_status(&err) {
            Some(409) => Settled::StaleObject,
            Some(404) => Settled::ObjectGone,
            _ => Settled::KubeFailed,
        };
        Report::new(settled, "Kubernetes", format!("writing status: {err}"))
    }

    /// The label of `alicloud_ops_reconcile_errors_total`, for a failed reconcile.
    fn error_label(&self) -> Option<&str> {
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

fn summarize(items: &[String]) -> String {
    if items.len() > 5 {
        format!("{}, ... ({} in all)", items[..5].join(", "), items.len())
    } else {
        items.join(", ")
    }
}

async fn apply<K: ManagedKind>(obj: Arc<K>, kctx: &KindContext<K>, stage: Stage) -> Result<Action, Error> {
    let resync = resync_for(obj.as_ref(), kctx.shared.config.resync);
    let report = run_stage(obj.clone(), kctx, stage).await;
    finish(obj.as_ref(), kctx, stage, report, resync).await
}

/// Carries out what [`next_step`] decides for a report: the Warning Event, the error
/// metric, the backoff, the requeue, and whether the finalizer may go.
async fn finish<K: ManagedKind>(
    obj: &K,
    kctx: &KindContext<K>,
    stage: Stage,
    report: Report,
    resync: Duration,
) -> Result<Action, Error> {
    let ctx = &kctx.shared;
    let key = object_key(obj);
    let next = next_step(stage, &report.settled, resync);
    if next.warn {
        publish(
            ctx,
            obj,
            EventType::Warning,
            &report.reason,
            if stage == Stage::Cleanup { "Delete" } else { "Reconcile" },
            report.message.clone(),
        )
        .await;
    }
    if let Some(label) = report.error_label() {
        ctx.metrics
            .errors
            .get_or_create(&super::metrics::ErrorLabels {
                kind: K::KIND.into(),
                reason: label.to_string(),
            })
            .inc();
        warn!(reason = label, error = %report.message, "reconcile failed");
    }
    if next.reset_backoff {
        ctx.reset_backoff(&key);
    }
    let delay = match next.requeue {
        Requeue::Resync => Some(jittered(resync)),
        Requeue::After(d) => Some(d),
        Requeue::Backoff => Some(ctx.next_backoff(&key)),
        Requeue::OnChange => None,
    };
    ctx.metrics.schedule(K::KIND, &key, delay);
    if stage == Stage::Cleanup && !next.release_finalizer {
        return Err(Error::CleanupPending {
            message: report.message,
            retry_in: delay.unwrap_or(resync),
        });
    }
    Ok(delay.map(Action::requeue).unwrap_or_else(Action::await_change))
}

/// How many peers' credentials one reconcile resolves at once.
const PEER_READS_AT_ONCE: usize = 8;

/// Runs one stage and reports how it ended; every outcome goes through [`next_step`].
async fn run_stage<K: ManagedKind>(obj: Arc<K>, kctx: &KindContext<K>, stage: Stage) -> Report {
    let ctx = &kctx.shared;
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(obj.as_ref());
    let sink = KubeStatus::new(api, obj.as_ref());
    let previous = obj.status().cloned().unwrap_or_default();
    let recorded_before = obj.recorded(&previous);
    let mut plan_ctx = PlanContext {
        now: chrono::Utc::now(),
        generation: obj.meta().generation.unwrap_or_default(),
        policy: obj.common().management_policy,
        resync: resync_for(obj.as_ref(), ctx.config.resync),
        request: None,
    };

    if stage == Stage::Cleanup && obj.annotations().get(SKIP_CLEANUP).map(String::as_str) == Some("true") {
        let message = if recorded_before.is_empty() {
            format!("{SKIP_CLEANUP}=true: released without cloud cleanup")
        } else {
            format!(
                "{SKIP_CLEANUP}=true: released without cloud cleanup, leaving {} as they are: {}",
                recorded_before.len(),
                summarize(&recorded_before)
            )
        };
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            events::CLEANUP_SKIPPED,
            "Delete",
            message.clone(),
        )
        .await;
        return Report::new(Settled::CleanupSkipped, "CleanupSkipped", message);
    }
    if stage == Stage::Apply && obj.common().suspend {
        let v = Verdict::not_ready(Reason::Suspended, "spec.suspend is true: nothing is read or written");
        ctx.metrics
            .record_object(K::KIND, &key, observed::<K>(obj.status(), &v));
        return match settle(obj.as_ref(), previous, &v, false, &plan_ctx, &sink).await {
            Ok(_) => Report::new(Settled::Suspended, v.reason.as_str(), v.message),
            Err(e) => Report::kube(e),
        };
    }

    // Recorded writes are undone with the credentials that made them. When the spec now
    // names another cloud account, the record is undone first (a "drain"), then the new
    // one takes over. A key rotated within one account (a new Secret name, another RAM user)
    // is no drain, and neither are credentials that cannot be resolved (a Secret pruned by
    // the same apply, a typo): nothing is exited on a guess.
    let spec_ref = obj.common().credentials_ref.clone();
    let pinned = K::recorded_with(&previous).filter(|p| !recorded_before.is_empty() && *p != spec_ref);
    let use_pinned = match &pinned {
        Some(p) => {
            // Both sides resolved now (the cache may hold a failure of a moment ago).
            let old = ctx.resolve_account(&ns, p.as_ref()).await;
            let new = ctx.resolve_account(&ns, spec_ref.as_ref()).await;
            matches!((old, new), (Some(old), Some(new)) if old != new)
        }
        None => false,
    };
    let draining = use_pinned && stage == Stage::Apply;
    let credentials_ref = if use_pinned { pinned.flatten() } else { spec_ref };
    let (mut env, origin) = match ctx.env_for(&ns, credentials_ref.as_ref()).await {
        Ok(e) => e,
        // Kubernetes failed to answer: back off and read again; the Secret may be fine.
        Err(e) if e.is_transient() => return Report::new(Settled::KubeFailed, "Kubernetes", e.to_string()),
        Err(e) => {
            let remaining = recorded_before.len();
            let message = if remaining > 0 {
                format!(
                    "{e}; it is needed to undo what this resource did ({remaining}: {}). Restore the Secret, or \
                     set the annotation {SKIP_CLEANUP}=true to release the resource without cloud cleanup",
                    summarize(&recorded_before)
                )
            } else {
                e.to_string()
            };
            let v = Verdict::not_ready(Reason::CredentialsInvalid, message);
            ctx.metrics
                .record_object(K::KIND, &key, observed::<K>(obj.status(), &v));
            return match settle(obj.as_ref(), previous, &v, false, &plan_ctx, &sink).await {
                Ok(_) => Report::new(
                    Settled::CredentialsUnavailable { remaining },
                    v.reason.as_str(),
                    v.message,
                ),
                // On deletion the object may already be gone; that is not a reason to stay.
                Err(e) if stage == Stage::Cleanup && remaining == 0 && api_status(&e) == Some(404) => Report::new(
                    Settled::CredentialsUnavailable { remaining },
                    v.reason.as_str(),
                    v.message,
                ),
                Err(e) => Report::kube(e),
            };
        }
    };
    tracing::debug!(credentials = %origin, draining, "resolved credentials");
    env.max_age = plan_ctx.resync;
    env.cloud = env.cloud.for_holder(&key);
    // Each value of the annotation is honoured once: the status records it, so a restart
    // does not read the whole fleet fresh again.
    let requested = obj.annotations().get(RECONCILE_REQUESTED_AT).cloned();
    let honoured = K::common_status(&mut previous.clone()).reconcile_requested_at.clone();
    let fresh = requested.is_some() && requested != honoured;
    if fresh {
        plan_ctx.request = requested;
    }
    let peers: Vec<Arc<K>> = if K::READS_PEERS { kctx.store.state() } else { Vec::new() };
    if K::PEERS_BY_ACCOUNT {
        // The peers' credentials are resolved side by side (each Secret once, then cached).
        let wanted: Vec<(String, String, Option<CredentialsRef>)> = peers
            .iter()
            .filter(|p| p.region() == obj.region() && p.meta().uid != obj.meta().uid)
            .map(|p| {
                let p_ns = p.namespace().unwrap_or_default();
                (
                    super::kind::full_name(p.meta()),
                    p_ns,
                    p.common().credentials_ref.clone(),
                )
            })
            .collect();
        let resolved: Vec<(String, Option<String>)> = futures::stream::iter(wanted)
            .map(|(key, p_ns, credentials)| {
                let ctx = ctx.clone();
                async move { (key, ctx.account_of(&p_ns, credentials.as_ref()).await) }
            })
            .buffer_unordered(PEER_READS_AT_ONCE)
            .collect()
            .await;
        let accounts = resolved.into_iter().filter_map(|(k, a)| Some((k, a?))).collect();
        env.peer_accounts = Arc::new(accounts);
    }
    let plan_stage = if draining { Stage::Cleanup } else { stage };
    let r: Reconciled<K> = match reconcile_once(obj.as_ref(), &env, &peers, &plan_ctx, plan_stage, fresh, &sink).await {
        Ok(r) => r,
        Err(e) => return Report::kube(e),
    };

    for (reason, note) in &r.events {
        publish(ctx, obj.as_ref(), EventType::Normal, reason, "Apply", note.clone()).await;
    }
    if r.drift {
        ctx.metrics
            .drift
            .get_or_create(&super::metrics::Metrics::kind(K::KIND))
            .inc();
    }
    ctx.metrics
        .record_object(K::KIND, &key, observed::<K>(Some(&r.status), &r.verdict));
    let remaining = r.recorded.len();
    if let Some(err) = r.error {
        let message = if stage == Stage::Cleanup && remaining > 0 {
            format!(
                "{err}; {remaining} change(s) still to undo ({}). Deletion waits for them; set the \
                 annotation {SKIP_CLEANUP}=true to release the resource without cloud cleanup",
                summarize(&r.recorded)
            )
        } else {
            err.to_string()
        };
        return Report::new(
            Settled::CloudFailed {
                class: err.class(),
                remaining,
            },
            r.verdict.reason.as_str(),
            message,
        );
    }
    if draining {
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            events::CREDENTIALS_CHANGED,
            "Apply",
            "credentialsRef changed: what the old credentials did is undone with them first".into(),
        )
        .await;
        let requeue_after = Some(super::next_step::STALE_RETRY);
        return Report::new(
            Settled::Planned {
                reason: Reason::Applying,
                requeue_after,
                remaining,
            },
            Reason::Applying.as_str(),
            r.verdict.message,
        );
    }
    let message = if stage == Stage::Cleanup && remaining > 0 {
        format!(
            "{} change(s) still to undo ({}): {}",
            remaining,
            summarize(&r.recorded),
            r.verdict.message
        )
    } else {
        r.verdict.message
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
}

/// Runs `work`, turning a panic into its message.
async fn guarded<F: std::future::Future>(work: F) -> Result<F::Output, String> {
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

/// A reconcile panicked: say so on the object (Warning Event, `ReconcilePanicked` in
/// status) and back off that object alone; the process and every other object go on.
async fn report_panic<K: ManagedKind>(obj: &K, kctx: &KindContext<K>, stage: Stage, panic: String) -> Action {
    let ctx = &kctx.shared;
    let key = object_key(obj);
    tracing::error!(panic = %panic, "reconcile panicked");
    let message = format!("the reconcile panicked: {panic}; backing off this object");
    let v = Verdict::not_ready(Reason::ReconcilePanicked, message.clone());
    let plan_ctx = PlanContext {
        now: chrono::Utc::now(),
        generation: obj.meta().generation.unwrap_or_default(),
        policy: obj.common().management_policy,
        resync: ctx.config.resync,
        request: None,
    };
    let sink = KubeStatus::new(
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default()),
        obj,
    );
    let previous = obj.status().cloned().unwrap_or_default();
    if let Err(e) = settle(obj, previous, &v, false, &plan_ctx, &sink).await {
        warn!(error = %e, "cannot record the panic in status");
    }
    ctx.metrics
        .record_object(K::KIND, &key, observed::<K>(obj.status(), &v));
    let report = Report::new(Settled::Panicked, v.reason.as_str(), message);
    finish(obj, kctx, stage, report, ctx.config.resync)
        .await
        .unwrap_or_else(|e| match e {
            Error::CleanupPending { retry_in, .. } => Action::requeue(retry_in),
            _ => Action::requeue(ctx.next_backoff(&key)),
        })
}

fn uses_finalizer<K: ManagedKind>(obj: &K) -> bool {
    obj.needs_finalizer() || obj.finalizers().iter().any(|f| f == FINALIZER)
}

async fn reconcile<K: ManagedKind>(obj: Arc<K>, kctx: Arc<KindContext<K>>) -> Result<Action, Error> {
    let span = info_span!("reconcile", kind = K::KIND, namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    async move {
        let ctx = &kctx.shared;
        let kind = super::metrics::Metrics::kind(K::KIND);
        let started = Instant::now();
        let key = object_key(obj.as_ref());
        ctx.metrics.started(K::KIND, &key);
        ctx.metrics.in_flight.get_or_create(&kind).inc();
        let stage = if obj.meta().deletion_timestamp.is_some() {
            Stage::Cleanup
        } else {
            Stage::Apply
        };
        let work = async {
            if uses_finalizer(obj.as_ref()) {
                let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
                finalizer(&api, FINALIZER, obj.clone(), |event| async {
                    match event {
                        FinalizerEvent::Apply(o) => apply(o, &kctx, Stage::Apply).await,
                        FinalizerEvent::Cleanup(o) => apply(o, &kctx, Stage::Cleanup).await,
                    }
                })
                .await
                .map_err(|e| match e {
                    kube::runtime::finalizer::Error::ApplyFailed(e)
                    | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
                    kube::runtime::finalizer::Error::AddFinalizer(source) => Error::Kube {
                        context: "adding the finalizer",
                        source,
                    },
                    kube::runtime::finalizer::Error::RemoveFinalizer(source) => Error::Kube {
                        context: "removing the finalizer",
                        source,
                    },
                    other => Error::Finalizer(other.to_string()),
                })
            } else if obj.meta().deletion_timestamp.is_some() {
                Ok(Action::await_change())
            } else {
                apply(obj.clone(), &kctx, Stage::Apply).await
            }
        };
        // A panic in one reconcile stays with that object: reported, and backed off.
        let result = match guarded(work).await {
            Ok(r) => r,
            Err(panic) => Ok(report_panic(obj.as_ref(), &kctx, stage, panic).await),
        };
        ctx.metrics.in_flight.get_or_create(&kind).dec();
        ctx.metrics.observe_reconcile(K::KIND, started.elapsed());

        // An object that is already gone needs nothing more.
        let result = match result {
            Err(e) if e.is_gone() => Ok(Action::await_change()),
            other => other,
        };
        if obj.meta().deletion_timestamp.is_some() && result.is_ok() {
            ctx.metrics.forget_object(K::KIND, &object_key(obj.as_ref()));
        }
        result
    }
    .instrument(span)
    .await
}

/// Only failures outside [`apply`] reach here (it decides its own requeue), plus a
/// deletion that waits for its cleanup, which carries the delay [`next_step`] chose.
fn error_policy<K: ManagedKind>(obj: Arc<K>, err: &Error, kctx: Arc<KindContext<K>>) -> Action {
    let ctx = &kctx.shared;
    let key = object_key(obj.as_ref());
    let delay = match err {
        Error::CleanupPending { retry_in, .. } => *retry_in,
        other => {
            ctx.metrics
                .errors
                .get_or_create(&super::metrics::ErrorLabels {
                    kind: K::KIND.into(),
                    reason: "Kubernetes".into(),
                })
                .inc();
            warn!(kind = K::KIND, name = %obj.name_any(), error = %other, "reconcile failed");
            ctx.next_backoff(&key)
        }
    };
    ctx.metrics.schedule(K::KIND, &key, Some(delay));
    Action::requeue(delay)
}

/// What a change must touch to bring a resource back before its requeue: the spec (the
/// generation, which deletion also bumps), annotations (`reconcile-requested-at`,
/// `skip-cleanup`) and finalizers. The operator's own status writes are not among them, so
/// each write does not cost a second reconcile; requeues and resyncs come on their own.
fn what_the_operator_acts_on<K: ManagedKind>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

/// The last look at each object: [`what_the_operator_acts_on`], and whether it had a status.
type LastSeen<K> = Arc<Mutex<std::collections::HashMap<ObjectRef<K>, (u64, bool)>>>;

/// Whether a watched object should be reconciled: what the operator acts on changed, or its
/// status disappeared (a restore without status, a replace of the status subresource: the
/// record is taken back from the cloud at once). A status that appears (the operator's
/// first write) brings nothing. Deleted objects are dropped from `seen` by the watch.
fn worth_a_reconcile<K: ManagedKind>(seen: &LastSeen<K>, obj: &K) -> bool {
    let hash = what_the_operator_acts_on(obj);
    let has_status = obj.status().is_some_and(|s| *s != K::Status::default());
    let before = seen
        .lock()
        .expect("seen lock")
        .insert(ObjectRef::from_obj(obj), (hash, has_status));
    match before {
        None => true,
        Some((h, had)) => h != hash || (had && !has_status),
    }
}

/// A credentials Secret that changed (or went away): `(namespace, name)`.
pub type SecretChange = (String, String);

/// The one shared watch of credentials Secrets: metadata only, only Secrets labelled
/// [`CREDENTIALS_LABEL`]`=true` (a metadata watch of every Secret would still carry the
/// values that `kubectl apply` copies into an annotation). Each change drops the cached
/// values and is passed on to every kind's controller.
pub async fn watch_credentials_secrets(shared: Arc<Context>, changes: tokio::sync::broadcast::Sender<SecretChange>) {
    use kube::core::PartialObjectMeta;
    let api: Api<PartialObjectMeta<Secret>> = match &shared.config.namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let config = watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true"));
    watcher(api, config)
        .default_backoff()
        .for_each(|event| {
            let shared = shared.clone();
            let changes = changes.clone();
            async move {
                match event {
                    Ok(watcher::Event::Apply(m) | watcher::Event::Delete(m)) => {
                        let (ns, name) = (m.namespace().unwrap_or_default(), m.name_any());
                        shared.forget_secret(&ns, &name);
                        let _ = changes.send((ns, name));
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "watching credentials Secrets"),
                }
            }
        })
        .await;
}

/// Runs the Secret feed and the controller of every registered kind until `halt` turns
/// true; in-flight reconciles finish. `readiness` turns ready once every kind's cache holds
/// its first list.
pub async fn run_all(shared: Arc<Context>, halt: tokio::sync::watch::Receiver<bool>, readiness: Arc<Readiness>) {
    let kinds = super::registry::names().len();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(kinds);
    let readiness_task = tokio::spawn(async move {
        for _ in 0..kinds {
            if ready_rx.recv().await.is_none() {
                return;
            }
        }
        readiness.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!("caches synced: ready");
    });
    let (secret_tx, _) = tokio::sync::broadcast::channel(1024);
    let secret_watch = tokio::spawn(watch_credentials_secrets(shared.clone(), secret_tx.clone()));

    struct Controllers {
        shared: Arc<Context>,
        halt: tokio::sync::watch::Receiver<bool>,
        ready: tokio::sync::mpsc::Sender<&'static str>,
        secrets: tokio::sync::broadcast::Sender<SecretChange>,
    }
    impl EachKind for Controllers {
        type Output = futures::future::BoxFuture<'static, ()>;
        fn visit<K: ManagedKind>(&mut self) -> Self::Output {
            let mut halt = self.halt.clone();
            let stopped = async move {
                let _ = halt.wait_for(|h| *h).await;
            };
            Box::pin(run::<K>(
                self.shared.clone(),
                stopped,
                self.ready.clone(),
                self.secrets.subscribe(),
            ))
        }
    }
    let controllers = each_kind(&mut Controllers {
        shared,
        halt,
        ready: ready_tx,
        secrets: secret_tx,
    });
    futures::future::join_all(controllers).await;
    secret_watch.abort();
    readiness_task.abort();
}

/// Runs the controller of one kind until `shutdown` resolves; in-flight reconciles finish.
async fn run<K: ManagedKind>(
    shared: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ready: tokio::sync::mpsc::Sender<&'static str>,
    secret_changes: tokio::sync::broadcast::Receiver<SecretChange>,
) {
    let client = shared.client.clone();
    let api: Api<K> = match &shared.config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Lists come from the apiserver's quorum read, never its watch cache: a list older than
    // what was already observed could undo a recorded intent. (Writes carry a precondition
    // as well; this keeps conflicts rare.)
    let (store, writer) = kube::runtime::reflector::store::<K>();
    let seen: LastSeen<K> = Arc::default();
    let forget = {
        let (shared, store, seen) = (shared.clone(), store.clone(), seen.clone());
        move |event: &watcher::Event<K>| match event {
            // Gone: its series and its backoff go too (a resource without a finalizer is
            // never reconciled again). After a re-list, whatever the list no longer has.
            watcher::Event::Delete(obj) => {
                shared.metrics.forget_object(K::KIND, &object_key(obj));
                shared.reset_backoff(&object_key(obj));
                seen.lock().expect("seen lock").remove(&ObjectRef::from_obj(obj));
            }
            watcher::Event::InitDone => {
                let keys: HashSet<String> = store.state().iter().map(|o| object_key(o.as_ref())).collect();
                shared.metrics.forget_objects_of(K::KIND, |key| keys.contains(key));
                shared.forget_backoffs_of(K::KIND, |key| keys.contains(key));
                let refs: HashSet<ObjectRef<K>> =
                    store.state().iter().map(|o| ObjectRef::from_obj(o.as_ref())).collect();
                seen.lock().expect("seen lock").retain(|r, _| refs.contains(r));
            }
            _ => {}
        }
    };
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        // The cache keeps no managedFields: nothing reads them, and they are most of an
        // object's size (10,000 resources).
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_ok(forget)
        .applied_objects()
        .try_filter(move |obj| futures::future::ready(worth_a_reconcile(&seen, obj)));
    let controller = Controller::for_stream(changes, store.clone());
    let mapper_store = store.clone();
    // Rotating a key re-reconciles every resource that names the Secret.
    let affected = futures::stream::unfold(secret_changes, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(change) => return Some((change, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .flat_map(move |(ns, name): SecretChange| {
        let refs: Vec<ObjectRef<K>> = mapper_store
            .state()
            .into_iter()
            .filter(|o| {
                o.namespace().as_deref() == Some(ns.as_str())
                    && o.common().credentials_ref.as_ref().is_some_and(|r| r.name == name)
            })
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect();
        futures::stream::iter(refs)
    });
    let controller = controller
        .reconcile_on(affected)
        .with_config(ControllerConfig::default().concurrency(shared.config.concurrency))
        .graceful_shutdown_on(shutdown);
    let kctx = Arc::new(KindContext {
        shared: shared.clone(),
        store: store.clone(),
    });
    // Ready once this kind's cache holds its first list (the CRD is installed and RBAC
    // allows it); the watcher retries with its own backoff until then.
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            let _ = ready.send(K::KIND).await;
        }
    });
    controller
        .run(reconcile::<K>, error_policy::<K>, kctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::guarded;

    #[tokio::test]
    async fn a_panic_becomes_its_message() {
        assert_eq!(guarded(async { 7 }).await, Ok(7));
        let r: Result<(), String> = guarded(async { panic!("boom {}", 42) }).await;
        assert_eq!(r, Err("boom 42".to_string()));
        let r: Result<(), String> = guarded(async { std::panic::panic_any(3u8) }).await;
        assert_eq!(r, Err("a panic without a message".to_string()));
    }
}
