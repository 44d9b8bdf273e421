//! Token server for the bearer-token registry of the test environment (started by hack/testenv/services.sh).
//!
//! `GET /token?service=S&scope=T:N:A[&scope=...]`, optionally with basic credentials: wrong credentials get 401,
//! valid ones every requested action, none only `pull`. The answer is `{"token", "access_token", "expires_in"}`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use testenv::token::{Issuer, Subject, TOKEN_TTL_SECS, grant, parse_scope};

/// Command line.
#[derive(Parser)]
struct Args {
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
    let args = Args::parse();
    let issuer = Issuer::from_pem_files(&args.key, &args.cert, &args.issuer)?;
    let app = Arc::new(App {
        issuer,
        username: args.username,
        password: args.password,
    });
    let router = Router::new().route("/token", get(token)).with_state(app);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("token server listening on {}", args.listen);
    axum::serve(listener, router).await.context("serving")?;
    Ok(())
}
