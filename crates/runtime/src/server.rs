//! HTTP endpoints: `/metrics` on `--metrics-addr`; `/healthz` and `/readyz` on `--health-addr`.
//!
//! `/healthz` answers while the process runs. `/readyz` is true only when the API server answers
//! and, when this replica leads, the watch caches have synced; a standby replica that can reach the
//! API server is ready, so rolling updates never wait on the lease held by the old pod.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Readiness inputs, updated by the API-server probe, the leader elector and the controllers.
#[derive(Debug, Default)]
pub struct Health {
    connected: AtomicBool,
    leading: AtomicBool,
    controllers: AtomicUsize,
    synced: AtomicUsize,
}

impl Health {
    /// A fresh state: not connected, not leading, nothing synced.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records whether the last API-server probe succeeded.
    pub fn set_connected(&self, ok: bool) {
        self.connected.store(ok, Ordering::SeqCst);
    }

    /// Whether the last API-server probe succeeded.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Records that this replica started (or stopped) running the controllers.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// Declares one more controller whose cache must sync.
    pub fn add_controller(&self) {
        self.controllers.fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets the controllers (they stopped; a new leadership term declares them again).
    pub fn reset_controllers(&self) {
        self.controllers.store(0, Ordering::SeqCst);
        self.synced.store(0, Ordering::SeqCst);
    }

    /// Marks one controller's cache as synced.
    pub fn mark_synced(&self) {
        self.synced.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether `/readyz` succeeds.
    pub fn ready(&self) -> bool {
        let synced = self.synced.load(Ordering::SeqCst) >= self.controllers.load(Ordering::SeqCst);
        self.connected() && (!self.leading.load(Ordering::SeqCst) || synced)
    }

    /// A one-line reason for `/readyz`.
    pub fn describe(&self) -> String {
        if !self.connected() {
            return "[-]apiserver: not reachable".into();
        }
        if self.leading.load(Ordering::SeqCst) && !self.ready() {
            return format!(
                "[-]caches: {}/{} synced",
                self.synced.load(Ordering::SeqCst),
                self.controllers.load(Ordering::SeqCst)
            );
        }
        "ok".into()
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let status = if h.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, h.describe())
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed").into_response(),
    }
}

/// The health router (`/healthz`, `/readyz`).
pub fn health_router(h: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(h)
}

/// The metrics router (`/metrics`).
pub fn metrics_router(m: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(m)
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source}")]
pub struct BindError {
    /// Which endpoint.
    pub what: &'static str,
    /// The address.
    pub addr: String,
    /// The cause.
    pub source: std::io::Error,
}

/// Binds `addr` now (so a busy port fails startup) and serves `router` until `shutdown`.
pub async fn serve(
    what: &'static str,
    addr: &str,
    router: Router,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| BindError {
        what,
        addr: addr.to_string(),
        source,
    })?;
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_string(), |a| a.to_string());
    tracing::info!(address = %local, "starting {what} server");
    Ok(tokio::spawn(async move {
        let res = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "{what} server failed");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_rules() {
        let h = Health::new();
        assert!(!h.ready(), "not connected");
        h.set_connected(true);
        assert!(h.ready(), "standby and connected");
        h.add_controller();
        h.add_controller();
        h.set_leading(true);
        assert!(!h.ready(), "leading, caches not synced");
        assert_eq!(h.describe(), "[-]caches: 0/2 synced");
        h.mark_synced();
        h.mark_synced();
        assert!(h.ready());
        h.set_connected(false);
        assert!(!h.ready(), "API server lost");
        assert_eq!(h.describe(), "[-]apiserver: not reachable");
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let h = Health::new();
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = serve(
            "health",
            "127.0.0.1:0",
            health_router(h.clone()),
            shutdown.clone(),
        )
        .await
        .unwrap();
        // Bind a second one to learn a port we can query.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = health_router(h.clone()).merge(metrics_router(Arc::new(Metrics::new())));
        let s2 = shutdown.clone();
        let t2 = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { s2.wait().await })
                .await
                .unwrap();
        });
        let client = reqwest::Client::new();
        let get = |p: &str| client.get(format!("http://{addr}{p}")).send();
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
        assert_eq!(get("/readyz").await.unwrap().status(), 503);
        h.set_connected(true);
        assert_eq!(get("/readyz").await.unwrap().status(), 200);
        let m = get("/metrics").await.unwrap();
        assert_eq!(m.status(), 200);
        assert!(m.text().await.unwrap().ends_with("# EOF\n"));
        trigger.fire();
        task.await.unwrap();
        t2.await.unwrap();
    }

    #[tokio::test]
    async fn busy_port_is_a_clear_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (_t, s) = crate::shutdown::channel();
        let err = serve("metrics", &addr, Router::new(), s).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {addr} for metrics"))
        );
    }
}
