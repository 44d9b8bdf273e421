//! The clone cache: one persistent local mirror (a non-bare repository) per (URL, credential identity)
//! under the cache root. Each checkout locks its mirror, fetches incrementally, and cleans the worktree;
//! a missing or corrupt mirror is rebuilt by a fresh shallow clone; unused mirrors are evicted beyond the
//! size bound.

use std::fs::File;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use sha2::{Digest, Sha256};

use crate::auth::RemoteSpec;
use crate::checkout::Checkout;
use crate::error::GitError;
use crate::refs::CheckoutRef;
use crate::remote::{OpContext, is_local, transport_url, with_deadline};

/// Name of the marker written once a mirror's first clone completed.
const READY: &str = "ready";
/// The repository directory inside a mirror directory.
const REPO: &str = "repo";
/// The lock (and last-use marker) file of a mirror.
const LOCK: &str = "lock";

/// How to prepare the branch that will be pushed (Flux's push branch and feature gates, `automation.md` §5.1
/// and §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutOptions {
    /// The branch commits go to when it differs from the checkout branch (`spec.git.push.branch`); `None`
    /// commits on the checked-out branch.
    pub push_branch: Option<String>,
    /// Feature gate `GitAllBranchReferences` (default on): when switching to a push branch that exists on
    /// the remote, build on its head; off builds on the checkout head.
    pub all_branch_refs: bool,
    /// Feature gate `GitForcePushBranch` (default on): force-push a separate push branch.
    pub force_push_branch: bool,
    /// Feature gate `GitShallowClone` (default on): clone with depth 1 when the mirror is cold.
    pub shallow: bool,
}

impl Default for CheckoutOptions {
    fn default() -> Self {
        CheckoutOptions {
            push_branch: None,
            all_branch_refs: true,
            force_push_branch: true,
            shallow: true,
        }
    }
}

/// The persistent clone cache.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    max_size: u64,
}

impl Cache {
    /// A cache under `root` (created when missing) holding at most `max_size` bytes of mirrors (0: unbounded);
    /// beyond that, mirrors not in use are evicted, least recently used first.
    pub fn new(root: PathBuf, max_size: u64) -> Cache {
        Cache { root, max_size }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mirror directory for a remote (URL without credentials, plus a digest of the credential identity).
    pub fn mirror_dir(&self, remote: &RemoteSpec) -> PathBuf {
        self.partition_dir(remote, None)
    }

    /// The mirror directory for a remote within a partition (see [`Cache::checkout_in`]).
    fn partition_dir(&self, remote: &RemoteSpec, partition: Option<&str>) -> PathBuf {
        let mut h = Sha256::new();
        h.update(transport_url(remote).as_bytes());
        h.update(b"\0");
        h.update(remote.auth.identity_digest().as_bytes());
        if let Some(p) = partition {
            h.update(b"\0");
            h.update(p.as_bytes());
        }
        let key: String = h
            .finalize()
            .iter()
            .take(10)
            .map(|b| format!("{b:02x}"))
            .collect();
        self.root.join(key)
    }

    /// Check out `reference` of `remote` into the mirror's clean worktree, prepared for commits as `options`
    /// says. Blocks while another [`Checkout`] of the same mirror is alive (at most ten minutes), so drop one
    /// before checking out the same remote again in the same thread. A mirror that cannot be opened or updated
    /// for local reasons (corruption, missing objects) is rebuilt from scratch.
    pub fn checkout(
        &self,
        remote: &RemoteSpec,
        reference: &CheckoutRef,
        options: &CheckoutOptions,
    ) -> Result<Checkout, GitError> {
        self.checkout_in(None, remote, reference, options)
    }

    /// [`Cache::checkout`] in a separate mirror of the same remote named by `partition` (e.g. a push
    /// branch), so writers of different partitions do not wait for each other's lock. `None` is the
    /// mirror [`Cache::checkout`] uses. All partitions share the cache's size bound.
    pub fn checkout_in(
        &self,
        partition: Option<&str>,
        remote: &RemoteSpec,
        reference: &CheckoutRef,
        options: &CheckoutOptions,
    ) -> Result<Checkout, GitError> {
        let dir = self.partition_dir(remote, partition);
        std::fs::create_dir_all(&dir).map_err(GitError::io(format!(
            "creating cache directory {}",
            dir.display()
        )))?;
        let lock_path = dir.join(LOCK);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(GitError::io(format!("opening {}", lock_path.display())))?;
        wait_lock(&lock, &lock_path)?;
        // The lock file's modification time records the last use, for eviction.
        let _ = lock.set_modified(std::time::SystemTime::now());
        let repo_dir = dir.join(REPO);
        let warm = dir.join(READY).exists() && repo_dir.exists();
        let result = if warm {
            match self.open_warm(&repo_dir, remote, reference, options) {
                Ok(c) => Ok(c),
                Err(e) if !e.is_remote() => {
                    tracing::warn!(url = %remote.redacted_url(), error = %e, "Git cache mirror unusable, cloning afresh");
                    self.clone_cold(&dir, remote, reference, options)
                }
                Err(e) => Err(e),
            }
        } else {
            self.clone_cold(&dir, remote, reference, options)
        };
        let (repo, target) = result?;
        let checkout = Checkout::prepare(
            repo,
            remote.clone(),
            reference.clone(),
            options.clone(),
            target,
            lock,
        )?;
        self.evict(&dir);
        Ok(checkout)
    }

    fn open_warm(
        &self,
        repo_dir: &Path,
        remote: &RemoteSpec,
        reference: &CheckoutRef,
        options: &CheckoutOptions,
    ) -> Result<(Repository, Oid), GitError> {
        let repo = Repository::open(repo_dir)
            .map_err(|e| GitError::local("opening the cache mirror", &e))?;
        // A quick integrity probe: HEAD's commit must be readable (a truncated object store fails here).
        if let Ok(head) = repo.head()
            && let Some(oid) = head.target()
        {
            repo.find_commit(oid)
                .map_err(|e| GitError::local("reading the mirror's HEAD", &e))?;
        }
        let shallow = repo.is_shallow();
        let target = fetch_reference(&repo, remote, reference, options, shallow)?;
        Ok((repo, target))
    }

    fn clone_cold(
        &self,
        dir: &Path,
        remote: &RemoteSpec,
        reference: &CheckoutRef,
        options: &CheckoutOptions,
    ) -> Result<(Repository, Oid), GitError> {
        let repo_dir = dir.join(REPO);
        let ready = dir.join(READY);
        let _ = std::fs::remove_file(&ready);
        if repo_dir.exists() {
            std::fs::remove_dir_all(&repo_dir).map_err(GitError::io(format!(
                "removing stale mirror {}",
                repo_dir.display()
            )))?;
        }
        let repo = Repository::init(&repo_dir)
            .map_err(|e| GitError::local("initialising the cache mirror", &e))?;
        repo.remote("origin", &transport_url(remote))
            .map_err(|e| GitError::local("configuring remote 'origin'", &e))?;
        // A commit may sit anywhere in history; everything else is fine with the tip only.
        // libgit2's local transport cannot fetch shallow.
        let shallow = options.shallow
            && !matches!(reference, CheckoutRef::Commit { .. })
            && !is_local(remote);
        let target = match fetch_reference(&repo, remote, reference, options, shallow) {
            Ok(t) => t,
            Err(e) => {
                drop(repo);
                let _ = std::fs::remove_dir_all(&repo_dir);
                return Err(e);
            }
        };
        File::create(&ready).map_err(GitError::io(format!("writing {}", ready.display())))?;
        Ok((repo, target))
    }

    /// Remove mirrors, least recently used first, until the cache fits its bound; skips `keep` and mirrors
    /// in use (locked).
    fn evict(&self, keep: &Path) {
        if self.max_size == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut mirrors: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .map(|p| {
                let used = std::fs::metadata(p.join(LOCK))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (used, dir_size(&p), p)
            })
            .collect();
        let mut total: u64 = mirrors.iter().map(|m| m.1).sum();
        if total <= self.max_size {
            return;
        }
        mirrors.sort();
        for (_, size, path) in mirrors {
            if total <= self.max_size {
                break;
            }
            if path == keep {
                continue;
            }
            let Ok(lock) = File::options().write(true).open(path.join(LOCK)) else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    total = total.saturating_sub(size);
                    tracing::info!(mirror = %path.display(), size, "evicted Git cache mirror");
                }
                Err(e) => {
                    tracing::warn!(mirror = %path.display(), error = %e, "could not evict Git cache mirror")
                }
            }
        }
    }
}

/// Longest wait for another checkout of the same mirror to finish.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Take the mirror's lock, waiting at most [`LOCK_WAIT`] for its holder.
fn wait_lock(lock: &File, path: &Path) -> Result<(), GitError> {
    let started = std::time::Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(GitError::Local {
                    context: format!("locking {}", path.display()),
                    message: format!("the mirror is still in use after {LOCK_WAIT:?}"),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(GitError::Io {
                    context: format!("locking {}", path.display()),
                    source: e,
                });
            }
        }
    }
}

/// Total size of the files under `path` (not following symlinks).
fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// The remote-tracking ref a remote ref is fetched into.
pub(crate) fn tracking_ref(remote_ref: &str) -> String {
    if let Some(b) = remote_ref.strip_prefix("refs/heads/") {
        format!("refs/remotes/origin/{b}")
    } else if remote_ref.starts_with("refs/tags/") {
        remote_ref.to_string()
    } else {
        format!("refs/flux-name/{}", remote_ref.trim_start_matches("refs/"))
    }
}

/// Fetch what `reference` (and the push branch of `options`) needs into `repo` and return the commit to check
/// out. Tracking refs of explicitly named refs are dropped first, so a ref deleted upstream is not mistaken
/// for a present one.
pub(crate) fn fetch_reference(
    repo: &Repository,
    remote: &RemoteSpec,
    reference: &CheckoutRef,
    options: &CheckoutOptions,
    shallow: bool,
) -> Result<Oid, GitError> {
    let mut named: Vec<String> = Vec::new();
    let mut globs: Vec<&str> = Vec::new();
    match reference {
        CheckoutRef::Branch(b) => named.push(format!("refs/heads/{b}")),
        CheckoutRef::Tag(t) => named.push(format!("refs/tags/{t}")),
        CheckoutRef::Name(n) => named.push(n.clone()),
        CheckoutRef::SemVer(_) => globs.push("+refs/tags/*:refs/tags/*"),
        CheckoutRef::Commit {
            branch: Some(b), ..
        } => named.push(format!("refs/heads/{b}")),
        CheckoutRef::Commit { branch: None, .. } => {
            globs.push("+refs/heads/*:refs/remotes/origin/*")
        }
    }
    if let Some(push) = &options.push_branch
        && options.all_branch_refs
        && reference.branch() != Some(push.as_str())
    {
        named.push(format!("refs/heads/{push}"));
    }
    for n in &named {
        if let Ok(mut r) = repo.find_reference(&tracking_ref(n)) {
            let _ = r.delete();
        }
    }
    let mut refspecs: Vec<String> = named
        .iter()
        .map(|n| format!("+{n}:{}", tracking_ref(n)))
        .collect();
    refspecs.extend(globs.iter().map(|g| g.to_string()));
    fetch(repo, remote, &refspecs, shallow, &reference.describe())?;
    let url = remote.redacted_url();
    let not_found = || GitError::RefNotFound {
        url: url.clone(),
        reference: reference.describe(),
    };
    let peel = |name: &str| -> Result<Oid, GitError> {
        let r = repo.find_reference(name).map_err(|_| not_found())?;
        let c = r
            .peel_to_commit()
            .map_err(|e| GitError::local(format!("resolving {name}"), &e))?;
        Ok(c.id())
    };
    match reference {
        CheckoutRef::Branch(_) | CheckoutRef::Tag(_) | CheckoutRef::Name(_) => {
            peel(&tracking_ref(&named[0]))
        }
        CheckoutRef::SemVer(expr) => select_semver(repo, expr, &url),
        CheckoutRef::Commit { commit, .. } => {
            let oid = Oid::from_str(commit).map_err(|_| GitError::RefNotFound {
                url: url.clone(),
                reference: commit.clone(),
            })?;
            repo.find_commit(oid)
                .map(|c| c.id())
                .map_err(|_| not_found())
        }
    }
}

/// Fetch `refspecs` from origin (depth 1 when `shallow`), bounded by the remote's timeout.
pub(crate) fn fetch(
    repo: &Repository,
    remote: &RemoteSpec,
    refspecs: &[String],
    shallow: bool,
    reference: &str,
) -> Result<(), GitError> {
    let path = repo.path().to_path_buf();
    let (spec, refspecs, reference) = (remote.clone(), refspecs.to_vec(), reference.to_string());
    with_deadline(remote, "fetch", move || {
        let repo =
            Repository::open(&path).map_err(|e| GitError::local("opening the cache mirror", &e))?;
        fetch_now(&repo, &spec, &refspecs, shallow, &reference)
    })
}

fn fetch_now(
    repo: &Repository,
    remote: &RemoteSpec,
    refspecs: &[String],
    shallow: bool,
    reference: &str,
) -> Result<(), GitError> {
    let ctx = OpContext::start(remote, "fetch")?;
    let mut origin = repo
        .find_remote("origin")
        .map_err(|e| GitError::local("finding remote 'origin'", &e))?;
    let mut fo = ctx.fetch_options();
    if shallow {
        fo.depth(1);
    }
    origin.fetch(refspecs, Some(&mut fo), None).map_err(|e| {
        if is_local_class(e.class())
            && !matches!(
                e.code(),
                git2::ErrorCode::Auth | git2::ErrorCode::Certificate
            )
        {
            GitError::local(
                format!("fetching into the cache mirror (ref '{reference}')"),
                &e,
            )
        } else {
            ctx.error("fetch", Some(reference), &e)
        }
    })
}

/// Error classes that point at the local repository rather than the remote.
fn is_local_class(class: git2::ErrorClass) -> bool {
    use git2::ErrorClass::*;
    matches!(
        class,
        Odb | Object | Index | Reference | Repository | Filesystem | Zlib | Tree | Indexer
    )
}

/// The commit of the highest tag matching the semver constraint `expr` (ties by commit time, as Flux).
fn select_semver(repo: &Repository, expr: &str, url: &str) -> Result<Oid, GitError> {
    let constraints = policy::Constraints::parse(expr).map_err(|e| GitError::RefNotFound {
        url: url.to_string(),
        reference: format!("{expr} (invalid semver range: {e})"),
    })?;
    let names = repo
        .tag_names(None)
        .map_err(|e| GitError::local("listing tags", &e))?;
    let mut best: Option<(policy::Version<'_>, i64, Oid)> = None;
    for name in names.iter().flatten().flatten() {
        let Ok(v) = policy::Version::parse_loose(name) else {
            continue;
        };
        if !constraints.check(&v) {
            continue;
        }
        let Ok(commit) = repo
            .find_reference(&format!("refs/tags/{name}"))
            .and_then(|r| r.peel_to_commit())
        else {
            continue;
        };
        let time = commit.time().seconds();
        let better = match &best {
            None => true,
            Some((bv, btime, _)) => match v.cmp_precedence(bv) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Equal => time > *btime,
                std::cmp::Ordering::Less => false,
            },
        };
        if better {
            best = Some((v, time, commit.id()));
        }
    }
    best.map(|b| b.2).ok_or_else(|| GitError::RefNotFound {
        url: url.to_string(),
        reference: format!("no tag matches semver range '{expr}'"),
    })
}
