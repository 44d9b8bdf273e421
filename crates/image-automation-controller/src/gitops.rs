//! Git operations of a cycle (`automation.md` §5) on the `git` crate: the clone cache, checkout,
//! commit and push, timed per repository and operation, with failures classified as Flux does.
//!
//! Everything here blocks (libgit2 does): the cycle runs it under `spawn_blocking`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use api::git_repository::GitCheckout;
use git::{
    Checkout, CheckoutOptions, CheckoutRef, CommitSpec, GitAuth, GitError, PushSpec, RemoteSpec,
    SshOptions, redact_url,
};
use runtime::metrics::{GitOperationLabels, Metrics, RepositoryLabels};

use crate::source::{Branches, CommitSettings, Failure, Remote, git_failed, manager_failed};

/// How the controller's flags and feature gates shape Git operations.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// Feature gate `GitAllBranchReferences`.
    pub all_branch_refs: bool,
    /// Feature gate `GitForcePushBranch`.
    pub force_push_branch: bool,
    /// Feature gate `GitShallowClone`.
    pub shallow: bool,
    /// `--ssh-kex-algos` and `--ssh-hostkey-algos`.
    pub ssh: SshOptions,
}

/// The clone cache: one mirror per (URL, credentials, push branch), so the writers of different
/// branches of one repository run concurrently.
pub struct GitCache {
    cache: git::Cache,
    settings: GitSettings,
    metrics: Arc<Metrics>,
}

impl GitCache {
    /// A cache under `root` (created) holding at most `max_size` bytes of clones; beyond it the
    /// least recently used clones not in use are removed (0 keeps only the clone in use).
    pub fn new(
        root: &Path,
        max_size: u64,
        settings: GitSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            // The git crate reads 0 as unbounded; the flag's 0 means keep nothing beyond the clone in use.
            cache: git::Cache::new(root.to_owned(), max_size.max(1)),
            settings,
            metrics,
        })
    }
}

/// Timing of one repository's Git operations.
struct Timer {
    repository: String,
    metrics: Arc<Metrics>,
}

impl Timer {
    fn timed<T>(&self, op: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.metrics
            .git_operation_duration
            .get_or_create(&GitOperationLabels {
                repository: self.repository.clone(),
                operation: op.to_owned(),
            })
            .observe(t.elapsed().as_secs_f64());
        r
    }
}

/// A checked-out working tree of the cache, on the push branch.
pub struct Workspace {
    checkout: Checkout,
    timer: Timer,
    /// `<ref>@sha1:<hex>` of the checked-out commit.
    revision: String,
}

/// The working tree as the cycle edits it: files, discarding and commits (also inside a push retry).
pub struct Tree<'a> {
    checkout: &'a mut Checkout,
    timer: &'a Timer,
}

/// The remote as the git crate takes it: credentials from the GitRepository's Secret (§2.3), proxy,
/// timeout and SSH algorithms.
fn remote_spec(remote: &Remote, ssh: &SshOptions) -> Result<RemoteSpec, Failure> {
    let mut auth = GitAuth::from_secret(&remote.url, &remote.auth).map_err(manager_failed)?;
    if let Some(issued) = &remote.provider {
        auth = issued.apply(auth);
    }
    Ok(RemoteSpec {
        url: remote.url.clone(),
        auth,
        proxy: remote.proxy.clone(),
        timeout: remote.timeout,
        ssh: ssh.clone(),
    })
}

/// `<ref>@sha1:<hex>` of the checkout (§5.6): the branch, tag or name checked out; for a commit
/// its branch (`HEAD` without one); for semver the crate's revision.
fn checkout_revision(reference: &api::git_repository::GitRepositoryRef, co: &Checkout) -> String {
    let name = match reference.checkout() {
        GitCheckout::Branch(b) => b.to_owned(),
        GitCheckout::Tag(t) => t.to_owned(),
        GitCheckout::RefName(n) => n.to_owned(),
        GitCheckout::Commit { branch, .. } => branch.unwrap_or("HEAD").to_owned(),
        GitCheckout::SemVer(_) => return co.checkout_revision(),
    };
    format!("{name}@sha1:{}", co.checkout_commit())
}

/// Fetches the checkout reference (and the push branch when it differs) into the cached clone of
/// the remote and checks out the push branch (§5.2): on the existing remote push branch when
/// switching branch (gate `GitAllBranchReferences`), else on the checkout commit.
pub fn checkout(
    cache: &GitCache,
    remote: &Remote,
    branches: &Branches,
) -> Result<Workspace, Failure> {
    let spec = remote_spec(remote, &cache.settings.ssh)?;
    let timer = Timer {
        repository: redact_url(&remote.url),
        metrics: cache.metrics.clone(),
    };
    let reference = CheckoutRef::from(&branches.checkout);
    let options = CheckoutOptions {
        push_branch: Some(branches.push_branch.clone()),
        all_branch_refs: cache.settings.all_branch_refs,
        force_push_branch: cache.settings.force_push_branch,
        shallow: cache.settings.shallow,
    };
    let checkout = timer
        .timed("checkout", || {
            cache
                .cache
                .checkout_in(Some(&branches.push_branch), &spec, &reference, &options)
        })
        .map_err(|e| {
            crate::provider::forget_if_refused(remote.provider.as_ref(), &e);
            match e {
                GitError::InvalidAuth(_) | GitError::Unsupported { .. } => manager_failed(e),
                e => git_failed(format!("failed to checkout source: {e}")),
            }
        })?;
    let revision = checkout_revision(&branches.checkout, &checkout);
    Ok(Workspace {
        checkout,
        timer,
        revision,
    })
}

impl Workspace {
    /// `<ref>@sha1:<hex>` of the checked-out commit.
    pub fn revision(&self) -> String {
        self.revision.clone()
    }

    /// The tree to edit and commit.
    pub fn tree(&mut self) -> Tree<'_> {
        Tree {
            checkout: &mut self.checkout,
            timer: &self.timer,
        }
    }

    /// Pushes the push branch (and the refspec). When the remote branch moved, the git crate
    /// fetches it and resets onto it, then `redo` re-applies the updates, and the push is tried
    /// again (bounded). `started` is when the earliest run of the cycle started (push latency).
    pub fn push(
        &mut self,
        branches: &Branches,
        started: Instant,
        redo: &mut dyn FnMut(&mut Tree<'_>) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let spec = PushSpec {
            refspec: branches.refspec.clone(),
            options: branches.push_options.clone(),
        };
        let Workspace {
            checkout, timer, ..
        } = self;
        let timer: &Timer = timer;
        let pushed = timer.timed("push", || {
            checkout.push(&spec, &mut |co: &mut Checkout| {
                redo(&mut Tree {
                    checkout: co,
                    timer,
                })
            })
        });
        match pushed {
            Ok(outcome) => {
                if outcome.is_some() {
                    timer
                        .metrics
                        .push_latency
                        .get_or_create(&RepositoryLabels {
                            repository: timer.repository.clone(),
                        })
                        .observe(started.elapsed().as_secs_f64());
                }
                Ok(())
            }
            Err(GitError::Redo(e)) => Err(match e.downcast::<Failure>() {
                Ok(f) => *f,
                Err(e) => git_failed(format!("failed to update source: {e}")),
            }),
            Err(GitError::PushRejected {
                branch, message, ..
            }) if branches.refspec.as_deref() == Some(branch.as_str()) => Err(git_failed(format!(
                "failed to update source: failed to push refspec '{branch}' to remote: {message}"
            ))),
            Err(e @ GitError::PushRejected { .. }) => {
                Err(git_failed(format!("failed to update source: {e}")))
            }
            Err(e) => Err(git_failed(format!(
                "failed to update source: failed to push to remote: {e}"
            ))),
        }
    }
}

impl Tree<'_> {
    /// The working tree.
    pub fn workdir(&self) -> &Path {
        self.checkout.workdir()
    }

    /// Discards uncommitted changes (commits made are kept).
    pub fn reset(&mut self) -> Result<(), Failure> {
        self.checkout
            .discard_changes()
            .map_err(|e| git_failed(format!("failed to reset the work tree: {e}")))
    }

    /// Commits every change in the tree (signed when the settings carry a key); `None` when
    /// nothing changed.
    pub fn commit(
        &mut self,
        settings: &CommitSettings,
        message: &str,
    ) -> Result<Option<String>, Failure> {
        let spec = CommitSpec {
            author_name: settings.author_name.clone(),
            author_email: settings.author_email.clone(),
            message: message.to_owned(),
            signer: settings.signing.clone(),
        };
        let checkout = &mut *self.checkout;
        self.timer
            .timed("commit", || checkout.commit(&spec))
            .map_err(|e| git_failed(format!("failed to update source: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::git_repository::GitRepositoryRef;
    use api::image_update_automation::{GIT_OPERATION_FAILED_REASON, SOURCE_MANAGER_FAILED_REASON};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn remote(url: &str, pairs: &[(&str, &str)]) -> Remote {
        Remote {
            url: url.into(),
            auth: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            provider: None,
            proxy: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn branches() -> Branches {
        Branches {
            checkout: GitRepositoryRef {
                branch: "main".into(),
                ..Default::default()
            },
            push_branch: "main".into(),
            switch_branch: false,
            refspec: None,
            push_options: BTreeMap::new(),
        }
    }

    fn cache(dir: &Path) -> GitCache {
        let settings = GitSettings {
            all_branch_refs: true,
            force_push_branch: true,
            shallow: true,
            ssh: SshOptions::default(),
        };
        GitCache::new(dir, 0, settings, Arc::new(Metrics::default())).unwrap()
    }

    #[test]
    fn bad_credentials_are_source_manager_failures() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        let fail = |r: Remote| checkout(&cache, &r, &branches()).err().unwrap();
        let f = fail(remote("ssh://git@h/r", &[("known_hosts", "x")]));
        assert_eq!(f.reason(), SOURCE_MANAGER_FAILED_REASON);
        assert_eq!(
            f.message(),
            "failed configuring source manager: invalid 'ssh' auth option: 'identity' is required"
        );
        let f = fail(remote(
            "https://h/r",
            &[("username", "u"), ("bearerToken", "t")],
        ));
        assert_eq!(f.reason(), SOURCE_MANAGER_FAILED_REASON);
        assert!(
            f.message().contains("cannot be set at the same time"),
            "{f}"
        );
    }

    #[test]
    fn an_unreachable_remote_is_a_git_failure_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let cache = cache(dir.path());
        // Port 1 on loopback refuses the connection at once.
        let f = checkout(
            &cache,
            &remote("http://user:s3cret@127.0.0.1:1/r.git", &[]),
            &branches(),
        )
        .err()
        .unwrap();
        assert_eq!(f.reason(), GIT_OPERATION_FAILED_REASON);
        assert!(
            f.message()
                .starts_with("failed to checkout source: unable to "),
            "{f}"
        );
        assert!(f.message().contains("127.0.0.1:1/r.git"), "{f}");
        assert!(!f.message().contains("s3cret"), "{f}");
    }
}
