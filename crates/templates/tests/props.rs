//! Property: templates assembled from random tokens never panic (overflow checks are on in
//! test builds), and execution stays within the output budget or fails with a message.

use proptest::prelude::*;
use templates::{COMMIT_TEMPLATE_NAME, Limits, Template, TemplateInput, Value};

const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    " ",
    "\n",
    "x",
    "range ",
    "end",
    "else ",
    "if ",
    "with ",
    "break",
    "continue",
    "define \"d\"",
    "template \"d\" .",
    "block \"b\" .",
    "$x := ",
    "$x = ",
    "$x",
    "$",
    "$k, $v := ",
    "|",
    "(",
    ")",
    ".",
    ".AutomationObject",
    ".Changed",
    ".FileChanges",
    ".Objects",
    ".Changes",
    ".Values",
    ".Updated",
    ".Images",
    ".Files",
    ".Policy",
    ".Name",
    ".Kind",
    ".cluster",
    "\"a\"",
    "`r`",
    "'c'",
    "0",
    "1",
    "-1",
    "3.5",
    "1e300",
    "9223372036854775807",
    "nil",
    "true",
    "printf \"%v %d %s %q %x %5.2f %T\" ",
    "print ",
    "println ",
    "index ",
    "len ",
    "slice ",
    "eq ",
    "ne ",
    "lt ",
    "and ",
    "or ",
    "not ",
    "html ",
    "js ",
    "urlquery ",
    "toString ",
    "toJson ",
    "fromJson ",
    "repeat ",
    "list ",
    "dict ",
    "append ",
    "until ",
    "untilStep ",
    "seq ",
    "replace ",
    "regexReplaceAll ",
    "join ",
    "indent ",
    "sha256sum ",
    "trunc ",
    "substr ",
    "lower ",
    "title ",
    "contains ",
    "default ",
    "add ",
    "mul ",
    "div ",
    "mod ",
    "uniq ",
    "splitn ",
    "b64dec ",
    "/* c */",
];

fn data() -> Value {
    let json = include_str!("data/datasets.json");
    let all: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    serde_json::from_value::<TemplateInput>(all["B"].clone())
        .unwrap_or_default()
        .to_value()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_templates_are_handled(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..48)) {
        let limits = Limits { max_steps: 20_000, max_output: 16 * 1024, max_depth: 20 };
        let text = tokens.concat();
        if let Ok(t) = Template::parse(COMMIT_TEMPLATE_NAME, &text) {
            match t.execute(&data(), &limits) {
                Ok(out) => prop_assert!(out.len() <= limits.max_output),
                Err(e) => prop_assert!(!e.message.is_empty()),
            }
        }
    }
}
