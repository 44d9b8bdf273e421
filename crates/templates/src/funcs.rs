//! Go's builtin template functions and Sprig's hermetic text functions.

use std::sync::Arc;

use crate::gofmt;
use crate::json;
use crate::value::{Value, go_cmp, go_equal};
use crate::{BudgetKind, Limits};

/// Maximum nesting of values built by functions (lists of lists, ...).
pub(crate) const MAX_VALUE_DEPTH: usize = 64;

/// Execution state shared with functions: budgets and the output so far.
pub(crate) struct Ctx<'a> {
    pub limits: &'a Limits,
    pub out: String,
    pub steps: u64,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(limits: &'a Limits) -> Self {
        Ctx {
            limits,
            out: String::new(),
            steps: 0,
        }
    }
    /// Charges work on `bytes` bytes (one step per 64) against the step budget.
    fn charge_bytes(&mut self, bytes: usize) -> Result<(), FuncError> {
        self.charge_items(bytes / 64)
    }
    /// Charges work on `items` values (one step each) against the step budget, which also bounds
    /// the memory that lists copied again and again can hold.
    fn charge_items(&mut self, items: usize) -> Result<(), FuncError> {
        self.steps = self.steps.saturating_add(items as u64);
        if self.steps > self.limits.max_steps {
            return Err(FuncError::Budget(
                BudgetKind::Steps,
                format!(
                    "exceeded the budget of {} evaluation steps",
                    self.limits.max_steps
                ),
            ));
        }
        Ok(())
    }
    /// Refuses to build a value of `size` bytes or elements past the output budget.
    fn check_size(&self, size: usize) -> Result<(), FuncError> {
        if size > self.limits.max_output {
            return Err(FuncError::Budget(
                BudgetKind::Output,
                format!(
                    "value of {size} bytes or elements exceeds the budget of {} bytes",
                    self.limits.max_output
                ),
            ));
        }
        Ok(())
    }
}

/// How a function call failed.
pub(crate) enum FuncError {
    /// The call does not fit the function (reported as is, like Go's argument checks).
    Arg(String),
    /// One argument does not fit its parameter; the `usize` identifies it (its address in the
    /// argument slice) so the error can point at the argument's node like Go does.
    BadArg(String, usize),
    /// The function itself failed (reported as `error calling NAME: ...`).
    Call(String),
    /// A budget was exceeded.
    Budget(BudgetKind, String),
}

type FResult = Result<Value, FuncError>;
type Func = fn(&mut Ctx<'_>, &[Value]) -> FResult;

fn call_err(m: impl Into<String>) -> FuncError {
    FuncError::Call(m.into())
}

// ---------------------------------------------------------------------------------------------
// Argument checks, as Go's reflection-based call does them.

fn arity(args: &[Value], name: &str, want: usize) -> Result<(), FuncError> {
    if args.len() != want {
        return Err(FuncError::Arg(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn at_least(args: &[Value], name: &str, want: usize) -> Result<(), FuncError> {
    if args.len() < want {
        return Err(FuncError::Arg(format!(
            "wrong number of args for {name}: want at least {want} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn wrong_type(expected: &str, v: &Value) -> FuncError {
    let msg = match v {
        Value::Missing => format!("invalid value; expected {expected}"),
        Value::Nil => format!("cannot assign nil to {expected}"),
        _ => format!(
            "wrong type for value; expected {expected}; got {}",
            v.type_name()
        ),
    };
    FuncError::BadArg(msg, std::ptr::from_ref(v) as usize)
}

fn s(v: &Value) -> Result<Arc<str>, FuncError> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        _ => Err(wrong_type("string", v)),
    }
}

fn int(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(*f as i64),
        _ => Err(wrong_type("int", v)),
    }
}

fn boolean(v: &Value) -> Result<bool, FuncError> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(wrong_type("bool", v)),
    }
}

/// An `interface{}` parameter: a missing value arrives as nil.
fn any(v: &Value) -> Value {
    match v {
        Value::Missing => Value::Nil,
        v => v.clone(),
    }
}

fn dict_arg(v: &Value) -> Result<Arc<crate::value::Map>, FuncError> {
    match v {
        Value::Map(m) if &*m.type_name == "map[string]interface {}" => Ok(m.clone()),
        _ => Err(wrong_type("map[string]interface {}", v)),
    }
}

/// Go's reflect kind name, used by Sprig's error messages and `kindOf`.
fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Missing | Value::Nil => "invalid",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::List(_) => "slice",
        Value::Map(_) => "map",
        Value::Struct(_) => "struct",
    }
}

fn str_list(items: Vec<String>) -> Value {
    Value::list("[]string", items.into_iter().map(Value::from).collect())
}

// ---------------------------------------------------------------------------------------------
// Registry

/// Every function name a template may call, with its implementation.
const FUNCS: &[(&str, Func)] = &[
    // Go builtins (`slice` is Sprig's: Flux's function map overrides the builtin).
    ("and", f_unreachable),
    ("or", f_unreachable),
    ("not", f_not),
    ("len", f_len),
    ("index", f_index),
    ("print", f_print),
    ("printf", f_printf),
    ("println", f_println),
    ("eq", f_eq),
    ("ne", f_ne),
    ("lt", f_lt),
    ("le", f_le),
    ("gt", f_gt),
    ("ge", f_ge),
    ("html", f_html),
    ("js", f_js),
    ("urlquery", f_urlquery),
    ("call", f_call),
    // Sprig: strings.
    ("hello", |_, _| Ok(Value::str("Hello!"))),
    ("trim", |_, a| {
        str1(a, "trim", |s| {
            s.trim_matches(char::is_whitespace).to_string()
        })
    }),
    ("trimAll", f_trim_all),
    ("trimall", f_trim_all),
    ("trimPrefix", |_, a| {
        str2(a, "trimPrefix", |p, s| {
            s.strip_prefix(p).unwrap_or(s).to_string()
        })
    }),
    ("trimSuffix", |_, a| {
        str2(a, "trimSuffix", |p, s| {
            s.strip_suffix(p).unwrap_or(s).to_string()
        })
    }),
    ("upper", |_, a| {
        str1(a, "upper", |s| s.chars().map(upper_rune).collect())
    }),
    ("lower", |_, a| {
        str1(a, "lower", |s| s.chars().map(lower_rune).collect())
    }),
    ("title", |_, a| str1(a, "title", go_title)),
    ("nospace", |_, a| {
        str1(a, "nospace", |s| {
            s.chars().filter(|c| !c.is_whitespace()).collect()
        })
    }),
    ("initials", |_, a| {
        str1(a, "initials", |s| {
            s.split_whitespace()
                .filter_map(|w| w.chars().next())
                .collect()
        })
    }),
    ("repeat", f_repeat),
    ("substr", f_substr),
    ("trunc", f_trunc),
    ("abbrev", f_abbrev),
    ("contains", |_, a| {
        bool2(a, "contains", |sub, s| s.contains(sub))
    }),
    ("hasPrefix", |_, a| {
        bool2(a, "hasPrefix", |p, s| s.starts_with(p))
    }),
    ("hasSuffix", |_, a| {
        bool2(a, "hasSuffix", |p, s| s.ends_with(p))
    }),
    ("quote", f_quote),
    ("squote", f_squote),
    ("cat", f_cat),
    ("indent", f_indent),
    ("nindent", f_nindent),
    ("replace", f_replace),
    ("plural", f_plural),
    ("toString", f_to_string),
    ("toStrings", f_to_strings),
    ("sha1sum", |_, a| {
        str1(a, "sha1sum", |s| {
            hex(&<sha1::Sha1 as sha2::Digest>::digest(s.as_bytes()))
        })
    }),
    ("sha256sum", |_, a| {
        str1(a, "sha256sum", |s| {
            hex(&<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()))
        })
    }),
    ("adler32sum", |_, a| {
        str1(a, "adler32sum", |s| adler32(s.as_bytes()).to_string())
    }),
    ("split", f_split),
    ("splitList", f_split_list),
    ("splitn", f_splitn),
    ("join", f_join),
    ("sortAlpha", f_sort_alpha),
    // Sprig: conversions and numbers.
    ("atoi", |_, a| {
        arity(a, "atoi", 1)?;
        Ok(Value::Int(s(&a[0])?.parse::<i64>().unwrap_or(0)))
    }),
    ("int", |_, a| {
        arity(a, "int", 1)?;
        Ok(Value::Int(to_int64(&a[0])))
    }),
    ("int64", |_, a| {
        arity(a, "int64", 1)?;
        Ok(Value::Int(to_int64(&a[0])))
    }),
    ("float64", |_, a| {
        arity(a, "float64", 1)?;
        Ok(Value::Float(to_float64(&a[0])))
    }),
    ("toDecimal", |_, a| {
        arity(a, "toDecimal", 1)?;
        let txt = gofmt::sprint_v_brief(&any(&a[0]));
        Ok(Value::Int(i64::from_str_radix(&txt, 8).unwrap_or(0)))
    }),
    ("add1", |_, a| {
        arity(a, "add1", 1)?;
        Ok(Value::Int(to_int64(&a[0]).wrapping_add(1)))
    }),
    ("add", |_, a| {
        Ok(Value::Int(
            a.iter().map(to_int64).fold(0i64, i64::wrapping_add),
        ))
    }),
    ("sub", |_, a| {
        arity(a, "sub", 2)?;
        Ok(Value::Int(to_int64(&a[0]).wrapping_sub(to_int64(&a[1]))))
    }),
    ("mul", |_, a| {
        at_least(a, "mul", 1)?;
        Ok(Value::Int(
            a.iter().map(to_int64).fold(1i64, i64::wrapping_mul),
        ))
    }),
    ("div", |_, a| {
        arity(a, "div", 2)?;
        let d = to_int64(&a[1]);
        if d == 0 {
            return Err(call_err("runtime error: integer divide by zero"));
        }
        Ok(Value::Int(to_int64(&a[0]).wrapping_div(d)))
    }),
    ("mod", |_, a| {
        arity(a, "mod", 2)?;
        let d = to_int64(&a[1]);
        if d == 0 {
            return Err(call_err("runtime error: integer divide by zero"));
        }
        Ok(Value::Int(to_int64(&a[0]).wrapping_rem(d)))
    }),
    ("max", f_max),
    ("biggest", f_max),
    ("min", f_min),
    ("ceil", |_, a| {
        arity(a, "ceil", 1)?;
        Ok(Value::Float(to_float64(&a[0]).ceil()))
    }),
    ("floor", |_, a| {
        arity(a, "floor", 1)?;
        Ok(Value::Float(to_float64(&a[0]).floor()))
    }),
    ("round", f_round),
    ("until", f_until),
    ("untilStep", f_until_step),
    ("seq", f_seq),
    // Sprig: defaults, logic, types.
    ("default", f_default),
    ("empty", |_, a| {
        arity(a, "empty", 1)?;
        Ok(Value::Bool(is_empty(&a[0])))
    }),
    ("coalesce", |_, a| {
        Ok(a.iter()
            .find(|v| !is_empty(v))
            .cloned()
            .unwrap_or(Value::Nil))
    }),
    ("all", |_, a| {
        Ok(Value::Bool(a.iter().all(|v| !is_empty(v))))
    }),
    ("any", |_, a| {
        Ok(Value::Bool(a.iter().any(|v| !is_empty(v))))
    }),
    ("ternary", |_, a| {
        arity(a, "ternary", 3)?;
        Ok(if boolean(&a[2])? {
            any(&a[0])
        } else {
            any(&a[1])
        })
    }),
    ("fail", |_, a| {
        arity(a, "fail", 1)?;
        Err(call_err(s(&a[0])?.to_string()))
    }),
    ("typeOf", |_, a| {
        arity(a, "typeOf", 1)?;
        Ok(Value::str(any(&a[0]).type_name()))
    }),
    ("typeIs", |_, a| {
        arity(a, "typeIs", 2)?;
        Ok(Value::Bool(*s(&a[0])? == *any(&a[1]).type_name()))
    }),
    ("kindOf", |_, a| {
        arity(a, "kindOf", 1)?;
        Ok(Value::str(kind_name(&a[0])))
    }),
    ("kindIs", |_, a| {
        arity(a, "kindIs", 2)?;
        Ok(Value::Bool(*s(&a[0])? == *kind_name(&a[1])))
    }),
    ("deepEqual", |_, a| {
        arity(a, "deepEqual", 2)?;
        Ok(Value::Bool(deep_equal(&any(&a[0]), &any(&a[1]))))
    }),
    // Sprig: encoding.
    ("b64enc", |_, a| {
        use base64::Engine;
        str1(a, "b64enc", |s| {
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        })
    }),
    ("b64dec", |_, a| {
        use base64::Engine;
        str1(
            a,
            "b64dec",
            |s| match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => base64_error(&e),
            },
        )
    }),
    ("toJson", |c, a| {
        f_to_json(c, a, "toJson", json::Style::Compact, false)
    }),
    ("mustToJson", |c, a| {
        f_to_json(c, a, "mustToJson", json::Style::Compact, true)
    }),
    ("toPrettyJson", |c, a| {
        f_to_json(c, a, "toPrettyJson", json::Style::Pretty, false)
    }),
    ("mustToPrettyJson", |c, a| {
        f_to_json(c, a, "mustToPrettyJson", json::Style::Pretty, true)
    }),
    ("toRawJson", |c, a| {
        f_to_json(c, a, "toRawJson", json::Style::Raw, false)
    }),
    ("mustToRawJson", |c, a| {
        f_to_json(c, a, "mustToRawJson", json::Style::Raw, true)
    }),
    ("fromJson", |_, a| f_from_json(a, "fromJson", false)),
    ("mustFromJson", |_, a| f_from_json(a, "mustFromJson", true)),
    // Sprig: paths (slash-separated, Go's `path` package).
    ("base", |_, a| str1(a, "base", path_base)),
    ("dir", |_, a| str1(a, "dir", path_dir)),
    ("clean", |_, a| str1(a, "clean", path_clean)),
    ("ext", |_, a| str1(a, "ext", path_ext)),
    ("isAbs", |_, a| {
        arity(a, "isAbs", 1)?;
        Ok(Value::Bool(s(&a[0])?.starts_with('/')))
    }),
    // Sprig: lists.
    ("list", |_, a| {
        Ok(Value::any_list(a.iter().map(any).collect()))
    }),
    ("tuple", |_, a| {
        Ok(Value::any_list(a.iter().map(any).collect()))
    }),
    ("first", |_, a| {
        list_op(a, "first", "Cannot find first on type", |l| {
            Ok(l.first().cloned().unwrap_or(Value::Nil))
        })
    }),
    ("mustFirst", |_, a| {
        list_op(a, "mustFirst", "Cannot find first on type", |l| {
            Ok(l.first().cloned().unwrap_or(Value::Nil))
        })
    }),
    ("last", |_, a| {
        list_op(a, "last", "Cannot find last on type", |l| {
            Ok(l.last().cloned().unwrap_or(Value::Nil))
        })
    }),
    ("mustLast", |_, a| {
        list_op(a, "mustLast", "Cannot find last on type", |l| {
            Ok(l.last().cloned().unwrap_or(Value::Nil))
        })
    }),
    ("rest", |_, a| {
        list_op(a, "rest", "Cannot find rest on type", |l| {
            Ok(sub_list(l, 1, l.len()))
        })
    }),
    ("mustRest", |_, a| {
        list_op(a, "mustRest", "Cannot find rest on type", |l| {
            Ok(sub_list(l, 1, l.len()))
        })
    }),
    ("initial", |_, a| {
        list_op(a, "initial", "Cannot find initial on type", |l| {
            Ok(sub_list(l, 0, l.len().saturating_sub(1)))
        })
    }),
    ("mustInitial", |_, a| {
        list_op(a, "mustInitial", "Cannot find initial on type", |l| {
            Ok(sub_list(l, 0, l.len().saturating_sub(1)))
        })
    }),
    ("reverse", |_, a| {
        list_op(a, "reverse", "Cannot find reverse on type", |l| {
            Ok(Value::any_list(l.iter().rev().cloned().collect()))
        })
    }),
    ("mustReverse", |_, a| {
        list_op(a, "mustReverse", "Cannot find reverse on type", |l| {
            Ok(Value::any_list(l.iter().rev().cloned().collect()))
        })
    }),
    ("uniq", |c, a| f_uniq(c, a, "uniq")),
    ("mustUniq", |c, a| f_uniq(c, a, "mustUniq")),
    ("compact", |_, a| {
        list_op(a, "compact", "Cannot compact on type", |l| {
            Ok(Value::any_list(
                l.iter().filter(|v| !is_empty(v)).cloned().collect(),
            ))
        })
    }),
    ("mustCompact", |_, a| {
        list_op(a, "mustCompact", "Cannot compact on type", |l| {
            Ok(Value::any_list(
                l.iter().filter(|v| !is_empty(v)).cloned().collect(),
            ))
        })
    }),
    ("append", f_append),
    ("push", f_append),
    ("mustAppend", f_append),
    ("mustPush", f_append),
    ("prepend", f_prepend),
    ("mustPrepend", f_prepend),
    ("concat", f_concat),
    ("without", f_without),
    ("mustWithout", f_without),
    ("has", f_has),
    ("mustHas", f_has),
    ("slice", f_slice),
    ("mustSlice", f_slice),
    ("chunk", f_chunk),
    ("mustChunk", f_chunk),
    // Sprig: dicts.
    ("dict", f_dict),
    ("get", |_, a| {
        arity(a, "get", 2)?;
        let d = dict_arg(&a[0])?;
        Ok(d.get(&Value::Str(s(&a[1])?))
            .cloned()
            .unwrap_or_else(|| Value::str("")))
    }),
    ("hasKey", |_, a| {
        arity(a, "hasKey", 2)?;
        let d = dict_arg(&a[0])?;
        Ok(Value::Bool(d.get(&Value::Str(s(&a[1])?)).is_some()))
    }),
    ("keys", f_keys),
    ("values", |_, a| {
        arity(a, "values", 1)?;
        let d = dict_arg(&a[0])?;
        Ok(Value::any_list(
            d.entries().iter().map(|(_, v)| v.clone()).collect(),
        ))
    }),
    ("pluck", f_pluck),
    ("pick", |_, a| f_pick(a, "pick", true)),
    ("omit", |_, a| f_pick(a, "omit", false)),
    ("dig", f_dig),
    // Sprig: regular expressions.
    ("regexMatch", |c, a| {
        f_regex_match(c, a, "regexMatch", false)
    }),
    ("mustRegexMatch", |c, a| {
        f_regex_match(c, a, "mustRegexMatch", true)
    }),
    ("regexFind", |c, a| f_regex_find(c, a, "regexFind")),
    ("mustRegexFind", |c, a| f_regex_find(c, a, "mustRegexFind")),
    ("regexFindAll", |c, a| {
        f_regex_find_all(c, a, "regexFindAll")
    }),
    ("mustRegexFindAll", |c, a| {
        f_regex_find_all(c, a, "mustRegexFindAll")
    }),
    ("regexReplaceAll", |c, a| {
        f_regex_replace(c, a, "regexReplaceAll", false)
    }),
    ("mustRegexReplaceAll", |c, a| {
        f_regex_replace(c, a, "mustRegexReplaceAll", false)
    }),
    ("regexReplaceAllLiteral", |c, a| {
        f_regex_replace(c, a, "regexReplaceAllLiteral", true)
    }),
    ("mustRegexReplaceAllLiteral", |c, a| {
        f_regex_replace(c, a, "mustRegexReplaceAllLiteral", true)
    }),
    ("regexSplit", |c, a| f_regex_split(c, a, "regexSplit")),
    ("mustRegexSplit", |c, a| {
        f_regex_split(c, a, "mustRegexSplit")
    }),
    ("regexQuoteMeta", |_, a| {
        str1(a, "regexQuoteMeta", regex::escape)
    }),
];

/// The names of all functions templates may call, sorted.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&str> = FUNCS.iter().map(|(n, _)| *n).collect();
    v.sort_unstable();
    v
}

pub(crate) fn lookup(name: &str) -> Option<Func> {
    FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Calls a function and keeps what it built within the size and nesting budgets.
pub(crate) fn call(ctx: &mut Ctx<'_>, f: Func, args: &[Value]) -> FResult {
    let v = f(ctx, args)?;
    check_built(ctx, v)
}

/// Keeps a value a function built within the size and nesting budgets, charging for its size.
pub(crate) fn check_built(ctx: &mut Ctx<'_>, v: Value) -> FResult {
    match &v {
        Value::Str(s) => {
            ctx.check_size(s.len())?;
            ctx.charge_bytes(s.len())?;
        }
        Value::List(l) => {
            ctx.check_size(l.items.len())?;
            ctx.charge_items(l.items.len())?;
        }
        Value::Map(m) => {
            ctx.check_size(m.len())?;
            ctx.charge_items(m.len())?;
        }
        _ => {}
    }
    if v.depth() > MAX_VALUE_DEPTH {
        return Err(FuncError::Budget(
            BudgetKind::Depth,
            format!("value nested more than {MAX_VALUE_DEPTH} levels deep"),
        ));
    }
    Ok(v)
}

fn f_unreachable(_: &mut Ctx<'_>, _: &[Value]) -> FResult {
    // `and` and `or` short-circuit in the executor and never get here.
    Err(call_err("internal error: and/or called eagerly"))
}

fn str1(a: &[Value], name: &str, f: impl FnOnce(&str) -> String) -> FResult {
    arity(a, name, 1)?;
    Ok(Value::str(f(&s(&a[0])?)))
}

fn str2(a: &[Value], name: &str, f: impl FnOnce(&str, &str) -> String) -> FResult {
    arity(a, name, 2)?;
    Ok(Value::str(f(&s(&a[0])?, &s(&a[1])?)))
}

fn bool2(a: &[Value], name: &str, f: impl FnOnce(&str, &str) -> bool) -> FResult {
    arity(a, name, 2)?;
    Ok(Value::Bool(f(&s(&a[0])?, &s(&a[1])?)))
}

// ---------------------------------------------------------------------------------------------
// Go builtins

fn f_not(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "not", 1)?;
    Ok(Value::Bool(!a[0].truth()))
}

fn f_len(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "len", 1)?;
    match &a[0] {
        Value::Str(s) => Ok(Value::Int(s.len() as i64)),
        Value::List(l) => Ok(Value::Int(l.items.len() as i64)),
        Value::Map(m) => Ok(Value::Int(m.len() as i64)),
        Value::Missing | Value::Nil => Err(call_err("len of nil pointer")),
        v => Err(call_err(format!("len of type {}", v.type_name()))),
    }
}

fn index_arg(i: &Value, len: usize) -> Result<usize, FuncError> {
    match i {
        Value::Int(x) => {
            if *x < 0 || *x as u64 >= len as u64 {
                return Err(call_err(format!("index out of range: {x}")));
            }
            Ok(*x as usize)
        }
        Value::Missing | Value::Nil => Err(call_err("cannot index slice/array with nil")),
        v => Err(call_err(format!(
            "cannot index slice/array with type {}",
            v.type_name()
        ))),
    }
}

fn f_index(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "index", 1)?;
    let mut item = a[0].clone();
    if matches!(item, Value::Missing | Value::Nil) {
        return Err(call_err("index of untyped nil"));
    }
    for i in &a[1..] {
        item = match &item {
            Value::List(l) => l.items[index_arg(i, l.items.len())?].clone(),
            Value::Str(s) => Value::Int(s.as_bytes()[index_arg(i, s.len())?] as i64),
            Value::Map(m) => {
                let key_is_str = m.has_string_keys();
                match i {
                    Value::Missing | Value::Nil if key_is_str => {
                        return Err(call_err("value is nil; should be of type string"));
                    }
                    Value::Str(_) if !key_is_str && !m.is_empty() => {
                        return Err(call_err(format!(
                            "value has type string; should be {}",
                            key_type(&m.type_name)
                        )));
                    }
                    Value::Int(_) | Value::Float(_) | Value::Bool(_) if key_is_str => {
                        return Err(call_err(format!(
                            "value has type {}; should be string",
                            i.type_name()
                        )));
                    }
                    _ => {}
                }
                m.get(i).cloned().unwrap_or_else(|| m.zero.clone())
            }
            Value::Missing | Value::Nil => return Err(call_err("index of nil pointer")),
            v => {
                return Err(call_err(format!(
                    "can't index item of type {}",
                    v.type_name()
                )));
            }
        };
    }
    Ok(item)
}

fn key_type(map_type: &str) -> &str {
    map_type
        .strip_prefix("map[")
        .and_then(|r| r.split(']').next())
        .unwrap_or(map_type)
}

fn f_print(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let args: Vec<Value> = a.iter().map(any).collect();
    gofmt::sprint(&args, c.limits.max_output)
        .map(Value::str)
        .ok_or_else(|| too_big(c))
}

fn f_println(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let args: Vec<Value> = a.iter().map(any).collect();
    gofmt::sprintln(&args, c.limits.max_output)
        .map(Value::str)
        .ok_or_else(|| too_big(c))
}

fn f_printf(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "printf", 1)?;
    let format = s(&a[0])?;
    let args: Vec<Value> = a[1..].iter().map(any).collect();
    gofmt::sprintf(&format, &args, c.limits.max_output)
        .map(Value::str)
        .map_err(|m| FuncError::Budget(BudgetKind::Output, m))
}

fn too_big(c: &Ctx<'_>) -> FuncError {
    FuncError::Budget(
        BudgetKind::Output,
        format!("value exceeds the budget of {} bytes", c.limits.max_output),
    )
}

#[derive(PartialEq)]
enum Basic {
    Invalid,
    Bool,
    Int,
    Float,
    Str,
    Other,
}

fn basic(v: &Value) -> Basic {
    match v {
        Value::Missing => Basic::Invalid,
        Value::Bool(_) => Basic::Bool,
        Value::Int(_) => Basic::Int,
        Value::Float(_) => Basic::Float,
        Value::Str(_) => Basic::Str,
        _ => Basic::Other,
    }
}

fn eq_values(a: &[Value]) -> Result<bool, FuncError> {
    if a.len() < 2 {
        return Err(call_err("missing argument for comparison"));
    }
    let a1 = &a[0];
    let k1 = basic(a1);
    for b in &a[1..] {
        let k2 = basic(b);
        let truth = if k1 != k2 {
            if k1 != Basic::Invalid
                && k2 != Basic::Invalid
                && !(k1 == Basic::Other && k2 == Basic::Other)
            {
                return Err(call_err("incompatible types for comparison"));
            }
            if k1 == Basic::Other && k2 == Basic::Other {
                unreachable_other(a1, b)?
            } else {
                false
            }
        } else {
            match k1 {
                Basic::Other => unreachable_other(a1, b)?,
                Basic::Invalid => true,
                _ => go_equal(a1, b).unwrap_or(false),
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `eq` on non-basic values: nil compares with nil, structs by value, slices and maps are refused.
fn unreachable_other(a: &Value, b: &Value) -> Result<bool, FuncError> {
    match (a, b) {
        (Value::Nil, Value::Nil) => Ok(true),
        (Value::Nil, _) | (_, Value::Nil) => Ok(false),
        _ => go_equal(a, b).ok_or_else(|| {
            call_err(format!(
                "non-comparable type {}: {}",
                gofmt::sprint_v_brief(b),
                b.type_name()
            ))
        }),
    }
}

fn f_eq(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "eq", 1)?;
    Ok(Value::Bool(eq_values(a)?))
}

fn f_ne(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "ne", 2)?;
    Ok(Value::Bool(!eq_values(a)?))
}

fn less(a: &Value, b: &Value) -> Result<bool, FuncError> {
    let (k1, k2) = (basic(a), basic(b));
    if matches!(k1, Basic::Invalid | Basic::Bool | Basic::Other)
        || matches!(k2, Basic::Invalid | Basic::Bool | Basic::Other)
    {
        return Err(call_err("invalid type for comparison"));
    }
    if k1 != k2 {
        return Err(call_err("incompatible types for comparison"));
    }
    Ok(go_cmp(a, b) == std::cmp::Ordering::Less)
}

fn f_lt(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "lt", 2)?;
    Ok(Value::Bool(less(&a[0], &a[1])?))
}
fn f_le(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "le", 2)?;
    Ok(Value::Bool(less(&a[0], &a[1])? || eq_values(a)?))
}
fn f_gt(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "gt", 2)?;
    Ok(Value::Bool(!(less(&a[0], &a[1])? || eq_values(a)?)))
}
fn f_ge(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "ge", 2)?;
    Ok(Value::Bool(!less(&a[0], &a[1])?))
}

/// Go's `evalArgs`: a single string is used as is, anything else goes through `fmt.Sprint`.
fn eval_args(c: &Ctx<'_>, a: &[Value]) -> Result<String, FuncError> {
    if let [Value::Str(s)] = a {
        return Ok(s.to_string());
    }
    let args: Vec<Value> = a.iter().map(any).collect();
    gofmt::sprint(&args, c.limits.max_output).ok_or_else(|| too_big(c))
}

fn f_html(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let s = eval_args(c, a)?;
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Ok(Value::str(out))
}

fn f_js(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let s = eval_args(c, a)?;
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if (c as u32) >= 0x80 && c.is_control() => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    Ok(Value::str(out))
}

fn f_urlquery(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let s = eval_args(c, a)?;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(Value::str(out))
}

fn f_call(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "call", 1)?;
    // Template data here never holds functions, so Go's `call` always fails the same way.
    Err(call_err(format!(
        "non-function {} of type {}",
        gofmt::sprint_v_brief(&any(&a[0])),
        any(&a[0]).type_name()
    )))
}

// ---------------------------------------------------------------------------------------------
// Sprig helpers

/// Sprig's `strval`: strings as is, everything else through `%v` (Stringers use their string),
/// refused past the output budget.
fn strval(c: &Ctx<'_>, v: &Value) -> Result<String, FuncError> {
    match v {
        Value::Str(s) => Ok(s.to_string()),
        v => gofmt::sprint_v_bounded(&any(v), c.limits.max_output).ok_or_else(|| too_big(c)),
    }
}

/// Go's rune-by-rune upper case (`unicode.ToUpper`): only one-to-one mappings apply, so `ß` stays.
fn upper_rune(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// Go's rune-by-rune lower case (`unicode.ToLower`): `İ` becomes `i`, a final `Σ` becomes `σ`.
fn lower_rune(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// Go's deprecated `strings.Title`, which Sprig's `title` uses.
fn go_title(s: &str) -> String {
    let is_sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_sep(prev) {
            out.push(upper_rune(c));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

fn f_trim_all(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "trimAll", 2)?;
    let cut = s(&a[0])?;
    let src = s(&a[1])?;
    Ok(Value::str(src.trim_matches(|c| cut.contains(c))))
}

fn f_repeat(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "repeat", 2)?;
    let n = int(&a[0])?;
    let src = s(&a[1])?;
    if n < 0 {
        return Err(call_err("strings: negative Repeat count"));
    }
    c.check_size((n as usize).saturating_mul(src.len()))?;
    Ok(Value::str(src.repeat(n as usize)))
}

fn byte_slice(s: &str, from: usize, to: usize) -> String {
    String::from_utf8_lossy(&s.as_bytes()[from..to]).into_owned()
}

fn f_substr(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "substr", 3)?;
    let (start, end, src) = (int(&a[0])?, int(&a[1])?, s(&a[2])?);
    let len = src.len() as i64;
    let (from, to) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    if from < 0 || to < from || to > len || from > len {
        return Err(call_err(format!(
            "runtime error: slice bounds out of range [{from}:{to}]"
        )));
    }
    Ok(Value::str(byte_slice(&src, from as usize, to as usize)))
}

fn f_trunc(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "trunc", 2)?;
    let (n, src) = (int(&a[0])?, s(&a[1])?);
    let len = src.len() as i64;
    Ok(Value::str(if n < 0 && len + n > 0 {
        byte_slice(&src, (len + n) as usize, src.len())
    } else if n >= 0 && len > n {
        byte_slice(&src, 0, n as usize)
    } else {
        src.to_string()
    }))
}

fn f_abbrev(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "abbrev", 2)?;
    let (w, src) = (int(&a[0])?, s(&a[1])?);
    if w < 4 || src.len() as i64 <= w {
        return Ok(Value::Str(src));
    }
    Ok(Value::str(format!(
        "{}...",
        byte_slice(&src, 0, (w - 3) as usize)
    )))
}

/// Sprig's `quote`/`squote`: each non-nil argument's string, quoted, joined by spaces.
fn quote_each(c: &Ctx<'_>, a: &[Value], quote: fn(&str) -> String) -> FResult {
    let mut out = String::new();
    for v in a.iter().map(any).filter(|v| !matches!(v, Value::Nil)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&quote(&strval(c, &v)?));
        c.check_size(out.len())?;
    }
    Ok(Value::str(out))
}

fn f_quote(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    quote_each(c, a, gofmt::quote)
}

fn f_squote(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    quote_each(c, a, |s| format!("'{s}'"))
}

fn f_cat(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let parts: Vec<Value> = a
        .iter()
        .map(any)
        .filter(|v| !matches!(v, Value::Nil))
        .collect();
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&gofmt::sprint_v_bounded(p, c.limits.max_output).ok_or_else(|| too_big(c))?);
        c.check_size(out.len())?;
    }
    Ok(Value::str(out))
}

fn indent(c: &Ctx<'_>, a: &[Value], name: &str) -> Result<String, FuncError> {
    arity(a, name, 2)?;
    let (n, src) = (int(&a[0])?, s(&a[1])?);
    let n = n.max(0) as usize;
    let lines = src.matches('\n').count() + 1;
    c.check_size(src.len().saturating_add(n.saturating_mul(lines)))?;
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", src.replace('\n', &format!("\n{pad}"))))
}

fn f_indent(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    indent(c, a, "indent").map(Value::str)
}

fn f_nindent(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    indent(c, a, "nindent").map(|s| Value::str(format!("\n{s}")))
}

fn f_replace(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "replace", 3)?;
    let (old, new, src) = (s(&a[0])?, s(&a[1])?, s(&a[2])?);
    let count = if old.is_empty() {
        src.chars().count() + 1
    } else {
        src.matches(&*old).count()
    };
    c.check_size(src.len().saturating_add(count.saturating_mul(new.len())))?;
    if old.is_empty() {
        // Go inserts `new` before every rune and at the end.
        let mut out = String::new();
        for ch in src.chars() {
            out.push_str(&new);
            out.push(ch);
        }
        out.push_str(&new);
        return Ok(Value::str(out));
    }
    Ok(Value::str(src.replace(&*old, &new)))
}

fn f_plural(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "plural", 3)?;
    let (one, many, n) = (s(&a[0])?, s(&a[1])?, int(&a[2])?);
    Ok(Value::Str(if n == 1 { one } else { many }))
}

fn f_to_string(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "toString", 1)?;
    match &a[0] {
        Value::Str(s) => Ok(Value::Str(s.clone())),
        v => gofmt::sprint_v_bounded(&any(v), c.limits.max_output)
            .map(Value::str)
            .ok_or_else(|| too_big(c)),
    }
}

/// Sprig's `strslice`: the elements of a slice as strings (nil elements dropped), or the value
/// itself; refused when the strings together pass the output budget.
fn strslice(c: &Ctx<'_>, v: &Value) -> Result<Vec<String>, FuncError> {
    let items: Vec<&Value> = match v {
        Value::List(l) => l
            .items
            .iter()
            .filter(|i| !matches!(i, Value::Nil | Value::Missing))
            .collect(),
        Value::Missing | Value::Nil => Vec::new(),
        v => vec![v],
    };
    let mut out = Vec::with_capacity(items.len());
    let mut total = 0usize;
    for i in items {
        let s = strval(c, i)?;
        total = total.saturating_add(s.len());
        c.check_size(total)?;
        out.push(s);
    }
    Ok(out)
}

fn f_to_strings(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "toStrings", 1)?;
    Ok(str_list(strslice(c, &a[0])?))
}

fn numbered(parts: Vec<&str>) -> Value {
    let e = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (Value::str(format!("_{i}")), Value::str(p)))
        .collect();
    Value::map("map[string]string", Value::str(""), e)
}

fn go_split<'s>(src: &'s str, sep: &str, n: i64) -> Vec<&'s str> {
    if n == 0 {
        return Vec::new();
    }
    if sep.is_empty() {
        let mut v: Vec<&str> = Vec::new();
        let mut idx: Vec<usize> = src.char_indices().map(|(i, _)| i).collect();
        idx.push(src.len());
        let total = idx.len() - 1;
        let limit = if n < 0 {
            total
        } else {
            (n as usize).min(total)
        };
        for k in 0..limit {
            let end = if k + 1 == limit && limit < total {
                src.len()
            } else {
                idx[k + 1]
            };
            v.push(&src[idx[k]..end]);
        }
        return v;
    }
    if n < 0 {
        src.split(sep).collect()
    } else {
        src.splitn(n as usize, sep).collect()
    }
}

fn f_split(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "split", 2)?;
    let (sep, src) = (s(&a[0])?, s(&a[1])?);
    Ok(numbered(go_split(&src, &sep, -1)))
}

fn f_splitn(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "splitn", 3)?;
    let (sep, n, src) = (s(&a[0])?, int(&a[1])?, s(&a[2])?);
    Ok(numbered(go_split(&src, &sep, n)))
}

fn f_split_list(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "splitList", 2)?;
    let (sep, src) = (s(&a[0])?, s(&a[1])?);
    Ok(str_list(
        go_split(&src, &sep, -1)
            .into_iter()
            .map(String::from)
            .collect(),
    ))
}

fn f_join(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "join", 2)?;
    let sep = s(&a[0])?;
    let parts = strslice(c, &a[1])?;
    let size = parts
        .iter()
        .map(String::len)
        .sum::<usize>()
        .saturating_add(sep.len().saturating_mul(parts.len()));
    c.check_size(size)?;
    Ok(Value::str(parts.join(&sep)))
}

fn f_sort_alpha(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "sortAlpha", 1)?;
    let mut v = strslice(c, &a[0])?;
    v.sort();
    Ok(str_list(v))
}

/// spf13/cast's `ToInt64` as Sprig uses it: lenient, 0 when not convertible.
fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => *b as i64,
        Value::Str(s) => {
            let t = s.trim_start_matches('+');
            let (neg, t) = match t.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, t),
            };
            let lower = t.to_ascii_lowercase();
            let parsed = if let Some(h) = lower.strip_prefix("0x") {
                i64::from_str_radix(h, 16)
            } else if let Some(b) = lower.strip_prefix("0b") {
                i64::from_str_radix(b, 2)
            } else if let Some(o) = lower.strip_prefix("0o") {
                i64::from_str_radix(o, 8)
            } else if lower.len() > 1 && lower.starts_with('0') {
                i64::from_str_radix(&lower[1..], 8)
            } else {
                lower.parse::<i64>()
            };
            parsed.map(|x| if neg { -x } else { x }).unwrap_or(0)
        }
        _ => 0,
    }
}

/// spf13/cast's `ToFloat64`: lenient, 0 when not convertible.
fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => *b as i64 as f64,
        Value::Str(s) => s.parse::<f64>().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn f_max(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "max", 1)?;
    Ok(Value::Int(a.iter().map(to_int64).max().unwrap_or(0)))
}

fn f_min(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "min", 1)?;
    Ok(Value::Int(a.iter().map(to_int64).min().unwrap_or(0)))
}

fn f_round(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "round", 2)?;
    if a.len() > 3 {
        return Err(FuncError::Arg(format!(
            "wrong number of args for round: want at most 3 got {}",
            a.len()
        )));
    }
    let val = to_float64(&a[0]);
    let places = int(&a[1])? as f64;
    let round_on = match a.get(2) {
        Some(Value::Float(f)) => *f,
        Some(Value::Int(i)) => *i as f64,
        Some(v) => return Err(wrong_type("float64", v)),
        None => 0.5,
    };
    let pow = 10f64.powf(places);
    let digit = pow * val;
    let frac = digit.fract();
    let r = if frac >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    Ok(Value::Float(r / pow))
}

fn until_step(c: &Ctx<'_>, start: i64, stop: i64, step: i64) -> Result<Vec<i64>, FuncError> {
    // i128 so that extreme bounds cannot overflow.
    let (start_w, stop_w, step_w) = (start as i128, stop as i128, step as i128);
    let count: i128 = if stop_w < start_w {
        if step_w >= 0 {
            0
        } else {
            (start_w - stop_w - 1) / -step_w + 1
        }
    } else if step_w <= 0 || stop_w == start_w {
        0
    } else {
        (stop_w - start_w - 1) / step_w + 1
    };
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    c.check_size(count)?;
    let mut v = Vec::with_capacity(count);
    let mut i = start;
    for _ in 0..count {
        v.push(i);
        i = i.wrapping_add(step);
    }
    Ok(v)
}

fn int_list(v: Vec<i64>) -> Value {
    Value::list("[]int", v.into_iter().map(Value::Int).collect())
}

fn f_until(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "until", 1)?;
    let n = int(&a[0])?;
    until_step(c, 0, n, if n < 0 { -1 } else { 1 }).map(int_list)
}

fn f_until_step(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "untilStep", 3)?;
    until_step(c, int(&a[0])?, int(&a[1])?, int(&a[2])?).map(int_list)
}

fn f_seq(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let p: Vec<i64> = a.iter().map(int).collect::<Result<_, _>>()?;
    let v = match p.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            until_step(c, 1, end.saturating_add(inc), inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            until_step(c, *start, end.saturating_add(step), step)?
        }
        [start, step, end] => {
            let inc = if end < start { -1 } else { 1 };
            if end < start && *step > 0 {
                Vec::new()
            } else {
                until_step(c, *start, end.saturating_add(inc), *step)?
            }
        }
        _ => Vec::new(),
    };
    let parts: Vec<String> = v.iter().map(i64::to_string).collect();
    Ok(Value::str(parts.join(" ")))
}

/// Sprig's `empty`.
fn is_empty(v: &Value) -> bool {
    v.is_zero()
}

fn f_default(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "default", 1)?;
    match a.get(1) {
        Some(g) if !is_empty(g) => Ok(any(g)),
        _ => Ok(any(&a[0])),
    }
}

fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            x.type_name == y.type_name
                && x.items.len() == y.items.len()
                && x.items.iter().zip(&y.items).all(|(p, q)| deep_equal(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.type_name == y.type_name
                && x.len() == y.len()
                && x.entries()
                    .iter()
                    .zip(y.entries())
                    .all(|((k1, v1), (k2, v2))| deep_equal(k1, k2) && deep_equal(v1, v2))
        }
        _ => a.type_name() == b.type_name() && go_equal(a, b).unwrap_or(false),
    }
}

fn base64_error(e: &base64::DecodeError) -> String {
    let at = match e {
        base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => *i,
        base64::DecodeError::InvalidLength(n) => *n,
        base64::DecodeError::InvalidPadding => 0,
    };
    format!("illegal base64 data at input byte {at}")
}

fn f_to_json(c: &mut Ctx<'_>, a: &[Value], name: &str, style: json::Style, must: bool) -> FResult {
    arity(a, name, 1)?;
    match json::encode(&any(&a[0]), style, c.limits.max_output) {
        Ok(s) => Ok(Value::str(s)),
        Err(json::EncodeError::TooBig) => Err(too_big(c)),
        Err(json::EncodeError::Unsupported(m)) if must => Err(call_err(m)),
        // Sprig's non-must variants swallow the error and print nothing.
        Err(json::EncodeError::Unsupported(_)) => Ok(Value::str("")),
    }
}

fn f_from_json(a: &[Value], name: &str, must: bool) -> FResult {
    arity(a, name, 1)?;
    let src = s(&a[0])?;
    match json::decode_object(&src) {
        Ok(v) => Ok(v),
        Err(m) if must => Err(call_err(m)),
        Err(_) => Ok(Value::dict(Vec::new())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

// Go's `path` package.

fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    path_clean(dir)
}

fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

// Lists.

fn list_op(a: &[Value], name: &str, err: &str, f: impl FnOnce(&[Value]) -> FResult) -> FResult {
    arity(a, name, 1)?;
    match &a[0] {
        Value::List(l) => f(&l.items),
        v => Err(call_err(format!("{err} {}", kind_name(v)))),
    }
}

fn sub_list(l: &[Value], from: usize, to: usize) -> Value {
    if from >= to {
        return Value::any_list(Vec::new());
    }
    Value::any_list(l[from..to].to_vec())
}

fn f_uniq(c: &mut Ctx<'_>, a: &[Value], name: &str) -> FResult {
    if let Some(Value::List(l)) = a.first() {
        // Pairwise comparison: quadratic work is charged up front.
        let n = l.items.len();
        c.charge_items(n.saturating_mul(n) / 64)?;
    }
    list_op(a, name, "Cannot find uniq on type", |l| Ok(uniq(l)))
}

fn uniq(l: &[Value]) -> Value {
    let mut out: Vec<Value> = Vec::new();
    for v in l {
        if !out.iter().any(|o| deep_equal(o, v)) {
            out.push(v.clone());
        }
    }
    Value::any_list(out)
}

fn f_append(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "append", 2)?;
    match &a[0] {
        Value::List(l) => {
            c.charge_items(l.items.len())?;
            let mut items = l.items.clone();
            items.push(any(&a[1]));
            Ok(Value::any_list(items))
        }
        v => Err(call_err(format!("Cannot push on type {}", kind_name(v)))),
    }
}

fn f_prepend(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "prepend", 2)?;
    match &a[0] {
        Value::List(l) => {
            c.charge_items(l.items.len())?;
            let mut items = vec![any(&a[1])];
            items.extend(l.items.iter().cloned());
            Ok(Value::any_list(items))
        }
        v => Err(call_err(format!("Cannot prepend on type {}", kind_name(v)))),
    }
}

fn f_concat(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let mut items = Vec::new();
    for v in a {
        match v {
            Value::List(l) => {
                c.check_size(items.len() + l.items.len())?;
                items.extend(l.items.iter().cloned());
            }
            v => {
                return Err(call_err(format!(
                    "Cannot concat type {} as list",
                    kind_name(v)
                )));
            }
        }
    }
    Ok(Value::any_list(items))
}

fn f_without(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "without", 1)?;
    match &a[0] {
        Value::List(l) => {
            let omit: Vec<Value> = a[1..].iter().map(any).collect();
            Ok(Value::any_list(
                l.items
                    .iter()
                    .filter(|v| !omit.iter().any(|o| deep_equal(o, v)))
                    .cloned()
                    .collect(),
            ))
        }
        v => Err(call_err(format!(
            "Cannot find without on type {}",
            kind_name(v)
        ))),
    }
}

fn f_has(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "has", 2)?;
    let needle = any(&a[0]);
    match &a[1] {
        Value::List(l) => Ok(Value::Bool(l.items.iter().any(|v| deep_equal(v, &needle)))),
        Value::Missing | Value::Nil => Ok(Value::Bool(false)),
        v => Err(call_err(format!(
            "Cannot find has on type {}",
            kind_name(v)
        ))),
    }
}

fn f_slice(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "slice", 1)?;
    let Value::List(l) = &a[0] else {
        return Err(call_err(format!(
            "list should be type of slice or array but {}",
            kind_name(&a[0])
        )));
    };
    let len = l.items.len() as i64;
    let idx: Vec<i64> = a[1..].iter().map(to_int64).collect();
    let (from, to) = match idx.as_slice() {
        [] => (0, len),
        [f] => (*f, len),
        [f, t, ..] => (*f, *t),
    };
    if from < 0 || to < from || to > len {
        return Err(call_err(format!(
            "runtime error: slice bounds out of range [{from}:{to}]"
        )));
    }
    Ok(Value::any_list(
        l.items[from as usize..to as usize].to_vec(),
    ))
}

fn f_chunk(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    arity(a, "chunk", 2)?;
    let size = int(&a[0])?;
    let Value::List(l) = &a[1] else {
        return Err(call_err(format!("Cannot chunk type {}", kind_name(&a[1]))));
    };
    if size <= 0 {
        return Err(call_err("runtime error: integer divide by zero"));
    }
    Ok(Value::list(
        "[][]interface {}",
        l.items
            .chunks(size as usize)
            .map(|c| Value::any_list(c.to_vec()))
            .collect(),
    ))
}

// Dicts.

fn f_dict(c: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let mut e = Vec::new();
    for pair in a.chunks(2) {
        let key = Value::str(strval(c, &pair[0])?);
        let val = pair.get(1).map(any).unwrap_or_else(|| Value::str(""));
        e.push((key, val));
    }
    Ok(Value::dict(e))
}

fn f_keys(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    let mut keys = Vec::new();
    for d in a {
        let d = dict_arg(d)?;
        keys.extend(d.entries().iter().map(|(k, _)| k.clone()));
    }
    // Go's map order is random; sorted keys are one of its possible outcomes.
    Ok(Value::list("[]string", keys))
}

fn f_pluck(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "pluck", 1)?;
    let key = Value::Str(s(&a[0])?);
    let mut out = Vec::new();
    for d in &a[1..] {
        if let Some(v) = dict_arg(d)?.get(&key) {
            out.push(v.clone());
        }
    }
    Ok(Value::any_list(out))
}

fn f_pick(a: &[Value], name: &str, keep: bool) -> FResult {
    at_least(a, name, 1)?;
    let d = dict_arg(&a[0])?;
    let names: Vec<Arc<str>> = a[1..].iter().map(s).collect::<Result<_, _>>()?;
    let e = d
        .entries()
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| names.iter().any(|n| &**n == k)) == keep)
        .cloned()
        .collect();
    Ok(Value::dict(e))
}

fn f_dig(_: &mut Ctx<'_>, a: &[Value]) -> FResult {
    at_least(a, "dig", 3)?;
    let n = a.len();
    let default = any(&a[n - 2]);
    let mut cur = dict_arg(&a[n - 1])?;
    let keys: Vec<Arc<str>> = a[..n - 2].iter().map(s).collect::<Result<_, _>>()?;
    for (i, k) in keys.iter().enumerate() {
        match cur.get(&Value::Str(k.clone())) {
            None => return Ok(default),
            Some(v) if i + 1 == keys.len() => return Ok(v.clone()),
            Some(v) => {
                cur = dict_arg(v).map_err(|_| {
                    call_err(format!(
                        "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                        v.type_name()
                    ))
                })?
            }
        }
    }
    Ok(default)
}

// Regular expressions (Go's RE2 syntax and Rust's `regex` agree on the common subset).

fn compile(re: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("error parsing regexp: {e}"))
}

fn f_regex_match(_: &mut Ctx<'_>, a: &[Value], name: &str, must: bool) -> FResult {
    arity(a, name, 2)?;
    let (re, src) = (s(&a[0])?, s(&a[1])?);
    match compile(&re) {
        Ok(r) => Ok(Value::Bool(r.is_match(&src))),
        Err(e) if must => Err(call_err(e)),
        Err(_) => Ok(Value::Bool(false)),
    }
}

fn f_regex_find(_: &mut Ctx<'_>, a: &[Value], name: &str) -> FResult {
    arity(a, name, 2)?;
    let (re, src) = (s(&a[0])?, s(&a[1])?);
    let r = compile(&re).map_err(call_err)?;
    Ok(Value::str(r.find(&src).map(|m| m.as_str()).unwrap_or("")))
}

fn f_regex_find_all(_: &mut Ctx<'_>, a: &[Value], name: &str) -> FResult {
    arity(a, name, 3)?;
    let (re, src, n) = (s(&a[0])?, s(&a[1])?, int(&a[2])?);
    let r = compile(&re).map_err(call_err)?;
    let limit = if n < 0 { usize::MAX } else { n as usize };
    Ok(str_list(
        r.find_iter(&src)
            .take(limit)
            .map(|m| m.as_str().to_string())
            .collect(),
    ))
}

fn f_regex_replace(c: &mut Ctx<'_>, a: &[Value], name: &str, literal: bool) -> FResult {
    arity(a, name, 3)?;
    let (re, src, repl) = (s(&a[0])?, s(&a[1])?, s(&a[2])?);
    let r = compile(&re).map_err(call_err)?;
    let max = c.limits.max_output;
    let mut total = src.len();
    let mut over = false;
    let out = r.replace_all(&src, |caps: &regex::Captures<'_>| {
        if over {
            return String::new();
        }
        let mut piece = String::new();
        if literal {
            piece.push_str(&repl);
        } else {
            caps.expand(&repl, &mut piece);
        }
        total = total.saturating_add(piece.len());
        if total > max {
            over = true;
            return String::new();
        }
        piece
    });
    if over {
        return Err(too_big(c));
    }
    Ok(Value::str(out.into_owned()))
}

fn f_regex_split(_: &mut Ctx<'_>, a: &[Value], name: &str) -> FResult {
    arity(a, name, 3)?;
    let (re, src, n) = (s(&a[0])?, s(&a[1])?, int(&a[2])?);
    let r = compile(&re).map_err(call_err)?;
    if n == 0 {
        return Ok(str_list(Vec::new()));
    }
    let parts: Vec<String> = if n < 0 {
        r.split(&src).map(String::from).collect()
    } else {
        r.splitn(&src, n as usize).map(String::from).collect()
    };
    Ok(str_list(parts))
}
