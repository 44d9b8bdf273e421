//! Data-driven conformance: every Masterminds/semver table case and every policy, filter and tag-parsing
//! case of the reflector acceptance data (copied into `tests/data/`).

// Test code: a failed unwrap is a test failure with its location.
#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;
use std::collections::BTreeSet;

use policy::{Choice, Constraints, Filter, FilterSpec, Policy, Version};
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Runs every case, collecting failures so one run reports all of them; returns how many ran.
fn run(cases: &[Value], mut f: impl FnMut(&Value) -> Result<Outcome, String>) -> usize {
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases {
        match f(case) {
            Ok(Outcome::Ran) => ran += 1,
            Ok(Outcome::Skipped) => {}
            Err(e) => failures.push(format!("{e}\n    case: {case}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ran
}

enum Outcome {
    Ran,
    Skipped,
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<Outcome, String> {
    if ok { Ok(Outcome::Ran) } else { Err(what()) }
}

#[test]
fn masterminds_semver_cases() {
    let cases = load("masterminds-semver-cases.json");
    assert_eq!(cases.len(), 331);
    let ran = run(&cases, |c| {
        let suite = s(c, "suite");
        match suite {
            "masterminds.ConstraintCheck" | "masterminds.ConstraintsCheck" => {
                let mut range = s(c, "constraint");
                if range.is_empty() {
                    // Only the internal single-constraint parser accepts "", as "*" (see the case's note);
                    // the public parser must reject it.
                    assert!(Constraints::parse("").is_err());
                    range = "*";
                }
                let cons = Constraints::parse(range).map_err(|e| format!("{range:?}: {e}"))?;
                if suite == "masterminds.ConstraintCheck"
                    && (cons.or_groups() != 1 || cons.and_count(0) != 1)
                {
                    return Err(format!("{range:?} is not a single comparator"));
                }
                let version = s(c, "version");
                let v = Version::parse_loose(version).map_err(|e| format!("{version:?}: {e}"))?;
                let want = c["expected"].as_bool().unwrap();
                check(cons.check(&v) == want, || {
                    format!("{range:?} check {version:?} != {want}")
                })
            }
            "masterminds.NewConstraint" => {
                let range = s(c, "constraint");
                let want_err = c["expectedError"].as_bool().unwrap();
                match Constraints::parse(range) {
                    Err(e) => check(want_err, || format!("{range:?} failed: {e}")),
                    Ok(cons) => check(
                        !want_err
                            && cons.or_groups() as u64 == c["ors"].as_u64().unwrap()
                            && cons.and_count(0) as u64 == c["andCountOfFirstOr"].as_u64().unwrap(),
                        || format!("{range:?} parsed as {cons:?}"),
                    ),
                }
            }
            // Internal rewrite, covered by a unit test inside the crate using the same data.
            "masterminds.rewriteRange" => Ok(Outcome::Skipped),
            "masterminds.NewVersion(loose)" => {
                let version = s(c, "version");
                let want_err = c["expectedError"].as_bool().unwrap();
                let got = Version::parse_loose(version);
                check(got.is_err() == want_err, || {
                    format!("{version:?} -> {got:?}")
                })
            }
            "masterminds.Compare" => {
                let (a, b) = (s(c, "v1"), s(c, "v2"));
                let va = Version::parse_loose(a).map_err(|e| format!("{a}: {e}"))?;
                let vb = Version::parse_loose(b).map_err(|e| format!("{b}: {e}"))?;
                let want = match c["expected"].as_i64().unwrap() {
                    -1 => Ordering::Less,
                    0 => Ordering::Equal,
                    _ => Ordering::Greater,
                };
                check(va.cmp_precedence(&vb) == want, || format!("{a} vs {b}"))
            }
            other => Err(format!("unknown suite {other}")),
        }
    });
    assert_eq!(ran, 331 - 5);
}

/// Reads `spec.policy` JSON into a choice (`None` for `{}`).
fn choice(policy: &Value) -> Option<Choice<'_>> {
    fn order(v: &Value) -> &str {
        v.get("order").and_then(Value::as_str).unwrap_or("")
    }
    Choice::from_spec(
        policy
            .get("semver")
            .map(|v| v["range"].as_str().unwrap_or("")),
        policy.get("alphabetical").map(order),
        policy.get("numerical").map(order),
    )
}

fn filter(case: &Value) -> Option<FilterSpec<'_>> {
    let f = case.get("filter").filter(|f| !f.is_null())?;
    Some(FilterSpec {
        pattern: f["pattern"].as_str().unwrap_or(""),
        extract: f["extract"].as_str().unwrap_or(""),
    })
}

fn tags(case: &Value) -> Vec<&str> {
    case["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// Deterministic permutations of the input (rotations and reversal), for upstream's shuffled cases.
fn permutations<'a>(tags: &[&'a str]) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    for r in 0..tags.len().max(1) {
        let mut t = tags.to_vec();
        t.rotate_left(r);
        out.push(t.clone());
        t.reverse();
        out.push(t);
    }
    out
}

/// Compiles and selects, returning the tag or the full error text (policy errors included).
fn evaluate(case: &Value, tags: &[&str]) -> Result<String, String> {
    let policy = Policy::new(choice(&case["policy"]), filter(case)).map_err(|e| e.to_string())?;
    policy
        .select(tags.iter().copied())
        .map(str::to_owned)
        .map_err(|e| e.to_string())
}

/// Compares an evaluation with `expected` {result | error + errorMessage/errorMessageContains}.
fn expect(
    expected: &Value,
    got: &Result<String, String>,
    strip_prefix: bool,
) -> Result<Outcome, String> {
    let err_text = |e: &str| -> String {
        // `policer.latest` cases call the policer directly, without applyPolicy's "invalid policy: " prefix.
        if strip_prefix {
            e.strip_prefix("invalid policy: ").unwrap_or(e).to_owned()
        } else {
            e.to_owned()
        }
    };
    if expected["error"].as_bool() == Some(true) {
        let Err(e) = got else {
            return Err(format!("expected an error, got {got:?}"));
        };
        let e = err_text(e);
        if let Some(m) = expected.get("errorMessage").and_then(Value::as_str) {
            return check(e == m, || format!("error {e:?} != {m:?}"));
        }
        if let Some(m) = expected.get("errorMessageContains").and_then(Value::as_str) {
            return check(e.contains(m), || format!("error {e:?} lacks {m:?}"));
        }
        return Ok(Outcome::Ran);
    }
    let want = s(expected, "result");
    check(got.as_deref() == Ok(want), || {
        format!("got {got:?}, want {want:?}")
    })
}

#[test]
fn reflector_policy_cases() {
    let cases = load("reflector-policy-cases.json");
    let mut skipped = Vec::new();
    let ran = run(&cases, |c| {
        let expected = &c["expected"];
        match s(c, "kind") {
            "semver.newConstraint" | "policerFromSpec" => {
                let got = Policy::new(choice(&c["policy"]), None);
                if expected["error"].as_bool() == Some(true) {
                    let Err(e) = got else {
                        return Err("expected an error".into());
                    };
                    match expected.get("errorMessage").and_then(Value::as_str) {
                        Some(m) => check(e.to_string() == format!("invalid policy: {m}"), || {
                            e.to_string()
                        }),
                        None => Ok(Outcome::Ran),
                    }
                } else {
                    check(got.is_ok(), || format!("{got:?}"))
                }
            }
            kind @ ("alphabetical.new" | "numerical.new") => {
                let order = s(c, "rawOrder");
                let choice = if kind == "alphabetical.new" {
                    Choice::Alphabetical { order }
                } else {
                    Choice::Numerical { order }
                };
                let got = Policy::new(Some(choice), None);
                let want_err = expected["error"].as_bool().unwrap();
                if let Err(e) = &got {
                    let m = format!(
                        "invalid policy: invalid order argument provided: '{}', must be one of: ASC, DESC",
                        order.to_uppercase()
                    );
                    if e.to_string() != m {
                        return Err(format!("{e} != {m}"));
                    }
                }
                check(got.is_err() == want_err, || format!("{got:?}"))
            }
            "policer.latest" => {
                let tags = tags(c);
                let orders = if c["shuffleInput"].as_bool() == Some(true) {
                    permutations(&tags)
                } else {
                    vec![tags]
                };
                for t in orders {
                    expect(expected, &evaluate(c, &t), true)
                        .map_err(|e| format!("{e} for input {t:?}"))?;
                }
                Ok(Outcome::Ran)
            }
            "applyPolicy" => {
                if c.get("db").and_then(|d| d.get("readError")).is_some()
                    || expected.get("errorType").and_then(Value::as_str)
                        == Some("errNoTagsInDatabase")
                {
                    // Tag-database behaviour belongs to the controller, not to this engine.
                    skipped.push(s(c, "name").to_owned());
                    return Ok(Outcome::Skipped);
                }
                expect(expected, &evaluate(c, &tags(c)), false)
            }
            "filter.apply" => {
                let f = filter(c).unwrap();
                let filter = Filter::new(f.pattern, f.extract).map_err(|e| e.to_string())?;
                let got: BTreeSet<String> =
                    tags(c).iter().filter_map(|t| filter.extract(t)).collect();
                let want: BTreeSet<String> = expected["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                check(got == want, || format!("{got:?} != {want:?}"))
            }
            "parseVersion" => {
                let tag = s(c, "tag");
                let got = Version::parse_tag(tag);
                let want_err = expected["error"].as_bool().unwrap();
                check(got.is_err() == want_err, || format!("{tag:?} -> {got:?}"))
            }
            "e2e.policy" => {
                let got = evaluate(c, &tags(c));
                if let Some(tag) = expected.get("latestRef.tag").and_then(Value::as_str) {
                    return check(got.as_deref() == Ok(tag), || format!("{got:?}"));
                }
                let Err(e) = &got else {
                    return Err(format!("expected failure, got {got:?}"));
                };
                if expected["readyReasonContains"].as_str() == Some("InvalidPolicy") {
                    // Invalid-policy errors are the ones raised while compiling.
                    check(
                        Policy::new(choice(&c["policy"]), filter(c)).is_err(),
                        || format!("{e} is not an invalid policy"),
                    )
                } else {
                    let m = s(expected, "readyMessageContains");
                    check(e.contains(m), || format!("{e:?} lacks {m:?}"))
                }
            }
            other => Err(format!("unexpected kind {other}")),
        }
    });
    assert_eq!(skipped, ["database read fail", "no tags in database"]);
    assert_eq!(ran, cases.len() - skipped.len());
}
