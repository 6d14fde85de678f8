//! Counters and latency of cloud calls, for the operator's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub product: String,
    pub action: String,
    /// `success`, the cloud's error code, or `TransportError` / `DecodeError`.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub product: String,
    pub action: String,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms .. ~20 s
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Every attempt is counted, retries included, so the figures match what the cloud saw.
#[derive(Debug)]
pub struct CloudMetrics {
    pub calls: Family<CallLabels, Counter>,
    pub latency: HistogramFamily,
}

impl Default for CloudMetrics {
    fn default() -> Self {
        CloudMetrics {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl CloudMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cloud_api_requests",
            "Alibaba Cloud API calls (every attempt) by product, action and result code",
            self.calls.clone(),
        );
        registry.register(
            "cloud_api_request_duration_seconds",
            "Latency of Alibaba Cloud API calls by product and action",
            self.latency.clone(),
        );
    }

    pub fn observe(&self, product: &str, action: &str, code: &str, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                product: product.into(),
                action: action.into(),
                code: code.into(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                product: product.into(),
                action: action.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The number of attempts seen with this result code.
    pub fn count(&self, product: &str, action: &str, code: &str) -> u64 {
        self.calls
            .get_or_create(&CallLabels {
                product: product.into(),
                action: action.into(),
                code: code.into(),
            })
            .get()
    }
}
