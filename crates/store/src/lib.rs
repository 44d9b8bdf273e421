//! Crash-safe tag store: one file per ImageRepository object, in the layout of Flux's file store
//! (`<root>/imagerepository/<namespace>/<name>/tags.txt`, or `tags.txt.gz` above a size threshold).
//!
//! Each write goes to a temporary file that is fsynced, renamed over the old one, and followed by a
//! directory fsync, so a crash leaves either the old or the new list. Tags are read from disk when asked
//! for; nothing is kept in memory. The revision is `sha256:<hex>` of the uncompressed content (each tag
//! followed by `\n`), identical for plain and gzip files.
//!
//! The API is synchronous file I/O; async callers run it in `tokio::task::spawn_blocking`. Keys are
//! ImageRepository objects, not image names, so two objects scanning the same image never share or
//! clobber an entry. The store does not sort: callers store the list in the order policies should see it
//! (descending byte order, as upstream), and the revision hashes exactly that.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

/// Directory under the root that holds ImageRepository entries (Flux's kind directory).
const KIND_DIR: &str = "imagerepository";
/// Plain tag list file name.
const PLAIN_FILE: &str = "tags.txt";
/// Compressed tag list file name.
const GZIP_FILE: &str = "tags.txt.gz";
/// Default compression threshold (64 KiB, as Flux).
pub const DEFAULT_COMPRESSION_THRESHOLD: u64 = 64 * 1024;
/// Listings taken when variants keep vanishing under concurrent writes.
const READ_ATTEMPTS: usize = 10;
/// Longest line accepted when reading (Flux's scanner limit).
const MAX_LINE: usize = 1024;

/// Identifies one ImageRepository object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    /// Object namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl RepoKey {
    /// A key for `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> RepoKey {
        RepoKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for RepoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Namespace or name empty.
    #[error("repo namespace and name are required")]
    MissingKey,
    /// Namespace or name that is not a single safe path component.
    #[error("invalid repository key '{0}': namespace and name must be plain names")]
    InvalidKey(String),
    /// A tag that cannot be stored one per line.
    #[error(
        "invalid tag {tag:?} for '{key}': tags must be non-empty, at most {MAX_LINE} bytes, without line breaks"
    )]
    InvalidTag {
        /// The repository.
        key: String,
        /// The rejected tag.
        tag: String,
    },
    /// File system error.
    #[error("{action} '{path}': {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Stored content that cannot be read back.
    #[error("failed to read tags from '{path}': {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The outcome of [`TagStore::read_if_revision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The stored list has the expected revision.
    Match(Vec<String>),
    /// Nothing is stored for the repository.
    Missing,
    /// Something else is stored; its revision is given.
    Mismatch(String),
}

/// The tag store rooted at `--storage-path`. Open it once per root and share clones: writes are
/// serialised within the process (one replica owns its volume).
#[derive(Debug, Clone)]
pub struct TagStore {
    root: PathBuf,
    compression_threshold: u64,
    /// Serialises writes (and stale-variant cleanup) within the process: a write replaces one variant
    /// and then removes the other, which must not interleave with another write of the same key.
    writes: Arc<Mutex<()>>,
}

impl TagStore {
    /// Opens (creating with mode 0700 if needed) a store at `root`; lists of `compression_threshold`
    /// bytes or more are gzipped. A threshold of 0 is rejected.
    pub fn open(
        root: impl Into<PathBuf>,
        compression_threshold: u64,
    ) -> Result<TagStore, StoreError> {
        let root = root.into();
        if compression_threshold == 0 {
            return Err(StoreError::Io {
                action: "open store",
                path: root,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "compression threshold must be positive",
                ),
            });
        }
        create_dir_private(&root)?;
        Ok(TagStore {
            root,
            compression_threshold,
            writes: Arc::new(Mutex::new(())),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Replaces the stored list for `key` with `tags` (in the given order) and returns its revision.
    pub fn set_tags(&self, key: &RepoKey, tags: &[String]) -> Result<String, StoreError> {
        let dir = self.dir(key)?;
        let mut content = Vec::with_capacity(tags.iter().map(|t| t.len() + 1).sum());
        for tag in tags {
            if tag.is_empty() || tag.len() > MAX_LINE || tag.contains(['\n', '\r']) {
                return Err(StoreError::InvalidTag {
                    key: key.to_string(),
                    tag: tag.chars().take(200).collect(),
                });
            }
            content.extend_from_slice(tag.as_bytes());
            content.push(b'\n');
        }
        let revision = revision_of(&content);
        let ns_dir = dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.clone());
        create_dir_private(&self.kind_dir())?;
        create_dir_private(&ns_dir)?;
        create_dir_private(&dir)?;
        let compressed = content.len() as u64 >= self.compression_threshold;
        let _guard = self.lock_writes();
        let (file, other, bytes) = if compressed {
            (
                GZIP_FILE,
                PLAIN_FILE,
                gzip(&content).map_err(|e| io_err("compress tags", &dir, e))?,
            )
        } else {
            (PLAIN_FILE, GZIP_FILE, content)
        };
        write_atomic(&dir, file, &bytes)?;
        remove_if_exists(&dir.join(other))?;
        sync_dir(&dir)?;
        Ok(revision)
    }

    /// The stored tags for `key` in stored order; an empty list when nothing is stored.
    pub fn tags(&self, key: &RepoKey) -> Result<Vec<String>, StoreError> {
        Ok(self.read(key)?.map(|(tags, _)| tags).unwrap_or_default())
    }

    /// The revision of the stored list, or `None` when nothing is stored.
    pub fn revision(&self, key: &RepoKey) -> Result<Option<String>, StoreError> {
        Ok(self.read(key)?.map(|(_, rev)| rev))
    }

    /// Reads the stored tags only if their revision equals `expected` (one read, no race with a writer).
    pub fn read_if_revision(&self, key: &RepoKey, expected: &str) -> Result<Verified, StoreError> {
        Ok(match self.read(key)? {
            None => Verified::Missing,
            Some((tags, rev)) if rev == expected => Verified::Match(tags),
            Some((_, rev)) => Verified::Mismatch(rev),
        })
    }

    /// Removes everything stored for `key` (and the namespace directory once empty).
    pub fn delete(&self, key: &RepoKey) -> Result<(), StoreError> {
        let dir = self.dir(key)?;
        let _guard = self.lock_writes();
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("remove", &dir, e)),
        }
        if let Some(ns_dir) = dir.parent() {
            // Fails harmlessly while other repositories of the namespace remain.
            if fs::remove_dir(ns_dir).is_ok() {
                sync_dir(&self.kind_dir())?;
            } else {
                sync_dir(ns_dir)?;
            }
        }
        Ok(())
    }

    /// Garbage collection: removes every stored entry whose key `live` rejects (objects that no longer
    /// exist) and returns the removed keys. Callers pass the objects' current list, and skip the round
    /// when listing them failed.
    pub fn retain(&self, live: impl Fn(&RepoKey) -> bool) -> Result<Vec<RepoKey>, StoreError> {
        let mut removed = Vec::new();
        for key in self.keys()? {
            if !live(&key) {
                self.delete(&key)?;
                removed.push(key);
            }
        }
        Ok(removed)
    }

    /// All stored keys, for garbage collection against the existing objects.
    pub fn keys(&self) -> Result<Vec<RepoKey>, StoreError> {
        let mut out = Vec::new();
        for ns in list_dirs(&self.kind_dir())? {
            for name in list_dirs(&self.kind_dir().join(&ns))? {
                out.push(RepoKey::new(ns.clone(), name));
            }
        }
        out.sort();
        Ok(out)
    }

    fn kind_dir(&self) -> PathBuf {
        self.root.join(KIND_DIR)
    }

    fn dir(&self, key: &RepoKey) -> Result<PathBuf, StoreError> {
        if key.namespace.is_empty() || key.name.is_empty() {
            return Err(StoreError::MissingKey);
        }
        for part in [&key.namespace, &key.name] {
            if part == "." || part == ".." || part.contains(['/', '\\', '\0']) {
                return Err(StoreError::InvalidKey(key.to_string()));
            }
        }
        Ok(self.kind_dir().join(&key.namespace).join(&key.name))
    }

    /// The stored variants of `dir`, newest first.
    fn variants(dir: &Path) -> Result<Vec<(PathBuf, bool)>, StoreError> {
        let mut found = Vec::new();
        for (name, compressed) in [(PLAIN_FILE, false), (GZIP_FILE, true)] {
            let path = dir.join(name);
            match fs::metadata(&path) {
                Ok(m) => found.push((m.modified().ok(), path, compressed)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("stat", &path, e)),
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.0));
        Ok(found.into_iter().map(|(_, p, c)| (p, c)).collect())
    }

    /// Reads the newest variant. A variant that vanishes between listing and opening was replaced by a
    /// concurrent write, so the listing is taken again.
    fn read(&self, key: &RepoKey) -> Result<Option<(Vec<String>, String)>, StoreError> {
        let dir = self.dir(key)?;
        let mut vanished = None;
        for _ in 0..READ_ATTEMPTS {
            let mut variants = Self::variants(&dir)?;
            if variants.is_empty() {
                // A write switching between plain and gzip can hide both names from an unlocked listing
                // (the new one not yet renamed in, the old one already removed when looked at): confirm
                // under the write lock.
                let _guard = self.lock_writes();
                variants = Self::variants(&dir)?;
                if variants.is_empty() {
                    return Ok(None);
                }
            }
            for (path, compressed) in &variants {
                match read_file(path, *compressed) {
                    Ok(v) => {
                        if variants.len() > 1 {
                            self.remove_stale_variant(&dir)?;
                        }
                        return Ok(Some(v));
                    }
                    Err(StoreError::Io { source, path, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        vanished = Some(io_err("open", &path, source));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        match vanished {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Both variants exist only after a crash between a write's rename and its cleanup (or while a write
    /// is running): under the write lock, keep the newest and remove the other, as Flux does.
    fn remove_stale_variant(&self, dir: &Path) -> Result<(), StoreError> {
        let _guard = self.lock_writes();
        let variants = Self::variants(dir)?;
        for (stale, _) in variants.iter().skip(1) {
            remove_if_exists(stale)?;
        }
        if variants.len() > 1 {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data, so a panic while holding it leaves nothing inconsistent.
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `sha256:<hex>` of the stored (uncompressed) content.
pub fn revision_of(content: &[u8]) -> String {
    finish_revision(Sha256::new_with_prefix(content))
}

/// The revision [`TagStore::set_tags`] returns for `tags`, without writing anything.
pub fn revision_of_tags(tags: &[String]) -> String {
    let mut hasher = Sha256::new();
    for t in tags {
        hasher.update(t.as_bytes());
        hasher.update(b"\n");
    }
    finish_revision(hasher)
}

fn finish_revision(hasher: Sha256) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hasher.finalize() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn read_file(path: &Path, compressed: bool) -> Result<(Vec<String>, String), StoreError> {
    let file = File::open(path).map_err(|e| io_err("open", path, e))?;
    let reader: Box<dyn Read> = if compressed {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut reader = BufReader::new(reader);
    let mut hasher = Sha256::new();
    let mut tags = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded read: at most MAX_LINE + 1 bytes plus the newline per line.
        let n = (&mut reader)
            .take((MAX_LINE + 2) as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&line);
        let text = line
            .strip_suffix(b"\n")
            .ok_or_else(|| StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: if line.len() > MAX_LINE {
                    format!("line longer than {MAX_LINE} bytes")
                } else {
                    "last line is not terminated".to_string()
                },
            })?;
        let tag = std::str::from_utf8(text).map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "tag is not UTF-8".to_string(),
        })?;
        tags.push(tag.to_string());
    }
    Ok((tags, finish_revision(hasher)))
}

/// Deterministic gzip (no name, zero mtime), best compression.
fn gzip(content: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    enc.write_all(content)?;
    enc.finish()
}

/// Writes `name` in `dir` through a temporary file: write, fsync, rename (mode 0600).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let target = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tags-")
        .tempfile_in(dir)
        .map_err(|e| io_err("create temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| io_err("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| io_err("fsync", tmp.path(), e))?;
    tmp.persist(&target)
        .map_err(|e| io_err("rename into", &target, e.error))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", dir, e))
}

fn remove_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path, e)),
    }
}

fn create_dir_private(dir: &Path) -> Result<(), StoreError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| io_err("create directory", dir, e))
}

fn list_dirs(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && let Some(name) = entry.file_name().to_str() {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
