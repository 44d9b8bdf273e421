//! Reconcile plumbing against a tower-test mock API server.

use super::*;
use crate::conditions::Conditions;
use crate::testing::{ApiServer, mock_client};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "test.toolkit.fluxcd.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct WidgetSpec {
    #[serde(default)]
    suspend: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_handled_reconcile_at: Option<String>,
}

impl FluxObject for Widget {
    fn suspended(&self) -> bool {
        self.spec.suspend
    }
    fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map_or(&[], |s| s.conditions.as_slice())
    }
    fn last_handled_reconcile_at(&self) -> Option<&str> {
        self.status.as_ref()?.last_handled_reconcile_at.as_deref()
    }
    fn set_last_handled_reconcile_at(&mut self, value: String) {
        self.status
            .get_or_insert_default()
            .last_handled_reconcile_at = Some(value);
    }
    fn set_observed_generation(&mut self, generation: i64) {
        self.status.get_or_insert_default().observed_generation = Some(generation);
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TestError(String);

/// A reconciler that counts calls and does what it is told.
#[derive(Default)]
struct Probe {
    reconciled: AtomicUsize,
    cleaned: AtomicUsize,
    fail: Option<&'static str>,
    mark_ready: bool,
    panic: bool,
}

impl Reconciler<Widget> for Probe {
    type Error = TestError;
    async fn reconcile(&self, obj: &mut Widget) -> Result<ReconcileResult, TestError> {
        self.reconciled.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic, "boom");
        if self.mark_ready {
            let g = obj.metadata.generation.unwrap_or(0);
            let st = obj.status.get_or_insert_default();
            Conditions::new(&mut st.conditions, g).mark_true("Ready", "Succeeded", "ok");
        }
        match self.fail {
            Some(m) => Err(TestError(m.to_string())),
            None => Ok(ReconcileResult::after(Duration::from_secs(60))),
        }
    }
    async fn cleanup(&self, _obj: &Widget) -> Result<(), TestError> {
        self.cleaned.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn widget(finalizer: bool, annotation: Option<&str>, handled: Option<&str>) -> Widget {
    let mut w = Widget::new("w1", WidgetSpec::default());
    w.metadata.namespace = Some("ns".into());
    w.metadata.generation = Some(2);
    w.metadata.resource_version = Some("7".into());
    if finalizer {
        w.metadata.finalizers = Some(vec!["other.io/keep".into(), FINALIZER.into()]);
    }
    if let Some(a) = annotation {
        w.metadata.annotations =
            Some([(RECONCILE_REQUEST_ANNOTATION.to_string(), a.to_string())].into());
    }
    if let Some(h) = handled {
        w.status = Some(WidgetStatus {
            last_handled_reconcile_at: Some(h.into()),
            observed_generation: Some(-1),
            ..Default::default()
        });
    }
    w
}

fn context(client: kube::Client) -> Context {
    Context {
        recorder: Arc::new(EventRecorder::new(client.clone(), "test-controller", "").unwrap()),
        client,
        manager: "test-controller".into(),
        metrics: Arc::new(Metrics::new()),
        health: Health::new(),
        backoff: Backoff::new(Duration::from_millis(750), Duration::from_secs(900)),
        undeclared: Default::default(),
    }
}

async fn run_once(
    w: Widget,
    probe: &Probe,
    ctx: &Context,
) -> Result<ReconcileResult, Error<TestError>> {
    tokio::time::timeout(
        Duration::from_secs(10),
        reconcile_object(Arc::new(w), ctx, probe),
    )
    .await
    .expect("reconcile hung: it made a request the scenario did not expect")
}

#[tokio::test]
async fn missing_finalizer_is_added_then_the_object_is_reconciled_in_the_same_pass() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        assert_eq!(req.method, "PATCH");
        assert_eq!(
            req.uri.path(),
            "/apis/test.toolkit.fluxcd.io/v1/namespaces/ns/widgets/w1"
        );
        assert_eq!(req.headers["content-type"], "application/json-patch+json");
        let patch: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
            ])
        );
        s.reply(
            200,
            &serde_json::to_value(widget(true, Some("t1"), None)).unwrap(),
        )
        .await;
        // Then the status of the same pass: the request annotation is recorded.
        let (req, body) = s.next().await;
        assert_eq!(req.method, "PATCH");
        assert_eq!(
            req.uri.path(),
            "/apis/test.toolkit.fluxcd.io/v1/namespaces/ns/widgets/w1/status"
        );
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(b["status"]["lastHandledReconcileAt"], "t1");
        s.reply(
            200,
            &serde_json::to_value(widget(true, Some("t1"), Some("t1"))).unwrap(),
        )
        .await;
    });
    let probe = Probe::default();
    let ctx = context(client);
    let res = run_once(widget(false, Some("t1"), None), &probe, &ctx)
        .await
        .unwrap();
    assert!(!res.requeue);
    assert_eq!(probe.reconciled.load(Ordering::SeqCst), 1);
    server.finish().await;
}

#[tokio::test]
async fn request_annotation_is_applied_to_status_with_ssa() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        assert_eq!(req.method, "PATCH");
        assert_eq!(
            req.uri.path(),
            "/apis/test.toolkit.fluxcd.io/v1/namespaces/ns/widgets/w1/status"
        );
        let q = req.uri.query().unwrap();
        assert!(
            q.contains("fieldManager=test-controller") && q.contains("force=true"),
            "{q}"
        );
        assert_eq!(req.headers["content-type"], "application/apply-patch+yaml");
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            b,
            json!({
                "apiVersion": "test.toolkit.fluxcd.io/v1",
                "kind": "Widget",
                "metadata": {"name": "w1", "namespace": "ns"},
                "status": {"lastHandledReconcileAt": "t2", "observedGeneration": -1}
            })
        );
        s.reply(
            200,
            &serde_json::to_value(widget(true, Some("t2"), Some("t2"))).unwrap(),
        )
        .await;
    });
    let probe = Probe::default();
    let ctx = context(client);
    let res = run_once(widget(true, Some("t2"), Some("t1")), &probe, &ctx)
        .await
        .unwrap();
    assert_eq!(res, ReconcileResult::after(Duration::from_secs(60)));
    assert_eq!(probe.reconciled.load(Ordering::SeqCst), 1);
    server.finish().await;
}

#[tokio::test]
async fn unchanged_status_makes_no_request() {
    let (client, _handle) = mock_client();
    let probe = Probe::default();
    let ctx = context(client);
    // Annotation already handled: nothing to write.
    run_once(widget(true, Some("t1"), Some("t1")), &probe, &ctx)
        .await
        .unwrap();
    // No annotation, no status: nothing invented.
    run_once(widget(true, None, None), &probe, &ctx)
        .await
        .unwrap();
    assert_eq!(probe.reconciled.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn suspended_object_is_not_reconciled_but_request_is_recorded() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        assert!(req.uri.path().ends_with("/w1/status"));
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(b["status"]["lastHandledReconcileAt"], "t9");
        s.reply(
            200,
            &serde_json::to_value(widget(true, Some("t9"), Some("t9"))).unwrap(),
        )
        .await;
    });
    let probe = Probe::default();
    let ctx = context(client);
    let mut w = widget(true, Some("t9"), None);
    w.spec.suspend = true;
    let res = run_once(w, &probe, &ctx).await.unwrap();
    assert_eq!(res, ReconcileResult::default());
    assert_eq!(probe.reconciled.load(Ordering::SeqCst), 0);
    server.finish().await;
}

#[tokio::test]
async fn ready_object_gets_observed_generation() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (_, body) = s.next().await;
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(b["status"]["observedGeneration"], 2);
        assert_eq!(b["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(b["status"]["conditions"][0]["observedGeneration"], 2);
        s.reply(
            200,
            &serde_json::to_value(widget(true, None, None)).unwrap(),
        )
        .await;
    });
    let probe = Probe {
        mark_ready: true,
        ..Default::default()
    };
    let ctx = context(client);
    run_once(widget(true, None, None), &probe, &ctx)
        .await
        .unwrap();
    server.finish().await;
}

#[tokio::test]
async fn failure_still_records_the_request_and_returns_the_error() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (_, body) = s.next().await;
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(b["status"]["lastHandledReconcileAt"], "t3");
        s.reply(
            200,
            &serde_json::to_value(widget(true, Some("t3"), Some("t3"))).unwrap(),
        )
        .await;
    });
    let probe = Probe {
        fail: Some("registry down"),
        ..Default::default()
    };
    let ctx = context(client);
    let err = run_once(widget(true, Some("t3"), None), &probe, &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "registry down");
    server.finish().await;
}

#[tokio::test]
async fn deletion_runs_cleanup_then_removes_only_our_finalizer() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        assert_eq!(req.method, "PATCH");
        let patch: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ])
        );
        s.reply(
            200,
            &serde_json::to_value(widget(false, None, None)).unwrap(),
        )
        .await;
    });
    let probe = Probe::default();
    let ctx = context(client);
    let mut w = widget(true, Some("t1"), None);
    w.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    run_once(w.clone(), &probe, &ctx).await.unwrap();
    assert_eq!(probe.cleaned.load(Ordering::SeqCst), 1);
    assert_eq!(probe.reconciled.load(Ordering::SeqCst), 0);
    server.finish().await;
    // Without our finalizer there is nothing to do and no request.
    let (client, _h) = mock_client();
    let ctx = context(client);
    w.metadata.finalizers = Some(vec!["other.io/keep".into()]);
    run_once(w, &probe, &ctx).await.unwrap();
    assert_eq!(probe.cleaned.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn panics_are_contained_by_the_controller_wrapper() {
    let probe = Probe {
        panic: true,
        ..Default::default()
    };
    let (client, _h) = mock_client();
    let ctx = context(client);
    let res = AssertUnwindSafe(reconcile_object(
        Arc::new(widget(true, None, None)),
        &ctx,
        &probe,
    ))
    .catch_unwind()
    .await;
    assert!(
        res.is_err(),
        "the panic propagates to the wrapper, which converts it"
    );
    let msg = panic_message(&res.unwrap_err());
    assert!(msg.contains("boom"), "{msg}");
}

#[test]
fn backoff_doubles_per_object_and_resets() {
    let b = Backoff::new(Duration::from_millis(750), Duration::from_secs(5));
    let d: Vec<Duration> = (0..5).map(|_| b.next_delay("ns/a")).collect();
    assert_eq!(
        d,
        [750, 1500, 3000, 5000, 5000]
            .map(Duration::from_millis)
            .to_vec()
    );
    assert_eq!(b.next_delay("ns/b"), Duration::from_millis(750));
    b.reset("ns/a");
    assert_eq!(b.next_delay("ns/a"), Duration::from_millis(750));
}

#[test]
fn predicate_tracks_generation_and_request_only() {
    let a = widget(true, Some("t1"), None);
    let mut b = a.clone();
    b.status = Some(WidgetStatus {
        last_handled_reconcile_at: Some("x".into()),
        ..Default::default()
    });
    b.metadata.resource_version = Some("8".into());
    assert_eq!(
        flux_predicate(&a),
        flux_predicate(&b),
        "status-only change is filtered"
    );
    let mut c = a.clone();
    c.metadata.generation = Some(3);
    assert_ne!(flux_predicate(&a), flux_predicate(&c));
    let d = widget(true, Some("t2"), None);
    assert_ne!(flux_predicate(&a), flux_predicate(&d));
}

/// A CRD without one of our status fields (Flux's own CRDs lack ImagePolicy's v1beta1 fields): the
/// rejected write is retried without the field, and later writes leave it out from the start.
#[tokio::test]
async fn status_fields_the_crd_does_not_declare_are_dropped_and_remembered() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let status_of = |body: &[u8]| -> Value {
            serde_json::from_slice::<Value>(body).unwrap()["status"].clone()
        };
        // First write: rejected as kube-apiserver 1.20 does (newer servers answer 422).
        let (req, body) = s.next().await;
        assert!(req.uri.path().ends_with("/w1/status"));
        assert_eq!(status_of(&body)["lastHandledReconcileAt"], "t2");
        s.reply(
            500,
            &json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                "message": "failed to create typed patch object: .status.lastHandledReconcileAt: field not declared in schema",
            }),
        )
        .await;
        // Retried at once without it.
        let (_, body) = s.next().await;
        let st = status_of(&body);
        assert_eq!(st.get("lastHandledReconcileAt"), None);
        assert_eq!(st["observedGeneration"], 2);
        assert_eq!(st["conditions"][0]["type"], "Ready");
        s.reply(
            200,
            &serde_json::to_value(widget(true, None, None)).unwrap(),
        )
        .await;
        // The next object's write leaves the field out from the start.
        let (_, body) = s.next().await;
        assert_eq!(status_of(&body).get("lastHandledReconcileAt"), None);
        s.reply(
            200,
            &serde_json::to_value(widget(true, None, None)).unwrap(),
        )
        .await;
    });
    let probe = Probe {
        mark_ready: true,
        ..Probe::default()
    };
    let ctx = context(client);
    run_once(widget(true, Some("t2"), Some("t1")), &probe, &ctx)
        .await
        .unwrap();
    run_once(widget(true, Some("t3"), None), &probe, &ctx)
        .await
        .unwrap();
    server.finish().await;
}

/// Other rejections are returned as errors, not retried.
#[tokio::test]
async fn other_status_rejections_fail_the_write() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let _ = s.next().await;
        s.reply(
            422,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                    "message": "status.observedGeneration: Invalid value"}),
        )
        .await;
    });
    let ctx = context(client);
    let err = run_once(
        widget(true, Some("t2"), Some("t1")),
        &Probe::default(),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Invalid value"), "{err}");
    server.finish().await;
}
