//! Git engine of the image automation: a persistent clone cache per (URL, credentials), checkouts by
//! branch, tag, semver, name or commit, signed commits, and pushes that survive concurrent writers.
//!
//! The API is blocking (libgit2 is); async callers run it under `spawn_blocking`. Typical use:
//!
//! ```no_run
//! # use git::*;
//! # fn main() -> Result<(), GitError> {
//! let cache = Cache::new("/tmp/git-cache".into(), 0);
//! let remote = RemoteSpec::new("file:///srv/repo.git");
//! let mut co = cache.checkout(&remote, &CheckoutRef::Branch("main".into()), &CheckoutOptions::default())?;
//! std::fs::write(co.workdir().join("file"), "edit")?;
//! let spec = CommitSpec { author_name: "Flux".into(), author_email: "flux@example.com".into(),
//!                         message: "update".into(), signer: None };
//! if co.commit(&spec)?.is_some() {
//!     co.push(&PushSpec::default(), &mut |co: &mut Checkout| -> Result<(), GitError> {
//!         std::fs::write(co.workdir().join("file"), "edit")?;
//!         co.commit(&spec).map(|_| ())
//!     })?;
//! }
//! # Ok(()) }
//! ```

mod auth;
mod cache;
mod checkout;
mod error;
mod known_hosts;
mod refs;
mod remote;
mod sign;
mod url;

pub use auth::{DEFAULT_TIMEOUT, GitAuth, ProxyOptions, RemoteSpec, SshOptions};
pub use cache::{Cache, CheckoutOptions};
pub use checkout::{Checkout, CommitSpec, PushOutcome, PushSpec};
pub use error::{GitError, RemoteErrorKind};
pub use refs::CheckoutRef;
pub use sign::Signer;
pub use url::redact_url;

impl From<std::io::Error> for GitError {
    fn from(source: std::io::Error) -> Self {
        GitError::Io {
            context: "file operation".into(),
            source,
        }
    }
}
