//! Listing 100k tags (100 pages of 1,000) from a wiremock registry, and storing/reading them with the
//! tag store. Run with `cargo bench -p registry --bench list_and_store`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark setup fails loudly

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use registry::{Access, Client, ClientConfig, ImageRef};
use store::{RepoKey, TagStore};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Paged, ping_ok};

const TOTAL: usize = 100_000;
const PAGE: usize = 1000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        ping_ok(&server).await;
        Mock::given(method("GET"))
            .and(path("/v2/bench/app/tags/list"))
            .respond_with(Paged {
                total: TOTAL,
                max_page: PAGE,
                width: 6,
            })
            .mount(&server)
            .await;
        server
    });
    let client = Client::new(ClientConfig::default()).unwrap();
    let image = ImageRef::parse(&format!("{}/bench/app", server.address()), false).unwrap();
    let access = Access::default();
    let timeout = Duration::from_secs(120);

    let mut g = c.benchmark_group("tags_100k");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("list_100_pages", |b| {
        b.to_async(&rt).iter(|| async {
            let tags = client.list_tags(&image, &access, timeout).await.unwrap();
            assert_eq!(tags.len(), TOTAL);
        })
    });

    let mut tags = rt
        .block_on(client.list_tags(&image, &access, timeout))
        .unwrap();
    tags.sort_unstable_by(|a, b| b.cmp(a));
    let dir = tempfile::tempdir().unwrap();
    let plain = TagStore::open(dir.path().join("plain"), u64::MAX).unwrap();
    let gz = TagStore::open(dir.path().join("gz"), store::DEFAULT_COMPRESSION_THRESHOLD).unwrap();
    let key = RepoKey::new("bench", "app");
    g.bench_function("store_set_plain", |b| {
        b.iter(|| plain.set_tags(&key, &tags).unwrap())
    });
    g.bench_function("store_set_gzip", |b| {
        b.iter(|| gz.set_tags(&key, &tags).unwrap())
    });
    let rev = plain.set_tags(&key, &tags).unwrap();
    gz.set_tags(&key, &tags).unwrap();
    g.bench_function("store_read_plain", |b| {
        b.iter(|| assert_eq!(plain.tags(&key).unwrap().len(), TOTAL))
    });
    g.bench_function("store_read_gzip", |b| {
        b.iter(|| assert_eq!(gz.tags(&key).unwrap().len(), TOTAL))
    });
    g.bench_function("store_read_if_revision", |b| {
        b.iter(|| {
            assert!(matches!(
                plain.read_if_revision(&key, &rev).unwrap(),
                store::Verified::Match(_)
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
