//! Event recorder tests against a tower-test mock API server and a local webhook.

use super::*;
use crate::testing::{ApiServer, mock_client};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::Arc;

fn target() -> (ObjectReference, BTreeMap<String, String>) {
    (
        ObjectReference {
            api_version: Some("image.toolkit.fluxcd.io/v1".into()),
            kind: Some("ImageRepository".into()),
            name: Some("podinfo".into()),
            namespace: Some("flux-system".into()),
            uid: Some("uid-1".into()),
            resource_version: Some("42".into()),
            field_path: None,
        },
        BTreeMap::from([
            (
                "event.toolkit.fluxcd.io/token".to_string(),
                "abc".to_string(),
            ),
            ("unrelated/annotation".to_string(), "x".to_string()),
        ]),
    )
}

/// Publishes a `Normal` `Succeeded` event about [`target`] per message, in order.
async fn publish_normal(rec: &EventRecorder, messages: &[&str]) {
    let (t, ann) = target();
    for msg in messages {
        rec.publish(
            &t,
            &ann,
            EventType::Normal,
            "Succeeded",
            msg,
            BTreeMap::new(),
        )
        .await;
    }
}

#[tokio::test]
async fn repeated_event_is_created_once_then_counted() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        assert_eq!(req.method, "POST");
        assert_eq!(req.uri.path(), "/api/v1/namespaces/flux-system/events");
        let ev: Value = serde_json::from_slice(&body).unwrap();
        assert_json_diff::assert_json_include!(
            actual: ev.clone(),
            expected: json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"namespace": "flux-system",
                             "annotations": {"event.toolkit.fluxcd.io/token": "abc"}},
                "involvedObject": {"kind": "ImageRepository", "name": "podinfo", "uid": "uid-1"},
                "reason": "Succeeded",
                "message": "successful scan",
                "type": "Normal",
                "count": 1,
                "source": {"component": "image-reflector-controller"},
                "reportingComponent": "image-reflector-controller"
            })
        );
        assert!(
            ev["metadata"]["annotations"]
                .get("unrelated/annotation")
                .is_none()
        );
        let name = ev["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("podinfo."), "{name}");
        s.reply(201, &ev).await;

        let (req, body) = s.next().await;
        assert_eq!(req.method, "PATCH");
        assert_eq!(
            req.uri.path(),
            format!("/api/v1/namespaces/flux-system/events/{name}")
        );
        assert_eq!(req.headers["content-type"], "application/merge-patch+json");
        let patch: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(patch["count"], 2);
        assert!(patch["lastTimestamp"].is_string());
        s.reply(200, &ev).await;

        // A different message is a different event.
        let (req, _) = s.next().await;
        assert_eq!(req.method, "POST");
        s.reply(201, &ev).await;
    });
    let rec = EventRecorder::new(client, "image-reflector-controller", "").unwrap();
    publish_normal(&rec, &["successful scan", "successful scan", "other"]).await;
    server.finish().await;
}

#[tokio::test]
async fn expired_event_is_recreated_and_trace_is_normal() {
    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        assert_eq!(req.method, "POST");
        let ev: Value = serde_json::from_slice(&body).unwrap();
        // Trace is recorded as Normal.
        assert_eq!(ev["type"], "Normal");
        s.reply(201, &ev).await;
        let (req, _) = s.next().await;
        assert_eq!(req.method, "PATCH");
        s.reply(
            404,
            &json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"gone"}),
        )
        .await;
        let (req, _) = s.next().await;
        assert_eq!(req.method, "POST");
        s.reply(201, &ev).await;
    });
    let rec = EventRecorder::new(client, "image-reflector-controller", "").unwrap();
    let (t, ann) = target();
    for _ in 0..2 {
        rec.publish(
            &t,
            &ann,
            EventType::Trace,
            "Succeeded",
            "no change",
            BTreeMap::new(),
        )
        .await;
    }
    server.finish().await;
}

#[tokio::test]
async fn background_writes_leave_publish_at_once_in_order_and_flush_waits() {
    let (client, handle) = mock_client();
    let (published, answer) = tokio::sync::oneshot::channel::<()>();
    let server = ApiServer::spawn(handle, |mut s| async move {
        let (req, body) = s.next().await;
        // No publish waited for this write.
        answer.await.unwrap();
        assert_eq!(req.method, "POST");
        let ev: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ev["message"], "first");
        s.reply(201, &ev).await;
        // The repeat is counted against the event written first: the writes keep their order.
        let (req, body) = s.next().await;
        assert_eq!(req.method, "PATCH");
        let patch: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(patch["count"], 2);
        s.reply(200, &ev).await;
        let (req, body) = s.next().await;
        assert_eq!(req.method, "POST");
        let other: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(other["message"], "second");
        s.reply(201, &other).await;
    });
    let rec = EventRecorder::new(client, "image-reflector-controller", "")
        .unwrap()
        .with_background_writes(8);
    publish_normal(&rec, &["first", "first", "second"]).await;
    published.send(()).unwrap();
    rec.flush(Duration::from_secs(10)).await;
    server.finish().await;
}

#[tokio::test]
async fn webhook_gets_flux_format_and_never_traces() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/",
        post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                // Duplicate: must not be retried.
                axum::http::StatusCode::TOO_MANY_REQUESTS
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (client, handle) = mock_client();
    let server = ApiServer::spawn(handle, |mut s| async move {
        for _ in 0..3 {
            let (_, body) = s.next().await;
            let ev: Value = serde_json::from_slice(&body).unwrap();
            s.reply(201, &ev).await;
        }
    });
    let rec = EventRecorder::new(
        client,
        "image-automation-controller",
        &format!("http://{addr}/"),
    )
    .unwrap();
    let (t, ann) = target();
    rec.publish(
        &t,
        &ann,
        EventType::Trace,
        "Succeeded",
        "nothing",
        BTreeMap::new(),
    )
    .await;
    rec.publish(
        &t,
        &ann,
        EventType::Warning,
        "GitOperationFailed",
        "failed to checkout source",
        BTreeMap::from([("revision".to_string(), "main@sha1:abc".to_string())]),
    )
    .await;
    rec.publish(
        &t,
        &ann,
        EventType::Normal,
        "Succeeded",
        "pushed",
        BTreeMap::new(),
    )
    .await;
    server.finish().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let warning = got.iter().find(|e| e["severity"] == "error").unwrap();
    assert_json_diff::assert_json_eq!(
        json!({
            "involvedObject": warning["involvedObject"],
            "severity": "error",
            "timestamp": warning["timestamp"],
            "message": "failed to checkout source",
            "reason": "GitOperationFailed",
            "metadata": {"event.toolkit.fluxcd.io/token": "abc", "revision": "main@sha1:abc"},
            "reportingController": "image-automation-controller",
            "reportingInstance": warning["reportingInstance"],
        }),
        warning.clone()
    );
    assert_eq!(warning["involvedObject"]["kind"], "ImageRepository");
    assert_eq!(warning["involvedObject"]["resourceVersion"], "42");
    let ts = warning["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z') && !ts.contains('.'), "{ts}");
    let info = got.iter().find(|e| e["severity"] == "info").unwrap();
    assert_eq!(info["message"], "pushed");
    assert!(got.iter().all(|e| e["severity"] != "trace"));
}

#[test]
fn bad_events_addr_is_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _g = rt.enter();
    let (client, _h) = mock_client();
    let err = EventRecorder::new(client, "x", "::not a url").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid --events-addr '::not a url'")
    );
}
