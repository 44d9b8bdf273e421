//! Clone, commit and push over every transport of the test environment, against its real servers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: failing loudly is the point

mod common;

use common::*;
use git::{Cache, PushSpec};
use testenv::GitTransport;

fn full_cycle(transport: GitTransport) {
    let (name, bare) = seed(&format!("tr-{transport:?}").to_lowercase());
    let remote = remote(transport, &name);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf(), 0);
    let mut co = checkout_main(&cache, &remote).unwrap();
    let seed_head = bare_git(&bare, &["rev-parse", "main"]);
    assert_eq!(co.head(), seed_head);
    assert_eq!(co.branch(), Some("main"));
    // Unchanged tree: no commit.
    assert_eq!(co.commit(&commit_spec("nothing")).unwrap(), None);
    std::fs::write(co.workdir().join("deploy.yaml"), "image: app:1.0.1\n").unwrap();
    let sha = co
        .commit(&commit_spec("update app"))
        .unwrap()
        .expect("a commit");
    let out = co
        .push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .expect("pushed");
    assert_eq!(out.commit, sha);
    assert_eq!(out.commits, vec![sha.clone()]);
    assert_eq!(out.retries, 0);
    assert_eq!(bare_git(&bare, &["rev-parse", "main"]), sha);
    assert_eq!(show(&bare, "main", "deploy.yaml"), "image: app:1.0.1");
    let who = bare_git(
        &bare,
        &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", "main"],
    );
    assert_eq!(
        who,
        "Flux Bot <flux@example.com>|Flux Bot <flux@example.com>|update app"
    );
    drop(co);

    // Warm run: an upstream commit since; the cache fetches it and the worktree is clean.
    let up = tempfile::tempdir().unwrap();
    let work = up.path().join("w");
    testenv::git::git(up.path(), &["clone", "-q", &bare.to_string_lossy(), "w"]).unwrap();
    std::fs::write(work.join("README"), "upstream\n").unwrap();
    testenv::git::git(&work, &["commit", "-qam", "upstream"]).unwrap();
    testenv::git::git(&work, &["push", "-q", "origin", "main"]).unwrap();
    let co = checkout_main(&cache, &remote).unwrap();
    assert_eq!(co.head(), bare_git(&bare, &["rev-parse", "main"]));
    assert_eq!(
        std::fs::read_to_string(co.workdir().join("README")).unwrap(),
        "upstream\n"
    );
    std::fs::write(co.workdir().join("stray"), "x").unwrap();
    drop(co);
    let co = checkout_main(&cache, &remote).unwrap();
    assert!(
        !co.workdir().join("stray").exists(),
        "worktree cleaned between runs"
    );
}

#[test]
fn file_transport() {
    full_cycle(GitTransport::File);
}

#[test]
fn git_daemon_transport() {
    full_cycle(GitTransport::Daemon);
}

#[test]
fn http_basic_auth() {
    full_cycle(GitTransport::HttpBasic);
}

#[test]
fn http_bearer_token() {
    full_cycle(GitTransport::HttpBearer);
}

#[test]
fn https_custom_ca() {
    full_cycle(GitTransport::Https);
}

#[test]
fn ssh_known_hosts() {
    full_cycle(GitTransport::Ssh);
}
