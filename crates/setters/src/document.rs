//! Editing one file: split it into documents, locate markers in the documents that mention
//! one, splice the new values in, verify, and collect the changes.

use crate::locate::{self, Site};
use crate::scalar::{self, Style};
use std::collections::HashMap;

use crate::{Change, ObjectChanges, ObjectId, Setters, verify};

/// A marker whose setter is unknown.
#[derive(Debug)]
pub(crate) struct Unknown {
    pub line: usize,
    pub setter: String,
}

/// What editing a file produced.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// New contents and the changes, when at least one value changed.
    pub updated: Option<(String, Vec<ObjectChanges>)>,
    pub unknown: Vec<Unknown>,
}

/// One replacement inside a document.
#[derive(Debug)]
pub(crate) struct Edit {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub old: String,
    pub new: String,
    pub old_style: Style,
    pub new_style: Style,
}

/// Byte ranges of the documents of a stream. A line starting with `---` or `...` followed by
/// white space or the end of the line can occur only as a document marker (YAML 1.2
/// "c-forbidden"), never inside a scalar, so splitting there is exact.
pub(crate) fn split_documents(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut has_content = false;
    let mut pos = 0;
    while pos < bytes.len() {
        let line_end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i + 1);
        let line = &bytes[pos..line_end];
        let marker = |m: &[u8]| {
            line.starts_with(m)
                && line
                    .get(3)
                    .is_none_or(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        };
        if marker(b"---") {
            // Directives and comments before the first `---` belong to its document.
            if has_content {
                out.push((start, pos));
                start = pos;
            }
            has_content = true;
        } else if marker(b"...") {
            out.push((start, line_end));
            start = line_end;
            has_content = false;
        } else {
            let trimmed = line.trim_ascii_start();
            if !(trimmed.is_empty() || trimmed.starts_with(b"#") || line.starts_with(b"%")) {
                has_content = true;
            }
        }
        pos = line_end;
    }
    if start < bytes.len() || out.is_empty() {
        out.push((start, bytes.len()));
    }
    out
}

fn might_have_marker(doc: &str) -> bool {
    memchr::memmem::find(doc.as_bytes(), crate::marker::TOKEN.as_bytes()).is_some()
        || memchr::memmem::find(doc.as_bytes(), b"io.k8s.cli.setters.").is_some()
}

/// Applies the setters to every marker of a file.
pub(crate) fn edit_file(text: &str, setters: &Setters) -> Result<Outcome, String> {
    let mut outcome = Outcome::default();
    let mut out = String::new();
    let mut copied = 0;
    let mut objects: Vec<ObjectChanges> = Vec::new();
    let mut object_index: HashMap<ObjectId, usize> = HashMap::new();
    let mut line_base = 0;
    let mut line_pos = 0;
    for (start, end) in split_documents(text) {
        let doc = &text[start..end];
        if !might_have_marker(doc) {
            continue;
        }
        line_base += memchr::memchr_iter(b'\n', &text.as_bytes()[line_pos..start]).count();
        line_pos = start;
        let located = locate::locate(doc).map_err(|e| at_line(e, line_base))?;
        let mut edits = Vec::new();
        let mut changes = Vec::new();
        for Site {
            start: s,
            end: e,
            style,
            in_flow,
            old,
            setter,
            row,
        } in located.sites
        {
            let Some(value) = setters.get(&setter) else {
                outcome.unknown.push(Unknown {
                    line: line_base + row + 1,
                    setter,
                });
                continue;
            };
            if value == old {
                continue;
            }
            let (rendered, new_style) = scalar::render(value, style, in_flow);
            changes.push(Change {
                old_value: old.clone(),
                new_value: value.to_owned(),
                setter,
            });
            edits.push(Edit {
                start: s,
                end: e,
                text: rendered,
                old,
                new: value.to_owned(),
                old_style: style,
                new_style,
            });
        }
        if edits.is_empty() {
            continue;
        }
        let mut new_doc = String::with_capacity(doc.len() + 64);
        let mut at = 0;
        for e in &edits {
            new_doc.push_str(&doc[at..e.start]);
            new_doc.push_str(&e.text);
            at = e.end;
        }
        new_doc.push_str(&doc[at..]);
        verify::verify(doc, &new_doc, &edits).map_err(|e| {
            format!(
                "refusing to write: document starting at line {}: {e}",
                line_base + 1
            )
        })?;
        out.push_str(&text[copied..start]);
        out.push_str(&new_doc);
        copied = end;
        // Documents sharing an identity (e.g. several without metadata) share one entry.
        match object_index.get(&located.object) {
            Some(&k) => objects[k].changes.extend(changes),
            None => {
                object_index.insert(located.object.clone(), objects.len());
                objects.push(ObjectChanges {
                    object: located.object,
                    changes,
                });
            }
        }
    }
    if !objects.is_empty() {
        out.push_str(&text[copied..]);
        outcome.updated = Some((out, objects));
    }
    Ok(outcome)
}

/// Makes a document-relative "line N" absolute.
fn at_line(msg: String, line_base: usize) -> String {
    if line_base == 0 {
        return msg;
    }
    format!("{msg} (in the document starting at line {})", line_base + 1)
}

#[cfg(test)]
mod tests {
    use super::split_documents;

    fn parts(t: &str) -> Vec<&str> {
        split_documents(t)
            .into_iter()
            .map(|(s, e)| &t[s..e])
            .collect()
    }

    #[test]
    fn splits_at_document_markers_only() {
        assert_eq!(parts("a: 1\n---\nb: 2\n"), ["a: 1\n", "---\nb: 2\n"]);
        assert_eq!(
            parts("---\na: 1\n--- # c\nb: 2"),
            ["---\na: 1\n", "--- # c\nb: 2"]
        );
        assert_eq!(
            parts("# c\n%YAML 1.2\n---\na: |\n  ---x\n"),
            ["# c\n%YAML 1.2\n---\na: |\n  ---x\n"]
        );
        assert_eq!(
            parts("a: 1\n...\n%YAML 1.2\n---\nb\n"),
            ["a: 1\n...\n", "%YAML 1.2\n---\nb\n"]
        );
        assert_eq!(
            parts("a: 1\r\n---\r\nb: 2\r\n"),
            ["a: 1\r\n", "---\r\nb: 2\r\n"]
        );
        assert_eq!(parts("a: ---x\n----\n"), ["a: ---x\n----\n"]);
        assert_eq!(parts(""), [""]);
    }
}
