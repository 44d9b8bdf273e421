//! OCI registry client for the image reflector: image references and canonical names, docker config
//! keychains, TLS/proxy options, token and basic auth, tag listing across `Link` pages, manifest digests,
//! `429`/`Retry-After` backoff and a per-registry concurrency limit.
//!
//! It knows nothing of Kubernetes objects: the controller hands over secret contents ([`SecretData`])
//! through [`SecretSource`], and receives tags, digests and typed errors.
//!
//! ```no_run
//! # async fn scan(source: &impl registry::SecretSource) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use registry::{AccessSpec, Client, ClientConfig, ImageRef, resolve_access};
//!
//! let client = Client::new(ClientConfig::default())?; // one per process, cheap to clone
//! let image = ImageRef::parse("ghcr.io/stefanprodan/podinfo", false)?; // `ImageURLInvalid` on error
//! let spec = AccessSpec { namespace: "flux-system".into(), ..Default::default() };
//! let access = resolve_access(&spec, source).await?; // `AuthenticationFailed` on error
//! let tags = client.list_tags(&image, &access, Duration::from_secs(60)).await?; // `ReadOperationFailed`
//! let digest = client.manifest_digest(&image, "6.5.0", &access, Duration::from_secs(60)).await?;
//! # let _ = (tags, digest); Ok(()) }
//! ```

mod client;
pub mod cloud;
mod error;
mod keychain;
mod options;
mod reference;

pub use client::{Client, ClientConfig, MANIFEST_ACCEPT, RequestObserver, error_chain};
pub use cloud::{
    AuthContext, CacheLimits, CloudEnv, CloudError, CloudProvider, CredentialHelpers,
    ObjectLevelIdentity, ProviderAccess, ServiceAccounts,
};
pub use error::RegistryError;
pub use keychain::{
    Credential, DOCKER_CFG_KEY, DOCKER_CFG_TYPE, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE,
    Keychain, KeychainError, SecretData,
};
pub use options::{
    Access, AccessError, AccessSpec, OptionsError, ProxyOptions, SecretSource, SourceError,
    TlsOptions, TransportOptions, object_provider_access, resolve_access, resolve_access_with,
};
pub use reference::{DEFAULT_REGISTRY, ImageRef, ReferenceError, Scheme, validate_tag};
