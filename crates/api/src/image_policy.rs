//! `ImagePolicy` (image.toolkit.fluxcd.io/v1): picks the latest image from an ImageRepository's tags.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{DurationError, parse_go_duration};
use crate::refs::{ImageRef, NamespacedObjectReference};

pub use crate::image_repository::{FAILURE_REASON, IMAGE_URL_INVALID_REASON};

/// Reason: `digestReflectionPolicy: Always` without `interval`.
pub const INTERVAL_NOT_CONFIGURED_REASON: &str = "IntervalNotConfigured";
/// Reason: the policy choice, semver range, order or tag filter is invalid.
pub const INVALID_POLICY_REASON: &str = "InvalidPolicy";

/// Requeue period for `digestReflectionPolicy: Always` when `interval` is somehow unset.
pub const DEFAULT_DIGEST_REFLECTION_INTERVAL: Duration = Duration::from_secs(600);

/// Message of the CEL rule (and of the controller's check) requiring an interval with `Always`.
pub const INTERVAL_REQUIRED_MESSAGE: &str =
    "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'";
/// Message of the CEL rule rejecting an interval without `Always`.
pub const INTERVAL_ONLY_WITH_ALWAYS_MESSAGE: &str =
    "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'";

/// Message when no policy choice is set (upstream's wording).
pub const INVALID_POLICY_CHOICE_MESSAGE: &str =
    "invalid policy: given ImagePolicyChoice object is invalid";

/// A spec the CRD schema cannot reject on every server (CEL rules are ignored before Kubernetes
/// 1.25), with the condition reason and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecViolation {
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message.
    pub message: &'static str,
}

/// Desired state of an ImagePolicy.
// clippy mistakes the repeated `type_ = ...` of printer columns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImagePolicy",
    doc = "A policy selecting the latest image from an ImageRepository's tags.",
    plural = "imagepolicies",
    singular = "imagepolicy",
    namespaced,
    status = "ImagePolicyStatus",
    derive = "PartialEq",
    shortname = "imgpol",
    shortname = "imagepol",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn(name = "Image", type_ = "string", json_path = ".status.latestRef.name"),
    printcolumn(name = "Tag", type_ = "string", json_path = ".status.latestRef.tag"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.interval) || (has(self.digestReflectionPolicy) && self.digestReflectionPolicy == 'Always')",
        "message": INTERVAL_ONLY_WITH_ALWAYS_MESSAGE
    },
    {
        "rule": "has(self.interval) || !has(self.digestReflectionPolicy) || self.digestReflectionPolicy != 'Always'",
        "message": INTERVAL_REQUIRED_MESSAGE
    }
]))]
pub struct ImagePolicySpec {
    /// The ImageRepository whose tags are considered.
    pub image_repository_ref: NamespacedObjectReference,

    /// How to order tags to select the latest one.
    pub policy: ImagePolicyChoice,

    /// Filters (and rewrites) tags before the policy is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<TagFilter>,

    /// Whether to look up and report the digest of the selected tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Never"))]
    pub digest_reflection_policy: Option<ReflectionPolicy>,

    /// How often to refresh the digest; only with `digestReflectionPolicy: Always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::INTERVAL_PATTERN))]
    pub interval: Option<String>,

    /// Stop reconciling while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// When to reflect the digest of the selected tag in `status.latestRef.digest`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ReflectionPolicy {
    /// Look up the digest on every reconciliation (requires `interval`).
    Always,
    /// Look up the digest only when the selected tag changes.
    IfNotPresent,
    /// Never report a digest.
    #[default]
    Never,
}

/// The ordering used to select the latest tag; the first set of semver, alphabetical, numerical wins.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyChoice {
    /// Highest version within a semver range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemVerPolicy>,
    /// Last tag in alphabetical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<AlphabeticalPolicy>,
    /// Last tag in numerical order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<NumericalPolicy>,
}

/// Semver policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SemVerPolicy {
    /// Semver constraint, e.g. `>=1.0.0 <2.0.0` or `5.0.x`.
    pub range: String,
}

/// Alphabetical policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlphabeticalPolicy {
    /// `asc` selects the last tag (Z), `desc` the first (A).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "asc"))]
    pub order: Option<SortOrder>,
}

/// Numerical policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumericalPolicy {
    /// `asc` selects the highest number, `desc` the lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "asc"))]
    pub order: Option<SortOrder>,
}

/// Sort direction of alphabetical and numerical policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending: the latest is the greatest.
    #[default]
    Asc,
    /// Descending: the latest is the smallest.
    Desc,
}

/// The policy in force, after precedence semver > alphabetical > numerical.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectivePolicy<'a> {
    /// Semver with this range.
    SemVer(&'a str),
    /// Alphabetical with this order.
    Alphabetical(SortOrder),
    /// Numerical with this order.
    Numerical(SortOrder),
}

impl ImagePolicyChoice {
    /// The policy to apply, or `None` when no choice is set (an invalid policy).
    pub fn effective(&self) -> Option<EffectivePolicy<'_>> {
        if let Some(s) = &self.semver {
            return Some(EffectivePolicy::SemVer(&s.range));
        }
        if let Some(a) = &self.alphabetical {
            return Some(EffectivePolicy::Alphabetical(a.order.unwrap_or_default()));
        }
        self.numerical
            .as_ref()
            .map(|n| EffectivePolicy::Numerical(n.order.unwrap_or_default()))
    }
}

/// Tag filter: keep tags matching `pattern`, then rewrite them with `extract`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    /// Go RE2 regular expression a tag must match (unanchored); empty matches every tag.
    #[serde(default)]
    #[schemars(transform = crate::crd::drop_default)]
    pub pattern: String,
    /// Replacement template (`$name`, `${1}`) applied to the match; empty keeps the tag.
    #[serde(default)]
    #[schemars(transform = crate::crd::drop_default)]
    pub extract: String,
}

impl ImagePolicySpec {
    /// The digest reflection policy, `Never` when unset.
    pub fn digest_reflection_policy(&self) -> ReflectionPolicy {
        self.digest_reflection_policy.unwrap_or_default()
    }

    /// The requeue interval, if one is set.
    pub fn interval(&self) -> Result<Option<Duration>, DurationError> {
        self.interval.as_deref().map(parse_go_duration).transpose()
    }

    /// The checks the CRD's CEL rules make, plus upstream's check that a policy is chosen.
    pub fn check(&self) -> Result<(), SpecViolation> {
        let always = self.digest_reflection_policy() == ReflectionPolicy::Always;
        match (always, self.interval.is_some()) {
            (true, false) => Err(SpecViolation {
                reason: INTERVAL_NOT_CONFIGURED_REASON,
                message: INTERVAL_REQUIRED_MESSAGE,
            }),
            (false, true) => Err(SpecViolation {
                reason: INVALID_POLICY_REASON,
                message: INTERVAL_ONLY_WITH_ALWAYS_MESSAGE,
            }),
            _ if self.policy.effective().is_none() => Err(SpecViolation {
                reason: INVALID_POLICY_REASON,
                message: INVALID_POLICY_CHOICE_MESSAGE,
            }),
            _ => Ok(()),
        }
    }
}

/// Observed state of an ImagePolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagePolicyStatus {
    /// The latest image selected by the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ref: Option<ImageRef>,

    /// The previous `latestRef`, kept when the selection changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_ref: Option<ImageRef>,

    /// Deprecated (v1beta1): `latestRef` as `name:tag`, kept for v1beta1 clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<String>,

    /// Deprecated (v1beta1): `observedPreviousRef` as `name:tag`, kept for v1beta1 clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_previous_image: Option<String>,

    /// Generation of the spec last reconciled to Ready or Stalled; -1 before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Last handled value of the `reconcile.fluxcd.io/requestedAt` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

impl ImagePolicyStatus {
    /// Records a newly selected image: the old `latestRef` moves to `observedPreviousRef` only
    /// when the selection differs (digest included), and the v1beta1 string fields follow.
    pub fn set_latest(&mut self, latest: ImageRef) {
        if let Some(prev) = self.latest_ref.take_if(|prev| *prev != latest) {
            self.observed_previous_image = Some(prev.name_with_tag());
            self.observed_previous_ref = Some(prev);
        }
        self.latest_image = Some(latest.name_with_tag());
        self.latest_ref = Some(latest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str, digest: &str) -> ImageRef {
        ImageRef {
            name: "ghcr.io/a/b".into(),
            tag: tag.into(),
            digest: digest.into(),
        }
    }

    #[test]
    fn spec_checks_mirror_the_cel_rules() {
        let spec = |extra: serde_json::Value| -> ImagePolicySpec {
            let mut v = serde_json::json!({
                "imageRepositoryRef": {"name": "podinfo"},
                "policy": {"semver": {"range": "5.0.x"}},
            });
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        let reason = |s: ImagePolicySpec| s.check().err().map(|v| (v.reason, v.message));
        assert_eq!(reason(spec(serde_json::json!({}))), None);
        assert_eq!(
            reason(spec(
                serde_json::json!({"digestReflectionPolicy": "Always", "interval": "5m"})
            )),
            None
        );
        assert_eq!(
            reason(spec(
                serde_json::json!({"digestReflectionPolicy": "Always"})
            )),
            Some((INTERVAL_NOT_CONFIGURED_REASON, INTERVAL_REQUIRED_MESSAGE))
        );
        assert_eq!(
            reason(spec(
                serde_json::json!({"digestReflectionPolicy": "IfNotPresent", "interval": "5m"})
            )),
            Some((INVALID_POLICY_REASON, INTERVAL_ONLY_WITH_ALWAYS_MESSAGE))
        );
        assert_eq!(
            reason(spec(serde_json::json!({"policy": {}}))),
            Some((INVALID_POLICY_REASON, INVALID_POLICY_CHOICE_MESSAGE))
        );
    }

    #[test]
    fn precedence_semver_alphabetical_numerical() {
        let semver = Some(SemVerPolicy {
            range: "1.x".into(),
        });
        let alpha = Some(AlphabeticalPolicy {
            order: Some(SortOrder::Desc),
        });
        let num = Some(NumericalPolicy { order: None });
        let all = ImagePolicyChoice {
            semver: semver.clone(),
            alphabetical: alpha.clone(),
            numerical: num.clone(),
        };
        assert_eq!(all.effective(), Some(EffectivePolicy::SemVer("1.x")));
        let an = ImagePolicyChoice {
            semver: None,
            alphabetical: alpha,
            numerical: num.clone(),
        };
        assert_eq!(
            an.effective(),
            Some(EffectivePolicy::Alphabetical(SortOrder::Desc))
        );
        let n = ImagePolicyChoice {
            semver: None,
            alphabetical: None,
            numerical: num,
        };
        assert_eq!(
            n.effective(),
            Some(EffectivePolicy::Numerical(SortOrder::Asc))
        );
        assert_eq!(ImagePolicyChoice::default().effective(), None);
    }

    #[test]
    fn set_latest_tracks_previous_only_on_change() {
        let mut st = ImagePolicyStatus::default();
        st.set_latest(image("1.0", ""));
        assert_eq!(st.latest_image.as_deref(), Some("ghcr.io/a/b:1.0"));
        assert_eq!(st.observed_previous_ref, None);
        st.set_latest(image("1.0", ""));
        assert_eq!(
            st.observed_previous_ref, None,
            "unchanged selection keeps no previous"
        );
        st.set_latest(image("1.1", ""));
        assert_eq!(st.observed_previous_ref, Some(image("1.0", "")));
        assert_eq!(
            st.observed_previous_image.as_deref(),
            Some("ghcr.io/a/b:1.0")
        );
        st.set_latest(image("1.1", "sha256:x"));
        assert_eq!(
            st.observed_previous_ref,
            Some(image("1.1", "")),
            "a digest change counts"
        );
        st.set_latest(image("1.1", "sha256:x"));
        assert_eq!(
            st.observed_previous_ref,
            Some(image("1.1", "")),
            "stays set while unchanged"
        );
    }

    #[test]
    fn defaults_and_interval() {
        let spec = ImagePolicySpec {
            image_repository_ref: NamespacedObjectReference {
                name: "r".into(),
                namespace: None,
            },
            policy: ImagePolicyChoice::default(),
            filter_tags: None,
            digest_reflection_policy: None,
            interval: None,
            suspend: false,
        };
        assert_eq!(spec.digest_reflection_policy(), ReflectionPolicy::Never);
        assert_eq!(spec.interval(), Ok(None));
        let spec = ImagePolicySpec {
            interval: Some("1h".into()),
            ..spec
        };
        assert_eq!(spec.interval(), Ok(Some(Duration::from_secs(3600))));
    }
}
