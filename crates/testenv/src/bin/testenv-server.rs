//! Servers of the test environment written in this project (started by hack/testenv/services.sh).
//!
//! `testenv-server token ...`: the token server of the bearer-token registry.
//! `GET /token?service=S&scope=T:N:A[&scope=...]`, optionally with basic credentials: wrong credentials get 401,
//! valid ones every requested action, none only `pull`. The answer is `{"token", "access_token", "expires_in"}`.
//!
//! `testenv-server paginate ...`: a reverse proxy in front of a registry that pages tag lists like Docker Hub and
//! GHCR (sorted, `n`, `last`, `Link` header); everything else passes through unchanged.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use testenv::paging;
use testenv::token::{Issuer, Subject, TOKEN_TTL_SECS, grant, parse_scope};

/// Command line.
#[derive(Parser)]
enum Cli {
    /// Issue registry tokens.
    Token(TokenArgs),
    /// Page tag lists in front of a registry.
    Paginate(PaginateArgs),
    /// Fill a plain-HTTP, anonymous registry with benchmark repositories `<prefix>-<i>`, every tag of a
    /// repository pointing at one manifest (one manifest PUT per tag).
    Push(PushArgs),
}

/// Arguments of `push`.
#[derive(clap::Args)]
struct PushArgs {
    /// Registry `host:port` (plain HTTP, no auth).
    #[arg(long)]
    registry: String,
    /// Repository name prefix.
    #[arg(long)]
    prefix: String,
    /// Number of repositories.
    #[arg(long)]
    repos: usize,
    /// Tags per repository (`t0000`, `t0001`, ...).
    #[arg(long)]
    tags: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

/// Arguments of the paginating proxy.
#[derive(clap::Args)]
struct PaginateArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: String,
    /// Base URL of the registry behind, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    upstream: String,
    /// Page size when the client gives no `n` (0: the whole list, as distribution does).
    #[arg(long, default_value_t = 0)]
    default_page_size: usize,
}

/// Arguments of the token server.
#[derive(clap::Args)]
struct TokenArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: String,
    /// PKCS#8 PEM ECDSA P-256 signing key.
    #[arg(long)]
    key: PathBuf,
    /// PEM certificate of the key (the registry's rootcertbundle).
    #[arg(long)]
    cert: PathBuf,
    /// `iss` claim; must equal the registry's auth.token.issuer.
    #[arg(long)]
    issuer: String,
    /// The one accepted user name.
    #[arg(long)]
    username: String,
    /// Its password.
    #[arg(long)]
    password: String,
}

struct App {
    issuer: Issuer,
    username: String,
    password: String,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    (status, axum::Json(body)).into_response()
}

/// Who the request's Authorization header says it is; `Err` for present but wrong credentials.
fn subject(app: &App, headers: &HeaderMap) -> Result<Subject, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Subject::Anonymous);
    };
    let value = value
        .to_str()
        .map_err(|_| "authorization header is not text")?;
    let b64 = value
        .strip_prefix("Basic ")
        .ok_or("only basic credentials are accepted")?;
    let decoded = STANDARD
        .decode(b64.trim())
        .map_err(|_| "credentials are not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "credentials are not UTF-8")?;
    match decoded.split_once(':') {
        Some((u, p)) if u == app.username && p == app.password => Ok(Subject::User(u.to_owned())),
        _ => Err("invalid username or password"),
    }
}

async fn token(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let subject = match subject(&app, &headers) {
        Ok(s) => s,
        Err(why) => return error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", why),
    };
    let mut service = String::new();
    let mut requested = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "service" => service = v.into_owned(),
            // Some clients send several scopes space-separated in one parameter.
            "scope" => {
                for s in v.split(' ').filter(|s| !s.is_empty()) {
                    match parse_scope(s) {
                        Ok(a) => requested.push(a),
                        Err(e) => {
                            return error(StatusCode::BAD_REQUEST, "INVALID_SCOPE", &e.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if service.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "missing service parameter",
        );
    }
    let access = grant(&subject, requested);
    match app.issuer.issue(&subject, &service, &access) {
        Ok(t) => axum::Json(serde_json::json!({
            "token": t, "access_token": t, "expires_in": TOKEN_TTL_SECS
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Token(args) => token_server(args).await,
        Cli::Paginate(args) => paginate_server(args).await,
        Cli::Push(args) => push_repositories(args).await,
    }
}

async fn push_repositories(args: PushArgs) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let endpoint = testenv::RegistryEndpoint {
        variant: testenv::RegistryVariant::Anonymous,
        host: args.registry.clone(),
        tls: false,
        ca_cert: None,
        client_identity: None,
        auth: testenv::RegistryAuth::Anonymous,
    };
    let client = testenv::registry::RegistryClient::new(&endpoint)?;
    let client = &client;
    for r in 0..args.repos {
        let repo = format!("{}-{r}", args.prefix);
        let digest = client.push_image(&repo, "t0000").await?;
        let manifest = client.manifest(&repo, &digest).await?;
        let manifest = &manifest;
        let repo = &repo;
        let results: Vec<_> = futures::stream::iter((1..args.tags).map(|t| async move {
            client
                .push_manifest(
                    repo,
                    &format!("t{t:04}"),
                    &manifest.media_type,
                    &manifest.bytes,
                )
                .await
        }))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
        for r in results {
            r?;
        }
    }
    Ok(())
}

async fn serve(listen: &str, router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("listening on {listen}");
    axum::serve(listener, router).await.context("serving")
}

struct Upstream {
    base: String,
    http: reqwest::Client,
    default_page_size: usize,
}

async fn paginate_server(args: PaginateArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let app = Arc::new(Upstream {
        base: args.upstream.trim_end_matches('/').to_owned(),
        http,
        default_page_size: args.default_page_size,
    });
    serve(
        &args.listen,
        Router::new().fallback(forward).with_state(app),
    )
    .await
}

/// Hop-by-hop headers, which a proxy must not pass on.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

async fn forward(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "UNKNOWN",
                &format!("reading the body: {e}"),
            );
        }
    };
    // Tag lists: fetch the whole list and page it here.
    let tags_repo = (parts.method == Method::GET)
        .then(|| path.strip_prefix("/v2/")?.strip_suffix("/tags/list"))
        .flatten()
        .map(str::to_owned);
    let mut page = None;
    let mut url = format!("{}{path}", up.base);
    if let Some(repo) = &tags_repo {
        let mut n = up.default_page_size;
        let mut last = None;
        for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
            match &*k {
                "n" => match v.parse() {
                    Ok(v) => n = v,
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "PAGINATION_NUMBER_INVALID",
                            "bad n",
                        );
                    }
                },
                "last" => last = Some(v.into_owned()),
                _ => {}
            }
        }
        page = Some((repo.clone(), n, last));
    } else if let Some(q) = &query {
        url = format!("{url}?{q}");
    }
    let mut out = up.http.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                &format!("upstream {url}: {e}"),
            );
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                &format!("upstream body: {e}"),
            );
        }
    };
    let mut builder = Response::builder().status(status);
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            builder = builder.header(name, value);
        }
    }
    let body = match page {
        Some((repo, n, last)) if status == StatusCode::OK && (n > 0 || last.is_some()) => {
            let list: TagList = match serde_json::from_slice(&bytes) {
                Ok(l) => l,
                Err(e) => {
                    return error(
                        StatusCode::BAD_GATEWAY,
                        "UNKNOWN",
                        &format!("upstream tag list: {e}"),
                    );
                }
            };
            let n = if n == 0 { usize::MAX } else { n };
            let (tags, next) = paging::page(list.tags.unwrap_or_default(), n, last.as_deref());
            if let Some(next) = next {
                builder = builder.header(header::LINK, paging::next_link(&repo, &next, n));
            }
            match serde_json::to_vec(&TagList {
                name: list.name,
                tags: Some(tags),
            }) {
                Ok(b) => b.into(),
                Err(e) => {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string());
                }
            }
        }
        _ => bytes,
    };
    builder
        .body(Body::from(body))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()))
}

/// The body of a tag list.
#[derive(serde::Deserialize, serde::Serialize)]
struct TagList {
    name: String,
    tags: Option<Vec<String>>,
}

async fn token_server(args: TokenArgs) -> anyhow::Result<()> {
    let issuer = Issuer::from_pem_files(&args.key, &args.cert, &args.issuer)?;
    let app = Arc::new(App {
        issuer,
        username: args.username,
        password: args.password,
    });
    serve(
        &args.listen,
        Router::new().route("/token", get(token)).with_state(app),
    )
    .await
}
