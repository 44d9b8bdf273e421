//! The registry client: ping and auth challenge, bearer tokens, tag listing with `Link` pagination,
//! manifest digests, retries with `Retry-After`, and a per-registry concurrency limit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use crate::error::{RegistryError, format_status_error};
use crate::keychain::Credential;
use crate::options::{Access, TlsOptions, TransportOptions};
use crate::reference::{ImageRef, Scheme, validate_tag};

/// Manifest media types accepted when reading a digest, so that multi-arch images yield the index digest.
pub const MANIFEST_ACCEPT: [&str; 5] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Status codes retried as transient (go-containerregistry's list plus 499/522).
const RETRY_STATUSES: [u16; 8] = [408, 429, 499, 500, 502, 503, 504, 522];

/// Tunables of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Concurrent requests allowed per registry host (`host[:port]`).
    pub per_registry_concurrency: usize,
    /// Page size asked for with `?n=` (1000: ECR rejects more).
    pub page_size: u32,
    /// Attempts per request for transient failures (429, 5xx, connection resets).
    pub max_attempts: u32,
    /// Backoff before the second attempt; multiplied by 3 for each further attempt.
    pub initial_backoff: Duration,
    /// Largest accepted tag-list page body.
    pub max_page_bytes: usize,
    /// Largest accepted manifest body (digest fallback).
    pub max_manifest_bytes: usize,
    /// Most tags accepted for one repository across all pages (bounds memory against endless paging).
    pub max_tags: usize,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Test-only: connect to this address for this host (see [`crate::cloud::TEST_HOST_MAP_VAR`]);
    /// the default reads that variable and is empty when it is unset.
    pub host_map: Vec<(String, std::net::SocketAddr)>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            per_registry_concurrency: 8,
            page_size: 1000,
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_page_bytes: 64 << 20,
            max_manifest_bytes: 4 << 20,
            max_tags: 1_000_000,
            user_agent: concat!("flux-image-reflector-rs/", env!("CARGO_PKG_VERSION")).to_string(),
            host_map: crate::cloud::host_map_from_env(),
        }
    }
}

/// Largest body kept for error messages and token responses.
const MAX_SMALL_BODY: usize = 1 << 20;
/// Largest error body quoted in a message.
const MAX_ERROR_BODY: usize = 4 << 10;
/// Cached HTTP clients for custom TLS/proxy settings before the cache is reset.
const MAX_CUSTOM_CLIENTS: usize = 256;
/// How long a ping result (scheme and challenge) is reused.
const PING_TTL: Duration = Duration::from_secs(300);
/// Token lifetime when the token response gives none (the distribution spec's default).
const DEFAULT_TOKEN_TTL: u64 = 60;
/// Tokens are dropped this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// Cache entries kept before expired ones are pruned.
const MAX_CACHE_ENTRIES: usize = 4096;

/// Receives one call per HTTP request, for per-registry metrics.
pub trait RequestObserver: Send + Sync {
    /// `registry` is the request's `host[:port]`; `status` is `None` for transport errors.
    fn observe(&self, registry: &str, method: &str, status: Option<u16>, elapsed: Duration);
}

/// A registry client shared by all reconcilers: HTTP clients, per-registry limits and configuration.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    default_http: reqwest::Client,
    custom_http: Mutex<HashMap<TransportOptions, reqwest::Client>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Ping results (origin and challenge) per registry and transport, to skip `/v2/` on later calls.
    pings: Mutex<HashMap<PingKey, (Url, Challenge, Instant)>>,
    /// Bearer tokens per realm, service, scopes and credential.
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
    observer: Option<Arc<dyn RequestObserver>>,
}

/// Registry, insecure flag and a hash of the transport options.
type PingKey = (String, bool, u64);
/// Realm, service, scopes and a fingerprint of the credential.
type TokenKey = (String, String, String, String);

/// How requests to a registry are authorised, learnt from the `/v2/` ping.
#[derive(Debug, Clone)]
enum Challenge {
    /// No auth needed.
    None,
    /// Basic auth on every request.
    Basic,
    /// Bearer token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// One operation against one repository: origin, auth and deadline.
struct Session<'a> {
    client: &'a Client,
    http: reqwest::Client,
    image: &'a ImageRef,
    ping_key: PingKey,
    credential: Credential,
    deadline: Instant,
    base: Url,
    challenge: Challenge,
    authorization: Option<String>,
    /// The per-registry slot of the last response, held while its body is read.
    permit: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Client {
    /// Creates a client; fails only if the TLS backend cannot be initialised.
    pub fn new(config: ClientConfig) -> Result<Client, RegistryError> {
        Self::build(config, None)
    }

    /// Same client with a request observer (metrics).
    pub fn with_observer(
        config: ClientConfig,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<Client, RegistryError> {
        Self::build(config, Some(observer))
    }

    fn build(
        config: ClientConfig,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<Client, RegistryError> {
        let default_http = build_http(&config, &TransportOptions::default())?;
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                default_http,
                custom_http: Mutex::new(HashMap::new()),
                limits: Mutex::new(HashMap::new()),
                pings: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
                observer,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Lists all tags of `image` in server order, following `Link` pages; bounded by `timeout`.
    pub async fn list_tags(
        &self,
        image: &ImageRef,
        access: &Access,
        timeout: Duration,
    ) -> Result<Vec<String>, RegistryError> {
        let mut session = self.session(image, access, timeout).await?;
        let result = session.list_tags().await;
        self.forget_ping_on_transport_error(&session, &result);
        forget_refused_credential(access, image, &result);
        result
    }

    /// The digest of the manifest (or index) that `tag` points at: HEAD, falling back to GET + sha256.
    pub async fn manifest_digest(
        &self,
        image: &ImageRef,
        tag: &str,
        access: &Access,
        timeout: Duration,
    ) -> Result<String, RegistryError> {
        validate_tag(tag)?;
        let mut session = self.session(image, access, timeout).await?;
        let result = session.manifest_digest(tag).await;
        self.forget_ping_on_transport_error(&session, &result);
        forget_refused_credential(access, image, &result);
        result
    }

    /// A connection failure may mean the cached scheme is stale (e.g. the registry moved to https).
    fn forget_ping_on_transport_error<T>(
        &self,
        session: &Session<'_>,
        result: &Result<T, RegistryError>,
    ) {
        if matches!(result, Err(RegistryError::Transport { .. })) {
            lock(&self.inner.pings).remove(&session.ping_key);
        }
    }

    fn http_for(&self, transport: &TransportOptions) -> Result<reqwest::Client, RegistryError> {
        if transport.tls.is_none() && transport.proxy.is_none() {
            return Ok(self.inner.default_http.clone());
        }
        let mut cache = lock(&self.inner.custom_http);
        if let Some(c) = cache.get(transport) {
            return Ok(c.clone());
        }
        let client = build_http(&self.inner.config, transport)?;
        if cache.len() >= MAX_CUSTOM_CLIENTS {
            cache.clear();
        }
        cache.insert(transport.clone(), client.clone());
        Ok(client)
    }

    fn limiter(&self, host: &str) -> Arc<Semaphore> {
        let mut limits = lock(&self.inner.limits);
        limits
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.inner.config.per_registry_concurrency.max(1),
                ))
            })
            .clone()
    }

    async fn session<'a>(
        &'a self,
        image: &'a ImageRef,
        access: &Access,
        timeout: Duration,
    ) -> Result<Session<'a>, RegistryError> {
        let deadline = Instant::now() + timeout;
        let http = self.http_for(&access.transport)?;
        let credential = access.credential(image, &http, deadline.into_std()).await?;
        let ping_key = (
            image.registry().to_string(),
            image.insecure(),
            hash_of(&access.transport),
        );
        let mut session = Session {
            client: self,
            http,
            image,
            ping_key,
            credential,
            deadline,
            base: registry_url("https", image.registry())?,
            challenge: Challenge::None,
            authorization: None,
            permit: Mutex::new(None),
        };
        session.ping().await?;
        Ok(session)
    }
}

impl Session<'_> {
    /// `GET /v2/` to learn the challenge; for http-capable registries an https failure falls back to http.
    async fn ping(&mut self) -> Result<(), RegistryError> {
        if let Some((base, challenge, at)) = lock(&self.client.inner.pings).get(&self.ping_key)
            && at.elapsed() < PING_TTL
        {
            self.base = base.clone();
            self.challenge = challenge.clone();
            return Ok(());
        }
        let schemes: &[&str] = match self.image.scheme() {
            Scheme::Https => &["https"],
            Scheme::HttpsThenHttp => &["https", "http"],
        };
        let mut last_err = None;
        for scheme in schemes {
            let base = registry_url(scheme, self.image.registry())?;
            let url = join(&base, "/v2/")?;
            // With a fallback ahead, a failed https attempt is not retried: plain-http registries are
            // expected to fail it.
            let attempts = if *scheme == "https" && schemes.len() > 1 {
                1
            } else {
                self.client.inner.config.max_attempts
            };
            match self
                .send_with_body(Method::GET, &url, HeaderMap::new(), String::new(), attempts)
                .await
            {
                Ok(resp) => {
                    self.base = base;
                    if let Err(e) = self.read_challenge(resp).await {
                        return Err(with_fallback(last_err, e));
                    }
                    let mut pings = lock(&self.client.inner.pings);
                    if pings.len() >= MAX_CACHE_ENTRIES {
                        pings.retain(|_, v| v.2.elapsed() < PING_TTL);
                    }
                    pings.insert(
                        self.ping_key.clone(),
                        (self.base.clone(), self.challenge.clone(), Instant::now()),
                    );
                    return Ok(());
                }
                Err(e @ RegistryError::Transport { .. }) => {
                    last_err = Some(with_fallback(last_err, e));
                }
                Err(e) => return Err(with_fallback(last_err, e)),
            }
        }
        Err(last_err.unwrap_or(RegistryError::Timeout {
            method: "GET".to_string(),
            url: self.image.registry().to_string(),
        }))
    }

    async fn read_challenge(&mut self, resp: reqwest::Response) -> Result<(), RegistryError> {
        match resp.status() {
            StatusCode::OK => {
                self.challenge = Challenge::None;
                Ok(())
            }
            StatusCode::UNAUTHORIZED => {
                self.challenge = parse_challenge(resp.headers());
                Ok(())
            }
            _ => Err(self.status_error(Method::GET, resp).await),
        }
    }

    async fn list_tags(&mut self) -> Result<Vec<String>, RegistryError> {
        let path = format!(
            "/v2/{}/tags/list?n={}",
            self.image.repository(),
            self.client.inner.config.page_size
        );
        let mut url = join(&self.base, &path)?;
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        loop {
            if !seen.insert(url.to_string()) {
                return Err(RegistryError::LinkLoop {
                    url: url.to_string(),
                });
            }
            let resp = self.authorized(Method::GET, &url, HeaderMap::new()).await?;
            if resp.status() != StatusCode::OK {
                return Err(self.status_error(Method::GET, resp).await);
            }
            let next = match resp.headers().get(LINK) {
                Some(v) => Some(self.next_page(&url, v.to_str().unwrap_or(""))?),
                None => None,
            };
            let body =
                read_limited(resp, self.client.inner.config.max_page_bytes, "GET", &url).await?;
            let page: TagsPage =
                serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
                    method: "GET".to_string(),
                    url: url.to_string(),
                    reason: format!("tag list is not valid JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            let max = self.client.inner.config.max_tags;
            if tags.len() > max {
                return Err(RegistryError::TooManyTags {
                    repository: self.image.canonical(),
                    limit: max,
                });
            }
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
    }

    /// The next page from a `Link` header: the text between the first `<` and `>`, resolved against the
    /// current URL; the registry's scheme, host and port are always kept (credentials stay on the registry).
    fn next_page(&self, current: &Url, link: &str) -> Result<Url, RegistryError> {
        let start = link.find('<').ok_or(RegistryError::Link { missing: '<' })?;
        let rest = &link[start + 1..];
        let end = rest.find('>').ok_or(RegistryError::Link { missing: '>' })?;
        let target = &rest[..end];
        let resolved = current
            .join(target)
            .map_err(|e| RegistryError::InvalidResponse {
                method: "GET".to_string(),
                url: current.to_string(),
                reason: format!("invalid Link target '{target}': {e}"),
            })?;
        let mut next = self.base.clone();
        next.set_path(resolved.path());
        next.set_query(resolved.query());
        Ok(next)
    }

    async fn manifest_digest(&mut self, tag: &str) -> Result<String, RegistryError> {
        let url = join(
            &self.base,
            &format!("/v2/{}/manifests/{tag}", self.image.repository()),
        )?;
        let mut headers = HeaderMap::new();
        if let Ok(v) = MANIFEST_ACCEPT.join(", ").parse() {
            headers.insert(ACCEPT, v);
        }
        let head = self.authorized(Method::HEAD, &url, headers.clone()).await?;
        if head.status().is_success()
            && let Some(d) = head
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .filter(|d| is_digest(d))
        {
            return Ok(d.to_string());
        }
        tracing::debug!(%url, status = %head.status(), "manifest HEAD gave no digest, falling back to GET");
        let resp = self.authorized(Method::GET, &url, headers).await?;
        if !resp.status().is_success() {
            return Err(self.status_error(Method::GET, resp).await);
        }
        let body = read_limited(
            resp,
            self.client.inner.config.max_manifest_bytes,
            "GET",
            &url,
        )
        .await?;
        Ok(format!("sha256:{}", hex(&Sha256::digest(&body))))
    }

    /// Sends a request with authorisation, fetching a token first and once more after a 401.
    async fn authorized(
        &mut self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
        if self.authorization.is_none() {
            self.authorization = self.authorize(false).await?;
        }
        let resp = self.send_auth(method.clone(), url, headers.clone()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        // Retry once with the new challenge when a token may have expired or lacks a scope (bearer), or
        // when the cached ping no longer describes the registry (the kind of challenge changed).
        let challenge = parse_challenge(resp.headers());
        let changed = std::mem::discriminant(&challenge) != std::mem::discriminant(&self.challenge);
        if !changed && !matches!(challenge, Challenge::Bearer { .. }) {
            return Ok(resp);
        }
        self.challenge = challenge;
        if changed {
            lock(&self.client.inner.pings).insert(
                self.ping_key.clone(),
                (self.base.clone(), self.challenge.clone(), Instant::now()),
            );
        }
        self.authorization = self.authorize(true).await?;
        self.send_auth(method, url, headers).await
    }

    async fn send_auth(
        &self,
        method: Method,
        url: &Url,
        mut headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
        if let Some(a) = &self.authorization
            && let Ok(v) = a.parse()
        {
            headers.insert(AUTHORIZATION, v);
        }
        self.send(method, url, headers).await
    }

    /// The `Authorization` value for the current challenge and credential; `refresh` skips cached tokens.
    async fn authorize(&self, refresh: bool) -> Result<Option<String>, RegistryError> {
        match (&self.challenge, &self.credential) {
            (Challenge::None, _) => Ok(None),
            (_, Credential::RegistryToken(t)) => Ok(Some(format!("Bearer {t}"))),
            (Challenge::Basic, Credential::Basic { username, password }) => {
                Ok(Some(basic(username, password)))
            }
            (Challenge::Basic, _) => Ok(None),
            (
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                },
                cred,
            ) => {
                let token = self
                    .cached_token(realm, service.as_deref(), scope.as_deref(), cred, refresh)
                    .await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn cached_token(
        &self,
        realm: &str,
        service: Option<&str>,
        challenge_scope: Option<&str>,
        credential: &Credential,
        refresh: bool,
    ) -> Result<String, RegistryError> {
        let scopes = self.scopes(challenge_scope);
        let key: TokenKey = (
            realm.to_string(),
            service.unwrap_or("").to_string(),
            scopes.join(" "),
            fingerprint(credential),
        );
        if !refresh
            && let Some((token, expires)) = lock(&self.client.inner.tokens).get(&key)
            && Instant::now() < *expires
        {
            return Ok(token.clone());
        }
        let (token, ttl) = self
            .fetch_token(realm, service, &scopes, credential)
            .await?;
        if ttl > TOKEN_MARGIN {
            let mut tokens = lock(&self.client.inner.tokens);
            if tokens.len() >= MAX_CACHE_ENTRIES {
                let now = Instant::now();
                tokens.retain(|_, v| v.1 > now);
            }
            tokens.insert(key, (token.clone(), Instant::now() + ttl - TOKEN_MARGIN));
        }
        Ok(token)
    }

    /// `repository:<repo>:pull` plus the challenge's own scope when it differs.
    fn scopes(&self, challenge_scope: Option<&str>) -> Vec<String> {
        let mut scopes = vec![format!("repository:{}:pull", self.image.repository())];
        if let Some(s) = challenge_scope.filter(|s| !scopes.iter().any(|x| x == s)) {
            scopes.push(s.to_string());
        }
        scopes
    }

    /// Requests a token; returns it with its lifetime.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        credential: &Credential,
    ) -> Result<(String, Duration), RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| RegistryError::InvalidResponse {
            method: "GET".to_string(),
            url: self.base.to_string(),
            reason: format!("invalid token realm '{realm}': {e}"),
        })?;
        let mut headers = HeaderMap::new();
        let resp = if let Credential::IdentityToken { token, .. } = credential {
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "flux-image-reflector"),
            ];
            if let Some(s) = service {
                form.push(("service", s));
            }
            let scope = scopes.join(" ");
            form.push(("scope", &scope));
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            if let Ok(v) = "application/x-www-form-urlencoded".parse() {
                headers.insert(reqwest::header::CONTENT_TYPE, v);
            }
            self.send_with_body(
                Method::POST,
                &url,
                headers,
                body,
                self.client.inner.config.max_attempts,
            )
            .await?
        } else {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes {
                    q.append_pair("scope", s);
                }
            }
            if let Credential::Basic { username, password } = credential
                && let Ok(v) = basic(username, password).parse()
            {
                headers.insert(AUTHORIZATION, v);
            }
            self.send(Method::GET, &url, headers).await?
        };
        let method = if matches!(credential, Credential::IdentityToken { .. }) {
            Method::POST
        } else {
            Method::GET
        };
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(method, resp).await);
        }
        let body = read_limited(resp, MAX_SMALL_BODY, method.as_str(), &url).await?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
                method: method.to_string(),
                url: redact(&url),
                reason: format!("token response is not valid JSON: {e}"),
            })?;
        let ttl = Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_TOKEN_TTL));
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| RegistryError::InvalidResponse {
                method: method.to_string(),
                url: redact(&url),
                reason: "token response has no token".to_string(),
            })?;
        Ok((token, ttl))
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, RegistryError> {
        let attempts = self.client.inner.config.max_attempts;
        self.send_with_body(method, url, headers, String::new(), attempts)
            .await
    }

    /// Sends with retries for transient failures, within the deadline and the per-registry limit.
    async fn send_with_body(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: String,
        max_attempts: u32,
    ) -> Result<reqwest::Response, RegistryError> {
        let cfg = &self.client.inner.config;
        let host = authority(url);
        let limiter = self.client.limiter(&host);
        let mut backoff = cfg.initial_backoff;
        let mut attempt = 1;
        loop {
            // The previous response of this (sequential) session has been read by now: free its slot
            // before waiting for a new one.
            lock(&self.permit).take();
            let remaining = self.remaining(&method, url)?;
            let permit = tokio::time::timeout(remaining, limiter.clone().acquire_owned())
                .await
                .map_err(|_| self.timeout(&method, url))?
                .map_err(|_| self.timeout(&method, url))?;
            let remaining = self.remaining(&method, url)?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(remaining);
            if !body.is_empty() {
                req = req.body(body.clone());
            }
            let started = Instant::now();
            let result = req.send().await;
            if let Some(o) = &self.client.inner.observer {
                let status = result.as_ref().ok().map(|r| r.status().as_u16());
                o.observe(&host, method.as_str(), status, started.elapsed());
            }
            let wait = match &result {
                Ok(resp) if RETRY_STATUSES.contains(&resp.status().as_u16()) => {
                    retry_after(resp.headers()).unwrap_or(backoff)
                }
                Ok(_) => {
                    // Held until the next request of the session, so reading the body counts too.
                    *lock(&self.permit) = Some(permit);
                    return result.map_err(|e| self.transport(&method, url, e));
                }
                Err(e) if e.is_timeout() => return Err(self.timeout(&method, url)),
                Err(e) if is_transient(e) => backoff,
                Err(_) => return result.map_err(|e| self.transport(&method, url, e)),
            };
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if attempt >= max_attempts || wait >= remaining {
                // Out of attempts or the wait would outlive the timeout: report what we got.
                return match result {
                    Ok(resp) => {
                        *lock(&self.permit) = Some(permit);
                        Ok(resp)
                    }
                    Err(e) => Err(self.transport(&method, url, e)),
                };
            }
            drop(permit);
            tracing::debug!(%url, attempt, wait_ms = wait.as_millis() as u64, "retrying registry request");
            tokio::time::sleep(wait).await;
            attempt += 1;
            backoff = backoff.saturating_mul(3);
        }
    }

    fn remaining(&self, method: &Method, url: &Url) -> Result<Duration, RegistryError> {
        let r = self.deadline.saturating_duration_since(Instant::now());
        if r.is_zero() {
            return Err(self.timeout(method, url));
        }
        Ok(r)
    }

    fn timeout(&self, method: &Method, url: &Url) -> RegistryError {
        RegistryError::Timeout {
            method: method.to_string(),
            url: redact(url),
        }
    }

    fn transport(&self, method: &Method, url: &Url, e: reqwest::Error) -> RegistryError {
        RegistryError::Transport {
            method: method.to_string(),
            url: redact(url),
            reason: error_chain(&e),
        }
    }

    async fn status_error(&self, method: Method, resp: reqwest::Response) -> RegistryError {
        let status = resp.status();
        let url = redact(resp.url());
        let retry_after = retry_after(resp.headers());
        let body = if method == Method::HEAD {
            Vec::new()
        } else {
            read_prefix(resp, MAX_ERROR_BODY).await
        };
        RegistryError::Status {
            method: method.to_string(),
            url,
            status: status.as_u16(),
            detail: format_status_error(status, &method, &body),
            retry_after,
        }
    }
}

/// The error of a plain-http fallback, reported with the failed https attempt before it (if any): an
/// answer such as "400 Client sent an HTTP request to an HTTPS server" hides the real cause.
fn with_fallback(https_err: Option<RegistryError>, e: RegistryError) -> RegistryError {
    match https_err {
        Some(RegistryError::Transport {
            method,
            url,
            reason,
        }) => RegistryError::Transport {
            method,
            url,
            reason: format!("{reason} (plain http fallback: {e})"),
        },
        _ => e,
    }
}

/// Parses the `WWW-Authenticate` of a 401: a Bearer challenge with a realm, else basic auth (which is
/// also go-containerregistry's fallback for a 401 without a usable challenge).
fn parse_challenge(headers: &HeaderMap) -> Challenge {
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else { continue };
        let Ok(challenges) = http_auth::parse_challenges(text) else {
            continue;
        };
        for c in challenges {
            if c.scheme.eq_ignore_ascii_case("bearer") {
                let get = |k: &str| {
                    c.params
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.to_unescaped())
                };
                if let Some(realm) = get("realm") {
                    return Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                    };
                }
            }
        }
    }
    Challenge::Basic
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Connection-level errors worth another attempt, as go-containerregistry's temporary errors: resets,
/// aborts, broken pipes, unexpected EOF and connections closed before the response. Refused connections and TLS failures are not retried.
fn is_transient(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        cur = err.source();
    }
    false
}

/// An error and its sources, joined with `: `, without repeats.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    // reqwest's outer message only repeats the URL that our messages already start with.
    let top = e.to_string();
    if !(top.starts_with("error sending request") && e.source().is_some()) {
        parts.push(top);
    }
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Reads a body up to `limit` bytes; larger bodies are an error, never a huge allocation.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    method: &str,
    url: &Url,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        method: method.to_string(),
        url: redact(url),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            if e.is_timeout() {
                RegistryError::Timeout {
                    method: method.to_string(),
                    url: redact(url),
                }
            } else {
                RegistryError::Transport {
                    method: method.to_string(),
                    url: redact(url),
                    reason: error_chain(&e),
                }
            }
        })?;
        let Some(chunk) = chunk else { return Ok(out) };
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
}

/// The first `limit` bytes of an error body (the rest is dropped; a broken body reads as empty).
async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - out.len());
                out.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn registry_url(scheme: &str, registry: &str) -> Result<Url, RegistryError> {
    Url::parse(&format!("{scheme}://{registry}/")).map_err(|e| RegistryError::InvalidResponse {
        method: "GET".to_string(),
        url: format!("{scheme}://{registry}/"),
        reason: format!("invalid registry address: {e}"),
    })
}

fn join(base: &Url, path: &str) -> Result<Url, RegistryError> {
    base.join(path).map_err(|e| RegistryError::InvalidResponse {
        method: "GET".to_string(),
        url: base.to_string(),
        reason: format!("invalid path '{path}': {e}"),
    })
}

/// `host[:port]` of a URL, the key of the per-registry limit.
fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// The URL without user info, for messages.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Whether `d` looks like `<algorithm>:<hex>` with a sha256 or sha512 length.
fn is_digest(d: &str) -> bool {
    match d.split_once(':') {
        Some(("sha256", h)) => h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        Some(("sha512", h)) => h.len() == 128 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A stable in-process hash of the transport options (the ping cache key).
fn hash_of(t: &TransportOptions) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// Identifies a credential in the token cache without keeping the secret itself.
fn fingerprint(c: &Credential) -> String {
    let raw = match c {
        Credential::Anonymous => "anonymous".to_string(),
        Credential::Basic { username, password } => format!("basic\0{username}\0{password}"),
        Credential::IdentityToken { username, token } => format!("identity\0{username}\0{token}"),
        Credential::RegistryToken(t) => format!("registry\0{t}"),
    };
    hex(&Sha256::digest(raw.as_bytes()))
}

/// A provider credential the registry refused (revoked, or a role that lost access) is not reused: the
/// next attempt fetches a fresh one instead of waiting for it to expire.
fn forget_refused_credential<T>(
    access: &Access,
    image: &ImageRef,
    result: &Result<T, RegistryError>,
) {
    if let (Some(p), Err(e)) = (&access.provider, result)
        && e.is_unauthorized()
    {
        p.forget(image);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding these maps leaves them usable: they hold only caches.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parses TLS material into reqwest types; the error text explains what is wrong.
pub(crate) fn tls_parts(
    tls: &TlsOptions,
) -> Result<(Vec<reqwest::Certificate>, Option<reqwest::Identity>), String> {
    let mut certs = Vec::new();
    if let Some(ca) = &tls.ca_pem {
        certs = reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|e| format!("failed to parse CA certificate: {}", error_chain(&e)))?;
        if certs.is_empty() {
            return Err("failed to parse CA certificate: no PEM certificate found".to_string());
        }
    }
    let identity = match &tls.client_pem {
        Some((cert, key)) => {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "failed to parse TLS certificate and key: {}",
                    error_chain(&e)
                )
            })?)
        }
        None => None,
    };
    Ok((certs, identity))
}

fn build_http(
    config: &ClientConfig,
    transport: &TransportOptions,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder()
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::limited(10))
        .pool_idle_timeout(Duration::from_secs(90));
    for (host, addr) in &config.host_map {
        b = b.resolve(host, *addr);
    }
    if let Some(tls) = &transport.tls {
        let (certs, identity) = tls_parts(tls).map_err(RegistryError::Options)?;
        if !certs.is_empty() {
            b = b.tls_certs_merge(certs);
        }
        if let Some(id) = identity {
            b = b.identity(id);
        }
    }
    if let Some(proxy) = &transport.proxy {
        let p = reqwest::Proxy::all(proxy.url.as_str())
            .map_err(|e| RegistryError::Options(format!("invalid proxy: {}", error_chain(&e))))?;
        b = b.proxy(p);
    }
    b.build().map_err(|e| {
        RegistryError::Options(format!("failed to build HTTP client: {}", error_chain(&e)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#
                .parse()
                .unwrap(),
        );
        match parse_challenge(&h) {
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                assert_eq!(realm, "https://auth.example.com/token");
                assert_eq!(service.as_deref(), Some("registry.example.com"));
                assert_eq!(scope.as_deref(), Some("repository:a/b:pull"));
            }
            other => panic!("{other:?}"),
        }
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"Basic realm="Registry Realm""#.parse().unwrap(),
        );
        assert!(matches!(parse_challenge(&h), Challenge::Basic));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn digests() {
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("md5:abc"));
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
