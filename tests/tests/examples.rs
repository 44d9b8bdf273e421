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
