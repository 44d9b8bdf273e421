//! Syntax check of Kubernetes label selectors (`--watch-label-selector`), so a typo fails at
//! startup with a clear message instead of as a watch error against the API server.

/// Checks `s` against the label-selector grammar of `k8s.io/apimachinery/pkg/labels`:
/// comma-separated `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (v,...)`, `key notin (v,...)`.
pub fn validate(s: &str) -> Result<(), String> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return Ok(());
    }
    loop {
        rest = requirement(rest).map_err(|e| format!("invalid label selector '{s}': {e}"))?;
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(());
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("invalid label selector '{s}': expected ',' before '{rest}'"))?
            .trim_start();
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Parses one requirement, returning the unparsed remainder.
fn requirement(input: &str) -> Result<&str, String> {
    let mut rest = input.trim_start();
    let negated = rest.starts_with('!');
    if negated {
        rest = rest[1..].trim_start();
    }
    let end = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
    let key = &rest[..end];
    check_key(key)?;
    rest = rest[end..].trim_start();
    if negated || rest.is_empty() || rest.starts_with(',') {
        return Ok(rest);
    }
    for op in ["==", "!=", "="] {
        if let Some(r) = rest.strip_prefix(op) {
            let r = r.trim_start();
            let end = r
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(r.len());
            check_value(&r[..end])?;
            return Ok(&r[end..]);
        }
    }
    for op in ["notin", "in"] {
        if let Some(r) = rest.strip_prefix(op) {
            let r = r.trim_start();
            let r = r
                .strip_prefix('(')
                .ok_or_else(|| format!("expected '(' after '{op}'"))?;
            let close = r.find(')').ok_or_else(|| "missing ')'".to_string())?;
            let values: Vec<&str> = r[..close].split(',').map(str::trim).collect();
            if values.iter().all(|v| v.is_empty()) {
                return Err(format!("'{op}' needs at least one value"));
            }
            for v in values {
                check_value(v)?;
            }
            return Ok(&r[close + 1..]);
        }
    }
    Err(format!("unexpected '{rest}' after key '{key}'"))
}

fn check_name(part: &str, what: &str) -> Result<(), String> {
    let ok = !part.is_empty()
        && part.len() <= 63
        && part.starts_with(|c: char| c.is_ascii_alphanumeric())
        && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} '{part}'"))
    }
}

fn check_key(key: &str) -> Result<(), String> {
    match key.split_once('/') {
        Some((prefix, name)) => {
            let dns_ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                });
            if !dns_ok {
                return Err(format!("invalid key prefix '{prefix}'"));
            }
            check_name(name, "key name")
        }
        None => check_name(key, "key"),
    }
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    check_name(v, "value")
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn valid_selectors() {
        for s in [
            "",
            "sharding.fluxcd.io/shard=shard1",
            "a==b, c!=d",
            "!x,y",
            "env in (prod, staging),tier notin (web)",
            "reconcile.fluxcd.io/watch=Enabled",
            "a=",
        ] {
            assert!(validate(s).is_ok(), "{s}: {:?}", validate(s));
        }
    }

    #[test]
    fn invalid_selectors() {
        for s in [
            "a in (b",
            "=b",
            "a=b=c",
            "a b",
            "Bad_Prefix/x=y",
            "a=-b",
            "a in ()",
            "a,,b",
        ] {
            assert!(validate(s).is_err(), "{s}");
        }
    }
}
