//! Selection throughput from strings, on the corpora of issue 4 (fixed seed, generated here).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use policy::{Choice, FilterSpec, Policy};

#[allow(dead_code)]
mod corpus;

const SEED: u64 = 4;

fn bench(c: &mut Criterion) {
    let semver = Policy::new(
        Some(Choice::SemVer {
            range: ">=5.0.0 <15.0.0",
        }),
        None,
    )
    .unwrap();
    let mut group = c.benchmark_group("select");
    group.sample_size(20);
    for n in [1_000_000, 100_000] {
        let tags = corpus::semver_corpus(n, SEED);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("semver/{n}"), |b| {
            b.iter(|| {
                semver
                    .select(tags.iter().map(String::as_str))
                    .unwrap()
                    .len()
            })
        });
    }
    let tags = corpus::semver_corpus(100_000, SEED);
    group.throughput(Throughput::Elements(tags.len() as u64));
    for order in ["asc", "desc"] {
        let p = Policy::new(Some(Choice::Alphabetical { order }), None).unwrap();
        group.bench_function(format!("alphabetical-{order}/100000"), |b| {
            b.iter(|| p.select(tags.iter().map(String::as_str)).unwrap().len())
        });
    }
    let filtered = Policy::new(
        Some(Choice::SemVer {
            range: ">=5.0.0 <15.0.0",
        }),
        Some(FilterSpec {
            pattern: r"^v?(\d+\.\d+\.\d+)(-rc\.\d+)?$",
            extract: "$1",
        }),
    )
    .unwrap();
    group.bench_function("semver-filter-extract/100000", |b| {
        b.iter(|| {
            filtered
                .select(tags.iter().map(String::as_str))
                .unwrap()
                .len()
        })
    });
    let numbers = corpus::numeric_corpus(100_000, SEED);
    for order in ["asc", "desc"] {
        let p = Policy::new(Some(Choice::Numerical { order }), None).unwrap();
        group.bench_function(format!("numerical-{order}/100000"), |b| {
            b.iter(|| p.select(numbers.iter().map(String::as_str)).unwrap().len())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
