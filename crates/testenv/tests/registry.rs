//! Push and list tags through every registry variant of the test environment (`hack/testenv.sh up`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions panic on failure by design.

use testenv::registry::{OCI_INDEX, OCI_MANIFEST, RegistryClient};
use testenv::{Error, RegistryAuth, RegistryVariant, env, unique_name};

fn client(variant: RegistryVariant) -> RegistryClient {
    RegistryClient::new(&env().registry(variant).unwrap()).unwrap()
}

async fn push_and_list(variant: RegistryVariant) {
    let c = client(variant);
    c.ping().await.unwrap();
    let repo = format!("team/{}", unique_name("app"));
    let tags = ["1.0.0", "1.1.0", "2.0.0-rc.1", "latest"];
    let pushed = c.push_tags(&repo, &tags, 4).await.unwrap();
    assert_eq!(pushed.len(), tags.len());
    // Each tag is its own image.
    let mut digests: Vec<_> = pushed.iter().map(|(_, d)| d.clone()).collect();
    digests.dedup();
    assert_eq!(digests.len(), tags.len());
    let (mut listed, pages) = c.list_tags(&repo, None).await.unwrap();
    listed.sort();
    assert_eq!(listed, ["1.0.0", "1.1.0", "2.0.0-rc.1", "latest"]);
    assert_eq!(pages, 1);
    let m = c.manifest(&repo, "1.1.0").await.unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.digest, pushed[1].1);
}

#[tokio::test]
async fn anonymous_push_and_list() {
    push_and_list(RegistryVariant::Anonymous).await;
}

#[tokio::test]
async fn basic_auth_push_and_list() {
    push_and_list(RegistryVariant::Basic).await;
}

#[tokio::test]
async fn token_auth_push_and_list() {
    push_and_list(RegistryVariant::Token).await;
}

#[tokio::test]
async fn paged_push_and_list() {
    push_and_list(RegistryVariant::Paged).await;
}

#[tokio::test]
async fn tls_push_and_list() {
    push_and_list(RegistryVariant::Tls).await;
}

#[tokio::test]
async fn mutual_tls_push_and_list() {
    push_and_list(RegistryVariant::MutualTls).await;
}

fn status(err: Error) -> u16 {
    match err {
        Error::Status { status, .. } => status,
        other => panic!("expected an HTTP status error, got {other}"),
    }
}

#[tokio::test]
async fn basic_auth_rejects_wrong_and_missing_credentials() {
    let ep = env().registry(RegistryVariant::Basic).unwrap();
    let wrong = RegistryAuth::Basic {
        user: "testenv".into(),
        password: "wrong".into(),
    };
    for auth in [wrong, RegistryAuth::Anonymous] {
        let c = RegistryClient::with_auth(&ep, auth).unwrap();
        assert_eq!(status(c.ping().await.unwrap_err()), 401);
        assert_eq!(
            status(c.push_image("rejected", "1").await.unwrap_err()),
            401
        );
    }
}

#[tokio::test]
async fn token_auth_rejects_wrong_credentials_and_anonymous_push() {
    let ep = env().registry(RegistryVariant::Token).unwrap();
    let repo = unique_name("token");
    RegistryClient::new(&ep)
        .unwrap()
        .push_image(&repo, "1")
        .await
        .unwrap();

    // Wrong password: the token server refuses to issue a token.
    let wrong = RegistryAuth::Token {
        user: "testenv".into(),
        password: "wrong".into(),
    };
    let c = RegistryClient::with_auth(&ep, wrong).unwrap();
    assert_eq!(status(c.list_tags(&repo, None).await.unwrap_err()), 401);

    // No credentials at all, no token: the registry's challenge stays unanswered.
    let anon = RegistryClient::with_auth(&ep, RegistryAuth::Anonymous).unwrap();
    assert_eq!(status(anon.list_tags(&repo, None).await.unwrap_err()), 401);

    // An anonymous token (as Docker Hub issues for public images) pulls but cannot push.
    let anon = RegistryClient::with_auth(&ep, RegistryAuth::AnonymousToken).unwrap();
    assert_eq!(anon.list_tags(&repo, None).await.unwrap().0, ["1"]);
    assert_eq!(status(anon.push_image(&repo, "2").await.unwrap_err()), 401);
}

#[tokio::test]
async fn token_server_grants_anonymous_pull_only() {
    let (realm, service) = env().token_realm().unwrap();
    let http = reqwest::Client::new();
    let url = format!("{realm}?service={service}&scope=repository:a/b:pull,push");
    let body: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], service.as_str());
    assert_eq!(claims["access"][0]["name"], "a/b");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
}

#[tokio::test]
async fn tls_requires_the_test_ca() {
    let mut ep = env().registry(RegistryVariant::Tls).unwrap();
    ep.ca_cert = None;
    let c = RegistryClient::new(&ep).unwrap();
    match c.ping().await.unwrap_err() {
        Error::Http { .. } => {}
        other => panic!("expected a TLS failure, got {other}"),
    }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let mut ep = env().registry(RegistryVariant::MutualTls).unwrap();
    ep.client_identity = None;
    let c = RegistryClient::new(&ep).unwrap();
    match c.ping().await.unwrap_err() {
        Error::Http { .. } => {}
        other => panic!("expected a TLS failure, got {other}"),
    }
}

#[tokio::test]
async fn tag_list_pagination_follows_link_headers() {
    let c = client(RegistryVariant::Paged);
    let repo = unique_name("paged");
    // Pushed out of order: the paged registry sorts, as Docker Hub and GHCR do.
    let tags: Vec<String> = (0..23).rev().map(|i| format!("v{i:03}")).collect();
    c.push_tags(&repo, &tags, 8).await.unwrap();
    let mut sorted = tags.clone();
    sorted.sort();

    let first = c.tags_page(&repo, Some(5), None).await.unwrap();
    assert_eq!(first.tags, sorted[..5]);
    let next = first.next.expect("no Link header on a partial page");
    assert!(next.as_str().contains("last=v004"), "{next}");

    let (listed, pages) = c.list_tags(&repo, Some(5)).await.unwrap();
    assert_eq!(listed, sorted);
    assert_eq!(pages, 5);
    let (listed, pages) = c.list_tags(&repo, Some(23)).await.unwrap();
    assert_eq!((listed.len(), pages), (23, 1));
}

#[tokio::test]
async fn paged_registry_pages_without_n() {
    let c = client(RegistryVariant::Paged);
    let per_page = env().paged_default_n().unwrap();
    let repo = unique_name("paged-default");
    let tags: Vec<String> = (0..per_page * 2 + 1).map(|i| format!("1.0.{i}")).collect();
    c.push_tags(&repo, &tags, 16).await.unwrap();
    let first = c.tags_page(&repo, None, None).await.unwrap();
    assert_eq!(first.tags.len(), per_page);
    let (mut listed, pages) = c.list_tags(&repo, None).await.unwrap();
    assert_eq!(pages, 3);
    listed.sort();
    let mut want = tags;
    want.sort();
    assert_eq!(listed, want);
}

/// distribution 2.8 itself ignores `n`: the whole list comes back at once. Clients must cope with both.
#[tokio::test]
async fn plain_registry_ignores_n() {
    let c = client(RegistryVariant::Anonymous);
    let repo = unique_name("unpaged");
    let tags: Vec<String> = (0..7).map(|i| format!("v{i}")).collect();
    c.push_tags(&repo, &tags, 4).await.unwrap();
    let first = c.tags_page(&repo, Some(2), None).await.unwrap();
    assert_eq!(first.tags.len(), 7);
    assert!(first.next.is_none());
}

#[tokio::test]
async fn multi_arch_index() {
    for variant in RegistryVariant::ALL {
        let c = client(variant);
        let repo = unique_name("multi");
        let digest = c
            .push_index(&repo, "1.0.0", &[("linux", "amd64"), ("linux", "arm64")])
            .await
            .unwrap();
        let index = c.manifest(&repo, "1.0.0").await.unwrap();
        assert_eq!(index.media_type, OCI_INDEX, "{variant:?}");
        assert_eq!(index.digest, digest);
        let doc: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
        let manifests = doc["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        for (m, arch) in manifests.iter().zip(["amd64", "arm64"]) {
            assert_eq!(m["platform"]["architecture"], arch);
            let child = c
                .manifest(&repo, m["digest"].as_str().unwrap())
                .await
                .unwrap();
            assert_eq!(child.media_type, OCI_MANIFEST);
        }
        let (tags, _) = c.list_tags(&repo, None).await.unwrap();
        assert_eq!(tags, ["1.0.0"]);
    }
}

#[tokio::test]
async fn many_tags_concurrently() {
    let c = client(RegistryVariant::Anonymous);
    let repo = unique_name("many");
    let tags: Vec<String> = (0..300).map(|i| format!("1.{i}.0")).collect();
    c.push_tags(&repo, &tags, 16).await.unwrap();
    let (mut listed, _) = c.list_tags(&repo, None).await.unwrap();
    listed.sort();
    let mut want = tags.clone();
    want.sort();
    assert_eq!(listed, want);
}
