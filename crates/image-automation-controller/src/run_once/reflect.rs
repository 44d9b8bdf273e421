//! `run-once`'s scan and select: what image-reflector-controller does for an ImageRepository and
//! its ImagePolicies, with the reflector's own code (access options, exclusion list, tag order,
//! tag store, and the ImagePolicy reconciler itself over a [`Cluster`] of local objects).

use std::collections::BTreeMap;
use std::sync::Arc;

use api::image_repository::ScanResult;
use api::meta::{ACCESS_DENIED_REASON, DEPENDENCY_NOT_READY_REASON, READY, STALLED};
use api::{ImagePolicy, ImageRepository};
use image_reflector_controller::cluster::{access_spec, digest};
use image_reflector_controller::policy::{Cluster, PolicyOptions, PolicyReconciler};
use image_reflector_controller::repository::{ScanError, scan_tags};
use kube::ResourceExt;
use runtime::conditions;
use runtime::events::EventType;
use runtime::reconcile::Reconciler;
use store::{RepoKey, TagStore};

use super::objects::LocalObjects;
use super::{ErrorKind, RunError};

/// Scans `repo`'s image into `store` as the ImageRepository reconciler does, and records the
/// result in its status (`lastScanResult`, `canonicalImageName`, `observedExclusionList`).
pub async fn scan(
    client: &registry::Client,
    store: &Arc<TagStore>,
    objects: &LocalObjects,
    repo: &mut ImageRepository,
) -> Result<ScanResult, RunError> {
    let what = format!(
        "ImageRepository {}/{}",
        repo.namespace().unwrap_or_default(),
        repo.name_any()
    );
    let config = |m: String| RunError::new(ErrorKind::Config, format!("{what}: {m}"));
    let transient = |m: String| RunError::new(ErrorKind::Transient, format!("{what}: {m}"));
    let image = registry::ImageRef::parse(&repo.spec.image, repo.spec.insecure)
        .map_err(|e| config(format!("spec.image: {e}")))?;
    let timeout = repo
        .spec
        .get_timeout()
        .map_err(|e| config(format!("spec.timeout: {e}")))?;
    // Missing or malformed credentials need a change of the input: configuration errors.
    let access = tokio::time::timeout(
        timeout,
        registry::resolve_access(&access_spec(repo), objects),
    )
    .await
    .map_err(|_| transient("failed to configure authentication options: timed out".into()))?
    .map_err(|e| config(format!("failed to configure authentication options: {e}")))?;
    let exclusion_list = repo.spec.get_exclusion_list();
    let key = RepoKey::new(repo.namespace().unwrap_or_default(), repo.name_any());
    let result = scan_tags(
        client,
        store,
        &image,
        &access,
        &key,
        &exclusion_list,
        timeout,
    )
    .await
    .map_err(|e| match e {
        ScanError::List(e) if e.is_unauthorized() => config(format!("scan failed: {e}")),
        ScanError::List(e) => transient(format!("scan failed: {e}")),
        ScanError::Exclusion(e) => config(format!("spec.exclusionList: {e}")),
        ScanError::Store(_) => RunError::new(ErrorKind::Other, format!("{what}: {e}")),
    })?;
    let status = repo.status.get_or_insert_default();
    status.last_scan_result = Some(result.clone());
    status.canonical_image_name = Some(image.canonical());
    status.observed_exclusion_list = exclusion_list;
    Ok(result)
}

/// The [`Cluster`] of the ImagePolicy reconciler: the scanned repositories, the Namespaces of the
/// input (labels for `accessFrom`), digests from the registry with the repository's secrets.
pub struct LocalCluster {
    /// Scanned ImageRepositories by `namespace/name`.
    pub repositories: BTreeMap<String, ImageRepository>,
    /// Secrets and Namespaces.
    pub objects: LocalObjects,
    /// Registry client.
    pub registry: registry::Client,
}

impl Cluster for LocalCluster {
    async fn image_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ImageRepository>, String> {
        Ok(self
            .repositories
            .get(&format!("{namespace}/{name}"))
            .cloned())
    }

    async fn namespace_labels(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        // A namespace absent from the input has no labels: only an empty `accessFrom` selector
        // admits it.
        Ok(self
            .objects
            .manifests()
            .namespaces
            .iter()
            .find(|n| n.object.name_any() == name)
            .and_then(|n| n.object.metadata.labels.clone())
            .unwrap_or_default())
    }

    async fn digest(
        &self,
        repo: &ImageRepository,
        image: &registry::ImageRef,
        tag: &str,
    ) -> Result<String, String> {
        digest(&self.registry, &self.objects, repo, image, tag).await
    }

    async fn event(&self, policy: &ImagePolicy, type_: EventType, reason: &str, message: &str) {
        tracing::debug!(policy = %policy.name_any(), ?type_, reason, message, "event");
    }
}

/// Runs the ImagePolicy reconciler once on `policy` over `cluster`'s repositories and `store`;
/// the policy's status carries the result. `Err` when it selected no image.
pub async fn select(
    reconciler: &PolicyReconciler<LocalCluster>,
    policy: &mut ImagePolicy,
) -> Result<(), RunError> {
    // The outcome is in the conditions (the error repeats the Ready message).
    let _ = reconciler.reconcile(policy).await;
    let status = policy.status.get_or_insert_default();
    if status.latest_ref.is_some() {
        return Ok(());
    }
    let what = format!(
        "ImagePolicy {}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    );
    let conds = &policy
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = conditions::get(conds, READY);
    let (reason, message) = ready.map_or((String::new(), String::new()), |c| {
        (c.reason.clone(), c.message.clone())
    });
    let stalled = conditions::get(conds, STALLED).is_some_and(|c| c.status == "True");
    let missing_dependency =
        reason == DEPENDENCY_NOT_READY_REASON && message.contains("does not exist");
    let kind = if stalled || reason == ACCESS_DENIED_REASON || missing_dependency {
        ErrorKind::Config
    } else {
        ErrorKind::Transient
    };
    let message = if message.is_empty() {
        "no image selected".to_owned()
    } else {
        message
    };
    Err(RunError::new(kind, format!("{what}: {reason}: {message}")))
}

/// The reconciler: run-once has no dependency to wait for, and no workload identity.
pub fn reconciler(
    cluster: LocalCluster,
    store: Arc<TagStore>,
    no_cross_namespace_refs: bool,
) -> PolicyReconciler<LocalCluster> {
    PolicyReconciler::new(
        cluster,
        store,
        PolicyOptions {
            no_cross_namespace_refs,
            requeue_dependency: std::time::Duration::ZERO,
            object_level_workload_identity: false,
        },
    )
}
