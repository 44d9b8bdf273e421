//! The commit-message data model: typed input filled by the automation controller, turned into the
//! values Flux templates see (the current `.Changed` model and the legacy `.Updated` one).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::value::{Field, Value};

/// Namespace and name of a Kubernetes object (Go `types.NamespacedName`).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct NamespacedName {
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::str::FromStr for NamespacedName {
    type Err = String;

    /// Parses `namespace/name` (as `--automation NS/NAME` takes it); both parts must be non-empty.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(NamespacedName {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("{s:?} is not of the form NAMESPACE/NAME")),
        }
    }
}

impl std::fmt::Display for NamespacedName {
    /// `namespace/name`, as Go's `types.NamespacedName` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Identity of a changed YAML document; ordered field by field like Go sorts `ObjectIdentifier` keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectId {
    /// `apiVersion`, empty when absent.
    #[serde(default)]
    pub api_version: String,
    /// `kind`, empty when absent.
    #[serde(default)]
    pub kind: String,
    /// `metadata.name`, empty when absent.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace`, empty when absent.
    #[serde(default)]
    pub namespace: String,
}

/// The latest image of the policy whose marker made a change (its `status.latestRef`) and the policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct PolicyImage {
    /// Image name without tag or digest, e.g. `ghcr.io/stefanprodan/podinfo`.
    pub name: String,
    /// Tag, if any.
    #[serde(default)]
    pub tag: Option<String>,
    /// Digest, if any.
    #[serde(default)]
    pub digest: Option<String>,
    /// The `ImagePolicy` object.
    pub policy: NamespacedName,
}

/// One value replaced by a setter marker.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Value before the update.
    pub old_value: String,
    /// Value after the update.
    pub new_value: String,
    /// Setter name, e.g. `flux-system:podinfo:tag`.
    pub setter: String,
    /// The policy's image, which feeds the legacy `.Updated` model; `None` leaves it out there.
    #[serde(default)]
    pub image: Option<PolicyImage>,
}

/// Changes made in one object, in document traversal order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ObjectChanges {
    /// The object.
    pub object: ObjectId,
    /// Its changes.
    pub changes: Vec<Change>,
}

/// Changes made in one file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FileChanges {
    /// Path relative to the update path, with `/` separators.
    pub path: String,
    /// Changed objects in the file.
    pub objects: Vec<ObjectChanges>,
}

/// Everything a commit message template may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TemplateInput {
    /// The `ImageUpdateAutomation` object.
    pub automation: NamespacedName,
    /// What the update changed, per file.
    #[serde(default)]
    pub files: Vec<FileChanges>,
    /// `spec.git.commit.messageTemplateValues`; `None` when unset.
    #[serde(default)]
    pub values: Option<BTreeMap<String, String>>,
}

/// Files → objects → changes, with duplicate paths and objects merged as a Go map would hold them.
type Grouped<'a> = BTreeMap<&'a str, BTreeMap<&'a ObjectId, Vec<&'a Change>>>;

impl TemplateInput {
    fn grouped(&self) -> Grouped<'_> {
        let mut g: Grouped<'_> = BTreeMap::new();
        for f in &self.files {
            let objs = g.entry(f.path.as_str()).or_default();
            for o in &f.objects {
                objs.entry(&o.object).or_default().extend(o.changes.iter());
            }
        }
        g
    }

    /// Builds the root value (`source.TemplateData`) templates are executed against.
    pub fn to_value(&self) -> Value {
        let grouped = self.grouped();
        // One legacy model serves both `.Updated` and `.Changed.ImageResult` (values share by Arc).
        let legacy = legacy_result(&grouped);
        let values = match &self.values {
            Some(v) => Value::string_map(v.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            // A nil Go map behaves like an empty one in templates and prints `map[]`.
            None => Value::string_map([]),
        };
        Value::structure(
            "source.TemplateData",
            vec![
                Field::plain("AutomationObject", namespaced_name(&self.automation)),
                Field::plain("Changed", result(&grouped, legacy.clone())),
                Field::plain("Values", values),
                Field::method("Updated", legacy),
            ],
            None,
        )
    }
}

fn namespaced_name(n: &NamespacedName) -> Value {
    Value::structure(
        "types.NamespacedName",
        vec![
            Field::plain("Namespace", Value::str(n.namespace.as_str())),
            Field::plain("Name", Value::str(n.name.as_str())),
        ],
        Some(n.to_string()),
    )
}

fn object_id(o: &ObjectId) -> Value {
    let type_meta = Value::structure(
        "yaml.TypeMeta",
        vec![
            Field::plain("APIVersion", Value::str(o.api_version.as_str()))
                .with_json("apiVersion", true),
            Field::plain("Kind", Value::str(o.kind.as_str())).with_json("kind", true),
        ],
        None,
    );
    let name_meta = Value::structure(
        "yaml.NameMeta",
        vec![
            Field::plain("Name", Value::str(o.name.as_str())).with_json("name", true),
            Field::plain("Namespace", Value::str(o.namespace.as_str()))
                .with_json("namespace", true),
        ],
        None,
    );
    let rid = Value::structure(
        "yaml.ResourceIdentifier",
        vec![
            Field::embedded("TypeMeta", type_meta),
            Field::embedded("NameMeta", name_meta),
        ],
        None,
    );
    Value::structure(
        "update.ObjectIdentifier",
        vec![Field::embedded("ResourceIdentifier", rid)],
        None,
    )
}

fn change(c: &Change) -> Value {
    Value::structure(
        "update.Change",
        vec![
            Field::plain("OldValue", Value::str(c.old_value.as_str())),
            Field::plain("NewValue", Value::str(c.new_value.as_str())),
            Field::plain("Setter", Value::str(c.setter.as_str())),
        ],
        None,
    )
}

const CHANGES_T: &str = "[]update.Change";
const OBJECT_CHANGES_T: &str = "update.ObjectChanges";

fn change_list(cs: &[&Change]) -> Value {
    Value::list(CHANGES_T, cs.iter().map(|c| change(c)).collect())
}

fn object_changes(objs: &BTreeMap<&ObjectId, Vec<&Change>>) -> Value {
    let e = objs
        .iter()
        .map(|(o, cs)| (object_id(o), change_list(cs)))
        .collect();
    Value::map(OBJECT_CHANGES_T, Value::list(CHANGES_T, Vec::new()), e)
}

/// `update.Result`: `FileChanges` plus the `Changes()` and `Objects()` methods, and the legacy
/// `ImageResult`.
fn result(g: &Grouped<'_>, legacy: Value) -> Value {
    let files = g
        .iter()
        .map(|(p, objs)| (Value::str(*p), object_changes(objs)))
        .collect();
    let file_changes = Value::map(
        "map[string]update.ObjectChanges",
        Value::map(
            OBJECT_CHANGES_T,
            Value::list(CHANGES_T, Vec::new()),
            Vec::new(),
        ),
        files,
    );

    // Changes(): deduplicated over files (ascending) and objects (ascending), traversal order within.
    let mut seen: Vec<&Change> = Vec::new();
    for objs in g.values() {
        for cs in objs.values() {
            for c in cs {
                if !seen.iter().any(|s| {
                    s.old_value == c.old_value && s.new_value == c.new_value && s.setter == c.setter
                }) {
                    seen.push(c);
                }
            }
        }
    }

    // Objects(): the same object in several files gets its changes concatenated.
    let mut merged: BTreeMap<&ObjectId, Vec<&Change>> = BTreeMap::new();
    for objs in g.values() {
        for (o, cs) in objs {
            merged.entry(o).or_default().extend(cs.iter().copied());
        }
    }

    Value::structure(
        "update.Result",
        vec![
            Field::plain("FileChanges", file_changes),
            Field::method("Changes", change_list(&seen)),
            Field::method("Objects", object_changes(&merged)),
            Field::method("ImageResult", legacy),
        ],
        None,
    )
}

// ---------------------------------------------------------------------------------------------
// Legacy (v1beta1) model

const DEFAULT_REGISTRY: &str = "index.docker.io";

/// The parts of an image reference, with go-containerregistry's defaults.
struct RefParts {
    display: String,
    registry: String,
    repository: String,
    identifier: String,
    full: String,
}

fn ref_parts(img: &PolicyImage) -> RefParts {
    let mut display = img.name.clone();
    if let Some(t) = &img.tag {
        display.push(':');
        display.push_str(t);
    }
    if let Some(d) = &img.digest {
        display.push('@');
        display.push_str(d);
    }
    let (registry, mut repository) = match img.name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), img.name.clone()),
    };
    let registry = if registry == "docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    let (identifier, full) = match (&img.digest, &img.tag) {
        (Some(d), _) => (d.clone(), format!("{registry}/{repository}@{d}")),
        (None, Some(t)) => (t.clone(), format!("{registry}/{repository}:{t}")),
        (None, None) => (
            "latest".to_string(),
            format!("{registry}/{repository}:latest"),
        ),
    };
    RefParts {
        display,
        registry,
        repository,
        identifier,
        full,
    }
}

/// `update.ImageRef`: prints as the reference used in the update; methods for its parts.
fn image_ref(img: &PolicyImage) -> Value {
    let p = ref_parts(img);
    Value::structure(
        "update.imageRef",
        vec![
            Field::method("String", Value::str(p.display.as_str())),
            Field::method("Identifier", Value::str(p.identifier)),
            Field::method("Repository", Value::str(p.repository)),
            Field::method("Registry", Value::str(p.registry)),
            Field::method("Name", Value::str(p.full)),
            Field::method("Policy", namespaced_name(&img.policy)),
        ],
        Some(p.display),
    )
}

const REFS_T: &str = "[]update.ImageRef";
const LEGACY_OBJECTS_T: &str = "map[update.ObjectIdentifier][]update.ImageRef";

fn legacy_objects(objs: &BTreeMap<&ObjectId, Vec<&PolicyImage>>) -> Value {
    let e = objs
        .iter()
        .map(|(o, imgs)| {
            (
                object_id(o),
                Value::list(REFS_T, imgs.iter().map(|i| image_ref(i)).collect()),
            )
        })
        .collect();
    Value::map(LEGACY_OBJECTS_T, Value::list(REFS_T, Vec::new()), e)
}

/// The v1beta1 `update.Result`: `Files` map of `FileResult{Objects}`, methods `Objects()` and `Images()`.
fn legacy_result(g: &Grouped<'_>) -> Value {
    let mut files: Vec<(Value, Value)> = Vec::new();
    let mut merged: BTreeMap<&ObjectId, Vec<&PolicyImage>> = BTreeMap::new();
    let mut images: Vec<&PolicyImage> = Vec::new();
    let mut seen: Vec<(String, &NamespacedName)> = Vec::new();
    for (path, objs) in g {
        let mut per_file: BTreeMap<&ObjectId, Vec<&PolicyImage>> = BTreeMap::new();
        for (o, cs) in objs {
            for img in cs.iter().filter_map(|c| c.image.as_ref()) {
                per_file.entry(o).or_default().push(img);
                merged.entry(o).or_default().push(img);
                let display = ref_parts(img).display;
                if !seen.iter().any(|(d, p)| *d == display && **p == img.policy) {
                    seen.push((display, &img.policy));
                    images.push(img);
                }
            }
        }
        if per_file.is_empty() {
            continue;
        }
        let file_result = Value::structure(
            "update.FileResult",
            vec![Field::plain("Objects", legacy_objects(&per_file))],
            None,
        );
        files.push((Value::str(*path), file_result));
    }
    let empty_file = Value::structure(
        "update.FileResult",
        vec![Field::plain("Objects", legacy_objects(&BTreeMap::new()))],
        None,
    );
    Value::structure(
        "update.Result",
        vec![
            Field::plain(
                "Files",
                Value::map("map[string]update.FileResult", empty_file, files),
            ),
            Field::method("Objects", legacy_objects(&merged)),
            Field::method(
                "Images",
                Value::list(REFS_T, images.iter().map(|i| image_ref(i)).collect()),
            ),
        ],
        None,
    )
}
