//! OCI registry client for the image reflector: image references and canonical names, docker config
//! keychains, TLS/proxy options, token and basic auth, tag listing across `Link` pages, manifest digests,
//! `429`/`Retry-After` backoff and a per-registry concurrency limit.
//!
//! It knows nothing of Kubernetes objects: the controller hands over secret contents ([`SecretData`])
//! through [`SecretSource`], and receives tags, digests and typed errors.

mod client;
mod error;
mod keychain;
mod options;
mod reference;

pub use client::{Client, ClientConfig, MANIFEST_ACCEPT, RequestObserver};
pub use error::RegistryError;
pub use keychain::{
    Credential, DOCKER_CFG_KEY, DOCKER_CFG_TYPE, DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE,
    Keychain, KeychainError, SecretData,
};
pub use options::{
    Access, AccessSpec, OptionsError, ProxyOptions, SecretSource, SourceError, TlsOptions,
    TransportOptions, resolve_access,
};
pub use reference::{DEFAULT_REGISTRY, ImageRef, ReferenceError, Scheme, validate_tag};
