//! One generic controller for every kind: finalizers where deletion has cloud work,
//! status by server-side apply, Events, metrics, and per-object backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info_span, warn};

use super::context::{Context, FIELD_MANAGER, FINALIZER, RECONCILE_REQUESTED_AT, SKIP_CLEANUP};
use super::kind::{ManagedKind, Stage};
use super::runner::{Reconciled, StatusSink, reconcile_once};
use crate::cloud::{CloudError, ErrorClass};
use crate::reconcile::{PlanContext, Reason, Verdict, conditions, duration};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cloud: {0}")]
    Cloud(#[source] CloudError),
    #[error("kubernetes: {0}")]
    Kube(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    pub fn metric_reason(&self) -> String {
        match self {
            Error::Cloud(e) => e.class().as_str().to_string(),
            Error::Kube(_) => "Kubernetes".into(),
            Error::Finalizer(_) => "Finalizer".into(),
        }
    }
}

/// Per-kind state: the shared context and this kind's cache of objects.
pub struct KindContext<K: ManagedKind> {
    pub shared: Arc<Context>,
    pub store: Store<K>,
}

struct KubeStatus<K: ManagedKind> {
    api: Api<K>,
}

impl<K: ManagedKind> StatusSink<K> for KubeStatus<K> {
    async fn write(&self, obj: &K, status: &K::Status) -> Result<(), String> {
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        self.api
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(drop)
            .map_err(|e| format!("writing status: {e}"))
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

fn resync_for<K: ManagedKind>(obj: &K, default: Duration) -> Duration {
    obj.common()
        .resync_interval
        .as_deref()
        .and_then(|r| duration::parse("spec.resyncInterval", r).ok())
        .unwrap_or(default)
}

/// A little jitter on periodic requeues, so resources created together do not resync together.
fn jittered(d: Duration) -> Duration {
    let spread = d.as_secs_f64() * 0.1;
    Duration::from_secs_f64(d.as_secs_f64() + rand::Rng::random_range(&mut rand::rng(), 0.0..=spread))
}

async fn write_verdict<K: ManagedKind>(
    api: &Api<K>,
    obj: &K,
    verdict: &Verdict,
    synced: Result<(), (&str, &str)>,
) -> Result<(), Error> {
    let mut status = obj.status().cloned().unwrap_or_default();
    let generation = obj.meta().generation.unwrap_or_default();
    conditions::apply(
        K::common_status(&mut status),
        verdict,
        synced,
        generation,
        chrono::Utc::now(),
    );
    if obj.status() != Some(&status) {
        KubeStatus { api: api.clone() }
            .write(obj, &status)
            .await
            .map_err(Error::Kube)?;
    }
    Ok(())
}

async fn apply<K: ManagedKind>(obj: Arc<K>, kctx: &KindContext<K>, stage: Stage) -> Result<Action, Error> {
    let ctx = &kctx.shared;
    let key = object_key(obj.as_ref());
    let next = apply_inner(obj, kctx, stage).await?;
    ctx.metrics.schedule(K::KIND, &key, next);
    Ok(match next {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Returns when to reconcile again (`None`: only when something changes).
async fn apply_inner<K: ManagedKind>(
    obj: Arc<K>,
    kctx: &KindContext<K>,
    stage: Stage,
) -> Result<Option<Duration>, Error> {
    let ctx = &kctx.shared;
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(obj.as_ref());
    let resync = resync_for(obj.as_ref(), ctx.config.resync);

    if stage == Stage::Cleanup && obj.annotations().get(SKIP_CLEANUP).map(String::as_str) == Some("true") {
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            "CleanupSkipped",
            "Delete",
            format!("{SKIP_CLEANUP}=true: released without cloud cleanup"),
        )
        .await;
        return Ok(None);
    }
    if stage == Stage::Apply && obj.common().suspend {
        let v = Verdict::not_ready(Reason::Suspended, "spec.suspend is true: nothing is read or written");
        write_verdict(&api, obj.as_ref(), &v, Err(("Suspended", "spec.suspend is true"))).await?;
        ctx.metrics
            .record_object(K::KIND, &key, false, Reason::Suspended.as_str());
        return Ok(None);
    }
    let (env, origin) = match ctx.env_for(&ns, obj.common()).await {
        Ok(e) => e,
        Err(e) => {
            let v = Verdict::not_ready(Reason::CredentialsInvalid, e.to_string());
            write_verdict(&api, obj.as_ref(), &v, Err((v.reason.as_str(), &v.message))).await?;
            publish(
                ctx,
                obj.as_ref(),
                EventType::Warning,
                Reason::CredentialsInvalid.as_str(),
                "Reconcile",
                e.to_string(),
            )
            .await;
            ctx.metrics
                .record_object(K::KIND, &key, false, Reason::CredentialsInvalid.as_str());
            // The Secret watch brings the resource back when the Secret appears or changes.
            return Ok(Some(resync));
        }
    };
    tracing::debug!(credentials = %origin, "resolved credentials");
    let fresh = ctx.newly_requested(&key, obj.annotations().get(RECONCILE_REQUESTED_AT).map(String::as_str));
    let peers: Vec<Arc<K>> = if stage == Stage::Apply {
        kctx.store.state()
    } else {
        vec![]
    };
    let plan_ctx = PlanContext {
        now: chrono::Utc::now(),
        generation: obj.meta().generation.unwrap_or_default(),
        policy: obj.common().management_policy,
        resync,
    };
    let sink = KubeStatus { api: api.clone() };
    let r: Reconciled<K> = reconcile_once(obj.as_ref(), &env, &peers, &plan_ctx, stage, fresh, &sink)
        .await
        .map_err(Error::Kube)?;

    for applied in &r.applied {
        publish(
            ctx,
            obj.as_ref(),
            EventType::Normal,
            "CloudWrite",
            "Apply",
            applied.clone(),
        )
        .await;
    }
    if r.drift {
        ctx.metrics
            .drift
            .get_or_create(&super::metrics::Metrics::kind(K::KIND))
            .inc();
    }
    ctx.metrics
        .record_object(K::KIND, &key, r.verdict.ready, r.verdict.reason.as_str());
    if let Some(err) = r.error {
        publish(
            ctx,
            obj.as_ref(),
            EventType::Warning,
            r.verdict.reason.as_str(),
            "Reconcile",
            err.to_string(),
        )
        .await;
        if stage == Stage::Cleanup && err.class() == ErrorClass::NotFound {
            // The cloud object is gone: nothing left to clean up.
            return Ok(None);
        }
        if err.class().is_retryable() || stage == Stage::Cleanup {
            return Err(Error::Cloud(err));
        }
        return Ok(Some(resync));
    }
    ctx.reset_backoff(&key);
    let reason = r.verdict.reason;
    if reason.is_terminal() && !matches!(reason, Reason::NotFound | Reason::Conflict) {
        publish(
            ctx,
            obj.as_ref(),
            EventType::Warning,
            reason.as_str(),
            "Reconcile",
            r.verdict.message.clone(),
        )
        .await;
        return Ok(None);
    }
    if stage == Stage::Cleanup {
        return Ok(None);
    }
    let next = r
        .requeue_after
        .map(|d| d.min(resync))
        .unwrap_or_else(|| jittered(resync));
    Ok(Some(next))
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
        let result = if uses_finalizer(obj.as_ref()) {
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
            finalizer(&api, FINALIZER, obj.clone(), |event| async {
                match event {
                    FinalizerEvent::Apply(o) => apply(o, &kctx, Stage::Apply).await,
                    FinalizerEvent::Cleanup(o) => apply(o, &kctx, Stage::Cleanup).await,
                }
            })
            .await
            .map_err(|e| match e {
                kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    e
                }
                other => Error::Finalizer(other.to_string()),
            })
        } else if obj.meta().deletion_timestamp.is_some() {
            Ok(Action::await_change())
        } else {
            apply(obj.clone(), &kctx, Stage::Apply).await
        };
        ctx.metrics.in_flight.get_or_create(&kind).dec();
        ctx.metrics.observe_reconcile(K::KIND, started.elapsed());

        if obj.meta().deletion_timestamp.is_some() && result.is_ok() {
            ctx.metrics.forget_object(K::KIND, &object_key(obj.as_ref()));
        }
        result
    }
    .instrument(span)
    .await
}

fn error_policy<K: ManagedKind>(obj: Arc<K>, err: &Error, kctx: Arc<KindContext<K>>) -> Action {
    let ctx = &kctx.shared;
    ctx.metrics
        .errors
        .get_or_create(&super::metrics::ErrorLabels {
            kind: K::KIND.into(),
            reason: err.metric_reason(),
        })
        .inc();
    let delay = ctx.next_backoff(&object_key(obj.as_ref()));
    ctx.metrics.schedule(K::KIND, &object_key(obj.as_ref()), Some(delay));
    warn!(kind = K::KIND, name = %obj.name_any(), error = %err, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller of one kind until `shutdown` resolves; in-flight reconciles finish.
pub async fn run<K: ManagedKind>(
    shared: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    ready: tokio::sync::mpsc::Sender<&'static str>,
) {
    let client = shared.client.clone();
    let (api, secrets): (Api<K>, Api<Secret>) = match &shared.config.namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller = Controller::new(api, watcher::Config::default().any_semantic());
    let store = controller.store();
    let mapper_store = store.clone();
    let controller = controller
        .watches(
            secrets,
            watcher::Config::default().any_semantic(),
            move |secret: Secret| {
                // Rotating a key re-reconciles every resource that names the Secret.
                let ns = secret.namespace();
                let name = secret.name_any();
                mapper_store
                    .state()
                    .into_iter()
                    .filter(|o| {
                        o.namespace() == ns && o.common().credentials_ref.as_ref().is_some_and(|r| r.name == name)
                    })
                    .map(|o| ObjectRef::from_obj(o.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(ControllerConfig::default().concurrency(shared.config.concurrency))
        .graceful_shutdown_on(shutdown);
    let kctx = Arc::new(KindContext {
        shared: shared.clone(),
        store: store.clone(),
    });
    // Ready once this kind can be listed (CRD installed, RBAC allows it); the controller's
    // cache fills from the same list right after.
    let probe: Api<K> = match &shared.config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match probe.list(&kube::api::ListParams::default().limit(1)).await {
                Ok(_) => {
                    let _ = ready.send(K::KIND).await;
                    return;
                }
                Err(e) => {
                    warn!(kind = K::KIND, error = %e, "cannot list; not ready yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
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
