//! Image references and the setter table built from policies (`automation.md` §3.2).

use std::collections::{BTreeMap, HashMap};

/// The latest image a policy selected: `name[:tag][@digest]`, components kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ImageRef {
    /// Repository name as written, e.g. `ghcr.io/org/app` (no registry normalisation).
    pub name: String,
    /// Tag, possibly empty.
    pub tag: String,
    /// Digest such as `sha256:…`, possibly empty.
    pub digest: String,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encountered invalid image ref {input:?}: {reason}")]
pub struct ImageRefError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ImageRef {
    /// Parses `name[:tag][@digest]`: the digest follows the last `@`, the tag the last `:` after
    /// the last `/` (so `localhost:5000/app` has no tag).
    pub fn parse(input: &str) -> Result<Self, ImageRefError> {
        let err = |reason| ImageRefError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains white space or control characters"));
        }
        let (rest, digest) = match input.rsplit_once('@') {
            Some((r, d)) => (r, d),
            None => (input, ""),
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], &rest[slash + i + 1..]),
            None => (rest, ""),
        };
        let r = ImageRef {
            name: name.to_owned(),
            tag: tag.to_owned(),
            digest: digest.to_owned(),
        };
        r.validate().map_err(err)?;
        Ok(r)
    }

    /// Checks the components the way a registry reference grammar would.
    pub fn validate(&self) -> Result<(), &'static str> {
        let name_ok = !self.name.is_empty()
            && !self.name.starts_with('/')
            && !self.name.ends_with('/')
            && !self.name.contains("//")
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c));
        if !name_ok {
            return Err("repository name must be non-empty and made of [a-zA-Z0-9._-/:]");
        }
        let tag_ok = self.tag.is_empty()
            || (self.tag.len() <= 128
                && !self.tag.starts_with(['.', '-'])
                && self
                    .tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        if !tag_ok {
            return Err("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
        }
        let digest_ok = self.digest.is_empty()
            || self.digest.split_once(':').is_some_and(|(algo, hex)| {
                !algo.is_empty()
                    && !hex.is_empty()
                    && algo
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c))
                    && hex.chars().all(|c| c.is_ascii_hexdigit())
            });
        if !digest_ok {
            return Err("digest must be <algorithm>:<hex>");
        }
        Ok(())
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.tag.is_empty() {
            write!(f, ":{}", self.tag)?;
        }
        if !self.digest.is_empty() {
            write!(f, "@{}", self.digest)?;
        }
        Ok(())
    }
}

/// Latest images keyed by `namespace:name` of their policy.
pub type Policies = BTreeMap<String, ImageRef>;

/// The setter table: setter name → value (`ns:name`, `ns:name:tag`, `ns:name:name`,
/// `ns:name:digest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setters {
    values: HashMap<String, String>,
}

impl Setters {
    /// Builds the four setters of every policy. Any invalid reference fails the whole table,
    /// as in Flux (even one no marker uses).
    pub fn new(policies: &Policies) -> Result<Self, ImageRefError> {
        let mut values = HashMap::with_capacity(policies.len() * 4);
        for (key, r) in policies {
            r.validate().map_err(|reason| ImageRefError {
                input: r.to_string(),
                reason,
            })?;
            values.insert(key.clone(), r.to_string());
            values.insert(format!("{key}:tag"), r.tag.clone());
            values.insert(format!("{key}:name"), r.name.clone());
            values.insert(format!("{key}:digest"), r.digest.clone());
        }
        Ok(Self { values })
    }

    /// The value a setter writes, if the setter exists.
    pub fn get(&self, setter: &str) -> Option<&str> {
        self.values.get(setter).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_references() {
        let r = ImageRef::parse("localhost:5000/org/app:v1@sha256:abcd").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str(), r.digest.as_str()),
            ("localhost:5000/org/app", "v1", "sha256:abcd")
        );
        assert_eq!(r.to_string(), "localhost:5000/org/app:v1@sha256:abcd");
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/app", "")
        );
        assert!(ImageRef::parse("app:bad tag").is_err());
        assert!(ImageRef::parse("app@nodigest").is_err());
        assert!(ImageRef::parse("").is_err());
    }

    #[test]
    fn builds_four_setters_per_policy() {
        let mut p = Policies::new();
        p.insert("ns:p".into(), ImageRef::parse("img:1.0").unwrap());
        let s = Setters::new(&p).unwrap();
        assert_eq!(s.get("ns:p"), Some("img:1.0"));
        assert_eq!(s.get("ns:p:tag"), Some("1.0"));
        assert_eq!(s.get("ns:p:name"), Some("img"));
        assert_eq!(s.get("ns:p:digest"), Some(""));
        assert_eq!(s.get("ns:p:other"), None);
        p.insert(
            "ns:q".into(),
            ImageRef {
                name: "bad name".into(),
                ..ImageRef::default()
            },
        );
        let err = Setters::new(&p).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("encountered invalid image ref \"bad name\""),
            "{err}"
        );
    }
}
