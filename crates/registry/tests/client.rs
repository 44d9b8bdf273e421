//! Client tests against a wiremock registry on 127.0.0.1 (plain http, so every test also exercises the
//! https → http fallback of local registries).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly on bad fixtures

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use registry::{
    Access, Client, ClientConfig, ImageRef, Keychain, ProxyOptions, RegistryError, RequestObserver,
    SecretData, TransportOptions,
};
use sha2::Digest as _;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

mod common;
use common::{Action, Handler, Paged, ping_ok, raw_server};

const LONG: Duration = Duration::from_secs(30);

fn client() -> Client {
    Client::new(ClientConfig::default()).unwrap()
}

fn image(server: &MockServer, repo: &str) -> ImageRef {
    ImageRef::parse(&format!("{}/{repo}", server.address()), false).unwrap()
}

/// Lists `repo` anonymously with a fresh client.
async fn list_anon(server: &MockServer, repo: &str) -> Result<Vec<String>, RegistryError> {
    list_anon_within(server, repo, LONG).await
}

/// Lists `repo` anonymously with a fresh client and the given timeout.
async fn list_anon_within(
    server: &MockServer,
    repo: &str,
    timeout: Duration,
) -> Result<Vec<String>, RegistryError> {
    client()
        .list_tags(&image(server, repo), &Access::default(), timeout)
        .await
}

/// A mock for `GET <p>`.
fn get(p: &str) -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path(p))
}

fn keychain(host: &str, user: &str, pass: &str) -> Keychain {
    let cfg = format!(r#"{{"auths":{{"{host}":{{"username":"{user}","password":"{pass}"}}}}}}"#);
    Keychain::from_docker_config_json("ns/creds", cfg.as_bytes()).unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

async fn mount_bearer_ping(server: &MockServer) {
    let challenge = format!(
        r#"Bearer realm="{}/token",service="registry.test""#,
        server.uri()
    );
    get("/v2/")
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge.as_str()),
        )
        .mount(server)
        .await;
}

#[tokio::test]
async fn bearer_token_flow_and_link_pagination() {
    let server = MockServer::start().await;
    mount_bearer_ping(&server).await;
    get("/token")
        .and(query_param("service", "registry.test"))
        .and(query_param("scope", "repository:team/app:pull"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"t0k"}"#))
        .expect(1)
        .mount(&server)
        .await;
    get("/v2/team/app/tags/list")
        .and(query_param("n", "1000"))
        .and(header("authorization", "Bearer t0k"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    r#"</v2/team/app/tags/list?last=b&n=1000>; rel="next""#,
                )
                .set_body_string(r#"{"name":"team/app","tags":["a","b"]}"#),
        )
        .mount(&server)
        .await;
    get("/v2/team/app/tags/list")
        .and(query_param("last", "b"))
        .and(header("authorization", "Bearer t0k"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"name":"team/app","tags":["c","a"]}"#),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let tags = list_anon(&server, "team/app").await.unwrap();
    // Server order, no de-duplication.
    assert_eq!(tags, vec!["a", "b", "c", "a"]);
}

#[tokio::test]
async fn basic_credentials_go_to_the_token_endpoint() {
    let server = MockServer::start().await;
    mount_bearer_ping(&server).await;
    get("/token")
        .and(header(
            "authorization",
            basic("_json_key", "{\"k\":1}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"access_token":"acc"}"#))
        .mount(&server)
        .await;
    get("/token")
        .respond_with(ResponseTemplate::new(401).set_body_string(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ))
        .with_priority(10)
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .and(header("authorization", "Bearer acc"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["1"]}"#))
        .mount(&server)
        .await;
    let img = image(&server, "app");
    let access = Access {
        keychain: keychain(&server.address().to_string(), "_json_key", "{\\\"k\\\":1}"),
        ..Default::default()
    };
    let tags = client().list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(tags, vec!["1"]);

    // Wrong credentials: the token endpoint's error is reported with its URL.
    let access = Access {
        keychain: keychain(&server.address().to_string(), "_json_key", "wrong"),
        ..Default::default()
    };
    let err = client().list_tags(&img, &access, LONG).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("GET {}/token?", server.uri())),
        "{msg}"
    );
    assert!(
        msg.ends_with("UNAUTHORIZED: authentication required"),
        "{msg}"
    );
}

#[tokio::test]
async fn basic_challenge() {
    let server = MockServer::start().await;
    get("/v2/")
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", r#"Basic realm="r""#),
        )
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .and(header("authorization", basic("u", "p").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["x"]}"#))
        .mount(&server)
        .await;
    let access = Access {
        keychain: keychain(&server.address().to_string(), "u", "p"),
        ..Default::default()
    };
    let tags = client()
        .list_tags(&image(&server, "app"), &access, LONG)
        .await
        .unwrap();
    assert_eq!(tags, vec!["x"]);
}

#[tokio::test]
async fn absolute_link_keeps_registry_host_and_port() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/app/tags/list")
        .and(query_param("n", "1000"))
        .respond_with(
            ResponseTemplate::new(200)
                // Nexus-style absolute link that lost the port.
                .insert_header(
                    "Link",
                    r#"<http://127.0.0.1/v2/app/tags/list?last=1&n=1000>; rel="next""#,
                )
                .set_body_string(r#"{"tags":["1"]}"#),
        )
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .and(query_param("last", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["2"],"name":"app"}"#))
        .with_priority(1)
        .mount(&server)
        .await;
    let tags = list_anon(&server, "app").await.unwrap();
    assert_eq!(tags, vec!["1", "2"]);
}

#[tokio::test]
async fn lists_2500_tags_at_page_size_100() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/big/tags/list")
        .respond_with(Paged {
            total: 2500,
            max_page: 100,
            width: 4,
        })
        .mount(&server)
        .await;
    let tags = list_anon(&server, "big").await.unwrap();
    assert_eq!(tags.len(), 2500);
    assert_eq!(tags[0], "t0000");
    assert_eq!(tags[2499], "t2499");
    let pages = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v2/big/tags/list")
        .count();
    assert_eq!(pages, 25);

    let capped = Client::new(ClientConfig {
        max_tags: 1000,
        ..Default::default()
    })
    .unwrap();
    let err = capped
        .list_tags(&image(&server, "big"), &Access::default(), LONG)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}/big: more than 1000 tags listed", server.address())
    );
}

#[tokio::test]
async fn retries_after_429_honouring_retry_after() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/app/tags/list")
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_string(
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                ),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["ok"]}"#))
        .with_priority(2)
        .mount(&server)
        .await;
    let tags = list_anon(&server, "app").await.unwrap();
    assert_eq!(tags, vec!["ok"]);
}

#[tokio::test]
async fn retry_after_beyond_the_timeout_fails_with_the_429() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/app/tags/list")
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "3600")
                .set_body_string(
                    r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
                ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = list_anon_within(&server, "app", Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert!(
        err.to_string().ends_with(": TOOMANYREQUESTS: slow down"),
        "{err}"
    );
    match err {
        RegistryError::Status { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_like_go_containerregistry() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/missing/tags/list")
        .respond_with(ResponseTemplate::new(404).set_body_string(
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"missing"}}]}"#,
        ))
        .expect(1)
        .mount(&server)
        .await;
    get("/v2/chatty/tags/list")
        .respond_with(ResponseTemplate::new(400).set_body_string("x".repeat(100_000)))
        .mount(&server)
        .await;
    get("/v2/flaky/tags/list")
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    let c = Client::new(ClientConfig {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let err = c
        .list_tags(&image(&server, "missing"), &Access::default(), LONG)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "GET {}/v2/missing/tags/list?n=1000: NAME_UNKNOWN: repository name not known to registry; {{\"name\":\"missing\"}}",
            server.uri()
        )
    );
    let err = c
        .list_tags(&image(&server, "flaky"), &Access::default(), LONG)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("unexpected status code 503 Service Unavailable"),
        "{err}"
    );
    // Long error bodies are quoted in part, not dropped.
    let err = c
        .list_tags(&image(&server, "chatty"), &Access::default(), LONG)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unexpected status code 400 Bad Request: xxxx"),
        "{err}"
    );
    assert!(err.len() < 5000, "{} bytes", err.len());
}

#[tokio::test]
async fn timeout_bounds_the_operation() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/slow/tags/list")
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let err = list_anon_within(&server, "slow", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        err.to_string().ends_with("context deadline exceeded"),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_and_oversized_responses_are_errors() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/badlink/tags/list")
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Link", "/v2/x; rel=next")
                .set_body_string(r#"{"tags":[]}"#),
        )
        .mount(&server)
        .await;
    get("/v2/loop/tags/list")
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Link", "</v2/loop/tags/list?n=1000>")
                .set_body_string(r#"{"tags":["a"]}"#),
        )
        .mount(&server)
        .await;
    get("/v2/json/tags/list")
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&server)
        .await;
    get("/v2/huge/tags/list")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(format!(r#"{{"tags":["{}"]}}"#, "x".repeat(4096))),
        )
        .mount(&server)
        .await;
    get("/v2/null/tags/list")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"name":"null","tags":null}"#))
        .mount(&server)
        .await;
    let c = Client::new(ClientConfig {
        max_page_bytes: 1024,
        ..Default::default()
    })
    .unwrap();
    let list = |repo: &'static str| {
        let c = c.clone();
        let img = image(&server, repo);
        async move { c.list_tags(&img, &Access::default(), LONG).await }
    };
    assert_eq!(
        list("badlink").await.unwrap_err().to_string(),
        "failed to parse link header: missing '<'"
    );
    assert!(matches!(
        list("loop").await.unwrap_err(),
        RegistryError::LinkLoop { .. }
    ));
    assert!(
        list("json")
            .await
            .unwrap_err()
            .to_string()
            .contains("tag list is not valid JSON")
    );
    assert!(matches!(
        list("huge").await.unwrap_err(),
        RegistryError::TooLarge { .. }
    ));
    assert_eq!(list("null").await.unwrap(), Vec::<String>::new());
}

const INDEX_DIGEST: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn digest_by_head_with_index_accept_types() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    Mock::given(method("HEAD"))
        .and(path("/v2/app/manifests/v1.0.0"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("Docker-Content-Digest", INDEX_DIGEST),
        )
        .expect(1)
        .mount(&server)
        .await;
    let digest = client()
        .manifest_digest(&image(&server, "app"), "v1.0.0", &Access::default(), LONG)
        .await
        .unwrap();
    assert_eq!(digest, INDEX_DIGEST);
    let reqs = server.received_requests().await.unwrap();
    let head = reqs.iter().find(|r| r.method.as_str() == "HEAD").unwrap();
    let accept = head.headers.get("accept").unwrap().to_str().unwrap();
    for t in registry::MANIFEST_ACCEPT {
        assert!(accept.contains(t), "{accept} lacks {t}");
    }
}

#[tokio::test]
async fn digest_falls_back_to_get_and_sha256() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    Mock::given(method("HEAD"))
        .and(path("/v2/app/manifests/latest"))
        .respond_with(ResponseTemplate::new(405))
        .mount(&server)
        .await;
    get("/v2/app/manifests/latest")
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .expect(1)
        .mount(&server)
        .await;
    let digest = client()
        .manifest_digest(&image(&server, "app"), "latest", &Access::default(), LONG)
        .await
        .unwrap();
    let want = format!("sha256:{:x}", sha2::Sha256::digest(body.as_bytes()));
    assert_eq!(digest, want);

    let err = client()
        .manifest_digest(&image(&server, "app"), "bad/tag", &Access::default(), LONG)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Reference(_)), "{err}");
}

#[tokio::test]
async fn https_to_http_fallback_only_for_local_or_insecure() {
    let server = MockServer::start().await;
    ping_ok(&server).await;
    get("/v2/app/tags/list")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["t"]}"#))
        .mount(&server)
        .await;
    // 127.0.0.1 is local: https fails against the plain-http server, http works.
    let tags = list_anon(&server, "app").await.unwrap();
    assert_eq!(tags, vec!["t"]);
    // `localhost:<port>` and `insecure` too.
    let local =
        ImageRef::parse(&format!("localhost:{}/app", server.address().port()), false).unwrap();
    assert_eq!(
        client()
            .list_tags(&local, &Access::default(), LONG)
            .await
            .unwrap(),
        vec!["t"]
    );
}

#[tokio::test]
async fn proxy_carries_the_traffic() {
    // wiremock as an HTTP proxy: it sees absolute-form requests for the (unresolvable) registry.
    let proxy = MockServer::start().await;
    get("/v2/")
        .respond_with(ResponseTemplate::new(200))
        .mount(&proxy)
        .await;
    get("/v2/app/tags/list")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["via-proxy"]}"#))
        .mount(&proxy)
        .await;
    let secret = SecretData {
        name: "ns/proxy".into(),
        secret_type: "Opaque".into(),
        data: [("address".to_string(), proxy.uri().into_bytes())].into(),
    };
    let access = Access {
        transport: TransportOptions {
            proxy: Some(ProxyOptions::from_secret(&secret).unwrap()),
            tls: None,
        },
        ..Default::default()
    };
    let img = ImageRef::parse("registry.invalid:5000/app", true).unwrap();
    let tags = client().list_tags(&img, &access, LONG).await.unwrap();
    assert_eq!(tags, vec!["via-proxy"]);
    let reqs = proxy.received_requests().await.unwrap();
    let plain = |reqs: &[Request]| {
        reqs.iter()
            .filter(|r| r.url.host_str() == Some("registry.invalid") && r.method.as_str() == "GET")
            .count()
    };
    assert!(plain(&reqs) >= 2, "{reqs:?}");

    // Without `insecure` a non-local registry is https only: the tunnel fails and no plain request follows.
    let secure = ImageRef::parse("registry.invalid:5000/app", false).unwrap();
    assert!(client().list_tags(&secure, &access, LONG).await.is_err());
    let after = proxy.received_requests().await.unwrap();
    assert_eq!(
        plain(&after),
        plain(&reqs),
        "plain-http request sent for an https-only registry"
    );
}

/// Counts requests per registry host.
#[derive(Default)]
struct Counter(AtomicUsize);

impl RequestObserver for Counter {
    fn observe(&self, _registry: &str, _method: &str, _status: Option<u16>, _elapsed: Duration) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn per_registry_concurrency_limit() {
    for limit in [1, 2] {
        let handler: Handler = Arc::new(|_, _| {
            Action::Respond(Duration::from_millis(50), r#"{"tags":["a"]}"#.to_string())
        });
        let (addr, stats) = raw_server(handler).await;
        let counter = Arc::new(Counter::default());
        let c = Client::with_observer(
            ClientConfig {
                per_registry_concurrency: limit,
                ..Default::default()
            },
            counter.clone(),
        )
        .unwrap();
        let img = ImageRef::parse(&format!("{addr}/app"), true).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, img) = (c.clone(), img.clone());
            tasks.push(tokio::spawn(async move {
                c.list_tags(&img, &Access::default(), LONG).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), vec!["a"]);
        }
        let seen = stats.max_in_flight.load(Ordering::SeqCst);
        assert!(
            (1..=limit).contains(&seen),
            "limit {limit}: {seen} requests in flight at once"
        );
        // 8 lists, plus at most 8 × (https attempt + http ping) before the ping cache is filled.
        let requests = counter.0.load(Ordering::SeqCst);
        assert!((8 + 2..=24).contains(&requests), "{requests} requests");
    }
}

#[tokio::test]
async fn ping_and_token_are_cached_across_calls() {
    let server = MockServer::start().await;
    mount_bearer_ping(&server).await;
    get("/token")
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"token":"t","expires_in":300}"#),
        )
        .expect(1)
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .and(header("authorization", "Bearer t"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["1"]}"#))
        .expect(3)
        .mount(&server)
        .await;
    let c = client();
    let img = image(&server, "app");
    for _ in 0..3 {
        assert_eq!(
            c.list_tags(&img, &Access::default(), LONG).await.unwrap(),
            vec!["1"]
        );
    }
    let pings = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/v2/")
        .count();
    assert_eq!(pings, 1);
}

#[tokio::test]
async fn rejected_token_is_refreshed_once() {
    let server = MockServer::start().await;
    mount_bearer_ping(&server).await;
    get("/token")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"old"}"#))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    get("/token")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"token":"new"}"#))
        .with_priority(2)
        .mount(&server)
        .await;
    let challenge = format!(
        r#"Bearer realm="{}/token",service="registry.test",error="invalid_token""#,
        server.uri()
    );
    get("/v2/app/tags/list")
        .and(header("authorization", "Bearer old"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", challenge.as_str()),
        )
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .and(header("authorization", "Bearer new"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["fresh"]}"#))
        .mount(&server)
        .await;
    let tags = list_anon(&server, "app").await.unwrap();
    assert_eq!(tags, vec!["fresh"]);
}

#[tokio::test]
async fn identity_token_is_exchanged_with_a_post() {
    let server = MockServer::start().await;
    mount_bearer_ping(&server).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(wiremock::matchers::body_string_contains(
            "grant_type=refresh_token",
        ))
        .and(wiremock::matchers::body_string_contains(
            "refresh_token=r3fresh",
        ))
        .and(wiremock::matchers::body_string_contains(
            "scope=repository%3Aapp%3Apull",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"access_token":"acr"}"#))
        .expect(1)
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .and(header("authorization", "Bearer acr"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["1"]}"#))
        .mount(&server)
        .await;
    let cfg = format!(
        r#"{{"auths":{{"{}":{{"username":"00000000-0000-0000-0000-000000000000","identitytoken":"r3fresh"}}}}}}"#,
        server.address()
    );
    let access = Access {
        keychain: Keychain::from_docker_config_json("ns/acr", cfg.as_bytes()).unwrap(),
        ..Default::default()
    };
    let tags = client()
        .list_tags(&image(&server, "app"), &access, LONG)
        .await
        .unwrap();
    assert_eq!(tags, vec!["1"]);
}

#[tokio::test]
async fn closed_connections_are_retried() {
    // The first request's connection is closed without an answer: a transient failure.
    let handler: Handler = Arc::new(|n, _| match n {
        0 => Action::HangUp,
        _ => Action::Respond(Duration::ZERO, r#"{"tags":["after-retry"]}"#.to_string()),
    });
    let (addr, stats) = raw_server(handler).await;
    let c = Client::new(ClientConfig {
        initial_backoff: Duration::from_millis(10),
        ..Default::default()
    })
    .unwrap();
    let img = ImageRef::parse(&format!("{addr}/app"), false).unwrap();
    let tags = c.list_tags(&img, &Access::default(), LONG).await.unwrap();
    assert_eq!(tags, vec!["after-retry"]);
    // Ping (dropped), ping again, list.
    assert_eq!(stats.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn cached_ping_is_corrected_when_the_registry_starts_asking_for_auth() {
    let server = MockServer::start().await;
    // First the registry is open, and credentials are not sent to it.
    ping_ok(&server).await;
    get("/v2/app/tags/list")
        .and(wiremock::matchers::header_exists("authorization"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["open"]}"#))
        .with_priority(2)
        .mount(&server)
        .await;
    let c = client();
    let img = image(&server, "app");
    let access = Access {
        keychain: keychain(&server.address().to_string(), "u", "p"),
        ..Default::default()
    };
    assert_eq!(
        c.list_tags(&img, &access, LONG).await.unwrap(),
        vec!["open"]
    );

    // Then it turns on basic auth (and `/v2/` is gone, so a new ping would fail): the cached
    // "no auth" ping is corrected by the 401's challenge.
    server.reset().await;
    get("/v2/app/tags/list")
        .and(header("authorization", basic("u", "p").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"tags":["authed"]}"#))
        .with_priority(1)
        .mount(&server)
        .await;
    get("/v2/app/tags/list")
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", r#"Basic realm="r""#),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    assert_eq!(
        c.list_tags(&img, &access, LONG).await.unwrap(),
        vec!["authed"]
    );
    assert_eq!(
        c.list_tags(&img, &access, LONG).await.unwrap(),
        vec!["authed"]
    );
}
