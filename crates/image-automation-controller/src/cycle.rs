//! One writer per (repository URL, push branch) in the process, and the shared cycle.
//!
//! Every automation run becomes a [`Job`] submitted to the queue of its (URL, push branch). The
//! task that takes the queue's lock drains every job waiting there and runs them together: one
//! checkout (one fetch), then for each automation in name order its own update and its own commit
//! (own message, author, signing), then one push. Each job gets back its own outcome, as if it had
//! run alone. Jobs whose remote or checkout differ run in separate cycles, one after the other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::image_update_automation::{GIT_OPERATION_FAILED_REASON, UPDATE_FAILED_REASON};
use templates::NamespacedName;
use tokio::sync::oneshot;

use crate::gitops::{self, GitCache};
use crate::securejoin::secure_join;
use crate::source::{Branches, CommitSettings, Failure, Remote, git_failed};

/// One automation's share of a cycle.
#[derive(Debug, Clone)]
pub struct Job {
    /// The automation (`.AutomationObject`; name order inside a cycle).
    pub automation: NamespacedName,
    /// Remote to fetch from and push to.
    pub remote: Remote,
    /// Checkout and push.
    pub branches: Branches,
    /// How to commit.
    pub commit: CommitSettings,
    /// `spec.update.path` (empty: the repository root).
    pub update_path: String,
    /// Setter table of the selected policies.
    pub policies: setters::Policies,
    /// When the automation's run started (push latency).
    pub started: Instant,
}

impl Job {
    /// The job of `automation` with its resolved `source` and setter `policies`, started at `started`.
    pub fn new(
        automation: &api::ImageUpdateAutomation,
        source: crate::source::Source,
        policies: setters::Policies,
        started: Instant,
    ) -> Self {
        use kube::ResourceExt as _;
        Job {
            automation: NamespacedName {
                namespace: automation.namespace().unwrap_or_default(),
                name: automation.name_any(),
            },
            remote: source.remote,
            branches: source.branches,
            commit: source.commit,
            update_path: automation
                .spec
                .update
                .as_ref()
                .map(|u| u.path.clone())
                .unwrap_or_default(),
            policies,
            started,
        }
    }
}

/// What a cycle did for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to change; `revision` is the checked-out commit (`<ref>@sha1:<hex>`).
    UpToDate {
        /// The checkout revision.
        revision: String,
    },
    /// The job's commit was pushed.
    Pushed {
        /// Full SHA of the job's own commit.
        commit: String,
        /// Its message.
        message: String,
        /// `observedSourceRevision` (§5.6).
        revision: String,
        /// The files the commit changed, and how.
        files: Vec<setters::FileChanges>,
    },
}

type Reply = oneshot::Sender<Result<Outcome, Failure>>;

#[derive(Default)]
struct Queue {
    pending: Mutex<Vec<(Job, Reply)>>,
    running: tokio::sync::Mutex<()>,
}

/// The queues of every (URL, push branch) written by this process.
pub struct Writers {
    cache: Arc<GitCache>,
    queues: Mutex<HashMap<(String, String), Arc<Queue>>>,
}

impl Writers {
    /// Writers using `cache` for clones.
    pub fn new(cache: Arc<GitCache>) -> Self {
        Self {
            cache,
            queues: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `job`, sharing a cycle with the jobs on the same branch that are waiting.
    pub async fn submit(&self, job: Job) -> Result<Outcome, Failure> {
        let key = (job.remote.url.clone(), job.branches.push_branch.clone());
        let queue = {
            let mut queues = self
                .queues
                .lock()
                .map_err(|_| git_failed("writer queues poisoned"))?;
            queues.entry(key).or_default().clone()
        };
        let (tx, rx) = oneshot::channel();
        queue
            .pending
            .lock()
            .map_err(|_| git_failed("writer queue poisoned"))?
            .push((job, tx));
        {
            let _writer = queue.running.lock().await;
            let batch = std::mem::take(
                &mut *queue
                    .pending
                    .lock()
                    .map_err(|_| git_failed("writer queue poisoned"))?,
            );
            // Empty when an earlier writer already ran this job with its own batch.
            if !batch.is_empty() {
                let cache = self.cache.clone();
                let replies = tokio::task::spawn_blocking(move || run_batch(&cache, batch)).await;
                if let Err(e) = replies {
                    // The batch's senders were dropped with the panicked task: every waiter
                    // (this one included) sees a closed channel below.
                    tracing::error!(error = %e, "Git cycle panicked");
                }
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(git_failed("the Git cycle ended without an outcome")))
    }
}

/// Runs a drained batch: cycles of jobs with the same remote and branches, jobs in name order.
fn run_batch(cache: &GitCache, mut batch: Vec<(Job, Reply)>) {
    batch.sort_by(|a, b| {
        (&a.0.automation.namespace, &a.0.automation.name)
            .cmp(&(&b.0.automation.namespace, &b.0.automation.name))
    });
    while !batch.is_empty() {
        let (remote, branches) = (batch[0].0.remote.clone(), batch[0].0.branches.clone());
        let (group, rest): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|(j, _)| j.remote == remote && j.branches == branches);
        batch = rest;
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = group.into_iter().unzip();
        let outcomes = run_cycle(cache, &remote, &branches, &jobs);
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            // A waiter that went away (shutdown) needs no answer.
            let _ = reply.send(outcome);
        }
    }
}

/// One cycle: checkout, each job's update and commit, one push. Returns one outcome per job.
fn run_cycle(
    cache: &GitCache,
    remote: &Remote,
    branches: &Branches,
    jobs: &[Job],
) -> Vec<Result<Outcome, Failure>> {
    let all = |f: Failure| jobs.iter().map(|_| Err(f.clone())).collect();
    let mut checkout = match gitops::checkout(cache, remote, branches) {
        Ok(c) => c,
        Err(f) => return all(f),
    };
    let checkout_revision = checkout.revision();
    // The commits of this cycle, per job: None = nothing to commit, else the job's commit.
    let mut results: Vec<Result<Option<Committed>, Failure>> = Vec::new();
    let apply_all = |co: &mut gitops::Tree<'_>,
                     results: &mut Vec<Result<Option<Committed>, Failure>>|
     -> Result<(), Failure> {
        results.clear();
        for job in jobs {
            let r = update_and_commit(co, job);
            if r.is_err() {
                // No partial commit: whatever this job wrote is discarded.
                co.reset()?;
            }
            results.push(r);
        }
        Ok(())
    };
    if let Err(f) = apply_all(&mut checkout.tree(), &mut results) {
        return all(f);
    }
    let committed = results.iter().any(|r| matches!(r, Ok(Some(_))));
    if committed {
        let started = jobs
            .iter()
            .map(|j| j.started)
            .min()
            .unwrap_or_else(Instant::now);
        let push = checkout.push(branches, started, &mut |co| {
            // The remote moved: redo every job's update on its new tip.
            apply_all(co, &mut results)
        });
        if let Err(f) = push {
            return all(f);
        }
    }
    let pushed_revision = |sha: &str| {
        if branches.switch_branch {
            checkout_revision.clone()
        } else {
            format!("{}@sha1:{sha}", branches.push_branch)
        }
    };
    results
        .into_iter()
        .map(|r| {
            r.map(|c| match c {
                None => Outcome::UpToDate {
                    revision: checkout_revision.clone(),
                },
                Some(Committed {
                    sha,
                    message,
                    files,
                }) => Outcome::Pushed {
                    revision: pushed_revision(&sha),
                    commit: sha,
                    message,
                    files,
                },
            })
        })
        .collect()
}

/// A job's commit within a cycle.
struct Committed {
    /// Full SHA.
    sha: String,
    /// Its message.
    message: String,
    /// The files it changed.
    files: Vec<setters::FileChanges>,
}

/// A job's update of the workspace and its commit; nothing is written when the update fails.
fn update_and_commit(co: &mut gitops::Tree<'_>, job: &Job) -> Result<Option<Committed>, Failure> {
    let Some((message, files)) = update(co.workdir(), job)? else {
        return Ok(None);
    };
    let sha = co.commit(&job.commit, &message)?;
    Ok(sha.map(|sha| Committed {
        sha,
        message,
        files,
    }))
}

fn update_failed(e: impl std::fmt::Display) -> Failure {
    Failure::retry(
        UPDATE_FAILED_REASON,
        format!("failed to apply policies: {e}"),
    )
}

/// Applies the job's policies under its update path; returns the rendered commit message and the
/// changed files when a file changed. The message is rendered before anything is written, so a
/// template error leaves the tree untouched; any file that cannot be updated fails the job before
/// anything is written.
pub fn update(
    workdir: &Path,
    job: &Job,
) -> Result<Option<(String, Vec<setters::FileChanges>)>, Failure> {
    let Some((plan, message)) = plan_update(workdir, job)? else {
        return Ok(None);
    };
    let report = plan.apply();
    if let Some(e) = report.errors.first() {
        return Err(update_failed(format!("{}: {}", e.path, e.reason)));
    }
    Ok(Some((message, report.files)))
}

/// The first half of [`update`], writing nothing: the setters' plan of the job under its update
/// path and the rendered commit message; `None` when no file would change.
pub fn plan_update(workdir: &Path, job: &Job) -> Result<Option<(setters::Plan, String)>, Failure> {
    let root = secure_join(workdir, &job.update_path).map_err(update_failed)?;
    let setters = setters::Setters::new(&job.policies).map_err(update_failed)?;
    let plan = setters::plan(&root, &setters).map_err(update_failed)?;
    if let Some(e) = plan.report.errors.first() {
        return Err(update_failed(format!("{}: {}", e.path, e.reason)));
    }
    if plan.report.files.is_empty() {
        return Ok(None);
    }
    let input = crate::message::template_input(
        &plan.report,
        &job.policies,
        job.automation.clone(),
        job.commit.values.clone(),
    );
    let message = templates::render_commit_message(
        &job.commit.template,
        &input,
        &templates::Limits::default(),
    )
    .map_err(|e| {
        Failure::retry(
            GIT_OPERATION_FAILED_REASON,
            format!("failed to update source: {e}"),
        )
    })?;
    Ok(Some((plan, message)))
}

/// `pushed commit '<short>' to branch '<branch>'[ and refspecs '<r>'][\n<message>]` (§5.6).
pub fn push_summary(commit: &str, branches: &Branches, message: &str) -> String {
    let short: String = commit.chars().take(7).collect();
    let mut s = format!(
        "pushed commit '{short}' to branch '{}'",
        branches.push_branch
    );
    if let Some(r) = &branches.refspec {
        s.push_str(&format!(" and refspecs '{r}'"));
    }
    if !message.is_empty() {
        s.push('\n');
        s.push_str(message);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::git_repository::GitRepositoryRef;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const DEPLOY: &str = "kind: Deployment\nmetadata:\n  name: app\nspec:\n  image: app:1.0 # {\"$imagepolicy\": \"ns:app\"}\n";

    fn job(path: &str, template: &str) -> Job {
        Job {
            automation: NamespacedName {
                namespace: "ns".into(),
                name: "auto".into(),
            },
            remote: Remote {
                url: "http://h/r".into(),
                auth: BTreeMap::new(),
                provider: None,
                proxy: None,
                timeout: Duration::from_secs(1),
            },
            branches: Branches {
                checkout: GitRepositoryRef::default(),
                push_branch: "main".into(),
                switch_branch: false,
                refspec: None,
                push_options: BTreeMap::new(),
            },
            commit: CommitSettings {
                author_name: "bot".into(),
                author_email: "bot@example.com".into(),
                template: template.into(),
                values: None,
                signing: None,
            },
            update_path: path.into(),
            policies: [(
                "ns:app".to_owned(),
                setters::ImageRef::parse("app:2.0").unwrap(),
            )]
            .into(),
            started: Instant::now(),
        }
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, t) in files {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        }
        d
    }

    #[test]
    fn updates_under_the_path_and_renders_the_message() {
        let d = tree(&[("apps/deploy.yaml", DEPLOY), ("other/deploy.yaml", DEPLOY)]);
        let msg = update(
            d.path(),
            &job(
                "./apps",
                "{{ range $f, $_ := .Changed.FileChanges }}{{ $f }}{{ end }}",
            ),
        )
        .unwrap()
        .map(|(message, _files)| message);
        assert_eq!(msg.as_deref(), Some("deploy.yaml"));
        let read = |p: &str| std::fs::read_to_string(d.path().join(p)).unwrap();
        assert_eq!(
            read("apps/deploy.yaml"),
            DEPLOY.replace("app:1.0", "app:2.0")
        );
        assert_eq!(read("other/deploy.yaml"), DEPLOY);
        // Nothing left to change.
        assert_eq!(update(d.path(), &job("apps", "")).unwrap(), None);
        // The default message.
        let d = tree(&[("deploy.yaml", DEPLOY)]);
        assert_eq!(
            update(d.path(), &job("", ""))
                .unwrap()
                .map(|(m, _)| m)
                .as_deref(),
            Some("Update from image update automation")
        );
    }

    #[test]
    fn a_template_error_writes_nothing() {
        let d = tree(&[("deploy.yaml", DEPLOY)]);
        let err = update(d.path(), &job("", "{{ .Nope }")).unwrap_err();
        assert_eq!(err.reason(), GIT_OPERATION_FAILED_REASON);
        assert!(
            err.message().starts_with(
                "failed to update source: unable to create commit message template from spec"
            ),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("deploy.yaml")).unwrap(),
            DEPLOY
        );
    }

    #[test]
    fn an_unparsable_file_fails_the_job_and_writes_nothing() {
        let broken = format!("{DEPLOY}  bad: [unclosed\n");
        let d = tree(&[("a.yaml", DEPLOY), ("b.yaml", &broken)]);
        let err = update(d.path(), &job("", "")).unwrap_err();
        assert_eq!(err.reason(), UPDATE_FAILED_REASON);
        assert!(
            err.message()
                .starts_with("failed to apply policies: b.yaml: "),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("a.yaml")).unwrap(),
            DEPLOY
        );
    }

    #[test]
    fn a_missing_path_fails_the_job() {
        let d = tree(&[("deploy.yaml", DEPLOY)]);
        let err = update(d.path(), &job("../../nope", "")).unwrap_err();
        assert_eq!(err.reason(), UPDATE_FAILED_REASON);
        assert!(err.message().contains("walking path for files"), "{err}");
    }

    #[test]
    fn push_summaries_name_commit_branch_refspec_and_message() {
        let mut b = job("", "").branches;
        assert_eq!(
            push_summary("0123456789abcdef", &b, ""),
            "pushed commit '0123456' to branch 'main'"
        );
        b.refspec = Some("refs/heads/main:refs/heads/x".into());
        assert_eq!(
            push_summary("0123456789abcdef", &b, "msg"),
            "pushed commit '0123456' to branch 'main' and refspecs 'refs/heads/main:refs/heads/x'\nmsg"
        );
    }
}
