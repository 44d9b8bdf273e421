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

#[cfg(test)]
mod tests {
    use super::verify;
    use crate::document::Edit;
    use crate::scalar::Style;

    fn edit(old: &str, new: &str, new_style: Style) -> Edit {
        Edit {
            start: 0,
            end: 0,
            text: String::new(),
            old: old.into(),
            new: new.into(),
            old_style: Style::Plain,
            new_style,
        }
    }

    #[test]
    fn accepts_exactly_the_intended_change() {
        let e = [edit("app:1", "app:2", Style::Plain)];
        assert_eq!(
            verify("a: app:1 # c\nb: x\n", "a: app:2 # c\nb: x\n", &e),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_change_outside_the_marked_values() {
        let e = [edit("app:1", "app:2", Style::Plain)];
        let err = verify("a: app:1\nb: x\n", "a: app:2\nb: y\n", &e).unwrap_err();
        assert!(err.contains("unmarked value changed"), "{err}");
    }

    #[test]
    fn refuses_a_value_that_reads_back_differently() {
        let e = [edit("app:1", "1.0", Style::Plain)];
        let err = verify("a: app:1\n", "a: 1.0\n", &e).unwrap_err();
        assert!(err.contains("would not read back as a string"), "{err}");
        let e = [edit("app:1", "a b", Style::Plain)];
        let err = verify("a: app:1\n", "a: a  b\n", &e).unwrap_err();
        assert!(err.contains("reads back as"), "{err}");
    }

    #[test]
    fn refuses_structural_damage_and_broken_yaml() {
        let e = [edit("app:1", "x: y", Style::Plain)];
        assert!(verify("a: app:1\n", "a: x: y\n", &e).is_err());
        assert!(verify("a: app:1\n", "a: [x\n", &e).is_err());
        let err = verify("a: app:1\n", "a: app:1\n", &e).unwrap_err();
        assert!(err.contains("did not change"), "{err}");
    }
}
