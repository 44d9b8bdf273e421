//! Reference and value types shared by several kinds (Flux's `fluxcd/pkg/apis/meta` and `acl`).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an object in the same namespace as the referrer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object in any namespace; the referrer's namespace when `namespace` is unset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the namespace of the object holding the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl NamespacedObjectReference {
    /// The referent's namespace, falling back to `own_namespace` (the referrer's).
    pub fn namespace_or<'a>(&'a self, own_namespace: &'a str) -> &'a str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => own_namespace,
        }
    }
}

/// Cross-namespace access control list: which namespaces may refer to this object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessFrom {
    /// Namespace selectors, OR-ed: a namespace matching any one of them is allowed.
    pub namespace_selectors: Vec<NamespaceSelector>,
}

/// Selects namespaces by their labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels a namespace must all carry (AND-ed); empty or absent matches every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

impl NamespaceSelector {
    /// Whether a namespace with these labels is selected.
    pub fn matches(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| namespace_labels.get(k) == Some(v))
    }
}

impl AccessFrom {
    /// Whether a namespace with these labels is granted access (any selector matches).
    pub fn allows(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        self.namespace_selectors
            .iter()
            .any(|s| s.matches(namespace_labels))
    }
}

/// An image reference as reported by ImagePolicy `status.latestRef` and ImageUpdateAutomation
/// `status.observedPolicies`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// Image name without tag or digest, e.g. `ghcr.io/stefanprodan/podinfo`.
    pub name: String,
    /// Image tag, e.g. `5.0.3`.
    pub tag: String,
    /// Image digest (`sha256:...`), set only when digest reflection is enabled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl ImageRef {
    /// `name:tag`, without the digest (the v1beta1 `latestImage` form).
    pub fn name_with_tag(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

impl fmt::Display for ImageRef {
    /// `name:tag`, followed by `@digest` when a digest is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)?;
        if !self.digest.is_empty() {
            write!(f, "@{}", self.digest)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn image_ref_display() {
        let mut r = ImageRef {
            name: "ghcr.io/a/b".into(),
            tag: "1.0".into(),
            digest: String::new(),
        };
        assert_eq!(r.to_string(), "ghcr.io/a/b:1.0");
        r.digest = "sha256:abc".into();
        assert_eq!(r.to_string(), "ghcr.io/a/b:1.0@sha256:abc");
        assert_eq!(r.name_with_tag(), "ghcr.io/a/b:1.0");
    }

    #[test]
    fn access_from_semantics() {
        let sel = |m: Option<&[(&str, &str)]>| NamespaceSelector {
            match_labels: m.map(labels),
        };
        let ns = labels(&[("team", "a"), ("env", "prod")]);
        // Empty and absent matchLabels select every namespace.
        assert!(
            AccessFrom {
                namespace_selectors: vec![sel(Some(&[]))]
            }
            .allows(&ns)
        );
        assert!(
            AccessFrom {
                namespace_selectors: vec![sel(None)]
            }
            .allows(&BTreeMap::new())
        );
        // Labels within one selector are AND-ed.
        assert!(sel(Some(&[("team", "a"), ("env", "prod")])).matches(&ns));
        assert!(!sel(Some(&[("team", "a"), ("env", "dev")])).matches(&ns));
        // Selectors are OR-ed; no selector allows nothing.
        let acl = AccessFrom {
            namespace_selectors: vec![sel(Some(&[("team", "b")])), sel(Some(&[("env", "prod")]))],
        };
        assert!(acl.allows(&ns));
        assert!(!AccessFrom::default().allows(&ns));
    }

    #[test]
    fn namespace_fallback() {
        let r = NamespacedObjectReference {
            name: "x".into(),
            namespace: None,
        };
        assert_eq!(r.namespace_or("own"), "own");
        let r = NamespacedObjectReference {
            name: "x".into(),
            namespace: Some("other".into()),
        };
        assert_eq!(r.namespace_or("own"), "other");
    }
}
