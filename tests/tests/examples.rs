//! The manifests under `examples/` are valid for the controllers: every image.toolkit.fluxcd.io object reads
//! into the API types, and the guide's Deployment updates as the guide says.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

#[test]
fn every_image_object_in_the_examples_reads_into_the_api_types() -> Result<()> {
    let mut files = Vec::new();
    yaml_files(&examples(), &mut files)?;
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).with_context(|| file.display().to_string())?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let Some(api_version) = doc["apiVersion"].as_str() else {
                continue;
            };
            if !api_version.starts_with("image.toolkit.fluxcd.io/") {
                continue;
            }
            let what = format!("{} in {}", doc["kind"], file.display());
            match doc["kind"].as_str() {
                Some("ImageRepository") => {
                    drop(serde_json::from_value::<api::ImageRepository>(doc).context(what)?)
                }
                Some("ImagePolicy") => {
                    drop(serde_json::from_value::<api::ImagePolicy>(doc).context(what)?)
                }
                Some("ImageUpdateAutomation") => {
                    drop(serde_json::from_value::<api::ImageUpdateAutomation>(doc).context(what)?)
                }
                other => anyhow::bail!("unknown kind {other:?}: {what}"),
            }
            seen += 1;
        }
    }
    ensure!(
        seen >= 3,
        "expected at least the guide's three objects, read {seen}"
    );
    Ok(())
}

#[test]
fn the_guide_deployment_updates_to_the_policy_tag() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = examples().join("guide/clusters/my-cluster/podinfo-deployment.yaml");
    let original = std::fs::read_to_string(&source)?;
    std::fs::write(dir.path().join("podinfo-deployment.yaml"), &original)?;
    let policies: setters::Policies = [(
        "flux-system:podinfo".to_owned(),
        setters::ImageRef::parse("ghcr.io/stefanprodan/podinfo:5.0.3")?,
    )]
    .into_iter()
    .collect();
    let report = setters::plan(dir.path(), &setters::Setters::new(&policies)?)?.apply();
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    let updated = std::fs::read_to_string(dir.path().join("podinfo-deployment.yaml"))?;
    ensure!(
        updated == original.replace("podinfo:5.0.0 #", "podinfo:5.0.3 #"),
        "unexpected update:\n{updated}"
    );
    ensure!(updated.contains(
        r#"image: ghcr.io/stefanprodan/podinfo:5.0.3 # {"$imagepolicy": "flux-system:podinfo"}"#
    ));
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let target = to.join(path.file_name().context("file name")?);
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

fn read(dir: &Path, file: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(file)).with_context(|| file.to_owned())
}

/// The guide's custom-resource markers (`:name`, `:tag`, whole references) update exactly the marked
/// values in a HelmRelease, a Tekton Task, a Flux Kustomization and a kustomize config.
#[test]
fn the_custom_resource_markers_update_only_the_marked_values() -> Result<()> {
    let source = examples().join("custom-resources");
    let dir = tempfile::tempdir()?;
    copy_dir(&source, dir.path())?;
    // A moved podinfo shows `:name` markers at work; golang gets a new tag.
    let policies: setters::Policies = [
        (
            "flux-system:podinfo".to_owned(),
            setters::ImageRef::parse("registry.local:5000/stefanprodan/podinfo:5.0.3")?,
        ),
        (
            "flux-system:golang".to_owned(),
            setters::ImageRef::parse("docker.io/golang:1.15.8")?,
        ),
    ]
    .into_iter()
    .collect();
    let report = setters::plan(dir.path(), &setters::Setters::new(&policies)?)?.apply();
    ensure!(report.errors.is_empty(), "{:?}", report.errors);
    let moved = |text: &str| {
        text.replace(
            "ghcr.io/stefanprodan/podinfo # {\"$imagepolicy\": \"flux-system:podinfo:name\"}",
            "registry.local:5000/stefanprodan/podinfo # {\"$imagepolicy\": \"flux-system:podinfo:name\"}",
        )
        .replace(
            "5.0.0 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}",
            "5.0.3 # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}",
        )
        .replace(
            "5.0.0  # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}",
            "5.0.3  # {\"$imagepolicy\": \"flux-system:podinfo:tag\"}",
        )
    };
    for file in [
        "helmrelease.yaml",
        "flux-kustomization.yaml",
        "kustomize/kustomization.yaml",
    ] {
        let original = read(&source, file)?;
        let updated = read(dir.path(), file)?;
        ensure!(updated != original, "{file} did not change");
        ensure!(updated == moved(&original), "{file} updated to:\n{updated}");
    }
    let task = read(dir.path(), "tekton-task.yaml")?;
    ensure!(
        task == read(&source, "tekton-task.yaml")?.replace("golang:1.15.6 #", "golang:1.15.8 #"),
        "tekton-task.yaml updated to:\n{task}"
    );
    for untouched in ["kustomize/deployment.yaml", "policies.yaml", "README.md"] {
        ensure!(
            read(dir.path(), untouched)? == read(&source, untouched)?,
            "{untouched} changed"
        );
    }
    Ok(())
}

fn yaml_docs(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    e2e::yaml_documents(&text).with_context(|| path.display().to_string())
}

#[test]
fn the_separate_branch_example_checks_out_main_and_pushes_elsewhere() -> Result<()> {
    let docs = yaml_docs(&examples().join("separate-branch/image-update-automation.yaml"))?;
    let [automation] = docs.as_slice() else {
        anyhow::bail!("expected one ImageUpdateAutomation, got {}", docs.len());
    };
    let git = &automation["spec"]["git"];
    ensure!(git["checkout"]["ref"]["branch"] == "main");
    ensure!(git["push"]["branch"] == "flux-image-updates");
    Ok(())
}

/// The GCR example's Secret gives the ImageRepository the `_json_key` user and the key as password, read
/// by the registry client's own keychain.
#[test]
fn the_gcr_json_key_secret_authenticates_the_image_repository() -> Result<()> {
    let dir = examples().join("gcr-json-key");
    let secret = yaml_docs(&dir.join("secret.yaml"))?.remove(0);
    let repository = yaml_docs(&dir.join("imagerepository.yaml"))?.remove(0);
    ensure!(secret["type"] == "kubernetes.io/dockerconfigjson");
    ensure!(repository["spec"]["secretRef"]["name"] == secret["metadata"]["name"]);
    ensure!(repository["metadata"]["namespace"] == secret["metadata"]["namespace"]);
    let config = secret["stringData"][".dockerconfigjson"]
        .as_str()
        .context("stringData..dockerconfigjson")?;
    let keychain =
        registry::Keychain::from_docker_config_json("gcr-credentials", config.as_bytes())?;
    let image = repository["spec"]["image"].as_str().context("spec.image")?;
    match keychain.resolve(&registry::ImageRef::parse(image, false)?)? {
        registry::Credential::Basic { username, password } => {
            ensure!(username == "_json_key", "username {username}");
            let key: Value = serde_json::from_str(&password).context("the key is JSON")?;
            ensure!(key["type"] == "service_account", "{key}");
        }
        other => anyhow::bail!("{image} resolves to {other:?}, not the JSON key"),
    }
    Ok(())
}

/// `trigger.sh` sets `reconcile.fluxcd.io/requestedAt` on both objects (against the test API server).
#[tokio::test]
async fn the_webhook_trigger_script_requests_a_reconcile() -> Result<()> {
    use e2e::{KUBECONFIG_ADMIN, admin_client, create_namespace, kubectl, testenv_var};
    let ns = create_namespace(&admin_client().await?, "trigger").await?;
    let manifests = format!(
        r#"apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata: {{name: podinfo, namespace: {ns}}}
spec: {{image: ghcr.io/stefanprodan/podinfo, interval: 1h}}
---
apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageUpdateAutomation
metadata: {{name: flux-system, namespace: {ns}}}
spec:
  interval: 1h
  sourceRef: {{kind: GitRepository, name: flux-system}}
  git: {{commit: {{author: {{name: bot, email: bot@example.com}}}}}}
"#
    );
    e2e::kubectl_with_input(KUBECONFIG_ADMIN, &["apply", "-f", "-"], Some(&manifests))?;
    let status = std::process::Command::new(examples().join("webhook-trigger/trigger.sh"))
        .args([&ns, "podinfo", "flux-system"])
        .env("KUBECONFIG", testenv_var(KUBECONFIG_ADMIN)?)
        .status()?;
    ensure!(status.success(), "trigger.sh failed: {status}");
    let annotation = |kind: &str, name: &str| -> Result<String> {
        kubectl(
            KUBECONFIG_ADMIN,
            &[
                "-n",
                &ns,
                "get",
                &format!("{kind}/{name}"),
                "-o",
                r"jsonpath={.metadata.annotations.reconcile\.fluxcd\.io/requestedAt}",
            ],
        )
    };
    let repo = annotation("imagerepository", "podinfo")?;
    let automation = annotation("imageupdateautomation", "flux-system")?;
    ensure!(!repo.is_empty(), "no requestedAt on the ImageRepository");
    ensure!(repo == automation, "{repo} != {automation}");
    Ok(())
}
