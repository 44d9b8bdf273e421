//! Per-registry request metrics, fed by the registry client's [`RequestObserver`] hook.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use registry::RequestObserver;
use runtime::metrics::Metrics;

/// Labels of one request series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `host[:port]`.
    pub registry: String,
    /// HTTP method.
    pub method: String,
    /// Status code, or `error` when no response came.
    pub code: String,
}

/// Labels naming a registry.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// `host[:port]`.
    pub registry: String,
}

fn latency_histogram() -> Histogram {
    // 5ms .. ~20s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// The per-registry counters and latency histogram.
#[derive(Debug)]
pub struct RegistryMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RegistryLabels, Histogram, fn() -> Histogram>,
    errors: Family<RegistryLabels, Counter>,
    rate_limited: Family<RegistryLabels, Counter>,
}

impl RegistryMetrics {
    /// The process's metrics, registered in `metrics` on first use (controllers restart per
    /// leadership term; the series must be registered once).
    pub fn registered(metrics: &Metrics) -> Arc<RegistryMetrics> {
        static ONCE: OnceLock<Arc<RegistryMetrics>> = OnceLock::new();
        ONCE.get_or_init(|| {
            let m = Arc::new(RegistryMetrics {
                requests: Family::default(),
                latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
                errors: Family::default(),
                rate_limited: Family::default(),
            });
            metrics.register(
                "image_reflector_registry_requests",
                "Registry HTTP requests by registry, method and status code (code=error: no response)",
                m.requests.clone(),
            );
            metrics.register(
                "image_reflector_registry_request_duration_seconds",
                "Registry HTTP request latency by registry",
                m.latency.clone(),
            );
            metrics.register(
                "image_reflector_registry_request_errors",
                "Registry HTTP requests that failed: no response, or a status of 400 or more other than the 401 of an auth challenge",
                m.errors.clone(),
            );
            metrics.register(
                "image_reflector_registry_rate_limited",
                "Registry HTTP responses with status 429 (Too Many Requests)",
                m.rate_limited.clone(),
            );
            m
        })
        .clone()
    }
}

impl RequestObserver for RegistryMetrics {
    fn observe(&self, registry: &str, method: &str, status: Option<u16>, elapsed: Duration) {
        let reg = RegistryLabels {
            registry: registry.to_string(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                registry: registry.to_string(),
                method: method.to_string(),
                code: status.map_or_else(|| "error".to_string(), |s| s.to_string()),
            })
            .inc();
        self.latency
            .get_or_create(&reg)
            .observe(elapsed.as_secs_f64());
        match status {
            None => {
                self.errors.get_or_create(&reg).inc();
            }
            Some(429) => {
                self.errors.get_or_create(&reg).inc();
                self.rate_limited.get_or_create(&reg).inc();
            }
            Some(s) if s >= 400 && s != 401 => {
                self.errors.get_or_create(&reg).inc();
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_errors_and_rate_limits_per_registry() {
        let metrics = Metrics::new();
        let m = RegistryMetrics::registered(&metrics);
        m.observe(
            "reg.example:5000",
            "GET",
            Some(200),
            Duration::from_millis(10),
        );
        m.observe(
            "reg.example:5000",
            "GET",
            Some(401),
            Duration::from_millis(10),
        );
        m.observe(
            "reg.example:5000",
            "GET",
            Some(429),
            Duration::from_millis(10),
        );
        m.observe("reg.example:5000", "GET", None, Duration::from_millis(10));
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            r#"image_reflector_registry_requests_total{registry="reg.example:5000",method="GET",code="429"} 1"#
        ), "{text}");
        assert!(
            text.contains(
                r#"image_reflector_registry_request_errors_total{registry="reg.example:5000"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"image_reflector_registry_rate_limited_total{registry="reg.example:5000"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"image_reflector_registry_request_duration_seconds_count{registry="reg.example:5000"} 4"#
        ), "{text}");
    }
}
