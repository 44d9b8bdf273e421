//! Cloud registry credentials for `spec.provider` (reflector spec §1.7): AWS ECR (private and public),
//! GCP (gcr.io, Artifact Registry) and Azure ACR, obtained lazily at request time from the controller's
//! workload identity and cached until shortly before they expire. Also the Docker credential-helper
//! protocol for pull secrets that name `credHelpers`/`credsStore`.
//!
//! All traffic goes through the registry client's own HTTP client (one TLS stack, the object's proxy).
//! Every endpoint can be moved with an environment variable, listed in [`CloudEnv::VARS`]; tests point
//! them at local simulations.

pub(crate) mod aws;
pub(crate) mod azure;
pub mod cache;
pub(crate) mod gcp;
pub(crate) mod helper;
pub(crate) mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;

use crate::client::error_chain;
use crate::keychain::Credential;
use crate::reference::ImageRef;

pub use cache::{CacheLimits, TokenCache};
pub use helper::{CredentialHelpers, DEFAULT_HELPER_TIMEOUT};
pub use workload::{
    AWS_AUDIENCE, AWS_ROLE_ARN_ANNOTATION, AZURE_AUDIENCE, AZURE_CLIENT_ID_ANNOTATION,
    AZURE_TENANT_ID_ANNOTATION, BoxFuture, DEFAULT_SERVICE_ACCOUNT_NOT_FOUND,
    GCP_SERVICE_ACCOUNT_ANNOTATION, GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION, ObjectLevelIdentity,
    ServiceAccounts,
};

/// A cloud credential provider named by `spec.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudProvider {
    /// Amazon ECR and ECR Public.
    Aws,
    /// Azure Container Registry.
    Azure,
    /// Google Container Registry and Artifact Registry.
    Gcp,
}

impl CloudProvider {
    /// The provider for a `spec.provider` value; `None` for `generic` and unknown names.
    pub fn parse(name: &str) -> Option<CloudProvider> {
        match name {
            "aws" => Some(CloudProvider::Aws),
            "azure" => Some(CloudProvider::Azure),
            "gcp" => Some(CloudProvider::Gcp),
            _ => None,
        }
    }

    /// The `spec.provider` value.
    pub fn name(self) -> &'static str {
        match self {
            CloudProvider::Aws => "aws",
            CloudProvider::Azure => "azure",
            CloudProvider::Gcp => "gcp",
        }
    }
}

impl fmt::Display for CloudProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why cloud or helper credentials could not be obtained. Messages never carry tokens or keys.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    /// The image's registry is not one the provider serves.
    #[error(
        "provider '{provider}': registry '{registry}' does not match the {provider} registry pattern {pattern}"
    )]
    UnsupportedRegistry {
        /// Provider.
        provider: CloudProvider,
        /// Registry host of the image.
        registry: String,
        /// The host pattern that was tried.
        pattern: &'static str,
    },
    /// No identity is configured, or its local inputs (token file) cannot be read.
    #[error("provider '{provider}': {reason}")]
    Identity {
        /// Provider.
        provider: CloudProvider,
        /// What is missing or unreadable.
        reason: String,
    },
    /// A call to an identity or token endpoint failed.
    #[error("provider '{provider}': {step}: {method} {url}: {reason}")]
    Endpoint {
        /// Provider.
        provider: CloudProvider,
        /// What was being obtained, e.g. `ECR GetAuthorizationToken`.
        step: &'static str,
        /// HTTP method.
        method: &'static str,
        /// Endpoint URL (without query).
        url: String,
        /// Status and error body, transport error, or what is wrong with the response.
        reason: String,
    },
    /// A credential helper is named but not in `--allowed-credential-helpers`.
    #[error(
        "credential helper 'docker-credential-{helper}' for registry '{registry}' is not allowed: add '{helper}' to --allowed-credential-helpers to run it"
    )]
    HelperNotAllowed {
        /// Helper name (suffix of `docker-credential-`).
        helper: String,
        /// Registry host.
        registry: String,
    },
    /// Running a credential helper failed or it answered something invalid.
    #[error("credential helper 'docker-credential-{helper}' for registry '{registry}': {reason}")]
    Helper {
        /// Helper name.
        helper: String,
        /// Registry host.
        registry: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where the controller's workload identity runs: whose identity a credential belongs to. Cache entries
/// are kept apart per identity, so one object's service account never lends its token to another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The controller's own identity (its pod's service account, node or instance).
    Controller,
    /// A service account in the object's namespace (object-level workload identity).
    ServiceAccount {
        /// Namespace of the object and the service account.
        namespace: String,
        /// Service account name.
        name: String,
    },
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Controller => f.write_str("controller"),
            Identity::ServiceAccount { namespace, name } => write!(f, "{namespace}/{name}"),
        }
    }
}

/// Environment variables read by the cloud providers, captured once. Values are never printed.
#[derive(Clone, Default)]
pub struct CloudEnv {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for CloudEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vars.keys()).finish()
    }
}

/// Test-only: `host=ip:port[,host=ip:port...]` makes the registry client connect to `ip:port` for
/// `host`, so a provider host pattern (e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com`) can reach a
/// loopback registry. Unset in production; never set it on a real controller.
pub const TEST_HOST_MAP_VAR: &str = "IMAGE_REFLECTOR_TEST_REGISTRY_HOST_MAP";

impl CloudEnv {
    /// Every variable the providers read: identity inputs and endpoint overrides.
    pub const VARS: &'static [&'static str] = &[
        // AWS identity: static keys, IRSA, EKS Pod Identity; region.
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        // AWS endpoints (the AWS SDKs' names).
        "AWS_ENDPOINT_URL_STS",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_ECR_PUBLIC",
        // GCP metadata server (the Go metadata client's name).
        "GCE_METADATA_HOST",
        // Azure workload identity and endpoints (azidentity's names).
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_AUTHORITY_HOST",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        // GCP token exchange endpoints for object-level identity (gcloud's override names).
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STS",
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS",
    ];

    /// Captures [`CloudEnv::VARS`] from the process environment.
    pub fn from_env() -> CloudEnv {
        CloudEnv::from_pairs(
            Self::VARS
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))),
        )
    }

    /// An environment from explicit pairs (tests, or a controller that reads a config file).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> CloudEnv {
        CloudEnv {
            vars: pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        }
    }

    /// A variable's non-empty value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

static GLOBAL: OnceLock<AuthContext> = OnceLock::new();

/// The current time; replaceable so tests can move past token expiry without waiting.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Shared state of cloud authentication: environment, allowed credential helpers and the token cache.
/// One per controller process; cheap to clone.
#[derive(Clone)]
pub struct AuthContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    env: CloudEnv,
    helpers: CredentialHelpers,
    clock: Clock,
    object_level: ObjectLevelIdentity,
    cache: TokenCache<CacheKey, Credential>,
}

/// Provider, identity, the identity's provider settings (service-account annotations, e.g. the role
/// ARN; empty for the controller) and what the token is good for (registry host, or the whole provider).
type CacheKey = (CloudProvider, Identity, String, String);

impl fmt::Debug for AuthContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthContext")
            .field("env", &self.inner.env)
            .field("helpers", &self.inner.helpers)
            .finish()
    }
}

impl Default for AuthContext {
    fn default() -> Self {
        AuthContext::new(CloudEnv::default(), CredentialHelpers::default())
    }
}

impl AuthContext {
    /// A context over `env` that may run the given credential helpers.
    pub fn new(env: CloudEnv, helpers: CredentialHelpers) -> AuthContext {
        AuthContext::with_clock(env, helpers, Arc::new(SystemTime::now))
    }

    /// Same, with a custom clock (tests).
    pub fn with_clock(env: CloudEnv, helpers: CredentialHelpers, clock: Clock) -> AuthContext {
        AuthContext {
            inner: Arc::new(ContextInner {
                env,
                helpers,
                clock,
                object_level: ObjectLevelIdentity::default(),
                cache: TokenCache::new(CacheLimits::default()),
            }),
        }
    }

    /// A copy of the settings with `change` applied and an empty cache (configure before first use).
    fn reconfigured(
        &self,
        change: impl FnOnce(&mut CacheLimits, &mut ObjectLevelIdentity),
    ) -> AuthContext {
        let (mut limits, mut object_level) =
            (self.inner.cache.limits(), self.inner.object_level.clone());
        change(&mut limits, &mut object_level);
        AuthContext {
            inner: Arc::new(ContextInner {
                env: self.inner.env.clone(),
                helpers: self.inner.helpers.clone(),
                clock: self.inner.clock.clone(),
                object_level,
                cache: TokenCache::new(limits),
            }),
        }
    }

    /// The same context with other cache bounds and an empty cache (configure before first use).
    pub fn with_cache_limits(self, limits: CacheLimits) -> AuthContext {
        self.reconfigured(|l, _| *l = limits)
    }

    /// The same context with object-level workload identity settings (feature gate
    /// `ObjectLevelWorkloadIdentity`, `--default-service-account`) and an empty cache.
    pub fn with_object_level_identity(self, settings: ObjectLevelIdentity) -> AuthContext {
        self.reconfigured(|_, o| *o = settings)
    }

    /// The object-level workload identity settings.
    pub fn object_level_identity(&self) -> &ObjectLevelIdentity {
        &self.inner.object_level
    }

    /// Makes `context` the one [`AuthContext::global`] returns; the controller calls this once at
    /// start-up with its flags. Fails (returning it) when the global context was already set or used.
    pub fn install_global(context: AuthContext) -> Result<(), AuthContext> {
        GLOBAL.set(context)
    }

    /// The process-wide context used by [`crate::resolve_access`]: the installed one, else the process
    /// environment with no credential helpers allowed.
    pub fn global() -> &'static AuthContext {
        GLOBAL.get_or_init(|| AuthContext::new(CloudEnv::from_env(), CredentialHelpers::default()))
    }

    /// The environment in use.
    pub fn env(&self) -> &CloudEnv {
        &self.inner.env
    }

    /// The allowed credential helpers.
    pub fn helpers(&self) -> &CredentialHelpers {
        &self.inner.helpers
    }

    pub(crate) fn now(&self) -> SystemTime {
        (self.inner.clock)()
    }

    /// Drops every cached credential (e.g. after the registry refused one).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Drops every cached entry holding `credential` (e.g. after a server refused it).
    pub fn forget(&self, credential: &Credential) {
        self.inner.cache.retain(|_, c| c != credential);
    }

    fn cached(&self, key: &CacheKey) -> Option<Credential> {
        self.inner.cache.get(key, self.now())
    }

    fn store(&self, key: CacheKey, credential: Credential, expires_at: SystemTime) {
        self.inner
            .cache
            .store(key, credential, expires_at, self.now());
    }
}

/// Lazy provider credentials of one object: resolved at request time, as upstream, so that failures
/// surface as registry errors (`ReadOperationFailed`).
#[derive(Clone)]
pub struct ProviderAccess {
    /// The provider.
    pub provider: CloudProvider,
    /// Whose identity is used.
    pub identity: Identity,
    context: AuthContext,
    /// The API server's service accounts, for [`Identity::ServiceAccount`].
    accounts: Option<Arc<dyn ServiceAccounts>>,
    /// Whether the service account is the operator's `--default-service-account` (lockdown).
    default_account: bool,
}

impl fmt::Debug for ProviderAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderAccess({}, {:?})", self.provider, self.identity)
    }
}

/// A credential and when it expires.
pub(crate) struct Issued {
    pub(crate) credential: Credential,
    pub(crate) expires_at: SystemTime,
}

/// What a provider call needs: the HTTP client of the registry session, its deadline and the context.
pub(crate) struct Call<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) deadline: Instant,
    pub(crate) context: &'a AuthContext,
    pub(crate) provider: CloudProvider,
}

impl ProviderAccess {
    /// Provider access with the controller's identity.
    pub fn new(provider: CloudProvider, context: AuthContext) -> ProviderAccess {
        ProviderAccess {
            provider,
            identity: Identity::Controller,
            context,
            accounts: None,
            default_account: false,
        }
    }

    /// Provider access with service account `namespace/name` (object-level workload identity), whose
    /// tokens come from `accounts`; `default_account` when it is the operator's default.
    pub fn for_service_account(
        provider: CloudProvider,
        context: AuthContext,
        namespace: &str,
        name: &str,
        accounts: Arc<dyn ServiceAccounts>,
        default_account: bool,
    ) -> ProviderAccess {
        ProviderAccess {
            provider,
            identity: Identity::ServiceAccount {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            context,
            accounts: Some(accounts),
            default_account,
        }
    }

    /// Drops the cached credential for `image`'s registry (after the registry refused it).
    pub fn forget(&self, image: &ImageRef) {
        if let Ok(scope) = self.scope(image.registry()) {
            self.context.inner.cache.retain(|(p, id, _, s), _| {
                !(*p == self.provider && *id == self.identity && *s == scope)
            });
        }
    }

    /// What a token is good for: one registry, one account and region, or the whole provider.
    fn scope(&self, registry: &str) -> Result<String, CloudError> {
        match self.provider {
            CloudProvider::Aws => aws::cache_scope(registry),
            CloudProvider::Azure => azure::cache_scope(registry),
            CloudProvider::Gcp => gcp::cache_scope(registry),
        }
    }

    /// The registry credential for `image`: cached, or fetched from the provider's endpoints.
    pub async fn credential(
        &self,
        image: &ImageRef,
        http: &reqwest::Client,
        deadline: Instant,
    ) -> Result<Credential, CloudError> {
        let registry = image.registry();
        let scope = self.scope(registry)?;
        let (key, account) = self.cache_key(scope).await?;
        if let Some(c) = self.context.cached(&key) {
            return Ok(c);
        }
        let call = self.call(http, deadline);
        let token = self.federated_token(&call, account).await?;
        let token = token.as_ref();
        let issued = match self.provider {
            CloudProvider::Aws => aws::registry_credential(&call, registry, token).await?,
            CloudProvider::Azure => azure::registry_credential(&call, image, token).await?,
            CloudProvider::Gcp => gcp::registry_credential(&call, token).await?,
        };
        tracing::debug!(
            provider = %self.provider,
            identity = %self.identity,
            registry,
            expires_in_s = issued
                .expires_at
                .duration_since(self.context.now())
                .unwrap_or_default()
                .as_secs(),
            "obtained registry credentials"
        );
        self.context
            .store(key, issued.credential.clone(), issued.expires_at);
        Ok(issued.credential)
    }

    /// An access token of this identity for `scope` (`<resource>/.default`, e.g. Azure DevOps'
    /// `499b84ac-1321-427f-aa17-267ca6975798/.default`): the AAD client-assertion exchange of the
    /// service account's or the controller's federated identity, else IMDS. Azure only. Cached in the
    /// context, per identity (namespace, name, tenant, client) and scope, until shortly before expiry.
    pub async fn access_token(
        &self,
        http: &reqwest::Client,
        scope: &str,
        deadline: Instant,
    ) -> Result<String, CloudError> {
        if self.provider != CloudProvider::Azure {
            return Err(CloudError::Identity {
                provider: self.provider,
                reason: "access tokens for a scope are issued by provider 'azure' only".to_string(),
            });
        }
        // Registry hosts never contain spaces: no clash with registry credentials.
        let (key, account) = self.cache_key(format!("token {scope}")).await?;
        if let Some(Credential::RegistryToken(t)) = self.context.cached(&key) {
            return Ok(t);
        }
        let call = self.call(http, deadline);
        let token = self.federated_token(&call, account).await?;
        let (access, expires_at) = azure::access_token(&call, scope, token.as_ref()).await?;
        tracing::debug!(
            provider = %self.provider,
            identity = %self.identity,
            scope,
            expires_in_s = expires_at
                .duration_since(self.context.now())
                .unwrap_or_default()
                .as_secs(),
            "obtained access token"
        );
        self.context
            .store(key, Credential::RegistryToken(access.clone()), expires_at);
        Ok(access)
    }

    /// A provider call of this access over `http`, within `deadline`.
    fn call<'a>(&'a self, http: &'a reqwest::Client, deadline: Instant) -> Call<'a> {
        Call {
            http,
            deadline,
            context: &self.context,
            provider: self.provider,
        }
    }

    /// The cache key for `scope` and, for a service account, its provider settings (read from the
    /// API server on every call, so that changed annotations take effect at once).
    async fn cache_key(
        &self,
        scope: String,
    ) -> Result<(CacheKey, Option<workload::AccountConfig>), CloudError> {
        let account = match &self.identity {
            Identity::Controller => None,
            Identity::ServiceAccount { namespace, name } => {
                Some(self.account_config(namespace, name).await?)
            }
        };
        let key = (
            self.provider,
            self.identity.clone(),
            account
                .as_ref()
                .map(workload::AccountConfig::cache_part)
                .unwrap_or_default(),
            scope,
        );
        Ok((key, account))
    }

    /// The service account's token for the provider (`None` for the controller's identity).
    async fn federated_token(
        &self,
        call: &Call<'_>,
        account: Option<workload::AccountConfig>,
    ) -> Result<Option<workload::AccountToken>, CloudError> {
        match (account, &self.identity) {
            (Some(config), Identity::ServiceAccount { namespace, name }) => Ok(Some(
                self.account_token(call, namespace, name, config).await?,
            )),
            _ => Ok(None),
        }
    }

    /// The API server's service accounts (always set with [`Identity::ServiceAccount`]).
    fn accounts(&self, sa: &str) -> Result<&dyn ServiceAccounts, CloudError> {
        self.accounts
            .as_deref()
            .ok_or_else(|| CloudError::Identity {
                provider: self.provider,
                reason: format!("service account '{sa}': no Kubernetes client to read it"),
            })
    }

    /// Reads the provider settings from the service account's annotations.
    async fn account_config(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<workload::AccountConfig, CloudError> {
        let sa = format!("{namespace}/{name}");
        let identity = |reason: String| CloudError::Identity {
            provider: self.provider,
            reason,
        };
        let annotations = self
            .accounts(&sa)?
            .annotations(namespace, name)
            .await
            .map_err(|e| identity(format!("failed to get service account '{sa}': {e}")))?;
        let Some(annotations) = annotations else {
            return Err(identity(if self.default_account {
                format!("failed to get service account '{sa}': {DEFAULT_SERVICE_ACCOUNT_NOT_FOUND}")
            } else {
                format!("service account '{sa}' not found")
            }));
        };
        workload::AccountConfig::from_annotations(self.provider, &sa, &annotations)
    }

    /// A token of the service account for the provider's audience, from the API server.
    async fn account_token(
        &self,
        call: &Call<'_>,
        namespace: &str,
        name: &str,
        config: workload::AccountConfig,
    ) -> Result<workload::AccountToken, CloudError> {
        let sa = format!("{namespace}/{name}");
        let (audience, exchange_audience) = match &config {
            workload::AccountConfig::Aws { .. } => (AWS_AUDIENCE.to_string(), String::new()),
            workload::AccountConfig::Azure { .. } => (AZURE_AUDIENCE.to_string(), String::new()),
            workload::AccountConfig::Gcp { wip_audience, .. } => {
                gcp::audiences(call, wip_audience.as_deref()).await?
            }
        };
        let audiences = [audience];
        let token = self
            .accounts(&sa)?
            .create_token(namespace, name, &audiences)
            .await
            .map_err(|e| workload::token_request_error(self.provider, &sa, e))?;
        Ok(workload::AccountToken {
            token,
            namespace: namespace.to_string(),
            name: name.to_string(),
            config,
            exchange_audience,
        })
    }
}

/// Largest identity-endpoint response read.
const MAX_RESPONSE: usize = 256 << 10;
/// Longest error body quoted in a message.
const MAX_QUOTED: usize = 512;
/// Bound on one endpoint call when the session deadline is further away.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(30);

impl Call<'_> {
    /// Sends `req` within the deadline and returns the body of a 2xx answer; anything else is an
    /// [`CloudError::Endpoint`] quoting the status and (bounded) error body.
    pub(crate) async fn send(
        &self,
        step: &'static str,
        method: &'static str,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), CloudError> {
        let err = |reason: String| self.invalid(step, method, url, reason);
        let remaining = self
            .deadline
            .saturating_duration_since(Instant::now())
            .min(ENDPOINT_TIMEOUT);
        if remaining.is_zero() {
            return Err(err("context deadline exceeded".to_string()));
        }
        let fut = async {
            let mut resp = req
                .timeout(remaining)
                .send()
                .await
                .map_err(|e| err(error_chain(&e)))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| err(error_chain(&e)))? {
                if body.len() + chunk.len() > MAX_RESPONSE {
                    return Err(err(format!("response larger than {MAX_RESPONSE} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(err(status_reason(status, &body)));
            }
            Ok((headers, body))
        };
        match tokio::time::timeout(remaining, fut).await {
            Ok(r) => r,
            Err(_) => Err(err("context deadline exceeded".to_string())),
        }
    }

    /// An [`CloudError::Endpoint`] of `step` (the URL without its query): a failed call or a response that
    /// does not follow the protocol.
    pub(crate) fn invalid(
        &self,
        step: &'static str,
        method: &'static str,
        url: &str,
        reason: impl Into<String>,
    ) -> CloudError {
        CloudError::Endpoint {
            provider: self.provider,
            step,
            method,
            url: url.split('?').next().unwrap_or(url).to_string(),
            reason: reason.into(),
        }
    }

    /// An [`CloudError::Identity`] error.
    pub(crate) fn identity(&self, reason: impl Into<String>) -> CloudError {
        CloudError::Identity {
            provider: self.provider,
            reason: reason.into(),
        }
    }

    /// Reads a projected token file (service-account token), trimmed.
    pub(crate) fn read_token_file(&self, var: &str, path: &str) -> Result<String, CloudError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.identity(format!("cannot read token file {var}={path}: {e}")))?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err(self.identity(format!("token file {var}={path} is empty")));
        }
        Ok(token)
    }

    /// Expiry `secs` seconds from now.
    pub(crate) fn expires_in(&self, secs: u64) -> SystemTime {
        self.context.now() + Duration::from_secs(secs)
    }
}

/// `403 Forbidden: <body>`; the body is quoted only up to [`MAX_QUOTED`] bytes. Error bodies of
/// token endpoints describe the failure, they do not echo credentials.
fn status_reason(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut quoted: String = text.chars().take(MAX_QUOTED).collect();
    if quoted.len() < text.len() {
        quoted.push_str("...");
    }
    if quoted.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {quoted}")
    }
}

/// An endpoint URL from the environment in normal form (`http://host:port` gains its `/`), so that the
/// URL signed, sent and quoted in errors is the same.
pub(crate) fn endpoint(raw: &str) -> String {
    url::Url::parse(raw.trim()).map_or_else(|_| raw.to_string(), |u| u.to_string())
}

/// An RFC 3339 timestamp (`2026-11-22T20:00:00Z`, fractions and offsets allowed).
pub(crate) fn rfc3339(s: &str) -> Result<SystemTime, String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("invalid timestamp '{s}': {e}"))?;
    Ok(SystemTime::from(t))
}

/// Parses a JSON body into `T`, or explains why not (without echoing the body: it may hold tokens).
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON response: {e}"))
}

/// Parses a test host map (`host=ip:port,...`, see [`TEST_HOST_MAP_VAR`]); bad entries are skipped
/// with a warning.
pub fn parse_host_map(value: &str) -> Vec<(String, std::net::SocketAddr)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .filter_map(|entry| {
            let parsed = entry
                .split_once('=')
                .and_then(|(h, a)| Some((h.trim().to_string(), a.trim().parse().ok()?)));
            if parsed.is_none() {
                tracing::warn!(entry, "ignoring invalid {TEST_HOST_MAP_VAR} entry");
            }
            parsed
        })
        .collect()
}

/// The test host map from the environment; empty (the default) unless [`TEST_HOST_MAP_VAR`] is set.
pub fn host_map_from_env() -> Vec<(String, std::net::SocketAddr)> {
    match std::env::var(TEST_HOST_MAP_VAR) {
        Ok(v) if !v.is_empty() => {
            tracing::warn!(
                "{TEST_HOST_MAP_VAR} is set: registry hosts are redirected (test-only setting)"
            );
            parse_host_map(&v)
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn host_map() {
        let m = parse_host_map("a.example=127.0.0.1:5000, bad ,b=1.2.3.4:1");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "a.example");
        assert_eq!(m[0].1.port(), 5000);
    }

    #[test]
    fn env_debug_hides_values() {
        let env =
            CloudEnv::from_pairs([("AWS_SECRET_ACCESS_KEY".to_string(), "hunter2".to_string())]);
        assert!(!format!("{env:?}").contains("hunter2"));
    }

    #[test]
    fn refresh_margin() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let now = Arc::new(Mutex::new(t0));
        let n2 = now.clone();
        let ctx = AuthContext::with_clock(
            CloudEnv::default(),
            CredentialHelpers::default(),
            Arc::new(move || *n2.lock().unwrap()),
        );
        let key = (
            CloudProvider::Gcp,
            Identity::Controller,
            String::new(),
            "x".to_string(),
        );
        ctx.store(
            key.clone(),
            Credential::RegistryToken("t".into()),
            t0 + Duration::from_secs(12 * 3600),
        );
        *now.lock().unwrap() = t0 + Duration::from_secs(12 * 3600 - 301);
        assert!(ctx.cached(&key).is_some());
        *now.lock().unwrap() = t0 + Duration::from_secs(12 * 3600 - 300);
        assert!(ctx.cached(&key).is_none());

        // Bounded by --token-cache-max-duration and -max-size.
        let ctx = ctx.with_cache_limits(CacheLimits {
            max_entries: 1,
            max_duration: Some(Duration::from_secs(3600)),
        });
        *now.lock().unwrap() = t0;
        let exp = t0 + Duration::from_secs(12 * 3600);
        ctx.store(key.clone(), Credential::RegistryToken("t".into()), exp);
        *now.lock().unwrap() = t0 + Duration::from_secs(3599);
        assert!(ctx.cached(&key).is_some());
        *now.lock().unwrap() = t0 + Duration::from_secs(3600);
        assert!(ctx.cached(&key).is_none());
        let other = (
            CloudProvider::Aws,
            Identity::Controller,
            String::new(),
            "y".to_string(),
        );
        ctx.store(key.clone(), Credential::RegistryToken("t".into()), exp);
        ctx.store(other.clone(), Credential::RegistryToken("u".into()), exp);
        assert!(ctx.cached(&key).is_none());
        assert!(ctx.cached(&other).is_some());
        let ctx = ctx.with_cache_limits(CacheLimits {
            max_entries: 0,
            max_duration: None,
        });
        ctx.store(key.clone(), Credential::RegistryToken("t".into()), exp);
        assert!(ctx.cached(&key).is_none());
    }
}
