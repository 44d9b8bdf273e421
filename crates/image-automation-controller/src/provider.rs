//! Git provider credentials for GitRepository `spec.provider` (`automation.md` §2.4): `github`, a
//! GitHub App installation token (user `x-access-token`); `azure`, an AAD token for Azure DevOps
//! (bearer) of the controller's Azure identity or, with `spec.serviceAccountName` (else
//! `--default-service-account`) and the `ObjectLevelWorkloadIdentity` gate, of that service account
//! in the ImageUpdateAutomation's namespace: the registry crate's object-level workload identity
//! (TokenRequest, AAD client-assertion exchange) and its token cache. Tokens are fetched when the
//! source is resolved and cached, per identity, until shortly before they expire.
//! They replace the Secret's `username`/`password`/`bearerToken`; its TLS options still apply to Git.
//!
//! Endpoints: the GitHub API is the Secret's `githubAppBaseURL`, else `$GITHUB_API_URL`, else
//! `https://api.github.com`; Azure's are the registry's (`AZURE_AUTHORITY_HOST`, `AZURE_FEDERATED_TOKEN_FILE`,
//! `AZURE_POD_IDENTITY_AUTHORITY_HOST`, ...). Provider token requests go through the GitRepository's proxy.

pub(crate) mod github;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use registry::cloud::{CacheLimits, TokenCache};
use registry::{CloudProvider, ProviderAccess, ServiceAccounts};

use api::git_repository::GitRepository;
use api::image_update_automation::INVALID_SOURCE_CONFIGURATION_REASON;
use api::meta::FEATURE_GATE_DISABLED_REASON;
use kube::ResourceExt;

use crate::source::{Failure, invalid_source, manager_failed};

/// Azure DevOps' token scope (its application ID).
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// Environment variable moving the default GitHub API (GitHub Actions' name for it).
pub const GITHUB_API_URL_VAR: &str = "GITHUB_API_URL";
/// Bound on one provider token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The current time; replaceable so tests can move past token expiry without waiting.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A credential a provider issued: replaces the Secret's credential for Git. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderCredential {
    kind: Kind,
    /// Who it was issued to, without secrets (a digest for GitHub Apps).
    identity: String,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for ProviderCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Basic { username, .. } => format!("basic(user={username}, password=<redacted>)"),
            Kind::Bearer(_) => "bearer(<redacted>)".to_string(),
        };
        f.debug_struct("ProviderCredential")
            .field("kind", &kind)
            .field("identity", &self.identity)
            .finish()
    }
}

impl ProviderCredential {
    /// The Git options with this credential in place of the Secret's.
    pub fn apply(&self, auth: git::GitAuth) -> git::GitAuth {
        match &self.kind {
            Kind::Basic { username, password } => {
                auth.with_issued_basic(username.clone(), password.clone(), self.identity.clone())
            }
            Kind::Bearer(token) => auth.with_issued_bearer(token.clone(), self.identity.clone()),
        }
    }
}

/// Object-level workload identity inputs of one resolution.
pub struct ObjectIdentity<'a> {
    /// Feature gate `ObjectLevelWorkloadIdentity`.
    pub enabled: bool,
    /// The ImageUpdateAutomation's namespace: where the service account is looked up.
    pub namespace: &'a str,
    /// The API server's service accounts (`None` without one, e.g. `run-once`).
    pub accounts: Option<Arc<dyn ServiceAccounts>>,
}

/// Provider authentication of the process: endpoints, Azure context, clock and the token cache.
pub struct Providers {
    azure: registry::AuthContext,
    github_api: String,
    clock: Clock,
    /// GitHub App tokens (Azure's live in the registry context's cache); the registry's cache type,
    /// so every issued credential follows one refresh rule.
    cache: TokenCache<String, ProviderCredential>,
}

impl Providers {
    /// Providers over `azure` (the registry's Azure identity and endpoints) with `github_api` as the
    /// default GitHub API and `clock` as the time.
    pub fn new(azure: registry::AuthContext, github_api: String, clock: Clock) -> Providers {
        Providers {
            azure,
            github_api,
            clock,
            cache: TokenCache::new(CacheLimits::default()),
        }
    }

    /// The process-wide providers: the registry's global Azure context, `$GITHUB_API_URL`.
    pub fn global() -> &'static Providers {
        static GLOBAL: OnceLock<Providers> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let api = std::env::var(GITHUB_API_URL_VAR)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| github::DEFAULT_API.to_string());
            Providers::new(
                registry::AuthContext::global().clone(),
                api,
                Arc::new(SystemTime::now),
            )
        })
    }

    /// The credential `repo`'s `spec.provider` calls for, `None` for `generic`. `secret` is the data
    /// of its `secretRef` (empty without one), `proxy` its proxy, `object` the object-level workload
    /// identity inputs (the Azure identity is the context's default service account only when both
    /// the gate and the context enable it). Misconfiguration stalls (Flux's messages); a failed token
    /// request is a retried `SourceManagerFailed` naming the GitRepository, the provider and the cause.
    pub async fn credential(
        &self,
        repo: &GitRepository,
        secret: &BTreeMap<String, Vec<u8>>,
        proxy: Option<&git::ProxyOptions>,
        object: ObjectIdentity<'_>,
    ) -> Result<Option<ProviderCredential>, Failure> {
        let object_level_identity = object.enabled;
        let ns = repo.namespace().unwrap_or_default();
        let spec = &repo.spec;
        let secret_name = spec
            .secret_ref
            .as_ref()
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty());
        let provider = spec.provider();
        let failed = |cause: String| {
            manager_failed(format!(
                "failed to configure authentication options: GitRepository '{ns}/{}' provider '{provider}': {cause}",
                repo.name_any()
            ))
        };
        match provider {
            "generic" => {
                if secret.contains_key(github::KEY_APP_ID) {
                    return Err(invalid_source(format!(
                        "secretRef '{ns}/{}' has github app data but provider is not set to github",
                        secret_name.unwrap_or_default()
                    )));
                }
                Ok(None)
            }
            "github" => {
                if secret_name.is_none() || !github::has_app_data(secret) {
                    return Err(invalid_source(
                        "secretRef with github app data must be specified when provider is set to github",
                    ));
                }
                if !github::names_one_installation(secret) {
                    return Err(manager_failed(format!(
                        "secret '{ns}/{}' must contain exactly one of '{}' or '{}'",
                        secret_name.unwrap_or_default(),
                        github::KEY_INSTALLATION_OWNER,
                        github::KEY_INSTALLATION_ID
                    )));
                }
                let app = github::App::from_secret(secret, &self.github_api)
                    .map_err(|e| failed(e.to_string()))?;
                let key = format!("github\0{}", app.cache_key());
                if let Some(c) = self.cached(&key) {
                    return Ok(Some(c));
                }
                let http = http_client(Some(secret), proxy).map_err(&failed)?;
                let token = app
                    .installation_token(&http, self.now())
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let credential = ProviderCredential {
                    kind: Kind::Basic {
                        username: github::USERNAME.to_string(),
                        password: token.token,
                    },
                    identity: format!("github-app:{}", app.cache_key()),
                };
                self.obtained(provider, repo, key, &credential, token.expires_at);
                Ok(Some(credential))
            }
            "azure" | "aws" if spec.service_account_name.is_some() && !object_level_identity => {
                Err(Failure::stalled(
                    FEATURE_GATE_DISABLED_REASON,
                    "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller",
                ))
            }
            "azure" => {
                // The message already names the provider.
                let failed = |m: String| {
                    failed(m.strip_prefix("provider 'azure': ").unwrap_or(&m).to_string())
                };
                let access = if object_level_identity {
                    registry::object_provider_access(
                        CloudProvider::Azure,
                        &self.azure,
                        object.namespace,
                        spec.service_account_name.as_deref(),
                        || object.accounts,
                    )
                    .map_err(|e| failed(e.to_string()))?
                } else {
                    ProviderAccess::new(CloudProvider::Azure, self.azure.clone())
                };
                let http = http_client(None, proxy).map_err(&failed)?;
                // Cached by the registry's context, per identity (namespace, service account,
                // tenant, client) and scope.
                let token = access
                    .access_token(&http, AZURE_DEVOPS_SCOPE, Instant::now() + REQUEST_TIMEOUT)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                Ok(Some(ProviderCredential {
                    kind: Kind::Bearer(token),
                    identity: format!("azure:{}:{AZURE_DEVOPS_SCOPE}", access.identity),
                }))
            }
            "aws" => Err(failed(
                "AWS CodeCommit authentication is not supported by this controller: use provider 'generic' with a credentials Secret".into(),
            )),
            other => Err(Failure::stalled(
                INVALID_SOURCE_CONFIGURATION_REASON,
                format!(
                    "GitRepository '{ns}/{}' spec.provider '{other}' is not supported (generic, github, azure or aws): invalid source configuration",
                    repo.name_any()
                ),
            )),
        }
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    fn cached(&self, key: &str) -> Option<ProviderCredential> {
        self.cache.get(&key.to_string(), self.now())
    }

    /// Logs (without the token) and caches a fresh credential until shortly before `expires_at`.
    fn obtained(
        &self,
        provider: &str,
        repo: &GitRepository,
        key: String,
        credential: &ProviderCredential,
        expires_at: SystemTime,
    ) {
        let now = self.now();
        let lifetime = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
        tracing::debug!(
            provider,
            gitrepository = %format!("{}/{}", repo.namespace().unwrap_or_default(), repo.name_any()),
            expires_in_s = lifetime.as_secs(),
            "obtained Git provider credentials"
        );
        self.cache.store(key, credential.clone(), expires_at, now);
    }

    /// Drops `credential` from the cache (after a Git server refused it), so the next run fetches anew.
    pub fn forget(&self, credential: &ProviderCredential) {
        match &credential.kind {
            Kind::Bearer(token) => self
                .azure
                .forget(&registry::Credential::RegistryToken(token.clone())),
            Kind::Basic { .. } => self.cache.retain(|_, c| c != credential),
        }
    }
}

/// After a Git error: when the server refused an issued credential (revoked, or its permissions
/// changed), drop it from the process-wide cache so that the next run asks the provider again.
pub fn forget_if_refused(issued: Option<&ProviderCredential>, e: &git::GitError) {
    if let (
        Some(issued),
        git::GitError::Remote {
            kind: git::RemoteErrorKind::Auth,
            ..
        },
    ) = (issued, e)
    {
        Providers::global().forget(issued);
    }
}

/// The credential of `repo`'s provider, from the process-wide [`Providers`]: the one call
/// [`crate::source::resolve`] makes.
pub async fn credential(
    repo: &GitRepository,
    secret: &BTreeMap<String, Vec<u8>>,
    proxy: Option<&git::ProxyOptions>,
    object: ObjectIdentity<'_>,
) -> Result<Option<ProviderCredential>, Failure> {
    Providers::global()
        .credential(repo, secret, proxy, object)
        .await
}

/// An HTTP client for provider APIs: the Secret's `ca.crt` (added to the system roots) and
/// `tls.crt`/`tls.key` when given, and the GitRepository's proxy.
fn http_client(
    tls: Option<&BTreeMap<String, Vec<u8>>>,
    proxy: Option<&git::ProxyOptions>,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!(
            "image-automation-controller/",
            env!("CARGO_PKG_VERSION")
        ))
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5));
    if let Some(data) = tls {
        if let Some(ca) = data.get("ca.crt").filter(|v| !v.is_empty()) {
            let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
                format!(
                    "failed to parse CA certificate: {}",
                    registry::error_chain(&e)
                )
            })?;
            b = b.tls_certs_merge(certs);
        }
        if let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "failed to parse TLS certificate and key: {}",
                    registry::error_chain(&e)
                )
            })?;
            b = b.identity(id);
        }
    }
    if let Some(p) = proxy {
        let p = reqwest::Proxy::all(p.url())
            .map_err(|e| format!("invalid proxy: {}", registry::error_chain(&e)))?;
        b = b.proxy(p);
    }
    b.build()
        .map_err(|e| format!("failed to build HTTP client: {}", registry::error_chain(&e)))
}

#[cfg(test)]
mod tests;
