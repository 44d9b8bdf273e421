//! Read-only view of Flux source-controller's `GitRepository` (source.toolkit.fluxcd.io/v1).
//!
//! Only the fields image-automation-controller reads are typed; everything else is ignored on
//! read. source-controller owns the real CRD. The CRD derived from these types (see
//! [`crate::crd::git_repository_crd`]) is a labelled stand-in for tests and demos only.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{DurationError, parse_go_duration};
use crate::refs::LocalObjectReference;

/// Per-operation Git timeout when `spec.timeout` is unset.
pub const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Branch checked out when a reference names nothing.
pub const DEFAULT_BRANCH: &str = "master";

/// The GitRepository fields image-automation-controller uses.
// clippy mistakes the repeated `type_ = ...` of printer columns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "GitRepository",
    doc = "Read-only view of Flux source-controller's GitRepository.",
    plural = "gitrepositories",
    singular = "gitrepository",
    namespaced,
    status = "GitRepositoryStatus",
    derive = "PartialEq",
    shortname = "gitrepo",
    category = "fluxcd",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#
    )
)]
#[serde(rename_all = "camelCase")]
// source-controller has many more spec fields (ignore, verify, include, ...); the stand-in CRD
// keeps them so that real manifests apply unchanged.
#[schemars(extend(
    "x-kubernetes-preserve-unknown-fields" = true,
    "x-kubernetes-validations" = [{
        "rule": "!has(self.serviceAccountName) || (has(self.provider) && (self.provider == 'azure' || self.provider == 'aws'))",
        "message": "serviceAccountName can only be set when provider is 'azure' or 'aws'"
    }]
))]
pub struct GitRepositorySpec {
    /// Repository URL (`http`, `https` or `ssh`), used to clone and push.
    #[schemars(regex(pattern = r"^(http|https|ssh)://.*$"))]
    pub url: String,

    /// Secret (in the GitRepository's namespace) with Git credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// source-controller's fetch interval; not used by the automation.
    #[schemars(regex(pattern = crate::duration::INTERVAL_PATTERN))]
    pub interval: String,

    /// Reference to check out when the automation names none.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRepositoryRef>,

    /// Timeout of each Git operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::TIMEOUT_PATTERN), extend("default" = "60s"))]
    pub timeout: Option<String>,

    /// Secret (in the GitRepository's namespace) with proxy settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,

    /// Credential provider: `generic` (default), `azure`, `aws` or `github`. Kept as a string
    /// because source-controller may add providers this reader does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["generic", "azure", "aws", "github"]))]
    pub provider: Option<String>,

    /// Service account for workload identity (azure, aws).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Whether source-controller is suspended for this object; not used by the automation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl GitRepositorySpec {
    /// Per-operation timeout: `spec.timeout`, or one minute when unset.
    pub fn timeout(&self) -> Result<Duration, DurationError> {
        self.timeout
            .as_deref()
            .map_or(Ok(DEFAULT_GIT_TIMEOUT), parse_go_duration)
    }

    /// The credential provider, `generic` when unset or empty.
    pub fn provider(&self) -> &str {
        match self.provider.as_deref() {
            None | Some("") => "generic",
            Some(p) => p,
        }
    }
}

/// The part of source-controller's status that tests and demos may set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GitRepositoryStatus {
    /// Generation last reconciled by source-controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// source-controller's conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A Git reference to check out (GitRepository `spec.ref`, ImageUpdateAutomation
/// `spec.git.checkout.ref`). Precedence: commit > name > tag > semver > branch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryRef {
    /// Branch to check out; `master` when no field is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// Tag to check out; wins over `semver` and `branch` (Flux's Git client order).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// Semver expression selecting a tag; wins over `branch`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub semver: String,
    /// Full reference name (e.g. `refs/heads/main`, `refs/pull/420/head`); wins over branch, tag
    /// and semver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Commit SHA; wins over everything, may be combined with `branch` for a shallow clone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
}

/// What a [`GitRepositoryRef`] resolves to, after precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitCheckout<'a> {
    /// A commit, optionally on a branch (which is cloned to find it).
    Commit {
        /// Commit SHA.
        commit: &'a str,
        /// Branch expected to contain the commit, if given.
        branch: Option<&'a str>,
    },
    /// A full reference name.
    RefName(&'a str),
    /// A tag.
    Tag(&'a str),
    /// A semver expression over tags.
    SemVer(&'a str),
    /// A branch.
    Branch(&'a str),
}

impl GitRepositoryRef {
    /// The reference in force: commit > name > tag > semver > branch > `master`.
    pub fn checkout(&self) -> GitCheckout<'_> {
        let non_empty = |s: &str| !s.is_empty();
        if non_empty(&self.commit) {
            let branch = non_empty(&self.branch).then_some(self.branch.as_str());
            GitCheckout::Commit {
                commit: &self.commit,
                branch,
            }
        } else if non_empty(&self.name) {
            GitCheckout::RefName(&self.name)
        } else if non_empty(&self.tag) {
            GitCheckout::Tag(&self.tag)
        } else if non_empty(&self.semver) {
            GitCheckout::SemVer(&self.semver)
        } else if non_empty(&self.branch) {
            GitCheckout::Branch(&self.branch)
        } else {
            GitCheckout::Branch(DEFAULT_BRANCH)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_precedence() {
        let r =
            |branch: &str, tag: &str, semver: &str, name: &str, commit: &str| GitRepositoryRef {
                branch: branch.into(),
                tag: tag.into(),
                semver: semver.into(),
                name: name.into(),
                commit: commit.into(),
            };
        assert_eq!(
            r("", "", "", "", "").checkout(),
            GitCheckout::Branch("master")
        );
        assert_eq!(
            r("main", "", "", "", "").checkout(),
            GitCheckout::Branch("main")
        );
        assert_eq!(
            r("main", "", "1.x", "", "").checkout(),
            GitCheckout::SemVer("1.x")
        );
        assert_eq!(
            r("main", "v1", "1.x", "", "").checkout(),
            GitCheckout::Tag("v1")
        );
        assert_eq!(
            r("main", "v1", "1.x", "refs/pull/1/head", "").checkout(),
            GitCheckout::RefName("refs/pull/1/head")
        );
        assert_eq!(
            r("main", "v1", "", "refs/x", "abc").checkout(),
            GitCheckout::Commit {
                commit: "abc",
                branch: Some("main")
            }
        );
        assert_eq!(
            r("", "", "", "", "abc").checkout(),
            GitCheckout::Commit {
                commit: "abc",
                branch: None
            }
        );
    }

    #[test]
    fn timeout_and_provider_defaults() {
        let mut spec: GitRepositorySpec =
            serde_json::from_value(serde_json::json!({"url": "ssh://git@h/r", "interval": "1m"}))
                .unwrap();
        assert_eq!(spec.timeout(), Ok(DEFAULT_GIT_TIMEOUT));
        assert_eq!(spec.provider(), "generic");
        spec.timeout = Some("20s".into());
        spec.provider = Some("github".into());
        assert_eq!(spec.timeout(), Ok(Duration::from_secs(20)));
        assert_eq!(spec.provider(), "github");
    }
}
