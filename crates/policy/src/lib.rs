//! Tag selection engine: Masterminds-compatible semver, alphabetical and numerical policies, tag filters.
//!
//! Compile an ImagePolicy's `spec.policy` and `spec.filterTags` once with [`Policy::new`], then call
//! [`Policy::select`] with the repository's tags; it returns the chosen tag's original spelling. Error
//! messages (`Display`) are the exact texts Flux's image-reflector-controller puts into conditions.
//!
//! Tie rules (where Flux is deterministic we match it):
//! - semver: among versions of equal precedence (`1.0.0`, `v1.0.0`, `1.0.0+b`) the first in input order wins;
//! - numerical: among equal values (`1`, `1.0`) the last in input order wins; `NaN` replaces whatever came
//!   before it and is replaced by whatever comes after it;
//! - alphabetical: plain byte order, so ties are identical strings.
//!
//! With `filterTags`, Flux maps each extracted value to the last tag that produced it and then evaluates
//! the distinct values in Go map order, which is random. This crate evaluates them in the order of each
//! value's *first* appearance in the input. The rules above then decide between distinct values that
//! compare equal (for semver: the value seen first wins, so `1.0.0` beats `v1.0.0` when `1.0.0` came
//! first). A filter that keeps every tag unchanged therefore selects exactly what no filter selects, for
//! input without repeated tags (a registry's tag list never repeats one).

#![warn(missing_docs)]

mod filter;
mod numeric;
pub mod semver;

use std::borrow::Cow;
use std::collections::HashMap;

pub use filter::Filter;
pub use numeric::parse_go_float;
pub use semver::{ConstraintError, Constraints, Version, VersionError};

/// The `spec.policy` choice of an ImagePolicy, as written by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<'a> {
    /// `semver.range`: a Masterminds constraint.
    SemVer {
        /// The range text.
        range: &'a str,
    },
    /// `alphabetical.order`: `asc` (default) or `desc`, any case.
    Alphabetical {
        /// The order text as written (upper-cased before validation, like upstream).
        order: &'a str,
    },
    /// `numerical.order`: `asc` (default) or `desc`, any case.
    Numerical {
        /// The order text as written (upper-cased before validation, like upstream).
        order: &'a str,
    },
}

impl<'a> Choice<'a> {
    /// Applies upstream's precedence when several choices are set: semver, then alphabetical, then
    /// numerical. Arguments are the range/order of each choice that is present.
    pub fn from_spec(
        semver: Option<&'a str>,
        alphabetical: Option<&'a str>,
        numerical: Option<&'a str>,
    ) -> Option<Self> {
        match (semver, alphabetical, numerical) {
            (Some(range), _, _) => Some(Choice::SemVer { range }),
            (None, Some(order), _) => Some(Choice::Alphabetical { order }),
            (None, None, Some(order)) => Some(Choice::Numerical { order }),
            (None, None, None) => None,
        }
    }
}

/// The `spec.filterTags` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilterSpec<'a> {
    /// RE2-style regular expression, unanchored; empty matches every tag.
    pub pattern: &'a str,
    /// Go `Regexp.Expand` template; empty keeps the tag itself.
    pub extract: &'a str,
}

/// The ImagePolicy field an invalid-policy error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `spec.policy` has no choice at all.
    Policy,
    /// `spec.policy.semver.range`.
    SemVerRange,
    /// `spec.policy.alphabetical.order`.
    AlphabeticalOrder,
    /// `spec.policy.numerical.order`.
    NumericalOrder,
    /// `spec.filterTags.pattern`.
    FilterPattern,
}

impl Field {
    /// The field's path in the ImagePolicy object.
    pub fn path(self) -> &'static str {
        match self {
            Field::Policy => "spec.policy",
            Field::SemVerRange => "spec.policy.semver.range",
            Field::AlphabeticalOrder => "spec.policy.alphabetical.order",
            Field::NumericalOrder => "spec.policy.numerical.order",
            Field::FilterPattern => "spec.filterTags.pattern",
        }
    }
}

/// An invalid policy (Flux's `InvalidPolicy` stall). `Display` is upstream's condition message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No policy choice is set.
    #[error("invalid policy: given ImagePolicyChoice object is invalid")]
    NoChoice,
    /// The semver range does not parse.
    #[error("invalid policy: {error}")]
    Range {
        /// The range as given.
        range: String,
        /// Why it does not parse.
        error: ConstraintError,
    },
    /// The order is not `asc` or `desc`.
    #[error(
        "invalid policy: invalid order argument provided: '{order}', must be one of: ASC, DESC"
    )]
    Order {
        /// Which order field.
        field: Field,
        /// The order, upper-cased as upstream reports it.
        order: String,
    },
    /// The filter pattern does not compile.
    #[error("failed to filter tags: invalid regular expression pattern '{pattern}': {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// The compiler's reason.
        reason: String,
    },
}

impl PolicyError {
    /// The field at fault.
    pub fn field(&self) -> Field {
        match self {
            PolicyError::NoChoice => Field::Policy,
            PolicyError::Range { .. } => Field::SemVerRange,
            PolicyError::Order { field, .. } => *field,
            PolicyError::Pattern { .. } => Field::FilterPattern,
        }
    }
}

/// Why no tag was selected (Flux's `Failure` reason). `Display` is upstream's condition message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No tags at all, or the filter kept none.
    #[error("version list argument cannot be empty")]
    Empty,
    /// Semver: no tag is a version inside the range.
    #[error("unable to determine latest version from provided list")]
    NoMatch,
    /// Numerical: a candidate is not a number (one is enough to fail the policy).
    #[error("failed to parse invalid numeric value '{0}'")]
    NotNumeric(String),
}

#[derive(Debug, Clone)]
enum Rule {
    SemVer(Constraints),
    Alphabetical { descending: bool },
    Numerical { descending: bool },
}

/// A compiled ImagePolicy selection rule.
#[derive(Debug, Clone)]
pub struct Policy {
    rule: Rule,
    filter: Option<Filter>,
}

impl Policy {
    /// Compiles a policy. Errors come in upstream's order: the choice first, then the filter.
    pub fn new(
        choice: Option<Choice<'_>>,
        filter: Option<FilterSpec<'_>>,
    ) -> Result<Self, PolicyError> {
        let rule = match choice.ok_or(PolicyError::NoChoice)? {
            Choice::SemVer { range } => Rule::SemVer(Constraints::parse(range).map_err(
                |error| PolicyError::Range {
                    range: range.to_owned(),
                    error,
                },
            )?),
            Choice::Alphabetical { order } => Rule::Alphabetical {
                descending: parse_order(order, Field::AlphabeticalOrder)?,
            },
            Choice::Numerical { order } => Rule::Numerical {
                descending: parse_order(order, Field::NumericalOrder)?,
            },
        };
        let filter = filter
            .map(|f| Filter::new(f.pattern, f.extract))
            .transpose()?;
        Ok(Policy { rule, filter })
    }

    /// Picks the latest tag and returns its original spelling.
    pub fn select<'t, I>(&self, tags: I) -> Result<&'t str, SelectError>
    where
        I: IntoIterator<Item = &'t str>,
    {
        let Some(filter) = &self.filter else {
            return self.latest(tags.into_iter().map(|t| (t, t)));
        };
        match (&self.rule, filter.extracts()) {
            // Numerical must see every distinct key in first-appearance order (see `select_distinct`).
            (Rule::Numerical { .. }, _) => self.select_distinct(filter, tags),
            // Without a template the keys are the tags, and a repeated key is the same string: semver
            // (first of equals wins) and alphabetical pick the same tag without de-duplication.
            (_, false) => self.latest(
                tags.into_iter()
                    .filter(|t| filter.is_match(t))
                    .map(|t| (t, t)),
            ),
            (Rule::SemVer(c), true) => {
                let in_range = |key: &str| Version::parse_tag(key).is_ok_and(|v| c.check(&v));
                let greater = |key: &str, best: &str| match (
                    Version::parse_tag(key),
                    Version::parse_tag(best),
                ) {
                    (Ok(k), Ok(b)) => k.cmp_precedence(&b) == std::cmp::Ordering::Greater,
                    _ => false,
                };
                stream_extracted(filter, tags, in_range, greater)?.ok_or(SelectError::NoMatch)
            }
            (Rule::Alphabetical { descending }, true) => {
                let descending = *descending;
                let better =
                    |key: &str, best: &str| if descending { key < best } else { key > best };
                stream_extracted(filter, tags, |_| true, better)?.ok_or(SelectError::Empty)
            }
        }
    }

    /// The general filter path: de-duplicates keys (first appearance orders them, the last tag producing
    /// a key is its original), then applies the rule to the distinct keys.
    fn select_distinct<'t, I>(&self, filter: &Filter, tags: I) -> Result<&'t str, SelectError>
    where
        I: IntoIterator<Item = &'t str>,
    {
        // Distinct candidate keys: (first position, last original tag producing the key).
        let mut seen: HashMap<Cow<'t, str>, (usize, &'t str)> = HashMap::new();
        let mut locs = filter.locations();
        let mut buf = String::new();
        for (i, tag) in tags.into_iter().enumerate() {
            match filter.candidate(tag, &mut locs, &mut buf) {
                None => {}
                Some(false) => {
                    seen.entry(Cow::Borrowed(tag)).or_insert((i, tag)).1 = tag;
                }
                Some(true) => match seen.get_mut(buf.as_str()) {
                    Some(slot) => slot.1 = tag,
                    None => {
                        seen.insert(Cow::Owned(buf.clone()), (i, tag));
                    }
                },
            }
        }
        let mut candidates: Vec<(Cow<'t, str>, (usize, &'t str))> = seen.into_iter().collect();
        candidates.sort_unstable_by_key(|(_, (first, _))| *first);
        self.latest(candidates.iter().map(|(k, (_, orig))| (k.as_ref(), *orig)))
    }

    /// Runs the rule over (key, original) pairs in candidate order.
    fn latest<'k, 't>(
        &self,
        items: impl Iterator<Item = (&'k str, &'t str)>,
    ) -> Result<&'t str, SelectError> {
        match &self.rule {
            Rule::SemVer(c) => latest_semver(c, items),
            Rule::Alphabetical { descending } => latest_alphabetical(*descending, items),
            Rule::Numerical { descending } => latest_numerical(*descending, items),
        }
    }
}

/// Streams extracted keys without storing them, for rules where the winner is the first key that is
/// strictly `better` than all before it (semver, alphabetical). A later tag producing the winning key
/// becomes its original, as with upstream's overwriting map. A key seen before the winner cannot overtake
/// it on a repeat, since it was not better the first time. `Ok(None)`: keys existed but none was eligible.
fn stream_extracted<'t>(
    filter: &Filter,
    tags: impl IntoIterator<Item = &'t str>,
    eligible: impl Fn(&str) -> bool,
    better: impl Fn(&str, &str) -> bool,
) -> Result<Option<&'t str>, SelectError> {
    let mut locs = filter.locations();
    let mut key = String::new();
    let mut best_key = String::new();
    let mut best: Option<&'t str> = None;
    let mut any = false;
    for tag in tags {
        if filter.candidate(tag, &mut locs, &mut key).is_none() {
            continue;
        }
        any = true;
        if best.is_some() && key == best_key {
            best = Some(tag);
        } else if eligible(&key) && (best.is_none() || better(&key, &best_key)) {
            std::mem::swap(&mut best_key, &mut key);
            best = Some(tag);
        }
    }
    if any {
        Ok(best)
    } else {
        Err(SelectError::Empty)
    }
}

/// Upstream upper-cases the order (Go `strings.ToUpper`) and accepts "", "ASC", "DESC".
fn parse_order(order: &str, field: Field) -> Result<bool, PolicyError> {
    // Go maps each rune to its single upper-case rune; full mappings that expand (ß → SS) keep the rune.
    let upper: String = order
        .chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect();
    match upper.as_str() {
        "" | "ASC" => Ok(false),
        "DESC" => Ok(true),
        _ => Err(PolicyError::Order {
            field,
            order: upper,
        }),
    }
}

fn latest_semver<'k, 't>(
    c: &Constraints,
    items: impl Iterator<Item = (&'k str, &'t str)>,
) -> Result<&'t str, SelectError> {
    let mut any = false;
    let mut best: Option<(Version<'k>, &'t str)> = None;
    for (key, orig) in items {
        any = true;
        let Ok(v) = Version::parse_tag(key) else {
            continue;
        };
        if c.check(&v)
            && best
                .as_ref()
                .is_none_or(|(b, _)| v.cmp_precedence(b) == std::cmp::Ordering::Greater)
        {
            best = Some((v, orig));
        }
    }
    if !any {
        return Err(SelectError::Empty);
    }
    best.map(|(_, orig)| orig).ok_or(SelectError::NoMatch)
}

fn latest_alphabetical<'k, 't>(
    descending: bool,
    items: impl Iterator<Item = (&'k str, &'t str)>,
) -> Result<&'t str, SelectError> {
    // ASC takes the maximum, DESC the minimum, in byte order.
    let best = if descending {
        items.min_by(|a, b| a.0.cmp(b.0))
    } else {
        items.max_by(|a, b| a.0.cmp(b.0))
    };
    best.map(|(_, orig)| orig).ok_or(SelectError::Empty)
}

fn latest_numerical<'k, 't>(
    descending: bool,
    items: impl Iterator<Item = (&'k str, &'t str)>,
) -> Result<&'t str, SelectError> {
    let mut latest: Option<(f64, &'t str)> = None;
    for (key, orig) in items {
        let value = parse_go_float(key).ok_or_else(|| SelectError::NotNumeric(key.to_owned()))?;
        if let Some((previous, _)) = latest {
            // Written as upstream's skip test so NaN behaves the same (never skipped).
            if (!descending && value < previous) || (descending && value > previous) {
                continue;
            }
        }
        latest = Some((value, orig));
    }
    latest.map(|(_, orig)| orig).ok_or(SelectError::Empty)
}
