//! The guide's three image.toolkit.fluxcd.io manifests (v1beta1, as written), with the guide's
//! fragments merged in, are accepted by the shared CRD schema and round-trip through the types;
//! the same manifests as v1 too.

// Test helpers may panic on malformed fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use api::crd::{image_policy_crd, image_repository_crd, image_update_automation_crd};
use api::image_policy::{EffectivePolicy, ImagePolicy};
use api::image_repository::{ImageRepository, RegistryProvider};
use api::image_update_automation::{ImageUpdateAutomation, SigningKeyType, UpdateStrategyName};
use api::{GitCheckout, crd};
use common::{apply_defaults, load_yaml, merge_patch, validate_object, version_schema};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Loads a guide manifest and merges the given fragments into it.
fn merged(base: &str, fragments: &[&str]) -> Value {
    let mut doc = load_yaml(base);
    assert_eq!(
        doc["apiVersion"], "image.toolkit.fluxcd.io/v1beta1",
        "{base} is the guide's v1beta1 text"
    );
    for f in fragments {
        let frag = load_yaml(&format!("fragments/{f}"));
        // Fragments name the kind they patch; a mismatch means the test wires the wrong file.
        if let Some(kind) = frag.get("kind") {
            assert_eq!(kind, &doc["kind"], "fragment {f}");
        }
        merge_patch(&mut doc, &frag);
    }
    doc
}

/// Checks `doc` against every served version's schema, round-trips it through `K` as `version`,
/// and returns the typed object (after API-server style defaulting, for field assertions).
fn round_trip<K>(crd: &CustomResourceDefinition, doc: &Value, version: &str) -> K
where
    K: Serialize + DeserializeOwned,
{
    let mut doc = doc.clone();
    doc["apiVersion"] = json!(format!("image.toolkit.fluxcd.io/{version}"));
    let schema = version_schema(crd, version);
    let errors = validate_object(&schema, &doc);
    assert!(
        errors.is_empty(),
        "{version} schema rejects the manifest: {errors:#?}\n{doc:#}"
    );

    let typed: K = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
    let mut back = serde_json::to_value(&typed).unwrap();
    // The types are the storage version; the API server rewrites apiVersion the same way.
    assert_eq!(back["apiVersion"], "image.toolkit.fluxcd.io/v1");
    back["apiVersion"] = doc["apiVersion"].clone();
    assert_eq!(
        back, doc,
        "round trip through the types changed the manifest"
    );

    let mut defaulted = doc.clone();
    apply_defaults(&schema, &mut defaulted);
    let errors = validate_object(&schema, &defaulted);
    assert!(errors.is_empty(), "defaulted object invalid: {errors:#?}");
    serde_json::from_value(defaulted).unwrap()
}

fn all_versions<K: Serialize + DeserializeOwned>(
    crd: &CustomResourceDefinition,
    doc: &Value,
) -> Vec<K> {
    let versions: Vec<&str> = std::iter::once(crd::STORAGE_VERSION)
        .chain(crd::DEPRECATED_VERSIONS.iter().copied())
        .collect();
    assert_eq!(versions, ["v1", "v1beta2", "v1beta1"]);
    versions
        .into_iter()
        .map(|v| round_trip::<K>(crd, doc, v))
        .collect()
}

#[test]
fn image_repository_as_generated_by_the_guide() {
    let crd = image_repository_crd().unwrap();
    for repo in all_versions::<ImageRepository>(&crd, &merged("podinfo-registry.yaml", &[])) {
        assert_eq!(repo.metadata.name.as_deref(), Some("podinfo"));
        assert_eq!(repo.metadata.namespace.as_deref(), Some("flux-system"));
        assert_eq!(repo.spec.image, "ghcr.io/stefanprodan/podinfo");
        assert_eq!(repo.spec.interval(), Ok(Duration::from_secs(60)));
        assert_eq!(repo.spec.get_timeout(), Ok(Duration::from_secs(60)));
        // Filled in by the schema defaults, as the API server would.
        assert_eq!(repo.spec.provider, Some(RegistryProvider::Generic));
        assert_eq!(repo.spec.exclusion_list, vec!["^.*\\.sig$".to_string()]);
        assert_eq!(repo.status.and_then(|s| s.observed_generation), Some(-1));
    }
}

#[test]
fn image_repository_with_secret_ref_fragments() {
    let crd = image_repository_crd().unwrap();
    for (frag, secret) in [
        ("registry-secret-ref.yaml", "regcred"),
        ("registry-secret-ref-ecr.yaml", "ecr-credentials"),
        ("registry-secret-ref-gcr.yaml", "gcr-credentials"),
    ] {
        let doc = merged("podinfo-registry.yaml", &[frag]);
        for repo in all_versions::<ImageRepository>(&crd, &doc) {
            assert_eq!(
                repo.spec.secret_ref.map(|r| r.name).as_deref(),
                Some(secret)
            );
        }
    }
}

#[test]
fn image_policy_as_generated_by_the_guide_and_reverted() {
    let crd = image_policy_crd().unwrap();
    for (frags, range) in [(&[][..], "5.0.x"), (&["policy-revert.yaml"][..], "5.0.0")] {
        let doc = merged("podinfo-policy.yaml", frags);
        for pol in all_versions::<ImagePolicy>(&crd, &doc) {
            assert_eq!(pol.spec.image_repository_ref.name, "podinfo");
            assert_eq!(
                pol.spec.image_repository_ref.namespace_or("flux-system"),
                "flux-system"
            );
            assert_eq!(
                pol.spec.policy.effective(),
                Some(EffectivePolicy::SemVer(range))
            );
            assert_eq!(
                pol.spec.digest_reflection_policy(),
                api::image_policy::ReflectionPolicy::Never
            );
            assert_eq!(pol.spec.interval(), Ok(None));
        }
    }
}

#[test]
fn image_update_automation_as_generated_by_the_guide() {
    let crd = image_update_automation_crd().unwrap();
    for iua in
        all_versions::<ImageUpdateAutomation>(&crd, &merged("flux-system-automation.yaml", &[]))
    {
        let spec = &iua.spec;
        assert_eq!(spec.interval(), Ok(Duration::from_secs(60)));
        assert_eq!(spec.source_ref.kind.as_str(), "GitRepository");
        assert_eq!(spec.source_ref.name, "flux-system");
        assert_eq!(spec.checkout(None), GitCheckout::Branch("main"));
        assert_eq!(spec.push_branch(), Some("main"));
        let git = spec.git.as_ref().unwrap();
        assert_eq!(
            git.commit.author.email,
            "fluxcdbot@users.noreply.github.com"
        );
        assert_eq!(git.commit.author.name, "fluxcdbot");
        assert_eq!(
            git.commit.message_template(),
            "{{range .Updated.Images}}{{println .}}{{end}}"
        );
        assert!(
            git.commit
                .signing_key
                .as_ref()
                .is_none_or(|k| k.key_type() == SigningKeyType::Gpg)
        );
        let update = spec.update.as_ref().unwrap();
        assert_eq!(update.strategy, UpdateStrategyName::Setters);
        assert_eq!(update.path, "./clusters/my-cluster");
        assert!(!spec.suspend);
    }
}

#[test]
fn image_update_automation_with_all_fragments() {
    let crd = image_update_automation_crd().unwrap();
    let doc = merged(
        "flux-system-automation.yaml",
        &[
            "automation-push-branch.yaml",
            "automation-message-template.yaml",
            "automation-suspend.yaml",
        ],
    );
    for iua in all_versions::<ImageUpdateAutomation>(&crd, &doc) {
        let spec = &iua.spec;
        assert_eq!(spec.checkout(None), GitCheckout::Branch("main"));
        assert_eq!(spec.push_branch(), Some("flux-image-updates"));
        let template = spec.git.as_ref().unwrap().commit.message_template();
        assert!(
            template.starts_with(
                "Automated image update\n\nAutomation name: {{ .AutomationObject }}\n"
            )
        );
        assert!(template.ends_with("{{ end -}}\n"));
        assert!(spec.suspend);
    }
}

#[test]
fn update_defaults_to_setters_when_omitted() {
    let crd = image_update_automation_crd().unwrap();
    let mut doc = merged("flux-system-automation.yaml", &[]);
    doc["spec"].as_object_mut().unwrap().remove("update");
    let schema = version_schema(&crd, "v1");
    apply_defaults(&schema, &mut doc);
    assert_eq!(doc["spec"]["update"], json!({"strategy": "Setters"}));
    let iua: ImageUpdateAutomation = serde_json::from_value(doc).unwrap();
    assert_eq!(
        iua.spec.update.unwrap().strategy,
        UpdateStrategyName::Setters
    );
}

/// A CRD, a guide manifest, a merge patch making it invalid, and the JSON path blamed.
type RejectCase = (
    fn() -> Result<CustomResourceDefinition, crd::CrdError>,
    &'static str,
    Value,
    &'static str,
);

#[test]
fn schema_rejects_bad_values() {
    let cases: &[RejectCase] = &[
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"interval": "1d"}}),
            ".spec.interval",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"timeout": "1h"}}),
            ".spec.timeout",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"provider": "ibm"}}),
            ".spec.provider",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"exclusionList": vec!["x"; 26]}}),
            ".spec.exclusionList",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"serviceAccountName": "a".repeat(254)}}),
            ".spec.serviceAccountName",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"secretRef": {}}}),
            ".spec.secretRef.name",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"image": null}}),
            ".spec.image",
        ),
        (
            image_repository_crd,
            "podinfo-registry.yaml",
            json!({"spec": {"imagee": "x"}}),
            ".spec.imagee",
        ),
        (
            image_policy_crd,
            "podinfo-policy.yaml",
            json!({"spec": {"policy": {"alphabetical": {"order": "up"}}}}),
            ".spec.policy.alphabetical.order",
        ),
        (
            image_policy_crd,
            "podinfo-policy.yaml",
            json!({"spec": {"digestReflectionPolicy": "Sometimes"}}),
            ".spec.digestReflectionPolicy",
        ),
        (
            image_policy_crd,
            "podinfo-policy.yaml",
            json!({"spec": {"policy": {"semver": {"range": null}}}}),
            ".spec.policy.semver.range",
        ),
        (
            image_update_automation_crd,
            "flux-system-automation.yaml",
            json!({"spec": {"update": {"strategy": "Kustomize"}}}),
            ".spec.update.strategy",
        ),
        (
            image_update_automation_crd,
            "flux-system-automation.yaml",
            json!({"spec": {"sourceRef": {"kind": "OCIRepository"}}}),
            ".spec.sourceRef.kind",
        ),
        (
            image_update_automation_crd,
            "flux-system-automation.yaml",
            json!({"spec": {"git": {"commit": {"signingKey": {"secretRef": {"name": "k"}, "type": "x509"}}}}}),
            ".spec.git.commit.signingKey.type",
        ),
        (
            image_update_automation_crd,
            "flux-system-automation.yaml",
            json!({"spec": {"git": {"commit": {"author": {"email": null}}}}}),
            ".spec.git.commit.author.email",
        ),
        (
            image_update_automation_crd,
            "flux-system-automation.yaml",
            json!({"status": {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "X", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
            ".status.conditions[0].status",
        ),
    ];
    for (crd_fn, base, patch, path) in cases {
        let crd = crd_fn().unwrap();
        let mut doc = merged(base, &[]);
        merge_patch(&mut doc, patch);
        for version in ["v1", "v1beta2", "v1beta1"] {
            let errors = validate_object(&version_schema(&crd, version), &doc);
            assert!(
                errors.iter().any(|e| e.starts_with(&format!("{path}:"))),
                "{version}: {patch} should be rejected at {path}, got {errors:?}"
            );
        }
    }
}
