//! Resolution of an automation's Git source (`automation.md` §2, §5.1): the GitRepository, its
//! credentials and proxy Secrets, the checkout reference, the push branch and the signing Secret.
//! Every failure is classified as Flux classifies it: Stalled (no retry) or Ready=False (retried).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api::git_repository::{GitCheckout, GitRepository, GitRepositoryRef};
use api::image_update_automation::{
    GIT_OPERATION_FAILED_REASON, INVALID_SOURCE_CONFIGURATION_REASON, ImageUpdateAutomation,
    SOURCE_MANAGER_FAILED_REASON, SigningKeyType,
};
use api::meta::ACCESS_DENIED_REASON;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

/// Why a run stopped, with the condition reason Flux uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Stalled=True and Ready=False: the spec must change; no retry.
    Stalled {
        /// Condition reason.
        reason: &'static str,
        /// Condition message.
        message: String,
    },
    /// Ready=False; retried with backoff.
    Retry {
        /// Condition reason.
        reason: &'static str,
        /// Condition message.
        message: String,
    },
}

impl Failure {
    /// A retried failure.
    pub fn retry(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Retry {
            reason,
            message: message.into(),
        }
    }

    /// A stalling failure.
    pub fn stalled(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason,
            message: message.into(),
        }
    }

    /// The condition message.
    pub fn message(&self) -> &str {
        match self {
            Self::Stalled { message, .. } | Self::Retry { message, .. } => message,
        }
    }

    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Stalled { reason, .. } | Self::Retry { reason, .. } => reason,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Failure {}

/// A source-manager failure (Ready=False `SourceManagerFailed`, retried), Flux's wording.
pub(crate) fn manager_failed(e: impl std::fmt::Display) -> Failure {
    Failure::retry(
        SOURCE_MANAGER_FAILED_REASON,
        format!("failed configuring source manager: {e}"),
    )
}

/// A misconfigured source (Stalled `InvalidSourceConfiguration`), Flux's wording.
pub(crate) fn invalid_source(message: impl std::fmt::Display) -> Failure {
    Failure::stalled(
        INVALID_SOURCE_CONFIGURATION_REASON,
        format!("{message}: invalid source configuration"),
    )
}

/// Everything needed to reach the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Clone and push URL.
    pub url: String,
    /// The data of the credentials Secret (empty without `secretRef`).
    pub auth: BTreeMap<String, Vec<u8>>,
    /// The credential `spec.provider` issued, replacing the Secret's (§2.4).
    pub provider: Option<crate::provider::ProviderCredential>,
    /// Proxy from `proxySecretRef`.
    pub proxy: Option<git::ProxyOptions>,
    /// Per-operation timeout.
    pub timeout: Duration,
}

/// What to check out and where to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branches {
    /// The effective checkout reference (`spec.git.checkout.ref`, else the GitRepository's).
    pub checkout: GitRepositoryRef,
    /// Branch the commits are pushed to.
    pub push_branch: String,
    /// Whether the push branch differs from the checkout branch (Flux's `switchBranch`).
    pub switch_branch: bool,
    /// Additional refspec pushed after the branch.
    pub refspec: Option<String>,
    /// Git push options.
    pub push_options: BTreeMap<String, String>,
}

/// How this automation commits.
#[derive(Debug, Clone)]
pub struct CommitSettings {
    /// Author name.
    pub author_name: String,
    /// Author (and committer) email.
    pub author_email: String,
    /// Message template (the default message when unset).
    pub template: String,
    /// `messageTemplateValues`.
    pub values: Option<BTreeMap<String, String>>,
    /// Signing key (from the signing Secret, §2.6), if any.
    pub signing: Option<git::Signer>,
}

/// The resolved source of one automation.
#[derive(Debug, Clone)]
pub struct Source {
    /// The remote.
    pub remote: Remote,
    /// Checkout and push.
    pub branches: Branches,
    /// Commit settings.
    pub commit: CommitSettings,
}

/// Options of the process that affect resolution.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResolveOptions {
    /// `--no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
    /// Feature gate `ObjectLevelWorkloadIdentity`.
    pub object_level_workload_identity: bool,
}

/// Where a source's GitRepository and Secrets are read from: the API server for the controller
/// ([`KubeObjects`]), files for `run-once`.
pub trait SourceObjects: Send + Sync {
    /// The GitRepository `namespace/name`, `None` when it does not exist.
    fn git_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<GitRepository>, String>> + Send;

    /// The Secret `namespace/name`, `None` when it does not exist.
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Secret>, String>> + Send;

    /// Service accounts for object-level workload identity; `None` where there is no API server.
    fn service_accounts(&self) -> Option<Arc<dyn registry::ServiceAccounts>> {
        None
    }
}

/// [`SourceObjects`] read from the API server (never cached).
pub struct KubeObjects<'a>(pub &'a kube::Client);

impl SourceObjects for KubeObjects<'_> {
    async fn git_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<GitRepository>, String> {
        let api: Api<GitRepository> = Api::namespaced(self.0.clone(), namespace);
        api.get_opt(name).await.map_err(|e| e.to_string())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        let api: Api<Secret> = Api::namespaced(self.0.clone(), namespace);
        api.get_opt(name).await.map_err(|e| e.to_string())
    }

    fn service_accounts(&self) -> Option<Arc<dyn registry::ServiceAccounts>> {
        // The reflector's TokenRequest client: one implementation for both controllers.
        Some(Arc::new(
            image_reflector_controller::repository::ApiSecrets::new(self.0.clone()),
        ))
    }
}

async fn get_secret(
    objects: &impl SourceObjects,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match objects.secret(namespace, name).await {
        Ok(Some(s)) => {
            Ok(image_reflector_controller::cluster::secret_data(namespace, name, s).data)
        }
        Ok(None) => Err(format!("secret '{namespace}/{name}' not found")),
        Err(e) => Err(format!("failed to get secret '{namespace}/{name}': {e}")),
    }
}

/// Flux's push branch inference (§5.1): the explicit push branch, else the checkout branch.
pub fn branches(
    automation: &ImageUpdateAutomation,
    repo_ref: Option<&GitRepositoryRef>,
) -> Result<Branches, Failure> {
    let git = automation.spec.git.as_ref();
    let checkout = git
        .and_then(|g| g.checkout.as_ref())
        .map(|c| c.reference.clone())
        .or_else(|| repo_ref.cloned())
        .unwrap_or_default();
    let push = git.and_then(|g| g.push.as_ref());
    // With a checkout by tag, semver, name or commit, the checkout branch is not the push branch.
    let checkout_branch = match checkout.checkout() {
        GitCheckout::Branch(b)
        | GitCheckout::Commit {
            branch: Some(b), ..
        } => Some(b.to_owned()),
        _ => None,
    };
    let (push_branch, switch_branch) = match push.map(|p| p.branch.as_str()) {
        Some(b) if !b.is_empty() => (b.to_owned(), checkout_branch.as_deref() != Some(b)),
        _ => match checkout_branch {
            Some(b) => (b, false),
            None => {
                return Err(manager_failed(
                    "push spec not provided, and cannot be inferred from .spec.git.checkout.ref or GitRepository .spec.ref",
                ));
            }
        },
    };
    Ok(Branches {
        checkout,
        push_branch,
        switch_branch,
        refspec: push.map(|p| p.refspec.clone()).filter(|r| !r.is_empty()),
        push_options: push.and_then(|p| p.options.clone()).unwrap_or_default(),
    })
}

/// Resolves the automation's source: GitRepository, Secrets, branches and commit settings.
pub async fn resolve(
    objects: &impl SourceObjects,
    automation: &ImageUpdateAutomation,
    opts: ResolveOptions,
) -> Result<Source, Failure> {
    let ns = automation.namespace().unwrap_or_default();
    let source_ref = &automation.spec.source_ref;
    let Some(git) = automation.spec.git.as_ref() else {
        return Err(invalid_source(format!(
            "source kind '{}' necessitates field .spec.git",
            source_ref.kind.as_str()
        )));
    };
    let repo_ns = source_ref
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ns.clone());
    if opts.no_cross_namespace_refs && repo_ns != ns {
        return Err(Failure::stalled(
            ACCESS_DENIED_REASON,
            format!(
                "can't access '{}/{repo_ns}/{}', cross-namespace references have been blocked",
                source_ref.kind.as_str(),
                source_ref.name
            ),
        ));
    }
    let repo = match objects.git_repository(&repo_ns, &source_ref.name).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(manager_failed(format!(
                "referenced git repository does not exist: GitRepository '{repo_ns}/{}' not found",
                source_ref.name
            )));
        }
        Err(e) => {
            return Err(manager_failed(format!(
                "failed to get referenced git repository: {e}"
            )));
        }
    };
    let spec = &repo.spec;
    let auth = match &spec.secret_ref {
        Some(r) if !r.name.is_empty() => get_secret(objects, &repo_ns, &r.name)
            .await
            .map_err(manager_failed)?,
        _ => BTreeMap::new(),
    };
    let proxy = match &spec.proxy_secret_ref {
        Some(r) if !r.name.is_empty() => {
            let data = get_secret(objects, &repo_ns, &r.name)
                .await
                .map_err(manager_failed)?;
            Some(
                git::ProxyOptions::from_secret(&format!("{repo_ns}/{}", r.name), &data)
                    .map_err(manager_failed)?,
            )
        }
        _ => None,
    };
    let provider = crate::provider::credential(
        &repo,
        &auth,
        proxy.as_ref(),
        crate::provider::ObjectIdentity {
            enabled: opts.object_level_workload_identity,
            namespace: &ns,
            accounts: objects.service_accounts(),
        },
    )
    .await?;
    let timeout = spec.timeout().map_err(|e| {
        manager_failed(format!(
            "GitRepository '{repo_ns}/{}' spec.timeout: {e}",
            source_ref.name
        ))
    })?;
    let branches = branches(automation, spec.reference.as_ref())?;
    let signing = match &git.commit.signing_key {
        Some(key) => {
            let name = key.secret_ref.name.clone();
            let data = get_secret(objects, &ns, &name).await.map_err(|e| {
                Failure::retry(
                    SOURCE_MANAGER_FAILED_REASON,
                    format!("could not find signing key secret '{name}': {e}"),
                )
            })?;
            let kind = match key.key_type() {
                SigningKeyType::Gpg => "gpg",
                SigningKeyType::Ssh => "ssh",
            };
            // Decrypting an OpenPGP key is CPU work: off the async threads.
            let signer =
                tokio::task::spawn_blocking(move || git::Signer::from_secret(&name, kind, &data))
                    .await
                    .map_err(|e| Failure::retry(SOURCE_MANAGER_FAILED_REASON, e.to_string()))?
                    .map_err(|e| Failure::retry(SOURCE_MANAGER_FAILED_REASON, e.to_string()))?;
            Some(signer)
        }
        None => None,
    };
    let commit = CommitSettings {
        author_name: git.commit.author.name.clone(),
        author_email: git.commit.author.email.clone(),
        template: git.commit.message_template.clone().unwrap_or_default(),
        values: git.commit.message_template_values.clone(),
        signing,
    };
    Ok(Source {
        remote: Remote {
            url: spec.url.clone(),
            auth,
            provider,
            proxy,
            timeout,
        },
        branches,
        commit,
    })
}

/// A Git failure (Ready=False `GitOperationFailed`, retried).
pub fn git_failed(message: impl Into<String>) -> Failure {
    Failure::retry(GIT_OPERATION_FAILED_REASON, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn automation(git: serde_json::Value) -> ImageUpdateAutomation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageUpdateAutomation",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {
                "interval": "1m",
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
                "git": git,
            },
        }))
        .unwrap()
    }

    fn author() -> serde_json::Value {
        serde_json::json!({"author": {"email": "bot@example.com"}})
    }

    #[test]
    fn push_branch_defaults_to_the_checkout_branch() {
        let a = automation(serde_json::json!({
            "checkout": {"ref": {"branch": "main"}}, "commit": author(),
        }));
        let b = branches(&a, None).unwrap();
        assert_eq!((b.push_branch.as_str(), b.switch_branch), ("main", false));
        let b = branches(&automation(serde_json::json!({"commit": author()})), None).unwrap();
        assert_eq!((b.push_branch.as_str(), b.switch_branch), ("master", false));
    }

    #[test]
    fn an_explicit_push_branch_switches_branch() {
        let a = automation(serde_json::json!({
            "checkout": {"ref": {"branch": "main"}}, "commit": author(),
            "push": {"branch": "auto", "refspec": "refs/heads/auto:refs/heads/x", "options": {"ci.skip": ""}},
        }));
        let b = branches(&a, None).unwrap();
        assert_eq!((b.push_branch.as_str(), b.switch_branch), ("auto", true));
        assert_eq!(b.refspec.as_deref(), Some("refs/heads/auto:refs/heads/x"));
        assert_eq!(b.push_options.len(), 1);
        // A tag checkout never equals a push branch.
        let a = automation(serde_json::json!({
            "checkout": {"ref": {"tag": "v1"}}, "commit": author(), "push": {"branch": "main"},
        }));
        assert!(branches(&a, None).unwrap().switch_branch);
    }

    #[test]
    fn a_tag_checkout_without_push_branch_cannot_be_inferred() {
        let a = automation(serde_json::json!({
            "checkout": {"ref": {"tag": "v1"}}, "commit": author(),
        }));
        let err = branches(&a, None).unwrap_err();
        assert_eq!(err.reason(), SOURCE_MANAGER_FAILED_REASON);
        assert!(err.message().contains("push spec not provided"), "{err}");
        // The GitRepository's ref is used when the automation names none.
        let a = automation(serde_json::json!({"commit": author()}));
        let r = GitRepositoryRef {
            branch: "dev".into(),
            ..Default::default()
        };
        assert_eq!(branches(&a, Some(&r)).unwrap().push_branch, "dev");
    }
}
