//! The client against the real registries of the test environment (`hack/testenv.sh up`): every variant
//! (anonymous, htpasswd, token, TLS with CA, mTLS, paging proxy, HTTP proxies), digests of images and
//! multi-arch indexes, and bad credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly on bad fixtures

use std::collections::BTreeMap;
use std::time::Duration;

use registry::{
    Access, Client, ClientConfig, ImageRef, Keychain, ProxyOptions, SecretData, TlsOptions,
    TransportOptions,
};
use testenv::registry::RegistryClient;
use testenv::{ProxyVariant, RegistryAuth, RegistryEndpoint, RegistryVariant, env, unique_name};

const TIMEOUT: Duration = Duration::from_secs(60);

fn docker_config(host: &str, user: &str, pass: &str) -> Keychain {
    let cfg = serde_json::json!({"auths": {host: {"username": user, "password": pass}}});
    Keychain::from_docker_config_json("test/creds", cfg.to_string().as_bytes()).unwrap()
}

/// What the controller would build from the variant's secrets.
fn access_for(ep: &RegistryEndpoint) -> Access {
    let mut access = Access::default();
    if let RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password } =
        &ep.auth
    {
        access.keychain = docker_config(&ep.host, user, password);
    }
    if let Some(ca) = &ep.ca_cert {
        let mut data = BTreeMap::from([("ca.crt".to_string(), std::fs::read(ca).unwrap())]);
        if let Some((cert, key)) = &ep.client_identity {
            data.insert("tls.crt".into(), std::fs::read(cert).unwrap());
            data.insert("tls.key".into(), std::fs::read(key).unwrap());
        }
        let secret = SecretData {
            name: "test/tls".into(),
            secret_type: "kubernetes.io/tls".into(),
            data,
        };
        access.transport.tls = Some(TlsOptions::from_secret(&secret).unwrap());
    }
    access
}

/// The registry behind the paging proxy is the anonymous one: push there.
fn push_endpoint(variant: RegistryVariant) -> RegistryEndpoint {
    let push_variant = if variant == RegistryVariant::Paged {
        RegistryVariant::Anonymous
    } else {
        variant
    };
    env().registry(push_variant).unwrap()
}

#[tokio::test]
async fn every_variant_lists_tags_and_reads_digests() {
    let client = Client::new(ClientConfig::default()).unwrap();
    for variant in RegistryVariant::ALL {
        let ep = env().registry(variant).unwrap();
        let repo = unique_name("registry-crate/app");
        let pusher = RegistryClient::new(&push_endpoint(variant)).unwrap();
        let pushed = pusher
            .push_tags(&repo, &["1.0.0", "1.0.1", "latest"], 4)
            .await
            .unwrap();
        let image = ImageRef::parse(&format!("{}/{repo}", ep.host), false).unwrap();
        let access = access_for(&ep);
        let mut tags = client
            .list_tags(&image, &access, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        tags.sort();
        assert_eq!(tags, vec!["1.0.0", "1.0.1", "latest"], "{variant:?}");
        let digest = client
            .manifest_digest(&image, "1.0.1", &access, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(digest, pushed[1].1, "{variant:?}");
    }
}

#[tokio::test]
async fn index_digest_for_multi_arch_images() {
    let ep = env().registry(RegistryVariant::Anonymous).unwrap();
    let repo = unique_name("registry-crate/multi");
    let pusher = RegistryClient::new(&ep).unwrap();
    let index = pusher
        .push_index(&repo, "v1", &[("linux", "amd64"), ("linux", "arm64")])
        .await
        .unwrap();
    let image = ImageRef::parse(&format!("{}/{repo}", ep.host), false).unwrap();
    let client = Client::new(ClientConfig::default()).unwrap();
    let digest = client
        .manifest_digest(&image, "v1", &Access::default(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(digest, index);
}

#[tokio::test]
async fn pages_of_100_list_2500_tags() {
    let anon = env().registry(RegistryVariant::Anonymous).unwrap();
    let paged = env().registry(RegistryVariant::Paged).unwrap();
    let repo = unique_name("registry-crate/many");
    let tags: Vec<String> = (0..2500).map(|i| format!("v{i}")).collect();
    RegistryClient::new(&anon)
        .unwrap()
        .push_tags(&repo, &tags, 16)
        .await
        .unwrap();
    let client = Client::new(ClientConfig {
        page_size: 100,
        ..Default::default()
    })
    .unwrap();
    let image = ImageRef::parse(&format!("{}/{repo}", paged.host), false).unwrap();
    let mut listed = client
        .list_tags(&image, &Access::default(), TIMEOUT)
        .await
        .unwrap();
    listed.sort();
    let mut want = tags.clone();
    want.sort();
    assert_eq!(listed, want);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused() {
    let client = Client::new(ClientConfig::default()).unwrap();
    for variant in [RegistryVariant::Basic, RegistryVariant::Token] {
        let ep = env().registry(variant).unwrap();
        let repo = unique_name("registry-crate/private");
        RegistryClient::new(&ep)
            .unwrap()
            .push_tags(&repo, &["1"], 1)
            .await
            .unwrap();
        let image = ImageRef::parse(&format!("{}/{repo}", ep.host), false).unwrap();
        let access = Access {
            keychain: docker_config(&ep.host, "testenv", "wrong"),
            ..Default::default()
        };
        let err = client
            .list_tags(&image, &access, TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.is_unauthorized(), "{variant:?}: {err}");
    }
    let mtls = env().registry(RegistryVariant::MutualTls).unwrap();
    let mut access = access_for(&mtls);
    if let Some(tls) = access.transport.tls.as_mut() {
        tls.client_pem = None;
    }
    let image = ImageRef::parse(&format!("{}/registry-crate/none", mtls.host), false).unwrap();
    assert!(client.list_tags(&image, &access, TIMEOUT).await.is_err());
}

#[tokio::test]
async fn proxies_with_and_without_auth() {
    let client = Client::new(ClientConfig::default()).unwrap();
    let ep = env().registry(RegistryVariant::Tls).unwrap();
    let repo = unique_name("registry-crate/proxied");
    RegistryClient::new(&ep)
        .unwrap()
        .push_tags(&repo, &["p1"], 1)
        .await
        .unwrap();
    let image = ImageRef::parse(&format!("{}/{repo}", ep.host), false).unwrap();
    let (user, password) = env().credentials().unwrap();
    for (variant, creds) in [
        (ProxyVariant::Open, None),
        (ProxyVariant::BasicAuth, Some((user, password))),
    ] {
        let mut data = BTreeMap::from([(
            "address".to_string(),
            env().proxy_url(variant).unwrap().as_bytes().to_vec(),
        )]);
        if let Some((u, p)) = creds {
            data.insert("username".into(), u.into_bytes());
            data.insert("password".into(), p.into_bytes());
        }
        let secret = SecretData {
            name: "test/proxy".into(),
            secret_type: "Opaque".into(),
            data,
        };
        let mut access = access_for(&ep);
        access.transport = TransportOptions {
            proxy: Some(ProxyOptions::from_secret(&secret).unwrap()),
            ..access.transport
        };
        let tags = client
            .list_tags(&image, &access, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{variant:?}: {e}"));
        assert_eq!(tags, vec!["p1"]);
    }
}

/// ECR credentials reach the real token registry of the test environment: a simulated ECR API hands
/// out the registry's own user and password as its authorization token, and the ECR host is mapped to
/// the loopback registry with the client's test-only host map.
#[tokio::test]
async fn ecr_provider_credentials_reach_the_token_registry() {
    use wiremock::matchers::{header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let ep = env().registry(RegistryVariant::Token).unwrap();
    let RegistryAuth::Token { user, password } = &ep.auth else {
        panic!("token variant without credentials: {:?}", ep.auth);
    };
    let repo = unique_name("ecr");
    RegistryClient::new(&ep)
        .unwrap()
        .push_tags(&repo, &["1.0.0", "1.1.0"], 2)
        .await
        .unwrap();

    let ecr_for = |pass: &str| {
        let token = base64_encode(&format!("{user}:{pass}"));
        async move {
            let ecr = MockServer::start().await;
            Mock::given(method("POST"))
                .and(header(
                    "x-amz-target",
                    "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
                ))
                .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "authorizationData": [{"authorizationToken": token, "expiresAt": 4102444800.0}]
                })))
                .mount(&ecr)
                .await;
            ecr
        }
    };
    let client = Client::new(ClientConfig {
        host_map: vec![(ECR_HOST.to_string(), ep.host.parse().unwrap())],
        ..Default::default()
    })
    .unwrap();
    let image = ImageRef::parse(&format!("{ECR_HOST}/{repo}"), true).unwrap();
    let access_with = |ecr: &MockServer| Access {
        provider: Some(registry::cloud::ProviderAccess::new(
            registry::CloudProvider::Aws,
            registry::AuthContext::new(
                registry::CloudEnv::from_pairs([
                    ("AWS_ACCESS_KEY_ID".to_string(), "AKIATEST".to_string()),
                    (
                        "AWS_SECRET_ACCESS_KEY".to_string(),
                        "test-secret".to_string(),
                    ),
                    ("AWS_ENDPOINT_URL_ECR".to_string(), ecr.uri()),
                ]),
                registry::CredentialHelpers::default(),
            ),
        )),
        ..Default::default()
    };

    let ecr = ecr_for(password).await;
    let mut tags = client
        .list_tags(&image, &access_with(&ecr), TIMEOUT)
        .await
        .unwrap();
    tags.sort();
    assert_eq!(tags, vec!["1.0.0", "1.1.0"]);

    // A token the registry does not accept is refused by the registry's token server.
    let ecr = ecr_for("not-the-password").await;
    let err = client
        .list_tags(&image, &access_with(&ecr), TIMEOUT)
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
