//! One object's route through the controller: the finalizer, the spine
//! ([`runner::run_stage`]), and carrying out what [`next_step`] decides (Events, metrics,
//! backoff, the requeue, releasing the finalizer). Every reconcile ends in a [`Report`];
//! nothing is decided here that is not a row of the next-step table.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info_span, warn};

use super::context::{Context, FIELD_MANAGER, FINALIZER};
use super::kind::{ManagedKind, ObjectKey, Stage};
use super::metrics::{ErrorLabels, Metrics};
use super::next_step::{Requeue, Settled, next_step};
use super::runner::{self, Report, StatusSink};
use crate::reconcile::duration;

/// Per-kind state: the shared context and this kind's cache of objects.
pub struct KindContext<K: ManagedKind> {
    pub shared: Arc<Context>,
    pub store: Store<K>,
}

/// The status subresource, written by server-side apply with the object's
/// `resourceVersion` as a precondition: a write based on a stale copy fails with 409, and
/// the reconcile starts over from what the watch delivers next. The precondition follows
/// the reconcile's own writes, so intent and the conditions after it can both be written,
/// and the finalizer released after them.
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

    /// The `resourceVersion` after this reconcile's own writes.
    fn resource_version(&self) -> Option<String> {
        self.resource_version.lock().expect("resourceVersion lock").clone()
    }

    /// Sets the finalizers to `finalizers`, on the object as this reconcile last saw it: a
    /// change by anyone else in between fails with 409.
    async fn set_finalizers(&self, obj: &K, finalizers: Vec<String>) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {"resourceVersion": self.resource_version(), "finalizers": finalizers}});
        let written = self
            .api
            .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        *self.resource_version.lock().expect("resourceVersion lock") = written.meta().resource_version.clone();
        Ok(())
    }
}

impl<K: ManagedKind> StatusSink<K> for KubeStatus<K> {
    async fn write(&self, obj: &K, status: &K::Status) -> Result<(), kube::Error> {
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"resourceVersion": self.resource_version()},
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

/// A little jitter on periodic requeues, so resources created together do not resync together.
fn jittered(d: Duration) -> Duration {
    let spread = d.as_secs_f64() * duration::RESYNC_JITTER;
    let extra = rand::Rng::random_range(&mut rand::rng(), 0.0..=spread);
    d.saturating_add(Duration::try_from_secs_f64(extra).unwrap_or_default())
}

/// One more `alicloud_ops_reconcile_errors_total` for kind `K`, by `label`.
fn count_error<K: ManagedKind>(ctx: &Context, label: &str) {
    let labels = ErrorLabels {
        kind: K::KIND.into(),
        reason: label.to_string(),
    };
    ctx.metrics.errors.get_or_create(&labels).inc();
}

fn has_finalizer<K: ManagedKind>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// The finalizer first (where deletion has cloud work), then the spine.
async fn route<K: ManagedKind>(obj: &K, kctx: &KindContext<K>, stage: Stage, sink: &KubeStatus<K>) -> Report {
    let ctx = &kctx.shared;
    match stage {
        Stage::Cleanup if !has_finalizer(obj) => Report::new(Settled::NoFinalizer, "", ""),
        Stage::Apply if obj.needs_finalizer() && !has_finalizer(obj) => {
            let mut finalizers = obj.finalizers().to_vec();
            finalizers.push(FINALIZER.to_string());
            match sink.set_finalizers(obj, finalizers).await {
                Ok(()) => Report::new(Settled::FinalizerAdded, "", ""),
                Err(e) => Report::kube("adding the finalizer", e),
            }
        }
        _ => {
            let peers: Vec<Arc<K>> = if K::READS_PEERS { kctx.store.state() } else { Vec::new() };
            runner::run_stage(obj, stage, &peers, ctx.as_ref(), sink, ctx.config.resync).await
        }
    }
}

/// Carries out what [`next_step`] decides for `report`: Events, metrics, the backoff, the
/// finalizer, and when to come back.
async fn carry_out<K: ManagedKind>(
    obj: &K,
    kctx: &KindContext<K>,
    stage: Stage,
    report: Report,
    sink: &KubeStatus<K>,
) -> Action {
    let ctx = &kctx.shared;
    let key = ObjectKey::of(obj);
    let resync = report.resync.unwrap_or(ctx.config.resync);
    let mut next = next_step(stage, &report.settled, resync);
    for n in &report.notes {
        let kind = if n.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, obj, kind, n.reason, n.action, n.note.clone()).await;
    }
    if next.warn {
        let action = if stage == Stage::Cleanup { "Delete" } else { "Reconcile" };
        publish(
            ctx,
            obj,
            EventType::Warning,
            &report.reason,
            action,
            report.message.clone(),
        )
        .await;
    }
    if let Some(label) = report.error_label() {
        count_error::<K>(ctx, label);
        warn!(reason = label, error = %report.message, "reconcile failed");
    }
    if report.drift {
        ctx.metrics.drift.get_or_create(&Metrics::kind(K::KIND)).inc();
    }
    if let Some(state) = report.observed {
        ctx.metrics.record_object(&key, state);
    }
    let mut gone = matches!(report.settled, Settled::NoFinalizer);
    if next.release_finalizer {
        let rest: Vec<String> = obj.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
        match sink.set_finalizers(obj, rest).await {
            Ok(()) => gone = true,
            // Its own row decides: a stale copy comes back, a vanished object needs nothing.
            Err(e) => {
                let failed = Report::kube("removing the finalizer", e);
                warn!(error = %failed.message, "cannot release the finalizer");
                next = next_step(stage, &failed.settled, resync);
                if let Some(label) = failed.error_label() {
                    count_error::<K>(ctx, label);
                }
            }
        }
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
    if gone {
        // Nothing more will happen to it: its series and its backoff go.
        ctx.metrics.forget_object(&key);
        ctx.reset_backoff(&key);
    } else {
        ctx.metrics.schedule(&key, delay);
    }
    delay.map(Action::requeue).unwrap_or_else(Action::await_change)
}

/// The reconcile of one object: every way it can end, a panic included, is a [`Report`]
/// carried out by [`carry_out`]. It never fails, so the controller's error policy is never
/// asked.
pub async fn reconcile<K: ManagedKind>(obj: Arc<K>, kctx: Arc<KindContext<K>>) -> Result<Action, Infallible> {
    let span = info_span!("reconcile", kind = K::KIND, namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    async move {
        let ctx = &kctx.shared;
        let kind = Metrics::kind(K::KIND);
        let started = Instant::now();
        ctx.metrics.started(&ObjectKey::of(obj.as_ref()));
        ctx.metrics.in_flight.get_or_create(&kind).inc();
        let stage = if obj.meta().deletion_timestamp.is_some() {
            Stage::Cleanup
        } else {
            Stage::Apply
        };
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
        let sink = KubeStatus::new(api, obj.as_ref());
        // A panic in one reconcile stays with that object: reported, and backed off.
        let report = match runner::guarded(route(obj.as_ref(), &kctx, stage, &sink)).await {
            Ok(report) => report,
            Err(panic) => runner::report_panic(obj.as_ref(), &panic, &sink, ctx.config.resync).await,
        };
        let action = carry_out(obj.as_ref(), &kctx, stage, report, &sink).await;
        ctx.metrics.in_flight.get_or_create(&kind).dec();
        ctx.metrics.observe_reconcile(K::KIND, started.elapsed());
        Ok(action)
    }
    .instrument(span)
    .await
}

/// Never called: [`reconcile`] cannot fail.
pub fn error_policy<K: ManagedKind>(_obj: Arc<K>, err: &Infallible, _kctx: Arc<KindContext<K>>) -> Action {
    match *err {}
}
