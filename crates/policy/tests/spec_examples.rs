//! The behaviours the reflector notes (§4) call out as verified against upstream, case by case. The
//! acceptance data announces these as "derived" cases but does not contain them, so they live here.

// Test code: a failed unwrap is a test failure with its location.
#![allow(clippy::unwrap_used)]

use policy::{Choice, FilterSpec, Policy, PolicyError, SelectError};

fn pick(
    choice: Choice<'_>,
    filter: Option<FilterSpec<'_>>,
    tags: &[&str],
) -> Result<String, String> {
    let policy = Policy::new(Some(choice), filter).map_err(|e| e.to_string())?;
    policy
        .select(tags.iter().copied())
        .map(str::to_owned)
        .map_err(|e| e.to_string())
}

fn semver(range: &str, tags: &[&str]) -> Result<String, String> {
    pick(Choice::SemVer { range }, None, tags)
}

fn matches(range: &str, tag: &str) -> bool {
    semver(range, &[tag]).is_ok()
}

#[test]
fn tag_parsing() {
    for version in [
        "1.2.3",
        "v1.2.3",
        "01.02.03",
        "2025.02.03",
        "1.2-beta.3",
        "1.2.3-rc.1+build.5",
    ] {
        assert!(matches("*-0", version), "{version}");
    }
    for not_version in [
        "1.2",
        "v1.2",
        "1",
        "1.2.3.4",
        "V1.2.3",
        "1.2.x",
        "latest",
        "1.2.3-rc.01",
        " 1.2.3",
    ] {
        assert!(!matches(">=0.0.0-0", not_version), "{not_version}");
    }
}

#[test]
fn operator_semantics() {
    let table: &[(&str, &[&str], &[&str])] = &[
        ("1.2", &["1.2.0", "1.2.9"], &["1.3.0", "1.1.9"]),
        ("1", &["1.0.0", "1.9.9"], &["2.0.0"]),
        ("~1.2.3", &["1.2.3", "1.2.9"], &["1.3.0", "1.2.2"]),
        ("~1", &["1.0.0", "1.9.0"], &["2.0.0"]),
        ("~0.0.0", &["0.0.0", "9.9.9"], &[]),
        ("^1.2.3", &["1.2.3", "1.9.0"], &["2.0.0", "1.2.2"]),
        ("^0.2.3", &["0.2.3", "0.2.9"], &["0.3.0"]),
        ("^0.0.3", &["0.0.3"], &["0.0.4", "0.0.2"]),
        ("^0.0", &["0.0.0", "0.0.9"], &["0.1.0"]),
        ("^0", &["0.0.0", "0.9.0"], &["1.0.0"]),
        ("^1.x", &["1.0.0", "1.9.9"], &["2.0.0"]),
        (">1.2", &["1.3.0"], &["1.2.9"]),
        (">11", &["12.0.0"], &["11.9.9"]),
        ("<=1.2", &["1.2.9"], &["1.3.0"]),
        ("<1.2", &["1.1.9"], &["1.2.0"]),
        ("!=1.2", &["1.3.0", "1.1.0"], &["1.2.0", "1.2.7"]),
        ("=> 1.2", &["1.2.0", "3.0.0"], &["1.1.9"]),
        ("=< 1.2", &["1.2.5"], &["1.3.0"]),
        ("~> 1.2", &["1.2.5"], &["1.3.0"]),
        ("1.2 - 1.4.5", &["1.2.0", "1.4.5"], &["1.4.6", "1.1.0"]),
        (">=1.0.0 <2.0.0", &["1.5.0"], &["2.0.0"]),
        (">=1.0.0, <2.0.0", &["1.5.0"], &["2.0.0"]),
        ("1.x || >=2.5.0", &["1.1.0", "2.5.0"], &["2.4.0"]),
        ("v1.0.x", &["1.0.1", "v1.0.1"], &["1.1.0"]),
        ("*", &["1.2.3"], &["1.2.3-rc.1"]),
        (">=0", &["0.0.0"], &["1.0.0-rc.1"]),
    ];
    for (range, yes, no) in table {
        for tag in *yes {
            assert!(matches(range, tag), "{range} should match {tag}");
        }
        for tag in *no {
            assert!(!matches(range, tag), "{range} should not match {tag}");
        }
    }
}

#[test]
fn prereleases_need_a_prerelease_in_the_same_and_group() {
    assert!(!matches(">=1.0.0", "1.3.0-beta"));
    assert!(matches(">=1.2.3-0", "1.3.0-beta"));
    assert!(matches("^1.x-0", "1.5.0-rc.1"));
    // The other OR-group names a pre-release, this one does not.
    assert!(!matches(">=1.0.0 <2.0.0 || >=3.0.0-0", "1.5.0-rc.1"));
    assert!(matches(">=1.0.0 <2.0.0 || >=3.0.0-0", "3.1.0-rc.1"));
}

#[test]
fn semver_ties_keep_the_first_spelling() {
    assert_eq!(
        semver("1.0.x", &["v1.0.0", "1.0.0", "1.0.0+b"]).unwrap(),
        "v1.0.0"
    );
    assert_eq!(
        semver("1.0.x", &["1.0.0+b", "v1.0.0", "1.0.0"]).unwrap(),
        "1.0.0+b"
    );
    assert_eq!(
        semver("*", &["1.0.0-rc.2", "1.0.0-rc.10"]),
        Err(SelectError::NoMatch.to_string())
    );
    assert_eq!(
        semver("*-0", &["1.0.0-rc.2", "1.0.0-rc.10"]).unwrap(),
        "1.0.0-rc.10"
    );
    assert_eq!(
        semver("*-0", &["1.0.0-alpha.1", "1.0.0-alpha", "1.0.0-beta"]).unwrap(),
        "1.0.0-beta"
    );
}

#[test]
fn error_texts() {
    assert_eq!(
        semver("1.x", &[]),
        Err("version list argument cannot be empty".into())
    );
    assert_eq!(
        semver("1.x", &["latest"]),
        Err("unable to determine latest version from provided list".into())
    );
    assert_eq!(
        semver("", &["1.0.0"]),
        Err(r#"invalid policy: improper constraint: """#.into())
    );
    assert_eq!(
        semver("1.0.0 -", &[]),
        Err(r#"invalid policy: improper constraint: "1.0.0 -""#.into())
    );
    assert_eq!(
        semver("1.2.3-01", &[]),
        Err("invalid policy: constraint parser error".into())
    );
    assert_eq!(
        pick(Choice::Alphabetical { order: "Descending" }, None, &["a"]),
        Err("invalid policy: invalid order argument provided: 'DESCENDING', must be one of: ASC, DESC".into())
    );
    assert_eq!(
        Policy::new(None, None).unwrap_err().to_string(),
        "invalid policy: given ImagePolicyChoice object is invalid"
    );
    // The choice is validated before the filter, like upstream.
    let both = Policy::new(
        Some(Choice::SemVer { range: "x1" }),
        Some(FilterSpec {
            pattern: "(",
            extract: "",
        }),
    );
    assert!(matches!(both, Err(PolicyError::Range { .. })));
}

#[test]
fn alphabetical_is_byte_order() {
    let asc = |tags: &[&str]| pick(Choice::Alphabetical { order: "asc" }, None, tags).unwrap();
    let desc = |tags: &[&str]| pick(Choice::Alphabetical { order: "DeSc" }, None, tags).unwrap();
    assert_eq!(asc(&["10", "9"]), "9");
    assert_eq!(asc(&["Z", "_", "a"]), "a");
    assert_eq!(desc(&["Z", "_", "a"]), "Z");
    assert_eq!(asc(&["b", "ab", "abc"]), "b");
}

#[test]
fn numerical_follows_go() {
    let num = |order, tags: &[&str]| pick(Choice::Numerical { order }, None, tags);
    assert_eq!(num("asc", &["1.0", "1"]).unwrap(), "1");
    assert_eq!(num("desc", &["1.0", "1"]).unwrap(), "1");
    assert_eq!(num("asc", &["5", "NaN", "3"]).unwrap(), "3");
    assert_eq!(num("asc", &["NaN", "5", "3"]).unwrap(), "5");
    assert_eq!(num("asc", &["1_000", "999", "1e3"]).unwrap(), "1e3");
    assert_eq!(num("desc", &["-inf", "0x1p-2", ".5"]).unwrap(), "-inf");
    assert_eq!(
        num("asc", &["1", "latest", "x"]),
        Err("failed to parse invalid numeric value 'latest'".into())
    );
    assert_eq!(
        num("asc", &["1", "1e400"]),
        Err("failed to parse invalid numeric value '1e400'".into())
    );
    assert_eq!(num("asc", &["1e-400", "-1"]).unwrap(), "1e-400");
}

#[test]
fn filters() {
    let any = Choice::SemVer { range: "*" };
    let asc = Choice::Numerical { order: "asc" };
    type Case<'a> = (
        &'a str,
        Choice<'a>,
        &'a str,
        &'a str,
        &'a [&'a str],
        Result<&'a str, &'a str>,
    );
    let table: &[Case<'_>] = &[
        (
            "unanchored",
            any,
            "1.0",
            "",
            &["21.0.0", "2.1.0", "3.0.0"],
            Ok("21.0.0"),
        ),
        // In database (descending) order the last, smallest tag wins a shared value.
        (
            "same value: last tag",
            asc,
            r"-(\d+)$",
            "$1",
            &["b-7", "a-7", "c-3"],
            Ok("a-7"),
        ),
        // Distinct values that compare equal: the value seen first wins for semver...
        (
            "semver tie: first",
            any,
            r"^(?:x-)?(.*)$",
            "$1",
            &["v1.0.0", "x-1.0.0"],
            Ok("v1.0.0"),
        ),
        (
            "semver tie: first'",
            any,
            r"^(?:x-)?(.*)$",
            "$1",
            &["x-1.0.0", "v1.0.0"],
            Ok("x-1.0.0"),
        ),
        // ...and the one seen last for numerical, each value counted at its first appearance.
        (
            "numerical tie: last",
            asc,
            "n(.*)",
            "$1",
            &["n1.0", "n1", "n1.0"],
            Ok("n1"),
        ),
        (
            "nothing kept",
            any,
            "^nothing",
            "",
            &["1.0.0"],
            Err("version list argument cannot be empty"),
        ),
        (
            "empty pattern",
            Choice::Alphabetical { order: "" },
            "",
            "",
            &["a", "b"],
            Ok("b"),
        ),
        (
            "empty key",
            asc,
            "x",
            "$9",
            &["x1"],
            Err("failed to parse invalid numeric value ''"),
        ),
    ];
    for (name, choice, pattern, extract, tags, expected) in table {
        let got = pick(*choice, Some(FilterSpec { pattern, extract }), tags);
        assert_eq!(
            got,
            expected.map(str::to_owned).map_err(str::to_owned),
            "{name}"
        );
    }
    assert!(
        pick(
            any,
            Some(FilterSpec {
                pattern: "[=",
                extract: ""
            }),
            &["1.0.0"]
        )
        .unwrap_err()
        .starts_with(
            "failed to filter tags: invalid regular expression pattern '[=': error parsing regexp: "
        )
    );
}
