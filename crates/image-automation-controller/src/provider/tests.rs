//! Provider auth against simulated GitHub and AAD endpoints (written here, on 127.0.0.1), and pushes
//! with the issued tokens to the test environment's real Git servers (`hack/testenv.sh up`).

use super::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use api::image_update_automation::SOURCE_MANAGER_FAILED_REASON;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};

use crate::gitops::{GitCache, GitSettings};
use crate::source::{Branches, CommitSettings, Remote};

const KEY: &str = include_str!("../../tests/data/github-app-key.pem");
const PUB: &str = include_str!("../../tests/data/github-app-key.pub.pem");
const OTHER_KEY: &str = include_str!("../../tests/data/other-key.pem");
const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;

/// A settable clock shared by the providers and the simulated APIs.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn new() -> TestClock {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        TestClock(Arc::new(AtomicU64::new(now)))
    }
    fn now(&self) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_secs(), Ordering::SeqCst);
    }
    fn clock(&self) -> Clock {
        let c = self.clone();
        Arc::new(move || c.now())
    }
}

type OnIssue = Box<dyn Fn(&str) + Send + Sync>;

/// The GitHub API as the app sees it: verifies the app JWT (RS256 with the app's public key, `iss`,
/// lifetime) and issues installation tokens that expire `ttl` after the clock's now.
struct GitHubSim {
    clock: TestClock,
    ttl: Duration,
    /// Owner logins with an installation: (kind `orgs`|`users`, login, id).
    owners: Vec<(&'static str, &'static str, u64)>,
    /// Answer every token request with this status instead (failure cases).
    fail: Mutex<Option<(StatusCode, &'static str)>>,
    issued: Mutex<Vec<(u64, String)>>,
    requests: AtomicUsize,
    on_issue: OnIssue,
}

fn check_jwt(sim: &GitHubSim, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let unauthorized = |m: String| {
        (
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": m}).to_string(),
        )
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let jwt = auth
        .strip_prefix("Bearer ")
        .ok_or_else(|| unauthorized("A JSON web token could not be decoded".into()))?;
    let claims = github::tests::verify(jwt, PUB).map_err(unauthorized)?;
    if claims["iss"].as_str() != Some(format!("{APP_ID}").as_str()) {
        return Err(unauthorized(format!(
            "'Issuer' claim ('iss') must be {APP_ID}"
        )));
    }
    let now = sim.clock.0.load(Ordering::SeqCst);
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    match (iat, exp) {
        (Some(iat), Some(exp)) if iat <= now + 60 && exp > now && exp - iat <= 600 => Ok(()),
        _ => Err(unauthorized(
            "'Expiration time' claim ('exp') is invalid".into(),
        )),
    }
}

async fn sim_token(
    State(sim): State<Arc<GitHubSim>>,
    UrlPath(id): UrlPath<u64>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<serde_json::Value>), (StatusCode, String)> {
    sim.requests.fetch_add(1, Ordering::SeqCst);
    if let Some((status, body)) = *sim.fail.lock().unwrap() {
        return Err((status, body.to_string()));
    }
    check_jwt(&sim, &headers)?;
    let known = id == INSTALLATION || sim.owners.iter().any(|(_, _, i)| *i == id);
    if !known {
        return Err((StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.into()));
    }
    let n = sim.issued.lock().unwrap().len();
    let token = format!("ghs_sim{id}x{n}x{}", std::process::id());
    (sim.on_issue)(&token);
    sim.issued.lock().unwrap().push((id, token.clone()));
    let expires = time::OffsetDateTime::from(sim.clock.now() + sim.ttl)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({"token": token, "expires_at": expires, "permissions": {"contents": "write"}}),
        ),
    ))
}

async fn sim_installation(
    State(sim): State<Arc<GitHubSim>>,
    UrlPath((kind, owner)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    check_jwt(&sim, &headers)?;
    sim.owners
        .iter()
        .find(|(k, o, _)| *k == kind && *o == owner)
        .map(|(_, _, id)| Json(serde_json::json!({"id": id, "app_id": APP_ID})))
        .ok_or((StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.into()))
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn github_sim(
    clock: &TestClock,
    ttl: Duration,
    on_issue: OnIssue,
) -> (Arc<GitHubSim>, String) {
    let sim = Arc::new(GitHubSim {
        clock: clock.clone(),
        ttl,
        owners: vec![("users", "octocat", 91)],
        fail: Mutex::new(None),
        issued: Mutex::new(Vec::new()),
        requests: AtomicUsize::new(0),
        on_issue,
    });
    let router = Router::new()
        .route("/app/installations/{id}/access_tokens", post(sim_token))
        .route("/{kind}/{owner}/installation", get(sim_installation))
        .with_state(sim.clone());
    let url = serve(router).await;
    (sim, url)
}

/// A simulated GitHub API issuing one-hour tokens, providers on the same clock, and a GitRepository
/// with `provider: github`.
struct GitHubCase {
    clock: TestClock,
    sim: Arc<GitHubSim>,
    api: String,
    p: Providers,
    r: GitRepository,
}

impl GitHubCase {
    async fn new() -> GitHubCase {
        let clock = TestClock::new();
        let (sim, api) = github_sim(&clock, Duration::from_secs(3600), Box::new(|_| {})).await;
        let p = providers(&clock, &[]);
        let r = repo(Some("github"), Some("app"), None);
        GitHubCase {
            clock,
            sim,
            api,
            p,
            r,
        }
    }
}

fn repo(provider: Option<&str>, secret: Option<&str>, sa: Option<&str>) -> GitRepository {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "repo", "namespace": "ns"},
        "spec": {
            "url": "https://example.com/org/repo",
            "interval": "1m",
            "provider": provider,
            "secretRef": secret.map(|s| serde_json::json!({"name": s})),
            "serviceAccountName": sa,
        },
    }))
    .unwrap()
}

type SecretData = BTreeMap<String, Vec<u8>>;

fn data(pairs: &[(&str, &str)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn app_secret(api: &str) -> BTreeMap<String, Vec<u8>> {
    data(&[
        (github::KEY_APP_ID, &APP_ID.to_string()),
        (github::KEY_INSTALLATION_ID, &INSTALLATION.to_string()),
        (github::KEY_PRIVATE_KEY, KEY),
        (github::KEY_BASE_URL, api),
    ])
}

fn providers(clock: &TestClock, env: &[(&str, String)]) -> Providers {
    let env = registry::CloudEnv::from_pairs(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let azure = registry::AuthContext::with_clock(
        env,
        registry::CredentialHelpers::default(),
        clock.clock(),
    );
    // Never the real GitHub: tests name their API, a forgotten one fails fast.
    Providers::new(azure, "http://127.0.0.1:9".into(), clock.clock())
}

fn password(c: &ProviderCredential) -> String {
    match &c.kind {
        Kind::Basic { username, password } => {
            assert_eq!(username, "x-access-token");
            password.clone()
        }
        Kind::Bearer(_) => panic!("expected basic credentials, got {c:?}"),
    }
}

fn assert_secret_free(text: &str) {
    for needle in [
        "ghs_sim",
        "PRIVATE KEY",
        "MII",
        "eyJ",
        "federated-sa-token",
        "aad-token",
    ] {
        assert!(
            !text.contains(needle),
            "secret material '{needle}' in: {text}"
        );
    }
}

#[tokio::test]
async fn github_app_token_fetched_cached_refreshed_and_isolated() {
    let GitHubCase {
        clock,
        sim,
        api,
        p,
        r,
    } = GitHubCase::new().await;
    let secret = app_secret(&api);
    let first = p
        .credential(&r, &secret, None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert!(password(&first).starts_with("ghs_sim77x0"));
    assert_secret_free(&format!("{first:?}"));
    // Cached while valid.
    clock.advance(Duration::from_secs(3600 - 5 * 60 - 1));
    let again = p
        .credential(&r, &secret, None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(sim.requests.load(Ordering::SeqCst), 1);
    // Refreshed five minutes before expiry.
    clock.advance(Duration::from_secs(1));
    let refreshed = p
        .credential(&r, &secret, None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(password(&refreshed), password(&first));
    assert_eq!(sim.requests.load(Ordering::SeqCst), 2);
    // The same stable identity: the Git cache keeps one mirror across refreshes.
    let auth = |c: &ProviderCredential| c.apply(git::GitAuth::anonymous()).identity_digest();
    assert_eq!(auth(&first), auth(&refreshed));
    // A credential a Git server refused is forgotten: the next run asks the API again.
    p.forget(&refreshed);
    let renewed = p
        .credential(&r, &secret, None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(password(&renewed), password(&refreshed));
    assert_eq!(sim.requests.load(Ordering::SeqCst), 3);

    // Another installation is another token; a key that is not the app's never gets the cached one.
    let mut other = secret.clone();
    other.insert(github::KEY_INSTALLATION_ID.into(), b"78".to_vec());
    let e = p
        .credential(&r, &other, None, gate(false))
        .await
        .unwrap_err();
    assert!(e.message().contains("404 Not Found"), "{e}");
    let mut wrong_key = secret.clone();
    wrong_key.insert(
        github::KEY_PRIVATE_KEY.into(),
        OTHER_KEY.as_bytes().to_vec(),
    );
    let e = p
        .credential(&r, &wrong_key, None, gate(false))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), SOURCE_MANAGER_FAILED_REASON);
    assert!(e.message().contains("401 Unauthorized"), "{e}");
    assert!(e.message().contains("bad signature"), "{e}");
    assert_secret_free(e.message());

    // The installation by owner: not an organisation, a user.
    let mut by_owner = secret.clone();
    by_owner.remove(github::KEY_INSTALLATION_ID);
    by_owner.insert(github::KEY_INSTALLATION_OWNER.into(), b"octocat".to_vec());
    let c = p
        .credential(&r, &by_owner, None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert!(password(&c).starts_with("ghs_sim91x"));
    by_owner.insert(github::KEY_INSTALLATION_OWNER.into(), b"nobody".to_vec());
    let e = p
        .credential(&r, &by_owner, None, gate(false))
        .await
        .unwrap_err();
    assert!(
        e.message().contains(&format!(
            "no installation of app {APP_ID} found for owner 'nobody': as organization: finding installation: GET {api}/orgs/nobody/installation: 404 Not Found"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn github_failures_name_the_repository_provider_and_cause() {
    let GitHubCase {
        clock: _,
        sim,
        api,
        p,
        r,
    } = GitHubCase::new().await;
    let prefix = "failed configuring source manager: failed to configure authentication options: GitRepository 'ns/repo' provider 'github': ";

    *sim.fail.lock().unwrap() =
        Some((StatusCode::UNAUTHORIZED, r#"{"message":"Bad credentials"}"#));
    let e = p
        .credential(&r, &app_secret(&api), None, gate(false))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), SOURCE_MANAGER_FAILED_REASON);
    assert_eq!(
        e.message(),
        format!(
            "{prefix}creating installation token: POST {api}/app/installations/{INSTALLATION}/access_tokens: 401 Unauthorized: {{\"message\":\"Bad credentials\"}}"
        )
    );
    // A failure is not cached: the next run asks again.
    *sim.fail.lock().unwrap() = None;
    assert!(
        p.credential(&r, &app_secret(&api), None, gate(false))
            .await
            .is_ok()
    );

    // Unreachable API.
    let e = p
        .credential(&r, &app_secret("http://127.0.0.1:9"), None, gate(false))
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with(&format!(
            "{prefix}creating installation token: POST http://127.0.0.1:9/app/installations/{INSTALLATION}/access_tokens: "
        )),
        "{e}"
    );
    assert!(e.message().contains("onnect"), "{e}");

    // Bad key: named, never quoted.
    let mut bad = app_secret(&api);
    bad.insert(github::KEY_PRIVATE_KEY.into(), b"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n".to_vec());
    let e = p.credential(&r, &bad, None, gate(false)).await.unwrap_err();
    assert_eq!(e.reason(), SOURCE_MANAGER_FAILED_REASON);
    assert!(
        e.message()
            .starts_with(&format!("{prefix}could not parse private key: ")),
        "{e}"
    );
    assert_secret_free(e.message());
}

/// Token requests go through the GitRepository's proxy: the test environment's authenticating proxy
/// forwards them with the right credentials and refuses them itself with wrong ones.
#[tokio::test]
async fn github_token_requests_use_the_proxy() {
    let env = testenv::env();
    let GitHubCase {
        clock: _,
        sim,
        api,
        p,
        r,
    } = GitHubCase::new().await;
    let proxy_url = env.proxy_url(testenv::ProxyVariant::BasicAuth).unwrap();
    let (user, pass) = env.credentials().unwrap();
    let proxy = |user: &str, pass: &str| {
        git::ProxyOptions::from_secret(
            "ns/proxy",
            &data(&[
                ("address", proxy_url),
                ("username", user),
                ("password", pass),
            ]),
        )
        .unwrap()
    };
    let e = p
        .credential(
            &r,
            &app_secret(&api),
            Some(&proxy(&user, "wrong")),
            gate(false),
        )
        .await
        .unwrap_err();
    // tinyproxy answers a plain-HTTP request with bad proxy credentials with its own 401 page.
    assert!(e.message().contains("401 Unauthorized: <?xml"), "{e}");
    assert_eq!(sim.requests.load(Ordering::SeqCst), 0);
    let c = p
        .credential(
            &r,
            &app_secret(&api),
            Some(&proxy(&user, &pass)),
            gate(false),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(password(&c).starts_with("ghs_sim"));
    assert_eq!(sim.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn provider_configuration_errors_follow_flux() {
    let clock = TestClock::new();
    let p = providers(&clock, &[]);
    let app = app_secret("http://127.0.0.1:9");
    let cases: Vec<(GitRepository, SecretData, &str, &str)> = vec![
        (
            repo(None, Some("s"), None),
            data(&[("githubAppID", "1")]),
            INVALID_SOURCE_CONFIGURATION_REASON,
            "secretRef 'ns/s' has github app data but provider is not set to github: invalid source configuration",
        ),
        (
            repo(Some("github"), None, None),
            BTreeMap::new(),
            INVALID_SOURCE_CONFIGURATION_REASON,
            "secretRef with github app data must be specified when provider is set to github: invalid source configuration",
        ),
        (
            repo(Some("github"), Some("s"), None),
            data(&[("username", "u"), ("password", "p")]),
            INVALID_SOURCE_CONFIGURATION_REASON,
            "secretRef with github app data must be specified when provider is set to github: invalid source configuration",
        ),
        (
            repo(Some("github"), Some("s"), None),
            {
                let mut d = app.clone();
                d.insert("githubAppInstallationOwner".into(), b"o".to_vec());
                d
            },
            SOURCE_MANAGER_FAILED_REASON,
            "failed configuring source manager: secret 'ns/s' must contain exactly one of 'githubAppInstallationOwner' or 'githubAppInstallationID'",
        ),
        (
            repo(Some("github"), Some("s"), None),
            {
                let mut d = app.clone();
                d.insert("githubAppID".into(), b"twelve".to_vec());
                d
            },
            SOURCE_MANAGER_FAILED_REASON,
            "failed configuring source manager: failed to configure authentication options: GitRepository 'ns/repo' provider 'github': invalid githubAppID 'twelve': must be a positive integer",
        ),
        (
            repo(Some("gitlab"), Some("s"), None),
            BTreeMap::new(),
            INVALID_SOURCE_CONFIGURATION_REASON,
            "GitRepository 'ns/repo' spec.provider 'gitlab' is not supported (generic, github, azure or aws): invalid source configuration",
        ),
        (
            repo(Some("azure"), None, Some("sa")),
            BTreeMap::new(),
            FEATURE_GATE_DISABLED_REASON,
            "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller",
        ),
    ];
    for (r, secret, reason, message) in cases {
        let e = p
            .credential(&r, &secret, None, gate(false))
            .await
            .unwrap_err();
        assert_eq!((e.reason(), e.message()), (reason, message));
        let stalled = matches!(e, Failure::Stalled { .. });
        assert_eq!(stalled, reason != SOURCE_MANAGER_FAILED_REASON, "{e:?}");
    }
    // generic and unset: the Secret's credentials, unchanged.
    for provider in [None, Some(""), Some("generic")] {
        let c = p
            .credential(
                &repo(provider, Some("s"), None),
                &data(&[("username", "u")]),
                None,
                gate(false),
            )
            .await
            .unwrap();
        assert!(c.is_none());
    }
}

#[derive(serde::Deserialize)]
struct AadForm {
    grant_type: String,
    client_id: String,
    scope: String,
    client_assertion_type: String,
    client_assertion: String,
}

/// AAD's token endpoint (`/{tenant}/oauth2/v2.0/token`) and IMDS (`/metadata/identity/oauth2/token`),
/// issuing `token` for Azure DevOps' scope only.
async fn aad_sim(token: String, requests: Arc<AtomicUsize>) -> String {
    let t1 = token.clone();
    let r1 = requests.clone();
    let router = Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(
                move |UrlPath(tenant): UrlPath<String>, Form(f): Form<AadForm>| async move {
                    r1.fetch_add(1, Ordering::SeqCst);
                    let ok = tenant == "tenant-1"
                        && f.grant_type == "client_credentials"
                        && f.client_id == "client-1"
                        && f.scope == AZURE_DEVOPS_SCOPE
                        && f.client_assertion_type
                            == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                        && f.client_assertion == "federated-sa-token";
                    if ok {
                        Ok(Json(serde_json::json!({"access_token": t1, "expires_in": 3600, "token_type": "Bearer"})))
                    } else {
                        Err((StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#))
                    }
                },
            ),
        )
        .route(
            "/metadata/identity/oauth2/token",
            get(
                move |headers: HeaderMap,
                      axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>| async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let ok = headers.get("metadata").is_some_and(|v| v == "true")
                        && q.get("resource").map(String::as_str)
                            == Some("499b84ac-1321-427f-aa17-267ca6975798");
                    if ok {
                        Ok(Json(serde_json::json!({"access_token": token, "expires_in": "3600"})))
                    } else {
                        Err((StatusCode::BAD_REQUEST, r#"{"error":"invalid_resource"}"#))
                    }
                },
            ),
        );
    serve(router).await
}

fn azure_env(dir: &Path, aad: &str) -> Vec<(&'static str, String)> {
    let file = dir.join("azure-identity-token");
    std::fs::write(&file, "federated-sa-token\n").unwrap();
    vec![
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
        ("AZURE_CLIENT_ID", "client-1".into()),
        ("AZURE_TENANT_ID", "tenant-1".into()),
        ("AZURE_AUTHORITY_HOST", aad.to_string()),
    ]
}

#[tokio::test]
async fn azure_devops_token_from_workload_identity_or_imds_cached_and_refreshed() {
    let clock = TestClock::new();
    let requests = Arc::new(AtomicUsize::new(0));
    let aad = aad_sim("aad-token-1".into(), requests.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&clock, &azure_env(dir.path(), &aad));
    let r = repo(Some("azure"), None, None);
    let c = p
        .credential(&r, &BTreeMap::new(), None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert!(c.kind == Kind::Bearer("aad-token-1".into()));
    assert_secret_free(&format!("{c:?}"));
    p.credential(&r, &BTreeMap::new(), None, gate(false))
        .await
        .unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(3600 - 5 * 60));
    p.credential(&r, &BTreeMap::new(), None, gate(false))
        .await
        .unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 2);

    // IMDS when no federated identity is configured.
    let p = providers(
        &clock,
        &[("AZURE_POD_IDENTITY_AUTHORITY_HOST", aad.clone())],
    );
    let c = p
        .credential(&r, &BTreeMap::new(), None, gate(false))
        .await
        .unwrap()
        .unwrap();
    assert!(c.kind == Kind::Bearer("aad-token-1".into()));

    // A refused exchange is a clear, secret-free SourceManagerFailed.
    let mut env = azure_env(dir.path(), &aad);
    env[1].1 = "client-2".into();
    let p = providers(&clock, &env);
    let e = p
        .credential(&r, &BTreeMap::new(), None, gate(false))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), SOURCE_MANAGER_FAILED_REASON);
    assert!(
        e.message().starts_with(&format!(
            "failed configuring source manager: failed to configure authentication options: GitRepository 'ns/repo' provider 'azure': AAD workload identity token: POST {aad}/tenant-1/oauth2/v2.0/token: 401 Unauthorized"
        )),
        "{e}"
    );
    assert_secret_free(e.message());
}

/// Object-level identity inputs: the gate, the automation's namespace, no API server.
fn gate(enabled: bool) -> ObjectIdentity<'static> {
    ObjectIdentity {
        enabled,
        namespace: "apps",
        accounts: None,
    }
}

/// In-memory service accounts: annotations by `namespace/name`; tokens only for Entra ID's audience.
#[derive(Default)]
struct Accounts {
    annotations: BTreeMap<String, BTreeMap<String, String>>,
    token_requests: Mutex<Vec<String>>,
}

impl ServiceAccounts for Accounts {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> registry::cloud::BoxFuture<
        'a,
        Result<Option<BTreeMap<String, String>>, registry::SourceError>,
    > {
        let found = self
            .annotations
            .get(&format!("{namespace}/{name}"))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn create_token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audiences: &'a [String],
    ) -> registry::cloud::BoxFuture<'a, Result<String, registry::SourceError>> {
        self.token_requests
            .lock()
            .unwrap()
            .push(format!("{namespace}/{name}:{}", audiences.join(",")));
        let token = if audiences == [registry::cloud::AZURE_AUDIENCE.to_string()] {
            "federated-sa-token"
        } else {
            "wrong-audience"
        };
        Box::pin(async move { Ok(token.to_string()) })
    }
}

#[tokio::test]
async fn azure_devops_token_of_the_automations_service_account() {
    let clock = TestClock::new();
    let requests = Arc::new(AtomicUsize::new(0));
    let aad = aad_sim("aad-token-sa".into(), requests.clone()).await;
    // No controller identity: only the service accounts' federated identities can succeed.
    let env = registry::CloudEnv::from_pairs([("AZURE_AUTHORITY_HOST".to_string(), aad.clone())]);
    let context = |default: Option<&str>| {
        registry::AuthContext::with_clock(
            env.clone(),
            registry::CredentialHelpers::default(),
            clock.clock(),
        )
        .with_object_level_identity(registry::ObjectLevelIdentity {
            enabled: true,
            default_service_account: default.map(str::to_string),
        })
    };
    let annotated = |client: &str| {
        BTreeMap::from([
            (
                registry::cloud::AZURE_CLIENT_ID_ANNOTATION.to_string(),
                client.to_string(),
            ),
            (
                registry::cloud::AZURE_TENANT_ID_ANNOTATION.to_string(),
                "tenant-1".to_string(),
            ),
        ])
    };
    let accounts = Arc::new(Accounts {
        annotations: BTreeMap::from([
            ("apps/pusher".to_string(), annotated("client-1")),
            ("apps/other".to_string(), annotated("client-2")),
            (
                "apps/bare".to_string(),
                BTreeMap::from([(
                    registry::cloud::AZURE_TENANT_ID_ANNOTATION.to_string(),
                    "tenant-1".to_string(),
                )]),
            ),
            // Same name in the GitRepository's namespace: must not be used.
            ("ns/pusher".to_string(), annotated("client-2")),
        ]),
        ..Accounts::default()
    });
    let object = |enabled| ObjectIdentity {
        enabled,
        namespace: "apps",
        accounts: Some(accounts.clone() as Arc<dyn ServiceAccounts>),
    };
    let p = Providers::new(context(None), "http://127.0.0.1:9".into(), clock.clock());
    let get = |sa: Option<&'static str>, enabled| {
        let p = &p;
        let object = object(enabled);
        async move {
            p.credential(
                &repo(Some("azure"), None, sa),
                &BTreeMap::new(),
                None,
                object,
            )
            .await
        }
    };

    // The service account of the automation's namespace, its annotated client and tenant, Entra ID's
    // audience: the AAD simulation accepts only that assertion.
    let c = get(Some("pusher"), true).await.unwrap().unwrap();
    assert!(c.kind == Kind::Bearer("aad-token-sa".into()));
    assert_eq!(
        c.identity,
        format!("azure:apps/pusher:{AZURE_DEVOPS_SCOPE}")
    );
    assert_secret_free(&format!("{c:?}"));
    assert_eq!(
        *accounts.token_requests.lock().unwrap(),
        ["apps/pusher:api://AzureADTokenExchange"]
    );
    // Cached per identity; refreshed before expiry.
    get(Some("pusher"), true).await.unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(3600 - 5 * 60));
    get(Some("pusher"), true).await.unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(accounts.token_requests.lock().unwrap().len(), 2);

    // Another service account never gets pusher's cached token (its client is refused here).
    let e = get(Some("other"), true).await.unwrap_err();
    assert_eq!(e.reason(), SOURCE_MANAGER_FAILED_REASON);
    assert!(e.message().contains("401 Unauthorized"), "{e}");
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    // Missing service account, missing annotation: clear, secret-free, retried.
    for (sa, expected) in [
        (
            "missing",
            "GitRepository 'ns/repo' provider 'azure': service account 'apps/missing' not found",
        ),
        (
            "bare",
            "GitRepository 'ns/repo' provider 'azure': service account 'apps/bare': annotation 'azure.workload.identity/client-id' is not set: set it to the client ID of the federated identity",
        ),
    ] {
        let e = get(Some(sa), true).await.unwrap_err();
        assert_eq!(e.reason(), SOURCE_MANAGER_FAILED_REASON);
        assert!(e.message().ends_with(expected), "{e}");
        assert_secret_free(e.message());
    }
    // Gate off: stalled with Flux's message, nothing requested.
    let e = get(Some("pusher"), false).await.unwrap_err();
    assert_eq!(e.reason(), FEATURE_GATE_DISABLED_REASON);
    // Without an API server (run-once) the service account cannot be read.
    let e = p
        .credential(
            &repo(Some("azure"), None, Some("pusher")),
            &BTreeMap::new(),
            None,
            gate(true),
        )
        .await
        .unwrap_err();
    assert!(e.message().contains("needs the Kubernetes API"), "{e}");

    // --default-service-account when the GitRepository names none.
    let with_default = |sa: &'static str| {
        let p = Providers::new(
            context(Some(sa)),
            "http://127.0.0.1:9".into(),
            clock.clock(),
        );
        let object = object(true);
        async move {
            p.credential(
                &repo(Some("azure"), None, None),
                &BTreeMap::new(),
                None,
                object,
            )
            .await
        }
    };
    let c = with_default("pusher").await.unwrap().unwrap();
    assert_eq!(
        c.identity,
        format!("azure:apps/pusher:{AZURE_DEVOPS_SCOPE}")
    );
    let e = with_default("absent").await.unwrap_err();
    assert!(
        e.message()
            .contains(registry::cloud::DEFAULT_SERVICE_ACCOUNT_NOT_FOUND),
        "{e}"
    );
}

// ---- Pushes to the real Git servers of the test environment. ----

fn git_settings() -> GitSettings {
    GitSettings {
        all_branch_refs: true,
        force_push_branch: true,
        shallow: false,
        ssh: git::SshOptions::default(),
    }
}

fn branches() -> Branches {
    Branches {
        checkout: api::git_repository::GitRepositoryRef {
            branch: "main".into(),
            ..Default::default()
        },
        push_branch: "main".into(),
        switch_branch: false,
        refspec: None,
        push_options: BTreeMap::new(),
    }
}

/// Checks out `remote`, writes `file`, commits and pushes; blocking (libgit2).
fn push_file(cache: &GitCache, remote: &Remote, file: &str) -> Result<(), Failure> {
    let b = branches();
    let mut ws = crate::gitops::checkout(cache, remote, &b)?;
    let settings = CommitSettings {
        author_name: "bot".into(),
        author_email: "bot@example.com".into(),
        template: String::new(),
        values: None,
        signing: None,
    };
    {
        let mut tree = ws.tree();
        std::fs::write(tree.workdir().join(file), file).unwrap();
        tree.commit(&settings, &format!("add {file}"))?;
    }
    ws.push(&b, Instant::now(), &mut |_| Ok(()))
}

fn remote_files(bare: &Path) -> String {
    testenv::git::git(bare, &["ls-tree", "--name-only", "main"]).unwrap()
}

/// Holds the test environment's htpasswd for the test's duration and maps user `x-access-token` to the
/// newest installation token: like GitHub, the Git server accepts the tokens the API issued, and a
/// rotated one replaces its predecessor. The file is re-read by nginx on every request.
struct Htpasswd {
    path: std::path::PathBuf,
    original: String,
    _lock: std::fs::File,
}

impl Htpasswd {
    fn take() -> Htpasswd {
        let path = std::path::PathBuf::from(testenv::env().var("TESTENV_HTPASSWD").unwrap());
        let lock = std::fs::File::create(path.with_extension("gitprov-lock")).unwrap();
        lock.lock().unwrap();
        let original = std::fs::read_to_string(&path).unwrap();
        Htpasswd {
            path,
            original,
            _lock: lock,
        }
    }

    fn register(path: &Path, original: &str, token: &str) {
        let kept: String = original
            .lines()
            .filter(|l| !l.starts_with("x-access-token:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = path.with_extension("gitprov-tmp");
        std::fs::write(&tmp, format!("{kept}x-access-token:{{PLAIN}}{token}\n")).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

impl Drop for Htpasswd {
    fn drop(&mut self) {
        let tmp = self.path.with_extension("gitprov-tmp");
        let _ =
            std::fs::write(&tmp, &self.original).and_then(|()| std::fs::rename(&tmp, &self.path));
    }
}

/// Captures log output (every level) to check that no token reaches it.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_app_token_pushes_over_https_and_a_refreshed_token_replaces_it() {
    let env = testenv::env();
    let hold = Htpasswd::take();
    let (path, original) = (hold.path.clone(), hold.original.clone());
    let clock = TestClock::new();
    let (sim, api) = github_sim(
        &clock,
        Duration::from_secs(3600),
        Box::new(move |token| Htpasswd::register(&path, &original, token)),
    )
    .await;
    let name = testenv::unique_name("gitprov-github");
    let bare =
        testenv::git::seed_bare_repo(&env.git_root().unwrap(), &name, &[("README", "x")]).unwrap();
    let url = env.git_url(testenv::GitTransport::Https, &name).unwrap();
    let ca = std::fs::read(env.ca_cert().unwrap()).unwrap();
    let mut secret = app_secret(&api);
    secret.insert("ca.crt".into(), ca);
    let mut r = repo(Some("github"), Some("app"), None);
    r.spec.url = url.clone();
    let p = Arc::new(providers(&clock, &[]));
    let logs = global_logs();

    let resolve = |p: Arc<Providers>, r: GitRepository, secret: BTreeMap<String, Vec<u8>>| async move {
        let provider = p.credential(&r, &secret, None, gate(false)).await?;
        Ok::<_, Failure>(Remote {
            url: r.spec.url.clone(),
            auth: secret,
            provider,
            proxy: None,
            timeout: Duration::from_secs(60),
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(
        GitCache::new(dir.path(), 0, git_settings(), Arc::new(Default::default())).unwrap(),
    );
    let blocking = |cache: Arc<GitCache>, remote: Remote, file: &'static str| {
        tokio::task::spawn_blocking(move || push_file(&cache, &remote, file))
    };

    let first = resolve(p.clone(), r.clone(), secret.clone()).await.unwrap();
    blocking(cache.clone(), first.clone(), "one")
        .await
        .unwrap()
        .unwrap();
    assert!(remote_files(&bare).contains("one"));
    // The token is cached: a second run pushes without asking the API.
    let second = resolve(p.clone(), r.clone(), secret.clone()).await.unwrap();
    assert_eq!(second, first);
    blocking(cache.clone(), second, "two")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sim.requests.load(Ordering::SeqCst), 1);

    // Past its refresh time the next run gets a new token; the server now accepts only that one.
    clock.advance(Duration::from_secs(3600));
    let third = resolve(p.clone(), r.clone(), secret.clone()).await.unwrap();
    assert_eq!(sim.requests.load(Ordering::SeqCst), 2);
    assert_ne!(third.provider, first.provider);
    blocking(cache.clone(), third, "three")
        .await
        .unwrap()
        .unwrap();
    let files = remote_files(&bare);
    assert!(files.contains("three") && files.contains("two"), "{files}");
    // The stale token is refused by the server: the push really used the issued credential.
    let stale_dir = tempfile::tempdir().unwrap();
    let stale_cache = Arc::new(
        GitCache::new(
            stale_dir.path(),
            0,
            git_settings(),
            Arc::new(Default::default()),
        )
        .unwrap(),
    );
    let e = blocking(stale_cache, first, "four")
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        e.message().contains("failed to checkout source") && e.message().contains("authentication"),
        "{e}"
    );

    let tokens: Vec<String> = sim
        .issued
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("obtained Git provider credentials"), "{text}");
    for t in &tokens {
        assert!(!text.contains(t.as_str()) && !e.message().contains(t.as_str()));
    }
    // Nor any other test's token, key or JWT (the subscriber is global).
    assert_secret_free(&text);
    drop(hold);
}

/// Every log line of this test binary, at every level: one global subscriber, because a thread-local
/// one misses callsites whose interest another test thread cached first.
fn global_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_devops_token_pushes_with_bearer_auth() {
    let logs = global_logs();
    let env = testenv::env();
    let clock = TestClock::new();
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = env.git_bearer_token().unwrap().to_string();
    let aad = aad_sim(accepted, requests.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = providers(&clock, &azure_env(dir.path(), &aad));
    let name = testenv::unique_name("gitprov-azure");
    let bare =
        testenv::git::seed_bare_repo(&env.git_root().unwrap(), &name, &[("README", "x")]).unwrap();
    let mut r = repo(Some("azure"), None, None);
    r.spec.url = env
        .git_url(testenv::GitTransport::HttpBearer, &name)
        .unwrap();
    let provider = p
        .credential(&r, &BTreeMap::new(), None, gate(false))
        .await
        .unwrap();
    assert!(provider.is_some());
    let remote = Remote {
        url: r.spec.url.clone(),
        auth: BTreeMap::new(),
        provider,
        proxy: None,
        timeout: Duration::from_secs(60),
    };
    let cache = GitCache::new(
        dir.path().join("cache").as_path(),
        0,
        git_settings(),
        Arc::new(Default::default()),
    )
    .unwrap();
    let anonymous = Remote {
        provider: None,
        ..remote.clone()
    };
    tokio::task::spawn_blocking(move || {
        // Without the AAD token the server refuses; with it the push goes through.
        let e = push_file(&cache, &anonymous, "refused").unwrap_err();
        assert!(
            e.message().contains("failed to checkout source")
                && e.message().contains("authentication"),
            "{e}"
        );
        push_file(&cache, &remote, "pushed").unwrap();
    })
    .await
    .unwrap();
    assert!(remote_files(&bare).contains("pushed"));
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        !text.contains(env.git_bearer_token().unwrap()),
        "token logged"
    );
}
