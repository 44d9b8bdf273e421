//! One test per preserved feature (issue 5 item 4), per Flux complaint (peers.md §2a items
//! 1–7) and per bad-input rule. Each rewrites a file and checks the result byte for byte.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: failing loudly is the point

mod common;

use std::fs;

use common::{setters, tree};

const M: &str = r#"{"$imagepolicy": "ns:app"}"#;
const T: &str = r#"{"$imagepolicy": "ns:app:tag"}"#;

/// Runs an update of one file `f.yaml` with `ns:app` = `app:2.0` and returns the new text.
fn rewrite(input: &str) -> (String, setters::Report) {
    let dir = tree(&[("f.yaml", input)]);
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    (
        fs::read_to_string(dir.path().join("f.yaml")).unwrap(),
        report,
    )
}

fn assert_rewrite(input: &str, expected: &str) {
    let (got, report) = rewrite(input);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(got, expected);
}

// ---- issue item 4: everything else is preserved byte for byte ----

#[test]
fn multi_document_files_keep_every_document_and_separator() {
    let input = format!(
        "--- # first\napiVersion: v1\nkind: A\nmetadata:\n  name: a\nimage: app:1.0 # {M}\n...\n---\n\n# only a comment\n---\napiVersion: v1\nkind: B\nmetadata: {{name: b, namespace: x}}\nimage: app:1.0 # {M}\n"
    );
    let (got, report) = rewrite(&input);
    assert_eq!(got, input.replace("app:1.0 #", "app:2.0 #"));
    let objects = &report.files[0].objects;
    assert_eq!(objects.len(), 2);
    assert_eq!(
        (
            objects[0].object.kind.as_str(),
            objects[0].object.name.as_str()
        ),
        ("A", "a")
    );
    assert_eq!(
        (
            objects[1].object.name.as_str(),
            objects[1].object.namespace.as_str()
        ),
        ("b", "x")
    );
}

#[test]
fn top_level_sequences_are_updated() {
    let input = format!("- app:1.0 # {M}\n- name: x\n  image: app:1.0 # {M}\n");
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

#[test]
fn flow_collections_keep_their_layout() {
    let input = format!(
        "spec: {{image: app:1.0, tags: [a, b]}} # not a marker\nlist: [\n  app:1.0, # {M}\n  x\n]\nm: {{\n  image: app:1.0 # {M}\n}}\n"
    );
    assert_rewrite(
        &input,
        &input
            .replace("  app:1.0, #", "  app:2.0, #")
            .replace("  image: app:1.0 #", "  image: app:2.0 #"),
    );
}

#[test]
fn anchors_and_aliases_are_kept() {
    let input = format!("base: &img app:1.0 # {M}\nother: *img\nmap: &m {{a: 1}}\nref: *m\n");
    assert_rewrite(&input, &input.replace("&img app:1.0", "&img app:2.0"));
}

#[test]
fn comments_anywhere_are_kept_in_place() {
    let input = format!(
        "# head of file\n\napiVersion: v1   # trailing, three spaces\nspec:\n    # indented comment\n  containers:  # after key\n  - name: c # after value\n    image: app:1.0    # {M}\n    # foot comment\n# end\n"
    );
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

#[test]
fn block_scalars_are_kept_verbatim() {
    let input = format!(
        "script: |\n  echo one   \n\n  echo two\nfolded: >-\n  long text\n  continues here\nimage: app:1.0 # {M}\nkeep: |+\n  x\n\n"
    );
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

#[test]
fn trailing_spaces_are_kept() {
    let input = format!("a: 1   \nb:\t\n  - x  \nimage: app:1.0 # {M}   \n");
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

#[test]
fn a_file_without_final_newline_stays_without() {
    let input = format!("a: 1\nimage: app:1.0 # {M}");
    assert_rewrite(&input, &format!("a: 1\nimage: app:2.0 # {M}"));
}

#[test]
fn crlf_files_stay_crlf() {
    let input = format!("a: 1\r\nlist:\r\n- app:1.0 # {M}\r\nimage: \"app:1.0\" # {M}\r\n");
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

#[test]
fn quoting_style_is_kept_and_yaml11_values_get_double_quotes() {
    let input =
        format!("a: app:1.0 # {M}\nb: 'app:1.0' # {M}\nc: \"app:1.0\" # {M}\nt: v1 # {T}\n");
    assert_rewrite(
        &input,
        &input
            .replace("app:1.0", "app:2.0")
            .replace("t: v1 #", "t: \"2.0\" #"),
    );
    // Every value Kubernetes' YAML 1.1 decoder (or YAML 1.2) would not read as a string.
    for tag in [
        "yes",
        "on",
        "y",
        "0o17",
        "1_000",
        "1.0",
        "true",
        "2024-01-01",
        "5",
        "null",
        "1e3",
        "0x1F",
    ] {
        let dir = tree(&[("f.yaml", &format!("t: v1 # {T}\ns: 'v1' # {T}\n"))]);
        let r =
            setters::update(dir.path(), &setters(&[("ns:app", &format!("app:{tag}"))])).unwrap();
        assert!(r.errors.is_empty(), "{tag}: {:?}", r.errors);
        let got = fs::read_to_string(dir.path().join("f.yaml")).unwrap();
        assert_eq!(
            got,
            format!("t: \"{tag}\" # {T}\ns: '{tag}' # {T}\n"),
            "{tag}"
        );
    }
}

#[test]
fn digest_setter_with_no_digest_writes_an_empty_string() {
    let d = r#"{"$imagepolicy": "ns:app:digest"}"#;
    assert_rewrite(
        &format!("digest: sha256:abc # {d}\n"),
        &format!("digest: \"\" # {d}\n"),
    );
}

#[test]
fn head_comment_on_a_sequence_item_is_a_marker_but_not_on_a_key() {
    let input = format!("list:\n# {M}\n- app:1.0\n# {M}\nkey: app:1.0\n");
    let (got, report) = rewrite(&input);
    assert_eq!(got, input.replacen("- app:1.0", "- app:2.0", 1));
    assert_eq!(report.changes().len(), 1);
}

#[test]
fn line_comment_wins_over_head_comment_and_keys_are_never_set() {
    let input = format!(
        "list:\n# {M}\n- app:1.0 # plain comment\n? app:1.0 # {M}\n: x\nk: # {M}\n  app:1.0\n"
    );
    let (got, report) = rewrite(&input);
    assert_eq!(got, input);
    assert!(report.files.is_empty());
}

#[test]
fn unchanged_values_do_not_rewrite_the_file() {
    let dir = tree(&[("f.yaml", &format!("image: app:2.0 # {M}\n"))]);
    let before = fs::metadata(dir.path().join("f.yaml"))
        .unwrap()
        .modified()
        .unwrap();
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert!(report.is_empty());
    assert_eq!(
        fs::metadata(dir.path().join("f.yaml"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn writes_are_atomic_keep_permissions_and_leave_no_temp_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tree(&[("f.yaml", &format!("image: app:1.0 # {M}\n"))]);
    let f = dir.path().join("f.yaml");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert_eq!(
        fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f.yaml"]);
}

#[test]
fn plan_writes_nothing_and_apply_refuses_a_file_changed_meanwhile() {
    let dir = tree(&[
        ("a.yaml", &format!("image: app:1.0 # {M}\n")),
        ("b.yaml", &format!("image: app:1.0 # {M}\n")),
    ]);
    let plan = setters::plan(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert_eq!(plan.files.len(), 2);
    assert_eq!(
        fs::read_to_string(dir.path().join("a.yaml")).unwrap(),
        format!("image: app:1.0 # {M}\n")
    );
    fs::write(dir.path().join("b.yaml"), "changed: meanwhile\n").unwrap();
    let report = plan.apply();
    assert_eq!(
        report
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["a.yaml"]
    );
    assert_eq!(report.errors[0].path, "b.yaml");
    assert_eq!(
        fs::read_to_string(dir.path().join("b.yaml")).unwrap(),
        "changed: meanwhile\n"
    );
}

// ---- discovery ----

#[test]
fn discovery_follows_flux_rules_in_lexical_order() {
    let doc = format!("image: app:1.0 # {M}\n");
    let dir = tree(&[
        ("b.yaml", &doc),
        ("a/z.yml", &doc),
        ("a.yaml", &doc),
        (".github/workflows/ci.yml", &doc),
        (".git/config.yaml", &doc),
        ("Kustomization", &doc),
        ("upper.YAML", &doc),
        ("x.json", &doc),
        (
            "no-quotes.yaml",
            "image: app:1.0 # {$imagepolicy: ns:app}\n",
        ),
    ]);
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    let paths: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".github/workflows/ci.yml",
            "Kustomization",
            "a/z.yml",
            "a.yaml",
            "b.yaml"
        ]
    );
    for untouched in [".git/config.yaml", "upper.YAML", "x.json"] {
        assert_eq!(fs::read_to_string(dir.path().join(untouched)).unwrap(), doc);
    }
}

#[test]
fn symlinks_never_leave_the_root() {
    let outside = tree(&[("secret.yaml", &format!("image: app:1.0 # {M}\n"))]);
    let dir = tree(&[("real/target.yaml", &format!("image: app:1.0 # {M}\n"))]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        dir.path().join("escape.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink("real/target.yaml", dir.path().join("inside.yaml")).unwrap();
    std::os::unix::fs::symlink("nowhere.yaml", dir.path().join("dangling.yaml")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert_eq!(
        fs::read_to_string(outside.path().join("secret.yaml")).unwrap(),
        format!("image: app:1.0 # {M}\n")
    );
    // The link inside the root is written through; the link itself stays a link.
    assert!(
        fs::symlink_metadata(dir.path().join("inside.yaml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("real/target.yaml")).unwrap(),
        format!("image: app:2.0 # {M}\n")
    );
    let paths: Vec<&str> = report.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["inside.yaml"]);
    let skipped: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [
            ("dangling.yaml", "dangling symlink"),
            ("escape.yaml", "symlink points outside the root"),
            ("real/target.yaml", "same file as inside.yaml"),
        ]
    );
}

#[test]
fn a_single_file_root_is_reported_by_name() {
    let dir = tree(&[("sub/f.yaml", &format!("image: app:1.0 # {M}\n"))]);
    let report = setters::update(
        &dir.path().join("sub/f.yaml"),
        &setters(&[("ns:app", "app:2.0")]),
    )
    .unwrap();
    assert_eq!(report.files[0].path, "f.yaml");
}

#[test]
fn a_missing_root_is_an_error() {
    let dir = tree(&[]);
    let err = setters::plan(&dir.path().join("nope"), &setters(&[])).unwrap_err();
    assert!(
        err.to_string().starts_with("walking path for files:"),
        "{err}"
    );
}

// ---- bad input ----

#[test]
fn unparsable_file_is_reported_and_others_still_updated() {
    let dir = tree(&[
        ("a.yaml", &format!("image: [app:1.0 # {M}\n  : : ]]\n")),
        ("b.yaml", &format!("image: app:1.0 # {M}\n")),
    ]);
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].path, "a.yaml");
    assert!(
        report.errors[0].reason.contains("line"),
        "{}",
        report.errors[0].reason
    );
    assert_eq!(report.files[0].path, "b.yaml");
}

#[test]
fn unknown_policies_are_ignored_but_listed() {
    let input = format!(
        "a: x # {{\"$imagepolicy\": \"other:p\"}}\nb: app:1.0 # {M}\nc: y # {{\"$imagepolicy\": \"ns:app:bogus\"}}\n"
    );
    let (got, report) = rewrite(&input);
    assert_eq!(got, input.replace("app:1.0", "app:2.0"));
    let listed: Vec<(usize, &str)> = report
        .unknown_markers
        .iter()
        .map(|u| (u.line, u.setter.as_str()))
        .collect();
    assert_eq!(listed, [(1, "other:p"), (3, "ns:app:bogus")]);
}

#[test]
fn non_utf8_file_is_skipped_with_a_reason() {
    let dir = tree(&[("ok.yaml", &format!("image: app:1.0 # {M}\n"))]);
    let mut bytes = format!("image: app:1.0 # {M}\nx: ").into_bytes();
    bytes.extend([0xff, 0xfe, b'\n']);
    fs::write(dir.path().join("bad.yaml"), &bytes).unwrap();
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert_eq!(report.errors[0].path, "bad.yaml");
    assert!(report.errors[0].reason.contains("UTF-8"));
    assert_eq!(fs::read(dir.path().join("bad.yaml")).unwrap(), bytes);
    assert_eq!(report.files[0].path, "ok.yaml");
}

#[test]
fn a_marked_value_with_a_non_string_tag_is_refused() {
    let input = format!("a: !!int 5 # {T}\n");
    let (got, report) = rewrite(&input);
    assert_eq!(got, input);
    assert!(
        report.errors[0].reason.contains("!!int"),
        "{:?}",
        report.errors
    );
}

// ---- peers.md §2a: the Flux complaints, one by one ----

/// IAC#68: every YAML file in the repository was rewritten.
#[test]
fn complaint_1_only_the_marked_file_changes() {
    let messy = "a:   1\nb:\n    - x\n    -   y\n# comment\n\n\nc: {d: 1}\n";
    let dir = tree(&[
        ("messy.yaml", messy),
        ("configmap.yaml", "data:\n  k: |\n    v  \n"),
        ("deploy.yaml", &format!("image: app:1.0 # {M}\n")),
        ("current.yaml", &format!("image: app:2.0 # {M}\n")),
    ]);
    let before = common::snapshot(dir.path());
    let report = setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    let after = common::snapshot(dir.path());
    let changed: Vec<&String> = after.keys().filter(|k| before[*k] != after[*k]).collect();
    assert_eq!(changed, ["deploy.yaml"]);
    assert_eq!(report.files.len(), 1);
}

/// flux2#1441: comments moved and sequence indentation shifted by 2 spaces.
#[test]
fn complaint_2_comments_and_sequence_indentation_stay() {
    let input = format!(
        "spec:\n  containers:\n    # the app\n    - name: app # main\n      image: app:1.0 # {M}\n      # trailing comment of the item\n    - name: side\n  # foot of containers\nafter: 1\n"
    );
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

/// IAC#528 / IAC#616: literal block scalars with trailing spaces collapsed into one line.
#[test]
fn complaint_3_literal_blocks_with_trailing_spaces_stay_blocks() {
    let input = format!(
        "data:\n  nginx.conf: |\n    server {{   \n      listen 80;\t\n    }}\n  script: >\n    one\n    two\nimage: app:1.0 # {M}\n"
    );
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

/// IAC#844: blank lines removed (.gitlab-ci.yml, docker-compose.yml).
#[test]
fn complaint_4_blank_lines_stay() {
    let input = format!(
        "services:\n\n  web:\n    image: app:1.0 # {M}\n\n\n  db:\n    image: postgres:16\n\n"
    );
    let dir = tree(&[
        ("docker-compose.yml", &input),
        (
            ".gitlab-ci.yml",
            &format!("stages:\n\n  - build\n\nbuild:\n\n  image: app:1.0 # {M}\n"),
        ),
    ]);
    setters::update(dir.path(), &setters(&[("ns:app", "app:2.0")])).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("docker-compose.yml")).unwrap(),
        input.replace("app:1.0", "app:2.0")
    );
    assert_eq!(
        fs::read_to_string(dir.path().join(".gitlab-ci.yml")).unwrap(),
        format!("stages:\n\n  - build\n\nbuild:\n\n  image: app:2.0 # {M}\n")
    );
}

/// flux2#4435: the leading `---` document marker dropped.
#[test]
fn complaint_5_leading_document_marker_stays() {
    let input = format!("---\napiVersion: v1\nimage: app:1.0 # {M}\n");
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
    let with_directive = format!("%YAML 1.2\n---\nimage: app:1.0 # {M}\n...\n");
    assert_rewrite(
        &with_directive,
        &with_directive.replace("app:1.0", "app:2.0"),
    );
}

/// IAC#182 (CHANGELOG v0.12.0): sequence indentation changed for every user.
#[test]
fn complaint_6_mixed_and_unusual_sequence_indentation_stays() {
    let input = format!(
        "compact:\n- a\n- b\nwide:\n  - a\n  - b\nfour:\n    -   app:1.0 # {M}\n    -   c\nnested:\n  - - x\n    - app:1.0 # {M}\n"
    );
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

/// IAC#624: markers in files whose root is a sequence were silently ignored.
#[test]
fn complaint_7_sequence_root_files_are_updated() {
    let input = format!(
        "- name: web\n  image: app:1.0 # {M}\n- name: worker\n  images:\n  - app:1.0 # {M}\n"
    );
    let (got, report) = rewrite(&input);
    assert_eq!(got, input.replace("app:1.0", "app:2.0"));
    assert_eq!(report.changes().len(), 1);
    assert_eq!(report.files[0].objects[0].changes.len(), 2);
    assert_eq!(
        report.files[0].objects[0].object,
        setters::ObjectId::default()
    );
}

#[test]
fn byte_order_mark_and_tabs_are_kept() {
    let input = format!("\u{feff}a:\t1\nimage: app:1.0\t# {M}\n");
    assert_rewrite(&input, &input.replace("app:1.0", "app:2.0"));
}

#[test]
fn a_marker_after_a_flow_collection_is_not_a_scalar_marker() {
    let input = format!("images: {{image: app:1.0}} # {M}\nlist: [app:1.0] # {M}\n");
    let (got, report) = rewrite(&input);
    assert_eq!(got, input);
    assert!(report.files.is_empty() && report.errors.is_empty());
}

#[test]
fn the_token_outside_a_marker_changes_nothing() {
    let input = "# mentions \"$imagepolicy\" in prose\nimage: app:1.0\n";
    let (got, report) = rewrite(input);
    assert_eq!(got, input);
    assert!(
        report.files.is_empty() && report.errors.is_empty() && report.unknown_markers.is_empty()
    );
}
