//! `filterTags`: an unanchored regular expression plus an optional extract template with the semantics of
//! Go's `Regexp.Expand` (`$1`, `${1}`, `$name`, `${name}`, `$$`; `$1x` names group "1x").
//!
//! Patterns use the `regex` crate, whose syntax and leftmost-first matching follow RE2 like Go's `regexp`.
//! Known differences, none visible on OCI tags (ASCII only): `\d`, `\s`, `\w`, `\b` are Unicode-aware here
//! and ASCII in Go; nested classes and class set operations (`[a-z&&[^x]]`) compile here but not in Go.
//! Compile errors are worded like Go's for an unclosed `[` or `(` and an unopened `)`.

use regex::{CaptureLocations, Regex};

use crate::PolicyError;

/// A compiled `filterTags` block.
#[derive(Debug, Clone)]
pub struct Filter {
    regex: Regex,
    /// `None` when the template is empty: the tag itself is the candidate.
    template: Option<Vec<Piece>>,
}

/// One step of an expanded template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Group(usize),
}

impl Filter {
    /// Compiles the pattern and pre-resolves the template's group references.
    pub fn new(pattern: &str, extract: &str) -> Result<Self, PolicyError> {
        let regex = compile(pattern).map_err(|reason| PolicyError::Pattern {
            pattern: pattern.to_owned(),
            reason,
        })?;
        let template = (!extract.is_empty()).then(|| compile_template(extract, &regex));
        Ok(Filter { regex, template })
    }

    /// Whether the filter has an extract template (otherwise the candidate is the tag itself).
    pub(crate) fn extracts(&self) -> bool {
        self.template.is_some()
    }

    /// Whether the pattern matches anywhere in the tag.
    pub(crate) fn is_match(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    /// Fresh capture slots to reuse across [`Filter::candidate`] calls.
    pub(crate) fn locations(&self) -> CaptureLocations {
        self.regex.capture_locations()
    }

    /// The candidate key of `tag`, or `None` if the pattern does not match. With a template the key is
    /// written to `buf` and `Some(true)` is returned; without one the key is the tag (`Some(false)`).
    pub(crate) fn candidate(
        &self,
        tag: &str,
        locs: &mut CaptureLocations,
        buf: &mut String,
    ) -> Option<bool> {
        let Some(template) = &self.template else {
            // Without a template no capture positions are needed, and a plain match test is much faster.
            return self.regex.is_match(tag).then_some(false);
        };
        self.regex.captures_read(locs, tag)?;
        buf.clear();
        for piece in template {
            match piece {
                Piece::Literal(s) => buf.push_str(s),
                Piece::Group(i) => {
                    if let Some((start, end)) = locs.get(*i) {
                        buf.push_str(&tag[start..end]);
                    }
                }
            }
        }
        Some(true)
    }

    /// Applies the filter to a single tag and returns the candidate key (for tests and the CLI).
    pub fn extract(&self, tag: &str) -> Option<String> {
        let mut locs = self.locations();
        let mut buf = String::new();
        match self.candidate(tag, &mut locs, &mut buf)? {
            true => Some(buf),
            false => Some(tag.to_owned()),
        }
    }
}

/// Compiles like Go's `regexp.Compile`; the error text mimics Go's where it can.
fn compile(pattern: &str) -> Result<Regex, String> {
    use regex_syntax::ast::ErrorKind;
    if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        // Go's wording for the most common mistakes; the regex crate's description otherwise.
        let start = e.span().start.offset.min(pattern.len());
        let (code, expr) = match e.kind() {
            ErrorKind::ClassUnclosed => (
                "missing closing ]".to_owned(),
                pattern.get(start..).unwrap_or(pattern),
            ),
            ErrorKind::GroupUnclosed => ("missing closing )".to_owned(), pattern),
            ErrorKind::GroupUnopened => ("unexpected )".to_owned(), pattern),
            kind => (kind.to_string(), pattern),
        };
        return Err(format!("error parsing regexp: {code}: `{expr}`"));
    }
    Regex::new(pattern).map_err(|e| {
        let text = e.to_string();
        let reason = text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text.lines().next().unwrap_or_default())
            .to_owned();
        format!("error parsing regexp: {reason}: `{pattern}`")
    })
}

/// Splits a Go `Expand` template into literals and group references, resolving names once.
fn compile_template(template: &str, regex: &Regex) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            literal.push('$');
            rest = after;
            continue;
        }
        let Some((name, number, after)) = reference(rest) else {
            // Malformed reference: the `$` is literal text.
            literal.push('$');
            continue;
        };
        rest = after;
        let group = match number {
            Some(n) => (n < regex.captures_len()).then_some(n),
            None => regex.capture_names().position(|g| g == Some(name)),
        };
        // References to missing groups expand to nothing.
        if let Some(g) = group {
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Group(g));
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

/// Parses the reference after a `$`: `name` or `{name}` where name is the longest run of letters, digits
/// and `_`. Returns (name, group number if the name is a number without leading zero, rest).
fn reference(s: &str) -> Option<(&str, Option<usize>, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    // Go uses unicode.IsLetter/IsDigit; Rust's alphabetic/numeric classes are a close superset.
    let len: usize = body
        .chars()
        .take_while(|&c| c.is_alphabetic() || c.is_numeric() || c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let rest = if braced {
        body[len..].strip_prefix('}')?
    } else {
        &body[len..]
    };
    let mut number: Option<usize> = Some(0);
    for b in name.bytes() {
        number = match number {
            Some(n) if b.is_ascii_digit() && n < 100_000_000 => {
                Some(n * 10 + usize::from(b - b'0'))
            }
            _ => None,
        };
    }
    if name.len() > 1 && name.starts_with('0') {
        number = None;
    }
    Some((name, number, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(pattern: &str, extract: &str, tag: &str) -> Option<String> {
        Filter::new(pattern, extract).unwrap().extract(tag)
    }

    #[test]
    fn go_expand_semantics() {
        let p = r"(?P<a>\d+)-(?P<b>\w+)";
        assert_eq!(ex(p, "$1", "x12-ab").as_deref(), Some("12"));
        assert_eq!(ex(p, "${1}x", "12-ab").as_deref(), Some("12x"));
        assert_eq!(ex(p, "$1x", "12-ab").as_deref(), Some(""));
        assert_eq!(ex(p, "$b.$a", "12-ab").as_deref(), Some("ab.12"));
        assert_eq!(ex(p, "$$1", "12-ab").as_deref(), Some("$1"));
        assert_eq!(ex(p, "$", "12-ab").as_deref(), Some("$"));
        assert_eq!(ex(p, "${a", "12-ab").as_deref(), Some("${a"));
        assert_eq!(ex(p, "$-x", "12-ab").as_deref(), Some("$-x"));
        assert_eq!(ex(p, "$01", "12-ab").as_deref(), Some(""));
        assert_eq!(ex(p, "$9", "12-ab").as_deref(), Some(""));
        assert_eq!(ex(p, "$0", "x12-ab!").as_deref(), Some("12-ab"));
        assert_eq!(ex(p, "$nope", "12-ab").as_deref(), Some(""));
        assert_eq!(ex("a(x)?", "[$1]", "a").as_deref(), Some("[]"));
        assert_eq!(ex("^ver", "", "ver1").as_deref(), Some("ver1"));
        assert_eq!(ex("^ver", "", "rel1"), None);
        assert_eq!(ex("1.0", "", "21.0.0").as_deref(), Some("21.0.0"));
    }

    #[test]
    fn pattern_errors_look_like_go() {
        let e = |p: &str| match Filter::new(p, "").unwrap_err() {
            PolicyError::Pattern { reason, .. } => reason,
            other => panic!("{other}"),
        };
        assert_eq!(e("[="), "error parsing regexp: missing closing ]: `[=`");
        assert_eq!(
            e("^test-(.*"),
            "error parsing regexp: missing closing ): `^test-(.*`"
        );
        assert_eq!(e("a)"), "error parsing regexp: unexpected ): `a)`");
        assert!(e("*").starts_with("error parsing regexp: "));
        assert!(!e(r"\p{Nope}").contains('\n'));
    }
}
