//! Test support: a kube client backed by a tower-test mock API server, driven by scenarios.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;

/// The server side of a mock client.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A kube client whose requests arrive on the returned handle.
pub fn mock_client() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

/// One scripted conversation with the client.
pub struct Scenario {
    handle: Handle,
    pending: Option<tower_test::mock::SendResponse<Response<Body>>>,
}

impl Scenario {
    /// The next request (head and body); fails the test if the client hangs up.
    pub async fn next(&mut self) -> (http::request::Parts, Bytes) {
        let (req, send) = self
            .handle
            .next_request()
            .await
            .expect("the client made no further request");
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        self.pending = Some(send);
        (parts, bytes)
    }

    /// Answers the last request with `status` and a JSON body.
    pub async fn reply(&mut self, status: u16, body: &Value) {
        let send = self.pending.take().expect("reply without a request");
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(body).expect("json")))
                .expect("response"),
        );
    }
}

/// A running scenario.
pub struct ApiServer(tokio::task::JoinHandle<()>);

impl ApiServer {
    /// Runs `f` against the requests arriving on `handle`.
    pub fn spawn<F, Fut>(handle: Handle, f: F) -> Self
    where
        F: FnOnce(Scenario) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ApiServer(tokio::spawn(f(Scenario {
            handle,
            pending: None,
        })))
    }

    /// Waits for the scenario to complete (a generous liveness bound).
    pub async fn finish(self) {
        tokio::time::timeout(Duration::from_secs(10), self.0)
            .await
            .expect("the scenario did not complete: a request is missing")
            .expect("the scenario failed");
    }
}
