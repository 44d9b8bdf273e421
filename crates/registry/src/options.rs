//! Access options for one ImageRepository: credentials (keychain), TLS and proxy, built from secret
//! contents in the order of reflector spec §1.7. The controller supplies the secrets through
//! [`SecretSource`]; this crate never sees Kubernetes objects.

use std::future::Future;
use std::sync::Arc;

use url::Url;

use std::time::Instant;

use crate::cloud::{
    AuthContext, CloudError, CloudProvider, CredentialHelpers, ProviderAccess, ServiceAccounts,
};
use crate::keychain::{Credential, Keychain, KeychainError, SecretData};
use crate::reference::ImageRef;

/// `ca.crt` key of a TLS secret.
pub const CA_CRT_KEY: &str = "ca.crt";
/// `tls.crt` key of a TLS secret.
pub const TLS_CRT_KEY: &str = "tls.crt";
/// `tls.key` key of a TLS secret.
pub const TLS_KEY_KEY: &str = "tls.key";
/// Legacy key for the CA certificate.
pub const CA_FILE_KEY: &str = "caFile";
/// Legacy key for the client certificate.
pub const CERT_FILE_KEY: &str = "certFile";
/// Legacy key for the client key.
pub const KEY_FILE_KEY: &str = "keyFile";
/// Proxy secret key holding the proxy URL.
pub const PROXY_ADDRESS_KEY: &str = "address";
/// Proxy secret key holding the user name.
pub const PROXY_USERNAME_KEY: &str = "username";
/// Proxy secret key holding the password.
pub const PROXY_PASSWORD_KEY: &str = "password";
/// Longest accepted proxy address, as Flux.
const MAX_PROXY_ADDRESS_LEN: usize = 2048;

/// TLS material for a registry: extra CA (added to the system roots) and an optional client pair.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsOptions {
    /// PEM CA bundle trusted in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key (mTLS).
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsOptions {
    // The key is secret; print only what is present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_pem.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Reads `ca.crt`, `tls.crt` and `tls.key` (legacy `caFile`, `certFile`, `keyFile` as fallbacks).
    /// The client pair must be given whole or not at all. The secret type is not checked, as upstream.
    pub fn from_secret(secret: &SecretData) -> Result<TlsOptions, OptionsError> {
        let get = |key: &str, legacy: &str| {
            secret
                .data
                .get(key)
                .or_else(|| secret.data.get(legacy))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let ca = get(CA_CRT_KEY, CA_FILE_KEY);
        let cert = get(TLS_CRT_KEY, CERT_FILE_KEY);
        let key = get(TLS_KEY_KEY, KEY_FILE_KEY);
        let client_pem = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(OptionsError::Tls {
                    secret: secret.name.clone(),
                    reason: format!("found '{TLS_CRT_KEY}' but no '{TLS_KEY_KEY}'"),
                });
            }
            (None, Some(_)) => {
                return Err(OptionsError::Tls {
                    secret: secret.name.clone(),
                    reason: format!("found '{TLS_KEY_KEY}' but no '{TLS_CRT_KEY}'"),
                });
            }
        };
        if ca.is_none() && client_pem.is_none() {
            return Err(OptionsError::Tls {
                secret: secret.name.clone(),
                reason: format!(
                    "no '{CA_CRT_KEY}', '{TLS_CRT_KEY}' or '{TLS_KEY_KEY}' key (nor legacy '{CA_FILE_KEY}', '{CERT_FILE_KEY}', '{KEY_FILE_KEY}')"
                ),
            });
        }
        let opts = TlsOptions {
            ca_pem: ca,
            client_pem,
        };
        // Parse now so a bad PEM is an options error, not a scan failure.
        crate::client::tls_parts(&opts).map_err(|reason| OptionsError::Tls {
            secret: secret.name.clone(),
            reason,
        })?;
        Ok(opts)
    }
}

/// A proxy for all registry traffic of one object; overrides environment proxies.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyOptions {
    /// Proxy URL (`http`, `https` or `socks5`), with user info when a user name was given.
    pub url: Url,
}

impl std::fmt::Debug for ProxyOptions {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut u = self.url.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        write!(f, "ProxyOptions({u})")
    }
}

impl ProxyOptions {
    /// Reads `address` (required; scheme http, https or socks5) and the optional `username`/`password`.
    pub fn from_secret(secret: &SecretData) -> Result<ProxyOptions, OptionsError> {
        let bad = |reason: String| OptionsError::Proxy {
            secret: secret.name.clone(),
            reason,
        };
        let address = secret
            .data
            .get(PROXY_ADDRESS_KEY)
            .ok_or_else(|| bad(format!("key '{PROXY_ADDRESS_KEY}' not found")))?;
        let address = String::from_utf8(address.clone())
            .map_err(|_| bad("proxy address is not UTF-8".to_string()))?;
        if address.is_empty() {
            return Err(bad("proxy address is empty".to_string()));
        }
        if address.len() > MAX_PROXY_ADDRESS_LEN {
            return Err(bad(format!(
                "proxy URL exceeds maximum length of {MAX_PROXY_ADDRESS_LEN} characters"
            )));
        }
        let mut url = Url::parse(&address)
            .map_err(|e| bad(format!("failed to parse proxy address '{address}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5") {
            return Err(bad(format!(
                "proxy URL must use http, https or socks5 scheme, got '{}'",
                url.scheme()
            )));
        }
        let text = |k: &str| {
            secret
                .data
                .get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(user) = text(PROXY_USERNAME_KEY) {
            url.set_username(&user)
                .map_err(|_| bad("proxy URL cannot carry a user name".to_string()))?;
            if let Some(pass) = text(PROXY_PASSWORD_KEY) {
                url.set_password(Some(&pass))
                    .map_err(|_| bad("proxy URL cannot carry a password".to_string()))?;
            }
        }
        Ok(ProxyOptions { url })
    }
}

/// Connection settings that select an HTTP client: TLS and proxy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TransportOptions {
    /// Extra CA and client certificate.
    pub tls: Option<TlsOptions>,
    /// Explicit proxy.
    pub proxy: Option<ProxyOptions>,
}

/// Everything needed to talk to one repository: credentials and transport.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Pull-secret keychain; empty means anonymous.
    pub keychain: Keychain,
    /// TLS and proxy settings.
    pub transport: TransportOptions,
    /// Cloud provider credentials, resolved lazily at request time; when set, the keychain is unused.
    pub provider: Option<ProviderAccess>,
    /// Credential helpers the keychain's `credHelpers`/`credsStore` may run (none by default).
    pub helpers: CredentialHelpers,
}

impl Access {
    /// The credential for `image`: from the provider, a credential helper, or the keychain's `auths`.
    /// `http` is the registry session's client (the object's proxy and TLS); `deadline` bounds the calls.
    pub async fn credential(
        &self,
        image: &ImageRef,
        http: &reqwest::Client,
        deadline: Instant,
    ) -> Result<Credential, AccessError> {
        if let Some(p) = &self.provider {
            return Ok(p.credential(image, http, deadline).await?);
        }
        if let Some(h) = self.keychain.helper_for(image) {
            if let Some(c) = self.helpers.get(h, image.registry(), deadline).await? {
                return Ok(c);
            }
            // As the Docker CLI: a helper without credentials for the registry means the `auths`
            // entries (usually none: anonymous) apply.
            tracing::debug!(
                helper = h,
                registry = image.registry(),
                "credential helper has no credentials for the registry"
            );
        }
        Ok(self.keychain.resolve(image)?)
    }
}

/// Why the credential for a request could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Cloud provider or credential helper failure.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// Bad docker config entry.
    #[error(transparent)]
    Keychain(#[from] KeychainError),
}

/// Which secrets an object references (the relevant `ImageRepository.spec` fields).
#[derive(Debug, Clone, Default)]
pub struct AccessSpec {
    /// Object namespace; secrets and the service account are looked up there.
    pub namespace: String,
    /// `spec.secretRef.name`.
    pub secret_ref: Option<String>,
    /// `spec.certSecretRef.name`.
    pub cert_secret_ref: Option<String>,
    /// `spec.proxySecretRef.name`.
    pub proxy_secret_ref: Option<String>,
    /// `spec.serviceAccountName`.
    pub service_account_name: Option<String>,
    /// `spec.provider` (`generic` when empty).
    pub provider: Option<String>,
}

/// Error from the controller's secret lookup (an API error other than not-found).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Where secrets and service accounts come from; implemented by the controller over the API server.
pub trait SecretSource {
    /// The secret `namespace/name`, or `None` if it does not exist.
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretData>, SourceError>> + Send;
    /// The `imagePullSecrets` names of service account `namespace/name`, or `None` if it does not exist.
    fn service_account_pull_secrets(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>, SourceError>> + Send;
    /// Service-account annotations and tokens for object-level workload identity; `None` (the
    /// default) when this source cannot reach the API server.
    fn service_accounts(&self) -> Option<Arc<dyn ServiceAccounts>> {
        None
    }
}

/// Why access options could not be built (mapped to `AuthenticationFailed` by the controller, except
/// [`OptionsError::ObjectLevelIdentityDisabled`] which means Stalled).
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// A referenced secret does not exist.
    #[error("secret '{0}' not found")]
    SecretNotFound(String),
    /// Reading a secret failed.
    #[error("failed to get secret '{name}': {source}")]
    GetSecret {
        /// `namespace/name`.
        name: String,
        /// API error.
        source: SourceError,
    },
    /// The service account does not exist.
    #[error("serviceaccount '{0}' not found")]
    ServiceAccountNotFound(String),
    /// Reading the service account failed.
    #[error("failed to get serviceaccount '{name}': {source}")]
    GetServiceAccount {
        /// `namespace/name`.
        name: String,
        /// API error.
        source: SourceError,
    },
    /// Unknown provider name.
    #[error("provider '{0}' not implemented")]
    ProviderNotImplemented(String),
    /// `serviceAccountName` with a cloud provider while the `ObjectLevelWorkloadIdentity` feature gate
    /// is off (upstream's message). Retrying cannot help, so the object is Stalled.
    #[error(
        "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
    )]
    ObjectLevelIdentityDisabled {
        /// `spec.provider`.
        provider: String,
        /// `namespace/name` of the service account.
        service_account: String,
    },
    /// Object-level workload identity, but the secret source cannot read service accounts.
    #[error(
        "provider '{provider}': service account '{service_account}': object-level workload identity needs the Kubernetes API, which this caller does not provide"
    )]
    NoServiceAccounts {
        /// `spec.provider`.
        provider: String,
        /// `namespace/name` of the service account.
        service_account: String,
    },
    /// Bad proxy secret.
    #[error("secret '{secret}': {reason}")]
    Proxy {
        /// `namespace/name`.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// Bad TLS secret.
    #[error("secret '{secret}': invalid TLS data: {reason}")]
    Tls {
        /// `namespace/name`.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// Bad docker config.
    #[error(transparent)]
    Keychain(#[from] KeychainError),
}

impl OptionsError {
    /// Whether the error cannot go away by retrying with the same spec (the controller marks the
    /// object Stalled instead of `AuthenticationFailed`).
    pub fn is_stalling(&self) -> bool {
        matches!(self, OptionsError::ObjectLevelIdentityDisabled { .. })
    }
}

/// Builds [`Access`] for an object with the process-wide [`AuthContext::global`] (process environment,
/// no credential helpers allowed). See [`resolve_access_with`].
pub async fn resolve_access(
    spec: &AccessSpec,
    source: &impl SecretSource,
) -> Result<Access, OptionsError> {
    resolve_access_with(spec, source, AuthContext::global()).await
}

/// Builds [`Access`] for an object in the order of reflector spec §1.7: proxy, provider, TLS, then pull
/// secrets (`secretRef` first, then the service account's `imagePullSecrets`), which are read only
/// without a provider. Provider credentials are fetched lazily, on the first registry request.
pub async fn resolve_access_with(
    spec: &AccessSpec,
    source: &impl SecretSource,
    context: &AuthContext,
) -> Result<Access, OptionsError> {
    let ns = spec.namespace.as_str();
    let mut access = Access {
        helpers: context.helpers().clone(),
        ..Default::default()
    };
    if let Some(name) = non_empty(&spec.proxy_secret_ref) {
        let secret = require_secret(source, ns, name).await?;
        access.transport.proxy = Some(ProxyOptions::from_secret(&secret)?);
    }
    let provider = non_empty(&spec.provider).unwrap_or("generic");
    if provider != "generic" {
        let Some(cloud) = CloudProvider::parse(provider) else {
            return Err(OptionsError::ProviderNotImplemented(provider.to_string()));
        };
        access.provider = Some(provider_access(spec, source, context, cloud)?);
    }
    if let Some(name) = non_empty(&spec.cert_secret_ref) {
        let secret = require_secret(source, ns, name).await?;
        access.transport.tls = Some(TlsOptions::from_secret(&secret)?);
    }
    if access.provider.is_some() {
        return Ok(access);
    }
    let mut pull = Vec::new();
    if let Some(name) = non_empty(&spec.secret_ref) {
        pull.push(require_secret(source, ns, name).await?);
    }
    if let Some(sa) = non_empty(&spec.service_account_name) {
        let sa_key = format!("{ns}/{sa}");
        let names = source
            .service_account_pull_secrets(ns, sa)
            .await
            .map_err(|e| OptionsError::GetServiceAccount {
                name: sa_key.clone(),
                source: e,
            })?
            .ok_or(OptionsError::ServiceAccountNotFound(sa_key))?;
        for name in names {
            pull.push(require_secret(source, ns, &name).await?);
        }
    }
    access.keychain = Keychain::from_pull_secrets(&pull)?;
    Ok(access)
}

/// The controller's identity, or the object's service account (`spec.serviceAccountName`, else the
/// operator's `--default-service-account`) when object-level workload identity applies.
fn provider_access(
    spec: &AccessSpec,
    source: &impl SecretSource,
    context: &AuthContext,
    cloud: CloudProvider,
) -> Result<ProviderAccess, OptionsError> {
    object_provider_access(
        cloud,
        context,
        &spec.namespace,
        non_empty(&spec.service_account_name),
        || source.service_accounts(),
    )
}

/// The identity an object in `namespace` uses with `cloud`: its `service_account_name`, else the
/// context's `--default-service-account` (gate on), read through `accounts`; else the controller's.
/// Shared by ImageRepositories and the Git providers of the automation controller.
pub fn object_provider_access(
    cloud: CloudProvider,
    context: &AuthContext,
    namespace: &str,
    service_account_name: Option<&str>,
    accounts: impl FnOnce() -> Option<Arc<dyn ServiceAccounts>>,
) -> Result<ProviderAccess, OptionsError> {
    let settings = context.object_level_identity();
    let explicit = service_account_name.filter(|s| !s.is_empty());
    let default = settings
        .default_service_account
        .as_deref()
        .filter(|s| settings.enabled && !s.is_empty());
    let Some(sa) = explicit.or(default) else {
        return Ok(ProviderAccess::new(cloud, context.clone()));
    };
    let service_account = format!("{namespace}/{sa}");
    if !settings.enabled {
        return Err(OptionsError::ObjectLevelIdentityDisabled {
            provider: cloud.to_string(),
            service_account,
        });
    }
    let accounts = accounts().ok_or_else(|| OptionsError::NoServiceAccounts {
        provider: cloud.to_string(),
        service_account,
    })?;
    Ok(ProviderAccess::for_service_account(
        cloud,
        context.clone(),
        namespace,
        sa,
        accounts,
        explicit.is_none(),
    ))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

async fn require_secret(
    source: &impl SecretSource,
    ns: &str,
    name: &str,
) -> Result<SecretData, OptionsError> {
    let key = format!("{ns}/{name}");
    match source.secret(ns, name).await {
        Ok(Some(mut s)) => {
            if s.name.is_empty() {
                s.name = key;
            }
            Ok(s)
        }
        Ok(None) => Err(OptionsError::SecretNotFound(key)),
        Err(e) => Err(OptionsError::GetSecret {
            name: key,
            source: e,
        }),
    }
}
