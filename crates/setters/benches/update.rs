//! Benchmarks (issue 5): a tree of 10,000 YAML files with markers in 1% of them, timed against
//! `grep -rl '"$imagepolicy"'` on the same tree in the same run, and one 50 MB multi-document
//! file with a marker in every document. Every measured update really rewrites files: the
//! policy alternates between two tags so each iteration changes every marked value.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use setters::{ImageRef, Policies, Setters};

fn manifest(i: usize, marked: bool) -> String {
    let comment = if marked {
        r#" # {"$imagepolicy": "flux-system:app"}"#
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: team-{ns}\n  labels:\n    app.kubernetes.io/name: app-{i}\n    app.kubernetes.io/part-of: bench\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app-{i}\n  template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/org/app:1.0.0{comment}\n          ports:\n            - containerPort: 8080\n          resources:\n            limits: {{cpu: 500m, memory: 256Mi}}\n          env:\n            - name: MODE\n              value: \"production\"\n",
        ns = i % 17
    )
}

fn setters_for(tag: &str) -> Setters {
    let mut p = Policies::new();
    p.insert(
        "flux-system:app".into(),
        ImageRef::parse(&format!("ghcr.io/org/app:{tag}")).unwrap_or_default(),
    );
    Setters::new(&p).unwrap_or_default()
}

fn make_tree(root: &Path) {
    for i in 0..10_000 {
        let dir = root.join(format!("apps/group-{:02}", i / 100));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::write(
            dir.join(format!("app-{i:05}.yaml")),
            manifest(i, i % 100 == 0),
        )
        .unwrap_or_default();
    }
}

fn tree_10k(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    make_tree(dir.path());
    let tags = [setters_for("2.0.0"), setters_for("3.0.0")];
    let mut group = c.benchmark_group("tree_10k_files_1pct_marked");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(20));
    let mut flip = 0usize;
    group.bench_function("setters_update", |b| {
        b.iter(|| {
            flip ^= 1;
            let report = setters::update(dir.path(), &tags[flip]).unwrap_or_default();
            assert_eq!(report.files.len(), 100);
            black_box(report)
        })
    });
    group.bench_function("setters_plan", |b| {
        b.iter(|| {
            black_box(
                setters::plan(dir.path(), &tags[flip ^ 1])
                    .map(|p| p.files.len())
                    .unwrap_or(0),
            )
        })
    });
    group.bench_function("grep_rl", |b| {
        b.iter(|| {
            let out = Command::new("grep")
                .arg("-rl")
                .arg("\"$imagepolicy\"")
                .arg(dir.path())
                .output();
            black_box(out.map(|o| o.stdout.len()).unwrap_or(0))
        })
    });
    group.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The same comparison interleaved round by round, so that load from other processes on a
/// shared machine hits both sides alike; prints the medians and the ratio to grep.
fn tree_10k_interleaved(_c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    make_tree(dir.path());
    let tags = [setters_for("2.0.0"), setters_for("3.0.0")];
    let (mut grep, mut plan, mut update) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..15 {
        let t = Instant::now();
        let out = Command::new("grep")
            .arg("-rl")
            .arg("\"$imagepolicy\"")
            .arg(dir.path())
            .output();
        grep.push(t.elapsed());
        black_box(out.map(|o| o.stdout.len()).unwrap_or(0));
        let t = Instant::now();
        black_box(
            setters::plan(dir.path(), &tags[round % 2])
                .map(|p| p.files.len())
                .unwrap_or(0),
        );
        plan.push(t.elapsed());
        let t = Instant::now();
        black_box(
            setters::update(dir.path(), &tags[round % 2])
                .map(|r| r.files.len())
                .unwrap_or(0),
        );
        update.push(t.elapsed());
    }
    let (g, p, u) = (median(grep), median(plan), median(update));
    println!(
        "tree_10k_files_1pct_marked/interleaved (15 rounds, medians): grep -rl {g:?}, setters plan {p:?} ({:.2}x grep), setters update {u:?} ({:.2}x grep)",
        p.as_secs_f64() / g.as_secs_f64(),
        u.as_secs_f64() / g.as_secs_f64()
    );
}

fn big_file(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let tags = [setters_for("2.0.0"), setters_for("3.0.0")];
    let mut group = c.benchmark_group("single_50mb_file");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    for every in [100, 1] {
        let mut text = String::with_capacity(51 << 20);
        let mut i = 0;
        while text.len() < 50 << 20 {
            text.push_str("---\n");
            text.push_str(&manifest(i, i % every == 0));
            i += 1;
        }
        let path = dir.path().join("all.yaml");
        std::fs::write(&path, &text).unwrap_or_default();
        drop(text);
        let marked = if every == 1 {
            "all".to_owned()
        } else {
            format!("1_in_{every}")
        };
        let mut flip = 0usize;
        group.bench_function(format!("setters_update_{i}_docs_{marked}_marked"), |b| {
            b.iter(|| {
                flip ^= 1;
                let report = setters::update(&path, &tags[flip]).unwrap_or_default();
                assert_eq!(report.files.len(), 1, "{:?}", report.errors);
                black_box(report)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tree_10k_interleaved, tree_10k, big_file);
criterion_main!(benches);
