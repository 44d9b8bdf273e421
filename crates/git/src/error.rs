//! Errors of the Git engine. Every message names the remote URL with credentials stripped (see
//! [`crate::redact_url`]) and, where one is involved, the reference; secrets never appear.

/// An error of the Git engine.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A Secret or option is malformed or incomplete.
    #[error("{0}")]
    InvalidAuth(String),
    /// A combination of URL scheme and options this engine cannot serve (e.g. SOCKS5 proxy).
    #[error("unsupported Git configuration for '{url}': {reason}")]
    Unsupported {
        /// The remote URL, credentials stripped.
        url: String,
        /// What is unsupported, and what is.
        reason: String,
    },
    /// The remote could not be reached, refused the credentials, or failed an operation.
    #[error("unable to {op} '{url}'{}: {message}", reference.as_deref().map(|r| format!(" (ref '{r}')")).unwrap_or_default())]
    Remote {
        /// What was being done (`clone`, `fetch`, `push to`, ...).
        op: &'static str,
        /// The remote URL, credentials stripped.
        url: String,
        /// The reference involved, if any.
        reference: Option<String>,
        /// libgit2's message, with credentials stripped.
        message: String,
        /// libgit2's error class and code, for callers that classify.
        kind: RemoteErrorKind,
    },
    /// The reference does not exist on the remote.
    #[error(
        "unable to clone '{url}': couldn't find remote ref '{reference}' (reference not found)"
    )]
    RefNotFound {
        /// The remote URL, credentials stripped.
        url: String,
        /// The missing reference.
        reference: String,
    },
    /// A network operation ran past its timeout.
    #[error("unable to {op} '{url}': timed out after {timeout:?}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The remote URL, credentials stripped.
        url: String,
        /// The timeout that elapsed.
        timeout: std::time::Duration,
    },
    /// The push was rejected and retries did not help.
    #[error("failed to push to remote '{url}' (branch '{branch}'): {message}")]
    PushRejected {
        /// The remote URL, credentials stripped.
        url: String,
        /// The branch pushed.
        branch: String,
        /// The server's or libgit2's reason.
        message: String,
    },
    /// A local repository operation failed (cache, worktree, commit).
    #[error("local Git operation failed ({context}): {message}")]
    Local {
        /// What was being done.
        context: String,
        /// libgit2's message.
        message: String,
    },
    /// A file-system operation of the cache failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The signing key could not be read or used.
    #[error("{0}")]
    Signing(String),
    /// The caller's re-apply step failed during a push retry.
    #[error("re-applying changes after a rejected push failed: {0}")]
    Redo(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Coarse classification of a remote failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// Authentication failed or credentials were missing.
    Auth,
    /// The server's identity (host key, certificate) was rejected.
    Certificate,
    /// The host could not be reached or the connection broke.
    Network,
    /// Anything else.
    Other,
}

impl GitError {
    /// A local error from a libgit2 error.
    pub(crate) fn local(context: impl Into<String>, e: &git2::Error) -> Self {
        GitError::Local {
            context: context.into(),
            message: e.message().to_string(),
        }
    }

    /// An I/O error with context.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| GitError::Io { context, source }
    }

    /// Whether the error came from the network or the remote (so the local cache is not to blame).
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            GitError::Remote { .. }
                | GitError::RefNotFound { .. }
                | GitError::Timeout { .. }
                | GitError::PushRejected { .. }
                | GitError::InvalidAuth(_)
                | GitError::Unsupported { .. }
        )
    }
}
