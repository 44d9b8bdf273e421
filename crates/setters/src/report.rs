//! The result model: files → objects → changes, in deterministic order.

use serde::Serialize;

/// Identity of the YAML document holding a change (empty strings when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectId {
    /// `apiVersion` of the document.
    pub api_version: String,
    /// `kind` of the document.
    pub kind: String,
    /// `metadata.name` of the document.
    pub name: String,
    /// `metadata.namespace` of the document.
    pub namespace: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Same shape as Flux's ResourceIdentifier in messages: `Kind ns/name`.
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One value changed by a setter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The value before.
    pub old_value: String,
    /// The value written.
    pub new_value: String,
    /// The setter name, e.g. `flux-system:podinfo:tag`.
    pub setter: String,
}

/// The changes made to one object (document) of a file, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectChanges {
    /// The object.
    pub object: ObjectId,
    /// Its changes in document order.
    pub changes: Vec<Change>,
}

/// The changes made to one file, objects in the order they first appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChanges {
    /// Path relative to the updated root, `/`-separated.
    pub path: String,
    /// Changed objects in document order.
    pub objects: Vec<ObjectChanges>,
}

/// A file that contains a marker but could not be updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileError {
    /// Path relative to the updated root.
    pub path: String,
    /// Why it was not updated.
    pub reason: String,
}

impl FileError {
    pub(crate) fn new(path: &str, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A directory entry deliberately not read (a dangling symlink, or one leading out of the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Path relative to the updated root.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// A marker whose setter name matches no policy (ignored, but listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownMarker {
    /// Path relative to the updated root.
    pub path: String,
    /// 1-based line of the marker comment.
    pub line: usize,
    /// The setter name written in the marker.
    pub setter: String,
}

/// Everything an update did or refused to do, in deterministic order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Changed files in lexical walk order.
    pub files: Vec<FileChanges>,
    /// Files with markers that could not be updated (unparsable, not UTF-8, refused, unwritable).
    pub errors: Vec<FileError>,
    /// Entries not read on purpose.
    pub skipped: Vec<Skipped>,
    /// Markers naming no known policy.
    pub unknown_markers: Vec<UnknownMarker>,
}

impl Report {
    /// True when no file changed ("nothing to do").
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// All changes, de-duplicated, in report order (file, object, document order).
    pub fn changes(&self) -> Vec<Change> {
        let mut seen = std::collections::HashSet::new();
        self.files
            .iter()
            .flat_map(|f| &f.objects)
            .flat_map(|o| &o.changes)
            .filter(|c| seen.insert(*c))
            .cloned()
            .collect()
    }

    /// Changes per object across files; an object changed in two files gets both lists
    /// concatenated (Flux ≥ 1.2.0). Objects in order of first appearance.
    pub fn objects(&self) -> Vec<ObjectChanges> {
        let mut out: Vec<ObjectChanges> = Vec::new();
        let mut index: std::collections::HashMap<&ObjectId, usize> =
            std::collections::HashMap::new();
        for o in self.files.iter().flat_map(|f| &f.objects) {
            match index.get(&o.object) {
                Some(&k) => out[k].changes.extend(o.changes.iter().cloned()),
                None => {
                    index.insert(&o.object, out.len());
                    out.push(o.clone());
                }
            }
        }
        out
    }
}
