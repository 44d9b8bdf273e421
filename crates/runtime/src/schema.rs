//! Status fields the API server's schema does not declare.
//!
//! This project's CRDs carry fields Flux's own CRDs dropped (ImagePolicy `status.latestImage` and
//! `status.observedPreviousImage`, kept for v1beta1 clients). When a cluster runs Flux's CRDs,
//! server-side apply rejects a status naming them (`failed to create typed patch object:
//! .status.latestImage: field not declared in schema`, one field per rejection). The plumbing learns
//! each such field from the rejection, drops it from this and every later status write of the kind,
//! and retries, so no status write fails for it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::Value;

/// The marker of a server-side apply rejection for an unknown field.
const NOT_DECLARED: &str = ": field not declared in schema";
/// Most fields learned from one status write (each rejection names one).
pub const MAX_LEARNED_PER_WRITE: usize = 8;

/// Per kind, the status field paths (e.g. `latestImage`, `latestRef.digest`) the server rejects.
#[derive(Debug, Default)]
pub struct UndeclaredFields(Mutex<HashMap<String, BTreeSet<String>>>);

impl UndeclaredFields {
    /// Removes the fields learned for `kind` from `status`.
    pub fn prune(&self, kind: &str, status: &mut Value) {
        let Ok(known) = self.0.lock() else { return };
        for path in known.get(kind).into_iter().flatten() {
            remove_path(status, path);
        }
    }

    /// Learns the status field an apply rejection names, if it is one this module handles; returns
    /// whether a new field was learned (then the write is worth retrying without it).
    pub fn learn(&self, kind: &str, error: &kube::Error) -> bool {
        let kube::Error::Api(status) = error else {
            return false;
        };
        let Some(path) = undeclared_status_path(&status.message) else {
            return false;
        };
        let Ok(mut known) = self.0.lock() else {
            return false;
        };
        let new = known
            .entry(kind.to_string())
            .or_default()
            .insert(path.clone());
        if new {
            tracing::warn!(
                kind,
                field = %format!("status.{path}"),
                "the CRD on the API server does not declare this status field (e.g. Flux's own CRDs); writing the status without it"
            );
        }
        new
    }
}

/// The path below `.status` that a "field not declared in schema" message names.
fn undeclared_status_path(message: &str) -> Option<String> {
    let end = message.find(NOT_DECLARED)?;
    let start = message[..end].rfind(".status.")? + ".status.".len();
    let path = &message[start..end];
    let plain = !path.is_empty()
        && path
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    plain.then(|| path.to_string())
}

/// Removes the object field at dotted `path` (objects only; lists are left alone).
fn remove_path(value: &mut Value, path: &str) {
    let mut parts = path.split('.').peekable();
    let mut cur = value;
    while let Some(part) = parts.next() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if parts.peek().is_none() {
            obj.remove(part);
            return;
        }
        match obj.get_mut(part) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rejection(message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "")
                .with_code(500)
                .boxed(),
        )
    }

    #[test]
    fn learns_one_field_per_rejection_and_prunes_it_from_later_writes() {
        let u = UndeclaredFields::default();
        // The message of kube-apiserver 1.20 (code 500; newer servers answer 422 with the same text).
        let e = rejection(
            "failed to create typed patch object: .status.latestImage: field not declared in schema",
        );
        assert!(u.learn("ImagePolicy", &e));
        assert!(!u.learn("ImagePolicy", &e), "already known");
        assert!(u.learn(
            "ImagePolicy",
            &rejection("failed to create typed patch object (ns/p; image.toolkit.fluxcd.io/v1, Kind=ImagePolicy): .status.latestRef.digest: field not declared in schema")
        ));
        let mut status = json!({
            "latestImage": "a:1", "observedPreviousImage": "a:0",
            "latestRef": {"name": "a", "tag": "1", "digest": "sha256:x"},
        });
        u.prune("ImagePolicy", &mut status);
        assert_eq!(
            status,
            json!({"observedPreviousImage": "a:0", "latestRef": {"name": "a", "tag": "1"}})
        );
        let mut other = json!({"latestImage": "kept"});
        u.prune("ImageRepository", &mut other);
        assert_eq!(other, json!({"latestImage": "kept"}), "per kind");
    }

    #[test]
    fn other_errors_teach_nothing() {
        let u = UndeclaredFields::default();
        assert!(!u.learn("K", &rejection("the object has been modified")));
        assert!(!u.learn("K", &rejection(".spec.x: field not declared in schema")));
        assert!(!u.learn(
            "K",
            &rejection(".status.conditions[0].x: field not declared in schema")
        ));
        assert!(!u.learn("K", &kube::Error::LinesCodecMaxLineLengthExceeded));
    }
}
