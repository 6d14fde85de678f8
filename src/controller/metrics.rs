//! The operator's Prometheus metrics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::kind::ObjectKey;
use crate::cloud::metrics::CloudMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub kind: String,
    /// The Ready condition: `True` or `False`.
    pub ready: String,
    pub reason: String,
}

/// One resource, for the per-resource series (only resources that have something to say
/// get one: a NotReady resource, a window holding desktops, a version awaiting approval).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotReadyLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// A figure a kind reads from its status, for dashboards and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceGauge {
    /// Desktops a DesktopMaintenanceWindow holds in maintenance now.
    DesktopsInMaintenance,
    /// The end of the window those desktops were entered for (Unix seconds).
    MaintenanceWindowEnd,
    /// 1 while an OtaSchedule sees a new version that has no approval yet.
    OtaPendingApproval,
    /// Of the desktops a window holds, those someone is still connected to.
    DesktopsDraining,
    /// SkipBusy: targets not entered because someone works on them.
    DesktopsWaitingBusy,
    /// Desktops a window never had in maintenance because people were working on them.
    DesktopsNeverMaintained,
    /// 1 while an UpdateRollout is stopped by too many failures.
    RolloutPausedByFailures,
    /// The groups of an UpdateRollout that failed.
    RolloutTargetsFailed,
}

impl ResourceGauge {
    const ALL: [ResourceGauge; 8] = [
        ResourceGauge::DesktopsInMaintenance,
        ResourceGauge::MaintenanceWindowEnd,
        ResourceGauge::OtaPendingApproval,
        ResourceGauge::DesktopsDraining,
        ResourceGauge::DesktopsWaitingBusy,
        ResourceGauge::DesktopsNeverMaintained,
        ResourceGauge::RolloutPausedByFailures,
        ResourceGauge::RolloutTargetsFailed,
    ];

    /// The metric's name (after the `alicloud_ops_` prefix) and help.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            ResourceGauge::DesktopsInMaintenance => (
                "desktops_in_maintenance",
                "Desktops a DesktopMaintenanceWindow holds in maintenance mode now",
            ),
            ResourceGauge::MaintenanceWindowEnd => (
                "maintenance_window_end_timestamp_seconds",
                "End of the window a DesktopMaintenanceWindow entered its desktops for",
            ),
            ResourceGauge::OtaPendingApproval => (
                "ota_pending_approvals",
                "1 while an OtaSchedule sees a new version without an approval",
            ),
            ResourceGauge::DesktopsDraining => (
                "desktops_draining",
                "Desktops a DesktopMaintenanceWindow entered that still have users connected",
            ),
            ResourceGauge::DesktopsWaitingBusy => (
                "desktops_waiting_busy",
                "Desktops a DesktopMaintenanceWindow (SkipBusy) has not entered because people work on them",
            ),
            ResourceGauge::DesktopsNeverMaintained => (
                "desktops_never_maintained",
                "Desktops a DesktopMaintenanceWindow never had in maintenance in its current or last window because people were working on them",
            ),
            ResourceGauge::RolloutPausedByFailures => (
                "rollout_paused_by_failures",
                "1 while an UpdateRollout approves nothing because a wave had more failures than maxFailures",
            ),
            ResourceGauge::RolloutTargetsFailed => (
                "rollout_targets_failed",
                "Delivery groups of an UpdateRollout whose upgrade failed",
            ),
        }
    }
}

/// What `/metrics` keeps of one resource: what its last reconcile showed, and when the next
/// one is due (one entry, one copy of the key).
#[derive(Clone, Default)]
struct Tracked {
    state: Option<ObjectState>,
    due: Option<std::time::Instant>,
}

/// What `/metrics` shows of one resource after its last reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectState {
    pub ready: bool,
    /// The Ready condition's reason (a `Reason`'s name: nothing to allocate per resource).
    pub reason: &'static str,
    /// Since when Ready has been False (Unix seconds): the condition's lastTransitionTime.
    pub not_ready_since: Option<f64>,
    pub gauges: Vec<(ResourceGauge, f64)>,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type Histograms = Family<KindLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 13))
}

/// Everything `/metrics` shows.
pub struct Metrics {
    pub registry: Mutex<Registry>,
    pub reconciles: Family<KindLabel, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histograms,
    pub in_flight: Family<KindLabel, Gauge>,
    pub queue_depth: Family<KindLabel, Gauge>,
    pub managed: Family<ObjectLabels, Gauge>,
    pub drift: Family<KindLabel, Counter>,
    pub not_ready_since: Family<NotReadyLabels, FloatGauge>,
    resource_gauges: Vec<(ResourceGauge, Family<ResourceLabels, FloatGauge>)>,
    /// 1 while this replica leads (or runs without leader election) and reconciles.
    pub leader: Gauge,
    pub cloud: std::sync::Arc<CloudMetrics>,
    /// What each object showed last.
    objects: Mutex<HashMap<ObjectKey, Tracked>>,
}

impl Metrics {
    pub fn new(cloud: std::sync::Arc<CloudMetrics>) -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("alicloud_ops")),
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            in_flight: Family::default(),
            queue_depth: Family::default(),
            managed: Family::default(),
            drift: Family::default(),
            not_ready_since: Family::default(),
            resource_gauges: ResourceGauge::ALL.iter().map(|g| (*g, Family::default())).collect(),
            leader: Gauge::default(),
            cloud,
            objects: Mutex::new(HashMap::new()),
        };
        {
            let mut r = m.registry.lock().expect("registry lock");
            r.register("reconciles", "Reconciles by kind", m.reconciles.clone());
            r.register(
                "reconcile_errors",
                "Failed reconciles by kind and reason",
                m.errors.clone(),
            );
            r.register(
                "reconcile_duration_seconds",
                "Reconcile duration by kind",
                m.duration.clone(),
            );
            r.register(
                "reconciles_in_flight",
                "Reconciles running now, by kind",
                m.in_flight.clone(),
            );
            r.register(
                "reconcile_queue_depth",
                "Objects whose reconcile is due but has not started, by kind",
                m.queue_depth.clone(),
            );
            r.register(
                "managed_objects",
                "Objects by kind and Ready condition",
                m.managed.clone(),
            );
            r.register(
                "drift_detected",
                "Reconciles that found the cloud differing from the spec",
                m.drift.clone(),
            );
            r.register(
                "not_ready_since_timestamp_seconds",
                "Since when a resource's Ready condition has been False (one series per NotReady resource)",
                m.not_ready_since.clone(),
            );
            for (gauge, family) in &m.resource_gauges {
                let (name, help) = gauge.describe();
                r.register(name, help, family.clone());
            }
            r.register(
                "leader",
                "1 while this replica holds the leader Lease (or runs without election) and reconciles",
                m.leader.clone(),
            );
            m.cloud.register(&mut r);
        }
        m
    }

    pub fn kind(kind: &str) -> KindLabel {
        KindLabel { kind: kind.to_string() }
    }

    pub fn observe_reconcile(&self, kind: &str, elapsed: Duration) {
        self.reconciles.get_or_create(&Self::kind(kind)).inc();
        self.duration
            .get_or_create(&Self::kind(kind))
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_object(&self, key: &ObjectKey, state: ObjectState) {
        let mut objects = self.objects.lock().expect("objects lock");
        objects.entry(key.clone()).or_default().state = Some(state);
    }

    pub fn forget_object(&self, key: &ObjectKey) {
        self.objects.lock().expect("objects lock").remove(key);
    }

    /// Forgets every object of `kind` whose key `exists` denies: a resource deleted without
    /// a finalizer is never reconciled again, so its series would stay (and keep alerts
    /// such as `AlicloudOpsResourceNotReady` firing for an object that is gone).
    pub fn forget_objects_of(&self, kind: &str, exists: impl Fn(&ObjectKey) -> bool) {
        self.objects
            .lock()
            .expect("objects lock")
            .retain(|key, _| key.kind != kind || exists(key));
    }

    /// Records when an object's next reconcile is due (`None`: only on change). A time too
    /// far ahead to represent is as good as never.
    pub fn schedule(&self, key: &ObjectKey, after: Option<Duration>) {
        let due = after.and_then(|d| std::time::Instant::now().checked_add(d));
        let mut objects = self.objects.lock().expect("objects lock");
        match (objects.get_mut(key), due) {
            (Some(t), due) => t.due = due,
            (None, Some(due)) => {
                objects.insert(
                    key.clone(),
                    Tracked {
                        state: None,
                        due: Some(due),
                    },
                );
            }
            (None, None) => {}
        }
    }

    /// A reconcile of the object has started: it no longer waits.
    pub fn started(&self, key: &ObjectKey) {
        if let Some(t) = self.objects.lock().expect("objects lock").get_mut(key) {
            t.due = None;
        }
    }

    /// Renders the text exposition format, refreshing the per-object gauges first.
    pub fn render(&self) -> String {
        self.queue_depth.clear();
        self.managed.clear();
        self.not_ready_since.clear();
        for (_, family) in &self.resource_gauges {
            family.clear();
        }
        // One pass over the objects under their lock, counting in place: nothing is copied
        // per object (at 10,000 resources a copy of the table was the scrape's biggest
        // allocation), and only a resource with something to say gets series of its own.
        // Counting takes well under a millisecond, so reconciles recording their objects
        // hardly wait.
        let late = std::time::Instant::now() - Duration::from_secs(1);
        let mut queued: HashMap<&'static str, i64> = HashMap::new();
        let mut managed: HashMap<(&'static str, bool, &'static str), i64> = HashMap::new();
        let objects = self.objects.lock().expect("objects lock");
        for (key, t) in objects.iter() {
            // Every kind with resources has a queue series, 0 when nothing waits: "no data"
            // would hide the difference between an empty queue and a missing operator.
            // Queued: scheduled reconciles whose time has come (with a second of grace) but
            // that have not started, i.e. that wait for a free reconcile slot.
            let late = t.due.is_some_and(|at| at <= late);
            if t.state.is_some() || late {
                *queued.entry(key.kind).or_default() += i64::from(late);
            }
            let Some(state) = &t.state else { continue };
            *managed.entry((key.kind, state.ready, state.reason)).or_default() += 1;
            let resource = || ResourceLabels {
                kind: key.kind.to_string(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            };
            if let Some(since) = state.not_ready_since.filter(|_| !state.ready) {
                let labels = NotReadyLabels {
                    kind: key.kind.to_string(),
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    reason: state.reason.to_string(),
                };
                self.not_ready_since.get_or_create(&labels).set(since);
            }
            for (gauge, value) in &state.gauges {
                if let Some((_, family)) = self.resource_gauges.iter().find(|(g, _)| g == gauge) {
                    family.get_or_create(&resource()).set(*value);
                }
            }
        }
        for ((kind, ready, reason), count) in managed {
            let labels = ObjectLabels {
                kind: kind.to_string(),
                ready: if ready { "True" } else { "False" }.into(),
                reason: reason.to_string(),
            };
            self.managed.get_or_create(&labels).set(count);
        }
        drop(objects);
        for (kind, count) in queued {
            self.queue_depth.get_or_create(&Self::kind(kind)).set(count);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("registry lock"))
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &'static str, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn state(
        ready: bool,
        reason: &'static str,
        not_ready_since: Option<f64>,
        gauges: Vec<(ResourceGauge, f64)>,
    ) -> ObjectState {
        ObjectState {
            ready,
            reason,
            not_ready_since,
            gauges,
        }
    }

    #[test]
    fn renders_objects_queue_depth_and_cloud_calls() {
        let cloud = std::sync::Arc::new(CloudMetrics::default());
        let m = Metrics::new(cloud.clone());
        m.record_object(&key("ImageShare", "ns", "a"), state(true, "InSync", None, vec![]));
        m.record_object(
            &key("ImageShare", "ns", "b"),
            state(false, "NotFound", Some(1_700_000_000.0), vec![]),
        );
        m.record_object(
            &key("DesktopMaintenanceWindow", "ns", "w"),
            state(
                true,
                "Active",
                None,
                vec![
                    (ResourceGauge::DesktopsInMaintenance, 3.0),
                    (ResourceGauge::MaintenanceWindowEnd, 1_800_000_000.0),
                ],
            ),
        );
        m.schedule(&key("ImageShare", "ns", "a"), Some(Duration::ZERO));
        m.schedule(&key("ImageShare", "ns", "b"), Some(Duration::from_secs(3600)));
        cloud.observe("swas-open", "ListCustomImages", "success", Duration::from_millis(3));
        m.observe_reconcile("ImageShare", Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(1100));
        let text = m.render();
        assert!(
            text.contains(r#"alicloud_ops_managed_objects{kind="ImageShare",ready="True",reason="InSync"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"alicloud_ops_managed_objects{kind="ImageShare",ready="False",reason="NotFound"} 1"#));
        assert!(
            text.contains(r#"alicloud_ops_reconcile_queue_depth{kind="ImageShare"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"alicloud_ops_cloud_api_requests_total{product="swas-open",action="ListCustomImages",code="success"} 1"#
        ));
        assert!(text.contains(r#"alicloud_ops_reconciles_total{kind="ImageShare"} 1"#));
        assert!(
            text.contains(r#"alicloud_ops_not_ready_since_timestamp_seconds{kind="ImageShare",namespace="ns",name="b",reason="NotFound"} 1700000000.0"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"alicloud_ops_desktops_in_maintenance{kind="DesktopMaintenanceWindow",namespace="ns",name="w"} 3.0"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"alicloud_ops_maintenance_window_end_timestamp_seconds{kind="DesktopMaintenanceWindow",namespace="ns",name="w"} 1800000000.0"#),
            "{text}"
        );
        m.started(&key("ImageShare", "ns", "a"));
        m.forget_object(&key("ImageShare", "ns", "b"));
        let text = m.render();
        assert!(!text.contains("queue_depth{kind=\"ImageShare\"} 1"), "{text}");
        assert!(
            text.contains("queue_depth{kind=\"ImageShare\"} 0"),
            "an empty queue is 0, not missing: {text}"
        );
        assert!(!text.contains("NotFound"));
        assert!(!text.contains(r#"name="b""#), "{text}");
    }
}
