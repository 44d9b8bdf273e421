//! Semantic versions and version constraints with the semantics of Masterminds/semver v3, the library
//! Flux's image-reflector-controller uses, plus Flux's stricter tag parsing.
//!
//! Everything is parsed by hand: tag parsing is the hot path of the semver policy (hundreds of thousands
//! of tags per evaluation) and must not allocate.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

/// Why a string is not a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The text does not have the shape of a version (or, for tags, has fewer than two dots).
    #[error("invalid semantic version")]
    Invalid,
    /// A major, minor or patch number does not fit in 64 bits.
    #[error("error parsing version segment: value out of range")]
    OutOfRange,
    /// A numeric pre-release identifier has a leading zero.
    #[error("version segment starts with 0")]
    SegmentStartsZero,
}

/// A parsed version borrowing its text. Leading zeros in major/minor/patch and a lower-case `v` prefix
/// are accepted, like Masterminds' coercing `NewVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre: &'a str,
    meta: &'a str,
    original: &'a str,
}

impl<'a> Version<'a> {
    /// Parses a version the way Masterminds' `NewVersion` does: `1`, `1.2`, `v1.2.3-rc.1+b` are versions.
    pub fn parse_loose(s: &'a str) -> Result<Self, VersionError> {
        parse_loose(s).map(|(v, _)| v)
    }

    /// Parses an image tag the way Flux does (`fluxcd/pkg/version.ParseVersion`): the tag must contain at
    /// least two dots, then it is parsed like [`Version::parse_loose`] (so `1.2-beta.3` is `1.2.0-beta.3`).
    pub fn parse_tag(s: &'a str) -> Result<Self, VersionError> {
        let parsed = parse_loose(s);
        match parsed {
            // Major, minor and patch were all present: the tag has two dots.
            Ok((v, 2)) => Ok(v),
            _ if s.bytes().filter(|&b| b == b'.').count() < 2 => Err(VersionError::Invalid),
            _ => parsed.map(|(v, _)| v),
        }
    }

    /// The major number.
    pub fn major(&self) -> u64 {
        self.major
    }

    /// The minor number (0 when absent).
    pub fn minor(&self) -> u64 {
        self.minor
    }

    /// The patch number (0 when absent).
    pub fn patch(&self) -> u64 {
        self.patch
    }

    /// The pre-release, without its `-`; empty when there is none.
    pub fn prerelease(&self) -> &'a str {
        self.pre
    }

    /// The build metadata, without its `+`; empty when there is none.
    pub fn metadata(&self) -> &'a str {
        self.meta
    }

    /// The text the version was parsed from.
    pub fn original(&self) -> &'a str {
        self.original
    }

    /// Semver precedence (Masterminds `Compare`): build metadata is ignored, so `1.0.0+a` equals `1.0.0+b`.
    pub fn cmp_precedence(&self, other: &Version<'_>) -> Ordering {
        self.core().cmp(&other.core())
    }

    fn core(&self) -> Core<'a> {
        Core {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: self.pre,
        }
    }
}

/// The part of a version that takes part in comparisons.
#[derive(Debug, Clone, Copy)]
struct Core<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre: &'a str,
}

impl Core<'_> {
    fn cmp(&self, o: &Core<'_>) -> Ordering {
        self.major
            .cmp(&o.major)
            .then(self.minor.cmp(&o.minor))
            .then(self.patch.cmp(&o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(self.pre, o.pre),
            })
    }
}

/// Compares dot-separated pre-release identifiers; a missing identifier sorts first.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let d = compare_pre_part(x.unwrap_or(""), y.unwrap_or(""));
                if d != Ordering::Equal {
                    return d;
                }
            }
        }
    }
}

/// One identifier: numbers (that fit in u64) sort before words, numbers numerically, words byte-wise.
fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (parse_u64(s), parse_u64(o)) {
        (None, None) => {
            if s > o {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        // Upstream never reports equality here (distinct spellings of one number cannot pass validation).
        (Some(x), Some(y)) => {
            if x > y {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`: ASCII digits only, no sign, must fit.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Scans ASCII digits from `i`; returns (value, overflowed, end).
#[inline]
fn scan_number(b: &[u8], mut i: usize) -> (u64, bool, usize) {
    let mut n: u64 = 0;
    let mut overflow = false;
    while let Some(&c) = b.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        match n
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(c - b'0')))
        {
            Some(m) => n = m,
            None => overflow = true,
        }
        i += 1;
    }
    (n, overflow, i)
}

/// Scans `ident(.ident)*` from `i`; returns the end, or `None` if an identifier is empty.
/// `zero_check` reports numeric identifiers with a leading zero through the flag.
#[inline]
fn scan_idents(b: &[u8], mut i: usize, leading_zero: &mut bool) -> Option<usize> {
    loop {
        let start = i;
        let mut all_digits = true;
        while let Some(&c) = b.get(i) {
            if !is_ident_byte(c) {
                break;
            }
            all_digits &= c.is_ascii_digit();
            i += 1;
        }
        if i == start {
            return None;
        }
        if all_digits && i - start > 1 && b[start] == b'0' {
            *leading_zero = true;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(i);
        }
    }
}

/// Masterminds' coercing `NewVersion`. Also returns how many of minor/patch were present (0..=2).
#[inline]
fn parse_loose(s: &str) -> Result<(Version<'_>, u8), VersionError> {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'v'));
    let (major, mut overflow, end) = scan_number(b, i);
    if end == i {
        return Err(VersionError::Invalid);
    }
    i = end;
    let mut parts = [0u64; 2];
    let mut dots = 0u8;
    while dots < 2 && b.get(i) == Some(&b'.') {
        let (n, o, end) = scan_number(b, i + 1);
        if end == i + 1 {
            return Err(VersionError::Invalid);
        }
        parts[usize::from(dots)] = n;
        overflow |= o;
        dots += 1;
        i = end;
    }
    let mut pre_zero = false;
    let mut pre = "";
    if b.get(i) == Some(&b'-') {
        let end = scan_idents(b, i + 1, &mut pre_zero).ok_or(VersionError::Invalid)?;
        pre = &s[i + 1..end];
        i = end;
    }
    let mut meta = "";
    if b.get(i) == Some(&b'+') {
        let end = scan_idents(b, i + 1, &mut false).ok_or(VersionError::Invalid)?;
        meta = &s[i + 1..end];
        i = end;
    }
    if i != b.len() {
        return Err(VersionError::Invalid);
    }
    // Same precedence as upstream: shape first, then number range, then pre-release validation.
    if overflow {
        return Err(VersionError::OutOfRange);
    }
    if pre_zero {
        return Err(VersionError::SegmentStartsZero);
    }
    Ok((
        Version {
            major,
            minor: parts[0],
            patch: parts[1],
            pre,
            meta,
            original: s,
        },
        dots,
    ))
}

/// Why a constraint string is not a valid range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// An OR-group does not follow the grammar; carries the group's text (after hyphen-range rewriting).
    #[error("improper constraint: {}", go_quote(.0))]
    Improper(String),
    /// A comparator's version is not a version (e.g. `1x`, `1.2.3-01`).
    #[error("constraint parser error")]
    Parser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "" | "=" => Op::TildeOrEqual,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            "<" => Op::Less,
            ">=" | "=>" => Op::GreaterEqual,
            "<=" | "=<" => Op::LessEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return None,
        })
    }
}

/// One comparator such as `>=1.2` or `~1.x`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
    /// Some part was missing or a wildcard.
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    comparators: Vec<Comparator>,
    /// A comparator of this AND-group names a pre-release, so pre-release versions may match it.
    has_pre: bool,
}

/// A parsed range: OR-groups (`||`) of AND-ed comparators (space or comma).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    groups: Vec<Group>,
}

impl Constraints {
    /// Parses a range like Masterminds `NewConstraint`; errors carry upstream's exact text.
    pub fn parse(range: &str) -> Result<Self, ConstraintError> {
        let rewritten = rewrite_range(range);
        let mut groups = Vec::new();
        for segment in rewritten.split("||") {
            let pieces = split_group(segment)
                .ok_or_else(|| ConstraintError::Improper(segment.to_owned()))?;
            let mut comparators = Vec::with_capacity(pieces.len());
            for (op, cv) in pieces {
                comparators.push(parse_comparator(op, cv)?);
            }
            let has_pre = comparators.iter().any(|c| !c.pre.is_empty());
            groups.push(Group {
                comparators,
                has_pre,
            });
        }
        Ok(Constraints { groups })
    }

    /// Number of OR-groups.
    pub fn or_groups(&self) -> usize {
        self.groups.len()
    }

    /// Number of comparators in the given OR-group (0 if out of range).
    pub fn and_count(&self, group: usize) -> usize {
        self.groups.get(group).map_or(0, |g| g.comparators.len())
    }

    /// Whether the version satisfies the range (Masterminds `Check`, `IncludePrerelease` unset).
    #[inline]
    pub fn check(&self, v: &Version<'_>) -> bool {
        let core = v.core();
        self.groups.iter().any(|g| {
            (core.pre.is_empty() || g.has_pre) && g.comparators.iter().all(|c| c.check(&core))
        })
    }
}

impl Comparator {
    fn core(&self) -> Core<'_> {
        Core {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
        }
    }

    /// The comparator semantics; the pre-release gate is applied by the caller.
    #[inline]
    fn check(&self, v: &Core<'_>) -> bool {
        let c = self.core();
        match self.op {
            Op::TildeOrEqual => {
                if self.dirty {
                    self.tilde(v, &c)
                } else {
                    v.cmp(&c) == Ordering::Equal
                }
            }
            Op::Tilde => self.tilde(v, &c),
            Op::NotEqual => self.not_equal(v, &c),
            Op::Greater => self.greater(v, &c),
            Op::Less => v.cmp(&c) == Ordering::Less,
            Op::GreaterEqual => v.cmp(&c) != Ordering::Less,
            Op::LessEqual => self.less_equal(v, &c),
            Op::Caret => self.caret(v, &c),
        }
    }

    fn not_equal(&self, v: &Core<'_>, c: &Core<'_>) -> bool {
        if self.dirty {
            if c.major != v.major {
                return true;
            }
            if c.minor != v.minor && !self.minor_dirty {
                return true;
            } else if self.minor_dirty {
                return false;
            } else if c.patch != v.patch && !self.patch_dirty {
                return true;
            } else if self.patch_dirty {
                if !v.pre.is_empty() || !c.pre.is_empty() {
                    return compare_prerelease(v.pre, c.pre) != Ordering::Equal;
                }
                return false;
            }
        }
        v.cmp(c) != Ordering::Equal
    }

    fn greater(&self, v: &Core<'_>, c: &Core<'_>) -> bool {
        if !self.dirty {
            return v.cmp(c) == Ordering::Greater;
        }
        if v.major > c.major {
            true
        } else if v.major < c.major || self.minor_dirty {
            // `>11` needs 12 or more.
            false
        } else if self.patch_dirty {
            v.minor > c.minor
        } else {
            v.cmp(c) == Ordering::Greater
        }
    }

    fn less_equal(&self, v: &Core<'_>, c: &Core<'_>) -> bool {
        if !self.dirty {
            return v.cmp(c) != Ordering::Greater;
        }
        !(v.major > c.major || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
    }

    fn tilde(&self, v: &Core<'_>, c: &Core<'_>) -> bool {
        if v.cmp(c) == Ordering::Less {
            return false;
        }
        // `~0.0.0` (and `~*`) accepts everything at or above it.
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }

    fn caret(&self, v: &Core<'_>, c: &Core<'_>) -> bool {
        if v.cmp(c) == Ordering::Less {
            return false;
        }
        if c.major > 0 || self.minor_dirty {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.patch_dirty {
            return v.minor == c.minor;
        }
        if v.minor > 0 {
            return false;
        }
        c.patch == v.patch
    }
}

/// Go's regexp `\s`: ASCII space, tab, newline, form feed, carriage return (not vertical tab).
fn is_go_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

/// Characters of a number slot in a range version: digits and the wildcards. Upstream's character class
/// also admits `|`; such versions are accepted by the grammar and then fail to parse.
fn is_num_slot(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'x' | b'X' | b'*' | b'|')
}

fn is_op_byte(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'<' | b'>' | b'~' | b'^')
}

/// A range string with, for every position, where each kind of run starting there ends. Every lookup is
/// O(1), so trying a match at every position (hyphen ranges) stays linear even on hostile input.
struct Text<'a> {
    b: &'a [u8],
    space_end: Vec<usize>,
    num_end: Vec<usize>,
    /// End of `ident(.ident)*`.
    dotted_end: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(s: &'a str) -> Self {
        let b = s.as_bytes();
        let n = b.len();
        let run_ends = |f: fn(u8) -> bool| {
            let mut ends = vec![n; n + 1];
            for i in (0..n).rev() {
                ends[i] = if f(b[i]) { ends[i + 1] } else { i };
            }
            ends
        };
        let space_end = run_ends(is_go_space);
        let num_end = run_ends(is_num_slot);
        let ident_end = run_ends(is_ident_byte);
        // Right to left, so the end of the identifiers after a dot is known already.
        let mut dotted_end = vec![n; n + 1];
        for i in (0..n).rev() {
            let r = ident_end[i];
            dotted_end[i] = if r > i
                && b.get(r) == Some(&b'.')
                && b.get(r + 1).is_some_and(|&c| is_ident_byte(c))
            {
                dotted_end[r + 1]
            } else {
                r
            };
        }
        Text {
            b,
            space_end,
            num_end,
            dotted_end,
        }
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn skip_space(&self, i: usize) -> usize {
        self.space_end.get(i).copied().unwrap_or(i)
    }

    /// Longest range version starting at `i` (every part of the grammar is greedy and unambiguous).
    fn cv(&self, i: usize) -> Option<CvParts> {
        let start = i + usize::from(self.at(i) == Some(b'v'));
        let major_end = *self.num_end.get(start)?;
        if major_end == start {
            return None;
        }
        let mut j = major_end;
        let mut slots = [None, None];
        for slot in &mut slots {
            if self.at(j) == Some(b'.') && self.at(j + 1).is_some_and(is_num_slot) {
                let end = self.num_end[j + 1];
                *slot = Some((j + 1, end));
                j = end;
            } else {
                break;
            }
        }
        let mut pre = None;
        for (k, marker) in [b'-', b'+'].into_iter().enumerate() {
            if self.at(j) == Some(marker) && self.at(j + 1).is_some_and(is_ident_byte) {
                let end = self.dotted_end[j + 1];
                if k == 0 {
                    pre = Some((j, end));
                }
                j = end;
            }
        }
        Some(CvParts {
            end: j,
            major: (start, major_end),
            minor: slots[0],
            patch: slots[1],
            pre,
        })
    }
}

/// The parts of a range version `v?N(.N)?(.N)?(-pre)?(+meta)?`, as byte offsets.
struct CvParts {
    end: usize,
    major: (usize, usize),
    minor: Option<(usize, usize)>,
    patch: Option<(usize, usize)>,
    /// Includes the leading `-`.
    pre: Option<(usize, usize)>,
}

/// Splits one OR-group into (operator, version) pairs, or `None` if the group is not
/// `\s*OP\s*VER\s*` followed by any number of `(\s+|,\s*)OP\s*VER\s*`.
fn split_group(seg: &str) -> Option<Vec<(&str, &str)>> {
    let t = Text::new(seg);
    let mut out = Vec::new();
    let mut i = t.skip_space(0);
    loop {
        let mut op_end = i;
        while t.at(op_end).is_some_and(is_op_byte) {
            op_end += 1;
        }
        let op = &seg[i..op_end];
        Op::parse(op)?;
        let cv_start = t.skip_space(op_end);
        let cv = t.cv(cv_start)?;
        out.push((op, &seg[cv_start..cv.end]));
        let after = t.skip_space(cv.end);
        match t.at(after) {
            None => return Some(out),
            Some(b',') => i = t.skip_space(after + 1),
            Some(_) if after > cv.end => i = after,
            Some(_) => return None,
        }
    }
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_comparator(op: &str, cv: &str) -> Result<Comparator, ConstraintError> {
    let op = Op::parse(op).ok_or(ConstraintError::Parser)?;
    let parts = Text::new(cv).cv(0).ok_or(ConstraintError::Parser)?;
    let text = |r: (usize, usize)| &cv[r.0..r.1];
    let major = text(parts.major);
    let pre = parts.pre.map_or("", text);
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    // A wildcard or missing part makes the comparator "dirty"; the version is completed with zeros.
    let ver: Cow<'_, str> = if is_x(major) {
        dirty = true;
        Cow::Owned(format!("0.0.0{pre}"))
    } else if parts.minor.is_none_or(|m| is_x(text(m))) {
        dirty = true;
        minor_dirty = true;
        Cow::Owned(format!("{major}.0.0{pre}"))
    } else if parts.patch.is_none_or(|p| is_x(text(p))) {
        dirty = true;
        patch_dirty = true;
        let minor = parts.minor.map_or("", text);
        Cow::Owned(format!("{major}.{minor}.0{pre}"))
    } else {
        Cow::Borrowed(cv)
    };
    let v = Version::parse_loose(&ver).map_err(|_| ConstraintError::Parser)?;
    Ok(Comparator {
        op,
        major: v.major,
        minor: v.minor,
        patch: v.patch,
        pre: v.pre.to_owned(),
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

/// Rewrites hyphen ranges `A - B` into `>= A, <= B ` exactly as upstream does (including the trailing
/// space and the replace-first-occurrence quirk), since error messages quote the rewritten text.
fn rewrite_range(input: &str) -> Cow<'_, str> {
    let t = Text::new(input);
    let mut matches = Vec::new();
    let mut p = 0;
    while p < input.len() {
        if let Some(m) = hyphen_range_at(&t, p) {
            p = m.end;
            matches.push(m);
        } else {
            p += 1;
        }
    }
    if matches.is_empty() {
        return Cow::Borrowed(input);
    }
    let mut out = input.to_owned();
    for m in matches {
        let replacement = format!(
            ">= {}, <= {} ",
            &input[m.low.0..m.low.1],
            &input[m.high.0..m.high.1]
        );
        out = out.replacen(&input[m.start..m.end], &replacement, 1);
    }
    Cow::Owned(out)
}

/// A hyphen range found in a range string, as byte offsets.
struct HyphenRange {
    start: usize,
    end: usize,
    low: (usize, usize),
    high: (usize, usize),
}

/// Matches `\s*VER\s+-\s+VER\s*` at `p`.
fn hyphen_range_at(t: &Text<'_>, p: usize) -> Option<HyphenRange> {
    let a0 = t.skip_space(p);
    let a1 = t.cv(a0)?.end;
    let dash = t.skip_space(a1);
    if dash == a1 || t.at(dash) != Some(b'-') {
        return None;
    }
    let b0 = t.skip_space(dash + 1);
    if b0 == dash + 1 {
        return None;
    }
    let b1 = t.cv(b0)?.end;
    Some(HyphenRange {
        start: p,
        end: t.skip_space(b1),
        low: (a0, a1),
        high: (b0, b1),
    })
}

/// Go's `%q` (`strconv.Quote`) for the strings upstream quotes in error messages.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_printable(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `strconv.IsPrint` without Unicode tables: exact for ASCII; outside ASCII it treats
/// control, white-space, format (common ones), private-use and non-character code points as unprintable.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private = matches!(u, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd);
    let nonchar = (0xfdd0..=0xfdef).contains(&u) || (u & 0xfffe) == 0xfffe;
    !(format || private || nonchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_needs_two_dots() {
        assert!(Version::parse_tag("1.2").is_err());
        assert!(Version::parse_tag("1.2-beta.3").is_ok());
        assert_eq!(Version::parse_tag("01.02.03").map(|v| v.minor()), Ok(2));
        assert_eq!(
            Version::parse_tag("1.2.3-rc.01"),
            Err(VersionError::SegmentStartsZero)
        );
        assert_eq!(
            Version::parse_tag("1.2.99999999999999999999"),
            Err(VersionError::OutOfRange)
        );
        assert!(Version::parse_tag("1-a.b.c").is_ok());
        assert!(Version::parse_tag("1-a.b").is_err());
        assert!(Version::parse_tag("V1.2.3").is_err());
        assert!(Version::parse_tag("1.2.3\n").is_err());
    }

    #[test]
    fn improper_quotes_like_go() {
        let e = Constraints::parse("*-*").unwrap_err();
        assert_eq!(e.to_string(), r#"improper constraint: "*-*""#);
        let e = Constraints::parse("a\tb\u{7f}\u{a0}é\"").unwrap_err();
        assert_eq!(e.to_string(), r#"improper constraint: "a\tb\x7f\u00a0é\"""#);
        assert_eq!(
            Constraints::parse("").unwrap_err(),
            ConstraintError::Improper(String::new())
        );
        assert_eq!(
            Constraints::parse("1x").unwrap_err(),
            ConstraintError::Parser
        );
    }

    #[test]
    fn masterminds_rewrite_range_cases() {
        let data = include_str!("../tests/data/masterminds-semver-cases.json");
        let doc: serde_json::Value = serde_json::from_str(data).unwrap();
        let cases: Vec<_> = doc["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["suite"] == "masterminds.rewriteRange")
            .collect();
        assert_eq!(cases.len(), 5);
        for c in cases {
            let input = c["input"].as_str().unwrap();
            assert_eq!(
                rewrite_range(input),
                c["expected"].as_str().unwrap(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn hyphen_rewrite_quirks() {
        assert_eq!(rewrite_range("1.2.3.4 - 5"), "1.>= 2.3.4, <= 5 ");
        assert_eq!(rewrite_range("x1 - 2"), ">= x1, <= 2 ");
        let e = Constraints::parse("1 - 2 foo").unwrap_err();
        assert_eq!(e.to_string(), r#"improper constraint: ">= 1, <= 2 foo""#);
    }

    #[test]
    fn hostile_ranges_stay_linear() {
        // Each start position used to rescan to the end of the run: quadratic on these inputs.
        for unit in ["1-a", "1", " ", "1.", "v1-"] {
            let range = format!("{}#", unit.repeat(50_000));
            assert!(Constraints::parse(&range).is_err());
        }
    }

    #[test]
    fn precedence() {
        let v = |s| Version::parse_loose(s).unwrap();
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for w in order.windows(2) {
            assert_eq!(v(w[0]).cmp_precedence(&v(w[1])), Ordering::Less, "{w:?}");
        }
        assert_eq!(v("1.0.0+a").cmp_precedence(&v("1.0.0+b")), Ordering::Equal);
    }

    /// Differential tests against the grammar written as regular expressions (the form in which upstream
    /// states it; the regex crate and Go's regexp share leftmost-first semantics). Go's `\s` is ASCII.
    mod grammar_oracle {
        use super::super::*;
        use proptest::prelude::*;
        use regex::Regex;

        const S: &str = r"[\t\n\x0c\r ]";
        const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

        fn cv() -> String {
            let n = r"[0-9|xX*]+";
            let id = r"[0-9A-Za-z\-]+";
            format!(r"v?({n})(\.{n})?(\.{n})?(-({id}(\.{id})*))?(\+({id}(\.{id})*))?")
        }

        /// Masterminds' loose version grammar.
        static LOOSE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
            let id = r"[0-9A-Za-z\-]+";
            Regex::new(&format!(
                r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-({id}(\.{id})*))?(\+({id}(\.{id})*))?$"
            ))
            .unwrap()
        });

        /// (whole-group validator, comparator finder, hyphen-range finder), compiled once.
        static ORACLES: std::sync::LazyLock<(Regex, Regex, Regex)> =
            std::sync::LazyLock::new(oracles);

        fn oracles() -> (Regex, Regex, Regex) {
            let cv = cv();
            let valid =
                format!(r"^({S}*({OPS}){S}*({cv}){S}*)((?:{S}+|,{S}*)({OPS}){S}*({cv}){S}*)*$");
            let find = format!(r"({OPS}){S}*({cv})");
            let range = format!(r"{S}*({cv}){S}+-{S}+({cv}){S}*");
            (
                Regex::new(&valid).unwrap(),
                Regex::new(&find).unwrap(),
                Regex::new(&range).unwrap(),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn groups_split_like_the_regexes(seg in "[0-9xX*|v.+, \t=<>!~^ab-]{0,20}") {
                let (valid, find, _) = &*ORACLES;
                let mine = split_group(&seg);
                prop_assert_eq!(mine.is_some(), valid.is_match(&seg));
                if let Some(pieces) = mine {
                    let theirs: Vec<(&str, &str)> = find
                        .captures_iter(&seg)
                        .map(|c| (c.get(1).map_or("", |m| m.as_str()), c.get(2).map_or("", |m| m.as_str())))
                        .collect();
                    prop_assert_eq!(pieces, theirs);
                }
            }

            #[test]
            fn versions_parse_like_the_regex(v in "[0-9v.+aZ-]{0,14}|[0-9]{18,22}\\.[0-9]\\.[0-9]") {
                let loose = &*LOOSE;
                let expected = loose.captures(&v).and_then(|c| {
                    let num = |i: usize| c.get(i).map_or(Some(0), |m| m.as_str().trim_start_matches('.').parse::<u64>().ok());
                    let pre = c.get(5).map_or("", |m| m.as_str());
                    let zero = pre.split('.').any(|p| p.len() > 1 && p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()));
                    let meta = c.get(8).map_or("", |m| m.as_str());
                    Some((num(1)?, num(2)?, num(3)?, pre, meta)).filter(|_| !zero)
                });
                let got = Version::parse_loose(&v).ok().map(|x| (x.major(), x.minor(), x.patch(), x.prerelease(), x.metadata()));
                prop_assert_eq!(got, expected);
            }

            #[test]
            fn hyphen_ranges_rewrite_like_the_regex(input in "[0-9xX*v.+ \t,<>=-]{0,24}") {
                let (_, _, range) = &*ORACLES;
                let mut expected = input.clone();
                for c in range.captures_iter(&input) {
                    let whole = c.get(0).map_or("", |m| m.as_str());
                    let (low, high) = (c.get(1).map_or("", |m| m.as_str()), c.get(11).map_or("", |m| m.as_str()));
                    expected = expected.replacen(whole, &format!(">= {low}, <= {high} "), 1);
                }
                prop_assert_eq!(rewrite_range(&input), expected);
            }
        }
    }
}
