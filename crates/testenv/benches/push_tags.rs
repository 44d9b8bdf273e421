//! Time to push 2,500 tags (one image each) to the anonymous registry of the test environment
//! (`hack/testenv.sh up` first). Each iteration pushes into a fresh repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark fails loudly.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use testenv::registry::RegistryClient;
use testenv::{RegistryVariant, env, unique_name};

const TAGS: usize = 2_500;

fn push_tags(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = RegistryClient::new(&env().registry(RegistryVariant::Anonymous).unwrap()).unwrap();
    let tags: Vec<String> = (0..TAGS)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    let mut group = c.benchmark_group("registry");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    for concurrency in [16, 64] {
        group.bench_function(format!("push_{TAGS}_tags_c{concurrency}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let repo = unique_name("bench");
                    let start = Instant::now();
                    rt.block_on(client.push_tags(&repo, &tags, concurrency))
                        .unwrap();
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, push_tags);
criterion_main!(benches);
