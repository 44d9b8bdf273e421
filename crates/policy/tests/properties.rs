//! Property tests: order independence up to the documented tie rules, asc/desc symmetry, no panics.

// Test code: a failed unwrap is a test failure with its location.
#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;

use policy::{Choice, Constraints, Filter, FilterSpec, Policy, Version, parse_go_float};
use proptest::prelude::*;
use proptest::sample::Index;

fn semver_tag() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        0u64..4,
        0u64..4,
        0u64..4,
        prop::option::of(prop::sample::select(vec![
            "rc.1", "rc.2", "rc.10", "alpha", "0", "beta.1",
        ])),
        prop::option::of(prop::sample::select(vec!["b1", "b2"])),
    )
        .prop_map(|(v, x, y, z, pre, meta)| {
            let mut s = format!("{}{x}.{y}.{z}", if v { "v" } else { "" });
            if let Some(p) = pre {
                s = format!("{s}-{p}");
            }
            if let Some(m) = meta {
                s = format!("{s}+{m}");
            }
            s
        })
}

/// Semver-looking tags mixed with tags that are not versions.
fn tag_list() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            4 => semver_tag(),
            1 => "[a-z0-9.-]{0,8}",
        ],
        0..24,
    )
}

fn ranges() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "*",
        ">=1.0.0",
        "<2",
        "~1.2",
        "^1.x",
        "1.x || 3.x",
        ">=0.0.0-0",
        "!=2.1.0",
        "1 - 2.2",
        ">1.1, <3.0.0-0",
    ])
}

/// Applies a permutation given as swap indices (Fisher-Yates driven by proptest).
fn permute<T: Clone>(items: &[T], swaps: &[Index]) -> Vec<T> {
    let mut out = items.to_vec();
    for (i, s) in swaps.iter().enumerate().take(out.len()) {
        let j = i + s.index(out.len() - i);
        out.swap(i, j);
    }
    out
}

fn select(policy: &Policy, tags: &[String]) -> Result<String, String> {
    policy
        .select(tags.iter().map(String::as_str))
        .map(str::to_owned)
        .map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Semver: the chosen precedence does not depend on order; among equal versions the first wins.
    #[test]
    fn semver_permutation(tags in tag_list(), swaps in prop::collection::vec(any::<Index>(), 24), range in ranges()) {
        let policy = Policy::new(Some(Choice::SemVer { range }), None).unwrap();
        let permuted = permute(&tags, &swaps);
        let a = select(&policy, &tags);
        let b = select(&policy, &permuted);
        match (&a, &b) {
            (Ok(a), Ok(b)) => {
                let (va, vb) = (Version::parse_tag(a).unwrap(), Version::parse_tag(b).unwrap());
                prop_assert_eq!(va.cmp_precedence(&vb), Ordering::Equal);
                let constraints = Constraints::parse(range).unwrap();
                let first_equal = permuted.iter().find(|t| {
                    Version::parse_tag(t).is_ok_and(|v| constraints.check(&v) && v.cmp_precedence(&vb) == Ordering::Equal)
                });
                prop_assert_eq!(Some(b), first_equal);
            }
            _ => prop_assert_eq!(a, b),
        }
    }

    /// Numerical (NaN excluded): the chosen value does not depend on order; among equal values the last wins.
    #[test]
    fn numerical_permutation(
        values in prop::collection::vec(prop_oneof![
            (-5i32..5).prop_map(|v| v.to_string()),
            (-5i32..5).prop_map(|v| format!("{v}.0")),
            (-5i32..5).prop_map(|v| format!("{v}e0")),
            Just("inf".to_owned()), Just("-Infinity".to_owned()), Just("1_0".to_owned()),
        ], 1..16),
        swaps in prop::collection::vec(any::<Index>(), 16),
        desc in any::<bool>(),
    ) {
        let order = if desc { "desc" } else { "asc" };
        let policy = Policy::new(Some(Choice::Numerical { order }), None).unwrap();
        let permuted = permute(&values, &swaps);
        let a = select(&policy, &values).unwrap();
        let b = select(&policy, &permuted).unwrap();
        let (va, vb) = (parse_go_float(&a).unwrap(), parse_go_float(&b).unwrap());
        prop_assert_eq!(va, vb);
        let last_equal = permuted.iter().rev().find(|t| parse_go_float(t) == Some(vb));
        prop_assert_eq!(Some(&b), last_equal);
    }

    /// Alphabetical: fully order independent.
    #[test]
    fn alphabetical_permutation(tags in prop::collection::vec("[ -~]{0,6}", 0..20), swaps in prop::collection::vec(any::<Index>(), 20), desc in any::<bool>()) {
        let order = if desc { "DESC" } else { "" };
        let policy = Policy::new(Some(Choice::Alphabetical { order }), None).unwrap();
        prop_assert_eq!(select(&policy, &tags), select(&policy, &permute(&tags, &swaps)));
    }

    /// Asc and desc are mirror images: negating every (distinct) number swaps the choice.
    #[test]
    fn numerical_mirror(values in prop::collection::btree_set(-1000i64..1000, 1..20)) {
        let tags: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let negated: Vec<String> = values.iter().map(|v| (-v).to_string()).collect();
        let asc = Policy::new(Some(Choice::Numerical { order: "asc" }), None).unwrap();
        let desc = Policy::new(Some(Choice::Numerical { order: "desc" }), None).unwrap();
        let a: i64 = select(&asc, &tags).unwrap().parse().unwrap();
        let d: i64 = select(&desc, &negated).unwrap().parse().unwrap();
        prop_assert_eq!(a, -d);
    }

    /// Asc and desc are mirror images: complementing every letter of same-length words swaps the choice.
    #[test]
    fn alphabetical_mirror(words in prop::collection::btree_set("[a-z]{4}", 1..20)) {
        let complement = |w: &str| w.bytes().map(|b| char::from(b'a' + b'z' - b)).collect::<String>();
        let tags: Vec<String> = words.iter().cloned().collect();
        let mirrored: Vec<String> = words.iter().map(|w| complement(w)).collect();
        let asc = Policy::new(Some(Choice::Alphabetical { order: "asc" }), None).unwrap();
        let desc = Policy::new(Some(Choice::Alphabetical { order: "desc" }), None).unwrap();
        prop_assert_eq!(complement(&select(&asc, &tags).unwrap()), select(&desc, &mirrored).unwrap());
    }

    /// A filter that keeps every tag unchanged selects what no filter selects (also with duplicates).
    #[test]
    fn identity_filter_is_transparent(tags in tag_list(), range in ranges()) {
        let plain = Policy::new(Some(Choice::SemVer { range }), None).unwrap();
        let filtered = Policy::new(Some(Choice::SemVer { range }), Some(FilterSpec { pattern: "", extract: "" })).unwrap();
        let dup: Vec<String> = tags.iter().chain(tags.iter()).cloned().collect();
        prop_assert_eq!(select(&plain, &tags), select(&filtered, &dup));
    }

    /// Extracting the whole tag (`$0`) goes through de-duplication and must not change the choice either.
    #[test]
    fn whole_tag_extract_is_transparent(tags in tag_list(), range in ranges(), desc in any::<bool>()) {
        let order = if desc { "desc" } else { "asc" };
        let whole = Some(FilterSpec { pattern: "^.*$", extract: "$0" });
        for choice in [Choice::SemVer { range }, Choice::Alphabetical { order }] {
            let plain = Policy::new(Some(choice), None).unwrap();
            let filtered = Policy::new(Some(choice), whole).unwrap();
            prop_assert_eq!(select(&plain, &tags), select(&filtered, &tags));
        }
        let numbers: Vec<String> = tags.iter().map(|t| t.len().to_string()).collect();
        let plain = Policy::new(Some(Choice::Numerical { order }), None).unwrap();
        let filtered = Policy::new(Some(Choice::Numerical { order }), whole).unwrap();
        let distinct: std::collections::BTreeSet<&String> = numbers.iter().collect();
        if distinct.len() == numbers.len() {
            prop_assert_eq!(select(&plain, &numbers), select(&filtered, &numbers));
        }
    }

    /// With an extract template the choice is: de-duplicate keys (first appearance orders them, the last
    /// tag producing a key is its original), apply the policy to the keys, map back. Checked against a
    /// straightforward model of exactly that rule.
    #[test]
    fn extract_follows_the_documented_rule(
        tags in prop::collection::vec("[abv]?-?[0-2]\\.[0-2]\\.[0-2]|[ab]-[0-9]{1,2}(\\.0)?", 0..24),
        range in ranges(),
        desc in any::<bool>(),
    ) {
        let order = if desc { "desc" } else { "asc" };
        let versions = FilterSpec { pattern: r"^[ab]?-?(?P<key>.*)$", extract: "v$key" };
        let numbers = FilterSpec { pattern: r"^[ab]-(?P<key>[0-9.]*)$", extract: "$key" };
        let cases = [
            (Choice::SemVer { range }, versions),
            (Choice::Alphabetical { order }, versions),
            (Choice::Numerical { order }, numbers),
        ];
        for (choice, spec) in cases {
            // The model: (key, last original) in order of each key's first appearance.
            let filter = Filter::new(spec.pattern, spec.extract).unwrap();
            let mut model: Vec<(String, String)> = Vec::new();
            for tag in &tags {
                let Some(key) = filter.extract(tag) else { continue };
                match model.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = tag.clone(),
                    None => model.push((key, tag.clone())),
                }
            }
            let keys: Vec<String> = model.iter().map(|(k, _)| k.clone()).collect();
            let on_keys = select(&Policy::new(Some(choice), None).unwrap(), &keys);
            let expected = on_keys.map(|k| model[keys.iter().position(|x| *x == k).unwrap()].1.clone());
            let got = select(&Policy::new(Some(choice), Some(spec)).unwrap(), &tags);
            prop_assert_eq!(got, expected, "{:?}", choice);
        }
    }

    /// Versions order totally and consistently.
    #[test]
    fn precedence_is_a_total_order(a in semver_tag(), b in semver_tag(), c in semver_tag()) {
        let (a, b, c) = (Version::parse_tag(&a).unwrap(), Version::parse_tag(&b).unwrap(), Version::parse_tag(&c).unwrap());
        prop_assert_eq!(a.cmp_precedence(&b), b.cmp_precedence(&a).reverse());
        if a.cmp_precedence(&b) != Ordering::Greater && b.cmp_precedence(&c) != Ordering::Greater {
            prop_assert_ne!(a.cmp_precedence(&c), Ordering::Greater);
        }
    }

    /// Plain decimals parse to what Rust parses.
    #[test]
    fn decimals_match_rust(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let s = format!("{x:e}");
        prop_assert_eq!(parse_go_float(&s), Some(x));
        prop_assert_eq!(parse_go_float(&x.to_string()), Some(x));
    }

    /// Parsing anything never panics.
    #[test]
    fn parsing_never_panics(s in "\\PC{0,40}", t in "[0-9vVxX*.|^~<>=!, -+a-z]{0,40}") {
        for text in [&s, &t] {
            let _ = Constraints::parse(text).map(|c| Version::parse_tag("1.2.3").map(|v| c.check(&v)));
            let _ = Version::parse_tag(text);
            let _ = Version::parse_loose(text);
            let _ = parse_go_float(text);
            let _ = Filter::new(text, text).map(|f| f.extract(text));
            let _ = Policy::new(Some(Choice::Numerical { order: text }), None);
            let _ = Policy::new(Some(Choice::Alphabetical { order: text }), None);
        }
    }
}
