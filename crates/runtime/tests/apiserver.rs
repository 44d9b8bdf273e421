//! Against the real API server with Flux's RBAC, as `make test` starts it (`hack/testenv.sh up`, which
//! also applies `config/default`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::Api;
use kube::api::ListParams;
use runtime::events::{EventRecorder, EventType};

// A test helper: a missing or broken test environment should fail loudly.
#[allow(clippy::unwrap_used)]
async fn client(var: &str) -> kube::Client {
    runtime::client::install_crypto_provider();
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} not set: the test environment is not up; start it with `hack/testenv.sh up` (make test does)")
    }));
    let config = runtime::client::load_config(Some(&path)).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn core_events_are_created_then_counted_with_flux_rbac() {
    let admin = client("TESTENV_KUBECONFIG").await;
    let reflector = client("TESTENV_KUBECONFIG_REFLECTOR").await;
    let name = format!("events-{}", runtime::leader::random_hex());
    let target = ObjectReference {
        api_version: Some("image.toolkit.fluxcd.io/v1".into()),
        kind: Some("ImageRepository".into()),
        name: Some(name.clone()),
        namespace: Some("flux-system".into()),
        uid: Some(format!("uid-{name}")),
        ..ObjectReference::default()
    };
    let rec = EventRecorder::new(reflector, "image-reflector-controller", "").unwrap();
    let ann = BTreeMap::from([("event.toolkit.fluxcd.io/token".to_string(), "t".to_string())]);
    for _ in 0..3 {
        rec.publish(
            &target,
            &ann,
            EventType::Warning,
            "ReadOperationFailed",
            "scan failed: x",
            BTreeMap::new(),
        )
        .await;
    }
    rec.publish(
        &target,
        &ann,
        EventType::Trace,
        "Succeeded",
        "no change",
        BTreeMap::new(),
    )
    .await;

    let events: Api<Event> = Api::namespaced(admin, "flux-system");
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap();
    let mut got: Vec<(String, String, i32)> = list
        .items
        .iter()
        .map(|e| {
            (
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.count.unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("Normal".to_string(), "Succeeded".to_string(), 1),
            ("Warning".to_string(), "ReadOperationFailed".to_string(), 3),
        ]
    );
    let warning = list
        .items
        .iter()
        .find(|e| e.type_.as_deref() == Some("Warning"))
        .unwrap();
    assert_eq!(
        warning.metadata.annotations.as_ref().unwrap()["event.toolkit.fluxcd.io/token"],
        "t"
    );
    assert_eq!(
        warning.source.as_ref().unwrap().component.as_deref(),
        Some("image-reflector-controller")
    );
}
