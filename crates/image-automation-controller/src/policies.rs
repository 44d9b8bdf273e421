//! The ImagePolicies an automation applies (`automation.md` §2.1, §3.2): those in its namespace
//! matching `spec.policySelector` (all by default) that have a `status.latestRef`.

use std::collections::BTreeMap;

use api::image_policy::ImagePolicy;
use api::image_update_automation::{INVALID_POLICY_SELECTOR_REASON, UPDATE_FAILED_REASON};
use api::refs::ImageRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ListParams;
use kube::core::Selector;
use kube::{Api, ResourceExt};

use crate::source::Failure;

/// The selector as a label-selector string for the API server (`None`: everything).
pub fn selector_string(selector: Option<&LabelSelector>) -> Result<Option<String>, Failure> {
    let Some(sel) = selector else {
        return Ok(None);
    };
    let parsed = Selector::try_from(sel.clone()).map_err(|e| {
        Failure::stalled(
            INVALID_POLICY_SELECTOR_REASON,
            format!("failed to parse policy selector: {e}"),
        )
    })?;
    let s = parsed.to_string();
    Ok((!s.is_empty()).then_some(s))
}

/// The selected policies of `namespace`, by name, with their latest image (policies without one
/// are left out, as Flux does).
pub async fn observed(
    client: &kube::Client,
    namespace: &str,
    selector: Option<&LabelSelector>,
) -> Result<BTreeMap<String, ImageRef>, Failure> {
    let labels = selector_string(selector)?;
    let api: Api<ImagePolicy> = Api::namespaced(client.clone(), namespace);
    let mut params = ListParams::default();
    if let Some(l) = &labels {
        params = params.labels(l);
    }
    let list = api.list(&params).await.map_err(|e| {
        Failure::retry(
            api::meta::FAILED_REASON,
            format!("failed to list policies: {e}"),
        )
    })?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|p| {
            let latest = p.status.as_ref()?.latest_ref.clone()?;
            Some((p.name_any(), latest))
        })
        .collect())
}

/// The setters' policy table (`<ns>:<name>` → image) for the observed policies. Any latest image
/// that does not parse aborts the update, as in Flux (`encountered invalid image ref`).
pub fn setter_policies(
    namespace: &str,
    observed: &BTreeMap<String, ImageRef>,
) -> Result<setters::Policies, Failure> {
    observed
        .iter()
        .map(|(name, r)| {
            let text = image_string(r);
            let image = setters::ImageRef::parse(&text).map_err(|e| {
                Failure::retry(
                    UPDATE_FAILED_REASON,
                    format!(
                        "failed to apply policies: encountered invalid image ref {text:?}: {e}"
                    ),
                )
            })?;
            Ok((format!("{namespace}:{name}"), image))
        })
        .collect()
}

/// `name:tag[@digest]` (Flux's `ImageRef.String()`).
pub fn image_string(r: &ImageRef) -> String {
    if r.digest.is_empty() {
        format!("{}:{}", r.name, r.tag)
    } else {
        format!("{}:{}@{}", r.name, r.tag, r.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_become_label_selector_strings() {
        assert_eq!(selector_string(None).unwrap(), None);
        assert_eq!(
            selector_string(Some(&LabelSelector::default())).unwrap(),
            None
        );
        let sel = LabelSelector {
            match_labels: Some([("app".to_owned(), "podinfo".to_owned())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["web".into()]),
            }]),
        };
        let s = selector_string(Some(&sel)).unwrap().unwrap();
        assert!(
            s.contains("app=podinfo") && s.contains("tier in (web)"),
            "{s}"
        );
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Sometimes".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let err = selector_string(Some(&bad)).unwrap_err();
        assert_eq!(err.reason(), INVALID_POLICY_SELECTOR_REASON);
        assert!(
            err.message()
                .starts_with("failed to parse policy selector: "),
            "{err}"
        );
    }

    #[test]
    fn setter_policies_are_keyed_by_namespace_and_name() {
        let observed: BTreeMap<String, ImageRef> = [(
            "podinfo".to_owned(),
            ImageRef {
                name: "ghcr.io/stefanprodan/podinfo".into(),
                tag: "5.0.3".into(),
                digest: String::new(),
            },
        )]
        .into();
        let p = setter_policies("flux-system", &observed).unwrap();
        assert_eq!(
            p["flux-system:podinfo"].to_string(),
            "ghcr.io/stefanprodan/podinfo:5.0.3"
        );
        let bad: BTreeMap<String, ImageRef> = [(
            "x".to_owned(),
            ImageRef {
                name: "Bad Name".into(),
                tag: "1".into(),
                digest: String::new(),
            },
        )]
        .into();
        let err = setter_policies("ns", &bad).unwrap_err();
        assert_eq!(err.reason(), UPDATE_FAILED_REASON);
        assert!(
            err.message().contains("encountered invalid image ref"),
            "{err}"
        );
    }
}
