//! Tag store tests: Flux file-store conformance cases (tests/data/filesystem-cases.json) plus
//! crash-safety, key validation and round-trip properties.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly on bad fixtures

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde_json::Value;
use store::{RepoKey, StoreError, TagStore, Verified, revision_of_tags};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn podinfo() -> RepoKey {
    RepoKey::new("default", "podinfo")
}

fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn flux_filesystem_cases() {
    let data: Value = serde_json::from_str(include_str!("data/filesystem-cases.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let expected = &case["expected"];
        let threshold = case["threshold"].as_u64().unwrap_or(1024);
        match name {
            "plain file below threshold" | "gzip file at/above threshold" => {
                let s = TagStore::open(root, threshold).unwrap();
                let tags = strings(&case["tags"]);
                let rev = s.set_tags(&podinfo(), &tags).unwrap();
                for f in strings(&expected["files"]) {
                    assert!(root.join(&f).is_file(), "{name}: {f} missing");
                }
                assert_eq!(
                    s.tags(&podinfo()).unwrap(),
                    strings(&expected["tags"]),
                    "{name}"
                );
                if let Some(want) = expected["revision(derived)"].as_str() {
                    assert_eq!(rev, want, "{name}");
                }
                assert_eq!(
                    s.revision(&podinfo()).unwrap().as_deref(),
                    Some(rev.as_str())
                );
            }
            "missing and empty" => {
                let s = TagStore::open(root, threshold).unwrap();
                assert_eq!(
                    s.tags(&podinfo()).unwrap(),
                    strings(&expected["tagsBeforeWrite"])
                );
                assert_eq!(s.revision(&podinfo()).unwrap(), None);
                s.set_tags(&podinfo(), &[]).unwrap();
                let plain = root.join("imagerepository/default/podinfo/tags.txt");
                assert_eq!(fs::read(&plain).unwrap(), b"");
                assert_eq!(
                    s.tags(&podinfo()).unwrap(),
                    strings(&expected["tagsAfterSetTagsNil"])
                );
            }
            "stale variant cleanup" => {
                for op in case["ops"].as_array().unwrap() {
                    let s = TagStore::open(root, op["threshold"].as_u64().unwrap()).unwrap();
                    s.set_tags(&podinfo(), &strings(&op["setTags"])).unwrap();
                }
                for f in strings(&expected["files"]) {
                    assert!(root.join(&f).is_file(), "{name}: {f}");
                }
                for f in strings(&expected["absent"]) {
                    assert!(!root.join(&f).exists(), "{name}: {f}");
                }
            }
            "both variants present: newest mtime wins, older removed" => {
                // Build both variants with two stores, then age the plain one.
                let plain_store = TagStore::open(root, 1 << 20).unwrap();
                let gz_store = TagStore::open(root, 1).unwrap();
                let d = root.join("imagerepository/default/podinfo");
                gz_store
                    .set_tags(&podinfo(), &strings(&case["setup"]["tags.txt.gz"]["tags"]))
                    .unwrap();
                let gz_bytes = fs::read(d.join("tags.txt.gz")).unwrap();
                plain_store
                    .set_tags(&podinfo(), &strings(&case["setup"]["tags.txt"]["tags"]))
                    .unwrap();
                fs::write(d.join("tags.txt.gz"), gz_bytes).unwrap();
                let now = SystemTime::now();
                set_mtime(&d.join("tags.txt"), now - Duration::from_secs(3600));
                set_mtime(&d.join("tags.txt.gz"), now);
                assert_eq!(
                    plain_store.tags(&podinfo()).unwrap(),
                    strings(&expected["tags"])
                );
                for f in strings(&expected["absent"]) {
                    assert!(!d.join(&f).exists(), "{name}: {f} should be removed");
                }
            }
            "revision identical across compression" => {
                let tags = strings(&case["tags"]);
                let a = TagStore::open(root.join("a"), 1)
                    .unwrap()
                    .set_tags(&podinfo(), &tags)
                    .unwrap();
                let b = TagStore::open(root.join("b"), 1024)
                    .unwrap()
                    .set_tags(&podinfo(), &tags)
                    .unwrap();
                assert_eq!(a, b);
                assert_eq!(a, expected["revision(derived)"].as_str().unwrap());
                assert_eq!(a, revision_of_tags(&tags));
            }
            "namespace/name isolation (same canonical image)" => {
                let s = TagStore::open(root, 1024).unwrap();
                for op in case["ops"].as_array().unwrap() {
                    let key = RepoKey::new(
                        op["repo"]["namespace"].as_str().unwrap(),
                        op["repo"]["name"].as_str().unwrap(),
                    );
                    s.set_tags(&key, &strings(&op["setTags"])).unwrap();
                }
                for (k, want) in expected.as_object().unwrap() {
                    let (ns, n) = k.split_once('/').unwrap();
                    assert_eq!(s.tags(&RepoKey::new(ns, n)).unwrap(), strings(want), "{k}");
                }
            }
            "Delete removes repo directory" => {
                let s = TagStore::open(root, 1024).unwrap();
                s.set_tags(&podinfo(), &["a".to_string()]).unwrap();
                s.delete(&podinfo()).unwrap();
                assert!(!root.join(expected["dirAbsent"].as_str().unwrap()).exists());
                assert_eq!(s.tags(&podinfo()).unwrap(), Vec::<String>::new());
                // Deleting again is fine.
                s.delete(&podinfo()).unwrap();
            }
            "gzip is deterministic (no name, zero mtime)" => {
                let tags = strings(&case["tags"]);
                let s = TagStore::open(root, 1).unwrap();
                s.set_tags(&podinfo(), &tags).unwrap();
                let p = root.join("imagerepository/default/podinfo/tags.txt.gz");
                let first = fs::read(&p).unwrap();
                s.set_tags(&podinfo(), &tags).unwrap();
                assert_eq!(first, fs::read(&p).unwrap());
                assert_eq!(&first[..2], &[0x1f, 0x8b]);
                assert_eq!(first[3] & 0x08, 0, "FNAME flag set");
                assert_eq!(&first[4..8], &[0, 0, 0, 0], "mtime not zero");
            }
            other => panic!("unhandled conformance case {other:?}"),
        }
    }
}

#[test]
fn read_if_revision_guards_stale_stores() {
    let dir = tempfile::tempdir().unwrap();
    let s = TagStore::open(dir.path(), 1024).unwrap();
    let key = RepoKey::new("ns", "app");
    assert_eq!(
        s.read_if_revision(&key, "sha256:x").unwrap(),
        Verified::Missing
    );
    let tags = vec!["v2".to_string(), "v1".to_string()];
    let rev = s.set_tags(&key, &tags).unwrap();
    assert_eq!(
        s.read_if_revision(&key, &rev).unwrap(),
        Verified::Match(tags)
    );
    let newer = s.set_tags(&key, &["v3".to_string()]).unwrap();
    assert_eq!(
        s.read_if_revision(&key, &rev).unwrap(),
        Verified::Mismatch(newer)
    );
}

#[test]
fn leftover_temp_files_are_ignored() {
    // A crash between creating the temp file and renaming it leaves a `.tags-*` file behind.
    let dir = tempfile::tempdir().unwrap();
    let s = TagStore::open(dir.path(), 1024).unwrap();
    let key = RepoKey::new("ns", "app");
    let rev = s.set_tags(&key, &["a".to_string()]).unwrap();
    let d = dir.path().join("imagerepository/ns/app");
    fs::write(d.join(".tags-crashed"), b"half a li").unwrap();
    assert_eq!(s.tags(&key).unwrap(), vec!["a".to_string()]);
    assert_eq!(s.revision(&key).unwrap(), Some(rev));
    assert_eq!(s.keys().unwrap(), vec![key]);
}

#[test]
fn keys_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let s = TagStore::open(dir.path(), 1024).unwrap();
    let a = RepoKey::new("team-a", "app");
    let b = RepoKey::new("team-a", "web");
    let c = RepoKey::new("team-b", "app");
    for k in [&a, &b, &c] {
        s.set_tags(k, &["1".to_string()]).unwrap();
    }
    assert_eq!(s.keys().unwrap(), vec![a.clone(), b.clone(), c.clone()]);
    s.delete(&a).unwrap();
    s.delete(&c).unwrap();
    assert_eq!(s.keys().unwrap(), vec![b]);
    assert!(
        !dir.path().join("imagerepository/team-b").exists(),
        "empty namespace dir kept"
    );
}

#[test]
fn bad_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = TagStore::open(dir.path(), 1024).unwrap();
    assert!(matches!(
        s.tags(&RepoKey::new("", "x")),
        Err(StoreError::MissingKey)
    ));
    assert_eq!(
        s.tags(&RepoKey::new("", "x")).unwrap_err().to_string(),
        "repo namespace and name are required"
    );
    for bad in ["..", ".", "a/b", "a\0b"] {
        assert!(matches!(
            s.set_tags(&RepoKey::new(bad, "x"), &[]),
            Err(StoreError::InvalidKey(_))
        ));
    }
    let key = RepoKey::new("ns", "app");
    for tag in ["", "a\nb", "a\rb"] {
        assert!(matches!(
            s.set_tags(&key, &[tag.to_string()]),
            Err(StoreError::InvalidTag { .. })
        ));
    }
    // A failed write keeps the previous list.
    s.set_tags(&key, &["keep".to_string()]).unwrap();
    assert!(
        s.set_tags(&key, &["ok".to_string(), "bad\n".to_string()])
            .is_err()
    );
    assert_eq!(s.tags(&key).unwrap(), vec!["keep".to_string()]);
    assert!(TagStore::open(dir.path(), 0).is_err());
}

#[test]
fn corrupt_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let s = TagStore::open(dir.path(), 1024).unwrap();
    let key = RepoKey::new("ns", "app");
    s.set_tags(&key, &["a".to_string()]).unwrap();
    let d = dir.path().join("imagerepository/ns/app");
    fs::write(d.join("tags.txt"), b"unterminated").unwrap();
    assert!(matches!(s.tags(&key), Err(StoreError::Corrupt { .. })));
    fs::write(d.join("tags.txt"), vec![b'x'; 5000]).unwrap();
    let err = s.tags(&key).unwrap_err().to_string();
    assert!(err.contains("line longer than 1024 bytes"), "{err}");
    fs::remove_file(d.join("tags.txt")).unwrap();
    fs::write(d.join("tags.txt.gz"), b"not gzip").unwrap();
    assert!(matches!(s.tags(&key), Err(StoreError::Corrupt { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn round_trip(tags in proptest::collection::vec("[A-Za-z0-9_.-]{1,40}", 0..200), threshold in 1u64..4096) {
        let dir = tempfile::tempdir().unwrap();
        let s = TagStore::open(dir.path(), threshold).unwrap();
        let key = RepoKey::new("ns", "app");
        let rev = s.set_tags(&key, &tags).unwrap();
        prop_assert_eq!(&rev, &revision_of_tags(&tags));
        prop_assert_eq!(s.tags(&key).unwrap(), tags);
        prop_assert_eq!(s.revision(&key).unwrap(), Some(rev));
    }
}

#[test]
fn readers_see_whole_lists_while_a_writer_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    // A small threshold so that writes alternate between the plain and the gzip variant as well.
    let s = TagStore::open(dir.path(), 8 * 1024).unwrap();
    let key = RepoKey::new("ns", "app");
    let a: Vec<String> = (0..500).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..3000).map(|i| format!("b{i}")).collect();
    let (rev_a, rev_b) = (revision_of_tags(&a), revision_of_tags(&b));
    s.set_tags(&key, &a).unwrap();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0..60 {
                s.set_tags(&key, if i % 2 == 0 { &b } else { &a }).unwrap();
            }
        });
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..200 {
                    let tags = s.tags(&key).unwrap();
                    assert!(tags == a || tags == b, "torn read of {} tags", tags.len());
                    let rev = s.revision(&key).unwrap().unwrap();
                    assert!(rev == rev_a || rev == rev_b);
                }
            });
        }
        writer.join().unwrap();
    });
}

#[test]
fn flux_gc_cases() {
    let data: Value = serde_json::from_str(include_str!("data/gc-cases.json")).unwrap();
    let mut ran = 0;
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // Leader election and API list errors belong to the controller's GC runnable, not the store.
        if case.get("repoDirsOnDisk").is_none() || case["listError"] == true {
            continue;
        }
        ran += 1;
        let dir = tempfile::tempdir().unwrap();
        let s = TagStore::open(dir.path(), 1024).unwrap();
        let key = |k: &str| {
            let (ns, n) = k.split_once('/').unwrap();
            RepoKey::new(ns, n)
        };
        for k in strings(&case["repoDirsOnDisk"]) {
            s.set_tags(&key(&k), &["v1".to_string()]).unwrap();
        }
        let live: Vec<RepoKey> = strings(&case["imageRepositoriesOnAPI"])
            .iter()
            .map(|k| key(k))
            .collect();
        s.retain(|k| live.contains(k)).unwrap();
        let want: Vec<RepoKey> = strings(&case["expected"]["repoDirsRemaining"])
            .iter()
            .map(|k| key(k))
            .collect();
        assert_eq!(s.keys().unwrap(), want, "{name}");
        // Empty namespace directories are pruned.
        let ns_dirs: Vec<String> = fs::read_dir(dir.path().join("imagerepository"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for ns in ns_dirs {
            assert!(
                want.iter().any(|k| k.namespace == ns),
                "{name}: namespace dir {ns} kept"
            );
        }
    }
    assert_eq!(ran, 3);
}
