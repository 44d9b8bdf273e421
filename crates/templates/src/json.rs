//! JSON as Go's `encoding/json` writes it (for Sprig's `toJson` family) and reads it (`fromJson`).

use crate::value::{FieldKind, Value};

/// Output style.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `json.Marshal`: compact, `<>&` escaped.
    Compact,
    /// `json.MarshalIndent(v, "", "  ")`.
    Pretty,
    /// An encoder with `SetEscapeHTML(false)`, without the trailing newline.
    Raw,
}

/// Why encoding failed.
pub(crate) enum EncodeError {
    /// The output would pass the limit.
    TooBig,
    /// Go's encoder refuses the value (e.g. a map with struct keys).
    Unsupported(String),
}

struct Enc {
    out: String,
    style: Style,
    limit: usize,
}

/// Encodes a value; maps with non-string keys are refused like Go does.
pub(crate) fn encode(v: &Value, style: Style, limit: usize) -> Result<String, EncodeError> {
    let mut e = Enc {
        out: String::new(),
        style,
        limit,
    };
    e.value(v, 0)?;
    Ok(e.out)
}

impl Enc {
    fn check(&self) -> Result<(), EncodeError> {
        if self.out.len() > self.limit {
            Err(EncodeError::TooBig)
        } else {
            Ok(())
        }
    }

    fn newline(&mut self, depth: usize) {
        if self.style == Style::Pretty {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str("  ");
            }
        }
    }

    fn colon(&mut self) {
        self.out.push(':');
        if self.style == Style::Pretty {
            self.out.push(' ');
        }
    }

    fn string(&mut self, s: &str) {
        let html = self.style != Style::Raw;
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                '<' | '>' | '&' if html => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                '\u{2028}' | '\u{2029}' => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        self.check()?;
        match v {
            Value::Missing | Value::Nil => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => self.out.push_str(&i.to_string()),
            Value::Float(f) => {
                if !f.is_finite() {
                    return Err(EncodeError::Unsupported(format!(
                        "json: unsupported value: {}",
                        crate::gofmt::sprint_v(v)
                    )));
                }
                self.out.push_str(&go_json_float(*f));
            }
            Value::Str(s) => self.string(s),
            Value::List(l) => {
                if l.items.is_empty() {
                    self.out.push_str("[]");
                    return Ok(());
                }
                self.out.push('[');
                for (i, item) in l.items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.newline(depth + 1);
                    self.value(item, depth + 1)?;
                }
                self.newline(depth);
                self.out.push(']');
            }
            Value::Map(m) => {
                let mut keyed: Vec<(String, &Value)> = Vec::with_capacity(m.len());
                for (k, val) in m.entries() {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        Value::Int(i) => i.to_string(),
                        _ => {
                            return Err(EncodeError::Unsupported(format!(
                                "json: unsupported type: {}",
                                m.type_name
                            )));
                        }
                    };
                    keyed.push((key, val));
                }
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                self.object(keyed, depth)?;
            }
            Value::Struct(s) => {
                let mut fields: Vec<(String, &Value)> = Vec::new();
                collect_fields(s, &mut fields);
                self.object(fields, depth)?;
            }
        }
        self.check()
    }

    fn object(&mut self, fields: Vec<(String, &Value)>, depth: usize) -> Result<(), EncodeError> {
        if fields.is_empty() {
            self.out.push_str("{}");
            return Ok(());
        }
        self.out.push('{');
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.newline(depth + 1);
            self.string(&k);
            self.colon();
            self.value(v, depth + 1)?;
        }
        self.newline(depth);
        self.out.push('}');
        Ok(())
    }
}

/// A struct's JSON members: embedded structs inlined, methods skipped, `omitempty` honoured.
fn collect_fields<'a>(s: &'a crate::value::Struct, out: &mut Vec<(String, &'a Value)>) {
    for f in &s.fields {
        match (f.kind, &f.value) {
            (FieldKind::Method, _) => {}
            (FieldKind::Embedded, Value::Struct(inner)) if f.json.is_none() => {
                collect_fields(inner, out)
            }
            _ => {
                if f.omitempty && f.value.is_zero() {
                    continue;
                }
                let name = f.json.as_deref().unwrap_or(&f.name).to_string();
                out.push((name, &f.value));
            }
        }
    }
}

/// Go's JSON float: shortest digits, exponent form below 1e-6 or from 1e21 on.
fn go_json_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        format!("{m}e{sign}{digits}")
    } else {
        // Rust's Display prints the shortest round-trip digits without an exponent.
        let s = format!("{f}");
        if s == "-0" { "-0".into() } else { s }
    }
}

/// Decodes a JSON object into a `map[string]interface {}`, numbers as float64 like Go.
pub(crate) fn decode_object(src: &str) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_str(src).map_err(|e| e.to_string())?;
    match v {
        serde_json::Value::Object(_) => Ok(from_serde(&v, 0)?),
        other => Err(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            kind(&other)
        )),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn from_serde(v: &serde_json::Value, depth: usize) -> Result<Value, String> {
    if depth > crate::funcs::MAX_VALUE_DEPTH {
        return Err("json: nested too deeply".into());
    }
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::str(s.as_str()),
        serde_json::Value::Array(a) => Value::any_list(
            a.iter()
                .map(|x| from_serde(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => Value::dict(
            o.iter()
                .map(|(k, x)| Ok((Value::str(k.as_str()), from_serde(x, depth + 1)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

impl Value {
    /// Reads JSON data as Go's `json.Unmarshal` into `interface {}` does: objects become
    /// `map[string]interface {}`, arrays `[]interface {}`, numbers `float64`. Helm values are
    /// read this way. Fails when the data nests deeper than the engine's value depth limit.
    pub fn from_json(v: &serde_json::Value) -> Result<Value, String> {
        from_serde(v, 0)
    }

    /// The value as Go's `json.Marshal` would write it (struct fields by their JSON names), read
    /// back as JSON data; fails where Go's encoder does (maps with non-string keys, NaN).
    pub fn to_json(&self) -> Result<serde_json::Value, String> {
        let text = encode(self, Style::Raw, usize::MAX).map_err(|e| match e {
            EncodeError::TooBig => "value too large".to_string(),
            EncodeError::Unsupported(m) => m,
        })?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}
