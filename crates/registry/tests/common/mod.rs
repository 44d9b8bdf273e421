//! Test support shared by the client tests, the TLS tests and the benchmark: a paging tag-list
//! responder for wiremock and a minimal HTTP/1.1 server for failure modes wiremock cannot produce.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each user takes what it needs

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers the `/v2/` ping with 200: a registry without auth.
pub async fn ping_ok(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v2/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

/// Serves `total` tags `t<i>` (zero-padded to `width`) in pages of at most `max_page` (or the client's
/// smaller `n`), linking to the next page with `last=<previous tag>`.
pub struct Paged {
    /// Number of tags in the repository.
    pub total: usize,
    /// Largest page the server returns.
    pub max_page: usize,
    /// Zero padding of the tag numbers.
    pub width: usize,
}

impl Respond for Paged {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut n = self.max_page;
        let mut start = 0;
        for (k, v) in req.url.query_pairs() {
            match &*k {
                "n" => n = v.parse::<usize>().unwrap_or(n).min(self.max_page),
                "last" => {
                    start = v
                        .trim_start_matches('t')
                        .parse::<usize>()
                        .map_or(0, |i| i + 1);
                }
                _ => {}
            }
        }
        let end = (start + n).min(self.total);
        let mut body = String::with_capacity((end - start) * (self.width + 4) + 32);
        body.push_str(r#"{"name":"repo","tags":["#);
        for i in start..end {
            if i > start {
                body.push(',');
            }
            body.push_str(&format!("\"t{i:0w$}\"", w = self.width));
        }
        body.push_str("]}");
        let mut t = ResponseTemplate::new(200).set_body_string(body);
        if end < self.total {
            let link = format!(
                "<{}?n={n}&last=t{:0w$}>; rel=\"next\"",
                req.url.path(),
                end - 1,
                w = self.width
            );
            t = t.insert_header("Link", link.as_str());
        }
        t
    }
}

/// What a [`RawServer`] does with one request.
pub enum Action {
    /// Close the connection without answering.
    HangUp,
    /// Answer 200 with this JSON body after the delay.
    Respond(Duration, String),
}

/// Counters of a [`RawServer`].
#[derive(Default)]
pub struct Stats {
    /// HTTP requests received (TLS handshakes to a plain server are not counted).
    pub requests: AtomicUsize,
    /// Requests being answered right now.
    pub in_flight: AtomicUsize,
    /// The most requests in flight at once.
    pub max_in_flight: AtomicUsize,
}

/// Decides the action for the n-th request (from 0) given its request line.
pub type Handler = Arc<dyn Fn(usize, &str) -> Action + Send + Sync>;

/// Serves HTTP/1.1 keep-alive requests on one connection until the peer closes or `handler` hangs up.
/// A TLS ClientHello on a plain connection is refused by closing, like a plain-http registry would.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    handler: Handler,
    stats: Arc<Stats>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
            if req.first() == Some(&0x16) {
                return;
            }
        }
        let line = String::from_utf8_lossy(&req)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let n = stats.requests.fetch_add(1, Ordering::SeqCst);
        let (delay, body) = match handler(n, &line) {
            Action::HangUp => return,
            Action::Respond(d, b) => (d, b),
        };
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A plain-http server on 127.0.0.1; returns its address and counters.
pub async fn raw_server(handler: Handler) -> (String, Arc<Stats>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stats = Arc::new(Stats::default());
    let out = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_connection(sock, handler.clone(), stats.clone()));
        }
    });
    (addr, out)
}
