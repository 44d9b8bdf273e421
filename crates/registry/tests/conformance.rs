//! Data-driven tests: Flux's `registry.*` conformance cases (tests/data/registry-cases.json) and the
//! keychain matching cases (tests/data/keychain-cases.json).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly on bad fixtures

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use registry::{
    AccessSpec, Credential, ImageRef, Keychain, Scheme, SecretData, SecretSource, SourceError,
    resolve_access,
};
use serde_json::Value;

const CA: &[u8] = include_bytes!("data/tls/ca.pem");
const CLIENT_CERT: &[u8] = include_bytes!("data/tls/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("data/tls/client-key.pem");

#[test]
fn parse_image_reference_cases() {
    let data: Value = serde_json::from_str(include_str!("data/registry-cases.json")).unwrap();
    let mut n = 0;
    for case in data["cases"].as_array().unwrap() {
        if case["kind"] != "parseImageReference" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap();
        let image = case["image"].as_str().unwrap();
        let insecure = case["insecure"].as_bool().unwrap();
        let expected = &case["expected"];
        let got = ImageRef::parse(image, insecure);
        if expected["error"].as_bool().unwrap() {
            assert!(got.is_err(), "{name}: expected an error, got {got:?}");
            continue;
        }
        let r = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            r.canonical(),
            expected["refString"].as_str().unwrap(),
            "{name}"
        );
        if expected["scheme"] == "http" {
            assert_eq!(r.scheme(), Scheme::HttpsThenHttp, "{name}");
        }
    }
    assert_eq!(n, 5);
}

/// The secrets and service accounts of one case, described in the case's `objects` list.
#[derive(Default)]
struct Objects {
    secrets: HashMap<String, SecretData>,
    service_accounts: HashMap<String, Vec<String>>,
}

impl SecretSource for Objects {
    async fn secret(&self, _ns: &str, name: &str) -> Result<Option<SecretData>, SourceError> {
        Ok(self.secrets.get(name).cloned())
    }
    async fn service_account_pull_secrets(
        &self,
        _ns: &str,
        name: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        Ok(self.service_accounts.get(name).cloned())
    }
}

fn docker_config() -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode("user:pass");
    format!(r#"{{"auths":{{"example.com":{{"auth":"{auth}"}}}}}}"#).into_bytes()
}

fn tls_data(keys: &[&str]) -> BTreeMap<String, Vec<u8>> {
    keys.iter()
        .map(|k| {
            let v = match *k {
                "ca.crt" | "caFile" => CA,
                "tls.crt" | "certFile" => CLIENT_CERT,
                "tls.key" | "keyFile" => CLIENT_KEY,
                other => panic!("unknown TLS key {other}"),
            };
            (k.to_string(), v.to_vec())
        })
        .collect()
}

/// Turns descriptions such as `test-secret (kubernetes.io/dockerconfigjson)`,
/// `test-tls-secret (kubernetes.io/tls: ca.crt,tls.crt,tls.key)` or
/// `sa test-service-account (imagePullSecrets: test-secret)` into objects.
fn objects(descriptions: &[Value]) -> Objects {
    let mut out = Objects::default();
    for d in descriptions {
        let d = d.as_str().unwrap();
        let (head, detail) = match d.split_once(" (") {
            Some((h, rest)) => (h, rest.trim_end_matches(')')),
            None => (d, ""),
        };
        if let Some(sa) = head.strip_prefix("sa ") {
            let pulls = detail
                .strip_prefix("imagePullSecrets: ")
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            out.service_accounts.insert(sa.to_string(), pulls);
            continue;
        }
        let name = head.to_string();
        let secret = match (name.as_str(), detail) {
            (_, "kubernetes.io/dockerconfigjson") | ("test-secret", "") => SecretData {
                name: format!("test-ns/{name}"),
                secret_type: "kubernetes.io/dockerconfigjson".into(),
                data: BTreeMap::from([(".dockerconfigjson".into(), docker_config())]),
            },
            ("test-tls-secret", "") => SecretData {
                name: format!("test-ns/{name}"),
                secret_type: "kubernetes.io/tls".into(),
                data: tls_data(&["ca.crt", "tls.crt", "tls.key"]),
            },
            ("test-proxy-secret", "") => SecretData {
                name: format!("test-ns/{name}"),
                secret_type: "Opaque".into(),
                data: BTreeMap::from([("address".into(), b"http://proxy.example.com".to_vec())]),
            },
            (_, detail) if detail.contains("data ") => {
                // `kubernetes.io/dockerconfigjson type, data ca.crt,tls.crt,tls.key`
                let (ty, keys) = detail.split_once(" type, data ").unwrap();
                let keys: Vec<&str> = keys.split(',').collect();
                SecretData {
                    name: format!("test-ns/{name}"),
                    secret_type: ty.into(),
                    data: tls_data(&keys),
                }
            }
            (_, detail) if detail.starts_with("kubernetes.io/tls: ") => {
                let keys: Vec<&str> = detail["kubernetes.io/tls: ".len()..].split(',').collect();
                SecretData {
                    name: format!("test-ns/{name}"),
                    secret_type: "kubernetes.io/tls".into(),
                    data: tls_data(&keys),
                }
            }
            (_, detail) if detail.starts_with("Opaque: ") => {
                let data = detail["Opaque: ".len()..]
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.as_bytes().to_vec())
                    })
                    .collect();
                SecretData {
                    name: format!("test-ns/{name}"),
                    secret_type: "Opaque".into(),
                    data,
                }
            }
            other => panic!("unknown object description {other:?}"),
        };
        out.secrets.insert(name, secret);
    }
    out
}

fn opt(spec: &Value, field: &str) -> Option<String> {
    spec[field]["name"].as_str().map(str::to_string)
}

#[tokio::test]
async fn auth_options_cases() {
    let data: Value = serde_json::from_str(include_str!("data/registry-cases.json")).unwrap();
    let mut n = 0;
    for case in data["cases"].as_array().unwrap() {
        if case["kind"] != "authOptions" {
            continue;
        }
        n += 1;
        let name = case["name"].as_str().unwrap();
        let spec = &case["spec"];
        let access_spec = AccessSpec {
            namespace: case["namespace"].as_str().unwrap().to_string(),
            secret_ref: opt(spec, "secretRef"),
            cert_secret_ref: opt(spec, "certSecretRef"),
            proxy_secret_ref: opt(spec, "proxySecretRef"),
            service_account_name: spec["serviceAccountName"].as_str().map(str::to_string),
            provider: spec["provider"].as_str().map(str::to_string),
        };
        let image = ImageRef::parse(spec["image"].as_str().unwrap(), false).unwrap();
        let objs = objects(case["objects"].as_array().unwrap());
        let got = resolve_access(&access_spec, &objs).await;
        if name == "contextual login" {
            // Provider credentials are lazy: options succeed, the keychain is unused.
            let access = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let p = access.provider.as_ref().expect("provider access");
            assert_eq!(p.provider, registry::CloudProvider::Aws);
            assert!(access.keychain.is_empty());
            continue;
        }
        if case["expected"]["error"].as_bool().unwrap() {
            let err = got.expect_err(name);
            let msg = err.to_string();
            let want = match name {
                "secret ref with non-existing secret"
                | "cert secret ref with non-existing secret"
                | "proxy secret ref with non-existing secret" => {
                    "secret 'test-ns/non-existing-secret' not found"
                }
                "service account with non-existing pull secret" => {
                    "secret 'test-ns/test-secret' not found"
                }
                "unsupported provider" => "provider 'unsupported-provider' not implemented",
                other => panic!("no expected message for {other}"),
            };
            assert_eq!(msg, want, "{name}");
            continue;
        }
        let access = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        // The credential the keychain yields for the case's image.
        let cred = access.keychain.resolve(&image).unwrap();
        let has_pull_secret = access_spec.secret_ref.is_some()
            || objs.service_accounts.values().any(|v| !v.is_empty());
        if has_pull_secret && image.registry() == "example.com" {
            assert_eq!(
                cred,
                Credential::Basic {
                    username: "user".into(),
                    password: "pass".into()
                },
                "{name}"
            );
        } else {
            assert_eq!(cred, Credential::Anonymous, "{name}");
        }
        assert_eq!(
            access.transport.tls.is_some(),
            access_spec.cert_secret_ref.is_some(),
            "{name}"
        );
        assert_eq!(
            access.transport.proxy.is_some(),
            access_spec.proxy_secret_ref.is_some(),
            "{name}"
        );
    }
    assert_eq!(n, 16);
}

fn keychain_secret(i: usize, s: &Value) -> SecretData {
    let ty = s["type"].as_str().unwrap().to_string();
    let mut data = BTreeMap::new();
    if let Some(c) = s.get("config") {
        data.insert(
            ".dockerconfigjson".to_string(),
            serde_json::to_vec(c).unwrap(),
        );
    }
    if let Some(c) = s.get("dockercfg") {
        data.insert(".dockercfg".to_string(), serde_json::to_vec(c).unwrap());
    }
    if let Some(r) = s["raw"].as_str() {
        data.insert(".dockerconfigjson".to_string(), r.as_bytes().to_vec());
    }
    SecretData {
        name: format!("ns/secret-{i}"),
        secret_type: ty,
        data,
    }
}

#[test]
fn keychain_cases() {
    let data: Value = serde_json::from_str(include_str!("data/keychain-cases.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let secrets: Vec<SecretData> = case["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, s)| keychain_secret(i, s))
            .collect();
        let image = ImageRef::parse(case["image"].as_str().unwrap(), false).unwrap();
        let expected = &case["expected"];
        let got = Keychain::from_pull_secrets(&secrets).and_then(|k| k.resolve(&image));
        if let Some(want) = expected["errorContains"].as_str() {
            let err = got.expect_err(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
            continue;
        }
        let cred = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = if expected["anonymous"] == true {
            Credential::Anonymous
        } else if let Some(b) = expected["basic"].as_array() {
            Credential::Basic {
                username: b[0].as_str().unwrap().into(),
                password: b[1].as_str().unwrap().into(),
            }
        } else if let Some(t) = expected["identityToken"].as_str() {
            match &cred {
                Credential::IdentityToken { username, .. } => Credential::IdentityToken {
                    username: username.clone(),
                    token: t.into(),
                },
                _ => panic!("{name}: expected an identity token, got {cred:?}"),
            }
        } else if let Some(t) = expected["registryToken"].as_str() {
            Credential::RegistryToken(t.into())
        } else {
            panic!("{name}: no expectation");
        };
        assert_eq!(cred, want, "{name}");
    }
}

#[test]
fn bad_tls_and_proxy_secrets() {
    let secret = |data: Vec<(&str, &[u8])>| SecretData {
        name: "ns/s".into(),
        secret_type: "Opaque".into(),
        data: data
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect(),
    };
    let err =
        registry::TlsOptions::from_secret(&secret(vec![("tls.crt", CLIENT_CERT)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret 'ns/s': invalid TLS data: found 'tls.crt' but no 'tls.key'"
    );
    let err = registry::TlsOptions::from_secret(&secret(vec![("ca.crt", b"garbage")])).unwrap_err();
    assert!(
        err.to_string().contains("failed to parse CA certificate"),
        "{err}"
    );
    let err = registry::TlsOptions::from_secret(&secret(vec![("foo", b"x")])).unwrap_err();
    assert!(err.to_string().contains("no 'ca.crt'"), "{err}");
    assert!(registry::TlsOptions::from_secret(&secret(vec![("ca.crt", CA)])).is_ok());

    let err = registry::ProxyOptions::from_secret(&secret(vec![])).unwrap_err();
    assert_eq!(err.to_string(), "secret 'ns/s': key 'address' not found");
    let err = registry::ProxyOptions::from_secret(&secret(vec![("address", b"")])).unwrap_err();
    assert_eq!(err.to_string(), "secret 'ns/s': proxy address is empty");
    let err =
        registry::ProxyOptions::from_secret(&secret(vec![("address", b"ftp://p:21")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "secret 'ns/s': proxy URL must use http, https or socks5 scheme, got 'ftp'"
    );
    let long = format!("http://{}", "a".repeat(2100));
    let err = registry::ProxyOptions::from_secret(&secret(vec![("address", long.as_bytes())]))
        .unwrap_err();
    assert!(err.to_string().contains("2048"), "{err}");
    let p = registry::ProxyOptions::from_secret(&secret(vec![
        ("address", b"socks5://proxy:1080"),
        ("username", b"u"),
        ("password", b"p w"),
    ]))
    .unwrap();
    assert_eq!(p.url.username(), "u");
    assert!(
        !format!("{p:?}").contains("p%20w"),
        "password leaked in Debug"
    );
}

#[tokio::test]
async fn missing_service_account() {
    let spec = AccessSpec {
        namespace: "ns".into(),
        service_account_name: Some("robot".into()),
        ..Default::default()
    };
    let err = resolve_access(&spec, &Objects::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "serviceaccount 'ns/robot' not found");
}
