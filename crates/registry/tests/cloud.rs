//! Cloud provider credentials against local simulations of the documented wire protocols (STS XML,
//! IMDSv2, EKS Pod Identity, ECR and ECR Public JSON APIs signed with SigV4, GCP metadata server, AAD
//! token endpoint, Azure IMDS, ACR `/oauth2/exchange`), and a token-auth registry that checks the
//! credentials it receives. Provider registry hosts reach the loopback registry through the client's
//! test-only host map. Also the Docker credential-helper protocol with helper scripts written here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly on bad fixtures

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use registry::cloud::{
    AWS_ROLE_ARN_ANNOTATION, AZURE_CLIENT_ID_ANNOTATION, AZURE_TENANT_ID_ANNOTATION, BoxFuture,
    GCP_SERVICE_ACCOUNT_ANNOTATION, GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION, Identity,
};
use registry::{
    Access, AccessSpec, AuthContext, Client, ClientConfig, CloudEnv, CredentialHelpers, ImageRef,
    Keychain, ObjectLevelIdentity, RegistryError, SecretData, SecretSource, ServiceAccounts,
    SourceError, resolve_access_with,
};
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const LONG: Duration = Duration::from_secs(60);
const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const ACR_HOST: &str = "myreg.azurecr.io";
const GCP_HOST: &str = "europe-west1-docker.pkg.dev";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registry with token auth: `/v2/` challenges, `/token` accepts the basic credentials in `valid`
/// (recording every pair it sees) and `/v2/app/tags/list` requires one of its bearer tokens.
#[derive(Clone, Default)]
struct TokenRegistry {
    valid: Arc<Mutex<Vec<(String, String)>>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl TokenRegistry {
    async fn start(&self) -> MockServer {
        let server = MockServer::start().await;
        let realm = format!("{}/token", server.uri());
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(401).insert_header(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="sim-registry""#),
            ))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/token"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v2/app/tags/list"))
            .and(header("authorization", "Bearer sim-bearer"))
            .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["1.0","2.0"]}"#))
            .mount(&server)
            .await;
        server
    }

    /// A started registry accepting the given user/password pairs.
    async fn allowing(pairs: &[(&str, &str)]) -> (TokenRegistry, MockServer) {
        let reg = TokenRegistry::default();
        for (u, p) in pairs {
            reg.allow(u, p);
        }
        let server = reg.start().await;
        (reg, server)
    }

    fn allow(&self, user: &str, pass: &str) {
        self.valid
            .lock()
            .unwrap()
            .push((user.to_string(), pass.to_string()));
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Respond for TokenRegistry {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let denied = ResponseTemplate::new(401).set_body_string(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        let Some(auth) = req.headers.get("authorization") else {
            return denied;
        };
        let Some(encoded) = auth.to_str().unwrap().strip_prefix("Basic ") else {
            return denied;
        };
        let decoded = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap();
        let (u, p) = decoded.split_once(':').unwrap();
        let pair = (u.to_string(), p.to_string());
        self.seen.lock().unwrap().push(pair.clone());
        if self.valid.lock().unwrap().contains(&pair) {
            ResponseTemplate::new(200).set_body_string(r#"{"token":"sim-bearer","expires_in":300}"#)
        } else {
            denied
        }
    }
}

/// A clock the test moves forward.
#[derive(Clone)]
struct TestClock(Arc<Mutex<Duration>>);

impl TestClock {
    fn new() -> TestClock {
        TestClock(Arc::new(Mutex::new(Duration::ZERO)))
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
    fn context(&self, env: CloudEnv, helpers: CredentialHelpers) -> AuthContext {
        let offset = self.0.clone();
        AuthContext::with_clock(
            env,
            helpers,
            Arc::new(move || SystemTime::now() + *offset.lock().unwrap()),
        )
    }
}

fn env(pairs: &[(&str, String)]) -> CloudEnv {
    CloudEnv::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())))
}

/// A context over `pairs` with the real clock and no credential helpers.
fn context_of(pairs: &[(&str, String)]) -> AuthContext {
    AuthContext::new(env(pairs), CredentialHelpers::default())
}

/// A server answering every request with `status` and `body`.
async fn answering(status: u16, body: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(status).set_body_string(body))
        .mount(&server)
        .await;
    server
}

/// A client whose connections for `host` go to the simulated registry.
fn client_for(host: &str, registry: &MockServer) -> Client {
    Client::new(ClientConfig {
        host_map: vec![(host.to_string(), *registry.address())],
        max_attempts: 1,
        ..Default::default()
    })
    .unwrap()
}

/// No secrets (provider objects need none); service accounts when given.
#[derive(Default)]
struct NoSecrets {
    accounts: Option<FakeAccounts>,
}

impl SecretSource for NoSecrets {
    async fn secret(&self, _: &str, _: &str) -> Result<Option<SecretData>, SourceError> {
        Ok(None)
    }
    async fn service_account_pull_secrets(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        Ok(None)
    }
    fn service_accounts(&self) -> Option<Arc<dyn ServiceAccounts>> {
        let accounts = self.accounts.clone()?;
        Some(Arc::new(accounts))
    }
}

async fn provider_access(provider: &str, ctx: &AuthContext) -> Access {
    let spec = AccessSpec {
        namespace: "apps".into(),
        provider: Some(provider.into()),
        ..Default::default()
    };
    resolve_access_with(&spec, &NoSecrets::default(), ctx)
        .await
        .unwrap()
}

/// The message of a tag listing that must fail.
async fn list_err(client: &Client, image: &ImageRef, access: &Access) -> String {
    client
        .list_tags(image, access, LONG)
        .await
        .unwrap_err()
        .to_string()
}

fn image(host: &str) -> ImageRef {
    // Insecure: the simulated registry speaks plain HTTP.
    ImageRef::parse(&format!("{host}/app"), true).unwrap()
}

// ---------------------------------------------------------------------------------------------- AWS

/// ECR `GetAuthorizationToken`: checks the SigV4 signature against the expected key, then hands out
/// `AWS:<prefix>-<n>` tokens valid for 12 h.
struct EcrApi {
    access_key: &'static str,
    secret_key: &'static str,
    session_token: Option<&'static str>,
    service: &'static str,
    target: &'static str,
    prefix: &'static str,
    public: bool,
    issued: Arc<Mutex<u32>>,
}

impl Respond for EcrApi {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        if h("x-amz-target").as_deref() != Some(self.target)
            || h("content-type").as_deref() != Some("application/x-amz-json-1.1")
        {
            return ResponseTemplate::new(400)
                .set_body_string(r#"{"__type":"UnknownOperationException"}"#);
        }
        if h("x-amz-security-token").as_deref() != self.session_token {
            return ResponseTemplate::new(403).set_body_string(
                r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
            );
        }
        // Recompute the signature with the expected secret at the request's own time.
        let amz_date = h("x-amz-date").unwrap_or_default();
        let fmt = time::format_description::parse_borrowed::<2>(
            "[year][month][day]T[hour][minute][second]Z",
        )
        .unwrap();
        let t = time::PrimitiveDateTime::parse(&amz_date, &fmt)
            .unwrap()
            .assume_utc();
        let expected = sign_like_aws(
            self.access_key,
            self.secret_key,
            self.session_token,
            SystemTime::from(t),
            self.service,
            req,
        );
        if h("authorization") != Some(expected) {
            return ResponseTemplate::new(403).set_body_string(
                r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided."}"#,
            );
        }
        let mut n = self.issued.lock().unwrap();
        *n += 1;
        let token = b64(&format!("AWS:{}-{n}", self.prefix));
        let expires = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 12.0 * 3600.0;
        let data = serde_json::json!({"authorizationToken": token, "expiresAt": expires, "proxyEndpoint": format!("https://{ECR_HOST}")});
        let body = if self.public {
            serde_json::json!({ "authorizationData": data })
        } else {
            serde_json::json!({ "authorizationData": [data] })
        };
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/x-amz-json-1.1")
            .set_body_json(body)
    }
}

/// The `authorization` header AWS expects for `req` (signed headers: host, content-type, x-amz-target).
fn sign_like_aws(
    ak: &str,
    sk: &str,
    token: Option<&str>,
    at: SystemTime,
    service: &str,
    req: &Request,
) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity =
        aws_credential_types::Credentials::new(ak, sk, token.map(str::to_string), None, "t").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    // wiremock reports `http://localhost/...`: the signed host is the one the client sent.
    let host = req.headers.get("host").unwrap().to_str().unwrap();
    let url = format!("http://{host}{}", req.url.path());
    let headers: Vec<(&str, &str)> = ["content-type", "x-amz-target"]
        .iter()
        .map(|n| (*n, req.headers.get(*n).unwrap().to_str().unwrap()))
        .collect();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.into_iter(),
        SignableBody::Bytes(&req.body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .find(|(k, _)| *k == "authorization")
        .unwrap()
        .1
        .to_string()
}

async fn ecr_api(
    service: &'static str,
    target: &'static str,
    public: bool,
    ak: &'static str,
    sk: &'static str,
    token: Option<&'static str>,
) -> (MockServer, Arc<Mutex<u32>>) {
    let server = MockServer::start().await;
    let issued = Arc::new(Mutex::new(0));
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(EcrApi {
            access_key: ak,
            secret_key: sk,
            session_token: token,
            service,
            target,
            prefix: if public { "public" } else { "ecr" },
            public,
            issued: issued.clone(),
        })
        .mount(&server)
        .await;
    (server, issued)
}

const PRIVATE_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";

fn sts_xml(ak: &str, sk: &str, token: &str) -> String {
    format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:flux-system:image-reflector-controller</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/reflector/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{ak}</AccessKeyId>
      <SecretAccessKey>{sk}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#
    )
}

/// STS answering `AssumeRoleWithWebIdentity` requests whose form body contains every one of
/// `required` with the given credentials.
async fn sts_server(ak: &str, sk: &str, token: &str, required: &[&str]) -> MockServer {
    let sts = MockServer::start().await;
    let mut mock = Mock::given(method("POST")).and(path("/"));
    for r in required {
        mock = mock.and(body_string_contains(*r));
    }
    mock.respond_with(
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/xml")
            .set_body_string(sts_xml(ak, sk, token)),
    )
    .mount(&sts)
    .await;
    sts
}

fn token_file(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

#[tokio::test]
async fn aws_irsa_ecr_token_fetched_used_cached_and_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let sa_token = "eyJhbGciOiJSUzI1NiJ9.sa-token.sig";
    let sts = sts_server(
        "ASIASTS",
        "sts-secret-key",
        "sts-session-token",
        &[
            "Action=AssumeRoleWithWebIdentity",
            "Version=2011-06-15",
            "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freflector",
            &format!("WebIdentityToken={sa_token}"),
        ],
    )
    .await;
    let (ecr, issued) = ecr_api(
        "ecr",
        PRIVATE_TARGET,
        false,
        "ASIASTS",
        "sts-secret-key",
        Some("sts-session-token"),
    )
    .await;
    let (reg, registry) = TokenRegistry::allowing(&[("AWS", "ecr-1"), ("AWS", "ecr-2")]).await;

    let clock = TestClock::new();
    let ctx = clock.context(
        env(&[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file(dir.path(), "token", sa_token),
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/reflector".into(),
            ),
            ("AWS_ENDPOINT_URL_STS", sts.uri()),
            ("AWS_ENDPOINT_URL_ECR", ecr.uri()),
        ]),
        CredentialHelpers::default(),
    );
    let access = provider_access("aws", &ctx).await;
    let client = client_for(ECR_HOST, &registry);
    let img = image(ECR_HOST);

    let tags = client.list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(tags, vec!["1.0", "2.0"]);
    assert_eq!(reg.seen(), vec![("AWS".into(), "ecr-1".into())]);

    // Cached: no new STS or ECR call within the token's life.
    clock.advance(Duration::from_secs(11 * 3600));
    client.list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(*issued.lock().unwrap(), 1);
    assert_eq!(sts.received_requests().await.unwrap().len(), 1);

    // Five minutes before the 12 h expiry the token is replaced.
    clock.advance(Duration::from_secs(3600 - 299));
    client.list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(*issued.lock().unwrap(), 2);
    assert_eq!(sts.received_requests().await.unwrap().len(), 2);
    assert_eq!(
        reg.seen().last().unwrap(),
        &("AWS".to_string(), "ecr-2".to_string())
    );
}

#[tokio::test]
async fn aws_imds_v2_and_public_ecr() {
    let imds = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/latest/api/token"))
        .and(header("x-aws-ec2-metadata-token-ttl-seconds", "21600"))
        .respond_with(ResponseTemplate::new(200).set_body_string("imds-session"))
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/"))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_string("node-role\n"))
        .mount(&imds)
        .await;
    Mock::given(method("GET"))
        .and(path("/latest/meta-data/iam/security-credentials/node-role"))
        .and(header("x-aws-ec2-metadata-token", "imds-session"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "Code": "Success", "LastUpdated": "2026-11-22T19:00:00Z", "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAIMDS", "SecretAccessKey": "imds-secret", "Token": "imds-token",
            "Expiration": "2099-01-01T00:00:00Z"
        })))
        .mount(&imds)
        .await;
    let (ecr, _) = ecr_api(
        "ecr-public",
        PUBLIC_TARGET,
        true,
        "ASIAIMDS",
        "imds-secret",
        Some("imds-token"),
    )
    .await;
    let (reg, registry) = TokenRegistry::allowing(&[("AWS", "public-1")]).await;
    let ctx = context_of(&[
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.uri()),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", ecr.uri()),
    ]);
    let access = provider_access("aws", &ctx).await;
    let tags = client_for("public.ecr.aws", &registry)
        .list_tags(&image("public.ecr.aws"), &access, LONG)
        .await
        .unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(reg.seen(), vec![("AWS".into(), "public-1".into())]);
}

#[tokio::test]
async fn aws_pod_identity() {
    let dir = tempfile::tempdir().unwrap();
    let agent = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/credentials"))
        .and(header("authorization", "pod-identity-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "AccessKeyId": "ASIAPOD", "SecretAccessKey": "pod-secret", "Token": "pod-token",
            "AccountId": "123456789012", "Expiration": "2099-01-01T00:00:00Z"
        })))
        .mount(&agent)
        .await;
    let (ecr, _) = ecr_api(
        "ecr",
        PRIVATE_TARGET,
        false,
        "ASIAPOD",
        "pod-secret",
        Some("pod-token"),
    )
    .await;
    let (reg, registry) = TokenRegistry::allowing(&[("AWS", "ecr-1")]).await;
    let ctx = context_of(&[
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/v1/credentials", agent.uri()),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file(dir.path(), "eks-pod-identity-token", "pod-identity-token\n"),
        ),
        ("AWS_ENDPOINT_URL_ECR", ecr.uri()),
    ]);
    let access = provider_access("aws", &ctx).await;
    client_for(ECR_HOST, &registry)
        .list_tags(&image(ECR_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(reg.seen(), vec![("AWS".into(), "ecr-1".into())]);
}

/// Fails the test if `text` contains any of `secrets`.
fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} leaked into: {text}");
    }
}

#[tokio::test]
async fn aws_failures_are_clear_and_secret_free() {
    let dir = tempfile::tempdir().unwrap();
    let sts = answering(
        403,
        r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>"#,
    )
    .await;
    let registry = TokenRegistry::default().start().await;
    let client = client_for(ECR_HOST, &registry);
    let ctx = context_of(&[
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file(dir.path(), "t", "secret-sa-jwt"),
        ),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/reflector".into(),
        ),
        ("AWS_ENDPOINT_URL_STS", sts.uri()),
    ]);
    let access = provider_access("aws", &ctx).await;
    let err = client
        .list_tags(&image(ECR_HOST), &access, LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Credentials(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "provider 'aws': STS AssumeRoleWithWebIdentity: POST {}/: 403 Forbidden: ",
            sts.uri()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("Not authorized to perform sts:AssumeRoleWithWebIdentity"),
        "{msg}"
    );
    assert_no_secret(&msg, &["secret-sa-jwt"]);
    assert_no_secret(&format!("{err:?} {access:?}"), &["secret-sa-jwt"]);

    // ECR refuses the signature (wrong secret key from the identity).
    let (ecr, _) = ecr_api(
        "ecr",
        PRIVATE_TARGET,
        false,
        "AKIASTATIC",
        "right-key",
        None,
    )
    .await;
    let ctx = context_of(&[
        ("AWS_ACCESS_KEY_ID", "AKIASTATIC".into()),
        ("AWS_SECRET_ACCESS_KEY", "wrong-key".into()),
        ("AWS_ENDPOINT_URL_ECR", ecr.uri()),
    ]);
    let access = provider_access("aws", &ctx).await;
    let msg = list_err(&client, &image(ECR_HOST), &access).await;
    assert!(
        msg.starts_with("provider 'aws': ECR GetAuthorizationToken: POST ")
            && msg.contains("403 Forbidden")
            && msg.contains("InvalidSignatureException"),
        "{msg}"
    );
    assert_no_secret(&msg, &["wrong-key", "right-key"]);
    assert_no_secret(&format!("{access:?} {ctx:?}"), &["wrong-key"]);

    // No identity at all.
    let ctx = context_of(&[("AWS_EC2_METADATA_DISABLED", "true".into())]);
    let access = provider_access("aws", &ctx).await;
    let msg = list_err(&client, &image(ECR_HOST), &access).await;
    assert!(
        msg.starts_with("provider 'aws': no AWS credentials: set up IRSA"),
        "{msg}"
    );

    // A registry the provider does not serve.
    let msg = list_err(&client, &image("ghcr.io"), &access).await;
    assert!(
        msg.starts_with(
            "provider 'aws': registry 'ghcr.io' does not match the aws registry pattern"
        ),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------- GCP

/// The metadata server's token endpoint: requires `Metadata-Flavor: Google`, answers with it, and
/// hands out `ya29.gcp-<n>` valid for `ttl` seconds.
struct Metadata {
    issued: Arc<Mutex<u32>>,
    ttl: u64,
}

impl Respond for Metadata {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut n = self.issued.lock().unwrap();
        *n += 1;
        ResponseTemplate::new(200)
            .insert_header("metadata-flavor", "Google")
            .set_body_json(serde_json::json!({"access_token": format!("ya29.gcp-{n}"), "expires_in": self.ttl, "token_type": "Bearer"}))
    }
}

/// A metadata server handing out the default service account's tokens; counts them.
async fn metadata_server(ttl: u64) -> (MockServer, Arc<Mutex<u32>>) {
    let md = MockServer::start().await;
    let issued = Arc::new(Mutex::new(0));
    Mock::given(method("GET"))
        .and(path(
            "/computeMetadata/v1/instance/service-accounts/default/token",
        ))
        .and(header("metadata-flavor", "Google"))
        .respond_with(Metadata {
            issued: issued.clone(),
            ttl,
        })
        .mount(&md)
        .await;
    (md, issued)
}

#[tokio::test]
async fn gcp_metadata_token_fetched_used_and_refreshed() {
    let (md, issued) = metadata_server(3599).await;
    let (reg, registry) = TokenRegistry::allowing(&[
        ("oauth2accesstoken", "ya29.gcp-1"),
        ("oauth2accesstoken", "ya29.gcp-2"),
    ])
    .await;
    let clock = TestClock::new();
    let ctx = clock.context(
        env(&[("GCE_METADATA_HOST", md.address().to_string())]),
        CredentialHelpers::default(),
    );
    let access = provider_access("gcp", &ctx).await;
    let client = client_for(GCP_HOST, &registry);
    client
        .list_tags(&image(GCP_HOST), &access, LONG)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3000));
    client
        .list_tags(&image(GCP_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(*issued.lock().unwrap(), 1);
    clock.advance(Duration::from_secs(600));
    client
        .list_tags(&image(GCP_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(*issued.lock().unwrap(), 2);
    assert_eq!(
        reg.seen(),
        vec![
            ("oauth2accesstoken".into(), "ya29.gcp-1".into()),
            ("oauth2accesstoken".into(), "ya29.gcp-2".into())
        ]
    );
}

#[tokio::test]
async fn gcp_failures() {
    // Not a metadata server: no flavor header in the answer.
    let md = answering(200, r#"{"access_token":"captive-portal-secret"}"#).await;
    let registry = TokenRegistry::default().start().await;
    let client = client_for(GCP_HOST, &registry);
    let ctx = context_of(&[("GCE_METADATA_HOST", md.address().to_string())]);
    let access = provider_access("gcp", &ctx).await;
    let msg = list_err(&client, &image(GCP_HOST), &access).await;
    assert!(
        msg.starts_with("provider 'gcp': metadata server access token: GET http://")
            && msg.ends_with("response lacks 'Metadata-Flavor: Google': not a GCP metadata server"),
        "{msg}"
    );
    assert_no_secret(&msg, &["captive-portal-secret"]);

    // The workload identity is not bound: the metadata server says so.
    let md = answering(404, "service account not found").await;
    let ctx = context_of(&[("GCE_METADATA_HOST", md.address().to_string())]);
    let access = provider_access("gcp", &ctx).await;
    let msg = list_err(&client, &image(GCP_HOST), &access).await;
    assert!(
        msg.ends_with("404 Not Found: service account not found"),
        "{msg}"
    );
    let msg = list_err(&client, &image("quay.io"), &access).await;
    assert!(
        msg.starts_with("provider 'gcp': registry 'quay.io' does not match"),
        "{msg}"
    );
}

// -------------------------------------------------------------------------------------------- Azure

const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

fn jwt(exp: u64) -> String {
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        e(r#"{"alg":"RS256","typ":"JWT"}"#),
        e(&format!(r#"{{"exp":{exp},"aud":"{ACR_HOST}"}}"#))
    )
}

/// ACR `/oauth2/exchange`: accepts an AAD token from `valid` and returns a refresh token (a JWT with an
/// `exp` claim `ttl` seconds ahead); records the refresh tokens it issued.
struct AcrExchange {
    valid: &'static [&'static str],
    ttl: u64,
    issued: Arc<Mutex<Vec<String>>>,
    /// The registry that accepts the issued refresh tokens (as ACR does).
    registry: TokenRegistry,
}

impl Respond for AcrExchange {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let form: BTreeMap<String, String> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let ok = form.get("grant_type").map(String::as_str) == Some("access_token")
            && form.get("service").map(String::as_str) == Some(ACR_HOST)
            && form
                .get("access_token")
                .is_some_and(|t| self.valid.contains(&t.as_str()));
        if !ok {
            return ResponseTemplate::new(401).set_body_string(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid AAD token"}]}"#,
            );
        }
        let mut issued = self.issued.lock().unwrap();
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + self.ttl
            + issued.len() as u64; // distinct tokens
        let t = jwt(exp);
        issued.push(t.clone());
        self.registry.allow(ACR_USER, &t);
        ResponseTemplate::new(200).set_body_json(serde_json::json!({ "refresh_token": t }))
    }
}

/// A token-auth ACR whose `/oauth2/exchange` accepts the AAD tokens in `valid` and issues refresh
/// tokens valid for `ttl` seconds (recorded), which its token endpoint then accepts.
async fn acr_registry(
    valid: &'static [&'static str],
    ttl: u64,
) -> (TokenRegistry, MockServer, Arc<Mutex<Vec<String>>>) {
    let reg = TokenRegistry::default();
    let registry = reg.start().await;
    let issued = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/oauth2/exchange"))
        .respond_with(AcrExchange {
            valid,
            ttl,
            issued: issued.clone(),
            registry: reg.clone(),
        })
        .mount(&registry)
        .await;
    (reg, registry, issued)
}

/// Entra ID's token endpoint for `tenant`: a client-assertion grant of `client` whose form also
/// contains `required` gets `access_token`.
async fn aad_server(
    tenant: &str,
    client: &str,
    required: &[&str],
    access_token: &str,
) -> MockServer {
    let aad = MockServer::start().await;
    let mut mock = Mock::given(method("POST"))
        .and(path(format!("/{tenant}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(format!("client_id={client}").as_str()))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ));
    for r in required {
        mock = mock.and(body_string_contains(*r));
    }
    mock.respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "token_type": "Bearer", "expires_in": 86399, "access_token": access_token
    })))
    .mount(&aad)
    .await;
    aad
}

#[tokio::test]
async fn azure_workload_identity_exchange_and_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let aad = aad_server(
        "tenant-1",
        "client-1",
        &[
            "client_assertion=federated-sa-token",
            "scope=https%3A%2F%2Fmanagement.azure.com%2F.default",
        ],
        "aad-token-1",
    )
    .await;
    let (reg, registry, issued) = acr_registry(&["aad-token-1"], 3 * 3600).await;
    let clock = TestClock::new();
    let ctx = clock.context(
        env(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file(dir.path(), "azure-identity-token", "federated-sa-token"),
            ),
            ("AZURE_CLIENT_ID", "client-1".into()),
            ("AZURE_TENANT_ID", "tenant-1".into()),
            ("AZURE_AUTHORITY_HOST", format!("{}/", aad.uri())),
        ]),
        CredentialHelpers::default(),
    );
    let access = provider_access("azure", &ctx).await;
    let client = client_for(ACR_HOST, &registry);
    client
        .list_tags(&image(ACR_HOST), &access, LONG)
        .await
        .unwrap();
    let first = issued.lock().unwrap()[0].clone();
    assert_eq!(reg.seen(), vec![(ACR_USER.to_string(), first.clone())]);
    // Cached for the refresh token's life.
    clock.advance(Duration::from_secs(2 * 3600));
    client
        .list_tags(&image(ACR_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(aad.received_requests().await.unwrap().len(), 1);
    assert_eq!(issued.lock().unwrap().len(), 1);
    // Refreshed before the 3 h refresh token expires: a new AAD token and a new exchange.
    clock.advance(Duration::from_secs(3600 - 200));
    client
        .list_tags(&image(ACR_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(aad.received_requests().await.unwrap().len(), 2);
    let second = issued.lock().unwrap()[1].clone();
    assert_ne!(first, second);
    assert_eq!(reg.seen().last().unwrap(), &(ACR_USER.to_string(), second));
}

#[tokio::test]
async fn azure_imds_and_failures() {
    let imds = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/metadata/identity/oauth2/token"))
        .and(query_param("api-version", "2018-02-01"))
        .and(query_param("resource", "https://management.azure.com/"))
        .and(header("metadata", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "aad-imds-token", "expires_in": "3599", "token_type": "Bearer",
            "resource": "https://management.azure.com/"
        })))
        .mount(&imds)
        .await;
    let (reg, registry, _) = acr_registry(&["aad-imds-token"], 3 * 3600).await;
    let ctx = context_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.uri())]);
    let access = provider_access("azure", &ctx).await;
    let client = client_for(ACR_HOST, &registry);
    client
        .list_tags(&image(ACR_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(reg.seen().len(), 1);

    // AAD refuses the federated token: the AAD error is quoted, the token is not.
    let dir = tempfile::tempdir().unwrap();
    let aad = answering(
        400,
        r#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found for presented assertion."}"#,
    )
    .await;
    let ctx = context_of(&[
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file(dir.path(), "t", "federated-secret"),
        ),
        ("AZURE_CLIENT_ID", "c".into()),
        ("AZURE_TENANT_ID", "t".into()),
        ("AZURE_AUTHORITY_HOST", aad.uri()),
    ]);
    let access = provider_access("azure", &ctx).await;
    let msg = list_err(&client, &image(ACR_HOST), &access).await;
    assert!(
        msg.starts_with("provider 'azure': AAD workload identity token: POST ")
            && msg.contains("400 Bad Request")
            && msg.contains("AADSTS70021"),
        "{msg}"
    );
    assert_no_secret(&msg, &["federated-secret"]);

    // The registry refuses the AAD token at the exchange.
    let ctx = context_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.uri())]);
    let (_, registry2, _) = acr_registry(&["other"], 60).await;
    let access = provider_access("azure", &ctx).await;
    let msg = list_err(&client_for(ACR_HOST, &registry2), &image(ACR_HOST), &access).await;
    assert!(
        msg.starts_with(&format!("provider 'azure': ACR token exchange: POST http://{ACR_HOST}/oauth2/exchange: 401 Unauthorized")),
        "{msg}"
    );
    assert_no_secret(&msg, &["aad-imds-token"]);
}

// ------------------------------------------------------------------------------- identity & options

// ------------------------------------------------------------------ object-level workload identity

/// A TokenRequest seen by [`FakeAccounts`]: `namespace/name`, audiences, the token issued.
type TokenRequestLog = (String, Vec<String>, String);

/// Service accounts of a fake API server: annotations per `namespace/name`; tokens are unsigned JWTs
/// carrying the requested audiences and the service account as subject, numbered per request.
#[derive(Clone, Default)]
struct FakeAccounts {
    annotations: Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>,
    /// `(namespace/name, audiences, token)` of every TokenRequest.
    requests: Arc<Mutex<Vec<TokenRequestLog>>>,
}

impl FakeAccounts {
    fn with(self, sa: &str, annotations: &[(&str, &str)]) -> Self {
        self.annotations.lock().unwrap().insert(
            sa.to_string(),
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }
    fn requests(&self) -> Vec<TokenRequestLog> {
        self.requests.lock().unwrap().clone()
    }
}

/// An unsigned JWT with `aud` and `sub` claims (`n` makes tokens distinct).
fn sa_jwt(audiences: &[String], sub: &str, n: usize) -> String {
    let e = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.sig",
        e(&serde_json::json!({"alg": "RS256"})),
        e(&serde_json::json!({"aud": audiences, "sub": sub, "jti": n}))
    )
}

impl ServiceAccounts for FakeAccounts {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, SourceError>> {
        let got = self
            .annotations
            .lock()
            .unwrap()
            .get(&format!("{namespace}/{name}"))
            .cloned();
        Box::pin(async move { Ok(got) })
    }

    fn create_token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audiences: &'a [String],
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        let mut reqs = self.requests.lock().unwrap();
        let token = sa_jwt(
            audiences,
            &format!("system:serviceaccount:{namespace}:{name}"),
            reqs.len() + 1,
        );
        reqs.push((
            format!("{namespace}/{name}"),
            audiences.to_vec(),
            token.clone(),
        ));
        Box::pin(async move { Ok(token) })
    }
}

/// A context over `pairs` on `clock` with the gate on.
fn gated(clock: &TestClock, pairs: &[(&str, String)]) -> AuthContext {
    gate_on(
        clock.context(env(pairs), CredentialHelpers::default()),
        None,
    )
}

/// Lists `host/app` and fails the test on error.
async fn list_ok(client: &Client, host: &str, access: &Access) -> Vec<String> {
    client.list_tags(&image(host), access, LONG).await.unwrap()
}

/// The gate on, with an optional default service account.
fn gate_on(ctx: AuthContext, default_sa: Option<&str>) -> AuthContext {
    ctx.with_object_level_identity(ObjectLevelIdentity {
        enabled: true,
        default_service_account: default_sa.map(str::to_string),
    })
}

async fn sa_access(
    provider: &str,
    sa: Option<&str>,
    accounts: &FakeAccounts,
    ctx: &AuthContext,
) -> Result<Access, registry::OptionsError> {
    let spec = AccessSpec {
        namespace: "apps".into(),
        provider: Some(provider.into()),
        service_account_name: sa.map(str::to_string),
        ..Default::default()
    };
    resolve_access_with(
        &spec,
        &NoSecrets {
            accounts: Some(accounts.clone()),
        },
        ctx,
    )
    .await
}

const ROLE: &str = "arn:aws:iam::123456789012:role/puller";

fn form_encoded(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[tokio::test]
async fn object_level_aws_assumes_the_annotated_role_with_the_sa_token() {
    let accounts = FakeAccounts::default()
        .with("apps/puller", &[(AWS_ROLE_ARN_ANNOTATION, ROLE)])
        .with(
            "apps/other",
            &[(
                AWS_ROLE_ARN_ANNOTATION,
                "arn:aws:iam::123456789012:role/other",
            )],
        );
    // STS accepts only the role and session name of apps/puller; the token is checked below.
    let sts = sts_server(
        "ASIAOBJ",
        "obj-secret-key",
        "obj-session-token",
        &[
            "Action=AssumeRoleWithWebIdentity",
            &format!("RoleArn={}", form_encoded(ROLE)),
            "RoleSessionName=puller.apps.us-east-1.fluxcd.io",
        ],
    )
    .await;
    let (ecr, issued) = ecr_api(
        "ecr",
        PRIVATE_TARGET,
        false,
        "ASIAOBJ",
        "obj-secret-key",
        Some("obj-session-token"),
    )
    .await;
    let (reg, registry) = TokenRegistry::allowing(&[("AWS", "ecr-1"), ("AWS", "ecr-2")]).await;
    let clock = TestClock::new();
    let ctx = gated(
        &clock,
        &[
            ("AWS_ENDPOINT_URL_STS", sts.uri()),
            ("AWS_ENDPOINT_URL_ECR", ecr.uri()),
        ],
    );
    let access = sa_access("aws", Some("puller"), &accounts, &ctx)
        .await
        .unwrap();
    let client = client_for(ECR_HOST, &registry);
    let img = image(ECR_HOST);
    assert_eq!(
        client.list_tags(&img, &access, LONG).await.unwrap().len(),
        2
    );
    assert_eq!(reg.seen(), vec![("AWS".into(), "ecr-1".into())]);
    let reqs = accounts.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0, "apps/puller");
    assert_eq!(reqs[0].1, vec!["sts.amazonaws.com".to_string()]);
    let body = String::from_utf8(sts.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(
        body.contains(&format!("WebIdentityToken={}", reqs[0].2)),
        "{body}"
    );

    // Cached within the ECR token's life; replaced (new SA token, STS, ECR) before it expires.
    clock.advance(Duration::from_secs(11 * 3600));
    client.list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(accounts.requests().len(), 1);
    clock.advance(Duration::from_secs(3600 - 299));
    client.list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(accounts.requests().len(), 2);
    assert_eq!(*issued.lock().unwrap(), 2);
    assert_eq!(reg.seen().last().unwrap(), &("AWS".into(), "ecr-2".into()));

    // Another service account never gets apps/puller's cached credential: STS refuses its role.
    let other = sa_access("aws", Some("other"), &accounts, &ctx)
        .await
        .unwrap();
    let msg = list_err(&client, &img, &other).await;
    assert!(
        msg.starts_with("provider 'aws': STS AssumeRoleWithWebIdentity: POST "),
        "{msg}"
    );
    assert_eq!(accounts.requests().last().unwrap().0, "apps/other");
    assert_no_secret(
        &format!("{msg} {access:?} {other:?}"),
        &[&reqs[0].2, "obj-secret-key", "obj-session-token"],
    );
}

/// GCP STS (`/v1/token`) and IAM Credentials simulation: STS accepts the subject token only with
/// `audience`; IAM issues `ya29.gsa-<n>` for the federated token.
async fn gcp_sts_and_iam(audience: &str, email: &str, ttl: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/token"))
        .and(body_string_contains(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        ))
        .and(body_string_contains(
            "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
        ))
        .and(body_string_contains(
            format!("audience={}", form_encoded(audience)).as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "federated-token", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&server)
        .await;
    let count = Arc::new(Mutex::new(0u32));
    let path_ = format!("/v1/projects/-/serviceAccounts/{email}:generateAccessToken");
    Mock::given(method("POST"))
        .and(path(path_.as_str()))
        .and(header("authorization", "Bearer federated-token"))
        .respond_with(move |_: &Request| {
            let mut n = count.lock().unwrap();
            *n += 1;
            let expire = time::OffsetDateTime::now_utc() + time::Duration::seconds(ttl as i64);
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "accessToken": format!("ya29.gsa-{n}"),
                "expireTime": format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    expire.year(), u8::from(expire.month()), expire.day(),
                    expire.hour(), expire.minute(), expire.second()
                ),
            }))
        })
        .mount(&server)
        .await;
    server
}

const WIP: &str = "projects/123456/locations/global/workloadIdentityPools/flux/providers/kube";
const GSA: &str = "puller@proj.iam.gserviceaccount.com";

#[tokio::test]
async fn object_level_gcp_federates_and_impersonates_the_annotated_account() {
    let audience = format!("//iam.googleapis.com/{WIP}");
    let accounts = FakeAccounts::default().with(
        "apps/puller",
        &[
            (GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION, WIP),
            (GCP_SERVICE_ACCOUNT_ANNOTATION, GSA),
        ],
    );
    let google = gcp_sts_and_iam(&audience, GSA, 3600).await;
    let (reg, registry) = TokenRegistry::allowing(&[
        ("oauth2accesstoken", "ya29.gsa-1"),
        ("oauth2accesstoken", "ya29.gsa-2"),
    ])
    .await;
    let clock = TestClock::new();
    let ctx = gated(
        &clock,
        &[
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STS", google.uri()),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS",
                google.uri(),
            ),
        ],
    );
    let access = sa_access("gcp", Some("puller"), &accounts, &ctx)
        .await
        .unwrap();
    let client = client_for(GCP_HOST, &registry);
    list_ok(&client, GCP_HOST, &access).await;
    assert_eq!(
        reg.seen(),
        vec![("oauth2accesstoken".into(), "ya29.gsa-1".into())]
    );
    let reqs = accounts.requests();
    assert_eq!(reqs[0].1, vec![audience.clone()]);
    let sts_body =
        String::from_utf8(google.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(
        sts_body.contains(&format!("subject_token={}", reqs[0].2)),
        "{sts_body}"
    );

    // Refreshed five minutes before the hour is over (the IAM expiry, read from `expireTime`).
    clock.advance(Duration::from_secs(3600 - 310));
    list_ok(&client, GCP_HOST, &access).await;
    assert_eq!(accounts.requests().len(), 1);
    clock.advance(Duration::from_secs(20));
    list_ok(&client, GCP_HOST, &access).await;
    assert_eq!(accounts.requests().len(), 2);
    assert_eq!(
        reg.seen().last().unwrap(),
        &("oauth2accesstoken".into(), "ya29.gsa-2".into())
    );
}

#[tokio::test]
async fn object_level_gcp_on_gke_uses_the_cluster_pool_and_direct_access() {
    let md = MockServer::start().await;
    for (p, v) in [
        ("/computeMetadata/v1/project/project-id", "proj"),
        (
            "/computeMetadata/v1/instance/attributes/cluster-location",
            "europe-west1",
        ),
        (
            "/computeMetadata/v1/instance/attributes/cluster-name",
            "prod",
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .and(header("metadata-flavor", "Google"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("metadata-flavor", "Google")
                    .set_body_string(v),
            )
            .mount(&md)
            .await;
    }
    let sts_audience = "identitynamespace:proj.svc.id.goog:https://container.googleapis.com/v1/projects/proj/locations/europe-west1/clusters/prod";
    let google = gcp_sts_and_iam(sts_audience, GSA, 3600).await;
    let accounts = FakeAccounts::default().with("apps/puller", &[]);
    let (reg, registry) =
        TokenRegistry::allowing(&[("oauth2accesstoken", "federated-token")]).await;
    let ctx = gate_on(
        context_of(&[
            ("GCE_METADATA_HOST", md.address().to_string()),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STS", google.uri()),
        ]),
        None,
    );
    let access = sa_access("gcp", Some("puller"), &accounts, &ctx)
        .await
        .unwrap();
    client_for(GCP_HOST, &registry)
        .list_tags(&image(GCP_HOST), &access, LONG)
        .await
        .unwrap();
    assert_eq!(
        accounts.requests()[0].1,
        vec!["proj.svc.id.goog".to_string()]
    );
    assert_eq!(
        reg.seen(),
        vec![("oauth2accesstoken".into(), "federated-token".into())]
    );
}

#[tokio::test]
async fn object_level_azure_exchanges_the_sa_token_for_the_annotated_client() {
    let accounts = FakeAccounts::default().with(
        "apps/puller",
        &[
            (AZURE_CLIENT_ID_ANNOTATION, "client-sa"),
            (AZURE_TENANT_ID_ANNOTATION, "tenant-sa"),
        ],
    );
    let aad = aad_server("tenant-sa", "client-sa", &[], "aad-sa-token").await;
    let (reg, registry, issued) = acr_registry(&["aad-sa-token"], 3 * 3600).await;
    let clock = TestClock::new();
    let ctx = gated(&clock, &[("AZURE_AUTHORITY_HOST", aad.uri())]);
    let access = sa_access("azure", Some("puller"), &accounts, &ctx)
        .await
        .unwrap();
    let client = client_for(ACR_HOST, &registry);
    list_ok(&client, ACR_HOST, &access).await;
    let reqs = accounts.requests();
    assert_eq!(reqs[0].1, vec!["api://AzureADTokenExchange".to_string()]);
    let body = String::from_utf8(aad.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(
        body.contains(&format!("client_assertion={}", reqs[0].2)),
        "{body}"
    );
    let first = issued.lock().unwrap()[0].clone();
    assert_eq!(reg.seen(), vec![(ACR_USER.to_string(), first)]);
    // The exchange names the annotated tenant.
    let exchange = registry
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/oauth2/exchange")
        .unwrap();
    assert!(
        String::from_utf8(exchange.body)
            .unwrap()
            .contains("tenant=tenant-sa")
    );

    clock.advance(Duration::from_secs(3 * 3600));
    list_ok(&client, ACR_HOST, &access).await;
    assert_eq!(accounts.requests().len(), 2);
    assert_eq!(issued.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn object_level_gate_default_account_and_failures_are_clear() {
    let accounts = FakeAccounts::default()
        .with("apps/bare", &[])
        .with("apps/azure-half", &[(AZURE_CLIENT_ID_ANNOTATION, "c")])
        .with("apps/lockdown", &[(AWS_ROLE_ARN_ANNOTATION, ROLE)]);
    // Gate off: Stalled with upstream's message, and no token is requested.
    let err = sa_access("aws", Some("puller"), &accounts, &AuthContext::default())
        .await
        .unwrap_err();
    assert!(err.is_stalling());
    assert_eq!(
        err.to_string(),
        "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller"
    );
    // A source that cannot read service accounts is a clear error, not the controller's identity.
    let spec = AccessSpec {
        namespace: "apps".into(),
        provider: Some("aws".into()),
        service_account_name: Some("puller".into()),
        ..Default::default()
    };
    let err = resolve_access_with(
        &spec,
        &NoSecrets::default(),
        &gate_on(AuthContext::default(), None),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("needs the Kubernetes API"),
        "{err}"
    );

    let registry = TokenRegistry::default().start().await;
    let ctx = gate_on(
        context_of(&[("AWS_EC2_METADATA_DISABLED", "true".into())]),
        Some("lockdown"),
    );
    let client = client_for(ECR_HOST, &registry);
    let msg = |provider: &'static str, sa: Option<&'static str>, host: &'static str| {
        let (accounts, ctx, client) = (accounts.clone(), ctx.clone(), client_for(host, &registry));
        async move {
            let access = sa_access(provider, sa, &accounts, &ctx).await.unwrap();
            list_err(&client, &image(host), &access).await
        }
    };
    assert_eq!(
        msg("aws", Some("ghost"), ECR_HOST).await,
        "provider 'aws': service account 'apps/ghost' not found"
    );
    assert_eq!(
        msg("aws", Some("bare"), ECR_HOST).await,
        "provider 'aws': service account 'apps/bare': annotation 'eks.amazonaws.com/role-arn' is not set: set it to the ARN of the IAM role to assume"
    );
    assert_eq!(
        msg("azure", Some("azure-half"), ACR_HOST).await,
        "provider 'azure': service account 'apps/azure-half': annotation 'azure.workload.identity/tenant-id' is not set: set it to the Entra ID tenant ID"
    );
    // No token was requested for any of them.
    assert!(accounts.requests().is_empty());

    // The default service account applies to objects without one (lockdown), and must exist.
    let access = sa_access("aws", None, &accounts, &ctx).await.unwrap();
    assert_eq!(
        access.provider.unwrap().identity,
        Identity::ServiceAccount {
            namespace: "apps".into(),
            name: "lockdown".into()
        }
    );
    let lockdown = gate_on(context_of(&[]), Some("missing"));
    let access = sa_access("aws", None, &accounts, &lockdown).await.unwrap();
    assert_eq!(
        list_err(&client, &image(ECR_HOST), &access).await,
        "provider 'aws': failed to get service account 'apps/missing': the specified default service account does not exist in the object namespace. your cluster is subject to multi-tenant workload identity lockdown, reach out to your cluster administrator for help"
    );
}

#[tokio::test]
async fn cache_is_per_context_and_provider() {
    // Two contexts (two controllers, or a test and another) never share credentials.
    let (md, issued) = metadata_server(3600).await;
    let (_, registry) = TokenRegistry::allowing(&[
        ("oauth2accesstoken", "ya29.gcp-1"),
        ("oauth2accesstoken", "ya29.gcp-2"),
    ])
    .await;
    let client = client_for(GCP_HOST, &registry);
    for _ in 0..2 {
        let ctx = AuthContext::new(
            env(&[("GCE_METADATA_HOST", md.address().to_string())]),
            CredentialHelpers::default(),
        );
        let access = provider_access("gcp", &ctx).await;
        client
            .list_tags(&image(GCP_HOST), &access, LONG)
            .await
            .unwrap();
        client
            .list_tags(&image(GCP_HOST), &access, LONG)
            .await
            .unwrap();
    }
    assert_eq!(*issued.lock().unwrap(), 2);
}

// ------------------------------------------------------------------------------ credential helpers

/// Writes `docker-credential-<name>` (a shell script) into `dir`.
fn helper_script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn helpers_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Answers for the registry on stdin (`127.0.0.1:<port>`), records what it was asked.
    helper_script(
        dir.path(),
        "sim",
        r#"[ "$1" = get ] || exit 2
read server
echo "$server" >> "$(dirname "$0")/asked"
case "$server" in
  127.0.0.1:*) printf '{"ServerURL":"%s","Username":"helper-user","Secret":"helper-secret"}' "$server" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
    );
    helper_script(
        dir.path(),
        "empty",
        r#"read server; echo "credentials not found in native keychain"; exit 1"#,
    );
    helper_script(dir.path(), "slow", "sleep 30");
    helper_script(dir.path(), "garbage", r#"echo "leaked-secret-in-garbage""#);
    dir
}

fn helpers(dir: &Path, allowed: &[&str], timeout: Duration) -> CredentialHelpers {
    CredentialHelpers::new(allowed.iter().map(|s| s.to_string()).collect(), timeout)
        .unwrap()
        .with_search_path(format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ))
}

fn helper_access(config: serde_json::Value, helpers: CredentialHelpers) -> Access {
    Access {
        keychain: Keychain::from_docker_config_json("apps/pull", config.to_string().as_bytes())
            .unwrap(),
        helpers,
        ..Default::default()
    }
}

#[tokio::test]
async fn credential_helper_runs_when_allowed() {
    let dir = helpers_dir();
    let (reg, registry) = TokenRegistry::allowing(&[("helper-user", "helper-secret")]).await;
    let host = registry.address().to_string();
    let client = Client::new(ClientConfig::default()).unwrap();
    let img = ImageRef::parse(&format!("{host}/app"), false).unwrap();

    let access = helper_access(
        serde_json::json!({"credHelpers": {host.clone(): "sim"}}),
        helpers(dir.path(), &["sim"], LONG),
    );
    assert_eq!(
        client.list_tags(&img, &access, LONG).await.unwrap().len(),
        2
    );
    assert_eq!(
        reg.seen(),
        vec![("helper-user".into(), "helper-secret".into())]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("asked")).unwrap(),
        format!("{host}\n")
    );
    assert_no_secret(&format!("{access:?}"), &["helper-secret"]);

    // credsStore with no answer for the registry falls back to `auths`.
    let (reg2, registry2) = TokenRegistry::allowing(&[("file-user", "file-pass")]).await;
    let host2 = registry2.address().to_string();
    let img2 = ImageRef::parse(&format!("{host2}/app"), false).unwrap();
    let access = helper_access(
        serde_json::json!({"credsStore": "empty", "auths": {host2.clone(): {"username": "file-user", "password": "file-pass"}}}),
        helpers(dir.path(), &["empty"], LONG),
    );
    client.list_tags(&img2, &access, LONG).await.unwrap();
    assert_eq!(reg2.seen(), vec![("file-user".into(), "file-pass".into())]);
}

#[tokio::test]
async fn credential_helper_refused_bounded_and_validated() {
    let dir = helpers_dir();
    let registry = TokenRegistry::default().start().await;
    let host = registry.address().to_string();
    let client = Client::new(ClientConfig::default()).unwrap();
    let img = ImageRef::parse(&format!("{host}/app"), false).unwrap();
    let run = |helper: &'static str, allowed: &'static [&'static str], timeout: Duration| {
        let access = helper_access(
            serde_json::json!({"credHelpers": {host.clone(): helper}}),
            helpers(dir.path(), allowed, timeout),
        );
        let client = client.clone();
        let img = img.clone();
        async move { list_err(&client, &img, &access).await }
    };

    // Not allowed (the default allows none): refused without running it.
    let msg = run("sim", &[], LONG).await;
    assert_eq!(
        msg,
        format!(
            "credential helper 'docker-credential-sim' for registry '{host}' is not allowed: add 'sim' to --allowed-credential-helpers to run it"
        )
    );
    assert!(!dir.path().join("asked").exists());
    // A name that is not a plain program name is never run either.
    let msg = run("../../bin/sh", &["sim"], LONG).await;
    assert!(msg.contains("is not allowed"), "{msg}");

    // Time-bounded.
    let msg = run("slow", &["slow"], Duration::from_millis(300)).await;
    assert_eq!(
        msg,
        format!(
            "credential helper 'docker-credential-slow' for registry '{host}': docker-credential-slow did not answer within 0.3s"
        )
    );
    // Output validated, and not quoted.
    let msg = run("garbage", &["garbage"], LONG).await;
    assert!(
        msg.ends_with("output is not the protocol's JSON {\"Username\", \"Secret\"}"),
        "{msg}"
    );
    assert_no_secret(&msg, &["leaked-secret-in-garbage"]);
    // Missing program.
    let msg = run("absent", &["absent"], LONG).await;
    assert!(msg.contains("cannot run docker-credential-absent"), "{msg}");
    // A helper without credentials for the registry: anonymous, as the Docker CLI, which this
    // registry refuses.
    let msg = run("empty", &["empty"], LONG).await;
    assert!(
        msg.ends_with("UNAUTHORIZED: authentication required"),
        "{msg}"
    );
}

#[tokio::test]
async fn refused_provider_credential_is_not_reused() {
    let (md, issued) = metadata_server(3600).await;
    let reg = TokenRegistry::default();
    // The first token was revoked: only the second is accepted.
    reg.allow("oauth2accesstoken", "ya29.gcp-2");
    let registry = reg.start().await;
    let client = client_for(GCP_HOST, &registry);
    let ctx = context_of(&[("GCE_METADATA_HOST", md.address().to_string())]);
    let access = provider_access("gcp", &ctx).await;
    let err = client
        .list_tags(&image(GCP_HOST), &access, LONG)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_no_secret(&err.to_string(), &["ya29.gcp-1"]);
    list_ok(&client, GCP_HOST, &access).await;
    assert_eq!(*issued.lock().unwrap(), 2);
}

/// A log sink. It is the global subscriber of this test binary (thread-local subscribers miss events
/// whose callsite interest other test threads cached), so it also collects the other tests' logs.
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

#[tokio::test]
async fn secrets_never_reach_logs_errors_or_debug_output() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sts = sts_server("ASIALOG", "log-secret-key", "log-session-token", &[]).await;
    let (ecr, _) = ecr_api(
        "ecr",
        PRIVATE_TARGET,
        false,
        "ASIALOG",
        "log-secret-key",
        Some("log-session-token"),
    )
    .await;
    let (_, registry) = TokenRegistry::allowing(&[("AWS", "ecr-1")]).await;
    let ctx = context_of(&[
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file(dir.path(), "t", "log-sa-jwt"),
        ),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r".into()),
        ("AWS_ENDPOINT_URL_STS", sts.uri()),
        ("AWS_ENDPOINT_URL_ECR", ecr.uri()),
    ]);
    let access = provider_access("aws", &ctx).await;
    let client = client_for(ECR_HOST, &registry);
    list_ok(&client, ECR_HOST, &access).await;

    // A credential helper run too.
    let hdir = helpers_dir();
    let (_, hserver) = TokenRegistry::allowing(&[("helper-user", "helper-secret")]).await;
    let host = hserver.address().to_string();
    let haccess = helper_access(
        serde_json::json!({"credHelpers": {host.clone(): "sim"}}),
        helpers(hdir.path(), &["sim"], LONG),
    );
    Client::new(ClientConfig::default())
        .unwrap()
        .list_tags(
            &ImageRef::parse(&format!("{host}/app"), false).unwrap(),
            &haccess,
            LONG,
        )
        .await
        .unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("obtained registry credentials"),
        "the flow was not logged: {text}"
    );
    let secrets = [
        "log-sa-jwt",
        "log-secret-key",
        "log-session-token",
        &b64("AWS:ecr-1"),
        "ecr-1",
        "helper-secret",
        "sim-bearer",
    ];
    assert_no_secret(&text, &secrets);
    assert_no_secret(&format!("{access:?} {ctx:?} {haccess:?}"), &secrets);
}
