//! Helpers shared by the api crate's integration tests: paths, YAML loading, JSON merge patch,
//! and a small OpenAPI v3 checker emulating the API server's schema validation and defaulting.

// Test-only helpers: panicking on malformed fixtures is the point.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use serde_json::{Map, Value};

/// The repository root (two levels above the crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file under `tests/data`.
pub fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Parses a YAML file under `tests/data` into JSON.
pub fn load_yaml(rel: &str) -> Value {
    let path = data_path(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!()
    };
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The `openAPIV3Schema` of one served version of a CRD, as JSON.
pub fn version_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    version: &str,
) -> Value {
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .unwrap_or_else(|| panic!("no version {version}"));
    serde_json::to_value(
        v.schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Validates an object (apiVersion/kind/metadata excluded) against a CRD schema; returns the
/// violations with their JSON paths. Unknown fields are violations (kubectl's strict validation).
pub fn validate_object(schema: &Value, object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut obj = object.as_object().cloned().unwrap_or_default();
    for meta in ["apiVersion", "kind", "metadata"] {
        obj.remove(meta);
    }
    validate(schema, &Value::Object(obj), "", &mut errors);
    errors
}

fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let mut err = |msg: String| {
        errors.push(format!(
            "{}: {msg}",
            if path.is_empty() { "<root>" } else { path }
        ))
    };
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        err(format!("{value} not in enum {allowed:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(map) = value.as_object() else {
                return err(format!("expected object, got {value}"));
            };
            let props = schema.get("properties").and_then(Value::as_object);
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            for (k, v) in map {
                let child = format!("{path}.{k}");
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    validate(s, v, &child, errors);
                } else if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object())
                {
                    validate(s, v, &child, errors);
                } else if !preserve {
                    errors.push(format!("{child}: unknown field"));
                }
            }
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = req.as_str().unwrap();
                if !map.contains_key(req) {
                    errors.push(format!("{path}.{req}: required field missing"));
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return err(format!("expected array, got {value}"));
            };
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                err(format!("{} items, more than {max}", items.len()));
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(s, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Some("string") => {
            let Some(s) = value.as_str() else {
                return err(format!("expected string, got {value}"));
            };
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && !regex::Regex::new(p).unwrap().is_match(s)
            {
                err(format!("{s:?} does not match {p}"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && s.chars().count() as u64 > max
            {
                err(format!("longer than {max}"));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && (s.chars().count() as u64) < min
            {
                err(format!("shorter than {min}"));
            }
        }
        Some("integer") => {
            let Some(n) = value.as_i64() else {
                return err(format!("expected integer, got {value}"));
            };
            if let Some(min) = schema.get("minimum").and_then(Value::as_i64)
                && n < min
            {
                err(format!("{n} below minimum {min}"));
            }
        }
        Some("boolean") if !value.is_boolean() => err(format!("expected boolean, got {value}")),
        Some("boolean") => {}
        Some(other) => err(format!(
            "schema type {other} not handled by the test checker"
        )),
        None => {}
    }
}

/// Applies schema defaults to absent fields of present objects, like the API server does.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !map.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(k) {
                        apply_defaults(s, v);
                    }
                }
            }
            if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                map.values_mut().for_each(|v| apply_defaults(s, v));
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                items.iter_mut().for_each(|v| apply_defaults(s, v));
            }
        }
        _ => {}
    }
}
