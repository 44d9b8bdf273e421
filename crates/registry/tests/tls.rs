//! TLS tests against an in-process HTTPS registry: custom CA (added to the system roots) and mTLS.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly on bad fixtures

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use registry::{Access, Client, ClientConfig, ImageRef, SecretData, TlsOptions, TransportOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod common;
use common::{Action, Handler, Stats, serve_connection};

const CA: &[u8] = include_bytes!("data/tls/ca.pem");
const SERVER_CERT: &[u8] = include_bytes!("data/tls/server.pem");
const SERVER_KEY: &[u8] = include_bytes!("data/tls/server-key.pem");
const CLIENT_CERT: &[u8] = include_bytes!("data/tls/client.pem");
const CLIENT_KEY: &[u8] = include_bytes!("data/tls/client-key.pem");

/// Starts an HTTPS registry answering `/v2/` and `tags/list`; with `require_client_cert` it demands a
/// client certificate signed by the test CA. Returns `localhost:<port>`.
async fn tls_registry(require_client_cert: bool) -> String {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(SERVER_CERT)
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
    let builder = rustls::ServerConfig::builder();
    let config = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(CA) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    }
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handler: Handler = Arc::new(|_, line| {
        let body = if line.contains("/tags/list") {
            r#"{"tags":["over-tls"]}"#
        } else {
            "{}"
        };
        Action::Respond(Duration::ZERO, body.to_string())
    });
    let stats = Arc::new(Stats::default());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, handler, stats) = (acceptor.clone(), handler.clone(), stats.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(sock).await {
                    serve_connection(tls, handler, stats).await;
                }
            });
        }
    });
    format!("localhost:{port}")
}

fn tls_access(keys: &[(&str, &[u8])]) -> Access {
    let secret = SecretData {
        name: "ns/tls".into(),
        secret_type: "kubernetes.io/tls".into(),
        data: keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect::<BTreeMap<_, _>>(),
    };
    Access {
        transport: TransportOptions {
            tls: Some(TlsOptions::from_secret(&secret).unwrap()),
            proxy: None,
        },
        ..Default::default()
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn custom_ca_is_trusted() {
    let host = tls_registry(false).await;
    let img = ImageRef::parse(&format!("{host}/app"), false).unwrap();
    let client = Client::new(ClientConfig::default()).unwrap();
    let tags = client
        .list_tags(&img, &tls_access(&[("ca.crt", CA)]), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(tags, vec!["over-tls"]);
    // Without the CA the certificate is rejected (https fails, and the http fallback cannot talk TLS).
    let err = client
        .list_tags(&img, &Access::default(), TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    // The https failure is reported, not only the plain-http fallback's.
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("plain http fallback"), "{err}");
}

#[tokio::test]
async fn client_certificate_for_mtls() {
    let host = tls_registry(true).await;
    let img = ImageRef::parse(&format!("{host}/app"), false).unwrap();
    let client = Client::new(ClientConfig::default()).unwrap();
    let tags = client
        .list_tags(
            &img,
            &tls_access(&[
                ("ca.crt", CA),
                ("tls.crt", CLIENT_CERT),
                ("tls.key", CLIENT_KEY),
            ]),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(tags, vec!["over-tls"]);
    let no_cert = client
        .list_tags(&img, &tls_access(&[("ca.crt", CA)]), TIMEOUT)
        .await;
    let err = no_cert.unwrap_err().to_string();
    assert!(err.contains("CertificateRequired"), "{err}");
}
