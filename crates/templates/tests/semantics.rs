#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] fns.

//! Table-driven Go `text/template` and Sprig semantics (tests/data/semantics.json).

use std::path::PathBuf;

use serde_json::Value as Json;
use templates::{COMMIT_TEMPLATE_NAME, Limits, Template, TemplateInput, Value};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read_json(rel: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(data_dir().join(rel)).unwrap()).unwrap()
}

/// JSON as Go would hold it after decoding into `map[string]interface {}`, with integral numbers as `int`.
fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap())),
        Json::String(s) => Value::str(s.as_str()),
        Json::Array(a) => Value::any_list(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::dict(
            o.iter()
                .map(|(k, v)| (Value::str(k.as_str()), to_value(v)))
                .collect(),
        ),
    }
}

#[test]
fn semantics_table() {
    let file = read_json("semantics.json");
    let datasets = read_json("datasets.json");
    let default_data = to_value(&file["data"]);
    let mut failures = Vec::new();
    let cases = file["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = case["template"].as_str().unwrap();
        let data = match case.get("dataset").and_then(Json::as_str) {
            Some(ds) => serde_json::from_value::<TemplateInput>(datasets[ds].clone())
                .unwrap()
                .to_value(),
            None => default_data.clone(),
        };
        let got = Template::parse(COMMIT_TEMPLATE_NAME, text)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                t.execute(&data, &Limits::default())
                    .map_err(|e| e.to_string())
            });
        match (
            case.get("output").and_then(Json::as_str),
            case.get("error").and_then(Json::as_str),
            &got,
        ) {
            (Some(want), _, Ok(out)) if out == want => {}
            (_, Some(want), Err(e)) if e.contains(want) => {}
            _ => failures.push(format!(
                "{name}: expected {:?} / error {:?}, got {got:?}",
                case.get("output"),
                case.get("error")
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn execution_error_leaves_no_partial_output() {
    let t = Template::parse(
        COMMIT_TEMPLATE_NAME,
        "partial text {{ fail \"stop\" }} more",
    )
    .unwrap();
    let err = t.execute(&Value::Nil, &Limits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: commit message:1:16: executing \"commit message\" at <fail>: error calling fail: stop"
    );
    assert_eq!((err.line, err.column, err.budget), (1, 16, None));
}

#[test]
fn budgets_are_reported_by_kind() {
    let small = Limits {
        max_steps: 50,
        max_output: 10,
        max_depth: 2,
    };
    let run = |text: &str| {
        Template::parse(COMMIT_TEMPLATE_NAME, text)
            .unwrap()
            .execute(&Value::Nil, &small)
    };
    assert_eq!(
        run("{{ range 100 }}{{ end }}").unwrap_err().budget,
        Some(templates::BudgetKind::Steps)
    );
    assert_eq!(
        run("0123456789x").unwrap_err().budget,
        Some(templates::BudgetKind::Output)
    );
    assert_eq!(
        run("{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}")
            .unwrap_err()
            .budget,
        Some(templates::BudgetKind::Depth)
    );
    assert_eq!(run("0123456789").unwrap(), "0123456789");
}

#[test]
fn parsed_template_is_reusable_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Template>();
    assert_send_sync::<Value>();
    let t = Template::parse("t", "{{ . }}").unwrap();
    assert_eq!(t.execute(&Value::Int(1), &Limits::default()).unwrap(), "1");
    assert_eq!(
        t.execute(&Value::str("x"), &Limits::default()).unwrap(),
        "x"
    );
}

#[test]
fn function_names_cover_doc_list() {
    let names = templates::function_names();
    for f in [
        "lower",
        "contains",
        "toString",
        "sha256sum",
        "trunc",
        "printf",
        "index",
        "slice",
        "toJson",
        "b64enc",
    ] {
        assert!(names.contains(&f), "{f} missing");
    }
    for f in ["now", "env", "randAlpha", "uuidv4", "getHostByName"] {
        assert!(!names.contains(&f), "{f} must not exist");
    }
}

#[test]
fn deep_nesting_is_a_parse_error_not_a_stack_overflow() {
    for depth in [150, 100_000] {
        let parens = format!("{{{{ {}1{} }}}}", "(".repeat(depth), ")".repeat(depth));
        let err = Template::parse(COMMIT_TEMPLATE_NAME, &parens).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
        let ifs = format!(
            "{}x{}",
            "{{ if 1 }}".repeat(depth),
            "{{ end }}".repeat(depth)
        );
        let err = Template::parse(COMMIT_TEMPLATE_NAME, &ifs).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{err}");
    }
}

/// Words inside backticks in `text`, split on whitespace (the doc lists are written that way).
fn backticked_words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join(" ");
    cleaned
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect()
}

#[test]
fn crate_docs_list_exactly_the_sprig_functions_provided() {
    let lib = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .unwrap();
    let start = lib.find("//! Provided (Sprig v3 semantics").unwrap();
    let split = lib.find("//! Not provided").unwrap();
    let end = lib[split..]
        .find("\n\n")
        .map(|i| split + i)
        .unwrap_or(lib.len());
    let mut provided: Vec<String> = backticked_words(&lib[start..split])
        .into_iter()
        .filter(|w| !w.starts_with("must"))
        .collect();
    let not_provided = backticked_words(&lib[split..end]);
    let builtins = [
        "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le",
        "gt", "ge", "html", "js", "urlquery", "call",
    ];
    let names = templates::function_names();
    // Every documented `must*` variant exists when its plain function does.
    let mut actual: Vec<String> = names
        .iter()
        .filter(|n| !builtins.contains(n) && !n.starts_with("must"))
        .map(|s| s.to_string())
        .collect();
    provided.sort();
    provided.dedup();
    actual.sort();
    assert_eq!(provided, actual, "documented vs registered Sprig functions");
    for n in &not_provided {
        assert!(
            !names.contains(&n.as_str()),
            "{n} is documented as absent but registered"
        );
    }
    for n in names.iter().filter(|n| n.starts_with("must")) {
        let plain = n.trim_start_matches("must");
        let plain = format!("{}{}", plain[..1].to_lowercase(), &plain[1..]);
        assert!(names.contains(&plain.as_str()), "{n} without {plain}");
    }
}
