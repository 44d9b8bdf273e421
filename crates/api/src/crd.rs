//! CustomResourceDefinitions generated from the types, and their YAML rendering.
//!
//! Every image kind is served as `v1` (storage), `v1beta2` and `v1beta1` with one shared schema
//! and no conversion webhook: the API server only rewrites `apiVersion`, so manifests written for
//! any version apply unchanged and the controllers only ever read and write `v1`.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::core::crd::{MergeError, merge_crds};
use kube::{CustomResourceExt, Resource};
use serde::{Serialize, Serializer};

use crate::git_repository::GitRepository;
use crate::image_policy::ImagePolicy;
use crate::image_repository::ImageRepository;
use crate::image_update_automation::{ImageUpdateAutomation, SUBSTITUTE_DISABLED_ANNOTATION};

/// The storage version of every image kind.
pub const STORAGE_VERSION: &str = "v1";
/// Older versions still served, from the same schema, marked deprecated.
pub const DEPRECATED_VERSIONS: &[&str] = &["v1beta2", "v1beta1"];
/// Label put on the GitRepository stand-in CRD.
pub const STAND_IN_LABEL: (&str, &str) = ("app.kubernetes.io/component", "test-stand-in");
/// Annotation put on the GitRepository stand-in CRD, saying what it is.
pub const STAND_IN_ANNOTATION: (&str, &str) = (
    "image-automation.rs/stand-in",
    "Minimal GitRepository CRD generated from the api crate for tests and demos. \
     Production clusters use the CRD of Flux's source-controller.",
);

/// Why a CRD could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// kube refused to merge the versions.
    #[error("merging the versions of CRD {crd}: {source}")]
    Merge {
        /// CRD name.
        crd: String,
        /// kube's error.
        #[source]
        source: MergeError,
    },
    /// The derived CRD lacks a part it always has (a bug in the derive or in this module).
    #[error("derived CRD {crd} has no {part}")]
    Malformed {
        /// CRD name.
        crd: String,
        /// Missing part.
        part: &'static str,
    },
    /// Rendering to YAML failed.
    #[error("rendering CRD {crd} as YAML: {message}")]
    Yaml {
        /// CRD name.
        crd: String,
        /// serde-saphyr's message.
        message: String,
    },
}

/// Deprecation warning for an old version, in Flux's wording.
pub fn deprecation_warning(version: &str, kind: &str) -> String {
    format!("{version} {kind} is deprecated, upgrade to {STORAGE_VERSION}")
}

/// Schema transform removing the `default` schemars derives from `#[serde(default)]`, for fields
/// whose Flux schema has none (the value is always serialised, an absent one means empty).
pub fn drop_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// The ImageRepository CRD.
pub fn image_repository_crd() -> Result<CustomResourceDefinition, CrdError> {
    image_crd::<ImageRepository>()
}

/// The ImagePolicy CRD.
pub fn image_policy_crd() -> Result<CustomResourceDefinition, CrdError> {
    image_crd::<ImagePolicy>()
}

/// The ImageUpdateAutomation CRD, annotated so Flux's kustomize-controller leaves `${...}` alone.
pub fn image_update_automation_crd() -> Result<CustomResourceDefinition, CrdError> {
    let mut crd = image_crd::<ImageUpdateAutomation>()?;
    let (key, value) = SUBSTITUTE_DISABLED_ANNOTATION;
    crd.metadata
        .annotations
        .get_or_insert_default()
        .insert(key.into(), value.into());
    Ok(crd)
}

/// The stand-in GitRepository CRD for tests and demos (labelled and annotated as such).
pub fn git_repository_crd() -> Result<CustomResourceDefinition, CrdError> {
    let mut crd = normalize_schema(GitRepository::crd())?;
    let (key, value) = STAND_IN_LABEL;
    crd.metadata
        .labels
        .get_or_insert_default()
        .insert(key.into(), value.into());
    let (key, value) = STAND_IN_ANNOTATION;
    crd.metadata
        .annotations
        .get_or_insert_default()
        .insert(key.into(), value.into());
    Ok(crd)
}

/// The three image.toolkit.fluxcd.io CRDs, keyed by their Flux file name
/// (`image.toolkit.fluxcd.io_<plural>.yaml`).
pub fn image_crds() -> Result<BTreeMap<String, CustomResourceDefinition>, CrdError> {
    [
        image_repository_crd()?,
        image_policy_crd()?,
        image_update_automation_crd()?,
    ]
    .into_iter()
    .map(|crd| Ok((file_name(&crd), crd)))
    .collect()
}

/// Flux's file name for a CRD: `<group>_<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Builds the served versions of an image kind from its single derived (v1) schema.
fn image_crd<K>() -> Result<CustomResourceDefinition, CrdError>
where
    K: CustomResourceExt + Resource<DynamicType = ()>,
{
    let base = normalize_schema(K::crd())?;
    let kind = K::kind(&()).into_owned();
    let mut crds = vec![base.clone()];
    for version in DEPRECATED_VERSIONS {
        let mut old = base.clone();
        for v in &mut old.spec.versions {
            v.name = (*version).to_string();
            v.storage = false;
            v.served = true;
            v.deprecated = Some(true);
            v.deprecation_warning = Some(deprecation_warning(version, &kind));
        }
        crds.push(old);
    }
    merge_crds(crds, STORAGE_VERSION).map_err(|source| CrdError::Merge {
        crd: K::crd_name().to_string(),
        source,
    })
}

/// Validations of `metav1.Condition` fields that the API server applies to Flux's CRDs; the
/// k8s-openapi schema of `Condition` has types only.
fn condition_validations() -> serde_json::Value {
    serde_json::json!({
        "message": { "maxLength": 32768 },
        "observedGeneration": { "minimum": 0 },
        "reason": {
            "maxLength": 1024,
            "minLength": 1,
            "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
        },
        "status": { "enum": ["True", "False", "Unknown"] },
        "type": {
            "maxLength": 316,
            "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        }
    })
}

/// Brings a derived CRD to Flux's shape:
/// - `status` defaults to `{observedGeneration: -1}`, so a fresh object reports that no
///   generation has been observed yet;
/// - condition fields carry metav1's validations;
/// - no `nullable` (our types never write `null`; Flux's schemas prune it) and no root `title`;
/// - `listKind` is explicit.
fn normalize_schema(
    mut crd: CustomResourceDefinition,
) -> Result<CustomResourceDefinition, CrdError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let malformed = |part| CrdError::Malformed {
        crd: name.clone(),
        part,
    };
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    for version in &mut crd.spec.versions {
        let props = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.take())
            .ok_or_else(|| malformed("schema"))?;
        let mut root = serde_json::to_value(props).map_err(|_| malformed("serialisable schema"))?;
        strip_nullable(&mut root);
        let obj = root
            .as_object_mut()
            .ok_or_else(|| malformed("root schema object"))?;
        obj.remove("title");
        let status = obj
            .get_mut("properties")
            .and_then(|p| p.get_mut("status"))
            .and_then(serde_json::Value::as_object_mut)
            .ok_or_else(|| malformed("status schema"))?;
        status.insert(
            "default".into(),
            serde_json::json!({ "observedGeneration": -1 }),
        );
        let condition = status
            .get_mut("properties")
            .and_then(|p| p.get_mut("conditions"))
            .and_then(|c| c.get_mut("items"))
            .and_then(|i| i.get_mut("properties"))
            .and_then(serde_json::Value::as_object_mut)
            .ok_or_else(|| malformed("status.conditions schema"))?;
        if let serde_json::Value::Object(extra) = condition_validations() {
            for (field, checks) in extra {
                let target = condition
                    .get_mut(&field)
                    .and_then(serde_json::Value::as_object_mut)
                    .ok_or_else(|| malformed("condition field schema"))?;
                target.extend(
                    checks
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
        }
        let props: JSONSchemaProps =
            serde_json::from_value(root).map_err(|_| malformed("valid schema"))?;
        if let Some(schema) = version.schema.as_mut() {
            schema.open_api_v3_schema = Some(props);
        }
    }
    Ok(crd)
}

/// Removes every `nullable` keyword from a schema.
fn strip_nullable(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("nullable");
            map.values_mut().for_each(strip_nullable);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nullable),
        _ => {}
    }
}

/// Schema transform for `policySelector`: label selectors are replaced as a whole by
/// server-side apply, as in Kubernetes' own types.
pub fn atomic_label_selector(schema: &mut schemars::Schema) {
    schema.insert("x-kubernetes-map-type".into(), "atomic".into());
    let Some(exprs) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("matchExpressions"))
    else {
        return;
    };
    if let Some(obj) = exprs.as_object_mut() {
        obj.insert("x-kubernetes-list-type".into(), "atomic".into());
    }
    if let Some(values) = exprs
        .get_mut("items")
        .and_then(|i| i.get_mut("properties"))
        .and_then(|p| p.get_mut("values"))
        .and_then(serde_json::Value::as_object_mut)
    {
        values.insert("x-kubernetes-list-type".into(), "atomic".into());
    }
}

/// Renders a CRD as YAML with sorted keys (stable output whatever serde_json's features),
/// preceded by `header` comment lines.
pub fn to_yaml(crd: &CustomResourceDefinition, header: &[&str]) -> Result<String, CrdError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let mut value = serde_json::to_value(crd).map_err(|e| CrdError::Yaml {
        crd: name.clone(),
        message: e.to_string(),
    })?;
    integral_numbers(&mut value);
    let body = serde_saphyr::to_string(&Sorted(&value)).map_err(|e| CrdError::Yaml {
        crd: name,
        message: e.to_string(),
    })?;
    let mut out = String::new();
    for line in header {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("---\n");
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// Writes whole floats as integers: the OpenAPI types hold `minimum` and friends as `f64`, which would
/// print `0.0` where Flux's CRDs (and kustomize's re-rendering) have `0`.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15)
            {
                // The bound keeps the cast exact.
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Where a generated file belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputDir {
    /// `config/crd/bases`: the CRDs this project installs.
    Bases,
    /// `config/testdata/crd`: stand-ins for other projects' CRDs, for tests and demos only.
    TestData,
}

impl OutputDir {
    /// Path of the directory relative to the repository root.
    pub fn default_path(self) -> &'static str {
        match self {
            Self::Bases => "config/crd/bases",
            Self::TestData => "config/testdata/crd",
        }
    }
}

/// One YAML file written by `crdgen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Directory the file goes to.
    pub dir: OutputDir,
    /// File name, e.g. `image.toolkit.fluxcd.io_imagepolicies.yaml`.
    pub name: String,
    /// YAML content.
    pub content: String,
}

/// Header of every generated file.
const GENERATED_HEADER: &str =
    "Generated from the api crate by `cargo run -p api --bin crdgen`; do not edit.";

/// Every file `crdgen` writes: the three image CRDs and the GitRepository stand-in.
pub fn generated_files() -> Result<Vec<GeneratedFile>, CrdError> {
    let mut files = Vec::new();
    for (name, crd) in image_crds()? {
        let content = to_yaml(&crd, &[GENERATED_HEADER])?;
        files.push(GeneratedFile {
            dir: OutputDir::Bases,
            name,
            content,
        });
    }
    let git = git_repository_crd()?;
    let content = to_yaml(
        &git,
        &[
            GENERATED_HEADER,
            "TEST/DEMO STAND-IN: a minimal GitRepository CRD with only the fields the image",
            "automation reads. Flux's source-controller owns the real CRD; never install this one",
            "next to it.",
        ],
    )?;
    files.push(GeneratedFile {
        dir: OutputDir::TestData,
        name: file_name(&git),
        content,
    });
    Ok(files)
}

/// A JSON value serialised with object keys in sorted order.
struct Sorted<'a>(&'a serde_json::Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut m = ser.serialize_map(Some(keys.len()))?;
                for k in keys {
                    m.serialize_entry(k, &Sorted(&map[k]))?;
                }
                m.end()
            }
            serde_json::Value::Array(items) => {
                let mut s = ser.serialize_seq(Some(items.len()))?;
                for item in items {
                    s.serialize_element(&Sorted(item))?;
                }
                s.end()
            }
            other => other.serialize(ser),
        }
    }
}
