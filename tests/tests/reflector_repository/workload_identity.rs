//! Object-level workload identity (`spec.serviceAccountName` with `provider: aws|gcp|azure`, gate
//! `ObjectLevelWorkloadIdentity`) end to end: the controller asks the test environment's real
//! kube-apiserver for a token of the object's ServiceAccount (TokenRequest), and exchanges it with
//! simulated cloud endpoints written here (AWS STS + ECR, GCP STS + IAM Credentials, Entra ID + ACR
//! `/oauth2/exchange`), which decode the token and check its audience, subject and the role/client
//! from the ServiceAccount's annotations. The ECR credentials reach the environment's real token-auth
//! registry; GCP and ACR credentials reach a simulated token-auth registry. Registry hosts are mapped
//! to loopback with the controller's test-only host map.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use e2e::{admin_client, condition, eventually, unique_name};
use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use kube::Api;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use testenv::registry::RegistryClient;
use testenv::{RegistryVariant, env};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::Shard;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const ACR_HOST: &str = "e2e.azurecr.io";
const GCP_HOST: &str = "europe-west1-docker.pkg.dev";
const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
const ROLE: &str = "arn:aws:iam::123456789012:role/e2e-puller";
const WIP: &str = "projects/123456/locations/global/workloadIdentityPools/flux/providers/kube";
const GSA: &str = "puller@e2e-proj.iam.gserviceaccount.com";
/// Lifetime of every simulated credential: short, so the test sees a refresh (the controller replaces
/// a credential a quarter of its lifetime before expiry).
const TTL: u64 = 20;

/// What a simulated endpoint saw: the claims of the ServiceAccount token and the form fields.
#[derive(Debug, Clone)]
struct Seen {
    claims: Value,
    form: BTreeMap<String, String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn form(req: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

/// Records the claims of the token in form field `field` and the form (plus `extra` fields).
fn record(log: &Log, req: &Request, field: &str, extra: &[(&str, String)]) {
    let mut form = form(req);
    let token = form.get(field).cloned().unwrap_or_default();
    form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    log.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
        claims: e2e::jwt_claims(&token),
        form,
    });
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// AWS STS `AssumeRoleWithWebIdentity` (records the token's claims and the form) and ECR
/// `GetAuthorizationToken` handing out the test registry's own credentials, valid for [`TTL`].
async fn aws_endpoints(user: &str, password: &str) -> (MockServer, MockServer, Log) {
    let sts = MockServer::start().await;
    let log = Log::default();
    let l = log.clone();
    Mock::given(method("POST"))
        .respond_with(move |req: &Request| {
            record(&l, req, "WebIdentityToken", &[]);
            ResponseTemplate::new(200).set_body_string(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                 <AccessKeyId>ASIAE2E</AccessKeyId><SecretAccessKey>e2e-secret-key</SecretAccessKey>\
                 <SessionToken>e2e-session-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
                 </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            )
        })
        .mount(&sts)
        .await;
    let ecr = MockServer::start().await;
    let token = b64(&format!("{user}:{password}"));
    Mock::given(method("POST"))
        .respond_with(move |req: &Request| {
            // Signed with the credentials STS issued.
            let auth = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !auth.contains("Credential=ASIAE2E/") {
                return ResponseTemplate::new(403)
                    .set_body_string(r#"{"__type":"UnrecognizedClientException"}"#);
            }
            ResponseTemplate::new(200).set_body_json(json!({
                "authorizationData": [{"authorizationToken": token, "expiresAt": now_secs() + TTL}]
            }))
        })
        .mount(&ecr)
        .await;
    (sts, ecr, log)
}

/// GCP STS (`/v1/token`, records the subject token's claims and the form) and IAM Credentials
/// `generateAccessToken` for [`GSA`], issuing `ya29.e2e-<n>` valid for [`TTL`].
async fn gcp_endpoints(registry: &SimRegistry) -> (MockServer, Log) {
    let google = MockServer::start().await;
    let log = Log::default();
    let l = log.clone();
    Mock::given(method("POST"))
        .and(path("/v1/token"))
        .respond_with(move |req: &Request| {
            record(&l, req, "subject_token", &[]);
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "federated-e2e", "expires_in": 3600}))
        })
        .mount(&google)
        .await;
    let reg = registry.clone();
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/projects/-/serviceAccounts/{GSA}:generateAccessToken"
        )))
        .respond_with(move |req: &Request| {
            let bearer = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            if bearer != Some("Bearer federated-e2e") {
                return ResponseTemplate::new(401);
            }
            let token = reg.issue("oauth2accesstoken", "ya29.e2e");
            let expire = time_rfc3339(now_secs() + TTL);
            ResponseTemplate::new(200)
                .set_body_json(json!({"accessToken": token, "expireTime": expire}))
        })
        .mount(&google)
        .await;
    (google, log)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for epoch seconds.
fn time_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Entra ID token endpoint (records the client assertion's claims, the tenant and the form).
async fn azure_endpoint() -> (MockServer, Log) {
    let aad = MockServer::start().await;
    let log = Log::default();
    let l = log.clone();
    Mock::given(method("POST"))
        .and(path_regex(r"^/[^/]+/oauth2/v2.0/token$"))
        .respond_with(move |req: &Request| {
            record(
                &l,
                req,
                "client_assertion",
                &[("tenant_path", req.url.path().to_string())],
            );
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "aad-e2e", "expires_in": 3600}))
        })
        .mount(&aad)
        .await;
    (aad, log)
}

/// A token-auth registry (the distribution flow: `/v2/` challenge, `/token` with basic credentials,
/// bearer on the API) that accepts only credentials it issued through a simulated cloud endpoint,
/// and the ACR `/oauth2/exchange` that issues them for the AAD token.
#[derive(Clone, Default)]
struct SimRegistry {
    valid: Arc<Mutex<Vec<(String, String)>>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl SimRegistry {
    fn issue(&self, user: &str, prefix: &str) -> String {
        let mut valid = self.valid.lock().unwrap_or_else(|p| p.into_inner());
        let n = valid.iter().filter(|(u, _)| u == user).count() + 1;
        let token = format!("{prefix}-{n}");
        valid.push((user.to_string(), token.clone()));
        token
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn start(&self) -> MockServer {
        let server = MockServer::start().await;
        let realm = format!("{}/token", server.uri());
        Mock::given(method("GET"))
            .and(path("/v2/"))
            .respond_with(ResponseTemplate::new(401).insert_header(
                "www-authenticate",
                format!(r#"Bearer realm="{realm}",service="sim""#),
            ))
            .mount(&server)
            .await;
        let reg = self.clone();
        Mock::given(method("GET"))
            .and(path("/token"))
            .respond_with(move |req: &Request| {
                let pair = req
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Basic "))
                    .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| {
                        v.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    });
                let Some(pair) = pair else {
                    return ResponseTemplate::new(401);
                };
                reg.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(pair.clone());
                if reg
                    .valid
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&pair)
                {
                    ResponseTemplate::new(200).set_body_json(json!({"token": "sim-bearer"}))
                } else {
                    ResponseTemplate::new(401)
                }
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v2/.+/tags/list$"))
            .and(wiremock::matchers::header(
                "authorization",
                "Bearer sim-bearer",
            ))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"tags": ["1.0.0", "1.1.0"]})),
            )
            .mount(&server)
            .await;
        let reg = self.clone();
        Mock::given(method("POST"))
            .and(path("/oauth2/exchange"))
            .respond_with(move |req: &Request| {
                let form = form(req);
                if form.get("access_token").map(String::as_str) != Some("aad-e2e")
                    || form.get("service").map(String::as_str) != Some(ACR_HOST)
                {
                    return ResponseTemplate::new(401);
                }
                // A JWT refresh token: the controller reads its `exp`.
                let e = |v: Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                let n = reg.valid.lock().unwrap_or_else(|p| p.into_inner()).len();
                let token = format!(
                    "{}.{}.sig",
                    e(json!({"alg": "RS256"})),
                    e(json!({"exp": now_secs() + TTL, "jti": n}))
                );
                reg.valid
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((ACR_USER.to_string(), token.clone()));
                ResponseTemplate::new(200).set_body_json(json!({"refresh_token": token}))
            })
            .mount(&server)
            .await;
        server
    }
}

/// The gate's command-line flag.
const GATE_ON: &str = "--feature-gates=ObjectLevelWorkloadIdentity=true";

async fn service_account(shard: &Shard, name: &str, annotations: &[(&str, &str)]) -> Result<()> {
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": shard.ns, "annotations":
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
    }))?;
    Api::<ServiceAccount>::namespaced(admin_client().await?, &shard.ns)
        .create(&PostParams::default(), &sa)
        .await
        .with_context(|| format!("creating ServiceAccount {name}"))?;
    Ok(())
}

/// Messages of every Event in the shard's namespace.
async fn event_messages(shard: &Shard) -> Result<String> {
    let events = Api::<Event>::namespaced(admin_client().await?, &shard.ns)
        .list(&ListParams::default())
        .await?;
    Ok(events
        .items
        .iter()
        .map(|e| e.message.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n"))
}

fn seen(log: &Log) -> Vec<Seen> {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Checks that every recorded exchange carried a token of `ns/sa` for `audience`.
fn check_tokens(log: &Log, ns: &str, sa: &str, audience: &str) -> Result<()> {
    for s in seen(log) {
        ensure!(
            s.claims["aud"] == json!([audience]),
            "audience of the token: {}",
            s.claims["aud"]
        );
        ensure!(
            s.claims["sub"] == json!(format!("system:serviceaccount:{ns}:{sa}")),
            "subject of the token: {}",
            s.claims["sub"]
        );
        ensure!(
            s.claims["iss"] == json!("https://kubernetes.default.svc"),
            "issuer of the token: {}",
            s.claims["iss"]
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_are_exchanged_with_each_provider() -> Result<()> {
    let shard = Shard::new("objid").await?;
    let ns = shard.ns.clone();
    // AWS against the environment's real token-auth registry.
    let ep = env().registry(RegistryVariant::Token)?;
    let (user, password) = env().credentials()?;
    let repo = unique_name("ecr")?;
    let pushed = RegistryClient::new(&ep)?
        .push_tags(&repo, &["1.0.0", "1.1.0", "2.0.0"], 3)
        .await?;
    let (sts, ecr, aws_log) = aws_endpoints(&user, &password).await;
    // GCP and Azure against a simulated token-auth registry.
    let sim = SimRegistry::default();
    let sim_server = sim.start().await;
    let (google, gcp_log) = gcp_endpoints(&sim).await;
    let (aad, azure_log) = azure_endpoint().await;

    service_account(
        &shard,
        "ecr-puller",
        &[("eks.amazonaws.com/role-arn", ROLE)],
    )
    .await?;
    service_account(
        &shard,
        "gar-puller",
        &[
            ("gcp.auth.fluxcd.io/workload-identity-provider", WIP),
            ("iam.gke.io/gcp-service-account", GSA),
        ],
    )
    .await?;
    service_account(
        &shard,
        "acr-puller",
        &[
            ("azure.workload.identity/client-id", "e2e-client"),
            ("azure.workload.identity/tenant-id", "e2e-tenant"),
        ],
    )
    .await?;
    service_account(&shard, "bare", &[]).await?;

    let host_map = format!(
        "{ECR_HOST}={},{ACR_HOST}={},{GCP_HOST}={}",
        ep.host,
        sim_server.address(),
        sim_server.address()
    );
    let (sts_uri, ecr_uri, google_uri, aad_uri) = (sts.uri(), ecr.uri(), google.uri(), aad.uri());
    let p = shard.start_full(
        shard.storage.path(),
        // Objects without serviceAccountName use ecr-puller (multi-tenant lockdown).
        &[GATE_ON, "--default-service-account=ecr-puller"],
        &[
            ("IMAGE_REFLECTOR_TEST_REGISTRY_HOST_MAP", &host_map),
            ("AWS_ENDPOINT_URL_STS", &sts_uri),
            ("AWS_ENDPOINT_URL_ECR", &ecr_uri),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("CLOUDSDK_API_ENDPOINT_OVERRIDES_STS", &google_uri),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS",
                &google_uri,
            ),
            ("AZURE_AUTHORITY_HOST", &aad_uri),
        ],
    )?;
    let base = |image: String, provider: &str, sa: &str| json!({"image": image, "provider": provider, "serviceAccountName": sa, "insecure": true, "interval": "1h"});
    shard
        .create(
            "ecr",
            base(format!("{ECR_HOST}/{repo}"), "aws", "ecr-puller"),
        )
        .await?;
    shard
        .create(
            "gar",
            base(format!("{GCP_HOST}/p/r/app"), "gcp", "gar-puller"),
        )
        .await?;
    shard
        .create(
            "acr",
            base(format!("{ACR_HOST}/app"), "azure", "acr-puller"),
        )
        .await?;
    shard
        .create("ghost", base(format!("{ECR_HOST}/{repo}"), "aws", "ghost"))
        .await?;
    shard
        .create("bare", base(format!("{ECR_HOST}/{repo}"), "aws", "bare"))
        .await?;
    shard
        .create(
            "lockdown",
            json!({"image": format!("{ECR_HOST}/{repo}"), "provider": "aws", "insecure": true, "interval": "1h"}),
        )
        .await?;

    for (name, tags) in [("ecr", 3), ("gar", 2), ("acr", 2), ("lockdown", 3)] {
        let msg = shard
            .condition_is(name, "Ready", "True", "Succeeded")
            .await?;
        ensure!(
            msg.starts_with(&format!("successful scan: found {tags} tags")),
            "{name}: {msg}"
        );
    }
    // An ImagePolicy reflecting digests reads the manifest with the same ServiceAccount's credentials.
    let policies: Api<DynamicObject> = Api::namespaced_with(
        admin_client().await?,
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("image.toolkit.fluxcd.io", "v1", "ImagePolicy"),
            "imagepolicies",
        ),
    );
    let policy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
        "metadata": {"name": "ecr-latest", "namespace": ns, "labels": {&shard.label.0: &shard.label.1}},
        "spec": {"imageRepositoryRef": {"name": "ecr"}, "policy": {"semver": {"range": "2.x"}},
                 "digestReflectionPolicy": "Always", "interval": "1h"},
    }))?;
    policies.create(&PostParams::default(), &policy).await?;
    let digest = pushed
        .iter()
        .find(|(tag, _)| tag == "2.0.0")
        .map(|(_, d)| d.clone())
        .context("no digest pushed for 2.0.0")?;
    eventually("ecr-latest reflects the digest", || async {
        let got = policies.get("ecr-latest").await?;
        let st = got.data.get("status").cloned().unwrap_or(Value::Null);
        ensure!(
            st["latestRef"]["digest"] == digest.as_str(),
            "{}",
            condition(&st, "Ready").2
        );
        Ok(())
    })
    .await?;

    // AWS: the token of ecr-puller for sts.amazonaws.com, the annotated role, upstream's session name.
    check_tokens(&aws_log, &ns, "ecr-puller", "sts.amazonaws.com")?;
    let first = seen(&aws_log)
        .into_iter()
        .next()
        .context("STS saw no request")?;
    ensure!(first.form.get("RoleArn").map(String::as_str) == Some(ROLE));
    ensure!(
        first.form.get("RoleSessionName") == Some(&format!("ecr-puller.{ns}.us-east-1.fluxcd.io")),
        "{:?}",
        first.form.get("RoleSessionName")
    );
    // GCP: the federation provider's audience, then impersonation of the annotated account.
    let gcp_audience = format!("//iam.googleapis.com/{WIP}");
    check_tokens(&gcp_log, &ns, "gar-puller", &gcp_audience)?;
    let first = seen(&gcp_log)
        .into_iter()
        .next()
        .context("GCP STS saw no request")?;
    ensure!(first.form.get("audience") == Some(&gcp_audience));
    // Azure: the exchange audience, the annotated client and tenant.
    check_tokens(&azure_log, &ns, "acr-puller", "api://AzureADTokenExchange")?;
    let first = seen(&azure_log)
        .into_iter()
        .next()
        .context("Entra ID saw no request")?;
    ensure!(first.form.get("client_id").map(String::as_str) == Some("e2e-client"));
    ensure!(
        first.form.get("tenant_path").map(String::as_str) == Some("/e2e-tenant/oauth2/v2.0/token")
    );
    // The simulated registry received the issued credentials.
    let creds = sim.seen();
    ensure!(
        creds
            .iter()
            .any(|(u, p)| u == "oauth2accesstoken" && p == "ya29.e2e-1"),
        "{creds:?}"
    );
    ensure!(creds.iter().any(|(u, _)| u == ACR_USER), "{creds:?}");

    // Missing ServiceAccount or annotation: a clear condition naming them; retried, not stalled.
    let msg = shard
        .condition_is("ghost", "Ready", "False", "ReadOperationFailed")
        .await?;
    ensure!(
        msg == format!("scan failed: provider 'aws': service account '{ns}/ghost' not found"),
        "{msg}"
    );
    let msg = shard
        .condition_is("bare", "Ready", "False", "ReadOperationFailed")
        .await?;
    ensure!(
        msg == format!(
            "scan failed: provider 'aws': service account '{ns}/bare': annotation 'eks.amazonaws.com/role-arn' is not set: set it to the ARN of the IAM role to assume"
        ),
        "{msg}"
    );

    // Expiry: after the credentials' refresh point a rescan gets a new ServiceAccount token and new
    // provider credentials.
    let before = (
        seen(&aws_log).len(),
        seen(&gcp_log).len(),
        seen(&azure_log).len(),
    );
    tokio::time::sleep(Duration::from_secs(TTL)).await;
    for name in ["ecr", "gar", "acr"] {
        let requested = unique_name("now")?;
        shard
            .patch(
                name,
                json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": requested}}}),
            )
            .await?;
    }
    eventually("a second exchange per provider", || async {
        let now = (
            seen(&aws_log).len(),
            seen(&gcp_log).len(),
            seen(&azure_log).len(),
        );
        ensure!(
            now.0 > before.0 && now.1 > before.1 && now.2 > before.2,
            "exchanges before {before:?}, now {now:?}"
        );
        Ok(())
    })
    .await?;
    for name in ["ecr", "gar", "acr"] {
        eventually(&format!("{name} rescanned and Ready"), || async {
            let status = shard.status(name).await?;
            let (r, _, m) = condition(&status, "Ready");
            ensure!(r == "True", "{name}: {m}");
            ensure!(
                status["lastHandledReconcileAt"].is_string(),
                "{name}: reconcile request not handled yet"
            );
            Ok(())
        })
        .await?;
    }
    let tokens: Vec<String> = seen(&aws_log)
        .iter()
        .map(|s| s.form.get("WebIdentityToken").cloned().unwrap_or_default())
        .collect();
    ensure!(
        tokens.len() >= 2 && tokens[0] != tokens[tokens.len() - 1],
        "the ServiceAccount token was not renewed"
    );
    check_tokens(&aws_log, &ns, "ecr-puller", "sts.amazonaws.com")?;
    ensure!(
        sim.seen().iter().any(|(_, p)| p == "ya29.e2e-2"),
        "{:?}",
        sim.seen()
    );

    // No token or credential in status, events or logs.
    let mut secrets: Vec<String> = tokens;
    secrets.extend(
        seen(&gcp_log)
            .iter()
            .filter_map(|s| s.form.get("subject_token").cloned()),
    );
    secrets.extend(
        seen(&azure_log)
            .iter()
            .filter_map(|s| s.form.get("client_assertion").cloned()),
    );
    secrets.extend(
        [
            "e2e-secret-key",
            "e2e-session-token",
            "federated-e2e",
            "ya29.e2e-1",
            "aad-e2e",
        ]
        .map(String::from),
    );
    secrets.push(password.clone());
    let mut text = eventually("the failure events", || async {
        let text = event_messages(&shard).await?;
        ensure!(
            text.contains("service account"),
            "no event about the missing ServiceAccount yet: {text}"
        );
        Ok(text)
    })
    .await?;
    for name in ["ecr", "gar", "acr", "ghost", "bare", "lockdown"] {
        text.push_str(&shard.status(name).await?.to_string());
    }
    text.push_str(&p.logs());
    for s in &secrets {
        ensure!(
            !text.contains(s.as_str()),
            "a secret leaked into status, events or logs"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_gate_a_service_account_stalls_with_upstream_message() -> Result<()> {
    let shard = Shard::new("objid-off").await?;
    service_account(
        &shard,
        "ecr-puller",
        &[("eks.amazonaws.com/role-arn", ROLE)],
    )
    .await?;
    let _p = shard.start_with_env(&[("AWS_EC2_METADATA_DISABLED", "true")])?;
    for (name, image, provider) in [
        ("aws", format!("{ECR_HOST}/app"), "aws"),
        ("gcp", format!("{GCP_HOST}/p/r/app"), "gcp"),
        ("azure", format!("{ACR_HOST}/app"), "azure"),
    ] {
        shard
            .create(
                name,
                json!({"image": image, "provider": provider, "serviceAccountName": "ecr-puller", "interval": "1h"}),
            )
            .await?;
    }
    for name in ["aws", "gcp", "azure"] {
        let msg = shard
            .condition_is(name, "Stalled", "True", "FeatureGateDisabled")
            .await?;
        ensure!(
            msg == "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller",
            "{msg}"
        );
        let (r, reason, _) = condition(&shard.status(name).await?, "Ready");
        ensure!(
            r == "False" && reason == "FeatureGateDisabled",
            "{name}: Ready={r} {reason}"
        );
    }
    Ok(())
}
