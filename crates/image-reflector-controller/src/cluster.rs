//! [`Cluster`] over the API server and the registry client: ImageRepositories from the watch cache,
//! Namespaces and Secrets from the API, digests with the repository's access options.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::{ImagePolicy, ImageRepository};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use registry::{AccessSpec, SecretData, SecretSource, resolve_access};
use runtime::events::{EventRecorder, EventType};

use crate::policy::Cluster;
use crate::repository::ApiSecrets;

/// How long a reconcile waits for the ImageRepository cache to fill after a start.
const CACHE_SYNC_WAIT: Duration = Duration::from_secs(30);

/// The controller's [`Cluster`].
pub struct KubeCluster {
    /// API client.
    pub client: kube::Client,
    /// The ImageRepository controller's cache (same shard and namespaces as the policies).
    pub repositories: Store<ImageRepository>,
    /// Registry client shared with the ImageRepository reconciler.
    pub registry: registry::Client,
    /// Event recorder.
    pub recorder: Arc<EventRecorder>,
}

/// The secrets an ImageRepository references, for [`resolve_access`].
pub fn access_spec(repo: &ImageRepository) -> AccessSpec {
    let s = &repo.spec;
    AccessSpec {
        namespace: repo.metadata.namespace.clone().unwrap_or_default(),
        secret_ref: s.secret_ref.as_ref().map(|r| r.name.clone()),
        cert_secret_ref: s.cert_secret_ref.as_ref().map(|r| r.name.clone()),
        proxy_secret_ref: s.proxy_secret_ref.as_ref().map(|r| r.name.clone()),
        service_account_name: s.service_account_name.clone(),
        provider: Some(s.provider().as_str().to_string()),
    }
}

/// The contents of Secret `namespace/name` as the registry keychain takes them.
pub fn secret_data(namespace: &str, name: &str, secret: Secret) -> SecretData {
    SecretData {
        name: format!("{namespace}/{name}"),
        secret_type: secret.type_.unwrap_or_default(),
        data: secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    }
}

/// [`Cluster::digest`] with the repository's secrets read from `secrets`.
pub async fn digest(
    registry: &registry::Client,
    secrets: &impl SecretSource,
    repo: &ImageRepository,
    image: &registry::ImageRef,
    tag: &str,
) -> Result<String, String> {
    let access = resolve_access(&access_spec(repo), secrets)
        .await
        .map_err(|e| format!("failed to configure authentication options: {e}"))?;
    let timeout = repo.spec.get_timeout().map_err(|e| e.to_string())?;
    registry
        .manifest_digest(image, tag, &access, timeout)
        .await
        .map_err(|e| {
            format!(
                "failed fetching descriptor for \"{}:{tag}\": {e}",
                image.canonical()
            )
        })
}

impl Cluster for KubeCluster {
    async fn image_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ImageRepository>, String> {
        // Right after a start the cache may still be filling; a miss then would be a false NotFound.
        if tokio::time::timeout(CACHE_SYNC_WAIT, self.repositories.wait_until_ready())
            .await
            .is_err()
        {
            return Err("the ImageRepository cache has not synced yet".into());
        }
        let key = ObjectRef::<ImageRepository>::new(name).within(namespace);
        Ok(self.repositories.get(&key).map(|r| (*r).clone()))
    }

    async fn namespace_labels(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = api.get(name).await.map_err(|e| e.to_string())?;
        Ok(ns.metadata.labels.unwrap_or_default())
    }

    async fn digest(
        &self,
        repo: &ImageRepository,
        image: &registry::ImageRef,
        tag: &str,
    ) -> Result<String, String> {
        let secrets = ApiSecrets::new(self.client.clone());
        digest(&self.registry, &secrets, repo, image, tag).await
    }

    async fn event(&self, policy: &ImagePolicy, type_: EventType, reason: &str, message: &str) {
        self.recorder
            .publish_for(policy, type_, reason, message, BTreeMap::new())
            .await;
    }
}
