//! The operator's Prometheus metrics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub cloud: std::sync::Arc<CloudMetrics>,
    /// Last known (ready, reason) per object, by kind and `namespace/name`.
    objects: Mutex<HashMap<(String, String), (bool, String)>>,
    /// When each object's next reconcile is due, by kind and `namespace/name`.
    due: Mutex<HashMap<(String, String), std::time::Instant>>,
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
            cloud,
            objects: Mutex::new(HashMap::new()),
            due: Mutex::new(HashMap::new()),
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

    pub fn record_object(&self, kind: &str, name: &str, ready: bool, reason: &str) {
        self.objects
            .lock()
            .expect("objects lock")
            .insert((kind.into(), name.into()), (ready, reason.into()));
    }

    pub fn forget_object(&self, kind: &str, name: &str) {
        let key = (kind.to_string(), name.to_string());
        self.objects.lock().expect("objects lock").remove(&key);
        self.due.lock().expect("due lock").remove(&key);
    }

    /// Records when an object's next reconcile is due (`None`: only on change).
    pub fn schedule(&self, kind: &str, name: &str, after: Option<Duration>) {
        let key = (kind.to_string(), name.to_string());
        let mut due = self.due.lock().expect("due lock");
        match after {
            // A time too far ahead to represent is as good as never.
            Some(d) => match std::time::Instant::now().checked_add(d) {
                Some(at) => {
                    due.insert(key, at);
                }
                None => {
                    due.remove(&key);
                }
            },
            None => {
                due.remove(&key);
            }
        }
    }

    /// A reconcile of the object has started: it no longer waits.
    pub fn started(&self, kind: &str, name: &str) {
        self.due
            .lock()
            .expect("due lock")
            .remove(&(kind.to_string(), name.to_string()));
    }

    /// Renders the text exposition format, refreshing the per-object gauges first.
    pub fn render(&self) -> String {
        // Queue depth: scheduled reconciles whose time has come (with a second of grace)
        // but that have not started, i.e. that wait for a free reconcile slot.
        self.queue_depth.clear();
        let late = std::time::Instant::now() - Duration::from_secs(1);
        for ((kind, _), at) in self.due.lock().expect("due lock").iter() {
            if *at <= late {
                self.queue_depth.get_or_create(&Self::kind(kind)).inc();
            }
        }
        self.managed.clear();
        for ((kind, _), (ready, reason)) in self.objects.lock().expect("objects lock").iter() {
            let labels = ObjectLabels {
                kind: kind.clone(),
                ready: if *ready { "True" } else { "False" }.into(),
                reason: reason.clone(),
            };
            self.managed.get_or_create(&labels).inc();
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

    #[test]
    fn renders_objects_queue_depth_and_cloud_calls() {
        let cloud = std::sync::Arc::new(CloudMetrics::default());
        let m = Metrics::new(cloud.clone());
        m.record_object("ImageShare", "ns/a", true, "InSync");
        m.record_object("ImageShare", "ns/b", false, "NotFound");
        m.schedule("ImageShare", "ns/a", Some(Duration::ZERO));
        m.schedule("ImageShare", "ns/b", Some(Duration::from_secs(3600)));
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
        m.started("ImageShare", "ns/a");
        m.forget_object("ImageShare", "ns/b");
        let text = m.render();
        assert!(!text.contains("queue_depth{kind=\"ImageShare\"} 1"), "{text}");
        assert!(!text.contains("NotFound"));
    }
}
