//! Data-driven conformance: every update/policy case of `automation-cases.json` (and the
//! source/controller cases that carry materialised fixture trees) run against the copied
//! fixtures, byte for byte.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: failing loudly is the point

mod common;

use std::path::Path;

use serde_json::{Value, json};
use setters::{ImageRef, Policies, Report, Setters};

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(common::data_dir().join("automation-cases.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all["cases"].as_array().unwrap().clone()
}

fn policies_of(case: &Value) -> Setters {
    let mut policies = Policies::new();
    for p in case["policies"].as_array().unwrap() {
        let (mut ns, mut name) = (
            p["namespace"].as_str().unwrap(),
            p["name"].as_str().unwrap(),
        );
        if ns.starts_with('<') {
            // Controller e2e cases name the policy at run time; the materialised marker is this.
            (ns, name) = ("test-ns", "policy1");
        }
        let r = &p["latestRef"];
        let image = ImageRef {
            name: r["name"].as_str().unwrap().to_owned(),
            tag: r["tag"].as_str().unwrap_or_default().to_owned(),
            digest: r["digest"].as_str().unwrap_or_default().to_owned(),
        };
        assert_eq!(image.to_string(), p["latestImage"].as_str().unwrap());
        policies.insert(format!("{ns}:{name}"), image);
    }
    Setters::new(&policies).unwrap()
}

/// The report in the JSON shape of the cases: `{file: [{object, changes}]}`.
fn file_changes_json(report: &Report) -> Value {
    let mut files = serde_json::Map::new();
    for f in &report.files {
        let objects: Vec<Value> = f
            .objects
            .iter()
            .map(|o| {
                json!({
                    "object": {
                        "apiVersion": o.object.api_version, "kind": o.object.kind,
                        "namespace": o.object.namespace, "name": o.object.name,
                    },
                    "changes": o.changes,
                })
            })
            .collect();
        files.insert(f.path.clone(), Value::Array(objects));
    }
    Value::Object(files)
}

fn substitute(dir: &Path, case: &Value) {
    let Some(sub) = case.get("marker_substitution").filter(|s| s.is_object()) else {
        return;
    };
    let (from, mut to) = (
        sub["placeholder"].as_str().unwrap(),
        sub["replacement"].as_str().unwrap(),
    );
    if to.contains("<ns>") {
        // Controller e2e cases name the policy at run time (see `policies_of`).
        to = r#"{"$imagepolicy": "test-ns:policy1"}"#;
    }
    for f in sub["files"].as_array().unwrap() {
        let p = dir.join(f.as_str().unwrap());
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace(from, to)).unwrap();
    }
}

/// Runs one case; returns a description of every mismatch.
fn run_case(case: &Value, prefer_materialized: bool) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let data = common::data_dir();
    let materialized = case
        .get("materialized")
        .filter(|m| m.is_object() && prefer_materialized);
    let (input, expected) = match materialized {
        Some(m) => (m["input_dir"].as_str().unwrap(), m["expected_dir"].as_str()),
        None => (
            case["input_dir"].as_str().unwrap(),
            case["expected_dir"].as_str(),
        ),
    };
    let work = tempfile::tempdir().unwrap();
    common::copy_tree(&data.join(input), work.path());
    let expected_dir = expected.map(|e| {
        let d = tempfile::tempdir().unwrap();
        common::copy_tree(&data.join(e), d.path());
        d
    });
    if materialized.is_none() {
        substitute(work.path(), case);
        if let Some(d) = &expected_dir {
            substitute(d.path(), case);
        }
    }
    let before = common::snapshot(work.path());
    let sub = case["update"]["path"].as_str().unwrap_or(".");
    let root = work.path().join(sub);
    let report = setters::update(&root, &policies_of(case)).unwrap();
    let after = common::snapshot(work.path());
    let mut problems = Vec::new();
    if !report.errors.is_empty() {
        problems.push(format!("{name}: unexpected errors {:?}", report.errors));
    }
    if let Some(result) = case["expected"].get("result") {
        let got = file_changes_json(&report);
        if got != result["fileChanges"] {
            problems.push(format!(
                "{name}: result {got:#} != expected {:#}",
                result["fileChanges"]
            ));
        }
    }
    match case["mode"].as_str() {
        Some("outpath") => {
            // Upstream writes changed files into an empty dir; here they are rewritten in place,
            // so the changed files must equal the expected dir and nothing else may change.
            let written: Vec<String> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect();
            let expected_files = expected_dir
                .as_ref()
                .map(|d| common::snapshot(d.path()))
                .unwrap_or_default();
            let reported: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
            if written != expected_files.keys().cloned().collect::<Vec<_>>() || reported != written
            {
                problems.push(format!(
                    "{name}: wrote {written:?}, reported {reported:?}, expected {:?}",
                    expected_files.keys()
                ));
            }
            for (k, v) in &expected_files {
                if after.get(k) != Some(v) {
                    problems.push(format!("{name}: {k} differs from expected"));
                }
            }
            if let Some(list) = case["expected"]["files_written"].as_array() {
                let listed: Vec<&str> = list.iter().map(|v| v.as_str().unwrap()).collect();
                let mut sorted = written.clone();
                sorted.sort();
                let mut listed_sorted: Vec<String> =
                    listed.iter().map(|s| (*s).to_owned()).collect();
                listed_sorted.sort();
                if sorted != listed_sorted {
                    problems.push(format!("{name}: files_written {listed:?} vs {written:?}"));
                }
            }
        }
        _ => {
            if let Some(d) = &expected_dir {
                let want = common::snapshot(d.path());
                if after != want {
                    let diff: Vec<&String> = want
                        .keys()
                        .chain(after.keys())
                        .filter(|k| want.get(*k) != after.get(*k))
                        .collect();
                    problems.push(format!("{name}: tree differs from expected in {diff:?}"));
                }
            }
        }
    }
    problems
}

#[test]
fn every_fixture_case_produces_the_expected_files() {
    let mut ran = Vec::new();
    let mut problems = Vec::new();
    for case in cases() {
        let has_tree = case.get("materialized").is_some_and(Value::is_object)
            || (case.get("mode").is_some() && case["input_dir"].is_string());
        if !has_tree {
            continue;
        }
        ran.push(case["name"].as_str().unwrap().to_owned());
        problems.extend(run_case(&case, true));
        // The upstream trees with the SETTER_SITE placeholder substituted here must agree.
        let upstream = case["input_dir"].is_string()
            && case["expected_dir"].is_string()
            && case
                .get("marker_substitution")
                .is_some_and(Value::is_object);
        if upstream {
            problems.extend(run_case(&case, false));
        }
    }
    assert!(ran.len() >= 10, "too few cases ran: {ran:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn screening_reads_exactly_the_four_marked_files() {
    // update/screening-reader: with no policies every marker is unknown, so the files whose
    // markers are listed are exactly the files that were read and parsed.
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "update/screening-reader")
        .unwrap();
    let dir = common::data_dir().join(case["input_dir"].as_str().unwrap());
    let report = setters::plan(&dir, &Setters::default()).unwrap().report;
    let mut read: Vec<&str> = report
        .unknown_markers
        .iter()
        .map(|m| m.path.as_str())
        .collect();
    read.dedup();
    let mut want: Vec<&str> = case["expected"]["file_annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    want.sort();
    assert_eq!(read, want);
    assert_eq!(
        read.len() as u64,
        case["expected"]["node_count"].as_u64().unwrap()
    );
    assert_eq!(
        report
            .skipped
            .iter()
            .map(|s| s.path.as_str())
            .collect::<Vec<_>>(),
        ["test.yaml"]
    );
    assert!(report.errors.is_empty());
}

#[test]
fn result_model_aggregates_like_flux() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "update/result-model")
        .unwrap();
    let agg = &case["expected"]["TestResultObjectsAggregatesSameObjectAcrossFiles"];
    let id = setters::ObjectId {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: "podinfo".into(),
        namespace: "default".into(),
    };
    let mut report = Report::default();
    for (path, objs) in agg["fileChanges"].as_object().unwrap() {
        let changes: Vec<setters::Change> = serde_json::from_value::<Vec<Value>>(
            objs.as_object().unwrap().values().next().unwrap().clone(),
        )
        .unwrap()
        .into_iter()
        .map(|c| setters::Change {
            old_value: c["oldValue"].as_str().unwrap().into(),
            new_value: c["newValue"].as_str().unwrap().into(),
            setter: c["setter"].as_str().unwrap().into(),
        })
        .collect();
        report.files.push(setters::FileChanges {
            path: path.clone(),
            objects: vec![setters::ObjectChanges {
                object: id.clone(),
                changes,
            }],
        });
    }
    let objects = report.objects();
    assert_eq!(objects.len(), 1);
    let got = serde_json::to_value(&objects[0].changes).unwrap();
    assert_eq!(
        got,
        agg["Objects()[apps/v1 Deployment default/podinfo]_containsElements"]
    );
    assert_eq!(report.changes().len(), 2);
}

#[test]
fn dangling_symlink_fixture_is_skipped() {
    let dir = common::data_dir()
        .join("automation-fixtures/historical/v0.37.1/internal/controller/testdata/brokenlink");
    let report = setters::update(&dir, &common::setters(&[("ns:p", "img:1")])).unwrap();
    assert!(report.files.is_empty() && report.errors.is_empty());
    assert_eq!(report.skipped[0].path, "bar.yaml");
    assert_eq!(report.skipped[0].reason, "dangling symlink");
}
