//! `run-once`'s input: the Flux objects of YAML or JSON files (multi-document), as the controllers
//! would read them from the API server. Every error names the file, the object and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use api::{GitRepository, ImagePolicy, ImageRepository, ImageUpdateAutomation};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Resource;
use serde::de::DeserializeOwned;

/// Namespace of objects whose manifest has none (as `kubectl apply` without a context namespace).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Versions of the image kinds (all served from one schema, see the `api` crate).
const IMAGE_VERSIONS: [&str; 3] = ["v1", "v1beta2", "v1beta1"];
/// Versions of GitRepository.
const SOURCE_VERSIONS: [&str; 3] = ["v1", "v1beta2", "v1beta1"];

/// An object and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The object (namespace filled in; status dropped: run-once computes it).
    pub object: T,
    /// The file, as given or relative to the directory given.
    pub file: String,
}

impl<T: Resource> Loaded<T> {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.object.meta().namespace.as_deref().unwrap_or_default(),
            self.object.meta().name.as_deref().unwrap_or_default()
        )
    }
}

/// What the input holds.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// ImageRepositories.
    pub repositories: Vec<Loaded<ImageRepository>>,
    /// ImagePolicies.
    pub policies: Vec<Loaded<ImagePolicy>>,
    /// ImageUpdateAutomations.
    pub automations: Vec<Loaded<ImageUpdateAutomation>>,
    /// GitRepositories.
    pub git_repositories: Vec<Loaded<GitRepository>>,
    /// Secrets.
    pub secrets: Vec<Loaded<Secret>>,
    /// Namespaces (their labels feed the ImageRepository `accessFrom` ACL).
    pub namespaces: Vec<Loaded<Namespace>>,
    /// ServiceAccounts (their `imagePullSecrets` feed the registry keychain).
    pub service_accounts: Vec<Loaded<ServiceAccount>>,
    /// Documents that were skipped, and why.
    pub notes: Vec<String>,
}

/// An invalid input: the file, then what is wrong (object and field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ManifestError {
    /// The file.
    pub file: String,
    /// The object and field, and why.
    pub message: String,
}

impl Manifests {
    /// Loads `path` (a file, or every `.yaml`, `.yml` and `.json` file under a directory, hidden
    /// directories skipped); files are named relative to `label` (`label` joined with the path
    /// below `path`). Every error is returned, not only the first.
    pub fn load(&mut self, path: &Path, label: &str) -> Result<(), Vec<ManifestError>> {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        collect_files(path, &mut files).map_err(|e| {
            vec![ManifestError {
                file: label.to_owned(),
                message: format!("cannot read: {e}"),
            }]
        })?;
        for file in files {
            let name = match file.strip_prefix(path) {
                Ok(rel) if !rel.as_os_str().is_empty() => {
                    Path::new(label).join(rel).display().to_string()
                }
                _ => label.to_owned(),
            };
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(ManifestError {
                        file: name,
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            if let Err(e) = self.load_text(&name, &text) {
                errors.extend(e);
            }
        }
        if let Err(e) = self.check_duplicates() {
            errors.extend(e);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Loads the documents of one file's text.
    pub fn load_text(&mut self, file: &str, text: &str) -> Result<(), Vec<ManifestError>> {
        let err = |message: String| ManifestError {
            file: file.to_owned(),
            message,
        };
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| vec![err(format!("not valid YAML: {e}"))])?;
        let several = docs.len() > 1;
        let mut errors = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let at = if several {
                format!("document {}: ", i + 1)
            } else {
                String::new()
            };
            if let Err(message) = self.load_document(file, doc) {
                errors.push(err(format!("{at}{message}")));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Sorts one document into its kind; `Err` is the message after the file name.
    fn load_document(&mut self, file: &str, doc: serde_json::Value) -> Result<(), String> {
        let str_field = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let (api_version, kind) = (
            str_field("apiVersion").to_owned(),
            str_field("kind").to_owned(),
        );
        if kind.is_empty() || api_version.is_empty() {
            self.notes.push(format!(
                "{file}: a document without apiVersion and kind was skipped"
            ));
            return Ok(());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let versioned = |versions: &[&str]| {
            if versions.contains(&version) {
                Ok(())
            } else {
                Err(format!(
                    "{kind}: apiVersion: unsupported version {api_version:?} (supported: {})",
                    versions
                        .iter()
                        .map(|v| format!("{group}/{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        };
        let file = file.to_owned();
        match (group, kind.as_str()) {
            (api::GROUP, "ImageRepository") => {
                versioned(&IMAGE_VERSIONS)?;
                let o: ImageRepository = typed(doc, &kind)?;
                check_repository(&o).map_err(|m| format!("{}: {m}", describe(&o)))?;
                self.repositories.push(Loaded { object: o, file });
            }
            (api::GROUP, "ImagePolicy") => {
                versioned(&IMAGE_VERSIONS)?;
                let o: ImagePolicy = typed(doc, &kind)?;
                check_policy(&o).map_err(|m| format!("{}: {m}", describe(&o)))?;
                self.policies.push(Loaded { object: o, file });
            }
            (api::GROUP, "ImageUpdateAutomation") => {
                versioned(&IMAGE_VERSIONS)?;
                let o: ImageUpdateAutomation = typed(doc, &kind)?;
                check_automation(&o).map_err(|m| format!("{}: {m}", describe(&o)))?;
                self.automations.push(Loaded { object: o, file });
            }
            ("source.toolkit.fluxcd.io", "GitRepository") => {
                versioned(&SOURCE_VERSIONS)?;
                let o: GitRepository = typed(doc, &kind)?;
                check_git_repository(&o).map_err(|m| format!("{}: {m}", describe(&o)))?;
                self.git_repositories.push(Loaded { object: o, file });
            }
            ("", "Secret") => {
                versioned(&["v1"])?;
                let o: Secret = typed(doc, &kind)?;
                self.secrets.push(Loaded { object: o, file });
            }
            ("", "Namespace") => {
                versioned(&["v1"])?;
                let o: Namespace = typed(doc, &kind)?;
                self.namespaces.push(Loaded { object: o, file });
            }
            ("", "ServiceAccount") => {
                versioned(&["v1"])?;
                let o: ServiceAccount = typed(doc, &kind)?;
                self.service_accounts.push(Loaded { object: o, file });
            }
            (api::GROUP, _) => {
                return Err(format!(
                    "kind: unknown kind {kind:?} in {api_version} (ImageRepository, ImagePolicy, ImageUpdateAutomation)"
                ));
            }
            _ => self
                .notes
                .push(format!("{file}: {kind} ({api_version}) skipped")),
        }
        Ok(())
    }

    /// Adds the objects of `other`; an object now defined twice is an error.
    pub fn merge(&mut self, other: Manifests) -> Result<(), Vec<ManifestError>> {
        self.repositories.extend(other.repositories);
        self.policies.extend(other.policies);
        self.automations.extend(other.automations);
        self.git_repositories.extend(other.git_repositories);
        self.secrets.extend(other.secrets);
        self.namespaces.extend(other.namespaces);
        self.service_accounts.extend(other.service_accounts);
        self.notes.extend(other.notes);
        self.check_duplicates()
    }

    /// An object defined twice (same kind, namespace and name) is an error naming both files.
    fn check_duplicates(&self) -> Result<(), Vec<ManifestError>> {
        let mut errors = Vec::new();
        fn dups<T: Resource<DynamicType = ()>>(
            list: &[Loaded<T>],
            errors: &mut Vec<ManifestError>,
        ) {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for l in list {
                let key = l.key();
                if let Some(first) = seen.insert(key.clone(), &l.file) {
                    errors.push(ManifestError {
                        file: l.file.clone(),
                        message: format!(
                            "{} {key}: defined again (first in {first})",
                            T::kind(&())
                        ),
                    });
                }
            }
        }
        dups(&self.repositories, &mut errors);
        dups(&self.policies, &mut errors);
        dups(&self.automations, &mut errors);
        dups(&self.git_repositories, &mut errors);
        dups(&self.secrets, &mut errors);
        dups(&self.namespaces, &mut errors);
        dups(&self.service_accounts, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Every file to read under `path`, sorted (a file given directly is read whatever its name).
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !std::fs::metadata(path)?.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let meta = std::fs::metadata(&p)?;
        if meta.is_dir() {
            if !name.starts_with('.') {
                collect_files(&p, out)?;
            }
        } else if [".yaml", ".yml", ".json"].iter().any(|e| name.ends_with(e)) {
            out.push(p);
        }
    }
    Ok(())
}

/// `Kind namespace/name`.
fn describe<T: Resource<DynamicType = ()>>(o: &T) -> String {
    format!(
        "{} {}/{}",
        T::kind(&()),
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

/// The document as `T` (read as the version the controllers use: every served version has the same
/// schema); the error names the field. The namespace defaults to [`DEFAULT_NAMESPACE`].
fn typed<T>(mut doc: serde_json::Value, kind: &str) -> Result<T, String>
where
    T: DeserializeOwned + Resource<DynamicType = ()>,
{
    let name = doc
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() {
        return Err(format!("{kind}: metadata.name: required"));
    }
    if let Some(o) = doc.as_object_mut() {
        o.insert("apiVersion".into(), T::api_version(&()).into());
        // Status is what run-once computes; whatever the manifest holds is not read.
        o.remove("status");
    }
    let mut o: T = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("{kind} {name}: {inner}")
        } else {
            format!("{kind} {name}: {path}: {inner}")
        }
    })?;
    let meta = o.meta_mut();
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
    }
    Ok(o)
}

/// What the ImageRepository reconciler would stall on, named by field.
fn check_repository(o: &ImageRepository) -> Result<(), String> {
    registry::ImageRef::parse(&o.spec.image, o.spec.insecure)
        .map_err(|e| format!("spec.image: {e}"))?;
    o.spec
        .get_timeout()
        .map_err(|e| format!("spec.timeout: {e}"))?;
    image_reflector_controller::repository::filter_out_tags(
        Vec::new(),
        &o.spec.get_exclusion_list(),
    )
    .map_err(|e| format!("spec.exclusionList: {e}"))?;
    Ok(())
}

/// What the ImagePolicy reconciler would stall on, named by field.
fn check_policy(o: &ImagePolicy) -> Result<(), String> {
    if o.spec.image_repository_ref.name.is_empty() {
        return Err("spec.imageRepositoryRef.name: required".into());
    }
    if let Err(v) = o.spec.check() {
        return Err(format!("spec: {}", v.message));
    }
    image_reflector_controller::policy::compile(&o.spec)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", e.field().path()))
}

/// What the automation reconciler would stall on, named by field.
fn check_automation(o: &ImageUpdateAutomation) -> Result<(), String> {
    let Some(git) = &o.spec.git else {
        return Err("spec.git: required".into());
    };
    if o.spec.source_ref.name.is_empty() {
        return Err("spec.sourceRef.name: required".into());
    }
    if git.commit.author.email.is_empty() {
        return Err("spec.git.commit.author.email: required".into());
    }
    crate::policies::selector_string(o.spec.policy_selector.as_ref())
        .map_err(|e| format!("spec.policySelector: {e}"))?;
    Ok(())
}

/// What resolving the source would fail on, named by field.
fn check_git_repository(o: &GitRepository) -> Result<(), String> {
    if o.spec.url.is_empty() {
        return Err("spec.url: required".into());
    }
    o.spec.timeout().map_err(|e| format!("spec.timeout: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "apiVersion: image.toolkit.fluxcd.io/v1beta1\nkind: ImageRepository\nmetadata:\n  name: podinfo\n  namespace: flux-system\nspec:\n  image: ghcr.io/stefanprodan/podinfo\n  interval: 1m0s\n";
    const POLICY: &str = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: podinfo\n  namespace: flux-system\nspec:\n  imageRepositoryRef:\n    name: podinfo\n  policy:\n    semver:\n      range: 5.0.x\n";
    const AUTO: &str = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata:\n  name: flux-system\n  namespace: flux-system\nspec:\n  interval: 1m0s\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n  git:\n    commit:\n      author:\n        email: bot@example.com\n";

    fn load(text: &str) -> Result<Manifests, Vec<ManifestError>> {
        let mut m = Manifests::default();
        m.load_text("in.yaml", text)?;
        m.check_duplicates()?;
        Ok(m)
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .err()
            .unwrap()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn multi_document_files_of_every_version_are_read() {
        let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n";
        let text = format!("{REPO}---\n{POLICY}---\n{AUTO}---\n{deploy}---\n");
        let m = load(&text).unwrap();
        assert_eq!(m.repositories[0].key(), "flux-system/podinfo");
        assert_eq!(
            m.repositories[0].object.spec.get_exclusion_list(),
            ["^.*\\.sig$"]
        );
        assert_eq!(
            m.policies[0].object.spec.image_repository_ref.name,
            "podinfo"
        );
        assert_eq!(m.automations[0].file, "in.yaml");
        // Unknown kinds are skipped with a note.
        assert_eq!(m.notes, ["in.yaml: Deployment (apps/v1) skipped"]);
    }

    #[test]
    fn a_missing_namespace_is_the_default_one() {
        let m = load(&REPO.replace("  namespace: flux-system\n", "")).unwrap();
        assert_eq!(m.repositories[0].key(), "default/podinfo");
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        assert_eq!(
            errors(&REPO.replace("  image: ghcr.io/stefanprodan/podinfo\n", "")),
            ["in.yaml: ImageRepository podinfo: spec: missing field `image`"]
        );
        assert_eq!(
            errors(&REPO.replace("name: podinfo", "labels: {}")),
            ["in.yaml: ImageRepository: metadata.name: required"]
        );
        let e = errors(&REPO.replace("  interval: 1m0s\n", "  interval: 1m0s\n  timeout: soon\n"));
        assert!(
            e[0].starts_with("in.yaml: ImageRepository flux-system/podinfo: spec.timeout: "),
            "{e:?}"
        );
        let e = errors(&REPO.replace("ghcr.io/stefanprodan/podinfo", "Not An Image"));
        assert!(
            e[0].starts_with("in.yaml: ImageRepository flux-system/podinfo: spec.image: "),
            "{e:?}"
        );
        let e = errors(&POLICY.replace("5.0.x", "not-a-range!"));
        assert!(
            e[0].starts_with(
                "in.yaml: ImagePolicy flux-system/podinfo: spec.policy.semver.range: "
            ),
            "{e:?}"
        );
        let e = errors(&POLICY.replace("    name: podinfo\n", "    name: 42\n"));
        assert!(
            e[0].starts_with(
                "in.yaml: ImagePolicy podinfo: spec.imageRepositoryRef.name: invalid type"
            ),
            "{e:?}"
        );
        assert_eq!(
            errors(&AUTO.replace("        email: bot@example.com\n", "        name: bot\n")),
            ["in.yaml: ImageUpdateAutomation flux-system-automation: spec.git.commit.author: missing field `email`"
                .replace("flux-system-automation", "flux-system")]
        );
        let no_git = AUTO.split("  git:").next().unwrap().to_owned();
        assert_eq!(
            errors(&no_git),
            ["in.yaml: ImageUpdateAutomation flux-system/flux-system: spec.git: required"]
        );
    }

    #[test]
    fn every_bad_document_is_reported_with_its_position() {
        let text = format!(
            "{}---\n{}",
            POLICY.replace("5.0.x", "x!"),
            REPO.replace("v1beta1", "v2")
        );
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("in.yaml: document 1: ImagePolicy"),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            "in.yaml: document 2: ImageRepository: apiVersion: unsupported version \"image.toolkit.fluxcd.io/v2\" (supported: image.toolkit.fluxcd.io/v1, image.toolkit.fluxcd.io/v1beta2, image.toolkit.fluxcd.io/v1beta1)"
        );
    }

    #[test]
    fn syntax_errors_and_duplicates_name_the_file() {
        let e = errors("kind: [unclosed\n");
        assert!(e[0].starts_with("in.yaml: not valid YAML: "), "{e:?}");
        let e = errors(&format!("{REPO}---\n{REPO}"));
        assert_eq!(
            e,
            ["in.yaml: ImageRepository flux-system/podinfo: defined again (first in in.yaml)"]
        );
        let e = errors(
            "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageThing\nmetadata:\n  name: x\n",
        );
        assert!(e[0].contains("kind: unknown kind \"ImageThing\""), "{e:?}");
    }

    #[test]
    fn directories_are_walked_in_order_with_relative_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/.hidden")).unwrap();
        std::fs::write(d.path().join("a/repo.yaml"), REPO).unwrap();
        std::fs::write(d.path().join("a/.hidden/x.yaml"), "kind: [").unwrap();
        std::fs::write(d.path().join("policy.yml"), POLICY).unwrap();
        std::fs::write(d.path().join("README.md"), "kind: [").unwrap();
        std::fs::write(d.path().join("bad.json"), "{\"kind\": ").unwrap();
        let mut m = Manifests::default();
        let e = m.load(d.path(), "in").unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].to_string().starts_with("in/bad.json: not valid YAML"),
            "{e:?}"
        );
        assert_eq!(m.repositories[0].file, "in/a/repo.yaml");
        assert_eq!(m.policies[0].file, "in/policy.yml");
    }
}
