//! Prometheus metrics with Flux's names (`gotk_*`) and the controller-runtime ones dashboards use,
//! plus process memory and CPU from `/proc`.

use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets_range};
use prometheus_client::registry::Registry;

/// Labels identifying one object (`kind`, `name`, `namespace`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Kind, e.g. `ImageRepository`.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Object namespace.
    pub namespace: String,
}

/// Labels of `gotk_reconcile_condition`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    /// Kind.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Object namespace.
    pub namespace: String,
    /// Condition type.
    pub r#type: String,
    /// Condition status.
    pub status: String,
}

/// Label `controller`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Controller name (lower-case kind, as controller-runtime names them).
    pub controller: String,
}

/// Labels `controller`, `result`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Controller name.
    pub controller: String,
    /// `success`, `error`, `requeue` or `requeue_after`.
    pub result: String,
}

/// Labels `repository`, `operation` of Git operation timings.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitOperationLabels {
    /// Repository URL (without credentials).
    pub repository: String,
    /// `checkout`, `commit` or `push`.
    pub operation: String,
}

/// Label `repository`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepositoryLabels {
    /// Repository URL (without credentials).
    pub repository: String,
}

/// Label `name` (of the lease).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    /// Lease name.
    pub name: String,
}

fn duration_histogram() -> Histogram {
    // Flux: prometheus.ExponentialBucketsRange(10e-3, 1800, 10).
    Histogram::new(exponential_buckets_range(0.01, 1800.0, 10))
}

fn reconcile_time_histogram() -> Histogram {
    // controller-runtime's reconcile_time_seconds buckets.
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
        0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
        15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
    ])
}

/// All metrics of one process, and the registry that serves them.
#[derive(Debug)]
pub struct Metrics {
    /// Behind a mutex so that a binary can add its own metrics after start-up ([`Metrics::register`]).
    registry: std::sync::Mutex<Registry>,
    /// `gotk_reconcile_duration_seconds{kind,name,namespace}`.
    pub reconcile_duration: Family<ObjectLabels, Histogram, fn() -> Histogram>,
    /// `gotk_reconcile_condition{kind,name,namespace,type,status}` (registered, not populated, as upstream).
    pub reconcile_condition: Family<ConditionLabels, Gauge>,
    /// `gotk_suspend_status{kind,name,namespace}` (registered, not populated, as upstream).
    pub suspend_status: Family<ObjectLabels, Gauge>,
    /// `controller_runtime_reconcile_total{controller,result}`.
    pub reconcile_total: Family<ResultLabels, Counter>,
    /// `controller_runtime_reconcile_errors_total{controller}`.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// `controller_runtime_reconcile_time_seconds{controller}`.
    pub reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    /// `controller_runtime_max_concurrent_reconciles{controller}`.
    pub max_concurrent: Family<ControllerLabels, Gauge>,
    /// `controller_runtime_active_workers{controller}`.
    pub active_workers: Family<ControllerLabels, Gauge>,
    /// `leader_election_master_status{name}`: 1 while this process holds the lease.
    pub leader_status: Family<NameLabels, Gauge>,
    /// `gotk_git_operation_duration_seconds{repository,operation}`: time of each Git operation.
    pub git_operation_duration: Family<GitOperationLabels, Histogram, fn() -> Histogram>,
    /// `gotk_push_latency_seconds{repository}`: from the start of an automation run to its commit
    /// being accepted by the remote.
    pub push_latency: Family<RepositoryLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_duration =
            Family::<ObjectLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "gotk_reconcile_duration_seconds",
            "The duration in seconds of a GitOps Toolkit resource reconciliation",
            reconcile_duration.clone(),
        );
        let reconcile_condition = Family::default();
        registry.register(
            "gotk_reconcile_condition",
            "The current condition status of a GitOps Toolkit resource reconciliation",
            Family::<ConditionLabels, Gauge>::clone(&reconcile_condition),
        );
        let suspend_status = Family::default();
        registry.register(
            "gotk_suspend_status",
            "The current suspend status of a GitOps Toolkit resource",
            Family::<ObjectLabels, Gauge>::clone(&suspend_status),
        );
        let reconcile_total = Family::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            Family::<ResultLabels, Counter>::clone(&reconcile_total),
        );
        let reconcile_errors = Family::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            Family::<ControllerLabels, Counter>::clone(&reconcile_errors),
        );
        let reconcile_time =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                reconcile_time_histogram as fn() -> Histogram,
            );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        let max_concurrent = Family::default();
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            Family::<ControllerLabels, Gauge>::clone(&max_concurrent),
        );
        let active_workers = Family::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            Family::<ControllerLabels, Gauge>::clone(&active_workers),
        );
        let leader_status = Family::default();
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease",
            Family::<NameLabels, Gauge>::clone(&leader_status),
        );
        let git_operation_duration =
            Family::<GitOperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                reconcile_time_histogram as fn() -> Histogram,
            );
        registry.register(
            "gotk_git_operation_duration_seconds",
            "Duration of Git operations (checkout, commit, push) per repository",
            git_operation_duration.clone(),
        );
        let push_latency =
            Family::<RepositoryLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                reconcile_time_histogram as fn() -> Histogram,
            );
        registry.register(
            "gotk_push_latency_seconds",
            "Time from the start of an automation run to its commit accepted by the remote",
            push_latency.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry: std::sync::Mutex::new(registry),
            reconcile_duration,
            reconcile_condition,
            suspend_status,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            max_concurrent,
            active_workers,
            leader_status,
            git_operation_duration,
            push_latency,
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }

    /// Registers a binary-specific metric (e.g. per-registry request counters); call once per name.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Records one reconciliation of an object (`gotk_reconcile_duration_seconds`).
    pub fn record_duration(&self, labels: &ObjectLabels, took: Duration) {
        self.reconcile_duration
            .get_or_create(labels)
            .observe(took.as_secs_f64());
    }

    /// Drops an object's series once it is deleted, as Flux does.
    pub fn delete_object(&self, labels: &ObjectLabels) {
        self.reconcile_duration.remove(labels);
        self.suspend_status.remove(labels);
    }

    /// Records the controller-runtime outcome of one reconcile.
    pub fn record_outcome(&self, controller: &str, result: &str, took: Duration) {
        let c = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: controller.to_string(),
                result: result.to_string(),
            })
            .inc();
        if result == "error" {
            self.reconcile_errors.get_or_create(&c).inc();
        }
        self.reconcile_time
            .get_or_create(&c)
            .observe(took.as_secs_f64());
    }
}

/// Measures a reconcile from creation to [`Timer::elapsed`].
#[derive(Debug)]
pub struct Timer(Instant);

impl Timer {
    /// Starts now.
    pub fn start() -> Self {
        Self(Instant::now())
    }
    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// `process_*` metrics from `/proc/self` (Linux); absent elsewhere.
#[derive(Debug)]
struct ProcessCollector;

/// Reads (resident bytes, virtual bytes, cpu seconds, open fds, threads) of this process.
fn process_stats() -> Option<(u64, u64, f64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    let rss = kb("VmRSS:")? * 1024;
    let vsz = kb("VmSize:")? * 1024;
    let threads = kb("Threads:").unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // USER_HZ is 100 in the /proc ABI on every mainstream Linux architecture.
    let cpu = (ticks(11)? + ticks(12)?) as f64 / 100.0;
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some((rss, vsz, cpu, fds, threads))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((rss, vsz, cpu, fds, threads)) = process_stats() else {
            return Ok(());
        };
        let gauges: [(&str, &str, u64); 4] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                vsz,
            ),
            ("process_open_fds", "Number of open file descriptors", fds),
            (
                "process_threads",
                "Number of OS threads in the process",
                threads,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v as i64);
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        let c = ConstCounter::new(cpu);
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            c.metric_type(),
        )?;
        c.encode(m)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flux_metric_names_are_exposed() {
        let m = Metrics::new();
        let labels = ObjectLabels {
            kind: "ImageRepository".into(),
            name: "podinfo".into(),
            namespace: "flux-system".into(),
        };
        m.record_duration(&labels, Duration::from_millis(20));
        m.record_outcome("imagerepository", "success", Duration::from_millis(20));
        m.record_outcome("imagerepository", "error", Duration::from_millis(20));
        let text = m.encode().unwrap();
        for needle in [
            "# TYPE gotk_reconcile_duration_seconds histogram",
            "gotk_reconcile_duration_seconds_bucket{le=\"0.01\",kind=\"ImageRepository\",name=\"podinfo\",namespace=\"flux-system\"} 0",
            "gotk_reconcile_duration_seconds_count{kind=\"ImageRepository\",name=\"podinfo\",namespace=\"flux-system\"} 1",
            "# HELP gotk_reconcile_duration_seconds The duration in seconds of a GitOps Toolkit resource reconciliation.\n",
            "controller_runtime_reconcile_total{controller=\"imagerepository\",result=\"success\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"imagerepository\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        if cfg!(target_os = "linux") {
            assert!(text.contains("process_resident_memory_bytes "), "{text}");
            assert!(text.contains("process_cpu_seconds_total "), "{text}");
        }
        m.delete_object(&labels);
        assert!(!m.encode().unwrap().contains("name=\"podinfo\""));
    }

    #[test]
    fn buckets_match_flux() {
        let b: Vec<f64> = exponential_buckets_range(0.01, 1800.0, 10).collect();
        assert_eq!(b.len(), 10);
        assert!((b[0] - 0.01).abs() < 1e-12);
        assert!((b[1] - 0.0384).abs() < 1e-3, "{b:?}");
        assert!((b[9] - 1800.0).abs() < 1e-6);
    }
}
