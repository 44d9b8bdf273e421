//! Atomic replacement of a file: a temporary file in the same directory, renamed over it.

use std::io::Write;
use std::path::Path;

/// Replaces `target` with `updated`, provided it still holds `original`.
pub(crate) fn replace(target: &Path, original: &str, updated: &str) -> Result<(), String> {
    let current = std::fs::read(target).map_err(|e| format!("re-reading before write: {e}"))?;
    if current != original.as_bytes() {
        return Err("file changed since it was read; not written".into());
    }
    let dir = target
        .parent()
        .ok_or_else(|| "file has no parent directory".to_owned())?;
    let perms = std::fs::metadata(target)
        .map_err(|e| format!("reading permissions: {e}"))?
        .permissions();
    let mut tmp = tempfile::Builder::new()
        .prefix(".setters-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("creating temporary file: {e}"))?;
    tmp.write_all(updated.as_bytes())
        .map_err(|e| format!("writing temporary file: {e}"))?;
    // No fsync: the rename already gives readers all-or-nothing, and the files live in a
    // working copy that is committed (or thrown away) right after; a sync per file would
    // cost more than the whole update.
    std::fs::set_permissions(tmp.path(), perms).map_err(|e| format!("setting permissions: {e}"))?;
    tmp.persist(target)
        .map_err(|e| format!("renaming into place: {}", e.error))?;
    Ok(())
}
