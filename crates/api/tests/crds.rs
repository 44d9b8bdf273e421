//! The committed CRD YAML matches the types, and the CRDs carry what Flux's CRDs carry.

// Test helpers may panic on malformed fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use api::crd::{
    self, DEPRECATED_VERSIONS, OutputDir, STORAGE_VERSION, generated_files, git_repository_crd,
    image_crds, image_policy_crd, image_repository_crd, image_update_automation_crd,
};
use common::{repo_root, version_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

const REGEN: &str = "run `cargo run -p api --bin crdgen` and commit the result";

#[test]
fn committed_crds_are_up_to_date() {
    for file in generated_files().unwrap() {
        let path = repo_root().join(file.dir.default_path()).join(&file.name);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; {REGEN}", path.display()));
        assert!(
            committed == file.content,
            "{} differs from the generated CRD; {REGEN}",
            path.display()
        );
    }
}

#[test]
fn no_stale_files_in_crd_dirs() {
    for dir in [OutputDir::Bases, OutputDir::TestData] {
        let expected: BTreeSet<String> = generated_files()
            .unwrap()
            .into_iter()
            .filter(|f| f.dir == dir)
            .map(|f| f.name)
            .collect();
        let found: BTreeSet<String> = std::fs::read_dir(repo_root().join(dir.default_path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, expected, "{}: {REGEN}", dir.default_path());
    }
}

#[test]
fn kustomization_lists_exactly_the_image_crds() {
    let text = std::fs::read_to_string(repo_root().join("config/crd/kustomization.yaml")).unwrap();
    let k: Value = serde_saphyr::from_str(&text).unwrap();
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = image_crds()
        .unwrap()
        .into_keys()
        .map(|n| format!("bases/{n}"))
        .collect();
    assert_eq!(listed, expected);
    assert!(
        !text.contains("gitrepositories"),
        "the GitRepository stand-in must not be installed by default"
    );
}

fn crds() -> Vec<(
    CustomResourceDefinition,
    &'static [&'static str],
    &'static str,
)> {
    vec![
        (
            image_repository_crd().unwrap(),
            &["imgrepo", "imagerepo"],
            "imagerepositories",
        ),
        (
            image_policy_crd().unwrap(),
            &["imgpol", "imagepol"],
            "imagepolicies",
        ),
        (
            image_update_automation_crd().unwrap(),
            &["iua", "imgupd", "imgauto"],
            "imageupdateautomations",
        ),
    ]
}

#[test]
fn names_categories_and_versions() {
    for (crd, short, plural) in crds() {
        let kind = crd.spec.names.kind.clone();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.image.toolkit.fluxcd.io").as_str())
        );
        assert_eq!(
            crd::file_name(&crd),
            format!("image.toolkit.fluxcd.io_{plural}.yaml")
        );
        assert_eq!(crd.spec.group, "image.toolkit.fluxcd.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(
            crd.spec.names.singular.as_deref(),
            Some(kind.to_lowercase().as_str())
        );
        assert_eq!(
            crd.spec.names.list_kind.as_deref(),
            Some(format!("{kind}List").as_str())
        );
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&short.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["all".to_string(), "fluxcd".into(), "fluxcd-images".into()][..])
        );
        assert!(crd.spec.conversion.is_none(), "no conversion webhook");

        let names: Vec<&str> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names.iter().copied().collect::<BTreeSet<_>>(),
            BTreeSet::from(["v1", "v1beta1", "v1beta2"])
        );
        let v1_schema = version_schema(&crd, STORAGE_VERSION);
        let v1 = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == STORAGE_VERSION)
            .unwrap();
        for v in &crd.spec.versions {
            assert!(v.served, "{kind} {} served", v.name);
            assert_eq!(
                v.storage,
                v.name == STORAGE_VERSION,
                "{kind} {} storage",
                v.name
            );
            assert_eq!(
                version_schema(&crd, &v.name),
                v1_schema,
                "{kind} {} shares the v1 schema",
                v.name
            );
            assert_eq!(v.additional_printer_columns, v1.additional_printer_columns);
            assert_eq!(v.subresources, v1.subresources);
            assert_eq!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .map(|s| &s.0),
                Some(&json!({}))
            );
            if DEPRECATED_VERSIONS.contains(&v.name.as_str()) {
                assert_eq!(v.deprecated, Some(true));
                let warning = format!("{} {kind} is deprecated, upgrade to v1", v.name);
                assert_eq!(v.deprecation_warning.as_deref(), Some(warning.as_str()));
            } else {
                assert_eq!(v.deprecated, None);
                assert_eq!(v.deprecation_warning, None);
            }
        }
    }
}

#[test]
fn deprecation_text_matches_flux() {
    assert_eq!(
        crd::deprecation_warning("v1beta2", "ImageRepository"),
        "v1beta2 ImageRepository is deprecated, upgrade to v1"
    );
    assert_eq!(
        crd::deprecation_warning("v1beta2", "ImagePolicy"),
        "v1beta2 ImagePolicy is deprecated, upgrade to v1"
    );
}

fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, String, Option<i32>)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| {
            (
                c.name.clone(),
                c.type_.clone(),
                c.json_path.clone(),
                c.priority,
            )
        })
        .collect()
}

fn col(
    name: &str,
    type_: &str,
    path: &str,
    priority: Option<i32>,
) -> (String, String, String, Option<i32>) {
    (name.into(), type_.into(), path.into(), priority)
}

#[test]
fn printer_columns() {
    let ready = col(
        "Ready",
        "string",
        r#".status.conditions[?(@.type=="Ready")].status"#,
        None,
    );
    let status = col(
        "Status",
        "string",
        r#".status.conditions[?(@.type=="Ready")].message"#,
        None,
    );
    let age = col("Age", "date", ".metadata.creationTimestamp", None);
    assert_eq!(
        columns(&image_repository_crd().unwrap()),
        vec![
            col("Image", "string", ".spec.image", None),
            col("Tags", "string", ".status.lastScanResult.tagCount", None),
            ready.clone(),
            status.clone(),
            col(
                "Last scan",
                "string",
                ".status.lastScanResult.scanTime",
                Some(1)
            ),
            age.clone(),
        ]
    );
    assert_eq!(
        columns(&image_policy_crd().unwrap()),
        vec![
            col("Image", "string", ".status.latestRef.name", None),
            col("Tag", "string", ".status.latestRef.tag", None),
            ready.clone(),
            status.clone(),
            age.clone(),
        ]
    );
    assert_eq!(
        columns(&image_update_automation_crd().unwrap()),
        vec![
            ready,
            status,
            col(
                "Last run",
                "string",
                ".status.lastAutomationRunTime",
                Some(1)
            ),
            age
        ]
    );
}

/// The schema at a dotted path of property names (`spec.interval`).
fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(schema, |s, p| match p {
        "[]" => &s["items"],
        "{}" => &s["additionalProperties"],
        _ => &s["properties"][p],
    })
}

#[test]
fn patterns_enums_defaults_and_limits() {
    let interval = json!("^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$");
    let timeout = json!("^([0-9]+(\\.[0-9]+)?(ms|s|m))+$");

    let repo = version_schema(&image_repository_crd().unwrap(), "v1");
    assert_eq!(at(&repo, "spec.interval")["pattern"], interval);
    assert_eq!(at(&repo, "spec.timeout")["pattern"], timeout);
    assert_eq!(
        at(&repo, "spec.provider")["enum"],
        json!(["generic", "aws", "azure", "gcp"])
    );
    assert_eq!(at(&repo, "spec.provider")["default"], json!("generic"));
    assert_eq!(
        at(&repo, "spec.exclusionList")["default"],
        json!(["^.*\\.sig$"])
    );
    assert_eq!(at(&repo, "spec.exclusionList")["maxItems"], json!(25));
    assert_eq!(
        at(&repo, "spec.serviceAccountName")["maxLength"],
        json!(253)
    );
    assert_eq!(at(&repo, "spec")["required"], json!(["image", "interval"]));
    assert_eq!(at(&repo, "spec.secretRef")["required"], json!(["name"]));
    assert_eq!(
        at(&repo, "spec.accessFrom")["required"],
        json!(["namespaceSelectors"])
    );
    assert_eq!(
        at(&repo, "status.lastScanResult")["required"],
        json!(["tagCount"])
    );
    assert!(
        at(&repo, "status.lastScanResult.revision")
            .get("default")
            .is_none()
    );

    let pol = version_schema(&image_policy_crd().unwrap(), "v1");
    assert_eq!(at(&pol, "spec.interval")["pattern"], interval);
    assert_eq!(
        at(&pol, "spec.digestReflectionPolicy")["enum"],
        json!(["Always", "IfNotPresent", "Never"])
    );
    assert_eq!(
        at(&pol, "spec.digestReflectionPolicy")["default"],
        json!("Never")
    );
    for order in [
        "spec.policy.alphabetical.order",
        "spec.policy.numerical.order",
    ] {
        assert_eq!(at(&pol, order)["enum"], json!(["asc", "desc"]), "{order}");
        assert_eq!(at(&pol, order)["default"], json!("asc"), "{order}");
    }
    assert_eq!(
        at(&pol, "spec")["required"],
        json!(["imageRepositoryRef", "policy"])
    );
    assert_eq!(at(&pol, "spec.policy.semver")["required"], json!(["range"]));
    assert!(at(&pol, "spec.filterTags.pattern").get("default").is_none());
    assert_eq!(
        at(&pol, "status.latestRef")["required"],
        json!(["name", "tag"])
    );
    for legacy in ["status.latestImage", "status.observedPreviousImage"] {
        assert_eq!(
            at(&pol, legacy)["type"],
            json!("string"),
            "v1beta1 field {legacy} kept"
        );
    }

    let iua = version_schema(&image_update_automation_crd().unwrap(), "v1");
    assert_eq!(at(&iua, "spec.interval")["pattern"], interval);
    assert_eq!(
        at(&iua, "spec")["required"],
        json!(["interval", "sourceRef"])
    );
    assert_eq!(
        at(&iua, "spec.sourceRef.kind")["enum"],
        json!(["GitRepository"])
    );
    assert_eq!(
        at(&iua, "spec.sourceRef.kind")["default"],
        json!("GitRepository")
    );
    assert_eq!(
        at(&iua, "spec.sourceRef")["required"],
        json!(["kind", "name"])
    );
    assert_eq!(
        at(&iua, "spec.update")["default"],
        json!({"strategy": "Setters"})
    );
    assert_eq!(at(&iua, "spec.update.strategy")["enum"], json!(["Setters"]));
    assert_eq!(
        at(&iua, "spec.update.strategy")["default"],
        json!("Setters")
    );
    assert_eq!(at(&iua, "spec.git")["required"], json!(["commit"]));
    assert_eq!(at(&iua, "spec.git.checkout")["required"], json!(["ref"]));
    assert_eq!(at(&iua, "spec.git.commit")["required"], json!(["author"]));
    assert_eq!(
        at(&iua, "spec.git.commit.author")["required"],
        json!(["email"])
    );
    assert_eq!(
        at(&iua, "spec.git.commit.signingKey")["required"],
        json!(["secretRef"])
    );
    assert_eq!(
        at(&iua, "spec.git.commit.signingKey.type")["enum"],
        json!(["gpg", "ssh"])
    );
    assert_eq!(
        at(&iua, "spec.git.commit.messageTemplateValues.{}")["type"],
        json!("string")
    );
    assert_eq!(
        at(&iua, "spec.git.push.options.{}")["type"],
        json!("string")
    );
    assert_eq!(
        at(&iua, "spec.policySelector")["x-kubernetes-map-type"],
        json!("atomic")
    );
    assert_eq!(
        at(&iua, "spec.policySelector.matchExpressions")["x-kubernetes-list-type"],
        json!("atomic")
    );
    assert_eq!(
        at(&iua, "status.observedPolicies.{}")["required"],
        json!(["name", "tag"])
    );
    for field in ["lastAutomationRunTime", "lastPushTime"] {
        assert_eq!(
            at(&iua, &format!("status.{field}"))["format"],
            json!("date-time")
        );
    }
}

#[test]
fn cel_rules_only_on_image_policy() {
    let pol = version_schema(&image_policy_crd().unwrap(), "v1");
    assert_eq!(
        at(&pol, "spec")["x-kubernetes-validations"],
        json!([
            {
                "rule": "!has(self.interval) || (has(self.digestReflectionPolicy) && self.digestReflectionPolicy == 'Always')",
                "message": "spec.interval is only accepted when spec.digestReflectionPolicy is set to 'Always'"
            },
            {
                "rule": "has(self.interval) || !has(self.digestReflectionPolicy) || self.digestReflectionPolicy != 'Always'",
                "message": "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'"
            }
        ])
    );
    for crd in [
        image_repository_crd().unwrap(),
        image_update_automation_crd().unwrap(),
    ] {
        let text = serde_json::to_string(&crd).unwrap();
        assert!(
            !text.contains("x-kubernetes-validations"),
            "{:?}",
            crd.metadata.name
        );
    }
}

#[test]
fn status_defaults_and_condition_validation_in_every_version() {
    for (crd, _, _) in crds() {
        for v in &crd.spec.versions {
            let schema = version_schema(&crd, &v.name);
            assert_eq!(
                schema["properties"]["status"]["default"],
                json!({"observedGeneration": -1})
            );
            let cond = at(&schema, "status.conditions.[]");
            assert_eq!(
                cond["required"],
                json!(["lastTransitionTime", "message", "reason", "status", "type"])
            );
            assert_eq!(
                cond["properties"]["status"]["enum"],
                json!(["True", "False", "Unknown"])
            );
            assert_eq!(cond["properties"]["message"]["maxLength"], json!(32768));
            assert!(cond["properties"]["reason"]["pattern"].is_string());
            let text = serde_json::to_string(&schema).unwrap();
            assert!(
                !text.contains("\"nullable\""),
                "no nullable in {}",
                crd.spec.names.kind
            );
        }
    }
}

#[test]
fn automation_crd_disables_kustomize_substitution() {
    let crd = image_update_automation_crd().unwrap();
    let ann = crd.metadata.annotations.unwrap_or_default();
    assert_eq!(
        ann.get("kustomize.toolkit.fluxcd.io/substitute")
            .map(String::as_str),
        Some("disabled")
    );
    for other in [image_repository_crd().unwrap(), image_policy_crd().unwrap()] {
        assert!(other.metadata.annotations.is_none_or(|a| a.is_empty()));
    }
}

#[test]
fn git_repository_stand_in_is_labelled_and_minimal() {
    let crd = git_repository_crd().unwrap();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("gitrepositories.source.toolkit.fluxcd.io")
    );
    let (lk, lv) = crd::STAND_IN_LABEL;
    assert_eq!(
        crd.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(lk))
            .map(String::as_str),
        Some(lv)
    );
    let (ak, _) = crd::STAND_IN_ANNOTATION;
    assert!(
        crd.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ak))
    );
    let file = generated_files()
        .unwrap()
        .into_iter()
        .find(|f| f.name.contains("gitrepositories"))
        .unwrap();
    assert_eq!(file.dir, OutputDir::TestData);
    assert!(file.content.contains("# TEST/DEMO STAND-IN"));

    assert_eq!(crd.spec.versions.len(), 1);
    let v = &crd.spec.versions[0];
    assert!(v.served && v.storage && v.name == "v1");
    let schema = version_schema(&crd, "v1");
    assert_eq!(
        at(&schema, "spec.url")["pattern"],
        json!("^(http|https|ssh)://.*$")
    );
    assert_eq!(at(&schema, "spec.timeout")["default"], json!("60s"));
    assert_eq!(
        at(&schema, "spec")["x-kubernetes-preserve-unknown-fields"],
        json!(true)
    );
    let props: BTreeSet<&str> = at(&schema, "spec")["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for f in [
        "url",
        "secretRef",
        "ref",
        "timeout",
        "proxySecretRef",
        "provider",
        "serviceAccountName",
    ] {
        assert!(props.contains(f), "GitRepository spec.{f}");
    }
    for f in ["branch", "tag", "semver", "name", "commit"] {
        assert_eq!(
            at(&schema, &format!("spec.ref.{f}"))["type"],
            json!("string")
        );
    }
}

#[test]
fn guide_git_repository_reads_through_stand_in() {
    // The GitRepository `flux bootstrap` creates, with fields the automation ignores.
    let doc = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "flux-system", "namespace": "flux-system"},
        "spec": {
            "interval": "1m0s",
            "ref": {"branch": "main"},
            "secretRef": {"name": "flux-system"},
            "url": "ssh://git@github.com/example/fleet-infra",
            "ignore": "/*\n!/clusters\n"
        }
    });
    let schema = version_schema(&git_repository_crd().unwrap(), "v1");
    assert_eq!(common::validate_object(&schema, &doc), Vec::<String>::new());
    let repo: api::GitRepository = serde_json::from_value(doc).unwrap();
    assert_eq!(
        repo.spec.reference.as_ref().map(|r| r.checkout()),
        Some(api::GitCheckout::Branch("main"))
    );
    assert_eq!(
        repo.spec.secret_ref.as_ref().map(|s| s.name.as_str()),
        Some("flux-system")
    );
    assert_eq!(repo.spec.timeout(), Ok(std::time::Duration::from_secs(60)));
}
