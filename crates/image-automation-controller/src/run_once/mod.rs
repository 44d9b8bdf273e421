//! `image-automation-controller run-once`: image automation without a cluster. One cycle over
//! manifests read from a directory or from the Git repository itself: scan (the reflector's
//! ImageRepository scan into a local tag store), select (the reflector's ImagePolicy reconciler),
//! then per ImageUpdateAutomation update, commit and push with the controller's own cycle.
//!
//! Exit codes: 0 nothing to do or changes pushed (the output tells which), 2 configuration error,
//! 3 transient failure (registry or Git unreachable, push rejected), 1 any other failure.

mod manifests;
mod objects;
mod reflect;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use api::ImagePolicy;
use api::image_update_automation::{
    GIT_OPERATION_FAILED_REASON, INVALID_POLICY_SELECTOR_REASON,
    INVALID_SOURCE_CONFIGURATION_REASON, SOURCE_MANAGER_FAILED_REASON, UPDATE_FAILED_REASON,
};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use runtime::features::{
    AUTOMATION_GATES, FeatureGates, GIT_ALL_BRANCH_REFERENCES, GIT_FORCE_PUSH_BRANCH,
    GIT_SHALLOW_CLONE, parse_assignments,
};
use serde::Serialize;

use crate::cycle::{Job, Outcome, Writers, plan_update};
use crate::gitops::{self, GitCache, GitSettings};
use crate::source::{self, Failure, ResolveOptions};
use manifests::Manifests;
use objects::LocalObjects;

/// Exit code: a configuration error (invalid manifest, missing object or secret, bad flag).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: a transient failure (registry or Git unreachable or failing); retrying may succeed.
pub const EXIT_TRANSIENT: u8 = 3;
/// Exit code: any other failure (local storage, internal error).
pub const EXIT_FAILED: u8 = 1;

/// The exit codes, as `run-once --help` shows them.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  nothing to do, or changes pushed (the output tells which; also a dry run that found changes)
  1  any other failure (local storage, internal error)
  2  configuration error: invalid manifest (file and field named), missing object or secret, bad flag
  3  transient failure: registry or Git server unreachable or failing, push rejected; retry later";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A summary for people.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of the `run-once` subcommand.
#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("input").required(true).multiple(true).args(["manifests", "manifests_in_repo"])
))]
pub struct RunOnceArgs {
    /// Directory (or file) of manifests: ImageRepository, ImagePolicy, ImageUpdateAutomation
    /// (v1beta1, v1beta2, v1), GitRepository, Secret, Namespace, ServiceAccount; repeatable.
    #[arg(long, value_name = "PATH")]
    pub manifests: Vec<PathBuf>,
    /// Path inside the Git repository --git-url to read manifests from (after cloning it).
    #[arg(long, value_name = "PATH", requires = "git_url")]
    pub manifests_in_repo: Option<String>,
    /// URL of the Git repository holding --manifests-in-repo.
    #[arg(long, value_name = "URL")]
    pub git_url: Option<String>,
    /// Branch of --git-url to read --manifests-in-repo from.
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    pub git_branch: String,
    /// Secret (under --secrets-dir) with the credentials of --git-url, as a GitRepository's secretRef.
    #[arg(long, value_name = "NAME")]
    pub git_secret: Option<String>,
    /// Directory of Secrets: `secretRef: {name: X}` reads DIR/X/, one file per key (as Kubernetes
    /// mounts a Secret). Secret manifests in the input are used first.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Directory for the tag store and the Git clones, kept between runs (default: a temporary
    /// directory, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub storage_path: Option<PathBuf>,
    /// Print the diff and the commit message of each automation; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Refuse references to objects of other namespaces, as the controllers' flag.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Feature gates of the automation controller (e.g. GitForcePushBranch=false).
    #[arg(long, value_name = "GATES", default_value = "")]
    pub feature_gates: String,
}

/// What kind of failure an error is (its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorKind {
    /// [`EXIT_TRANSIENT`].
    Transient,
    /// [`EXIT_FAILED`].
    Other,
    /// [`EXIT_CONFIG`].
    Config,
}

impl ErrorKind {
    fn exit_code(self) -> u8 {
        match self {
            Self::Config => EXIT_CONFIG,
            Self::Transient => EXIT_TRANSIENT,
            Self::Other => EXIT_FAILED,
        }
    }
}

/// An error of the run.
#[derive(Debug, Clone, Serialize)]
pub struct RunError {
    /// Its kind.
    pub kind: ErrorKind,
    /// What failed, naming the file or object.
    pub message: String,
}

impl RunError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A scanned ImageRepository.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct RepositorySummary {
    namespace: String,
    name: String,
    image: String,
    tag_count: i64,
    revision: String,
    latest_tags: Vec<String>,
}

/// A resolved ImagePolicy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicySummary {
    namespace: String,
    name: String,
    latest_image: String,
}

/// What happened to one automation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct AutomationSummary {
    namespace: String,
    name: String,
    file: String,
    /// `up-to-date`, `pushed`, `would-push` (dry run), `suspended` or `failed`.
    result: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    branch: String,
    /// The checked-out revision, or the pushed one (`<branch>@sha1:<hex>`); absent when the run failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    revision: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    commit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    files: Vec<setters::FileChanges>,
    #[serde(skip_serializing_if = "String::is_empty")]
    diff: String,
}

impl AutomationSummary {
    /// The summary of automation `namespace/name` of `file`, with nothing done yet.
    fn new(namespace: String, name: String, file: String, result: &'static str) -> Self {
        Self {
            namespace,
            name,
            file,
            result,
            branch: String::new(),
            revision: String::new(),
            commit: String::new(),
            message: String::new(),
            files: Vec::new(),
            diff: String::new(),
        }
    }
}

/// The result of a run: what `--output json` prints.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    /// `up-to-date`, `pushed`, `dry-run` or `failed`.
    result: &'static str,
    exit_code: u8,
    dry_run: bool,
    repositories: Vec<RepositorySummary>,
    policies: Vec<PolicySummary>,
    automations: Vec<AutomationSummary>,
    errors: Vec<RunError>,
    notes: Vec<String>,
}

/// Runs the subcommand; returns the exit code.
pub fn run(args: &RunOnceArgs, mut out: impl Write, mut err: impl Write) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "error: starting the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let summary = runtime.block_on(execute(args));
    let written = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&summary)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}")),
        OutputFormat::Text => write_text(&summary, args.dry_run, &mut out, &mut err),
    };
    if let Err(e) = written {
        let _ = writeln!(err, "error: writing the output: {e}");
        return summary.exit_code.max(EXIT_FAILED);
    }
    summary.exit_code
}

/// The run, as a summary (errors included).
async fn execute(args: &RunOnceArgs) -> Summary {
    let mut run = Run {
        summary: Summary {
            result: "up-to-date",
            exit_code: 0,
            dry_run: args.dry_run,
            repositories: Vec::new(),
            policies: Vec::new(),
            automations: Vec::new(),
            errors: Vec::new(),
            notes: Vec::new(),
        },
    };
    // Removed when the run ends; only used without --storage-path.
    let temp = match &args.storage_path {
        Some(_) => None,
        None => match tempfile::Builder::new().prefix("run-once-").tempdir() {
            Ok(t) => Some(t),
            Err(e) => {
                run.fail(
                    ErrorKind::Other,
                    format!("creating a temporary directory: {e}"),
                );
                return run.finish();
            }
        },
    };
    let storage = match (&args.storage_path, &temp) {
        (Some(p), _) => p.clone(),
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => return run.finish(),
    };
    if let Err(e) = run.cycle(args, &storage).await {
        run.summary.errors.push(e);
    }
    run.finish()
}

struct Run {
    summary: Summary,
}

impl Run {
    fn fail(&mut self, kind: ErrorKind, message: String) {
        self.summary.errors.push(RunError::new(kind, message));
    }

    fn finish(mut self) -> Summary {
        let s = &mut self.summary;
        s.exit_code = s
            .errors
            .iter()
            .map(|e| e.kind)
            .max()
            .map_or(0, ErrorKind::exit_code);
        s.result = if s.exit_code != 0 {
            "failed"
        } else if s.automations.iter().any(|a| a.result == "pushed") {
            "pushed"
        } else if s.automations.iter().any(|a| a.result == "would-push") {
            "dry-run"
        } else {
            "up-to-date"
        };
        self.summary
    }

    /// Load, scan, select, then each automation. Errors of scan and select stop the run before
    /// any automation runs, so nothing is pushed from a partial view.
    async fn cycle(
        &mut self,
        args: &RunOnceArgs,
        storage: &std::path::Path,
    ) -> Result<(), RunError> {
        let config = |m: String| RunError::new(ErrorKind::Config, m);
        let assignments = parse_assignments(&args.feature_gates)
            .map_err(|e| config(format!("--feature-gates: {e}")))?;
        let gates = FeatureGates::resolve(AUTOMATION_GATES, &assignments)
            .map_err(|e| config(format!("--feature-gates: {e}")))?;
        let metrics = Arc::new(runtime::metrics::Metrics::default());
        let cache = Arc::new(
            GitCache::new(
                &storage.join("git"),
                // The controller's default bound: with --storage-path the clones of every
                // repository read or written stay for the next run.
                1 << 30,
                GitSettings {
                    all_branch_refs: gates.enabled(GIT_ALL_BRANCH_REFERENCES),
                    force_push_branch: gates.enabled(GIT_FORCE_PUSH_BRANCH),
                    shallow: gates.enabled(GIT_SHALLOW_CLONE),
                    ssh: git::SshOptions::default(),
                },
                metrics,
            )
            .map_err(|e| {
                RunError::new(
                    ErrorKind::Other,
                    format!("opening the Git cache in {}: {e}", storage.display()),
                )
            })?,
        );
        let store = Arc::new(
            store::TagStore::open(storage.join("tags"), store::DEFAULT_COMPRESSION_THRESHOLD)
                .map_err(|e| {
                    RunError::new(ErrorKind::Other, format!("opening the tag store: {e}"))
                })?,
        );

        // 1. Input.
        let mut manifests = Manifests::default();
        let mut load_errors = Vec::new();
        for path in &args.manifests {
            if let Err(e) = manifests.load(path, &path.display().to_string()) {
                load_errors.extend(e);
            }
        }
        if let Some(path) = &args.manifests_in_repo
            && load_errors.is_empty()
        {
            let loaded = load_from_repo(args, path, &manifests, cache.clone()).await?;
            // The repository's documents are checked together with the local ones.
            if let Err(e) = manifests.merge(loaded) {
                load_errors.extend(e);
            }
        }
        self.summary.notes.append(&mut manifests.notes);
        if !load_errors.is_empty() {
            for e in load_errors {
                self.fail(ErrorKind::Config, e.to_string());
            }
            return Ok(());
        }
        let objects = LocalObjects::new(Arc::new(manifests), args.secrets_dir.clone());
        let m = objects.manifests();
        if m.automations.is_empty() {
            return Err(config("no ImageUpdateAutomation in the input".into()));
        }

        // 2. The policies each automation applies (in its namespace, matching its selector).
        let mut automations: Vec<_> = m.automations.iter().collect();
        automations.sort_by_key(|a| a.key());
        let mut selected: BTreeMap<String, Vec<&ImagePolicy>> = BTreeMap::new();
        for a in &automations {
            let ns = a.object.namespace().unwrap_or_default();
            let selector = match &a.object.spec.policy_selector {
                Some(s) => Some(Selector::try_from(s.clone()).map_err(|e| {
                    config(format!(
                        "{}: ImageUpdateAutomation {}: spec.policySelector: {e}",
                        a.file,
                        a.key()
                    ))
                })?),
                None => None,
            };
            let policies = m
                .policies
                .iter()
                .map(|p| &p.object)
                .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                .filter(|p| selector.as_ref().is_none_or(|s| s.matches(p.labels())))
                .collect();
            selected.insert(a.key(), policies);
        }
        let needed: BTreeSet<(String, String)> = selected
            .values()
            .flatten()
            .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
            .collect();

        // 3. Scan the repositories of those policies.
        let registry = registry::Client::new(registry::ClientConfig::default())
            .map_err(|e| RunError::new(ErrorKind::Other, format!("registry client: {e}")))?;
        let repo_of = |p: &ImagePolicy| {
            let r = &p.spec.image_repository_ref;
            format!(
                "{}/{}",
                r.namespace_or(&p.namespace().unwrap_or_default()),
                r.name
            )
        };
        let policy_objects: Vec<&ImagePolicy> = m
            .policies
            .iter()
            .map(|p| &p.object)
            .filter(|p| needed.contains(&(p.namespace().unwrap_or_default(), p.name_any())))
            .collect();
        let wanted: BTreeSet<String> = policy_objects.iter().map(|p| repo_of(p)).collect();
        let mut scanned = BTreeMap::new();
        let mut failed_repos = BTreeSet::new();
        for l in &m.repositories {
            let key = l.key();
            if !wanted.contains(&key) {
                continue;
            }
            let mut repo = l.object.clone();
            match reflect::scan(&registry, &store, &objects, &mut repo).await {
                Ok(result) => {
                    self.summary.repositories.push(RepositorySummary {
                        namespace: repo.namespace().unwrap_or_default(),
                        name: repo.name_any(),
                        image: repo.spec.image.clone(),
                        tag_count: result.tag_count,
                        revision: result.revision,
                        latest_tags: result.latest_tags,
                    });
                    scanned.insert(key, repo);
                }
                Err(e) => {
                    failed_repos.insert(key);
                    self.summary.errors.push(e);
                }
            }
        }

        // 4. Select.
        let reconciler = reflect::reconciler(
            reflect::LocalCluster {
                repositories: scanned,
                objects: objects.clone(),
                registry,
            },
            store,
            args.no_cross_namespace_refs,
        );
        let mut latest: BTreeMap<(String, String), api::ImageRef> = BTreeMap::new();
        for p in policy_objects {
            if failed_repos.contains(&repo_of(p)) {
                continue;
            }
            let mut p = p.clone();
            match reflect::select(&reconciler, &mut p).await {
                Ok(()) => {
                    let Some(r) = p.status.as_ref().and_then(|s| s.latest_ref.clone()) else {
                        continue;
                    };
                    self.summary.policies.push(PolicySummary {
                        namespace: p.namespace().unwrap_or_default(),
                        name: p.name_any(),
                        latest_image: crate::policies::image_string(&r),
                    });
                    latest.insert((p.namespace().unwrap_or_default(), p.name_any()), r);
                }
                Err(e) => self.summary.errors.push(e),
            }
        }
        if !self.summary.errors.is_empty() {
            return Ok(());
        }

        // 5. Each automation: update, commit, push (or the diff).
        let writers = Writers::new(cache.clone());
        for a in automations {
            let key = a.key();
            let ns = a.object.namespace().unwrap_or_default();
            let mut summary =
                AutomationSummary::new(ns.clone(), a.object.name_any(), a.file.clone(), "failed");
            if a.object.spec.suspend {
                summary.result = "suspended";
                self.summary.automations.push(summary);
                continue;
            }
            let observed: BTreeMap<String, api::ImageRef> = selected
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let name = p.name_any();
                    latest
                        .get(&(ns.clone(), name.clone()))
                        .map(|r| (name, r.clone()))
                })
                .collect();
            let what = format!("{}: ImageUpdateAutomation {key}", a.file);
            let git = GitSide {
                args,
                objects: &objects,
                cache: &cache,
                writers: &writers,
            };
            let result = git.automation(&a.object, observed, &mut summary).await;
            self.summary.automations.push(summary);
            if let Err(f) = result {
                self.summary
                    .errors
                    .push(RunError::new(classify(&f), format!("{what}: {f}")));
            }
        }
        Ok(())
    }
}

/// What the automations of a run share: flags, objects, clones and the controller's writers.
struct GitSide<'a> {
    args: &'a RunOnceArgs,
    objects: &'a LocalObjects,
    cache: &'a Arc<GitCache>,
    writers: &'a Writers,
}

impl GitSide<'_> {
    /// One automation: resolve its source, plan the update on a checkout, then push it through
    /// the controller's cycle (or only report it when dry-running).
    async fn automation(
        &self,
        automation: &api::ImageUpdateAutomation,
        observed: BTreeMap<String, api::ImageRef>,
        summary: &mut AutomationSummary,
    ) -> Result<(), Failure> {
        let GitSide {
            args,
            objects,
            cache,
            writers,
        } = *self;
        let started = Instant::now();
        let ns = automation.namespace().unwrap_or_default();
        let policies = crate::policies::setter_policies(&ns, &observed)?;
        let opts = ResolveOptions {
            no_cross_namespace_refs: args.no_cross_namespace_refs,
            object_level_workload_identity: false,
        };
        let source = source::resolve(objects, automation, opts).await?;
        summary.branch = source.branches.push_branch.clone();
        let job = Job::new(automation, source, policies, started);
        if args.dry_run {
            let cache = cache.clone();
            let planned = tokio::task::spawn_blocking(move || -> Result<_, Failure> {
                let mut workspace = gitops::checkout(&cache, &job.remote, &job.branches)?;
                let revision = workspace.revision();
                let plan = plan_update(workspace.tree().workdir(), &job)?;
                Ok((revision, plan))
            })
            .await
            .map_err(|e| source::git_failed(format!("the Git cycle failed: {e}")))??;
            let (revision, plan) = planned;
            summary.revision = revision;
            let Some((plan, message)) = plan else {
                summary.result = "up-to-date";
                return Ok(());
            };
            summary.files = plan.report.files.clone();
            summary.message = message;
            summary.diff = crate::update::diff(&plan);
            summary.result = "would-push";
            return Ok(());
        }
        // The writer checks out, updates, commits and pushes, as for the controller.
        match writers.submit(job).await? {
            Outcome::UpToDate { revision } => {
                summary.result = "up-to-date";
                summary.revision = revision;
            }
            Outcome::Pushed {
                commit,
                message,
                revision,
                files,
            } => {
                summary.result = "pushed";
                summary.commit = commit;
                summary.message = message;
                summary.revision = revision;
                summary.files = files;
            }
        }
        Ok(())
    }
}

/// Name of the GitRepository standing for `--git-url` (never one of the input's: those come later).
const GIT_URL_SOURCE: &str = "run-once-git-url";

/// Clones `--git-url` at `--git-branch` into the cache and loads the manifests under `path`. The
/// remote is resolved as an automation's source would be: a GitRepository for `--git-url` with
/// `--git-secret` as its `secretRef` (namespace `default`).
async fn load_from_repo(
    args: &RunOnceArgs,
    path: &str,
    manifests: &Manifests,
    cache: Arc<GitCache>,
) -> Result<Manifests, RunError> {
    let config = |m: String| RunError::new(ErrorKind::Config, m);
    let repo = serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": GIT_URL_SOURCE},
        "spec": {
            "url": args.git_url.clone().unwrap_or_default(),
            "interval": "1m",
            "ref": {"branch": args.git_branch},
            "secretRef": args.git_secret.as_ref().map(|n| serde_json::json!({"name": n})),
        },
    });
    let automation = serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImageUpdateAutomation",
        "metadata": {"name": GIT_URL_SOURCE},
        "spec": {
            "interval": "1m",
            "sourceRef": {"kind": "GitRepository", "name": GIT_URL_SOURCE},
            "git": {"commit": {"author": {"email": "run-once@localhost"}}},
        },
    });
    let mut with_source = manifests.clone();
    let documents = format!("{repo}\n---\n{automation}\n");
    with_source
        .load_text("--git-url", &documents)
        .map_err(|e| {
            config(
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    let automation = with_source
        .automations
        .pop()
        .map(|l| l.object)
        .ok_or_else(|| config("--git-url: no source".into()))?;
    let objects = LocalObjects::new(Arc::new(with_source), args.secrets_dir.clone());
    let opts = ResolveOptions {
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        object_level_workload_identity: false,
    };
    let source = source::resolve(&objects, &automation, opts)
        .await
        .map_err(|f| RunError::new(classify(&f), format!("--git-url: {f}")))?;
    let (remote, branches) = (source.remote, source.branches);
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut workspace = gitops::checkout(&cache, &remote, &branches)
            .map_err(|f| RunError::new(classify(&f), format!("--git-url: {f}")))?;
        let tree = workspace.tree();
        let root = crate::securejoin::secure_join(tree.workdir(), &path).map_err(|e| {
            RunError::new(
                ErrorKind::Config,
                format!("--manifests-in-repo {path}: {e}"),
            )
        })?;
        let mut loaded = Manifests::default();
        loaded.load(&root, &path).map_err(|errors| {
            RunError::new(
                ErrorKind::Config,
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        Ok(loaded)
    })
    .await
    .map_err(|e| RunError::new(ErrorKind::Other, format!("reading the repository: {e}")))?
}

/// The kind of an automation failure: what needs the input changed is configuration; Git
/// operations (clone, fetch, push) are transient.
fn classify(f: &Failure) -> ErrorKind {
    match f {
        Failure::Stalled { .. } => ErrorKind::Config,
        Failure::Retry { reason, message } => match *reason {
            SOURCE_MANAGER_FAILED_REASON
            | INVALID_SOURCE_CONFIGURATION_REASON
            | INVALID_POLICY_SELECTOR_REASON
            | UPDATE_FAILED_REASON => ErrorKind::Config,
            GIT_OPERATION_FAILED_REASON
                if message.contains("unable to create commit message template") =>
            {
                ErrorKind::Config
            }
            _ => ErrorKind::Transient,
        },
    }
}

/// The text output: what was scanned and selected, then per automation what it did (and the
/// diff when dry-running); errors and notes on `err`.
fn write_text(
    s: &Summary,
    dry_run: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    for r in &s.repositories {
        writeln!(
            out,
            "ImageRepository {}/{}: {} tags of {}",
            r.namespace, r.name, r.tag_count, r.image
        )?;
    }
    for p in &s.policies {
        writeln!(
            out,
            "ImagePolicy {}/{}: {}",
            p.namespace, p.name, p.latest_image
        )?;
    }
    for a in &s.automations {
        let head = format!("ImageUpdateAutomation {}/{}", a.namespace, a.name);
        match a.result {
            "up-to-date" => writeln!(out, "{head}: nothing to do ({})", a.revision)?,
            "suspended" => writeln!(out, "{head}: suspended, skipped")?,
            "failed" => writeln!(out, "{head}: failed")?,
            "would-push" => {
                writeln!(
                    out,
                    "{head}: would push to branch '{}' (dry run):",
                    a.branch
                )?;
                write!(out, "{}", a.diff)?;
                writeln!(out, "\n{}", a.message.trim_end())?;
            }
            _ => {
                let short: String = a.commit.chars().take(7).collect();
                writeln!(
                    out,
                    "{head}: pushed commit '{short}' to branch '{}'",
                    a.branch
                )?;
                crate::update::write_changes(&a.files, out)?;
            }
        }
    }
    for n in &s.notes {
        writeln!(err, "note: {n}")?;
    }
    for e in &s.errors {
        let kind = match e.kind {
            ErrorKind::Config => "configuration error",
            ErrorKind::Transient => "transient error",
            ErrorKind::Other => "error",
        };
        writeln!(err, "{kind}: {}", e.message)?;
    }
    let last = match s.result {
        "pushed" => "changes pushed",
        "dry-run" if dry_run => "dry run: changes found, nothing pushed",
        "up-to-date" => "nothing to do",
        _ => "failed",
    };
    writeln!(out, "{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(errors: &[ErrorKind], automations: &[&'static str]) -> Summary {
        let run = Run {
            summary: Summary {
                result: "",
                exit_code: 0,
                dry_run: false,
                repositories: Vec::new(),
                policies: Vec::new(),
                automations: automations
                    .iter()
                    .map(|r| AutomationSummary::new("ns".into(), "a".into(), "f.yaml".into(), r))
                    .collect(),
                errors: errors.iter().map(|k| RunError::new(*k, "x")).collect(),
                notes: Vec::new(),
            },
        };
        run.finish()
    }

    #[test]
    fn the_exit_code_is_the_most_actionable_error_and_the_result_tells_success_apart() {
        let s = summary(&[], &["up-to-date", "suspended"]);
        assert_eq!((s.exit_code, s.result), (0, "up-to-date"));
        let s = summary(&[], &["up-to-date", "pushed"]);
        assert_eq!((s.exit_code, s.result), (0, "pushed"));
        let s = summary(&[], &["would-push"]);
        assert_eq!((s.exit_code, s.result), (0, "dry-run"));
        let s = summary(&[ErrorKind::Transient], &["pushed"]);
        assert_eq!((s.exit_code, s.result), (EXIT_TRANSIENT, "failed"));
        let s = summary(&[ErrorKind::Transient, ErrorKind::Other], &[]);
        assert_eq!(s.exit_code, EXIT_FAILED);
        let s = summary(
            &[ErrorKind::Transient, ErrorKind::Config, ErrorKind::Other],
            &[],
        );
        assert_eq!(s.exit_code, EXIT_CONFIG);
    }

    #[test]
    fn automation_failures_are_configuration_unless_git_failed() {
        let retry = |reason, message: &str| Failure::retry(reason, message);
        assert_eq!(
            classify(&Failure::stalled(INVALID_SOURCE_CONFIGURATION_REASON, "x")),
            ErrorKind::Config
        );
        for reason in [SOURCE_MANAGER_FAILED_REASON, UPDATE_FAILED_REASON] {
            assert_eq!(classify(&retry(reason, "x")), ErrorKind::Config);
        }
        assert_eq!(
            classify(&retry(
                GIT_OPERATION_FAILED_REASON,
                "failed to checkout source: unable to connect"
            )),
            ErrorKind::Transient
        );
        assert_eq!(
            classify(&retry(
                GIT_OPERATION_FAILED_REASON,
                "failed to update source: unable to create commit message template from spec: x"
            )),
            ErrorKind::Config
        );
    }

    #[test]
    fn text_output_ends_with_what_happened() {
        let s = summary(&[], &["up-to-date"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        write_text(&s, false, &mut out, &mut err).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "ImageUpdateAutomation ns/a: nothing to do ()\nnothing to do\n"
        );
        let s = summary(&[ErrorKind::Config], &[]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        write_text(&s, false, &mut out, &mut err).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "failed\n");
        assert_eq!(String::from_utf8(err).unwrap(), "configuration error: x\n");
    }
}
