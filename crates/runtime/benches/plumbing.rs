//! Costs paid on every reconcile: the condition rules, the watch predicate, one JSON log line.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use runtime::conditions::{Conditions, ReconcileResult, ResultFinalizer, progressive_status};

fn conditions(c: &mut Criterion) {
    let interval = Duration::from_secs(60);
    let finalizer = ResultFinalizer::new(
        move |r: &ReconcileResult, err: bool| !err && !r.requeue && r.requeue_after == interval,
        "successful scan: found 42 tags with checksum sha256:abc",
    );
    c.bench_function("conditions/successful reconcile cycle", |b| {
        b.iter(|| {
            let mut list: Vec<Condition> = Vec::new();
            let mut handled = None;
            let mut conds = Conditions::new(&mut list, 3);
            progressive_status(
                &mut conds,
                false,
                "Progressing",
                "reconciliation in progress",
            );
            progressive_status(&mut conds, false, "Progressing", "scanning: first scan");
            conds.delete("Ready");
            let res = finalizer.finalize::<String>(
                &mut conds,
                &ReconcileResult::after(interval),
                None,
                Some("2024-01-01T00:00:00Z"),
                &mut handled,
            );
            black_box((res, list, handled))
        })
    });
    c.bench_function("conditions/failed reconcile cycle", |b| {
        b.iter(|| {
            let mut list: Vec<Condition> = Vec::new();
            let mut handled = None;
            let mut conds = Conditions::new(&mut list, 3);
            progressive_status(
                &mut conds,
                false,
                "Progressing",
                "reconciliation in progress",
            );
            conds.mark_false(
                "Ready",
                "ReadOperationFailed",
                "scan failed: connection refused",
            );
            let res = finalizer.finalize(
                &mut conds,
                &ReconcileResult::default(),
                Some("scan failed: connection refused".to_string()),
                None,
                &mut handled,
            );
            conds.mark_retrying();
            black_box((res, list))
        })
    });
}

fn predicate(c: &mut Criterion) {
    let Ok(repo) = serde_json::from_value::<api::ImageRepository>(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImageRepository",
        "metadata": {"name": "podinfo", "namespace": "flux-system", "generation": 7,
                     "annotations": {"reconcile.fluxcd.io/requestedAt": "2024-01-01T00:00:00Z"}},
        "spec": {"image": "ghcr.io/stefanprodan/podinfo", "interval": "1m"}
    })) else {
        panic!("the benchmark's ImageRepository does not parse");
    };
    c.bench_function("reconcile/flux predicate", |b| {
        b.iter(|| black_box(runtime::reconcile::flux_predicate(black_box(&repo))))
    });
}

criterion_group!(benches, conditions, predicate);
criterion_main!(benches);
