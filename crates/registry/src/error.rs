//! Registry errors. Status errors read like go-containerregistry's `transport.Error`, which is what Flux
//! users see in `scan failed: ...` messages.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::keychain::KeychainError;
use crate::reference::ReferenceError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: {detail}")]
    Status {
        /// HTTP method.
        method: String,
        /// Request URL (without user info).
        url: String,
        /// HTTP status code.
        status: u16,
        /// Registry error codes and messages, or the status text and body.
        detail: String,
        /// `Retry-After` of the response, if any.
        retry_after: Option<Duration>,
    },
    /// The request could not be sent or the response not read (DNS, TLS, connection, proxy).
    #[error("{method} {url}: {reason}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// Error chain.
        reason: String,
    },
    /// The operation's timeout expired.
    #[error("{method} {url}: context deadline exceeded")]
    Timeout {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
    },
    /// A `Link` header without `<` or `>`.
    #[error("failed to parse link header: missing '{missing}'")]
    Link {
        /// The missing delimiter.
        missing: char,
    },
    /// A `Link` header pointed at a page that was already fetched.
    #[error("pagination loop: the Link header points back to {url}")]
    LinkLoop {
        /// The repeated URL.
        url: String,
    },
    /// The response body is not what the protocol says.
    #[error("{method} {url}: {reason}")]
    InvalidResponse {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The response body exceeds the configured bound.
    #[error("{method} {url}: response body larger than {limit} bytes")]
    TooLarge {
        /// HTTP method.
        method: String,
        /// Request URL.
        url: String,
        /// The bound in bytes.
        limit: usize,
    },
    /// The repository lists more tags than the configured bound.
    #[error("{repository}: more than {limit} tags listed")]
    TooManyTags {
        /// Canonical repository name.
        repository: String,
        /// The bound.
        limit: usize,
    },
    /// Bad reference or tag.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Bad docker config entry.
    #[error(transparent)]
    Keychain(#[from] KeychainError),
    /// Cloud provider or credential-helper credentials could not be obtained.
    #[error(transparent)]
    Credentials(#[from] crate::cloud::CloudError),
    /// TLS or proxy settings could not be applied.
    #[error("{0}")]
    Options(String),
}

impl From<crate::options::AccessError> for RegistryError {
    fn from(e: crate::options::AccessError) -> Self {
        match e {
            crate::options::AccessError::Cloud(c) => RegistryError::Credentials(c),
            crate::options::AccessError::Keychain(k) => RegistryError::Keychain(k),
        }
    }
}

impl RegistryError {
    /// The HTTP status, for status errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the registry rate-limited the request (429), after all retries.
    pub fn is_rate_limited(&self) -> bool {
        self.status() == Some(429)
    }

    /// Whether credentials were refused (401 or 403).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// Whether the timeout expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RegistryError::Timeout { .. })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<Diagnostic>,
}

#[derive(Deserialize)]
struct Diagnostic {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// go-containerregistry's wording: one diagnostic `CODE: message[; detail]`, several joined as
/// `multiple errors returned: ...`, else `unexpected status code N Text[: body]`.
pub(crate) fn format_status_error(status: StatusCode, method: &Method, body: &[u8]) -> String {
    let diagnostics = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default();
    let text = status.canonical_reason().unwrap_or("");
    match diagnostics.len() {
        0 if body.is_empty() && method == Method::HEAD => format!(
            "unexpected status code {} {text} (HEAD responses have no body, use GET for details)",
            status.as_u16()
        ),
        0 if body.is_empty() => format!("unexpected status code {} {text}", status.as_u16()),
        0 => format!(
            "unexpected status code {} {text}: {}",
            status.as_u16(),
            String::from_utf8_lossy(body).trim_end()
        ),
        1 => diagnostic(&diagnostics[0]),
        _ => format!(
            "multiple errors returned: {}",
            diagnostics
                .iter()
                .map(diagnostic)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn diagnostic(d: &Diagnostic) -> String {
    let mut s = format!("{}: {}", d.code, d.message);
    match &d.detail {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::String(t)) => s.push_str(&format!("; {t}")),
        Some(other) => s.push_str(&format!("; {other}")),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts() {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#;
        assert_eq!(
            format_status_error(StatusCode::NOT_FOUND, &Method::GET, body),
            r#"NAME_UNKNOWN: repository name not known to registry; {"name":"x"}"#
        );
        let two = br#"{"errors":[{"code":"A","message":"a"},{"code":"B","message":"b"}]}"#;
        assert_eq!(
            format_status_error(StatusCode::BAD_REQUEST, &Method::GET, two),
            "multiple errors returned: A: a; B: b"
        );
        assert_eq!(
            format_status_error(StatusCode::NOT_FOUND, &Method::GET, b""),
            "unexpected status code 404 Not Found"
        );
        assert_eq!(
            format_status_error(StatusCode::BAD_GATEWAY, &Method::GET, b"oops\n"),
            "unexpected status code 502 Bad Gateway: oops"
        );
        assert!(
            format_status_error(StatusCode::NOT_FOUND, &Method::HEAD, b"")
                .contains("HEAD responses")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_error_body_formats(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300), code in 400u16..600) {
            let status = StatusCode::from_u16(code).unwrap();
            let _ = format_status_error(status, &Method::GET, &body);
        }
    }
}
