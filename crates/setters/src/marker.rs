//! Marker comments (`automation.md` §3.5): the whole comment, after its leading `#`s, must be
//! one JSON object of string values.

use std::collections::BTreeMap;

/// The screening token: files without it are never parsed.
pub(crate) const TOKEN: &str = "\"$imagepolicy\"";

const REF_PREFIX: &str = "#/definitions/io.k8s.cli.setters.";

/// The setter named by a comment (text including its `#`), if the comment is a marker.
pub(crate) fn setter_name(comment: &str) -> Option<String> {
    let body = comment.trim_end_matches('\r').trim_start_matches('#');
    // Cheap rejection before JSON parsing: most comments are not markers.
    if !body.contains("$imagepolicy") && !body.contains(REF_PREFIX) {
        return None;
    }
    let obj: BTreeMap<String, String> = serde_json::from_str(body).ok()?;
    if let Some(name) = obj.get("$imagepolicy") {
        return Some(name.clone());
    }
    obj.get("$ref")
        .and_then(|r| r.strip_prefix(REF_PREFIX))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::setter_name;

    #[test]
    fn recognises_only_whole_json_objects_of_strings() {
        assert_eq!(
            setter_name(r#"# {"$imagepolicy": "ns:p:tag"}"#).as_deref(),
            Some("ns:p:tag")
        );
        assert_eq!(
            setter_name(r#"##{"$imagepolicy":"ns:p","x":"y"}"#).as_deref(),
            Some("ns:p")
        );
        assert_eq!(
            setter_name(r##"# {"$ref": "#/definitions/io.k8s.cli.setters.ns:p"}"##).as_deref(),
            Some("ns:p")
        );
        assert_eq!(setter_name(r#"# {"$imagepolicy": "ns:p"} trailing"#), None);
        assert_eq!(setter_name(r#"# {"$imagepolicy": "ns:p", "n": 1}"#), None);
        assert_eq!(setter_name(r#"# see {"$imagepolicy": "ns:p"}"#), None);
        assert_eq!(setter_name("# plain comment"), None);
    }
}
