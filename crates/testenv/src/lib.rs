//! Test support for the loopback test environment started by `hack/testenv.sh up`: typed access to its registries,
//! Git servers and proxies ([`TestEnv`]), a registry push helper ([`registry::RegistryClient`]) and seeded bare Git
//! repositories ([`git`]). For other crates' tests only.

mod env;
pub mod git;
pub mod paging;
pub mod registry;
pub mod token;

pub use env::{
    GitTransport, ProxyVariant, RegistryAuth, RegistryEndpoint, RegistryVariant, SshKeyType,
    TestEnv, env,
};

/// Errors of the test-support helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The test environment is not up, or lacks a variable.
    #[error("the test environment is not up ({0}); start it with `hack/testenv.sh up`")]
    NotUp(String),
    /// An HTTP request could not be sent or its answer read.
    #[error("{context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A server answered with an unexpected status.
    #[error("{context}: HTTP {status}: {body}")]
    Status {
        /// What was being done.
        context: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A server answered something this helper cannot use.
    #[error("{0}")]
    Protocol(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `git` command failed.
    #[error("`git {args}` failed: {output}")]
    Git {
        /// The arguments.
        args: String,
        /// Its standard error and output.
        output: String,
    },
}

/// Result of the test-support helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A name unique within this machine's test runs (process id, time, counter), e.g. for repositories.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}
