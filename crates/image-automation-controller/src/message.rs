//! Commit messages: the setters' change report turned into the templates' input, so the offline
//! `update` command and the reconciler render exactly the same message for the same change.

use std::collections::BTreeMap;

use setters::{Policies, Report};
use templates::{
    Change, FileChanges, NamespacedName, ObjectChanges, ObjectId, PolicyImage, TemplateInput,
};

/// The policy key (`ns:name`) of a setter name (`ns:name`, `ns:name:tag`, `ns:name:name`, `ns:name:digest`).
fn policy_key(setter: &str) -> &str {
    match setter.match_indices(':').nth(1) {
        Some((i, _)) => &setter[..i],
        None => setter,
    }
}

/// The template input for `report`: every change carries the image of the policy its marker names,
/// which the legacy `.Updated` model lists.
pub fn template_input(
    report: &Report,
    policies: &Policies,
    automation: NamespacedName,
    values: Option<BTreeMap<String, String>>,
) -> TemplateInput {
    let image_of = |setter: &str| {
        let key = policy_key(setter);
        let image = policies.get(key)?;
        let (namespace, name) = key.split_once(':')?;
        Some(PolicyImage {
            name: image.name.clone(),
            tag: (!image.tag.is_empty()).then(|| image.tag.clone()),
            digest: (!image.digest.is_empty()).then(|| image.digest.clone()),
            policy: NamespacedName {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
        })
    };
    let files = report
        .files
        .iter()
        .map(|f| FileChanges {
            path: f.path.clone(),
            objects: f
                .objects
                .iter()
                .map(|o| ObjectChanges {
                    object: ObjectId {
                        api_version: o.object.api_version.clone(),
                        kind: o.object.kind.clone(),
                        name: o.object.name.clone(),
                        namespace: o.object.namespace.clone(),
                    },
                    changes: o
                        .changes
                        .iter()
                        .map(|c| Change {
                            old_value: c.old_value.clone(),
                            new_value: c.new_value.clone(),
                            setter: c.setter.clone(),
                            image: image_of(&c.setter),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    TemplateInput {
        automation,
        files,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use setters::ImageRef;

    fn podinfo_update() -> (Report, Policies) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("deploy.yaml"),
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  namespace: default\n\
             spec:\n  template:\n    spec:\n      containers:\n      - name: podinfod\n        \
             image: ghcr.io/stefanprodan/podinfo:5.0.0 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n",
        )
        .unwrap();
        let policies: Policies = [(
            "flux-system:podinfo".to_owned(),
            ImageRef::parse("ghcr.io/stefanprodan/podinfo:5.0.3").unwrap(),
        )]
        .into_iter()
        .collect();
        let plan = setters::plan(dir.path(), &setters::Setters::new(&policies).unwrap()).unwrap();
        (plan.report, policies)
    }

    #[test]
    fn policy_key_strips_the_field_suffix() {
        assert_eq!(policy_key("flux-system:podinfo"), "flux-system:podinfo");
        assert_eq!(policy_key("flux-system:podinfo:tag"), "flux-system:podinfo");
        assert_eq!(
            policy_key("flux-system:podinfo:name"),
            "flux-system:podinfo"
        );
    }

    #[test]
    fn the_guides_template_lists_the_updated_image() {
        let (report, policies) = podinfo_update();
        let automation = "flux-system/flux-system".parse().unwrap();
        let input = template_input(&report, &policies, automation, None);
        let message = templates::render_commit_message(
            "{{range .Updated.Images}}{{println .}}{{end}}",
            &input,
            &templates::Limits::default(),
        )
        .unwrap();
        assert_eq!(message, "ghcr.io/stefanprodan/podinfo:5.0.3\n");
        let message = templates::render_commit_message(
            "{{ .AutomationObject }}: {{ range $f, $_ := .Changed.FileChanges }}{{ $f }}{{ end }}",
            &input,
            &templates::Limits::default(),
        )
        .unwrap();
        assert_eq!(message, "flux-system/flux-system: deploy.yaml");
    }
}
