//! Flux's own CRDs instead of ours. `flux bootstrap --components-extra=image-reflector-controller,...` installs
//! Flux's CRDs, which serve only `v1` and lack the deprecated status fields `latestImage` and
//! `observedPreviousImage` that ours keep for v1beta1/v1beta2 clients. This test installs CRDs of that shape
//! (our v1 schema with the other versions and those fields removed) on a private API server, runs both
//! controllers against it, and checks that the whole job still works (scan, policy, commit and push) and
//! that no status write fails or churns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use e2e::{
    controller_binary, eventually, kube_sh, kubectl_at, kustomize_default, private_state_dir,
    repo_root, yaml_documents,
};
use runtime::test_support::Process;
use serde_json::{Value, json};
use testenv::{GitTransport, RegistryVariant};

/// Status fields our CRDs have and Flux's v1-only ones do not.
const DEPRECATED_STATUS_FIELDS: [&str; 2] = ["latestImage", "observedPreviousImage"];

/// Stops the private API server however the test ends.
struct PrivateKube {
    state: tempfile::TempDir,
}

impl Drop for PrivateKube {
    fn drop(&mut self) {
        let _ = kube_sh(self.state.path(), &["down"], &[]);
    }
}

impl PrivateKube {
    fn kubeconfig(&self, who: &str) -> PathBuf {
        self.state.path().join(format!("kube/{who}.kubeconfig"))
    }

    fn kubectl(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        Ok(kubectl_at(&self.kubeconfig("admin"), args, input)?.stdout)
    }

    fn get(&self, kind: &str, name: &str) -> Result<Value> {
        let out = self.kubectl(
            &["-n", "flux-system", "get", kind, name, "-o", "json"],
            None,
        )?;
        Ok(serde_json::from_str(&out)?)
    }
}

/// One of our CRDs reshaped like Flux's: only `v1` (served and stored), without the deprecated status
/// fields. Returns the CRD and how many fields were removed.
fn flux_shaped(mut crd: Value) -> Result<(Value, usize)> {
    let versions = crd["spec"]["versions"]
        .as_array()
        .context("spec.versions")?
        .iter()
        .filter(|v| v["name"] == "v1")
        .cloned()
        .map(|mut v| {
            v["served"] = json!(true);
            v["storage"] = json!(true);
            v
        })
        .collect::<Vec<_>>();
    ensure!(
        versions.len() == 1,
        "no v1 version in {}",
        crd["metadata"]["name"]
    );
    crd["spec"]["versions"] = Value::Array(versions);
    if let Some(spec) = crd["spec"].as_object_mut() {
        spec.remove("conversion");
    }
    let mut removed = 0;
    if let Some(status) = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["status"]["properties"]
        .as_object_mut()
    {
        for field in DEPRECATED_STATUS_FIELDS {
            removed += usize::from(status.remove(field).is_some());
        }
    }
    Ok((crd, removed))
}

fn install(kube: &PrivateKube) -> Result<()> {
    let mut items = Vec::new();
    let mut removed = 0;
    for entry in std::fs::read_dir(repo_root().join("config/crd/bases"))? {
        let path = entry?.path();
        for doc in yaml_documents(&std::fs::read_to_string(&path)?)? {
            let (crd, n) = flux_shaped(doc)?;
            removed += n;
            items.push(crd);
        }
    }
    ensure!(
        removed == DEPRECATED_STATUS_FIELDS.len(),
        "expected to remove both deprecated ImagePolicy status fields, removed {removed}"
    );
    for entry in std::fs::read_dir(repo_root().join("config/testdata/crd"))? {
        items.extend(yaml_documents(&std::fs::read_to_string(entry?.path())?)?);
    }
    // RBAC and ServiceAccounts exactly as config/default installs them (no Deployments: nothing runs pods).
    items.extend(kustomize_default()?.into_iter().filter(|d| {
        !matches!(
            d["kind"].as_str(),
            Some("CustomResourceDefinition" | "Namespace" | "Deployment")
        )
    }));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    kube.kubectl(
        &["apply", "--validate=false", "-f", "-"],
        Some(&list.to_string()),
    )?;
    kube.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=90s",
            "crd",
            "--all",
        ],
        None,
    )?;
    let served = kube.kubectl(&["api-versions"], None)?;
    ensure!(
        served.contains("image.toolkit.fluxcd.io/v1\n")
            && !served.contains("image.toolkit.fluxcd.io/v1beta"),
        "the API server should serve only image.toolkit.fluxcd.io/v1:\n{served}"
    );
    Ok(())
}

/// Error-level log lines about writing a status (a failed write is logged as `applying the status of ...`).
/// Other errors, such as a policy evaluated before its repository's first scan, are not this test's concern.
fn failed_status_writes(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains("\"level\":\"error\""))
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("status")
                || l.contains("typed patch")
                || l.contains("not declared in schema")
        })
        .collect()
}

fn head_message(bare: &Path) -> Result<String> {
    testenv::git::git(bare, &["log", "-1", "--format=%B", "main"]).map_err(|e| anyhow!("{e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn both_controllers_work_with_flux_v1_only_crds() -> Result<()> {
    let env = testenv::env();
    let kube = PrivateKube {
        state: private_state_dir("flux-crds-")?,
    };
    kube_sh(
        kube.state.path(),
        &["up"],
        &[("TESTENV_KUBE_NO_CONFIG", "1".to_owned())],
    )?;
    install(&kube)?;

    // A registry repository and a Git repository of this test's own.
    let name = testenv::unique_name("flux-crds");
    let endpoint = env.registry(RegistryVariant::Anonymous)?;
    let image = format!("{}/{name}/podinfo", endpoint.host);
    testenv::registry::RegistryClient::new(&endpoint)?
        .push_tags(
            &format!("{name}/podinfo"),
            &["5.0.0", "5.0.1", "5.0.2", "5.0.3"],
            4,
        )
        .await?;
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  namespace: default\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfod\n          image: {image}:5.0.0 # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n"
    );
    let bare = env.seed_repo(
        &name,
        &[("clusters/my-cluster/podinfo-deployment.yaml", &deployment)],
    )?;
    let (user, password) = env.credentials()?;
    let git_url = env.git_url(GitTransport::HttpBasic, &name)?;

    let objects = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: git, namespace: flux-system}}
stringData: {{username: "{user}", password: "{password}"}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: flux-system, namespace: flux-system}}
spec: {{interval: 1m, url: "{git_url}", ref: {{branch: main}}, secretRef: {{name: git}}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {{name: podinfo, namespace: flux-system}}
spec: {{image: "{image}", interval: 1m}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {{name: podinfo, namespace: flux-system}}
spec: {{imageRepositoryRef: {{name: podinfo}}, policy: {{semver: {{range: 5.0.x}}}}}}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {{name: flux-system, namespace: flux-system}}
spec:
  interval: 1m
  sourceRef: {{kind: GitRepository, name: flux-system}}
  git:
    checkout: {{ref: {{branch: main}}}}
    commit:
      author: {{name: fluxcdbot, email: fluxcdbot@users.noreply.github.com}}
      messageTemplate: '{{{{range .Changed.Changes}}}}{{{{print .OldValue}}}} -> {{{{println .NewValue}}}}{{{{end}}}}'
    push: {{branch: main}}
  update: {{path: ./clusters/my-cluster, strategy: Setters}}
"#
    );
    kube.kubectl(&["apply", "--validate=false", "-f", "-"], Some(&objects))?;

    let storage = tempfile::tempdir()?;
    let reflector_kubeconfig = format!("--kubeconfig={}", kube.kubeconfig("reflector").display());
    let automation_kubeconfig = format!("--kubeconfig={}", kube.kubeconfig("automation").display());
    let storage_path = format!("--storage-path={}", storage.path().display());
    let git_cache = tempfile::tempdir()?;
    let git_cache_path = format!("--git-cache-path={}", git_cache.path().display());
    let reflector = Process::start(
        &controller_binary("image-reflector-controller")?,
        &[&reflector_kubeconfig, &storage_path, "--log-encoding=json"],
    )?;
    let automation = Process::start(
        &controller_binary("image-automation-controller")?,
        &[
            &automation_kubeconfig,
            &git_cache_path,
            "--log-encoding=json",
        ],
    )?;

    let ready = |obj: &Value| {
        obj["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    let policy = eventually("the ImagePolicy selects 5.0.3 and is Ready", || async {
        let p = kube.get("imagepolicy", "podinfo")?;
        ensure!(
            ready(&p) && p["status"]["latestRef"]["tag"] == "5.0.3",
            "{}",
            p["status"]
        );
        Ok(p)
    })
    .await
    .with_context(|| format!("reflector log:\n{}", reflector.logs()))?;
    ensure!(
        DEPRECATED_STATUS_FIELDS
            .iter()
            .all(|f| policy["status"].get(f).is_none()),
        "the v1-only schema should prune the deprecated fields: {}",
        policy["status"]
    );
    let repository = kube.get("imagerepository", "podinfo")?;
    ensure!(ready(&repository), "{}", repository["status"]);
    ensure!(
        repository["status"]["lastScanResult"]["tagCount"] == 4,
        "{}",
        repository["status"]
    );

    eventually(
        "the automation pushes the 5.0.3 commit and is Ready",
        || async {
            let message = head_message(&bare)?;
            ensure!(
                message.contains(&format!("{image}:5.0.0 -> {image}:5.0.3")),
                "head commit: {message}"
            );
            let a = kube.get("imageupdateautomation", "flux-system")?;
            ensure!(ready(&a), "{}", a["status"]);
            Ok(())
        },
    )
    .await
    .with_context(|| format!("automation log:\n{}", automation.logs()))?;

    // Settled: nothing keeps rewriting a status the server prunes differently from what was written.
    let versions = || -> Result<Vec<Value>> {
        Ok(vec![
            kube.get("imagerepository", "podinfo")?["metadata"]["resourceVersion"].clone(),
            kube.get("imagepolicy", "podinfo")?["metadata"]["resourceVersion"].clone(),
            kube.get("imageupdateautomation", "flux-system")?["metadata"]["resourceVersion"]
                .clone(),
        ])
    };
    let before = versions()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        versions()? == before,
        "status keeps changing after the job is done"
    );

    let (_, reflector_logs) = reflector.terminate().map_err(|e| anyhow!(e))?;
    let (_, automation_logs) = automation.terminate().map_err(|e| anyhow!(e))?;
    for (who, logs) in [
        ("reflector", &reflector_logs),
        ("automation", &automation_logs),
    ] {
        let failed = failed_status_writes(logs);
        ensure!(
            failed.is_empty(),
            "{who} failed to write a status:\n{}",
            failed.join("\n")
        );
    }
    Ok(())
}
