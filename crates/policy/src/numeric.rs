//! Go's `strconv.ParseFloat(s, 64)` grammar, which decides which tags the numerical policy accepts.
//!
//! Accepted: optional sign; decimal digits with at most one `.` and an optional `e` exponent; `_` only
//! between digits; hexadecimal mantissas (`0x1.8p3`) only with a `p` exponent; `inf`, `infinity` (signed or
//! not) and `nan` (unsigned), case-insensitive. Overflow to infinity is an error; underflow gives zero.

/// Parses `s` like Go's `strconv.ParseFloat(s, 64)`; `None` where Go returns an error.
pub fn parse_go_float(s: &str) -> Option<f64> {
    if let Some(v) = special(s) {
        return v;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'+') => {
            i += 1;
            false
        }
        Some(b'-') => {
            i += 1;
            true
        }
        _ => false,
    };
    let hex = i + 2 < b.len() && b[i] == b'0' && (b[i + 1] | 0x20) == b'x';
    if hex {
        i += 2;
    }
    let mant_start = i;
    let mut underscores = false;
    let mut saw_dot = false;
    let mut saw_digits = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'_' => underscores = true,
            b'.' if !saw_dot => saw_dot = true,
            b'0'..=b'9' => saw_digits = true,
            _ if hex && matches!(c | 0x20, b'a'..=b'f') => saw_digits = true,
            _ => break,
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    let mant_end = i;
    let exp_char = if hex { b'p' } else { b'e' };
    let mut exp_range = None;
    if b.get(i).is_some_and(|&c| c | 0x20 == exp_char) {
        i += 1;
        let sign_at = i;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while b.get(i).is_some_and(|&c| c.is_ascii_digit() || c == b'_') {
            underscores |= b[i] == b'_';
            i += 1;
        }
        exp_range = Some((sign_at, i));
    } else if hex {
        return None;
    }
    if i != b.len() || (underscores && !underscore_ok(&s[..i])) {
        return None;
    }
    let value = if hex {
        let (e0, e1) = exp_range?;
        hex_value(&b[mant_start..mant_end], &b[e0..e1], neg)?
    } else if underscores {
        let cleaned: String = s.chars().filter(|&c| c != '_').collect();
        cleaned.parse::<f64>().ok()?
    } else {
        s.parse::<f64>().ok()?
    };
    // Go reports a range error where the value rounds to infinity.
    value.is_finite().then_some(value)
}

/// `inf`/`infinity` with optional sign, or unsigned `nan`. `Some(None)`: a special prefix followed by
/// more text (a syntax error in Go); `None`: not special at all.
fn special(s: &str) -> Option<Option<f64>> {
    let b = s.as_bytes();
    let (neg, rest) = match b.first()? {
        b'+' => (false, &b[1..]),
        b'-' => (true, &b[1..]),
        b'n' | b'N' => {
            return (b.len() >= 3 && b[..3].eq_ignore_ascii_case(b"nan"))
                .then_some((b.len() == 3).then_some(f64::NAN));
        }
        _ => (false, b),
    };
    let n = rest
        .iter()
        .zip(b"infinity")
        .take_while(|(a, e)| a.eq_ignore_ascii_case(e))
        .count();
    let n = if n > 3 && n < 8 { 3 } else { n };
    if n != 3 && n != 8 {
        return None;
    }
    let inf = if neg {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    };
    Some((n == rest.len()).then_some(inf))
}

/// Go's rule for `_` in number literals: only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if matches!(b.first(), Some(b'+' | b'-')) {
        b = &b[1..];
    }
    // 0 = digit or prefix, _ = underscore, ! = other, ^ = start.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && matches!(c | 0x20, b'a'..=b'f')) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Value of a hexadecimal float, correctly rounded (nearest, ties to even), `None` on overflow.
fn hex_value(mantissa: &[u8], exponent: &[u8], neg: bool) -> Option<f64> {
    // Keep the first 32 significant hex digits exactly (128 bits) and fold the rest into a sticky bit.
    let mut m: u128 = 0;
    let mut kept = 0u32;
    let mut sticky = false;
    let mut scale: i64 = 0; // power of two applied to m
    let mut after_dot = false;
    let mut started = false;
    for &c in mantissa {
        let d = match c {
            b'_' => continue,
            b'.' => {
                after_dot = true;
                continue;
            }
            _ => match (c as char).to_digit(16) {
                Some(d) => d,
                None => continue,
            },
        };
        started |= d != 0;
        if !started {
            if after_dot {
                scale -= 4;
            }
            continue;
        }
        if kept < 32 {
            m = (m << 4) | u128::from(d);
            kept += 1;
            if after_dot {
                scale -= 4;
            }
        } else {
            sticky |= d != 0;
            if !after_dot {
                scale += 4;
            }
        }
    }
    let sign = if neg { -1.0 } else { 1.0 };
    if m == 0 {
        return Some(sign * 0.0);
    }
    let mut e: i64 = 0;
    let mut digits = exponent;
    let mut e_neg = false;
    if let Some((&s, rest)) = digits.split_first()
        && (s == b'+' || s == b'-')
    {
        e_neg = s == b'-';
        digits = rest;
    }
    for &c in digits {
        if c.is_ascii_digit() && e < 100_000 {
            e = e * 10 + i64::from(c - b'0');
        }
    }
    let e = if e_neg { -e } else { e };
    // Normalise so the top bit of m is bit 127: value = m * 2^(bin_exp - 127).
    let lz = m.leading_zeros();
    m <<= lz;
    let top = scale + e + 127 - i64::from(lz); // exponent of the leading bit
    if top > 1023 {
        return None;
    }
    // Bits to drop: keep 53 for normal numbers, fewer for subnormals.
    let shift: i64 = if top >= -1022 {
        128 - 53
    } else {
        128 - 53 + (-1022 - top)
    };
    if shift >= 128 + 2 {
        return Some(sign * 0.0);
    }
    let (mut q, round_up) = if shift >= 128 {
        // Everything is below the last representable bit: at most half of the smallest subnormal.
        let half_exact = shift == 128 && m == 1u128 << 127;
        let above_half = shift == 128 && (m > 1u128 << 127 || (half_exact && sticky));
        (0u128, above_half)
    } else {
        let q = m >> shift;
        let rem = m & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let up = rem > half || (rem == half && (sticky || q & 1 == 1));
        (q, up)
    };
    if round_up {
        q += 1;
    }
    let bits: u64 = if top >= -1022 {
        let mut exp = top;
        if q == 1u128 << 53 {
            q >>= 1;
            exp += 1;
            if exp > 1023 {
                return None;
            }
        }
        let biased = u64::try_from(exp + 1023).ok()?;
        (biased << 52) | (u64::try_from(q).ok()? & ((1u64 << 52) - 1))
    } else {
        // Subnormal; a carry into bit 52 yields the smallest normal number, which the encoding handles.
        u64::try_from(q).ok()?
    };
    Some(sign * f64::from_bits(bits))
}

#[cfg(test)]
mod tests {
    use super::parse_go_float as p;

    #[test]
    fn go_grammar() {
        assert_eq!(p("1_000"), Some(1000.0));
        assert_eq!(p("1e3"), Some(1000.0));
        assert_eq!(p(".5"), Some(0.5));
        assert_eq!(p("5."), Some(5.0));
        assert_eq!(p("+5"), Some(5.0));
        assert_eq!(p("-0"), Some(-0.0));
        assert_eq!(p("0x1p-2"), Some(0.25));
        assert_eq!(p("0x1.8p1"), Some(3.0));
        assert_eq!(p("0X_1P4"), Some(16.0));
        assert_eq!(p("1e-400"), Some(0.0));
        assert_eq!(p("Inf"), Some(f64::INFINITY));
        assert_eq!(p("-infinity"), Some(f64::NEG_INFINITY));
        assert!(p("NaN").is_some_and(f64::is_nan));
        for bad in [
            "",
            "0x10",
            "1e400",
            "+nan",
            "nanx",
            "infin",
            "1_",
            "_1",
            "1__0",
            "1._5",
            "1_.5",
            "1e",
            "1e+",
            " 1",
            "1 ",
            "1.2.3",
            "0x",
            "0xp1",
            "1a",
            "b",
            "0b1",
            "1e1_",
            "infinityy",
            "--1",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(p("1e1_0"), Some(1e10));
        assert_eq!(p("0_1"), Some(1.0));
    }

    #[test]
    fn hex_rounding() {
        // 2^-1074 is the smallest subnormal; half of it rounds to even (zero), a bit more rounds up.
        assert_eq!(p("0x1p-1074"), Some(f64::from_bits(1)));
        assert_eq!(p("0x1p-1075"), Some(0.0));
        assert_eq!(p("0x1.0000000000001p-1075"), Some(f64::from_bits(1)));
        assert_eq!(p("0x1.fffffffffffffp1023"), Some(f64::MAX));
        assert_eq!(p("0x1.fffffffffffff8p1023"), None);
        assert_eq!(p("0x1p1024"), None);
        assert_eq!(p("0x1.00000000000008p0"), Some(1.0));
        assert_eq!(p("0x1.00000000000018p0"), Some(1.0 + 2f64.powi(-51)));
        assert_eq!(
            p("0x1.000000000000080000000000000000001p0"),
            Some(1.0 + 2f64.powi(-52))
        );
    }
}
