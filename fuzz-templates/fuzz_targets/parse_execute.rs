//! Fuzzes parse + execute: no panic, output within budget, bounded time and memory.
//!
//! Run: `cargo +nightly fuzz run --fuzz-dir fuzz-templates parse_execute -- -dict=fuzz-templates/templates.dict`

#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use templates::{
    Change, FileChanges, Limits, NamespacedName, ObjectChanges, ObjectId, PolicyImage, Template,
    TemplateInput, Value,
};

/// Small budgets keep every run short; the engine must respect them whatever the template.
const LIMITS: Limits = Limits {
    max_steps: 200_000,
    max_output: 64 * 1024,
    max_depth: 50,
};

static DATA: LazyLock<Value> = LazyLock::new(|| {
    let policy = NamespacedName {
        namespace: "default".into(),
        name: "podinfo".into(),
    };
    let image = PolicyImage {
        name: "ghcr.io/stefanprodan/podinfo".into(),
        tag: Some("5.0.3".into()),
        digest: None,
        policy,
    };
    let change = |old: &str, new: &str, setter: &str| Change {
        old_value: old.into(),
        new_value: new.into(),
        setter: setter.into(),
        image: Some(image.clone()),
    };
    TemplateInput {
        automation: NamespacedName {
            namespace: "flux-system".into(),
            name: "auto".into(),
        },
        files: vec![
            FileChanges {
                path: "a/deploy.yaml".into(),
                objects: vec![ObjectChanges {
                    object: ObjectId {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        name: "podinfo".into(),
                        namespace: "default".into(),
                    },
                    changes: vec![
                        change("5.0.0", "5.0.3", "default:podinfo:tag"),
                        change("x", "ghcr.io/stefanprodan/podinfo", "default:podinfo:name"),
                    ],
                }],
            },
            FileChanges {
                path: "b.yaml".into(),
                objects: vec![ObjectChanges {
                    object: ObjectId {
                        kind: "ConfigMap".into(),
                        name: "c".into(),
                        ..Default::default()
                    },
                    changes: vec![change("a", "b", "default:podinfo")],
                }],
            },
        ],
        values: Some(BTreeMap::from([
            ("cluster".into(), "prod".into()),
            ("env".into(), "".into()),
        ])),
    }
    .to_value()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = Template::parse("commit message", text) else {
        return;
    };
    if let Ok(out) = template.execute(&DATA, &LIMITS) {
        assert!(
            out.len() <= LIMITS.max_output,
            "output over budget: {}",
            out.len()
        );
    }
});
