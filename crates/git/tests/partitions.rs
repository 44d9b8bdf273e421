//! Partitioned mirrors of one remote (concurrent writers of different push branches) and discarding
//! uncommitted edits while keeping commits.

mod common;

use common::*;
use git::{Cache, CheckoutOptions, CheckoutRef, PushSpec};
use testenv::GitTransport;

#[test]
fn partitions_are_separate_mirrors_held_at_once() {
    let (name, bare) = seed("partition");
    let remote = remote(GitTransport::Daemon, &name);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().into(), 0);
    let main = CheckoutRef::Branch("main".into());
    let opts = |b: &str| CheckoutOptions {
        push_branch: Some(b.into()),
        ..CheckoutOptions::default()
    };
    // Both checkouts are held at once: with one shared mirror the second would wait for the first's lock.
    let mut a = cache
        .checkout_in(Some("a"), &remote, &main, &opts("a"))
        .unwrap();
    let mut b = cache
        .checkout_in(Some("b"), &remote, &main, &opts("b"))
        .unwrap();
    assert_ne!(a.workdir(), b.workdir());
    assert!(!a.workdir().starts_with(cache.mirror_dir(&remote)));
    std::fs::write(a.workdir().join("a.txt"), "a\n").unwrap();
    std::fs::write(b.workdir().join("b.txt"), "b\n").unwrap();
    a.commit(&commit_spec("a")).unwrap().unwrap();
    b.commit(&commit_spec("b")).unwrap().unwrap();
    a.push(&PushSpec::default(), &mut no_redo).unwrap().unwrap();
    b.push(&PushSpec::default(), &mut no_redo).unwrap().unwrap();
    assert_eq!(show(&bare, "a", "a.txt"), "a");
    assert_eq!(show(&bare, "b", "b.txt"), "b");
}

#[test]
fn discard_changes_drops_edits_and_keeps_commits() {
    let (name, bare) = seed("discard");
    let remote = remote(GitTransport::Daemon, &name);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().into(), 0);
    let mut co = checkout_main(&cache, &remote).unwrap();
    std::fs::write(co.workdir().join("kept.txt"), "kept\n").unwrap();
    let sha = co.commit(&commit_spec("kept")).unwrap().unwrap();
    std::fs::write(co.workdir().join("deploy.yaml"), "image: app:9\n").unwrap();
    std::fs::write(co.workdir().join("new.txt"), "new\n").unwrap();
    std::fs::remove_file(co.workdir().join("README")).unwrap();
    co.discard_changes().unwrap();
    assert_eq!(co.head(), sha);
    let read = |p: &str| std::fs::read_to_string(co.workdir().join(p)).ok();
    assert_eq!(read("deploy.yaml").as_deref(), Some("image: app:1.0.0\n"));
    assert_eq!(read("README").as_deref(), Some("hello\n"));
    assert_eq!(read("kept.txt").as_deref(), Some("kept\n"));
    assert_eq!(read("new.txt"), None);
    // Nothing left to commit; the kept commit is pushed.
    assert_eq!(co.commit(&commit_spec("none")).unwrap(), None);
    let out = co
        .push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .unwrap();
    assert_eq!(out.commits, vec![sha]);
    assert_eq!(show(&bare, "main", "kept.txt"), "kept");
}
