//! Byte-exact YAML setters: rewrite only the scalars marked with `$imagepolicy` comments.
//!
//! [`plan`] walks a directory the way Flux's image-automation-controller does, finds the
//! scalars carrying a `# {"$imagepolicy": "ns:name[:tag|:name|:digest]"}` marker, and computes
//! the new file contents by splicing the new values into the original bytes. Every edited
//! document is re-parsed and compared event by event with the original before anything is
//! written. [`Plan::apply`] writes the files atomically; [`update`] does both.
//!
//! Deliberate differences from Flux (kyaml), all in the direction of changing less:
//! - only the bytes of changed marked scalars change; unchanged files and values are never
//!   re-serialised (no re-quoting of unchanged numeric values, no `!!float v1.1` tags);
//! - documents whose root is a sequence or scalar are handled too (Flux skips the file);
//! - unparsable files, non-UTF-8 files and markers naming unknown policies are reported, not
//!   silently skipped; a marked value with a non-string explicit tag is refused;
//! - a symlink is followed only when its target stays inside the root, and a file reached
//!   twice is edited once; `List` unwrapping is not done;
//! - head-comment markers work above block sequence items; markers on block scalars are
//!   ignored (they never carry image references).

mod discover;
mod document;
mod image;
mod locate;
mod marker;
mod report;
mod scalar;
mod verify;
mod write;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use image::{ImageRef, ImageRefError, Policies, Setters};
pub use report::{
    Change, FileChanges, FileError, ObjectChanges, ObjectId, Report, Skipped, UnknownMarker,
};

/// Errors that stop the whole run (per-file problems go into [`Report::errors`] instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path to update cannot be read.
    #[error("walking path for files: {path}: {source}")]
    Walk {
        /// The path that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// One file whose new contents have been computed and verified but not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path relative to the root, with `/` separators (the key used in the report).
    pub path: String,
    /// The real file that will be replaced (a symlink inside the root is resolved to its target).
    pub target: PathBuf,
    /// The contents read.
    pub original: String,
    /// The contents to write.
    pub updated: String,
}

/// The outcome of [`plan`]: the report and the verified new contents of every changed file.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Changes, per-file errors, skipped entries and unknown markers.
    pub report: Report,
    /// Files to write, in report order.
    pub files: Vec<PlannedFile>,
}

/// Computes the changes for the tree (or single file) at `root` without writing anything.
pub fn plan(root: &Path, setters: &Setters) -> Result<Plan, Error> {
    let found = discover::discover(root)?;
    let mut plan = Plan {
        report: Report {
            skipped: found.skipped,
            ..Report::default()
        },
        files: Vec::new(),
    };
    let token = memchr::memmem::Finder::new(marker::TOKEN);
    // One buffer for all reads: most files are read only to be screened out.
    let mut buf = Vec::new();
    for file in found.files {
        buf.clear();
        let read = std::fs::File::open(&file.real).and_then(|mut f| f.read_to_end(&mut buf));
        if let Err(e) = read {
            plan.report
                .errors
                .push(FileError::new(&file.rel, format!("reading YAML file: {e}")));
            continue;
        }
        if token.find(&buf).is_none() {
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.to_owned(),
            Err(e) => {
                let at = e.valid_up_to();
                plan.report.errors.push(FileError::new(
                    &file.rel,
                    format!("not valid UTF-8 (at byte {at}); file skipped"),
                ));
                continue;
            }
        };
        // Last line of defence for repository content: a panic in a parser fails this file only.
        let edited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            document::edit_file(&text, setters)
        }))
        .unwrap_or_else(|_| Err("internal error while parsing; file skipped".to_owned()));
        match edited {
            Ok(outcome) => {
                for unknown in outcome.unknown {
                    plan.report.unknown_markers.push(UnknownMarker {
                        path: file.rel.clone(),
                        line: unknown.line,
                        setter: unknown.setter,
                    });
                }
                if let Some((updated, objects)) = outcome.updated {
                    plan.report.files.push(FileChanges {
                        path: file.rel.clone(),
                        objects,
                    });
                    plan.files.push(PlannedFile {
                        path: file.rel,
                        target: file.real,
                        original: text,
                        updated,
                    });
                }
            }
            Err(reason) => plan.report.errors.push(FileError::new(&file.rel, reason)),
        }
    }
    Ok(plan)
}

impl Plan {
    /// Writes every planned file atomically. A file that cannot be written (or that changed
    /// since it was read) is moved from the changes to the errors of the returned report.
    pub fn apply(self) -> Report {
        let Plan { mut report, files } = self;
        for file in files {
            if let Err(reason) = write::replace(&file.target, &file.original, &file.updated) {
                report.files.retain(|f| f.path != file.path);
                report.errors.push(FileError::new(&file.path, reason));
            }
        }
        report
    }
}

/// Computes and writes the changes for the tree at `root` ([`plan`] then [`Plan::apply`]).
pub fn update(root: &Path, setters: &Setters) -> Result<Report, Error> {
    Ok(plan(root, setters)?.apply())
}
