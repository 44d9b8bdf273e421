//! Data values a template is executed against, shaped after Go's reflect kinds.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A data value, the Rust counterpart of the Go values a `text/template` sees.
#[derive(Clone, Debug)]
pub enum Value {
    /// Go's invalid `reflect.Value`: a missing map key or a field of a missing value; prints `<no value>`.
    Missing,
    /// An untyped Go `nil`; prints `<nil>`.
    Nil,
    /// A Go `bool`.
    Bool(bool),
    /// A Go `int` (64-bit).
    Int(i64),
    /// A Go `float64`.
    Float(f64),
    /// A Go `string`.
    Str(Arc<str>),
    /// A Go slice.
    List(Arc<List>),
    /// A Go map, keys kept in Go's sorted order.
    Map(Arc<Map>),
    /// A Go struct, optionally with a `String()` method.
    Struct(Arc<Struct>),
}

/// A Go slice: its Go type name (for `%T` and errors) and its elements.
#[derive(Clone, Debug)]
pub struct List {
    /// Go type name, e.g. `[]string`.
    pub type_name: Arc<str>,
    /// The elements, in order.
    pub items: Vec<Value>,
    depth: usize,
}

impl List {
    /// Builds a slice.
    pub fn new(type_name: &str, items: Vec<Value>) -> Self {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        List {
            type_name: type_name.into(),
            items,
            depth,
        }
    }
}

/// A Go map whose entries are kept sorted as Go's `fmt` and `range` visit them.
#[derive(Clone, Debug)]
pub struct Map {
    /// Go type name, e.g. `map[string]string`.
    pub type_name: Arc<str>,
    /// The zero value of the element type, returned by `index` for a missing key.
    pub zero: Value,
    entries: Vec<(Value, Value)>,
    depth: usize,
}

/// How a struct member is seen by templates and printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// An ordinary exported field: printed by `%v` and reachable as `.Name`.
    Plain,
    /// An embedded struct: printed as a nested struct, its fields are promoted.
    Embedded,
    /// A method without arguments: reachable as `.Name`, never printed.
    Method,
}

/// One member of a [`Struct`].
#[derive(Clone, Debug)]
pub struct Field {
    /// The Go name, e.g. `OldValue`.
    pub name: Arc<str>,
    /// The member's value.
    pub value: Value,
    /// Field, embedded field or method.
    pub kind: FieldKind,
    /// The JSON key (Go `json` tag), `None` for the Go field name.
    pub json: Option<Arc<str>>,
    /// Go's `omitempty` tag option.
    pub omitempty: bool,
}

/// A Go struct value.
#[derive(Clone, Debug)]
pub struct Struct {
    /// Go type name, e.g. `update.Change`.
    pub type_name: Arc<str>,
    /// Fields, embedded fields and methods, in declaration order.
    pub fields: Vec<Field>,
    /// The result of the type's `String()` method, when it has one.
    pub display: Option<Arc<str>>,
}

impl Field {
    /// An ordinary field.
    pub fn plain(name: &str, value: Value) -> Self {
        Field {
            name: name.into(),
            value,
            kind: FieldKind::Plain,
            json: None,
            omitempty: false,
        }
    }
    /// An embedded struct field.
    pub fn embedded(name: &str, value: Value) -> Self {
        Field {
            name: name.into(),
            value,
            kind: FieldKind::Embedded,
            json: None,
            omitempty: false,
        }
    }
    /// A method without arguments, precomputed.
    pub fn method(name: &str, value: Value) -> Self {
        Field {
            name: name.into(),
            value,
            kind: FieldKind::Method,
            json: None,
            omitempty: false,
        }
    }
    /// Sets the JSON key and `omitempty`, as a Go `json:"key,omitempty"` tag does.
    pub fn with_json(mut self, key: &str, omitempty: bool) -> Self {
        self.json = Some(key.into());
        self.omitempty = omitempty;
        self
    }
}

impl Struct {
    /// Looks a field or method up by name, including fields promoted from embedded structs.
    pub fn get(&self, name: &str) -> Option<&Value> {
        if let Some(f) = self.fields.iter().find(|f| &*f.name == name) {
            return Some(&f.value);
        }
        self.fields
            .iter()
            .filter(|f| f.kind == FieldKind::Embedded)
            .find_map(|f| match &f.value {
                Value::Struct(s) => s.get(name),
                _ => None,
            })
    }
}

impl Map {
    /// Builds a map; entries are sorted in Go order and a later duplicate key replaces an earlier one.
    pub fn new(type_name: &str, zero: Value, mut entries: Vec<(Value, Value)>) -> Self {
        entries.sort_by(|a, b| go_cmp(&a.0, &b.0));
        let mut dedup: Vec<(Value, Value)> = Vec::with_capacity(entries.len());
        for e in entries {
            match dedup.last_mut() {
                Some(last) if go_cmp(&last.0, &e.0) == Ordering::Equal => *last = e,
                _ => dedup.push(e),
            }
        }
        let depth = 1 + dedup
            .iter()
            .map(|(k, v)| k.depth().max(v.depth()))
            .max()
            .unwrap_or(0);
        Map {
            type_name: type_name.into(),
            zero,
            entries: dedup,
            depth,
        }
    }
    /// The entries in Go's sorted key order.
    pub fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Looks a key up.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        self.entries
            .binary_search_by(|(k, _)| go_cmp(k, key))
            .ok()
            .map(|i| &self.entries[i].1)
    }
    /// Whether keys of this map are strings (so `.key` works on it).
    pub fn has_string_keys(&self) -> bool {
        self.type_name.starts_with("map[string]")
    }
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<Arc<str>>) -> Self {
        Value::Str(s.into())
    }
    /// A slice with the given Go type name.
    pub fn list(type_name: &str, items: Vec<Value>) -> Self {
        Value::List(Arc::new(List::new(type_name, items)))
    }
    /// A `[]interface {}` slice.
    pub fn any_list(items: Vec<Value>) -> Self {
        Value::list("[]interface {}", items)
    }
    /// A map with the given Go type name and element zero value.
    pub fn map(type_name: &str, zero: Value, entries: Vec<(Value, Value)>) -> Self {
        Value::Map(Arc::new(Map::new(type_name, zero, entries)))
    }
    /// A `map[string]string`.
    pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let e = entries
            .into_iter()
            .map(|(k, v)| (Value::str(k), Value::str(v)))
            .collect();
        Value::map("map[string]string", Value::str(""), e)
    }
    /// A `map[string]interface {}`, as Sprig's `dict` makes.
    pub fn dict(entries: Vec<(Value, Value)>) -> Self {
        Value::map("map[string]interface {}", Value::Nil, entries)
    }
    /// A struct value.
    pub fn structure(type_name: &str, fields: Vec<Field>, display: Option<String>) -> Self {
        Value::Struct(Arc::new(Struct {
            type_name: type_name.into(),
            fields,
            display: display.map(Into::into),
        }))
    }

    /// The Go type name, as `%T` prints it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Missing | Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::List(l) => l.type_name.to_string(),
            Value::Map(m) => m.type_name.to_string(),
            Value::Struct(s) => s.type_name.to_string(),
        }
    }

    /// Go's template truth: false, 0, nil, empty string, slice or map are false; structs are true.
    pub fn truth(&self) -> bool {
        match self {
            Value::Missing | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.items.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Struct(_) => true,
        }
    }

    /// Whether the value is empty as Sprig's `empty` and JSON's `omitempty` see it: nil, false, 0,
    /// or an empty string, slice or map (structs never are).
    pub fn is_zero(&self) -> bool {
        match self {
            Value::Missing | Value::Nil => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Float(f) => *f == 0.0,
            Value::Str(s) => s.is_empty(),
            Value::List(l) => l.items.is_empty(),
            Value::Map(m) => m.is_empty(),
            Value::Struct(_) => false,
        }
    }

    /// The string inside a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Nesting depth of containers (0 for scalars); bounded by the executor so printing cannot recurse without end.
    pub fn depth(&self) -> usize {
        match self {
            Value::List(l) => l.depth,
            Value::Map(m) => m.depth,
            Value::Struct(s) => 1 + s.fields.iter().map(|f| f.value.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Missing => 0,
            Value::Nil => 1,
            Value::Bool(_) => 2,
            Value::Int(_) | Value::Float(_) => 3,
            Value::Str(_) => 4,
            Value::Struct(_) => 5,
            Value::List(_) => 6,
            Value::Map(_) => 7,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// Go's `fmtsort` order: numbers numerically, strings bytewise, structs field by field.
pub fn go_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
        (Value::Int(x), Value::Float(y)) => (*x as f64).total_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.total_cmp(&(*y as f64)),
        (Value::Str(x), Value::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Struct(x), Value::Struct(y)) => {
            // Structs whose fields are hidden behind methods (image refs) compare by their string.
            if let (Some(dx), Some(dy)) = (&x.display, &y.display)
                && dx != dy
            {
                return dx.as_bytes().cmp(dy.as_bytes());
            }
            let xs = x.fields.iter().filter(|f| f.kind != FieldKind::Method);
            let mut ys = y.fields.iter().filter(|f| f.kind != FieldKind::Method);
            for fx in xs {
                match ys.next() {
                    Some(fy) => match go_cmp(&fx.value, &fy.value) {
                        Ordering::Equal => {}
                        o => return o,
                    },
                    None => return Ordering::Greater,
                }
            }
            if ys.next().is_some() {
                Ordering::Less
            } else {
                Ordering::Equal
            }
        }
        _ => a.rank().cmp(&b.rank()),
    }
}

/// Go's `==` on comparable values; `None` when the values are not comparable (slices, maps).
pub fn go_equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Missing | Value::Nil, Value::Missing | Value::Nil) => Some(true),
        (Value::Bool(x), Value::Bool(y)) => Some(x == y),
        (Value::Int(x), Value::Int(y)) => Some(x == y),
        (Value::Float(x), Value::Float(y)) => Some(x == y),
        (Value::Str(x), Value::Str(y)) => Some(x == y),
        (Value::Struct(x), Value::Struct(y)) => {
            if x.type_name != y.type_name || x.display != y.display {
                return Some(false);
            }
            let xs = x.fields.iter().filter(|f| f.kind != FieldKind::Method);
            let ys = y.fields.iter().filter(|f| f.kind != FieldKind::Method);
            for (fx, fy) in xs.zip(ys) {
                if !go_equal(&fx.value, &fy.value)? {
                    return Some(false);
                }
            }
            Some(true)
        }
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => None,
        _ => Some(false),
    }
}

impl fmt::Display for Value {
    /// Go's `%v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::gofmt::sprint_v(self))
    }
}
