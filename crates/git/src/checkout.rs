//! A checked-out worktree of a cache mirror: commit the caller's edits, push them safely.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use git2::build::CheckoutBuilder;
use git2::{IndexAddOption, Oid, Repository, Signature, Time};

use crate::auth::RemoteSpec;
use crate::cache::{CheckoutOptions, fetch, tracking_ref};
use crate::error::GitError;
use crate::refs::CheckoutRef;
use crate::remote::{OpContext, with_deadline};
use crate::sign::Signer;

/// Pushes attempted at most when the remote moved under us (IAC#939).
const MAX_PUSH_ATTEMPTS: u32 = 5;
/// First retry delay; doubled each retry, jittered by ±50%.
const RETRY_BASE: Duration = Duration::from_millis(100);

/// What to commit.
#[derive(Debug, Clone)]
pub struct CommitSpec {
    /// Author (and committer) name.
    pub author_name: String,
    /// Author (and committer) e-mail.
    pub author_email: String,
    /// The commit message.
    pub message: String,
    /// Signs the commit when set.
    pub signer: Option<Signer>,
}

/// What to push besides the push branch.
#[derive(Debug, Clone, Default)]
pub struct PushSpec {
    /// A second push with this refspec (`spec.git.push.refspec`), e.g. `refs/heads/a:refs/heads/b`.
    pub refspec: Option<String>,
    /// Git push options (`spec.git.push.options`): sent as `key=value`, or `key` for an empty value.
    pub options: BTreeMap<String, String>,
}

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The commit now at the head of the pushed branch.
    pub commit: String,
    /// Our commits pushed, oldest first.
    pub commits: Vec<String>,
    /// The branch pushed.
    pub branch: String,
    /// The user refspec pushed after the branch, if any.
    pub refspecs: Vec<String>,
    /// Pushes rejected because the remote moved and then redone on its new head.
    pub retries: u32,
    /// Whether the push was forced (only a separate push branch under `GitForcePushBranch` without
    /// `GitAllBranchReferences`, `automation.md` §5.7).
    pub forced: bool,
}

/// A clean worktree of a mirror, locked for exclusive use until dropped.
pub struct Checkout {
    repo: Repository,
    workdir: PathBuf,
    remote: RemoteSpec,
    reference: CheckoutRef,
    options: CheckoutOptions,
    /// The commit the checkout reference resolved to.
    checkout_commit: Oid,
    /// The branch HEAD is on (the push branch when switched); `None` when detached.
    branch: Option<String>,
    /// Whether HEAD moved to a push branch other than the checkout branch.
    switched: bool,
    /// The commit our own commits start from.
    base: Oid,
    _lock: File,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("url", &self.remote.redacted_url())
            .field("reference", &self.reference)
            .field("workdir", &self.workdir)
            .field("branch", &self.branch)
            .field("checkout_commit", &self.checkout_commit)
            .finish()
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Checkout {
    /// Put the worktree on `target` (and on the push branch per `options`), cleaned of any leftovers.
    pub(crate) fn prepare(
        repo: Repository,
        remote: RemoteSpec,
        reference: CheckoutRef,
        options: CheckoutOptions,
        target: Oid,
        lock: File,
    ) -> Result<Checkout, GitError> {
        let workdir = repo
            .workdir()
            .map(Path::to_path_buf)
            .ok_or_else(|| GitError::Local {
                context: "opening the mirror".into(),
                message: "the mirror has no worktree".into(),
            })?;
        let checkout_branch = reference.branch().map(str::to_string);
        let (branch, switched) = match (&options.push_branch, &checkout_branch) {
            (Some(p), Some(c)) if p == c && matches!(reference, CheckoutRef::Branch(_)) => {
                (Some(c.clone()), false)
            }
            (Some(p), _) => (Some(p.clone()), true),
            (None, c) if matches!(reference, CheckoutRef::Branch(_)) => (c.clone(), false),
            (None, _) => (None, false),
        };
        let mut base = target;
        if switched && options.all_branch_refs {
            // Existing remote push branch: build on its head (§5.2 SwitchBranch).
            if let Some(b) = &branch
                && let Ok(r) = repo.find_reference(&tracking_ref(&format!("refs/heads/{b}")))
                && let Ok(c) = r.peel_to_commit()
            {
                base = c.id();
            }
        }
        let mut co = Checkout {
            repo,
            workdir,
            remote,
            reference,
            options,
            checkout_commit: target,
            branch,
            switched,
            base,
            _lock: lock,
        };
        co.reset_to(base)?;
        Ok(co)
    }

    /// Point the branch (or detached HEAD) at `commit` and make the worktree exactly its tree.
    fn reset_to(&mut self, commit: Oid) -> Result<(), GitError> {
        let c = self
            .repo
            .find_commit(commit)
            .map_err(|e| GitError::local("reading the checkout commit", &e))?;
        let mut cb = CheckoutBuilder::new();
        cb.force().remove_untracked(true).remove_ignored(true);
        self.repo
            .checkout_tree(c.as_object(), Some(&mut cb))
            .map_err(|e| GitError::local("checking out the worktree", &e))?;
        // Record the commit's tree as the index's tree cache (stat data of the entries is kept): the next
        // commit then rewrites only the directories that changed, instead of rebuilding every tree and
        // reading the header of every blob to validate it.
        let tree = c
            .tree()
            .map_err(|e| GitError::local("reading the checkout tree", &e))?;
        let mut index = self
            .repo
            .index()
            .map_err(|e| GitError::local("opening the index", &e))?;
        index
            .read_tree(&tree)
            .and_then(|()| index.write())
            .map_err(|e| GitError::local("writing the index", &e))?;
        match &self.branch {
            Some(b) => {
                let name = format!("refs/heads/{b}");
                self.repo
                    .reference(&name, commit, true, "flux: checkout")
                    .map_err(|e| GitError::local(format!("updating {name}"), &e))?;
                self.repo
                    .set_head(&name)
                    .map_err(|e| GitError::local("setting HEAD", &e))?;
            }
            None => self
                .repo
                .set_head_detached(commit)
                .map_err(|e| GitError::local("detaching HEAD", &e))?,
        }
        self.base = commit;
        Ok(())
    }

    /// Discard uncommitted edits: the index and worktree become exactly HEAD's tree (untracked and ignored
    /// files removed). Commits already made are kept.
    pub fn discard_changes(&mut self) -> Result<(), GitError> {
        let head = self.head_oid().ok_or_else(|| GitError::Local {
            context: "discarding changes".into(),
            message: "HEAD has no commit".into(),
        })?;
        let c = self
            .repo
            .find_object(head, Some(git2::ObjectType::Commit))
            .map_err(|e| GitError::local("reading HEAD", &e))?;
        self.repo
            .reset(&c, git2::ResetType::Hard, None)
            .map_err(|e| GitError::local("discarding changes", &e))?;
        // A hard reset keeps untracked files; a forced checkout of HEAD removes them.
        let mut cb = CheckoutBuilder::new();
        cb.force().remove_untracked(true).remove_ignored(true);
        self.repo
            .checkout_head(Some(&mut cb))
            .map_err(|e| GitError::local("removing untracked files", &e))
    }

    /// The worktree directory to edit.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The current HEAD commit (full hash): the checkout commit, or the last commit made.
    pub fn head(&self) -> String {
        self.head_oid().map(|o| o.to_string()).unwrap_or_default()
    }

    fn head_oid(&self) -> Option<Oid> {
        self.repo.head().ok().and_then(|h| h.target())
    }

    /// The commit the checkout reference resolved to (full hash).
    pub fn checkout_commit(&self) -> String {
        self.checkout_commit.to_string()
    }

    /// Flux's revision of the checkout: `<branch-or-ref>@sha1:<hash>`.
    pub fn checkout_revision(&self) -> String {
        format!(
            "{}@sha1:{}",
            self.reference.describe(),
            self.checkout_commit
        )
    }

    /// The branch commits go to (the push branch when switched); `None` on a detached HEAD.
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    /// Whether commits go to a push branch other than the checkout branch.
    pub fn switched_branch(&self) -> bool {
        self.switched
    }

    /// The reference checked out.
    pub fn reference(&self) -> &CheckoutRef {
        &self.reference
    }

    /// Commit every change of the worktree (modified, added, deleted; ignored files excepted) on HEAD.
    /// Returns the new commit's hash, or `None` when the tree is unchanged (no commit is made).
    pub fn commit(&mut self, spec: &CommitSpec) -> Result<Option<String>, GitError> {
        let repo = &self.repo;
        let mut index = repo
            .index()
            .map_err(|e| GitError::local("opening the index", &e))?;
        // One scan of the worktree stages additions, modifications and deletions alike (libgit2 removes
        // entries whose file is gone), so no separate `update_all` pass.
        index
            .add_all(["*"], IndexAddOption::DEFAULT, None)
            .map_err(|e| GitError::local("staging changes", &e))?;
        let tree_id = index
            .write_tree()
            .map_err(|e| GitError::local("writing the tree", &e))?;
        // After write_tree, so the index keeps the tree cache it just refreshed.
        index
            .write()
            .map_err(|e| GitError::local("writing the index", &e))?;
        let parent_id = self.head_oid().ok_or_else(|| GitError::Local {
            context: "committing".into(),
            message: "HEAD has no commit".into(),
        })?;
        let parent = repo
            .find_commit(parent_id)
            .map_err(|e| GitError::local("reading HEAD", &e))?;
        if parent.tree_id() == tree_id {
            return Ok(None);
        }
        let tree = repo
            .find_tree(tree_id)
            .map_err(|e| GitError::local("reading the tree", &e))?;
        let sig = Signature::new(
            &spec.author_name,
            &spec.author_email,
            &Time::new(now_secs(), 0),
        )
        .map_err(|e| GitError::local("building the author signature", &e))?;
        let buf = repo
            .commit_create_buffer(&sig, &sig, &spec.message, &tree, &[&parent])
            .map_err(|e| GitError::local("building the commit", &e))?;
        let content = std::str::from_utf8(&buf).map_err(|_| GitError::Local {
            context: "building the commit".into(),
            message: "author or message is not valid UTF-8".into(),
        })?;
        let oid = match &spec.signer {
            Some(signer) => {
                let signature = signer.sign(content.as_bytes())?;
                repo.commit_signed(content, &signature, Some("gpgsig"))
                    .map_err(|e| GitError::local("writing the signed commit", &e))?
            }
            None => repo
                .odb()
                .and_then(|odb| odb.write(git2::ObjectType::Commit, content.as_bytes()))
                .map_err(|e| GitError::local("writing the commit", &e))?,
        };
        match &self.branch {
            Some(b) => {
                let name = format!("refs/heads/{b}");
                repo.reference(&name, oid, true, "flux: commit")
                    .map_err(|e| GitError::local(format!("updating {name}"), &e))?;
            }
            None => repo
                .set_head_detached(oid)
                .map_err(|e| GitError::local("moving HEAD", &e))?,
        }
        Ok(Some(oid.to_string()))
    }

    /// Our commits since the base, oldest first. Follows first parents only (our commits are a line on
    /// the base), which also works in a shallow mirror where a revision walk would reach missing parents.
    fn own_commits(&self) -> Result<Vec<Oid>, GitError> {
        let Some(mut oid) = self.head_oid() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while oid != self.base {
            out.push(oid);
            let commit = self
                .repo
                .find_commit(oid)
                .map_err(|e| GitError::local("walking our commits", &e))?;
            match commit.parent_id(0) {
                Ok(parent) => oid = parent,
                Err(_) => {
                    return Err(GitError::Local {
                        context: "walking our commits".into(),
                        message: format!("HEAD does not descend from {}", self.base),
                    });
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Whether the push is forced: only for a separate push branch under `GitForcePushBranch` when
    /// `GitAllBranchReferences` is off, where Flux overwrites the push branch with the checkout head
    /// (`automation.md` §5.7, third row). With `GitAllBranchReferences` on, commits build on the remote push
    /// branch head, so a plain push suffices and a concurrent writer's commit is never overwritten.
    fn forced(&self) -> bool {
        self.switched && self.options.force_push_branch && !self.options.all_branch_refs
    }

    /// Push the branch (then `spec.refspec`, if any). Returns `None` when there is nothing of ours to push.
    ///
    /// When the remote branch moved since the checkout (someone else pushed), the push is rejected as
    /// non-fast-forward; then this fetches the branch, resets the worktree onto its new head, calls `redo`
    /// to re-apply the edits and commit them again, and retries with jittered exponential backoff, at most
    /// a few times and within the remote's timeout. Not retried where Flux's semantics pin the base to the
    /// checkout head (push branch with both feature gates off: it keeps failing, as in Flux).
    pub fn push<E>(
        &mut self,
        spec: &PushSpec,
        redo: &mut dyn FnMut(&mut Checkout) -> Result<(), E>,
    ) -> Result<Option<PushOutcome>, GitError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let url = self.remote.redacted_url();
        let Some(branch) = self.branch.clone() else {
            return Err(GitError::PushRejected {
                url,
                branch: self.reference.describe(),
                message: "cannot push a detached HEAD: set a push branch".into(),
            });
        };
        let forced = self.forced();
        let retry_allowed = !self.switched || self.options.all_branch_refs;
        let started = Instant::now();
        let mut retries = 0;
        let push_options: Vec<String> = spec
            .options
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        loop {
            let commits = self.own_commits()?;
            if commits.is_empty() {
                return Ok(None);
            }
            let refname = format!("refs/heads/{branch}");
            let refspec = format!("{}{refname}:{refname}", if forced { "+" } else { "" });
            match self.push_refspecs(&[refspec], &push_options, &branch) {
                Ok(_) => {
                    let head = self.head_oid().unwrap_or(self.base);
                    self.base = head;
                    let mut refspecs = Vec::new();
                    if let Some(r) = spec.refspec.as_deref().filter(|r| !r.is_empty()) {
                        let user = if forced && !r.starts_with('+') {
                            format!("+{r}")
                        } else {
                            r.to_string()
                        };
                        let updated = match self.push_refspecs(&[user], &push_options, &branch) {
                            Ok(n) => n,
                            Err(PushFailure::Error(e)) => return Err(e),
                            Err(PushFailure::Rejected(message)) => {
                                return Err(GitError::PushRejected {
                                    url,
                                    branch: r.to_string(),
                                    message,
                                });
                            }
                        };
                        if updated == 0 {
                            return Err(GitError::PushRejected {
                                url,
                                branch: r.to_string(),
                                message: format!("refspec '{r}': already up-to-date"),
                            });
                        }
                        refspecs.push(r.to_string());
                    }
                    return Ok(Some(PushOutcome {
                        commit: head.to_string(),
                        commits: commits.iter().map(Oid::to_string).collect(),
                        branch,
                        refspecs,
                        retries,
                        forced,
                    }));
                }
                Err(PushFailure::Rejected(message)) => {
                    retries += 1;
                    if !retry_allowed
                        || retries >= MAX_PUSH_ATTEMPTS
                        || started.elapsed() >= self.remote.timeout
                    {
                        return Err(GitError::PushRejected {
                            url,
                            branch,
                            message,
                        });
                    }
                    tracing::info!(url = %url, branch = %branch, attempt = retries, reason = %message, "push rejected, re-applying on the new remote head");
                    std::thread::sleep(backoff(retries));
                    self.refresh_branch(&branch)?;
                    redo(self).map_err(|e| GitError::Redo(e.into()))?;
                }
                Err(PushFailure::Error(e)) => return Err(e),
            }
        }
    }

    /// Fetch `branch` and reset onto its remote head (or onto the checkout commit if it vanished).
    fn refresh_branch(&mut self, branch: &str) -> Result<(), GitError> {
        let remote_ref = format!("refs/heads/{branch}");
        let tracking = tracking_ref(&remote_ref);
        if let Ok(mut r) = self.repo.find_reference(&tracking) {
            let _ = r.delete();
        }
        fetch(
            &self.repo,
            &self.remote,
            &[format!("+{remote_ref}:{tracking}")],
            self.repo.is_shallow(),
            branch,
        )?;
        let head = self
            .repo
            .find_reference(&tracking)
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id());
        self.reset_to(head.unwrap_or(self.checkout_commit))
    }

    /// Push `refspecs` within the remote's timeout; the number of remote refs updated, or why it failed.
    fn push_refspecs(
        &self,
        refspecs: &[String],
        push_options: &[String],
        branch: &str,
    ) -> Result<usize, PushFailure> {
        let path = self.repo.path().to_path_buf();
        let (spec, refspecs, options, branch) = (
            self.remote.clone(),
            refspecs.to_vec(),
            push_options.to_vec(),
            branch.to_string(),
        );
        with_deadline(&self.remote, "push to", move || {
            Ok(push_now(&path, &spec, &refspecs, &options, &branch))
        })
        .map_err(PushFailure::Error)?
    }
}

fn push_now(
    path: &Path,
    spec: &RemoteSpec,
    refspecs: &[String],
    push_options: &[String],
    branch: &str,
) -> Result<usize, PushFailure> {
    let repo = Repository::open(path)
        .map_err(|e| PushFailure::Error(GitError::local("opening the cache mirror", &e)))?;
    let ctx = OpContext::start(spec, "push to").map_err(PushFailure::Error)?;
    let mut origin = repo
        .find_remote("origin")
        .map_err(|e| PushFailure::Error(GitError::local("finding remote 'origin'", &e)))?;
    let rejections = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let updated = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let up_to_date = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut cb = ctx.callbacks();
    {
        // Nothing to update: stop here (libgit2 would otherwise wait on the server for an answer to an
        // empty command list).
        let up_to_date = up_to_date.clone();
        cb.push_negotiation(move |updates| {
            if updates.iter().all(|u| u.src() == u.dst()) {
                up_to_date.set(true);
                return Err(git2::Error::from_str("already up-to-date"));
            }
            Ok(())
        });
    }
    {
        let rejections = rejections.clone();
        let updated = updated.clone();
        cb.push_update_reference(move |name, status| {
            match status {
                Some(msg) => rejections.borrow_mut().push(format!("{name}: {msg}")),
                None => updated.set(updated.get() + 1),
            }
            Ok(())
        });
    }
    let mut po = ctx.push_options(cb, push_options);
    let result = origin.push(refspecs, Some(&mut po));
    drop(po);
    match result {
        Err(_) if up_to_date.get() => Ok(0),
        Err(e) if e.code() == git2::ErrorCode::NotFastForward => Err(PushFailure::Rejected(
            format!("non-fast-forward: {}", e.message()),
        )),
        Err(e) => Err(PushFailure::Error(ctx.error("push to", Some(branch), &e))),
        Ok(()) => {
            let rejected = rejections.borrow();
            if rejected.is_empty() {
                Ok(updated.get())
            } else {
                Err(PushFailure::Rejected(rejected.join("; ")))
            }
        }
    }
}

enum PushFailure {
    /// The server or libgit2 refused the update (remote moved, hook declined, ...).
    Rejected(String),
    /// Anything else (network, auth).
    Error(GitError),
}

/// Exponential backoff from [`RETRY_BASE`], jittered to 50–150%.
fn backoff(attempt: u32) -> Duration {
    let base = RETRY_BASE.saturating_mul(1 << attempt.min(6).saturating_sub(1));
    let jitter: f64 = rand::random::<f64>() + 0.5;
    base.mul_f64(jitter)
}
