//! Reading and writing YAML flow scalars: decoding the source text of plain, single- and
//! double-quoted scalars, deciding whether a plain value reads back as a string, and
//! rendering a new value in the original quoting style.

use std::sync::LazyLock;

use regex::Regex;

/// The quoting style of a flow scalar in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// Unquoted.
    Plain,
    /// `'…'`.
    Single,
    /// `"…"`.
    Double,
}

/// Decodes the source text of a flow scalar (quotes included for quoted styles).
/// Returns `None` when the text is not a well-formed scalar of that style.
pub(crate) fn decode(style: Style, raw: &str) -> Option<String> {
    match style {
        Style::Plain => Some(fold_lines(raw, false)),
        Style::Single => {
            let inner = raw.strip_prefix('\'')?.strip_suffix('\'')?;
            Some(fold_lines(inner, true).replace("''", "'"))
        }
        Style::Double => decode_double(raw.strip_prefix('"')?.strip_suffix('"')?),
    }
}

/// Line folding for plain and single-quoted scalars: a single line break becomes a space,
/// each further empty line a `\n`; leading and trailing white space of continuation lines
/// is dropped.
fn fold_lines(text: &str, quoted: bool) -> String {
    if !text.contains('\n') {
        return if quoted {
            text.to_owned()
        } else {
            text.trim().to_owned()
        };
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let last = lines.len() - 1;
    let mut out = String::with_capacity(text.len());
    let mut pending_breaks = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let piece = match (i == 0, i == last) {
            (true, _) => line.trim_end_matches([' ', '\t']),
            (false, true) => line.trim_start_matches([' ', '\t']),
            (false, false) => line.trim_matches([' ', '\t']),
        };
        if i > 0 && piece.is_empty() && i != last {
            pending_breaks += 1;
            continue;
        }
        if i > 0 {
            if pending_breaks == 0 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', pending_breaks));
            }
        }
        pending_breaks = 0;
        out.push_str(piece);
    }
    if quoted { out } else { out.trim().to_owned() }
}

/// Decodes the inside of a double-quoted scalar: escapes, escaped line breaks and folding.
fn decode_double(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    // White space written before a line break is dropped by folding; remember where it began.
    let mut trailing_ws_from: Option<usize> = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                trailing_ws_from = None;
                let e = chars.next()?;
                match e {
                    '0' => out.push('\0'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    't' | '\t' => out.push('\t'),
                    'n' => out.push('\n'),
                    'v' => out.push('\u{b}'),
                    'f' => out.push('\u{c}'),
                    'r' => out.push('\r'),
                    'e' => out.push('\u{1b}'),
                    ' ' => out.push(' '),
                    '"' => out.push('"'),
                    '/' => out.push('/'),
                    '\\' => out.push('\\'),
                    'N' => out.push('\u{85}'),
                    '_' => out.push('\u{a0}'),
                    'L' => out.push('\u{2028}'),
                    'P' => out.push('\u{2029}'),
                    'x' => out.push(hex_char(&mut chars, 2)?),
                    'u' => out.push(hex_char(&mut chars, 4)?),
                    'U' => out.push(hex_char(&mut chars, 8)?),
                    '\r' | '\n' => {
                        // Escaped line break: joined without a space.
                        if e == '\r' && chars.peek() == Some(&'\n') {
                            chars.next();
                        }
                        while matches!(chars.peek(), Some(' ' | '\t')) {
                            chars.next();
                        }
                    }
                    _ => return None,
                }
            }
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                if let Some(at) = trailing_ws_from.take() {
                    out.truncate(at);
                }
                let mut breaks = 0usize;
                loop {
                    while matches!(chars.peek(), Some(' ' | '\t')) {
                        chars.next();
                    }
                    match chars.peek() {
                        Some('\n') => {
                            chars.next();
                            breaks += 1;
                        }
                        Some('\r') => {
                            chars.next();
                        }
                        _ => break,
                    }
                }
                if breaks == 0 {
                    out.push(' ');
                } else {
                    out.extend(std::iter::repeat_n('\n', breaks));
                }
            }
            ' ' | '\t' => {
                if trailing_ws_from.is_none() {
                    trailing_ws_from = Some(out.len());
                }
                out.push(c);
            }
            _ => {
                trailing_ws_from = None;
                out.push(c);
            }
        }
    }
    Some(out)
}

fn hex_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize) -> Option<char> {
    let mut v: u32 = 0;
    for _ in 0..n {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    char::from_u32(v)
}

/// Renders `value` for a scalar originally written in `style`; `in_flow` tells whether the
/// scalar sits inside a flow collection (where `,[]{}` end a plain scalar). Returns the
/// source text and the style actually used.
pub(crate) fn render(value: &str, style: Style, in_flow: bool) -> (String, Style) {
    match style {
        Style::Plain if plain_is_safe(value, in_flow) && reads_as_string(value) => {
            (value.to_owned(), Style::Plain)
        }
        Style::Single if value.chars().all(|c| !c.is_control()) => {
            (format!("'{}'", value.replace('\'', "''")), Style::Single)
        }
        _ => (double_quote(value), Style::Double),
    }
}

/// Double-quotes a value, escaping what YAML requires (as Flux's encoder does for values that
/// would otherwise not read back as strings).
pub(crate) fn double_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                let code = u32::from(c);
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` can be written as a plain scalar and read back verbatim (before type
/// resolution, which `reads_as_string` covers).
pub(crate) fn plain_is_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t', ':']) {
        return false;
    }
    if value
        .chars()
        .any(|c| c.is_control() || c == '\u{feff}' || c == '\u{85}')
    {
        return false;
    }
    if value.contains(": ")
        || value.contains(" #")
        || value.contains(":\t")
        || value.contains("\t#")
    {
        return false;
    }
    if in_flow && value.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    if value.starts_with("---") || value.starts_with("...") {
        return false;
    }
    match first {
        '[' | ']' | '{' | '}' | ',' | '#' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%'
        | '@' | '`' => false,
        '-' | '?' | ':' => {
            let next = value[1..].chars().next();
            match next {
                None | Some(' ' | '\t') => false,
                Some(c) => !(in_flow && matches!(c, ',' | '[' | ']' | '{' | '}')),
            }
        }
        _ => true,
    }
}

static YAML12_NON_STRING: LazyLock<Regex> = LazyLock::new(|| {
    // YAML 1.2 core schema: null, bool, int (decimal, octal 0o, hex 0x), float, inf, nan.
    build_regex(concat!(
        r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE",
        r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
        r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?",
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ))
});

static YAML11_NON_STRING: LazyLock<Regex> = LazyLock::new(|| {
    // YAML 1.1 types (as Kubernetes decodes manifests): null, bool incl. y/n/yes/no/on/off,
    // int incl. binary, octal, hex, underscores and sexagesimal, float, merge key, value key
    // and timestamps; Go's ParseInt/ParseFloat forms (0o17, 1e3) are covered as well.
    build_regex(concat!(
        r"^(?:~|null|Null|NULL",
        r"|y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        r"|[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
        r"|[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        r"|<<|=",
        r"|[0-9]{4}-[0-9]{2}-[0-9]{2}",
        r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?",
        r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$"
    ))
});

fn build_regex(pattern: &str) -> Regex {
    // The patterns are constants; a failure here is a programming error caught by the tests.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("constant regex")
}

/// Whether a plain scalar with this text resolves to a string under both YAML 1.1 and the
/// YAML 1.2 core schema (the empty plain scalar is null).
pub(crate) fn reads_as_string(value: &str) -> bool {
    !value.is_empty() && !YAML12_NON_STRING.is_match(value) && !YAML11_NON_STRING.is_match(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_strings_are_detected_in_either_version() {
        for v in [
            "yes",
            "on",
            "y",
            "N",
            "0o17",
            "1_000",
            "1.0",
            "true",
            "2024-01-01",
            "5",
            "-1",
            "0x1F",
            ".inf",
            ".NaN",
            "~",
            "null",
            "1e3",
            "1:30",
            "<<",
            "=",
            "017",
            "2001-12-14t21:59:43.10-05:00",
        ] {
            assert!(!reads_as_string(v), "{v} must be quoted");
        }
        for v in [
            "v1.0.1",
            "1.2.3",
            "sha256:abc",
            "image:v1",
            "latest",
            "1.0-rc1",
            "yesterday",
            "v1.1",
        ] {
            assert!(reads_as_string(v), "{v} is a string");
        }
    }

    #[test]
    fn decodes_each_style() {
        assert_eq!(decode(Style::Plain, "a\n  b").as_deref(), Some("a b"));
        assert_eq!(decode(Style::Plain, "a\n\n  b").as_deref(), Some("a\nb"));
        assert_eq!(decode(Style::Single, "'it''s'").as_deref(), Some("it's"));
        assert_eq!(
            decode(Style::Double, r#""a\"b\x41\u00e9""#).as_deref(),
            Some("a\"bAé")
        );
        assert_eq!(
            decode(Style::Double, "\"a  \n   b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(
            decode(Style::Double, "\"a\\\n   b\"").as_deref(),
            Some("ab")
        );
        assert_eq!(decode(Style::Double, "\"bad\\q\""), None);
    }

    #[test]
    fn renders_keep_style_and_quote_when_needed() {
        assert_eq!(
            render("v1", Style::Plain, false),
            ("v1".into(), Style::Plain)
        );
        assert_eq!(
            render("1.0", Style::Plain, false),
            ("\"1.0\"".into(), Style::Double)
        );
        assert_eq!(
            render("", Style::Plain, false),
            ("\"\"".into(), Style::Double)
        );
        assert_eq!(
            render("it's", Style::Single, false),
            ("'it''s'".into(), Style::Single)
        );
        assert_eq!(
            render("a,b", Style::Plain, true),
            ("\"a,b\"".into(), Style::Double)
        );
        assert_eq!(
            render("a\"b", Style::Double, false),
            ("\"a\\\"b\"".into(), Style::Double)
        );
    }
}
