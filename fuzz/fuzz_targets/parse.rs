//! Constraint, version and policy parsing must never panic, and parsed values must behave sanely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{Choice, Constraints, FilterSpec, Policy, Version, parse_go_float};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Split the input into a range/pattern and some tags.
    let mut lines = text.split('\n');
    let head = lines.next().unwrap_or_default();
    let tags: Vec<&str> = lines.collect();

    if let Ok(c) = Constraints::parse(head) {
        for t in &tags {
            if let Ok(v) = Version::parse_tag(t) {
                let _ = c.check(&v);
                // Precedence is reflexive and antisymmetric.
                assert_eq!(v.cmp_precedence(&v), std::cmp::Ordering::Equal);
            }
        }
    }
    for t in std::iter::once(head).chain(tags.iter().copied()) {
        if let Ok(v) = Version::parse_loose(t) {
            assert_eq!(v.original(), t);
        }
        let _ = Version::parse_tag(t);
        let _ = parse_go_float(t);
    }
    let choices = [
        Choice::SemVer { range: head },
        Choice::Alphabetical { order: head },
        Choice::Numerical { order: head },
    ];
    for choice in choices {
        if let Ok(p) = Policy::new(Some(choice), None) {
            let _ = p.select(tags.iter().copied());
        }
    }
    let (pattern, extract) = head.split_once('\t').unwrap_or((head, "$1"));
    if let Ok(p) = Policy::new(Some(Choice::SemVer { range: "*" }), Some(FilterSpec { pattern, extract })) {
        if let Ok(t) = p.select(tags.iter().copied()) {
            assert!(tags.contains(&t));
        }
    }
});
