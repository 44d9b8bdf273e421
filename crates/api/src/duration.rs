//! Go `time.Duration` strings, as used by `spec.interval` and `spec.timeout`.
//!
//! The CRD patterns only admit `[0-9]+(\.[0-9]+)?` numbers with the units `ms`, `s`, `m` and `h`,
//! but objects can reach the controllers through paths that skip validation (older CRDs, tests),
//! so the parser accepts everything Go's `time.ParseDuration` accepts that is not negative.

use std::time::Duration;

/// CRD pattern of `interval` fields (Go duration, units `ms`, `s`, `m`, `h`).
pub const INTERVAL_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// CRD pattern of ImageRepository/GitRepository `timeout` fields (no `h` unit).
pub const TIMEOUT_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$";

/// Largest duration Go can represent (`math.MaxInt64` nanoseconds).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a duration string was rejected; messages follow Go's `time.ParseDuration` wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is not a duration at all.
    #[error("time: invalid duration \"{0}\"")]
    Invalid(String),
    /// A number without a unit, e.g. `"10"`.
    #[error("time: missing unit in duration \"{0}\"")]
    MissingUnit(String),
    /// A unit Go does not know, e.g. `"1d"`.
    #[error("time: unknown unit \"{unit}\" in duration \"{input}\"")]
    UnknownUnit {
        /// The offending unit.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// A negative duration, which no interval or timeout may be.
    #[error("negative duration \"{0}\" is not allowed")]
    Negative(String),
    /// More than Go's maximum of about 292 years.
    #[error("time: invalid duration \"{0}\" (overflows)")]
    Overflow(String),
}

/// Nanoseconds per unit, for every unit Go accepts.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a Go duration string such as `1m0s`, `1.5h` or `500ms`.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let mut rest = input;
    if let Some(r) = rest.strip_prefix('-') {
        // "-0" is zero in Go; any other negative value is refused.
        return match parse_go_duration(r) {
            Ok(d) if d.is_zero() => Ok(d),
            Ok(_) => Err(DurationError::Negative(input.to_string())),
            Err(_) => Err(invalid()),
        };
    }
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        // Go requires at least one digit on either side of the dot.
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let (unit, after) = after.split_at(unit_len);
        let per_unit = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
            input: input.to_string(),
        })?;
        let overflow = || DurationError::Overflow(input.to_string());
        let whole: u128 = if int_digits.is_empty() {
            0
        } else if int_digits.len() > 30 {
            return Err(overflow());
        } else {
            int_digits.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(per_unit).ok_or_else(overflow)?;
        // Digits beyond 18 barely matter at nanosecond resolution (largest unit is 3.6e12 ns),
        // so they are dropped, as Go does. The fraction is truncated in exact integer arithmetic;
        // Go goes through float64 and can differ by 1ns on long fractions.
        let frac = &frac_digits[..frac_digits.len().min(18)];
        if !frac.is_empty() {
            let numerator: u128 = frac.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(u32::try_from(frac.len()).map_err(|_| invalid())?);
            nanos += numerator * per_unit / scale;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > MAX_NANOS {
            return Err(overflow());
        }
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    let sub = u32::try_from(total % 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(secs, sub))
}

/// Formats a duration the way Go's `Duration.String()` does (`1m0s`, `1.5s`, `250ms`, `0s`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        // Below one second Go picks the largest unit that keeps an integer part.
        let (unit_nanos, unit) = if nanos < 1_000 {
            (1, "ns")
        } else if nanos < 1_000_000 {
            (1_000, "\u{00b5}s")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", fixed(nanos, unit_nanos));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub_nanos = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs_with_frac = (total_secs % 60) * 1_000_000_000 + sub_nanos;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fixed(secs_with_frac, 1_000_000_000)));
    out
}

/// `value / unit` as a decimal with trailing zeros (and a trailing dot) removed.
fn fixed(value: u128, unit: u128) -> String {
    let int = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return int.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_pattern_forms() {
        let cases: &[(&str, u64)] = &[
            ("1m0s", 60_000_000_000),
            ("1m", 60_000_000_000),
            ("5m", 300_000_000_000),
            ("0s", 0),
            ("0", 0),
            ("10s", 10_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("500ms", 500_000_000),
            ("0.5s", 500_000_000),
            ("1.001s", 1_001_000_000),
            ("2h45m30.5s", 9_930_500_000_000),
            ("1m1m", 120_000_000_000),
            ("3ns", 3),
            ("4us", 4_000),
            ("4\u{00b5}s", 4_000),
            ("4\u{03bc}s", 4_000),
            ("+5s", 5_000_000_000),
            ("-0", 0),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("0.333333333333333333333h", 1_199_999_999_999),
        ];
        for (input, nanos) in cases {
            assert_eq!(ok(input), Duration::from_nanos(*nanos), "{input}");
        }
    }

    #[test]
    fn rejects_bad_input_with_go_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "time: invalid duration \"\""),
            ("1", "time: missing unit in duration \"1\""),
            ("1d", "time: unknown unit \"d\" in duration \"1d\""),
            ("s", "time: invalid duration \"s\""),
            (".s", "time: invalid duration \".s\""),
            ("1m x", "time: unknown unit \"m x\" in duration \"1m x\""),
            ("-1s", "negative duration \"-1s\" is not allowed"),
            ("--1s", "time: invalid duration \"--1s\""),
            (
                "9999999999h",
                "time: invalid duration \"9999999999h\" (overflows)",
            ),
            (
                "1000000000000000000000000000000000000000s",
                "time: invalid duration \"1000000000000000000000000000000000000000s\" (overflows)",
            ),
        ];
        for (input, msg) in cases {
            let err = parse_go_duration(input).expect_err(input);
            assert_eq!(err.to_string(), *msg, "{input}");
        }
    }

    #[test]
    fn max_duration_is_accepted() {
        assert_eq!(ok("2562047h47m16.854775807s").as_nanos(), MAX_NANOS);
        assert!(parse_go_duration("2562047h47m16.854775808s").is_err());
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5\u{00b5}s"),
            (250_000_000, "250ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (5_400_000_000_000, "1h30m0s"),
            (9_930_500_000_000, "2h45m30.5s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format_go_duration(Duration::from_nanos(*nanos)), *text);
        }
    }

    #[test]
    fn format_then_parse_is_identity() {
        for nanos in [1u64, 999, 1_000_001, 59_999_999_999, 86_400_000_000_123] {
            let d = Duration::from_nanos(nanos);
            assert_eq!(ok(&format_go_duration(d)), d);
        }
    }

    proptest::proptest! {
        #[test]
        fn format_parse_round_trip(nanos in 0u64..=i64::MAX as u64) {
            let d = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn pattern_strings_parse(parts in proptest::collection::vec(
            (0u32..100_000, proptest::option::of(0u32..1000), 0usize..4), 1..4)
        ) {
            // Strings of the CRD interval pattern always parse, to the sum of their parts.
            let units = [("ms", 1_000_000u128), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)];
            let mut text = String::new();
            let mut expected = 0u128;
            for (int, frac, unit) in parts {
                let (name, nanos) = units[unit];
                text.push_str(&int.to_string());
                expected += u128::from(int) * nanos;
                if let Some(f) = frac {
                    let digits = format!("{f:03}");
                    text.push('.');
                    text.push_str(&digits);
                    expected += u128::from(f) * nanos / 1000;
                }
                text.push_str(name);
            }
            proptest::prop_assert!(regex_lite_match(&text));
            proptest::prop_assert_eq!(parse_go_duration(&text).map(|d| d.as_nanos()), Ok(expected));
        }
    }

    /// Whether `s` matches INTERVAL_PATTERN, checked by hand to avoid a regex dependency here.
    fn regex_lite_match(s: &str) -> bool {
        let mut rest = s;
        while !rest.is_empty() {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            rest = &rest[n..];
            if let Some(r) = rest.strip_prefix('.') {
                let m = r.bytes().take_while(u8::is_ascii_digit).count();
                if m == 0 {
                    return false;
                }
                rest = &r[m..];
            }
            rest = match ["ms", "s", "m", "h"]
                .iter()
                .find_map(|u| rest.strip_prefix(u))
            {
                Some(r) => r,
                None => return false,
            };
        }
        !s.is_empty()
    }
}
