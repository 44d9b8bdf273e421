//! File discovery as Flux's `ScreeningLocalReader` (`automation.md` §3.3), with symlinks
//! confined to the root.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Skipped};

/// A candidate file: its report path and the real path to read and write.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub rel: String,
    pub real: PathBuf,
}

/// Candidates in lexical walk order, plus entries skipped on purpose.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub files: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
}

/// Whether Flux would consider a file with this name.
pub(crate) fn is_candidate(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization"
}

pub(crate) fn discover(root: &Path) -> Result<Found, Error> {
    let walk_err = |source| Error::Walk {
        path: root.to_path_buf(),
        source,
    };
    let real_root = fs::canonicalize(root).map_err(walk_err)?;
    let meta = fs::metadata(&real_root).map_err(walk_err)?;
    let mut found = Found::default();
    if meta.is_file() {
        // A single file: report it by its name, as Flux does (paths relative to its directory).
        let name = real_root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        found.files.push(Candidate {
            rel: name,
            real: real_root,
        });
        return Ok(found);
    }
    walk(&real_root, &real_root, "", &mut found).map_err(walk_err)?;
    // A file reached twice (through a symlink) is edited once, under its first path.
    let mut first: std::collections::HashMap<PathBuf, String> = std::collections::HashMap::new();
    let mut files = Vec::with_capacity(found.files.len());
    for c in std::mem::take(&mut found.files) {
        match first.get(&c.real) {
            Some(p) => found.skipped.push(Skipped {
                path: c.rel,
                reason: format!("same file as {p}"),
            }),
            None => {
                first.insert(c.real.clone(), c.rel.clone());
                files.push(c);
            }
        }
    }
    found.files = files;
    found.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn walk(root: &Path, dir: &Path, prefix: &str, found: &mut Found) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    // Go's filepath.Walk visits names in byte order.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name_os = entry.file_name();
        let name = name_os.to_string_lossy();
        let rel = format!("{prefix}{name}");
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if name != ".git" {
                walk(root, &entry.path(), &format!("{rel}/"), found)?;
            }
        } else if is_candidate(&name) {
            if file_type.is_symlink() {
                match fs::canonicalize(entry.path()) {
                    Err(_) => found.skipped.push(Skipped {
                        path: rel,
                        reason: "dangling symlink".into(),
                    }),
                    Ok(target) if !target.starts_with(root) => found.skipped.push(Skipped {
                        path: rel,
                        reason: "symlink points outside the root".into(),
                    }),
                    Ok(target) if target.is_file() => {
                        found.files.push(Candidate { rel, real: target })
                    }
                    // A link to a directory: Flux does not follow those either.
                    Ok(_) => {}
                }
            } else if file_type.is_file() {
                found.files.push(Candidate {
                    rel,
                    real: entry.path(),
                });
            }
        }
    }
    Ok(())
}
