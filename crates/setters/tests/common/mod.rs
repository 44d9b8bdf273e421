//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: failing loudly is the point

use std::fs;
use std::path::{Path, PathBuf};

use setters::{ImageRef, Policies, Setters};

/// Directory holding the copied conformance data.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Copies a tree, recreating symlinks as symlinks.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let ft = entry.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if ft.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Regular files of a tree (relative path → bytes), ignoring dot-files, dot-dirs and names
/// ending in `~` as upstream's DiffDirectories does; symlinks are listed with their target.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn go(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = entry.file_type().unwrap();
            if ft.is_symlink() {
                let target = fs::read_link(entry.path()).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if ft.is_dir() {
                go(root, &entry.path(), out);
            } else {
                out.insert(rel, fs::read(entry.path()).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    go(root, root, &mut out);
    out
}

/// A setter table from `("ns:name", "image:tag[@digest]")` pairs.
pub fn setters(pairs: &[(&str, &str)]) -> Setters {
    let policies: Policies = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ImageRef::parse(v).unwrap()))
        .collect();
    Setters::new(&policies).unwrap()
}

/// Writes `files` into a fresh temporary directory.
pub fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}
