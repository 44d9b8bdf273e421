//! image-automation-controller end to end: the real API server, a real Git server (HTTP with basic auth),
//! the controller as a process with its own RBAC identity, sharded per test by `--watch-label-selector`.
//!
//! ImagePolicies get their `status.latestRef` written through the status subresource here, as
//! image-reflector-controller would; the guide test in `guide_e2e.rs` runs both controllers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{
    KUBECONFIG_AUTOMATION, admin_client, controller_binary, create_namespace, eventually,
    testenv_var, unique_name,
};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use runtime::test_support::Process;
use serde_json::{Value, json};
use testenv::GitTransport;

const GUIDE_DEPLOYMENT: &str =
    include_str!("../../examples/guide/clusters/my-cluster/podinfo-deployment.yaml");
const DEPLOYMENT_PATH: &str = "clusters/my-cluster/podinfo-deployment.yaml";
const GUIDE_TEMPLATE: &str = "{{range .Updated.Images}}{{println .}}{{end}}";

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

fn flux(kind: &str) -> ApiResource {
    let plural = match kind {
        "ImagePolicy" => "imagepolicies",
        "ImageRepository" => "imagerepositories",
        _ => "imageupdateautomations",
    };
    resource("image.toolkit.fluxcd.io", kind, plural)
}

/// One test's world: a namespace, a Git repository served over HTTP with basic auth, its
/// GitRepository and credentials Secret, and a controller sharded to this test's objects.
struct World {
    client: kube::Client,
    ns: String,
    label: (String, String),
    repo: String,
    bare: PathBuf,
    controller: Process,
    _cache: tempfile::TempDir,
}

impl World {
    async fn new(prefix: &str, files: &[(&str, &str)]) -> Result<Self> {
        Self::with_env(prefix, files, &[]).await
    }

    /// A world whose controller runs with extra environment variables.
    async fn with_env(prefix: &str, files: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Self> {
        Self::with_flags(prefix, files, &[], vars).await
    }

    /// A world whose controller runs with extra flags and environment variables.
    async fn with_flags(
        prefix: &str,
        files: &[(&str, &str)],
        flags: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<Self> {
        let client = admin_client().await?;
        let ns = create_namespace(&client, prefix).await?;
        let shard = unique_name(prefix)?;
        let label = ("e2e-shard".to_owned(), shard);
        let env = testenv::env();
        let repo = unique_name(prefix)?;
        // Markers name policies of the guide's namespace; each test has its own.
        let files: Vec<(&str, String)> =
            files.iter().map(|(p, t)| (*p, localize(t, &ns))).collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let bare = env.seed_repo(&repo, &files)?;
        let cache = tempfile::tempdir()?;
        let kubeconfig = testenv_var(KUBECONFIG_AUTOMATION)?;
        let args = [
            format!("--kubeconfig={kubeconfig}"),
            format!("--watch-label-selector=e2e-shard={}", label.1),
            format!("--git-cache-path={}", cache.path().display()),
            "--min-retry-delay=200ms".to_owned(),
            "--max-retry-delay=5s".to_owned(),
            "--log-level=debug".to_owned(),
        ];
        let args: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .chain(flags.iter().copied())
            .collect();
        let controller = Process::start_with_env(
            &controller_binary("image-automation-controller")?,
            &args,
            vars,
        )
        .context("starting image-automation-controller")?;
        let world = World {
            client,
            ns,
            label,
            repo,
            bare,
            controller,
            _cache: cache,
        };
        world.git_repository("flux-system").await?;
        Ok(world)
    }

    /// Automation `name` on GitRepository `source` pushes the guide's update to podinfo 5.0.3 (a
    /// commit after `seed`) and is Ready.
    async fn updates_podinfo(&self, name: &str, source: &str, seed: &str) -> Result<()> {
        self.automation(name, json!({"sourceRef": {"name": source}}))
            .await?;
        self.wait_for_commit("main", seed).await?;
        ensure!(
            self.file("main", DEPLOYMENT_PATH)? == localize(&with_tag("5.0.3"), &self.ns),
            "unexpected update"
        );
        self.wait_for_condition(name, "Ready", "True", "Succeeded")
            .await?;
        Ok(())
    }

    fn api(&self, ar: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, ar)
    }

    async fn create(&self, ar: &ApiResource, body: Value) -> Result<()> {
        let obj: DynamicObject = serde_json::from_value(body)?;
        self.api(ar)
            .create(&PostParams::default(), &obj)
            .await
            .with_context(|| format!("creating {}", ar.kind))?;
        Ok(())
    }

    /// The credentials Secret and the GitRepository `name` for this world's repository.
    async fn git_repository(&self, name: &str) -> Result<()> {
        let env = testenv::env();
        let (user, password) = env.credentials()?;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), &self.ns);
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-auth")},
            "stringData": {"username": user, "password": password},
        }))?;
        if secrets.get_opt(&format!("{name}-auth")).await?.is_none() {
            secrets.create(&PostParams::default(), &secret).await?;
        }
        self.create_git_repository(
            name,
            GitTransport::HttpBasic,
            json!({"secretRef": {"name": format!("{name}-auth")}}),
        )
        .await
    }

    /// GitRepository `name` for this world's repository over `transport` (branch `main`), `spec`
    /// merged into its spec.
    async fn create_git_repository(
        &self,
        name: &str,
        transport: GitTransport,
        spec: Value,
    ) -> Result<()> {
        let mut base = json!({
            "url": testenv::env().git_url(transport, &self.repo)?,
            "interval": "1m",
            "ref": {"branch": "main"},
        });
        merge(&mut base, spec);
        self.create(
            &resource(
                "source.toolkit.fluxcd.io",
                "GitRepository",
                "gitrepositories",
            ),
            json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": name, "namespace": self.ns},
                "spec": base,
            }),
        )
        .await
    }

    /// What users and logs can see of automations `names`: their objects (status), their events
    /// and the controller's log.
    async fn visible(&self, names: &[&str]) -> Result<String> {
        let mut seen = String::new();
        for name in names {
            seen.push_str(&serde_json::to_string(&self.automation_obj(name).await?)?);
            for (_, _, m) in self.events(name).await? {
                seen.push_str(&m);
            }
        }
        seen.push_str(&self.controller.logs());
        Ok(seen)
    }

    /// An ImagePolicy whose latest image is `image:tag`, as image-reflector-controller would write it.
    async fn policy(&self, name: &str, image: &str, tag: &str) -> Result<()> {
        let api = self.api(&flux("ImagePolicy"));
        if api.get_opt(name).await?.is_none() {
            self.create(
                &flux("ImagePolicy"),
                json!({
                    "apiVersion": "image.toolkit.fluxcd.io/v1",
                    "kind": "ImagePolicy",
                    "metadata": {"name": name, "namespace": self.ns, "labels": {"app": name}},
                    "spec": {"imageRepositoryRef": {"name": name}, "policy": {"semver": {"range": ">=0.0.0"}}},
                }),
            )
            .await?;
        }
        let status = json!({"status": {"latestRef": {"name": image, "tag": tag}}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .context("writing the policy's latestRef")?;
        Ok(())
    }

    /// An ImageUpdateAutomation of this shard; `git` and `extra` are merged into the guide's spec.
    async fn automation(&self, name: &str, spec: Value) -> Result<()> {
        let mut base = json!({
            "interval": "1m0s",
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            "git": {
                "checkout": {"ref": {"branch": "main"}},
                "commit": {"author": {"email": "fluxcdbot@users.noreply.github.com", "name": "fluxcdbot"},
                           "messageTemplate": GUIDE_TEMPLATE},
                "push": {"branch": "main"},
            },
            "update": {"path": "./clusters/my-cluster", "strategy": "Setters"},
        });
        merge(&mut base, spec);
        self.create(
            &flux("ImageUpdateAutomation"),
            json!({
                "apiVersion": "image.toolkit.fluxcd.io/v1",
                "kind": "ImageUpdateAutomation",
                "metadata": {"name": name, "namespace": self.ns,
                             "labels": {&self.label.0: &self.label.1}},
                "spec": base,
            }),
        )
        .await
    }

    async fn patch_automation(&self, name: &str, patch: Value) -> Result<()> {
        self.api(&flux("ImageUpdateAutomation"))
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn automation_obj(&self, name: &str) -> Result<Value> {
        let obj = self.api(&flux("ImageUpdateAutomation")).get(name).await?;
        Ok(serde_json::to_value(obj)?)
    }

    fn git(&self, args: &[&str]) -> Result<String> {
        Ok(testenv::git::git(&self.bare, args)?)
    }

    fn head(&self, branch: &str) -> Result<String> {
        Ok(self
            .git(&["rev-parse", &format!("refs/heads/{branch}")])?
            .trim()
            .to_owned())
    }

    fn file(&self, branch: &str, path: &str) -> Result<String> {
        self.git(&["show", &format!("{branch}:{path}")])
    }

    /// Waits until `branch` moves away from `from`; returns the new head.
    async fn wait_for_commit(&self, branch: &str, from: &str) -> Result<String> {
        eventually(&format!("a new commit on {branch}"), || async {
            let head = self.head(branch).unwrap_or_default();
            ensure!(
                !head.is_empty() && head != from,
                "{branch} is still at {from}"
            );
            Ok(head)
        })
        .await
        .with_context(|| self.controller.logs())
    }

    /// Waits until the automation's condition `type_` has `status` and `reason`; returns it.
    async fn wait_for_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<Value> {
        eventually(
            &format!("{type_}={status} ({reason}) on {name}"),
            || async {
                let obj = self.automation_obj(name).await?;
                let cond = condition(&obj, type_)
                    .with_context(|| format!("no {type_} yet: {}", obj["status"]))?;
                ensure!(
                    cond["status"] == status && cond["reason"] == reason,
                    "{type_} is {cond}"
                );
                Ok(cond)
            },
        )
        .await
        .with_context(|| self.controller.logs())
    }

    async fn events(&self, name: &str) -> Result<Vec<(String, String, String)>> {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        let list = api.list(&Default::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect())
    }
}

/// `text` with the markers' namespace `flux-system` replaced by `ns`.
fn localize(text: &str, ns: &str) -> String {
    text.replace("\"flux-system:", &format!("\"{ns}:"))
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn guide_files() -> Vec<(&'static str, &'static str)> {
    vec![(DEPLOYMENT_PATH, GUIDE_DEPLOYMENT)]
}

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

fn with_tag(tag: &str) -> String {
    GUIDE_DEPLOYMENT.replace(&format!("{PODINFO}:5.0.0 #"), &format!("{PODINFO}:{tag} #"))
}

/// The guide's update: 5.0.0 → 5.0.3 on main, byte for byte; the message follows the template;
/// status fields and the push event are set; then the range goes back to 5.0.0 and it commits back.
#[tokio::test(flavor = "multi_thread")]
async fn the_guide_updates_main_and_reverts() -> Result<()> {
    let w = World::new("iua-guide", &guide_files()).await?;
    let seed = w.head("main")?;
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    w.automation("flux-system", json!({})).await?;
    let head = w.wait_for_commit("main", &seed).await?;
    let file = w.file("main", DEPLOYMENT_PATH)?;
    assert_eq!(file, localize(&with_tag("5.0.3"), &w.ns));
    assert!(file.contains(&format!(
        "image: {PODINFO}:5.0.3 # {{\"$imagepolicy\": \"{}:podinfo\"}}",
        w.ns
    )));
    let message = w.git(&["log", "-1", "--format=%B", "main"])?;
    assert_eq!(message.trim_end(), format!("{PODINFO}:5.0.3"));
    let author = w.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", "main"])?;
    assert_eq!(
        author.trim(),
        "fluxcdbot <fluxcdbot@users.noreply.github.com>|fluxcdbot <fluxcdbot@users.noreply.github.com>"
    );
    w.wait_for_condition("flux-system", "Ready", "True", "Succeeded")
        .await?;
    let obj = w.automation_obj("flux-system").await?;
    let status = &obj["status"];
    assert_eq!(status["lastPushCommit"], head.as_str(), "{status}");
    assert_eq!(
        status["observedSourceRevision"],
        format!("main@sha1:{head}"),
        "{status}"
    );
    assert_eq!(
        status["observedPolicies"]["podinfo"],
        json!({"name": PODINFO, "tag": "5.0.3"})
    );
    assert!(
        status["lastPushTime"].is_string() && status["lastAutomationRunTime"].is_string(),
        "{status}"
    );
    assert_eq!(
        condition(&obj, "Ready").context("Ready")?["message"],
        "repository up-to-date"
    );
    // Events are written in the background, so they may land just after the status.
    let short = &head[..7];
    eventually("the push event", || async {
        let events = w.events("flux-system").await?;
        ensure!(
            events.iter().any(|(t, r, m)| t == "Normal"
                && r == "Succeeded"
                && *m == format!("pushed commit '{short}' to branch 'main'\n{PODINFO}:5.0.3\n")),
            "no push event: {events:?}"
        );
        Ok(())
    })
    .await?;

    // Flux's metrics, plus push latency and per-repository Git operation timings.
    let (code, metrics) =
        Process::get(&w.controller.metrics, "/metrics").context("GET /metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    let url = testenv::env().git_url(GitTransport::HttpBasic, &w.repo)?;
    for series in [
        "gotk_reconcile_duration_seconds_count{kind=\"ImageUpdateAutomation\"".to_owned(),
        format!("gotk_push_latency_seconds_count{{repository=\"{url}\"}}"),
        format!(
            "gotk_git_operation_duration_seconds_count{{repository=\"{url}\",operation=\"checkout\"}}"
        ),
        format!(
            "gotk_git_operation_duration_seconds_count{{repository=\"{url}\",operation=\"commit\"}}"
        ),
        format!(
            "gotk_git_operation_duration_seconds_count{{repository=\"{url}\",operation=\"push\"}}"
        ),
    ] {
        ensure!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }

    // Revert: the policy goes back to 5.0.0; the policy watch runs the automation at once.
    w.policy("podinfo", PODINFO, "5.0.0").await?;
    let back = w.wait_for_commit("main", &head).await?;
    assert_eq!(
        w.file("main", DEPLOYMENT_PATH)?,
        localize(GUIDE_DEPLOYMENT, &w.ns)
    );
    assert_eq!(w.git(&["rev-parse", &format!("{back}^")])?.trim(), head);
    Ok(())
}

/// Push to a different branch: main stays, the new branch gets the commit on top of main.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_a_different_branch() -> Result<()> {
    let w = World::new("iua-branch", &guide_files()).await?;
    let seed = w.head("main")?;
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    w.automation(
        "flux-system",
        json!({"git": {"push": {"branch": "image-updates"}}}),
    )
    .await?;
    let head = w.wait_for_commit("image-updates", "").await?;
    assert_eq!(
        w.file("image-updates", DEPLOYMENT_PATH)?,
        localize(&with_tag("5.0.3"), &w.ns)
    );
    assert_eq!(w.head("main")?, seed);
    assert_eq!(w.git(&["rev-parse", &format!("{head}^")])?.trim(), seed);
    w.wait_for_condition("flux-system", "Ready", "True", "Succeeded")
        .await?;
    let status = w.automation_obj("flux-system").await?["status"].clone();
    // When switching branch, the observed revision is the checkout's.
    assert_eq!(
        status["observedSourceRevision"],
        format!("main@sha1:{seed}")
    );
    assert_eq!(status["lastPushCommit"], head.as_str());
    Ok(())
}

/// A suspended automation pushes nothing, even when its policy changes; resumed, it pushes.
#[tokio::test(flavor = "multi_thread")]
async fn suspend_pushes_nothing_and_resume_pushes() -> Result<()> {
    let w = World::new("iua-suspend", &guide_files()).await?;
    let seed = w.head("main")?;
    w.automation("flux-system", json!({"suspend": true}))
        .await?;
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    // The finalizer is added even when suspended: wait for it, then give the policy trigger time to act.
    eventually("the finalizer", || async {
        let obj = w.automation_obj("flux-system").await?;
        ensure!(obj["metadata"]["finalizers"].is_array(), "no finalizer");
        Ok(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.head("main")?, seed, "a suspended automation pushed");
    let obj = w.automation_obj("flux-system").await?;
    assert!(
        obj["status"]["lastPushCommit"].is_null(),
        "{}",
        obj["status"]
    );
    w.patch_automation("flux-system", json!({"spec": {"suspend": false}}))
        .await?;
    w.wait_for_commit("main", &seed).await?;
    assert_eq!(
        w.file("main", DEPLOYMENT_PATH)?,
        localize(&with_tag("5.0.3"), &w.ns)
    );
    Ok(())
}

const CUSTOM_RESOURCES: &str = r#"apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: default
spec:
  values:
    image:
      repository: ghcr.io/stefanprodan/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}
      tag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
---
apiVersion: tekton.dev/v1beta1
kind: Task
metadata:
  name: golang
  namespace: default
spec:
  steps:
    - image: ghcr.io/stefanprodan/podinfo:5.0.0 # {"$imagepolicy": "flux-system:podinfo"}
      name: build
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: podinfo
  namespace: flux-system
spec:
  images:
    - name: podinfo
      newName: ghcr.io/stefanprodan/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}
      newTag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
"#;

const KUSTOMIZATION: &str = r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - podinfo-deployment.yaml
images:
  - name: ghcr.io/stefanprodan/podinfo
    newName: ghcr.io/stefanprodan/podinfo # {"$imagepolicy": "flux-system:podinfo:name"}
    newTag: 5.0.0 # {"$imagepolicy": "flux-system:podinfo:tag"}
"#;

/// The guide's custom-resource examples (HelmRelease, Tekton Task, Flux Kustomization, kustomize
/// `images:`) are updated through `:name` and `:tag` markers, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn custom_resources_update_through_name_and_tag_markers() -> Result<()> {
    let w = World::new(
        "iua-cr",
        &[
            ("clusters/my-cluster/custom.yaml", CUSTOM_RESOURCES),
            ("clusters/my-cluster/kustomization.yaml", KUSTOMIZATION),
        ],
    )
    .await?;
    let seed = w.head("main")?;
    w.policy("podinfo", "ghcr.io/stefanprodan/podinfo-next", "5.0.3")
        .await?;
    w.automation("flux-system", json!({})).await?;
    w.wait_for_commit("main", &seed).await?;
    let want = |text: &str| {
        localize(text, &w.ns)
            .replace("5.0.0", "5.0.3")
            .replace(
                "ghcr.io/stefanprodan/podinfo ",
                "ghcr.io/stefanprodan/podinfo-next ",
            )
            .replace(
                "ghcr.io/stefanprodan/podinfo:",
                "ghcr.io/stefanprodan/podinfo-next:",
            )
    };
    assert_eq!(
        w.file("main", "clusters/my-cluster/custom.yaml")?,
        want(CUSTOM_RESOURCES)
    );
    // The `name:` (the image kustomize matches) has no marker and stays.
    assert_eq!(
        w.file("main", "clusters/my-cluster/kustomization.yaml")?,
        want(KUSTOMIZATION)
    );
    Ok(())
}

/// Two automations on one repository and branch, each with its own policy and file: both land,
/// neither push is lost, each status names its own commit.
#[tokio::test(flavor = "multi_thread")]
async fn two_automations_on_one_branch_both_land() -> Result<()> {
    let w = World::new("iua-two", &[]).await?;
    let a = localize(&GUIDE_DEPLOYMENT.replace(":podinfo\"", ":app-a\""), &w.ns);
    let b = localize(&GUIDE_DEPLOYMENT.replace(":podinfo\"", ":app-b\""), &w.ns);
    let work = tempfile::tempdir()?;
    seed_files(
        &w.bare,
        work.path(),
        &[("a/deploy.yaml", &a), ("b/deploy.yaml", &b)],
    )?;
    let seed = w.head("main")?;
    w.policy("app-a", PODINFO, "5.0.1").await?;
    w.policy("app-b", PODINFO, "5.0.2").await?;
    for (name, path, policy) in [("auto-a", "./a", "app-a"), ("auto-b", "./b", "app-b")] {
        w.automation(
            name,
            json!({"update": {"path": path},
                   "policySelector": {"matchLabels": {"app": policy}},
                   "git": {"commit": {"messageTemplate": format!("{name}: {GUIDE_TEMPLATE}")}}}),
        )
        .await?;
    }
    eventually("both commits on main", || async {
        let a_ok = w.file("main", "a/deploy.yaml")?.contains(":5.0.1 #");
        let b_ok = w.file("main", "b/deploy.yaml")?.contains(":5.0.2 #");
        ensure!(a_ok && b_ok, "a: {a_ok}, b: {b_ok}");
        Ok(())
    })
    .await
    .with_context(|| w.controller.logs())?;
    let log = w.git(&["log", "--format=%H %s", &format!("{seed}..main")])?;
    for (name, tag) in [("auto-a", "5.0.1"), ("auto-b", "5.0.2")] {
        w.wait_for_condition(name, "Ready", "True", "Succeeded")
            .await?;
        let status = w.automation_obj(name).await?["status"].clone();
        let commit = status["lastPushCommit"]
            .as_str()
            .context("lastPushCommit")?
            .to_owned();
        ensure!(
            log.lines()
                .any(|l| *l == format!("{commit} {name}: {PODINFO}:{tag}")),
            "{name}'s commit {commit} is not on main:\n{log}"
        );
    }
    Ok(())
}

/// Commits `files` on top of main of `bare` through a work tree in `work`.
fn seed_files(bare: &Path, work: &Path, files: &[(&str, &str)]) -> Result<()> {
    let bare = bare.to_str().context("path")?;
    testenv::git::git(work, &["clone", "-q", bare, "w"])?;
    let w = work.join("w");
    for (path, text) in files {
        let p = w.join(path);
        std::fs::create_dir_all(p.parent().context("parent")?)?;
        std::fs::write(p, text)?;
    }
    testenv::git::git(&w, &["add", "-A"])?;
    testenv::git::git(&w, &["commit", "-q", "-m", "files"])?;
    testenv::git::git(&w, &["push", "-q", "origin", "main"])?;
    Ok(())
}

/// Bad input gives the spec's conditions and commits nothing: a missing GitRepository, a
/// template error, an unparsable file, a rejected push.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_conditions_and_no_commit() -> Result<()> {
    let broken = format!("{GUIDE_DEPLOYMENT}  bad: [unclosed\n");
    let w = World::new(
        "iua-bad",
        &[
            (DEPLOYMENT_PATH, GUIDE_DEPLOYMENT),
            ("broken/deploy.yaml", &broken),
        ],
    )
    .await?;
    let seed = w.head("main")?;
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    // Missing GitRepository.
    w.automation("missing-repo", json!({"sourceRef": {"name": "nope"}}))
        .await?;
    let ready = w
        .wait_for_condition("missing-repo", "Ready", "False", "SourceManagerFailed")
        .await?;
    ensure!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("referenced git repository does not exist"),
        "{ready}"
    );
    // Template error: retried, nothing committed.
    w.automation(
        "bad-template",
        json!({"git": {"commit": {"messageTemplate": "{{ .Nope }"}}}),
    )
    .await?;
    let ready = w
        .wait_for_condition("bad-template", "Ready", "False", "GitOperationFailed")
        .await?;
    ensure!(
        ready["message"].as_str().unwrap_or_default().starts_with(
            "failed to update source: unable to create commit message template from spec"
        ),
        "{ready}"
    );
    // A file that cannot be parsed: UpdateFailed naming it.
    w.automation("bad-file", json!({"update": {"path": "./broken"}}))
        .await?;
    let ready = w
        .wait_for_condition("bad-file", "Ready", "False", "UpdateFailed")
        .await?;
    ensure!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deploy.yaml"),
        "{ready}"
    );
    // A push the server rejects (the anonymous HTTP endpoint is read-only).
    let url = testenv::env().git_url(GitTransport::Http, &w.repo)?;
    w.create(
        &resource(
            "source.toolkit.fluxcd.io",
            "GitRepository",
            "gitrepositories",
        ),
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
               "metadata": {"name": "read-only", "namespace": w.ns},
               "spec": {"url": url, "interval": "1m"}}),
    )
    .await?;
    w.automation("rejected", json!({"sourceRef": {"name": "read-only"}}))
        .await?;
    let ready = w
        .wait_for_condition("rejected", "Ready", "False", "GitOperationFailed")
        .await?;
    ensure!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("failed to push to remote"),
        "{ready}"
    );
    let obj = w.automation_obj("rejected").await?;
    ensure!(
        condition(&obj, "Reconciling").is_some_and(|c| c["reason"] == "ProgressingWithRetry"),
        "{}",
        obj["status"]
    );
    eventually("the GitOperationFailed event", || async {
        let events = w.events("rejected").await?;
        ensure!(
            events
                .iter()
                .any(|(t, r, _)| t == "Warning" && r == "GitOperationFailed"),
            "{events:?}"
        );
        Ok(())
    })
    .await?;
    // A policy that is not ready (no latestRef yet) is left out, as Flux does: nothing to apply.
    w.create(
        &flux("ImagePolicy"),
        json!({"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy",
               "metadata": {"name": "pending", "namespace": w.ns, "labels": {"app": "pending"}},
               "spec": {"imageRepositoryRef": {"name": "pending"}, "policy": {"semver": {"range": "1.x"}}}}),
    )
    .await?;
    w.automation(
        "not-ready",
        json!({"policySelector": {"matchLabels": {"app": "pending"}}}),
    )
    .await?;
    w.wait_for_condition("not-ready", "Ready", "True", "Succeeded")
        .await?;
    let status = w.automation_obj("not-ready").await?["status"].clone();
    ensure!(
        status["observedPolicies"].is_null() && status["lastPushCommit"].is_null(),
        "{status}"
    );
    ensure!(
        status["observedSourceRevision"] == format!("main@sha1:{seed}"),
        "{status}"
    );
    assert_eq!(w.head("main")?, seed, "bad input led to a commit");
    Ok(())
}

const GUIDE_MANIFESTS: [&str; 3] = [
    include_str!("../../examples/guide/clusters/my-cluster/podinfo-registry.yaml"),
    include_str!("../../examples/guide/clusters/my-cluster/podinfo-policy.yaml"),
    include_str!("../../examples/guide/clusters/my-cluster/flux-system-automation.yaml"),
];

/// A guide manifest with the image on the local registry and this run's shard label.
fn guide_manifest(text: &str, registry: &str, label: &(String, String)) -> Result<String> {
    let text = text.replace("ghcr.io/", &format!("{registry}/"));
    let with_label = text.replacen(
        "metadata:\n",
        &format!("metadata:\n  labels:\n    {}: {}\n", label.0, label.1),
        1,
    );
    ensure!(with_label != text, "no metadata in:\n{text}");
    Ok(with_label)
}

/// The guide, verbatim, on both controllers: the registry holds podinfo 5.0.0 to 5.0.3, the
/// manifest holds 5.0.0 with the guide's marker; applying the guide's ImageRepository, ImagePolicy
/// (5.0.x) and ImageUpdateAutomation in flux-system yields a commit on main that changes only the
/// tag, with the guide's message; setting the range to 5.0.0 commits back.
#[tokio::test(flavor = "multi_thread")]
async fn the_guide_end_to_end_on_both_controllers() -> Result<()> {
    let env = testenv::env();
    let registry = env.registry(testenv::RegistryVariant::Anonymous)?;
    testenv::registry::RegistryClient::new(&registry)?
        .push_tags(
            "stefanprodan/podinfo",
            &["5.0.0", "5.0.1", "5.0.2", "5.0.3"],
            4,
        )
        .await?;
    let host = registry.host.clone();
    let label = ("e2e-shard".to_owned(), unique_name("guide")?);
    let storage = tempfile::tempdir()?;
    let reflector = Process::start(
        &controller_binary("image-reflector-controller")?,
        &[
            &format!("--kubeconfig={}", testenv_var(e2e::KUBECONFIG_REFLECTOR)?),
            &format!("--watch-label-selector={}={}", label.0, label.1),
            &format!("--storage-path={}", storage.path().display()),
        ],
    )?;
    let cache = tempfile::tempdir()?;
    let automation = Process::start(
        &controller_binary("image-automation-controller")?,
        &[
            &format!("--kubeconfig={}", testenv_var(KUBECONFIG_AUTOMATION)?),
            &format!("--watch-label-selector={}={}", label.0, label.1),
            &format!("--git-cache-path={}", cache.path().display()),
        ],
    )?;
    let logs = || format!("{}\n{}", reflector.logs(), automation.logs());

    // The cluster repository: the guide's Deployment, image on the local registry.
    let deployment = GUIDE_DEPLOYMENT.replace("ghcr.io/", &format!("{host}/"));
    let repo = unique_name("guide")?;
    let bare = env.seed_repo(&repo, &[(DEPLOYMENT_PATH, &deployment)])?;
    let git = |args: &[&str]| testenv::git::git(&bare, args);
    let seed = git(&["rev-parse", "main"])?.trim().to_owned();
    let (user, password) = env.credentials()?;
    let source = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: flux-system-e2e-auth\n  namespace: flux-system\n\
         stringData:\n  username: {user}\n  password: {password}\n---\n\
         apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: flux-system\n  namespace: flux-system\n\
         spec:\n  interval: 1m0s\n  ref:\n    branch: main\n  secretRef:\n    name: flux-system-e2e-auth\n  url: {}\n",
        env.git_url(GitTransport::HttpBasic, &repo)?
    );
    e2e::kubectl_with_input(e2e::KUBECONFIG_ADMIN, &["apply", "-f", "-"], Some(&source))?;
    let started = std::time::Instant::now();
    for manifest in GUIDE_MANIFESTS {
        let m = guide_manifest(manifest, &host, &label)?;
        e2e::kubectl_with_input(e2e::KUBECONFIG_ADMIN, &["apply", "-f", "-"], Some(&m))?;
    }
    let head = eventually("the guide's commit on main", || async {
        let head = git(&["rev-parse", "main"])?.trim().to_owned();
        ensure!(head != seed, "main is still at the seed");
        Ok(head)
    })
    .await
    .with_context(logs)?;
    eprintln!(
        "guide: from apply to the commit on main: {:?}",
        started.elapsed()
    );
    let file = git(&["show", &format!("main:{DEPLOYMENT_PATH}")])?;
    assert_eq!(file, deployment.replace(":5.0.0 #", ":5.0.3 #"));
    assert!(file.contains(&format!(
        "image: {host}/stefanprodan/podinfo:5.0.3 # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n"
    )));
    let message = git(&["log", "-1", "--format=%B", "main"])?;
    assert_eq!(message, format!("{host}/stefanprodan/podinfo:5.0.3\n\n"));
    let client = admin_client().await?;
    let iuas: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "flux-system",
        &flux("ImageUpdateAutomation"),
    );
    eventually("the automation's status", || async {
        let obj = serde_json::to_value(iuas.get("flux-system").await?)?;
        let s = &obj["status"];
        ensure!(s["lastPushCommit"] == head.as_str(), "{s}");
        ensure!(
            s["observedSourceRevision"] == format!("main@sha1:{head}"),
            "{s}"
        );
        ensure!(
            s["observedPolicies"]["podinfo"]["tag"] == "5.0.3" && s["lastPushTime"].is_string(),
            "{s}"
        );
        ensure!(
            condition(&obj, "Ready").is_some_and(|c| c["status"] == "True"),
            "{s}"
        );
        Ok(())
    })
    .await
    .with_context(logs)?;

    // Revert: the range goes to 5.0.0 and the automation commits 5.0.0 back.
    let policies: Api<DynamicObject> =
        Api::namespaced_with(client, "flux-system", &flux("ImagePolicy"));
    policies
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"policy": {"semver": {"range": "5.0.0"}}}})),
        )
        .await?;
    eventually("the revert on main", || async {
        let now = git(&["rev-parse", "main"])?.trim().to_owned();
        ensure!(now != head, "main is still at {head}");
        ensure!(
            git(&["show", &format!("main:{DEPLOYMENT_PATH}")])? == deployment,
            "not reverted"
        );
        Ok(())
    })
    .await
    .with_context(logs)?;
    Ok(())
}

/// A signing key in the automation's namespace signs its commits (SSH, SSHSIG verified by `git`); a
/// signing Secret that does not exist is `SourceManagerFailed`, retried, with no commit.
#[tokio::test(flavor = "multi_thread")]
async fn commits_are_signed_with_the_signing_key() -> Result<()> {
    let w = World::new("iua-signed", &guide_files()).await?;
    let seed = w.head("main")?;
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("id");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f"])
        .arg(&key)
        .output()?;
    ensure!(out.status.success(), "ssh-keygen: {out:?}");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(w.client.clone(), &w.ns);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "signing"},
        "stringData": {"identity": std::fs::read_to_string(&key)?},
    }))?;
    secrets.create(&PostParams::default(), &secret).await?;
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    w.automation(
        "unsigned",
        json!({"git": {"commit": {"signingKey": {"secretRef": {"name": "nope"}}}}}),
    )
    .await?;
    let ready = w
        .wait_for_condition("unsigned", "Ready", "False", "SourceManagerFailed")
        .await?;
    ensure!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("could not find signing key secret 'nope'"),
        "{ready}"
    );
    ensure!(w.head("main")? == seed, "the failing automation pushed");
    w.automation(
        "signed",
        json!({"git": {"commit": {"signingKey": {"secretRef": {"name": "signing"}, "type": "ssh"}}}}),
    )
    .await?;
    let head = w.wait_for_commit("main", &seed).await?;
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!(
            "fluxcdbot@users.noreply.github.com {}",
            std::fs::read_to_string(key.with_extension("pub"))?
        ),
    )?;
    let out = testenv::git::git_command()
        .current_dir(&w.bare)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "-v", &head])
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "git verify-commit failed: {text}");
    ensure!(text.contains("Good \"git\" signature"), "{text}");
    Ok(())
}

/// Serves `router` on a free loopback port; its base URL.
async fn serve(router: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}

/// A simulated GitHub API for the e2e test: checks the app JWT's RS256 signature with `openssl`
/// against the app's public key and its `iss`, then issues an installation token and registers it
/// as the password of user `x-access-token` at the test environment's HTTPS Git server (its htpasswd
/// is re-read by nginx per request; held under a lock for the test and restored afterwards).
struct GitHubApi {
    public_key: PathBuf,
    htpasswd: PathBuf,
    original: String,
    issued: std::sync::Mutex<Vec<String>>,
}

/// Holds the htpasswd lock and restores the file when the test ends, however it ends.
struct HtpasswdGuard {
    path: PathBuf,
    original: String,
    _lock: std::fs::File,
}

impl Drop for HtpasswdGuard {
    fn drop(&mut self) {
        let tmp = self.path.with_extension("e2e-tmp");
        let _ =
            std::fs::write(&tmp, &self.original).and_then(|()| std::fs::rename(&tmp, &self.path));
    }
}

impl GitHubApi {
    fn verify(&self, jwt: &str) -> Result<()> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = jwt.split('.').collect();
        ensure!(parts.len() == 3, "not a JWT");
        let claims: Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
        ensure!(claims["iss"] == "4242", "iss is {}", claims["iss"]);
        let dir = tempfile::tempdir()?;
        let (data, sig) = (dir.path().join("data"), dir.path().join("sig"));
        std::fs::write(&data, format!("{}.{}", parts[0], parts[1]))?;
        std::fs::write(&sig, b64.decode(parts[2])?)?;
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&self.public_key)
            .arg("-signature")
            .arg(&sig)
            .arg(&data)
            .output()?;
        ensure!(out.status.success(), "bad JWT signature: {out:?}");
        Ok(())
    }

    fn issue(&self) -> Result<String> {
        let mut issued = self
            .issued
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let token = format!("ghs_e2e{}x{}", std::process::id(), issued.len());
        let kept: String = self
            .original
            .lines()
            .filter(|l| !l.starts_with("x-access-token:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = self.htpasswd.with_extension("e2e-tmp");
        std::fs::write(&tmp, format!("{kept}x-access-token:{{PLAIN}}{token}\n"))?;
        std::fs::rename(&tmp, &self.htpasswd)?;
        issued.push(token.clone());
        Ok(token)
    }
}

/// `provider: github`: the controller buys an installation token from the (simulated) GitHub API with
/// the app's key and pushes over HTTPS as `x-access-token`; an unknown installation is a
/// `SourceManagerFailed` naming the GitRepository and provider, with no token or key in the status.
#[tokio::test(flavor = "multi_thread")]
async fn github_app_provider_pushes_over_https() -> Result<()> {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    let env = testenv::env();
    let htpasswd = PathBuf::from(testenv_var("TESTENV_HTPASSWD")?);
    let lock = std::fs::File::create(htpasswd.with_extension("gitprov-lock"))?;
    lock.lock()?;
    let original = std::fs::read_to_string(&htpasswd)?;
    let _restore = HtpasswdGuard {
        path: htpasswd.clone(),
        original: original.clone(),
        _lock: lock,
    };
    let keys = tempfile::tempdir()?;
    let (key, public) = (keys.path().join("app.pem"), keys.path().join("app.pub"));
    for args in [
        vec!["genrsa", "-out", key.to_str().unwrap_or_default(), "2048"],
        vec![
            "rsa",
            "-in",
            key.to_str().unwrap_or_default(),
            "-pubout",
            "-out",
            public.to_str().unwrap_or_default(),
        ],
    ] {
        let out = std::process::Command::new("openssl").args(&args).output()?;
        ensure!(out.status.success(), "openssl {args:?}: {out:?}");
    }
    let api = std::sync::Arc::new(GitHubApi {
        public_key: public,
        original,
        htpasswd,
        issued: Default::default(),
    });
    async fn token(
        State(api): State<std::sync::Arc<GitHubApi>>,
        UrlPath(id): UrlPath<u64>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        let jwt = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        if let Err(e) = api.verify(&jwt) {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"message": e.to_string()}).to_string(),
            );
        }
        if id != 77 {
            return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.into());
        }
        match api.issue() {
            Ok(t) => (
                StatusCode::CREATED,
                json!({"token": t, "expires_at": "2099-01-01T00:00:00Z"}).to_string(),
            ),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    let router = axum::Router::new()
        .route(
            "/app/installations/{id}/access_tokens",
            axum::routing::post(token),
        )
        .with_state(api.clone());
    let base = serve(router).await?;

    let w = World::new("iua-github", &guide_files()).await?;
    let seed = w.head("main")?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(w.client.clone(), &w.ns);
    for (name, installation) in [("github-app", "77"), ("github-wrong", "78")] {
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {
                "githubAppID": "4242",
                "githubAppInstallationID": installation,
                "githubAppPrivateKey": std::fs::read_to_string(&key)?,
                "githubAppBaseURL": base,
                "ca.crt": std::fs::read_to_string(env.ca_cert()?)?,
            },
        }))?;
        secrets.create(&PostParams::default(), &secret).await?;
        w.create_git_repository(
            name,
            GitTransport::Https,
            json!({"provider": "github", "secretRef": {"name": name}}),
        )
        .await?;
    }
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    w.automation("wrong", json!({"sourceRef": {"name": "github-wrong"}}))
        .await?;
    let ready = w
        .wait_for_condition("wrong", "Ready", "False", "SourceManagerFailed")
        .await?;
    let message = ready["message"].as_str().unwrap_or_default();
    ensure!(
        message.starts_with(&format!(
            "failed configuring source manager: failed to configure authentication options: GitRepository '{}/github-wrong' provider 'github': creating installation token: POST {base}/app/installations/78/access_tokens: 404 Not Found",
            w.ns
        )),
        "{ready}"
    );
    ensure!(w.head("main")? == seed, "the failing automation pushed");

    w.updates_podinfo("app", "github-app", &seed).await?;
    let issued = api
        .issued
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    ensure!(!issued.is_empty(), "no installation token was issued");
    let seen = w.visible(&["app", "wrong"]).await?;
    for t in &issued {
        ensure!(
            !seen.contains(t.as_str()),
            "installation token in status, events or logs"
        );
    }
    ensure!(
        !seen.contains("PRIVATE KEY"),
        "private key in status, events or logs"
    );
    Ok(())
}

/// `provider: azure`: the controller exchanges its federated workload-identity token at a simulated
/// AAD for an Azure DevOps token and pushes with it as bearer token to the bearer-auth Git server.
#[tokio::test(flavor = "multi_thread")]
async fn azure_provider_pushes_with_an_aad_token() -> Result<()> {
    use axum::extract::{Form, Path as UrlPath, State};
    use axum::http::StatusCode;
    let env = testenv::env();
    let accepted = env.git_bearer_token()?.to_owned();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    async fn token(
        State((accepted, requests)): State<(
            String,
            std::sync::Arc<std::sync::atomic::AtomicUsize>,
        )>,
        UrlPath(tenant): UrlPath<String>,
        Form(form): Form<std::collections::BTreeMap<String, String>>,
    ) -> (StatusCode, String) {
        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        aad_reply(
            tenant == "e2e-tenant"
                && field("client_id") == "e2e-client"
                && field("scope") == "499b84ac-1321-427f-aa17-267ca6975798/.default"
                && field("client_assertion") == "e2e-federated-token",
            &accepted,
        )
    }
    let router = axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .with_state((accepted.clone(), requests.clone()));
    let aad = serve(router).await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "e2e-federated-token\n")?;
    let token_file = token_file.to_string_lossy().into_owned();
    let w = World::with_env(
        "iua-azure",
        &guide_files(),
        &[
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.as_str()),
            ("AZURE_CLIENT_ID", "e2e-client"),
            ("AZURE_TENANT_ID", "e2e-tenant"),
            ("AZURE_AUTHORITY_HOST", aad.as_str()),
        ],
    )
    .await?;
    let seed = w.head("main")?;
    w.create_git_repository(
        "devops",
        GitTransport::HttpBearer,
        json!({"provider": "azure"}),
    )
    .await?;
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    w.updates_podinfo("devops", "devops", &seed).await?;
    ensure!(
        requests.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the AAD endpoint was not asked"
    );
    let seen = w.visible(&["devops"]).await?;
    ensure!(
        !seen.contains(&accepted),
        "AAD token in status, events or logs"
    );
    Ok(())
}

/// The simulated Entra ID token endpoint's answer: `token` for Azure DevOps when the request is
/// `ok`, else `invalid_client`.
fn aad_reply(ok: bool, token: &str) -> (axum::http::StatusCode, String) {
    if !ok {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_client"}"#.into(),
        );
    }
    (
        axum::http::StatusCode::OK,
        json!({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).to_string(),
    )
}

/// GitRepository `provider: azure` with `serviceAccountName` (gate on): the real API server issues the
/// token of the automation's ServiceAccount for Entra ID's audience; the simulated AAD endpoint accepts
/// it only as the client assertion of the annotated client and tenant, and issues the bearer token the
/// test environment's Git server accepts. A missing ServiceAccount or annotation is a clear condition.
#[tokio::test]
async fn azure_provider_pushes_as_the_automations_service_account() -> Result<()> {
    use axum::extract::{Form, Path as UrlPath, State};
    use axum::http::StatusCode;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// The expected subject, then what the endpoint was sent (tenant and form).
    type Seen = Arc<Mutex<(String, Vec<(String, BTreeMap<String, String>)>)>>;
    async fn token(
        State((accepted, seen)): State<(String, Seen)>,
        UrlPath(tenant): UrlPath<String>,
        Form(form): Form<BTreeMap<String, String>>,
    ) -> (StatusCode, String) {
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        let claims = e2e::jwt_claims(field("client_assertion"));
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let ok = tenant == "sa-tenant"
            && field("client_id") == "sa-client"
            && field("scope") == "499b84ac-1321-427f-aa17-267ca6975798/.default"
            && field("client_assertion_type")
                == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            && claims["aud"] == json!(["api://AzureADTokenExchange"])
            && claims["sub"] == seen.0.as_str();
        seen.1.push((tenant, form));
        aad_reply(ok, &accepted)
    }
    let env = testenv::env();
    let accepted = env.git_bearer_token()?.to_owned();
    let seen = Seen::default();
    let router = axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(token))
        .with_state((accepted.clone(), seen.clone()));
    let aad = serve(router).await?;
    // No controller identity: only the ServiceAccount's federated identity can get a token.
    let w = World::with_flags(
        "iua-azsa",
        &guide_files(),
        &["--feature-gates=ObjectLevelWorkloadIdentity=true"],
        &[("AZURE_AUTHORITY_HOST", aad.as_str())],
    )
    .await?;
    seen.lock().unwrap_or_else(|p| p.into_inner()).0 =
        format!("system:serviceaccount:{}:pusher", w.ns);
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(w.client.clone(), &w.ns);
    for (name, annotations) in [
        (
            "pusher",
            json!({"azure.workload.identity/client-id": "sa-client",
                   "azure.workload.identity/tenant-id": "sa-tenant"}),
        ),
        (
            "bare",
            json!({"azure.workload.identity/tenant-id": "sa-tenant"}),
        ),
    ] {
        let sa = serde_json::from_value(
            json!({"metadata": {"name": name, "annotations": annotations}}),
        )?;
        accounts.create(&PostParams::default(), &sa).await?;
    }
    let seed = w.head("main")?;
    for (repo, sa) in [("devops", "pusher"), ("nosa", "missing"), ("bare", "bare")] {
        w.create_git_repository(
            repo,
            GitTransport::HttpBearer,
            json!({"provider": "azure", "serviceAccountName": sa}),
        )
        .await?;
    }
    w.policy("podinfo", PODINFO, "5.0.3").await?;
    w.updates_podinfo("devops", "devops", &seed).await?;
    let assertions: Vec<String> = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        ensure!(!seen.1.is_empty(), "the AAD endpoint was not asked");
        seen.1
            .iter()
            .map(|(_, f)| f.get("client_assertion").cloned().unwrap_or_default())
            .collect()
    };

    for (name, expected) in [
        (
            "nosa",
            format!("service account '{}/missing' not found", w.ns),
        ),
        (
            "bare",
            format!(
                "service account '{}/bare': annotation 'azure.workload.identity/client-id' is not set",
                w.ns
            ),
        ),
    ] {
        w.automation(name, json!({"sourceRef": {"name": name}}))
            .await?;
        let cond = w
            .wait_for_condition(name, "Ready", "False", "SourceManagerFailed")
            .await?;
        let message = cond["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains(&expected) && message.contains("provider 'azure'"),
            "unclear condition: {message}"
        );
    }
    let visible = w.visible(&["devops", "nosa", "bare"]).await?;
    ensure!(
        !visible.contains(&accepted),
        "AAD token in status, events or logs"
    );
    for a in &assertions {
        ensure!(
            a.is_empty() || !visible.contains(a.as_str()),
            "ServiceAccount token in status, events or logs"
        );
    }
    Ok(())
}
