//! The `controller.*` ImageRepository cases of the conformance data (tests/data/repository-cases.json)
//! and the store-revision rule that goes beyond upstream.

use std::time::Duration;

use api::duration::parse_go_duration;
use api::image_repository::ImageRepositorySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::Value;

use super::*;

const CASES: &str = include_str!("../tests/data/repository-cases.json");

fn cases(kind: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(CASES).unwrap();
    let out: Vec<Value> = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .cloned()
        .collect();
    assert!(!out.is_empty(), "no cases of kind {kind}");
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `now-30s`, `reconcileTime-30s` (upstream's zero reconcile time is irrelevant there: only the
/// annotation decides) and `now-2m` relative to `now`.
fn relative_time(expr: &str, now: Timestamp) -> Time {
    let (_, offset) = expr.split_once('-').unwrap();
    let d = parse_go_duration(offset).unwrap();
    Time(Timestamp::from_nanosecond(now.as_nanosecond() - d.as_nanos() as i128).unwrap())
}

#[test]
fn should_scan_cases() {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    for case in cases("shouldScan") {
        let name = case["name"].as_str().unwrap();
        let mut merged = case["base"].as_object().unwrap().clone();
        for (k, v) in case["setup"].as_object().unwrap() {
            merged.insert(k.clone(), v.clone());
        }
        let spec: ImageRepositorySpec = serde_json::from_value(serde_json::json!({
            "image": merged["spec.image"],
            "interval": merged["spec.interval"],
            "exclusionList": merged["spec.exclusionList"],
        }))
        .unwrap();
        let mut status = ImageRepositoryStatus {
            observed_exclusion_list: strings(&merged["status.observedExclusionList"]),
            canonical_image_name: merged
                .get("status.canonicalImageName")
                .map(|v| v.as_str().unwrap().to_string()),
            last_handled_reconcile_at: merged
                .get("status.lastHandledReconcileAt")
                .map(|v| v.as_str().unwrap().to_string()),
            ..Default::default()
        };
        if let Some(t) = merged.get("status.lastScanResult.scanTime") {
            status.last_scan_result = Some(ScanResult {
                scan_time: Some(relative_time(t.as_str().unwrap(), now)),
                ..Default::default()
            });
        }
        if let Some(r) = merged.get("status.lastScanResult") {
            status.last_scan_result = Some(ScanResult {
                tag_count: r["tagCount"].as_i64().unwrap(),
                scan_time: Some(relative_time(r["scanTime"].as_str().unwrap(), now)),
                ..Default::default()
            });
        }
        let requested_at = merged
            .get("annotations")
            .and_then(|a| a[api::meta::RECONCILE_REQUEST_ANNOTATION].as_str());
        let canonical = ImageRef::parse(&spec.image, false).unwrap().canonical();
        let exclusion_list = spec.get_exclusion_list();
        let inputs = ScanInputs {
            interval: spec.interval().unwrap(),
            canonical: &canonical,
            exclusion_list: &exclusion_list,
            requested_at,
        };
        let db = &case["db"];
        let got = should_scan(inputs, Some(&status), now, || {
            if db.is_null() {
                return Err("the database must not be read in this case".into());
            }
            if let Some(e) = db["readError"].as_str() {
                return Err(e.to_string());
            }
            Ok(Stored::Current(db["tags"].as_array().unwrap().len()))
        });
        let want = &case["expected"];
        if want["error"].as_bool().unwrap() {
            assert!(got.is_err(), "{name}: expected an error, got {got:?}");
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.scan, want["scan"].as_bool().unwrap(), "{name}");
        assert_eq!(got.reason, want["reason"].as_str().unwrap(), "{name}");
        assert_eq!(
            got.next,
            parse_go_duration(want["nextScan"].as_str().unwrap()).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_missing_or_stale_store_entry_forces_a_rescan_before_the_interval() {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let exclusion = vec!["^.*\\.sig$".to_string()];
    let status = ImageRepositoryStatus {
        canonical_image_name: Some("example.com/foo/bar".into()),
        observed_exclusion_list: exclusion.clone(),
        last_scan_result: Some(ScanResult {
            revision: "sha256:abc".into(),
            tag_count: 3,
            scan_time: Some(relative_time("now-10s", now)),
            latest_tags: vec![],
        }),
        ..Default::default()
    };
    let inputs = ScanInputs {
        interval: Duration::from_secs(60),
        canonical: "example.com/foo/bar",
        exclusion_list: &exclusion,
        requested_at: None,
    };
    let decide = |stored| should_scan(inputs, Some(&status), now, || Ok(stored)).unwrap();
    assert_eq!(decide(Stored::Current(3)).reason, "");
    assert_eq!(decide(Stored::Current(3)).next, Duration::from_secs(50));
    assert_eq!(decide(Stored::Missing).reason, REASON_NO_TAGS);
    let stale = decide(Stored::Stale);
    assert!(stale.scan);
    assert_eq!(stale.reason, REASON_STALE_STORE);
    assert_eq!(stale.next, Duration::from_secs(60));
}

#[test]
fn scan_cases_without_a_registry() {
    for case in cases("scan") {
        let name = case["name"].as_str().unwrap();
        // Registry errors (404, proxy refused) and the deadline case are covered against the real
        // registries by the e2e tests.
        // A failing store write ("failed to set tags") needs the whole reconcile; the message is the same.
        if case["registryTags"].is_null()
            || !case["proxyURL"].is_null()
            || !case["db"]["writeError"].is_null()
        {
            continue;
        }
        let exclusion_list = if case["exclusionList"].is_null() {
            api::image_repository::DEFAULT_EXCLUSION_LIST
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            strings(&case["exclusionList"])
        };
        let want = &case["expected"];
        let got = filter_out_tags(strings(&case["registryTags"]), &exclusion_list);
        if want["error"].as_bool().unwrap() {
            let e = got.unwrap_err();
            let needle = want["errorContains"].as_str().unwrap();
            assert!(e.contains(needle), "{name}: {e}");
            continue;
        }
        let mut tags = got.unwrap();
        let latest = sort_tags_and_get_latest(&mut tags);
        assert_eq!(tags, strings(&want["storedTags"]), "{name}");
        assert_eq!(latest, strings(&want["latestTags"]), "{name}");
        assert_eq!(
            tags.len() as u64,
            want["tagCount"].as_u64().unwrap(),
            "{name}"
        );
    }
    // The revision hashes the sorted list, so server order does not matter (upstream's two
    // "tags are sorted for checksum" cases; our revision is sha256 rather than adler32).
    let mut a: Vec<String> = ["c", "d", "a", "b"].map(String::from).to_vec();
    let mut b: Vec<String> = ["c", "b", "a", "d"].map(String::from).to_vec();
    sort_tags_and_get_latest(&mut a);
    sort_tags_and_get_latest(&mut b);
    assert_eq!(store::revision_of_tags(&a), store::revision_of_tags(&b));
}

#[test]
fn latest_tags_cases() {
    for case in cases("latestTags") {
        let mut tags = strings(&case["tags"]);
        let latest = sort_tags_and_get_latest(&mut tags);
        assert_eq!(
            latest,
            strings(&case["expected"]["latestTags"]),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn exclusion_cases() {
    for case in cases("exclusion") {
        let got = filter_out_tags(strings(&case["tags"]), &strings(&case["exclusionList"]));
        let want = &case["expected"];
        if want["error"].as_bool().unwrap() {
            let e = got.unwrap_err();
            assert!(e.starts_with("failed to compile regex [=: "), "{e}");
        } else {
            assert_eq!(got.unwrap(), strings(&want["tags"]), "{}", case["name"]);
        }
    }
}

#[test]
fn is_equal_slice_content_cases() {
    for case in cases("isEqualSliceContent") {
        assert_eq!(
            is_equal_slice_content(&strings(&case["a"]), &strings(&case["b"])),
            case["expected"]["equal"].as_bool().unwrap(),
            "{}",
            case["name"]
        );
    }
}

fn ready(v: &Value) -> Vec<Condition> {
    if v.is_null() {
        return vec![];
    }
    vec![Condition {
        type_: v["type"].as_str().unwrap().into(),
        status: v["status"].as_str().unwrap().into(),
        reason: v["reason"].as_str().unwrap().into(),
        message: v["message"].as_str().unwrap().into(),
        observed_generation: Some(1),
        last_transition_time: now_seconds(),
    }]
}

#[test]
fn notify_cases() {
    for case in cases("notify") {
        let (kind, reason, message) = notify_event(
            &ready(&case["oldReady"]),
            &ready(&case["newReady"]),
            case["nextScanMsg"].as_str().unwrap(),
        );
        let kind = match kind {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
            EventType::Trace => "Trace",
        };
        assert_eq!(
            format!("{kind} {reason} {message}"),
            case["expected"]["event"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn ready_message_is_upstreams() {
    let status = ImageRepositoryStatus {
        last_scan_result: Some(ScanResult {
            revision: "sha256:0a1b".into(),
            tag_count: 7,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        ready_message(Some(&status)),
        "successful scan: found 7 tags with checksum sha256:0a1b"
    );
}
