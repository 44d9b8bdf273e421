//! `update.path` inside the checkout with secure-join semantics (as Go's `filepath-securejoin`):
//! `..` cannot climb above the root, an absolute path is taken relative to the root, and symlinks
//! are resolved as if the root were `/`, so no path ever leaves the checkout.

use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up (a loop).
const MAX_SYMLINKS: usize = 255;

/// Why a path could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Too many symlinks (a loop).
    #[error("securejoin {path:?}: too many levels of symbolic links")]
    Loop {
        /// The path asked for.
        path: String,
    },
    /// A component could not be inspected.
    #[error("securejoin {path:?}: {source}")]
    Io {
        /// The path asked for.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// `root` joined with `unsafe_path`, never outside `root`. Components that do not exist are
/// kept as they are (the caller reports the missing path).
pub fn secure_join(root: &Path, unsafe_path: &str) -> Result<PathBuf, JoinError> {
    // Relative to root; each entry is a plain name.
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = components(Path::new(unsafe_path));
    pending.reverse();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = std::iter::once(root.as_os_str().to_owned())
            .chain(resolved.iter().cloned())
            .chain(std::iter::once(part.clone()))
            .collect();
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                resolved.push(part);
                continue;
            }
            Err(e) => {
                return Err(JoinError::Io {
                    path: unsafe_path.to_owned(),
                    source: e,
                });
            }
        };
        if !meta.file_type().is_symlink() {
            resolved.push(part);
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(JoinError::Loop {
                path: unsafe_path.to_owned(),
            });
        }
        let target = std::fs::read_link(&candidate).map_err(|e| JoinError::Io {
            path: unsafe_path.to_owned(),
            source: e,
        })?;
        if target.is_absolute() {
            resolved.clear();
        }
        let mut more = components(&target);
        more.reverse();
        pending.extend(more);
    }
    Ok(resolved
        .into_iter()
        .fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// The normal and `..` components of `p` (root, prefix and `.` dropped).
fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::Prefix(_) | Component::CurDir => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("apps/prod")).unwrap();
        let j = |p: &str| secure_join(root, p).unwrap();
        assert_eq!(j(""), root);
        assert_eq!(j("."), root);
        assert_eq!(j("./apps"), root.join("apps"));
        assert_eq!(j("apps/../apps/prod"), root.join("apps/prod"));
        assert_eq!(j("../../etc"), root.join("etc"));
        assert_eq!(j("/etc/passwd"), root.join("etc/passwd"));
        assert_eq!(j("missing/x"), root.join("missing/x"));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("apps/prod")).unwrap();
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("apps/up")).unwrap();
        std::os::unix::fs::symlink("apps/prod", root.join("current")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let j = |p: &str| secure_join(root, p).unwrap();
        assert_eq!(j("escape/etc"), root.join("etc"));
        assert_eq!(j("apps/up/tmp"), root.join("tmp"));
        assert_eq!(j("current"), root.join("apps/prod"));
        assert!(matches!(
            secure_join(root, "loop"),
            Err(JoinError::Loop { .. })
        ));
    }
}
