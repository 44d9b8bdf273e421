//! Functions added through `FuncMap`: extra functions, overriding, `include`, and JSON data.

use templates::{FuncMap, Limits, Template, Value};

fn run(text: &str, funcs: &FuncMap, data: &Value) -> Result<String, String> {
    let t = Template::parse_with_funcs("t", text, funcs).map_err(|e| e.to_string())?;
    t.execute(data, &Limits::default())
        .map_err(|e| e.to_string())
}

fn helm_like() -> FuncMap {
    let mut f = FuncMap::new();
    f.insert_include("include");
    f.insert("required", |a: &[Value]| match a {
        [Value::Str(msg), v] if !v.truth() => Err(msg.to_string()),
        [_, v] => Ok(v.clone()),
        _ => Err("want a message and a value".into()),
    });
    f
}

#[test]
fn an_unknown_function_still_fails_to_parse_without_the_map() {
    let e = Template::parse("t", "{{ required \"x\" .a }}").unwrap_err();
    assert!(
        e.to_string().contains("function \"required\" not defined"),
        "{e}"
    );
}

#[test]
fn an_added_function_is_called_with_evaluated_arguments() {
    let data = Value::from_json(&serde_json::json!({"a": "set"})).unwrap();
    assert_eq!(
        run("{{ required \"a is required\" .a }}", &helm_like(), &data).unwrap(),
        "set"
    );
    let e = run("{{ required \"b is required\" .b }}", &helm_like(), &data).unwrap_err();
    assert_eq!(
        e,
        "template: t:1:3: executing \"t\" at <required>: error calling required: b is required"
    );
}

#[test]
fn an_added_function_replaces_a_provided_one() {
    let mut f = FuncMap::new();
    f.insert("upper", |_: &[Value]| Ok(Value::str("replaced")));
    assert_eq!(
        run("{{ upper \"x\" }}", &f, &Value::Nil).unwrap(),
        "replaced"
    );
}

#[test]
fn include_returns_the_output_of_a_define_and_can_be_piped() {
    let text = concat!(
        r#"{{- define "labels" -}}app: {{ .name }}{{ "\n" }}tier: web{{- end -}}"#,
        "x:{{ include \"labels\" . | nindent 2 }}\nn={{ include \"labels\" . | len }}"
    );
    let data = Value::from_json(&serde_json::json!({"name": "podinfo"})).unwrap();
    assert_eq!(
        run(text, &helm_like(), &data).unwrap(),
        "x:\n  app: podinfo\n  tier: web\nn=22"
    );
}

#[test]
fn include_does_not_leak_into_the_surrounding_output_and_reports_missing_templates() {
    let text = r#"{{define "d"}}inner{{end}}a{{ $x := include "d" . }}b{{ $x }}"#;
    assert_eq!(run(text, &helm_like(), &Value::Nil).unwrap(), "abinner");
    let e = run(r#"{{ include "nope" . }}"#, &helm_like(), &Value::Nil).unwrap_err();
    assert!(e.contains("template \"nope\" not defined"), "{e}");
}

#[test]
fn recursive_include_stops_at_the_depth_budget() {
    let text = r#"{{define "r"}}{{ include "r" . }}{{end}}{{ include "r" . }}"#;
    let t = Template::parse_with_funcs("t", text, &helm_like()).unwrap();
    let e = t.execute(&Value::Nil, &Limits::default()).unwrap_err();
    assert_eq!(e.budget, Some(templates::BudgetKind::Depth));
}

#[test]
fn json_data_reads_like_go_and_writes_back() {
    let json = serde_json::json!({"n": 3, "l": [true, null, "s"], "m": {"k": 1.5}});
    let v = Value::from_json(&json).unwrap();
    assert_eq!(v.type_name(), "map[string]interface {}");
    assert_eq!(
        run(
            "{{ printf \"%T\" .n }} {{ .m.k }} {{ index .l 2 }}",
            &FuncMap::new(),
            &v
        )
        .unwrap(),
        "float64 1.5 s"
    );
    assert_eq!(v.to_json().unwrap(), json);
}
