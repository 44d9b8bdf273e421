//! Selection throughput from strings, on the corpora of issue 4 (fixed seed, generated here).
//!
//! Every benchmark runs twice: `select` measures wall time, `select-cpu` the thread's CPU time, which
//! stays meaningful when other processes compete for the cores.

// Fixed, known-good inputs: a failure here is a bug in the benchmark itself.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use policy::{Choice, FilterSpec, Policy};

#[allow(dead_code)]
mod corpus;

const SEED: u64 = 4;

const RANGE: &str = ">=5.0.0 <15.0.0";

/// Benchmarks `policy` selecting from `tags` (elements/s throughput).
fn measure<M: Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    id: &str,
    policy: &Policy,
    tags: &[String],
) {
    group.throughput(Throughput::Elements(tags.len() as u64));
    group.bench_function(id, |b| {
        b.iter(|| {
            policy
                .select(tags.iter().map(String::as_str))
                .unwrap()
                .len()
        })
    });
}

fn bench<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let semver = |filter| Policy::new(Some(Choice::SemVer { range: RANGE }), filter).unwrap();
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    for n in [1_000_000, 100_000] {
        let tags = corpus::semver_corpus(n, SEED);
        measure(&mut group, &format!("semver/{n}"), &semver(None), &tags);
    }
    let tags = corpus::semver_corpus(100_000, SEED);
    let numbers = corpus::numeric_corpus(100_000, SEED);
    for order in ["asc", "desc"] {
        let alphabetical = Policy::new(Some(Choice::Alphabetical { order }), None).unwrap();
        measure(
            &mut group,
            &format!("alphabetical-{order}/100000"),
            &alphabetical,
            &tags,
        );
        let numerical = Policy::new(Some(Choice::Numerical { order }), None).unwrap();
        measure(
            &mut group,
            &format!("numerical-{order}/100000"),
            &numerical,
            &numbers,
        );
    }
    let extract = FilterSpec {
        pattern: r"^v?(\d+\.\d+\.\d+)(-rc\.\d+)?$",
        extract: "$1",
    };
    measure(
        &mut group,
        "semver-filter-extract/100000",
        &semver(Some(extract)),
        &tags,
    );
    let pattern = FilterSpec {
        pattern: r"^v?\d+\.\d+\.\d+",
        extract: "",
    };
    measure(
        &mut group,
        "semver-filter-pattern/100000",
        &semver(Some(pattern)),
        &tags,
    );
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "select");
}

fn cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "select-cpu");
}

/// CPU time of the benchmarking thread.
struct CpuTime;

impl Measurement for CpuTime {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, start: Self::Intermediate) -> Duration {
        start.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanosecond values and element throughputs.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
            Throughput::ElementsAndBytes { elements, .. } => *elements as f64,
            Throughput::Bits(n) => *n as f64,
        };
        let rate = per * 1e9 / typical;
        let (factor, unit) = if rate >= 1e6 {
            (1e-6, "Melem/s")
        } else {
            (1e-3, "Kelem/s")
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v * factor);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_time, wall);
criterion_group!(name = cpu_time_group; config = Criterion::default().with_measurement(CpuTime); targets = cpu);
criterion_main!(wall_time, cpu_time_group);
