//! The check before writing: the edited document is parsed again with an independent,
//! spec-compliant parser (granit-parser, the engine of serde-saphyr) and its event stream is
//! compared with the original's. Every event must be identical except the edited scalars,
//! which must read back as exactly the intended strings.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use crate::document::Edit;
use crate::scalar::{self, Style};

fn events(text: &str) -> Result<Vec<Event<'_>>, String> {
    let mut parser = Parser::new_from_str(text);
    let mut out = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, _span) = next.map_err(|e| e.to_string())?;
        let end = event == Event::StreamEnd;
        out.push(event);
        if end {
            break;
        }
    }
    Ok(out)
}

fn same_style(style: Style, parsed: ScalarStyle) -> bool {
    matches!(
        (style, parsed),
        (Style::Plain, ScalarStyle::Plain)
            | (Style::Single, ScalarStyle::SingleQuoted)
            | (Style::Double, ScalarStyle::DoubleQuoted)
    )
}

/// Compares the documents before and after the edits.
pub(crate) fn verify(before: &str, after: &str, edits: &[Edit]) -> Result<(), String> {
    let old = events(before).map_err(|e| format!("the original is not valid YAML: {e}"))?;
    let new = events(after).map_err(|e| format!("the edited text does not parse: {e}"))?;
    if old.len() != new.len() {
        return Err("the edit changed the document structure".into());
    }
    let mut pending = edits.iter();
    for (a, b) in old.iter().zip(&new) {
        if a == b {
            continue;
        }
        let (Event::Scalar(av, ast, aa, atag), Event::Scalar(bv, bst, ba, btag)) = (a, b) else {
            return Err("the edit changed the document structure".into());
        };
        let Some(edit) = pending.next() else {
            return Err(format!("an unmarked value changed from {av:?} to {bv:?}"));
        };
        if av.as_ref() != edit.old || !same_style(edit.old_style, *ast) {
            return Err(format!(
                "the marked value reads as {av:?}, expected {:?}",
                edit.old
            ));
        }
        if bv.as_ref() != edit.new || !same_style(edit.new_style, *bst) {
            return Err(format!(
                "the new value reads back as {bv:?}, expected {:?}",
                edit.new
            ));
        }
        if aa != ba || atag != btag {
            return Err("the edit changed an anchor or tag".into());
        }
        if *bst == ScalarStyle::Plain && !scalar::reads_as_string(bv) {
            return Err(format!(
                "the new value {bv:?} would not read back as a string"
            ));
        }
    }
    if pending.next().is_some() {
        return Err("a marked value did not change as intended".into());
    }
    Ok(())
}
