//! HTTP requests through the test environment's proxies (`hack/testenv.sh up`): plain HTTP (absolute-form) and
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions panic on failure by design.
//! HTTPS (CONNECT tunnels), with and without basic auth.

use testenv::git::run;
use testenv::{GitTransport, ProxyVariant, RegistryVariant, env, unique_name};

fn client(proxy: reqwest::Proxy) -> reqwest::Client {
    let ca = std::fs::read(env().ca_cert().unwrap()).unwrap();
    reqwest::Client::builder()
        .proxy(proxy)
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap()
}

fn proxy(variant: ProxyVariant, auth: Option<(&str, &str)>) -> reqwest::Proxy {
    let p = reqwest::Proxy::all(env().proxy_url(variant).unwrap()).unwrap();
    match auth {
        Some((u, pw)) => p.basic_auth(u, pw),
        None => p,
    }
}

fn https_target() -> String {
    format!(
        "https://{}/v2/",
        env().registry(RegistryVariant::Tls).unwrap().host
    )
}

fn http_target() -> String {
    format!(
        "http://{}/v2/",
        env().registry(RegistryVariant::Anonymous).unwrap().host
    )
}

#[tokio::test]
async fn open_proxy_tunnels_https_and_forwards_http() {
    let c = client(proxy(ProxyVariant::Open, None));
    let resp = c.get(https_target()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c.get(http_target()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The proxy marks what it forwarded.
    let via = resp
        .headers()
        .get("via")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        via.as_deref().is_some_and(|v| v.contains("tinyproxy")),
        "{via:?}"
    );
}

#[tokio::test]
async fn auth_proxy_accepts_the_credentials() {
    let (user, password) = env().credentials().unwrap();
    let c = client(proxy(ProxyVariant::BasicAuth, Some((&user, &password))));
    assert_eq!(c.get(https_target()).send().await.unwrap().status(), 200);
    assert_eq!(c.get(http_target()).send().await.unwrap().status(), 200);
}

/// tinyproxy answers missing credentials with 407 and wrong ones with 401 (squid would say 407 to both); either
/// way no tunnel is made and no request is forwarded.
#[tokio::test]
async fn auth_proxy_rejects_missing_and_wrong_credentials() {
    for (auth, code) in [(None, 407), (Some(("testenv", "wrong")), 401)] {
        let c = client(proxy(ProxyVariant::BasicAuth, auth));
        // CONNECT refused: the tunnel is never made.
        let err = c.get(https_target()).send().await.unwrap_err();
        let err = format!("{err:?}");
        assert!(
            err.contains("ProxyAuthRequired") || err.contains("Tunnel"),
            "{auth:?}: {err}"
        );
        // Plain HTTP: the proxy answers itself.
        let resp = c.get(http_target()).send().await.unwrap();
        assert_eq!(resp.status(), code, "{auth:?}");
        assert!(resp.headers().get("via").is_none());
    }
}

#[test]
fn git_clones_over_https_through_the_auth_proxy() {
    let env = env();
    let name = unique_name("proxied");
    env.seed_repo(&name, &[("a", "a")]).unwrap();
    let (user, password) = env.credentials().unwrap();
    let proxy = env
        .proxy_url(ProxyVariant::BasicAuth)
        .unwrap()
        .replace("://", &format!("://{user}:{password}@"));
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = env.git_command_for(GitTransport::Https).unwrap();
    cmd.args(["-c", &format!("http.proxy={proxy}"), "clone", "-q"])
        .arg(env.git_clone_url(GitTransport::Https, &name).unwrap())
        .arg(tmp.path().join("w"));
    run(cmd).unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("w/a")).unwrap(),
        "a"
    );

    // The same through the proxy with a wrong password fails.
    let wrong = env
        .proxy_url(ProxyVariant::BasicAuth)
        .unwrap()
        .replace("://", &format!("://{user}:wrong@"));
    let mut cmd = env.git_command_for(GitTransport::Https).unwrap();
    cmd.args(["-c", &format!("http.proxy={wrong}"), "clone", "-q"])
        .arg(env.git_clone_url(GitTransport::Https, &name).unwrap())
        .arg(tmp.path().join("w2"));
    let err = run(cmd).unwrap_err().to_string();
    assert!(err.contains("CONNECT tunnel failed"), "{err}");
}
