//! The wiring: one watch and one controller per registered kind, the shared watch of
//! credentials Secrets, readiness, and which watch events are worth a reconcile. What
//! happens to one object is in [`super::object`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher};
use kube::{Api, ResourceExt};
use tracing::warn;

use super::context::{CREDENTIALS_LABEL, Context};
use super::http::Readiness;
use super::kind::{ManagedKind, ObjectKey};
use super::object::{KindContext, error_policy, reconcile};
use super::registry::{EachKind, each_kind};

/// Where `kubectl apply` keeps the whole object it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the cache keeps of an object: neither managedFields nor the copy of the whole object
/// that `kubectl apply` leaves in an annotation. Nothing reads them, and they are most of an
/// object's size (10,000 resources).
fn trim_for_cache<K: ManagedKind>(o: &mut K) {
    o.managed_fields_mut().clear();
    if let Some(annotations) = o.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// What the controller keeps of a change that brings a resource back: its name. The
/// controller queues an `ObjectRef` made from the object, whose extra fields copy the uid and
/// resourceVersion; the queue holds each key twice, and at a cold start it holds every resource
/// at once (10,000 of them: four strings each that nothing reads). The reconcile reads the
/// object from the cache, which keeps them.
fn trigger_only<K: ManagedKind>(mut o: K) -> K {
    let meta = o.meta_mut();
    meta.uid = None;
    meta.resource_version = None;
    o
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

/// The last look at each object, by [`seen_key`]: [`what_the_operator_acts_on`], and whether
/// it had a status. Keyed by a hash of the name, not a copy of it: one entry per resource
/// (10,000 of them) is 24 bytes instead of four strings.
type LastSeen = Arc<Mutex<std::collections::HashMap<u64, (u64, bool)>>>;

/// The key of an object in [`LastSeen`]: a hash of its namespace and name.
fn seen_key<K: ManagedKind>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().namespace.hash(&mut h);
    obj.meta().name.hash(&mut h);
    h.finish()
}

/// Whether a watched object should be reconciled: what the operator acts on changed, or its
/// status disappeared (a restore without status, a replace of the status subresource: the
/// record is taken back from the cloud at once). A status that appears (the operator's
/// first write) brings nothing. Deleted objects are dropped from `seen` by the watch.
fn worth_a_reconcile<K: ManagedKind>(seen: &LastSeen, obj: &K) -> bool {
    let hash = what_the_operator_acts_on(obj);
    let has_status = obj.status().is_some_and(|s| *s != K::Status::default());
    let before = seen
        .lock()
        .expect("seen lock")
        .insert(seen_key(obj), (hash, has_status));
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
                tracing::debug!("readiness: channel closed");
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
    if K::CLAIMS_TARGETS {
        let store = store.clone();
        shared.add_claim_source(
            K::KIND,
            Arc::new(move || {
                store
                    .state()
                    .into_iter()
                    .map(|o| o as Arc<dyn crate::controller::kind::ClaimsTargets>)
                    .collect()
            }),
        );
    }
    let seen: LastSeen = Arc::default();
    // Ready once this kind's cache holds its first list (the CRD is installed and RBAC allows
    // it; the watcher retries with its own backoff until then). Told from the stream's first
    // InitDone, not by a second `Store::wait_until_ready`: its DelayedInit wakes only the last
    // task that polled it, which is the controller's runner, so a second waiter never woke and
    // the leader never turned ready.
    let mut ready = Some(ready);
    let forget = {
        let (shared, store, seen) = (shared.clone(), store.clone(), seen.clone());
        move |event: &watcher::Event<K>| match event {
            // Gone: its series and its backoff go too (a resource without a finalizer is
            // never reconciled again). After a re-list, whatever the list no longer has.
            watcher::Event::Delete(obj) => {
                shared.metrics.forget_object(&ObjectKey::of(obj));
                shared.reset_backoff(&ObjectKey::of(obj));
                seen.lock().expect("seen lock").remove(&seen_key(obj));
            }
            watcher::Event::InitDone => {
                if let Some(ready) = ready.take() {
                    tracing::debug!(kind = K::KIND, "the cache holds its first list");
                    // One message per kind, into a channel with room for every kind.
                    let _ = ready.try_send(K::KIND);
                }
                // The names borrowed from the cache, not copied: at 10,000 resources a set of
                // owned keys was megabytes at the moment the first list had just landed.
                let listed = store.state();
                let names: HashSet<(&str, &str)> = listed
                    .iter()
                    .map(|o| {
                        (
                            o.meta().namespace.as_deref().unwrap_or_default(),
                            o.meta().name.as_deref().unwrap_or_default(),
                        )
                    })
                    .collect();
                let exists = |key: &ObjectKey| names.contains(&(key.namespace.as_str(), key.name.as_str()));
                shared.metrics.forget_objects_of(K::KIND, exists);
                shared.forget_backoffs_of(K::KIND, exists);
                let seen_keys: HashSet<u64> = listed.iter().map(|o| seen_key(o.as_ref())).collect();
                seen.lock().expect("seen lock").retain(|k, _| seen_keys.contains(k));
            }
            _ => {}
        }
    };
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim_for_cache::<K>)
        .reflect(writer)
        .inspect_ok(forget)
        .applied_objects()
        .try_filter(move |obj| futures::future::ready(worth_a_reconcile(&seen, obj)))
        .map_ok(trigger_only);
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
    // A reconcile that found the shared list still paging, without its item yet, is brought
    // back by the page that holds it (see `KindEnv::recall`): it held no worker meanwhile.
    let (recalls, recalled) = futures::channel::mpsc::unbounded::<ObjectRef<K>>();
    shared.add_requeuer(
        K::KIND,
        Arc::new(move |key: &ObjectKey| {
            // Closed only when the controller has stopped: nothing is left to reconcile.
            let _ = recalls.unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        }),
    );
    let controller = controller
        .reconcile_on(affected)
        .reconcile_on(recalled)
        .with_config(ControllerConfig::default().concurrency(shared.config.concurrency))
        .graceful_shutdown_on(shutdown);
    let kctx = Arc::new(KindContext {
        shared: shared.clone(),
        store: store.clone(),
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
    use super::*;
    use crate::api::ImageShare;
    use kube::Resource;

    #[test]
    fn the_cache_keeps_what_the_operator_reads_and_nothing_else() {
        let mut obj: ImageShare = serde_json::from_value(serde_json::json!({
            "apiVersion": "ops.alicloud.dev/v1alpha1", "kind": "ImageShare",
            "metadata": {"name": "s", "namespace": "ns",
                "annotations": {LAST_APPLIED: "{\"spec\": {}}", "ops.alicloud.dev/skip-cleanup": "true"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"regionId": "cn-hangzhou", "imageId": "m-1"}
        }))
        .unwrap();
        trim_for_cache(&mut obj);
        assert!(obj.meta().managed_fields.as_ref().is_none_or(Vec::is_empty));
        let annotations = obj.meta().annotations.clone().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec!["ops.alicloud.dev/skip-cleanup"]
        );
    }
}
