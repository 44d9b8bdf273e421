//! `config/default` renders with `kubectl kustomize`, installs exactly the generated CRDs, and names every
//! object as Flux does, so a Flux user's RBAC and tooling keep working after a swap.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use e2e::{kustomize_default, repo_root, yaml_documents};
use serde_json::Value;

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn names(docs: &[&Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .map(str::to_owned)
        .collect()
}

#[test]
fn default_installs_exactly_the_generated_crds() -> Result<()> {
    let rendered = kustomize_default()?;
    let mut committed = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("config/crd/bases"))? {
        let path = entry?.path();
        committed.extend(
            yaml_documents(&std::fs::read_to_string(&path)?)
                .with_context(|| path.display().to_string())?,
        );
    }
    let mut rendered_crds: Vec<&Value> = of_kind(&rendered, "CustomResourceDefinition");
    let mut committed: Vec<&Value> = committed.iter().collect();
    let by_name = |v: &&Value| v["metadata"]["name"].as_str().map(str::to_owned);
    rendered_crds.sort_by_key(by_name);
    committed.sort_by_key(by_name);
    ensure!(
        rendered_crds.len() == 3,
        "expected the 3 image CRDs, got {:?}",
        names(&rendered_crds)
    );
    ensure!(
        rendered_crds == committed,
        "config/default renders CRDs that differ from config/crd/bases"
    );
    Ok(())
}

#[test]
fn default_uses_flux_names_in_flux_system() -> Result<()> {
    let rendered = kustomize_default()?;
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let controllers = ["image-automation-controller", "image-reflector-controller"];
    ensure!(names(&of_kind(&rendered, "Deployment")) == set(&controllers));
    ensure!(names(&of_kind(&rendered, "ServiceAccount")) == set(&controllers));
    ensure!(
        names(&of_kind(&rendered, "ClusterRole"))
            == set(&[
                "image-automation-manager-role",
                "image-reflector-manager-role"
            ])
    );
    ensure!(
        names(&of_kind(&rendered, "Role"))
            == set(&[
                "image-automation-leader-election-role",
                "image-reflector-leader-election-role"
            ])
    );
    for doc in rendered
        .iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition" && d["kind"] != "Namespace")
    {
        let namespaced = !matches!(
            doc["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        );
        if namespaced {
            ensure!(
                doc["metadata"]["namespace"] == "flux-system",
                "{} not in flux-system",
                doc["metadata"]["name"]
            );
        }
    }
    for deployment in of_kind(&rendered, "Deployment") {
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        ensure!(container["name"] == "manager");
        ensure!(container["securityContext"]["readOnlyRootFilesystem"] == true);
        ensure!(container["securityContext"]["runAsNonRoot"] == true);
        ensure!(container["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
        ensure!(pod["serviceAccountName"] == deployment["metadata"]["name"]);
    }
    Ok(())
}
