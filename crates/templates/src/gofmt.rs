//! Go's `fmt` printing (`Sprint`, `Sprintln`, `Sprintf`) over [`Value`]s.

use crate::value::{FieldKind, Value};

/// Formatting flags of one verb.
#[derive(Clone, Copy, Default)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Go's `fmt.Sprint("%v")` of one value.
pub fn sprint_v(v: &Value) -> String {
    let mut out = String::new();
    fmt_value(&mut out, v, 'v', &Flags::default(), usize::MAX);
    out
}

/// Go's `%v` of one value, or `None` when it would exceed `limit` bytes.
pub fn sprint_v_bounded(v: &Value, limit: usize) -> Option<String> {
    let mut out = String::new();
    fmt_value(&mut out, v, 'v', &Flags::default(), limit);
    (out.len() <= limit).then_some(out)
}

/// Go's `%v` of a value for an error message: at most about 200 bytes.
pub fn sprint_v_brief(v: &Value) -> String {
    const BRIEF: usize = 200;
    sprint_v_bounded(v, BRIEF).unwrap_or_else(|| format!("<{} too large to print>", v.type_name()))
}

/// Go's `fmt.Sprint`: spaces between operands when neither side is a string; `None` past `limit` bytes.
pub fn sprint(args: &[Value], limit: usize) -> Option<String> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Value::Str(_));
        if i > 0 && !is_str && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        fmt_value(&mut out, a, 'v', &Flags::default(), limit);
    }
    (out.len() <= limit).then_some(out)
}

/// Go's `fmt.Sprintln`: spaces between all operands and a final newline; `None` past `limit` bytes.
pub fn sprintln(args: &[Value], limit: usize) -> Option<String> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        fmt_value(&mut out, a, 'v', &Flags::default(), limit);
    }
    out.push('\n');
    (out.len() <= limit).then_some(out)
}

/// Go's `fmt.Sprintf`. Widths, precisions and results above `limit` bytes are refused so that a
/// format string cannot allocate past the output budget.
pub fn sprintf(format: &str, args: &[Value], limit: usize) -> Result<String, String> {
    let max_width = limit;
    let mut out = String::new();
    let mut argi = 0usize;
    let mut reordered = false;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut fl = Flags::default();
        // Flags.
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '+' => fl.plus = true,
                '-' => fl.minus = true,
                '#' => fl.sharp = true,
                '0' => fl.zero = true,
                ' ' => fl.space = true,
                _ => break,
            }
            chars.next();
        }
        let mut good = arg_index(&mut chars, &mut argi, args.len(), &mut reordered);
        // Width.
        if let Some(&(_, '*')) = chars.peek() {
            chars.next();
            match args.get(argi) {
                Some(Value::Int(n)) => {
                    if *n < 0 {
                        fl.minus = true;
                    }
                    fl.width = Some(n.unsigned_abs() as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            argi += 1;
        } else {
            fl.width = parse_num(&mut chars);
        }
        // Precision.
        if let Some(&(_, '.')) = chars.peek() {
            chars.next();
            good &= arg_index(&mut chars, &mut argi, args.len(), &mut reordered);
            if let Some(&(_, '*')) = chars.peek() {
                chars.next();
                match args.get(argi) {
                    Some(Value::Int(n)) if *n >= 0 => fl.prec = Some(*n as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argi += 1;
            } else {
                fl.prec = Some(parse_num(&mut chars).unwrap_or(0));
            }
        }
        if fl.width.unwrap_or(0) > max_width || fl.prec.unwrap_or(0) > max_width {
            return Err(format!(
                "width or precision larger than the output budget ({max_width})"
            ));
        }
        if fl.minus {
            fl.zero = false;
        }
        good &= arg_index(&mut chars, &mut argi, args.len(), &mut reordered);
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !good {
            out.push_str(&format!("%!{verb}(BADINDEX)"));
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        if verb == 'T' {
            pad(&mut out, &arg.type_name(), &fl);
            continue;
        }
        fmt_value(&mut out, arg, verb, &fl, limit);
        if out.len() > limit {
            return Err(format!(
                "result larger than the output budget ({limit} bytes)"
            ));
        }
    }
    if !reordered && argi < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[argi..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&a.type_name());
            out.push('=');
            fmt_value(&mut out, a, 'v', &Flags::default(), limit);
        }
        out.push(')');
        if out.len() > limit {
            return Err(format!(
                "result larger than the output budget ({limit} bytes)"
            ));
        }
    }
    Ok(out)
}

/// Go's explicit argument index `[n]` (1-based): moves the argument cursor; `false` when malformed.
fn arg_index(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    argi: &mut usize,
    nargs: usize,
    reordered: &mut bool,
) -> bool {
    if !matches!(chars.peek(), Some(&(_, '['))) {
        return true;
    }
    chars.next();
    *reordered = true;
    let n = parse_num(chars);
    match (n, chars.peek()) {
        (Some(n), Some(&(_, ']'))) if (1..=nargs).contains(&n) => {
            chars.next();
            *argi = n - 1;
            true
        }
        _ => {
            for (_, c) in chars.by_ref() {
                if c == ']' {
                    break;
                }
            }
            false
        }
    }
}

fn parse_num(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(&(_, d)) = chars.peek() {
        let Some(v) = d.to_digit(10) else { break };
        // Saturate: an absurd width is refused by the caller.
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(v as usize));
        chars.next();
    }
    n
}

fn pad(out: &mut String, s: &str, fl: &Flags) {
    let len = s.chars().count();
    let w = fl.width.unwrap_or(0);
    if len >= w {
        out.push_str(s);
    } else if fl.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', w - len));
    } else {
        out.extend(std::iter::repeat_n(' ', w - len));
        out.push_str(s);
    }
}

/// Pads a number, honouring the `0` flag after the sign.
fn pad_num(out: &mut String, s: &str, fl: &Flags) {
    let w = fl.width.unwrap_or(0);
    let len = s.chars().count();
    if fl.zero && !fl.minus && len < w {
        let (sign, digits) = match s.as_bytes().first() {
            Some(b'-' | b'+' | b' ') => s.split_at(1),
            _ => ("", s),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', w - len));
        out.push_str(digits);
    } else {
        pad(out, s, fl);
    }
}

fn bad_verb(out: &mut String, v: &Value, verb: char) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    match v {
        Value::Missing | Value::Nil => out.push_str("<nil>"),
        _ => {
            out.push_str(&v.type_name());
            out.push('=');
            fmt_value(out, v, 'v', &Flags::default(), usize::MAX);
        }
    }
    out.push(')');
}

fn fmt_value(out: &mut String, v: &Value, verb: char, fl: &Flags, limit: usize) {
    // Past the limit the caller reports an error; stop growing the buffer.
    if out.len() > limit {
        return;
    }
    match v {
        Value::Missing | Value::Nil => {
            if verb == 'v' {
                pad(out, "<nil>", fl);
            } else {
                bad_verb(out, v, verb);
            }
        }
        Value::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, fl),
            _ => bad_verb(out, v, verb),
        },
        Value::Int(i) => fmt_int(out, *i, verb, fl, v),
        Value::Float(f) => fmt_float(out, *f, verb, fl, v),
        Value::Str(s) => fmt_str(out, s, verb, fl, v),
        Value::List(l) => {
            if fl.sharp && verb == 'v' {
                out.push_str(&l.type_name);
                out.push('{');
                for (i, item) in l.items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    fmt_value(out, item, verb, fl, limit);
                }
                out.push('}');
                return;
            }
            out.push('[');
            for (i, item) in l.items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, item, verb, fl, limit);
            }
            out.push(']');
        }
        Value::Map(m) => {
            if fl.sharp && verb == 'v' {
                out.push_str(&m.type_name);
                out.push('{');
            } else {
                out.push_str("map[");
            }
            for (i, (k, val)) in m.entries().iter().enumerate() {
                if i > 0 {
                    out.push_str(if fl.sharp && verb == 'v' { ", " } else { " " });
                }
                fmt_value(out, k, verb, fl, limit);
                out.push(':');
                fmt_value(out, val, verb, fl, limit);
            }
            out.push(if fl.sharp && verb == 'v' { '}' } else { ']' });
        }
        Value::Struct(s) => {
            if let Some(d) = &s.display
                && matches!(verb, 'v' | 's' | 'x' | 'X' | 'q')
                && !(fl.sharp && verb == 'v')
            {
                fmt_str(out, d, verb, fl, v);
                return;
            }
            if fl.sharp && verb == 'v' {
                out.push_str(&s.type_name);
            }
            out.push('{');
            let mut first = true;
            for f in s.fields.iter().filter(|f| f.kind != FieldKind::Method) {
                if !first {
                    out.push_str(if fl.sharp && verb == 'v' { ", " } else { " " });
                }
                first = false;
                if fl.plus || (fl.sharp && verb == 'v') {
                    out.push_str(&f.name);
                    out.push(':');
                }
                fmt_value(out, &f.value, verb, fl, limit);
            }
            out.push('}');
        }
    }
}

fn fmt_int(out: &mut String, i: i64, verb: char, fl: &Flags, v: &Value) {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let mut digits = match verb {
        'v' | 'd' => u.to_string(),
        'b' => format!("{u:b}"),
        'o' | 'O' => format!("{u:o}"),
        'x' => format!("{u:x}"),
        'X' => format!("{u:X}"),
        'c' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            pad(out, &c.to_string(), fl);
            return;
        }
        'q' => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            pad(out, &quote_rune(c), fl);
            return;
        }
        'U' => {
            let s = format!("U+{u:04X}");
            pad(out, &s, fl);
            return;
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => {
            bad_verb(out, v, verb);
            return;
        }
        _ => {
            bad_verb(out, v, verb);
            return;
        }
    };
    if let Some(p) = fl.prec {
        if digits.len() < p {
            digits = format!("{}{}", "0".repeat(p - digits.len()), digits);
        } else if p == 0 && u == 0 {
            digits.clear();
        }
    }
    let prefix = match (verb, fl.sharp) {
        ('b', true) => "0b",
        ('o', true) => "0",
        ('O', _) => "0o",
        ('x', true) => "0x",
        ('X', true) => "0X",
        _ => "",
    };
    let sign = if neg {
        "-"
    } else if fl.plus {
        "+"
    } else if fl.space {
        " "
    } else {
        ""
    };
    let s = format!("{sign}{prefix}{digits}");
    if fl.prec.is_some() {
        pad(out, &s, fl);
    } else {
        pad_num(out, &s, fl);
    }
}

/// Shortest decimal digits and decimal exponent of a finite, non-negative float.
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    (digits, exp.parse().unwrap_or(0))
}

fn exp_form(digits: &str, exp: i32, e: char) -> String {
    let mut s = String::new();
    s.push_str(&digits[..1]);
    if digits.len() > 1 {
        s.push('.');
        s.push_str(&digits[1..]);
    }
    s.push(e);
    s.push(if exp < 0 { '-' } else { '+' });
    let a = exp.unsigned_abs();
    if a < 10 {
        s.push('0');
    }
    s.push_str(&a.to_string());
    s
}

fn fixed_form(digits: &str, exp: i32) -> String {
    let dp = exp + 1;
    let nd = digits.len() as i32;
    if dp <= 0 {
        format!("0.{}{}", "0".repeat((-dp) as usize), digits)
    } else if dp >= nd {
        format!("{}{}", digits, "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    }
}

/// Go's `%e` with a precision: Rust's exponent rewritten as `e+05`.
fn go_exp(f: f64, prec: usize, e: char) -> String {
    let s = format!("{f:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    let a = x.unsigned_abs();
    format!(
        "{mant}{e}{}{}{a}",
        if x < 0 { '-' } else { '+' },
        if a < 10 { "0" } else { "" }
    )
}

fn trim_frac_zeros(s: &str) -> String {
    if let Some((m, e)) = s.split_once(['e', 'E']) {
        let sep = if s.contains('e') { 'e' } else { 'E' };
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        format!("{m}{sep}{e}")
    } else if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Go's `%g`/`%v` of a float.
fn go_g(f: f64, prec: Option<usize>, e: char) -> String {
    let a = f.abs();
    match prec {
        None => {
            if a == 0.0 {
                return "0".into();
            }
            let (d, x) = shortest_digits(a);
            // Go switches to exponent form below 1e-4 and from 1e+06 on for the shortest form.
            if !(-4..6).contains(&x) {
                exp_form(&d, x, e)
            } else {
                fixed_form(&d, x)
            }
        }
        Some(p) => {
            let p = p.max(1);
            if a == 0.0 {
                return "0".into();
            }
            let es = format!("{a:.prec$e}", prec = p - 1);
            let x: i32 = es
                .split_once('e')
                .and_then(|(_, x)| x.parse().ok())
                .unwrap_or(0);
            if x < -4 || x >= p as i32 {
                trim_frac_zeros(&go_exp(a, p - 1, e))
            } else {
                let decimals = (p as i32 - 1 - x).max(0) as usize;
                trim_frac_zeros(&format!("{a:.decimals$}"))
            }
        }
    }
}

fn fmt_float(out: &mut String, f: f64, verb: char, fl: &Flags, v: &Value) {
    if f.is_nan() {
        pad(out, "NaN", fl);
        return;
    }
    let neg = f.is_sign_negative() && f != 0.0;
    let body = if f.is_infinite() {
        "Inf".to_string()
    } else {
        let a = f.abs();
        match verb {
            'v' | 'g' => go_g(a, fl.prec, 'e'),
            'G' => go_g(a, fl.prec, 'E'),
            'e' => go_exp(a, fl.prec.unwrap_or(6), 'e'),
            'E' => go_exp(a, fl.prec.unwrap_or(6), 'E'),
            'f' | 'F' => format!("{a:.prec$}", prec = fl.prec.unwrap_or(6)),
            _ => {
                bad_verb(out, v, verb);
                return;
            }
        }
    };
    let sign = if neg {
        "-"
    } else if fl.plus || f.is_infinite() && verb == 'v' {
        "+"
    } else if fl.space {
        " "
    } else {
        ""
    };
    pad_num(out, &format!("{sign}{body}"), fl);
}

fn fmt_str(out: &mut String, s: &str, verb: char, fl: &Flags, v: &Value) {
    let s: &str = match fl.prec {
        Some(p) if matches!(verb, 'v' | 's' | 'q') => match s.char_indices().nth(p) {
            Some((i, _)) => &s[..i],
            None => s,
        },
        _ => s,
    };
    match verb {
        'v' | 's' => pad(out, s, fl),
        'q' => {
            if fl.sharp && !s.contains('`') && s.chars().all(|c| c == '\t' || !c.is_control()) {
                pad(out, &format!("`{s}`"), fl)
            } else {
                pad(out, &quote(s), fl)
            }
        }
        'x' | 'X' => {
            let mut h = String::new();
            for (i, b) in s.bytes().enumerate() {
                if fl.space && i > 0 {
                    h.push(' ');
                }
                if fl.sharp && (fl.space || i == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    h.push_str(&format!("{b:02x}"));
                } else {
                    h.push_str(&format!("{b:02X}"));
                }
            }
            pad(out, &h, fl)
        }
        _ => bad_verb(out, v, verb),
    }
}

/// Whether Go's `strconv.IsPrint` holds (approximated with Unicode control and format characters).
fn is_print(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{00AD}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}')
        || ('\u{E000}'..='\u{F8FF}').contains(&c))
}

fn escape_char(out: &mut String, c: char, quote: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_print(c) => out.push(c),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_char(&mut out, c, '"');
    }
    out.push('"');
    out
}

fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    escape_char(&mut out, c, '\'');
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fmt: &str, args: &[Value]) -> String {
        sprintf(fmt, args, 1 << 20).unwrap()
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(sprint_v(&Value::Float(1.5)), "1.5");
        assert_eq!(sprint_v(&Value::Float(1e6)), "1e+06");
        assert_eq!(sprint_v(&Value::Float(123456.0)), "123456");
        assert_eq!(sprint_v(&Value::Float(0.0001)), "0.0001");
        assert_eq!(sprint_v(&Value::Float(0.00001)), "1e-05");
        assert_eq!(sprint_v(&Value::Float(-2.0)), "-2");
        assert_eq!(
            f(
                "%.2f|%e|%g|%.3g",
                &[
                    Value::Float(5.55555),
                    Value::Float(1234.5),
                    Value::Float(1e-7),
                    Value::Float(1234.5)
                ]
            ),
            "5.56|1.234500e+03|1e-07|1.23e+03"
        );
    }

    #[test]
    fn verbs_and_errors_like_go() {
        assert_eq!(
            f(
                "%5d|%-5d|%05d|%x|%X|%o|%b|%+d",
                &[
                    5.into(),
                    5.into(),
                    (-5).into(),
                    255.into(),
                    255.into(),
                    8.into(),
                    5.into(),
                    3.into()
                ]
            ),
            "    5|5    |-0005|ff|FF|10|101|+3"
        );
        assert_eq!(f("%s %d", &["a".into(), "b".into()]), "a %!d(string=b)");
        assert_eq!(f("%d", &[]), "%!d(MISSING)");
        assert_eq!(f("x", &[1.into()]), "x%!(EXTRA int=1)");
        assert_eq!(
            f(
                "%q|%v|%t|%%|%c",
                &["a\"b\n".into(), Value::Nil, true.into(), 65.into()]
            ),
            "\"a\\\"b\\n\"|<nil>|true|%|A"
        );
        assert_eq!(f("%T %T", &["a".into(), 1.into()]), "string int");
        assert_eq!(f("%[2]d %[1]s %d", &["a".into(), 1.into()]), "1 a 1");
        assert_eq!(f("%[3]d|%[x]d", &[1.into()]), "%!d(BADINDEX)|%!d(BADINDEX)");
        assert_eq!(f("%[1]*d|", &[3.into()]), "%!d(MISSING)|");
        assert!(sprintf("%999999999d", &[1.into()], 1000).is_err());
    }

    #[test]
    fn sprint_spacing() {
        assert_eq!(
            sprint(&[1.into(), 2.into(), "a".into(), 3.into()], 100).unwrap(),
            "1 2a3"
        );
        assert_eq!(sprintln(&["a".into(), 1.into()], 100).unwrap(), "a 1\n");
        assert_eq!(sprint(&["abcdef".into()], 3), None);
    }
}
