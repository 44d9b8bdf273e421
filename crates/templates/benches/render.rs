//! Rendering a typical commit template (the Flux docs' objects/changes template) over dataset B.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use templates::{COMMIT_TEMPLATE_NAME, Limits, Template, TemplateInput};

const TEMPLATE: &str = include_str!("../tests/data/templates/doc-v1_2.tpl");
const GERRIT: &str = include_str!("../tests/data/templates/doc-v1_5.tpl");

fn dataset_b() -> TemplateInput {
    let all: serde_json::Value = serde_json::from_str(include_str!("../tests/data/datasets.json"))
        .unwrap_or(serde_json::Value::Null);
    serde_json::from_value(all["B"].clone()).unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let input = dataset_b();
    let limits = Limits::default();
    c.bench_function("parse doc-v1_2", |b| {
        b.iter(|| Template::parse(COMMIT_TEMPLATE_NAME, black_box(TEMPLATE)))
    });
    c.bench_function("build data model", |b| {
        b.iter(|| black_box(&input).to_value())
    });
    let t = Template::parse(COMMIT_TEMPLATE_NAME, TEMPLATE).unwrap_or_else(|e| panic!("{e}"));
    let data = input.to_value();
    c.bench_function("execute doc-v1_2", |b| {
        b.iter(|| t.execute(black_box(&data), &limits))
    });
    let g = Template::parse(COMMIT_TEMPLATE_NAME, GERRIT).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("execute gerrit change-id", |b| {
        b.iter(|| g.execute(black_box(&data), &limits))
    });
    c.bench_function("render_commit_message end to end", |b| {
        b.iter(|| templates::render_commit_message(black_box(TEMPLATE), &input, &limits))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
