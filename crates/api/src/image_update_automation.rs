//! `ImageUpdateAutomation` (image.toolkit.fluxcd.io/v1): writes selected images back to Git.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{DurationError, parse_go_duration};
use crate::git_repository::{GitCheckout, GitRepositoryRef};
use crate::refs::{ImageRef, LocalObjectReference};

/// Reason: `spec.policySelector` cannot be parsed.
pub const INVALID_POLICY_SELECTOR_REASON: &str = "InvalidPolicySelector";
/// Reason: the source reference or `spec.git` is unusable.
pub const INVALID_SOURCE_CONFIGURATION_REASON: &str = "InvalidSourceConfiguration";
/// Reason: the Git source could not be prepared (GitRepository, secrets, auth, signing key).
pub const SOURCE_MANAGER_FAILED_REASON: &str = "SourceManagerFailed";
/// Reason: clone, checkout, template, commit or push failed.
pub const GIT_OPERATION_FAILED_REASON: &str = "GitOperationFailed";
/// Reason: no or an unsupported update strategy.
pub const INVALID_UPDATE_STRATEGY_REASON: &str = "InvalidUpdateStrategy";
/// Reason: updating the YAML files failed.
pub const UPDATE_FAILED_REASON: &str = "UpdateFailed";
/// Reason: the commit template uses a field upstream Flux removed.
pub const REMOVED_TEMPLATE_FIELD_REASON: &str = "RemovedTemplateField";

/// Commit message used when `spec.git.commit.messageTemplate` is unset.
pub const DEFAULT_MESSAGE_TEMPLATE: &str = "Update from image update automation";
/// CRD annotation that stops Flux's kustomize-controller from substituting `${...}` in the CRD
/// (the commit template syntax would otherwise be mangled).
pub const SUBSTITUTE_DISABLED_ANNOTATION: (&str, &str) =
    ("kustomize.toolkit.fluxcd.io/substitute", "disabled");

/// Desired state of an ImageUpdateAutomation.
// clippy mistakes the repeated `type_ = ...` of printer columns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageUpdateAutomation",
    doc = "An automation writing the images selected by ImagePolicies to Git.",
    plural = "imageupdateautomations",
    singular = "imageupdateautomation",
    namespaced,
    status = "ImageUpdateAutomationStatus",
    derive = "PartialEq",
    shortname = "iua",
    shortname = "imgupd",
    shortname = "imgauto",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
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
        name = "Last run",
        type_ = "string",
        json_path = ".status.lastAutomationRunTime",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateAutomationSpec {
    /// The Git source to update.
    pub source_ref: CrossNamespaceSourceReference,

    /// Git settings: checkout, commit and push. Required for GitRepository sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,

    /// How often to run the automation, as a Go duration.
    #[schemars(regex(pattern = crate::duration::INTERVAL_PATTERN))]
    pub interval: String,

    /// Selects the ImagePolicies (in this namespace) to apply; all of them when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::crd::atomic_label_selector)]
    pub policy_selector: Option<LabelSelector>,

    /// How to update files; defaults to the Setters strategy on the repository root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"strategy": "Setters"}))]
    pub update: Option<UpdateStrategy>,

    /// Stop running the automation while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Reference to the Git source object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceSourceReference {
    /// API version of the referent (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent; only `GitRepository`.
    #[schemars(extend("default" = "GitRepository"))]
    pub kind: SourceKind,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; defaults to the automation's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kinds of Git source an automation can use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum SourceKind {
    /// Flux source-controller's GitRepository.
    #[default]
    GitRepository,
}

impl SourceKind {
    /// The kind as written in `spec.sourceRef.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitRepository => "GitRepository",
        }
    }
}

/// Git settings of an automation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSpec {
    /// What to clone; the GitRepository's `spec.ref` (or `master`) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<GitCheckoutSpec>,
    /// How to commit.
    pub commit: CommitSpec,
    /// Where to push; back to the checkout branch when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
}

/// Checkout settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitCheckoutSpec {
    /// The reference to clone.
    #[serde(rename = "ref")]
    pub reference: GitRepositoryRef,
}

/// Commit settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitSpec {
    /// Commit author.
    pub author: CommitUser,
    /// Key used to sign commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<SigningKey>,
    /// Go text/template for the commit message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template: Option<String>,
    /// Values exposed to the template as `.Values`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_template_values: Option<BTreeMap<String, String>>,
}

impl CommitSpec {
    /// The commit message template, or the default message when unset or empty.
    pub fn message_template(&self) -> &str {
        match self.message_template.as_deref() {
            None | Some("") => DEFAULT_MESSAGE_TEMPLATE,
            Some(t) => t,
        }
    }
}

/// Commit author.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitUser {
    /// Author name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Author email.
    pub email: String,
}

/// Commit signing key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKey {
    /// Secret (same namespace) holding the key (`git.asc` for GPG, `identity` for SSH).
    pub secret_ref: LocalObjectReference,
    /// Key type; `gpg` when unset.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub key_type: Option<SigningKeyType>,
}

impl SigningKey {
    /// The key type, `gpg` when unset.
    pub fn key_type(&self) -> SigningKeyType {
        self.key_type.unwrap_or_default()
    }
}

/// Kind of commit signing key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyType {
    /// OpenPGP key.
    #[default]
    Gpg,
    /// SSH key.
    Ssh,
}

/// Push settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSpec {
    /// Branch to push to; created from the checkout branch when missing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// Additional refspec to push (e.g. `refs/heads/main:refs/heads/auto`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refspec: String,
    /// Git push options sent to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// Update strategy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    /// Strategy name; only `Setters`.
    #[serde(default)]
    pub strategy: UpdateStrategyName,
    /// Path, relative to the repository root, of the file or directory to update.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// Names of update strategies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum UpdateStrategyName {
    /// Replace values marked with `{"$imagepolicy": "<ns>:<name>[:tag|:name]"}` comments.
    #[default]
    Setters,
}

impl ImageUpdateAutomationSpec {
    /// The run interval.
    pub fn interval(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.interval)
    }

    /// The checkout reference: `spec.git.checkout.ref`, else the GitRepository's `spec.ref`,
    /// else branch `master`.
    pub fn checkout<'a>(&'a self, source_ref: Option<&'a GitRepositoryRef>) -> GitCheckout<'a> {
        let own = self
            .git
            .as_ref()
            .and_then(|g| g.checkout.as_ref())
            .map(|c| &c.reference);
        match own.or(source_ref) {
            Some(r) => r.checkout(),
            None => GitCheckout::Branch(crate::git_repository::DEFAULT_BRANCH),
        }
    }

    /// The push branch, if `spec.git.push.branch` is set (otherwise the checkout branch is used).
    pub fn push_branch(&self) -> Option<&str> {
        let push = self.git.as_ref()?.push.as_ref()?;
        (!push.branch.is_empty()).then_some(push.branch.as_str())
    }
}

/// Observed state of an ImageUpdateAutomation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageUpdateAutomationStatus {
    /// When the automation last ran (set at the start of every non-suspended run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_automation_run_time: Option<Time>,

    /// SHA of the last commit pushed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_push_commit: String,

    /// When the last push happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_time: Option<Time>,

    /// Generation of the spec last reconciled to Ready or Stalled; -1 before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Images of the policies applied by the last run, keyed by ImagePolicy name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub observed_policies: BTreeMap<String, ImageRef>,

    /// Source revision last seen, `<branch-or-tag>@sha1:<hex>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub observed_source_revision: String,

    /// Last handled value of the `reconcile.fluxcd.io/requestedAt` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(git: Option<GitSpec>) -> ImageUpdateAutomationSpec {
        ImageUpdateAutomationSpec {
            source_ref: CrossNamespaceSourceReference {
                name: "flux-system".into(),
                ..Default::default()
            },
            git,
            interval: "1m0s".into(),
            policy_selector: None,
            update: None,
            suspend: false,
        }
    }

    #[test]
    fn checkout_falls_back_to_source_then_master() {
        let source = GitRepositoryRef {
            branch: "develop".into(),
            ..Default::default()
        };
        assert_eq!(spec(None).checkout(None), GitCheckout::Branch("master"));
        assert_eq!(
            spec(None).checkout(Some(&source)),
            GitCheckout::Branch("develop")
        );
        let git = GitSpec {
            checkout: Some(GitCheckoutSpec {
                reference: GitRepositoryRef {
                    branch: "main".into(),
                    ..Default::default()
                },
            }),
            ..Default::default()
        };
        assert_eq!(
            spec(Some(git)).checkout(Some(&source)),
            GitCheckout::Branch("main")
        );
    }

    #[test]
    fn defaults() {
        let s = spec(Some(GitSpec::default()));
        assert_eq!(s.interval(), Ok(Duration::from_secs(60)));
        assert_eq!(s.push_branch(), None);
        let commit = CommitSpec::default();
        assert_eq!(commit.message_template(), DEFAULT_MESSAGE_TEMPLATE);
        let key = SigningKey {
            secret_ref: LocalObjectReference { name: "k".into() },
            key_type: None,
        };
        assert_eq!(key.key_type(), SigningKeyType::Gpg);
        let git = GitSpec {
            push: Some(PushSpec {
                branch: "auto".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(spec(Some(git)).push_branch(), Some("auto"));
    }
}
