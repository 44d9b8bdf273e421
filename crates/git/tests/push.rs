//! Pushing: concurrent writers on one branch (IAC#939), several commits in one push, push branches under the
//! §5.7 feature-gate matrix, refspecs and push options.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: failing loudly is the point

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use git::{
    Cache, Checkout, CheckoutOptions, CheckoutRef, GitError, PushOutcome, PushSpec, RemoteSpec,
};
use testenv::GitTransport;
use testenv::git::git;

/// Set `file` to `content` in the worktree and commit.
fn edit_commit(co: &mut Checkout, file: &str, content: &str) -> Result<Option<String>, GitError> {
    std::fs::write(co.workdir().join(file), content)?;
    co.commit(&commit_spec(&format!("set {file}")))
}

/// A cache of its own in a fresh temporary directory (removed when the guard drops).
fn temp_cache() -> (Cache, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Cache::new(dir.path().into(), 0), dir)
}

/// `main` of `remote` checked out in a cache of its own.
fn fresh_checkout(remote: &RemoteSpec) -> (Checkout, tempfile::TempDir) {
    let (cache, dir) = temp_cache();
    (checkout_main(&cache, remote).unwrap(), dir)
}

/// A writer racing others: a [`fresh_checkout`] with `file` set to `content` and committed (not pushed yet).
fn racing_writer(remote: &RemoteSpec, file: &str, content: &str) -> (Checkout, tempfile::TempDir) {
    let (mut co, dir) = fresh_checkout(remote);
    edit_commit(&mut co, file, content).unwrap().unwrap();
    (co, dir)
}

/// Push, re-applying `file` = `content` whenever the remote moved meanwhile.
fn push_redoing(co: &mut Checkout, file: &str, content: &str) -> PushOutcome {
    co.push(&PushSpec::default(), &mut |co: &mut Checkout| {
        edit_commit(co, file, content).map(|_| ())
    })
    .unwrap()
    .unwrap()
}

/// Check out `main` of `remote` for commits to the push branch `options` names.
fn checkout_push_branch(cache: &Cache, remote: &RemoteSpec, options: &CheckoutOptions) -> Checkout {
    cache
        .checkout(remote, &CheckoutRef::Branch("main".into()), options)
        .unwrap()
}

#[test]
fn racing_writer_is_redone_on_the_new_head() {
    let (name, bare) = seed("race");
    let remote = remote(GitTransport::Daemon, &name);
    let (mut a, _da) = racing_writer(&remote, "a.txt", "from a\n");
    let (mut b, _db) = racing_writer(&remote, "b.txt", "from b\n");
    let out_a = a.push(&PushSpec::default(), &mut no_redo).unwrap().unwrap();
    assert_eq!(out_a.retries, 0);
    let mut redone = 0;
    let out_b = b
        .push(&PushSpec::default(), &mut |co: &mut Checkout| {
            redone += 1;
            // The reset dropped our commit; the edit is applied again on top of a's.
            assert!(!co.workdir().join("b.txt").exists());
            assert!(co.workdir().join("a.txt").exists());
            edit_commit(co, "b.txt", "from b\n").map(|_| ())
        })
        .unwrap()
        .unwrap();
    assert_eq!((out_b.retries, redone), (1, 1));
    assert_eq!(bare_git(&bare, &["rev-parse", "main"]), out_b.commit);
    assert_eq!(bare_git(&bare, &["rev-parse", "main^"]), out_a.commit);
    assert_eq!(show(&bare, "main", "a.txt"), "from a");
    assert_eq!(show(&bare, "main", "b.txt"), "from b");
}

#[test]
fn concurrent_updaters_both_land() {
    let (name, bare) = seed("concurrent");
    let before: usize = bare_git(&bare, &["rev-list", "--count", "main"])
        .parse()
        .unwrap();
    let remote = Arc::new(remote(GitTransport::Daemon, &name));
    const WRITERS: usize = 4;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (remote, barrier) = (remote.clone(), barrier.clone());
            std::thread::spawn(move || {
                let file = format!("w{i}.txt");
                let (mut co, _dir) = racing_writer(&remote, &file, "x\n");
                barrier.wait();
                push_redoing(&mut co, &file, "x\n")
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let after: usize = bare_git(&bare, &["rev-list", "--count", "main"])
        .parse()
        .unwrap();
    assert_eq!(after, before + WRITERS, "every writer's commit is on main");
    for i in 0..WRITERS {
        assert_eq!(show(&bare, "main", &format!("w{i}.txt")), "x");
    }
    assert!(outcomes.iter().any(|o| o.retries == 0));
}

#[test]
fn several_commits_one_push() {
    let (name, bare) = seed("multi");
    let remote = remote(GitTransport::File, &name);
    let (mut co, _d) = fresh_checkout(&remote);
    let c1 = edit_commit(&mut co, "one", "1\n").unwrap().unwrap();
    let c2 = edit_commit(&mut co, "two", "2\n").unwrap().unwrap();
    assert_eq!(edit_commit(&mut co, "two", "2\n").unwrap(), None);
    let out = co
        .push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .unwrap();
    assert_eq!(out.commits, vec![c1, c2.clone()]);
    assert_eq!(bare_git(&bare, &["rev-parse", "main"]), c2);
    // Nothing new: nothing to push.
    assert!(
        co.push(&PushSpec::default(), &mut no_redo)
            .unwrap()
            .is_none()
    );
}

#[test]
fn commit_stages_modified_added_and_deleted_files() {
    let (name, bare) = seed("stage");
    let remote = remote(GitTransport::File, &name);
    let (mut co, _d) = fresh_checkout(&remote);
    std::fs::write(co.workdir().join("deploy.yaml"), "image: app:2\n").unwrap();
    std::fs::create_dir_all(co.workdir().join("new")).unwrap();
    std::fs::write(co.workdir().join("new/file.txt"), "new\n").unwrap();
    std::fs::remove_file(co.workdir().join("README")).unwrap();
    co.commit(&commit_spec("stage all")).unwrap().unwrap();
    co.push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .unwrap();
    assert_eq!(
        bare_git(&bare, &["ls-tree", "-r", "--name-only", "main"]),
        "deploy.yaml\nnew/file.txt"
    );
    assert_eq!(show(&bare, "main", "deploy.yaml"), "image: app:2");
}

fn push_branch_opts(branch: &str, all_refs: bool, force: bool) -> CheckoutOptions {
    CheckoutOptions {
        push_branch: Some(branch.into()),
        all_branch_refs: all_refs,
        force_push_branch: force,
        ..CheckoutOptions::default()
    }
}

/// A repository with push branch `auto` that diverged from `main` (one commit of its own), and a newer main.
fn diverged() -> (String, std::path::PathBuf) {
    let (name, bare) = seed("pb");
    let w = tempfile::tempdir().unwrap();
    git(w.path(), &["clone", "-q", &bare.to_string_lossy(), "w"]).unwrap();
    let work = w.path().join("w");
    git(&work, &["checkout", "-qb", "auto"]).unwrap();
    std::fs::write(work.join("auto.txt"), "earlier automation\n").unwrap();
    git(&work, &["add", "."]).unwrap();
    git(&work, &["commit", "-qm", "auto"]).unwrap();
    git(&work, &["push", "-q", "origin", "auto"]).unwrap();
    git(&work, &["checkout", "-q", "main"]).unwrap();
    std::fs::write(work.join("main.txt"), "newer main\n").unwrap();
    git(&work, &["add", "."]).unwrap();
    git(&work, &["commit", "-qm", "main"]).unwrap();
    git(&work, &["push", "-q", "origin", "main"]).unwrap();
    (name, bare)
}

fn run_matrix(
    all_refs: bool,
    force: bool,
) -> (std::path::PathBuf, Result<Option<PushOutcome>, GitError>) {
    let (name, bare) = diverged();
    let remote = remote(GitTransport::Daemon, &name);
    let (cache, _d) = temp_cache();
    let mut co = checkout_push_branch(&cache, &remote, &push_branch_opts("auto", all_refs, force));
    assert_eq!(co.branch(), Some("auto"));
    assert!(co.switched_branch());
    assert_eq!(
        co.checkout_commit(),
        bare_git(&bare, &["rev-parse", "main"])
    );
    edit_commit(&mut co, "deploy.yaml", "image: app:9\n")
        .unwrap()
        .unwrap();
    let r = co.push(&PushSpec::default(), &mut no_redo);
    (bare, r)
}

#[test]
fn push_branch_matrix_all_refs_and_force() {
    // Builds on the existing push branch; a plain (fast-forward) push suffices.
    let (bare, r) = run_matrix(true, true);
    let out = r.unwrap().unwrap();
    assert!(!out.forced);
    assert_eq!(show(&bare, "auto", "auto.txt"), "earlier automation");
    assert_eq!(show(&bare, "auto", "deploy.yaml"), "image: app:9");
}

#[test]
fn push_branch_matrix_all_refs_no_force() {
    let (bare, r) = run_matrix(true, false);
    r.unwrap().unwrap();
    assert_eq!(show(&bare, "auto", "auto.txt"), "earlier automation");
}

#[test]
fn push_branch_matrix_single_branch_force_overwrites() {
    let (bare, r) = run_matrix(false, true);
    let out = r.unwrap().unwrap();
    assert!(out.forced);
    // Based on main: the push branch's own commit is gone, main's newer commit is there.
    assert!(git(&bare, &["show", "auto:auto.txt"]).is_err());
    assert_eq!(show(&bare, "auto", "main.txt"), "newer main");
}

#[test]
fn push_branch_matrix_single_branch_no_force_is_rejected() {
    let (bare, r) = run_matrix(false, false);
    let e = r.unwrap_err();
    assert!(matches!(e, GitError::PushRejected { .. }), "{e}");
    assert_eq!(show(&bare, "auto", "auto.txt"), "earlier automation");
}

#[test]
fn new_push_branch_is_created_from_checkout() {
    let (name, bare) = seed("newpb");
    let remote = remote(GitTransport::File, &name);
    let (cache, _d) = temp_cache();
    let mut co = checkout_push_branch(
        &cache,
        &remote,
        &push_branch_opts("flux-updates", true, true),
    );
    edit_commit(&mut co, "deploy.yaml", "image: app:3\n")
        .unwrap()
        .unwrap();
    let out = co
        .push(&PushSpec::default(), &mut no_redo)
        .unwrap()
        .unwrap();
    assert_eq!(out.branch, "flux-updates");
    assert_eq!(
        bare_git(&bare, &["rev-parse", "flux-updates^"]),
        bare_git(&bare, &["rev-parse", "main"])
    );
}

#[test]
fn refspec_push_and_up_to_date_refspec() {
    let (name, bare) = seed("refspec");
    let remote = remote(GitTransport::Daemon, &name);
    let (cache, _d) = temp_cache();
    let mut co = checkout_push_branch(&cache, &remote, &push_branch_opts("auto", true, true));
    edit_commit(&mut co, "deploy.yaml", "image: app:4\n")
        .unwrap()
        .unwrap();
    let spec = PushSpec {
        refspec: Some("refs/heads/auto:refs/heads/release".into()),
        ..PushSpec::default()
    };
    let out = co.push(&spec, &mut no_redo).unwrap().unwrap();
    assert_eq!(
        out.refspecs,
        vec!["refs/heads/auto:refs/heads/release".to_string()]
    );
    assert_eq!(bare_git(&bare, &["rev-parse", "release"]), out.commit);

    // A refspec equivalent to the branch push is already up to date: an error, as in Flux.
    drop(co);
    let mut co = checkout_main(&cache, &remote).unwrap();
    edit_commit(&mut co, "deploy.yaml", "image: app:5\n")
        .unwrap()
        .unwrap();
    let spec = PushSpec {
        refspec: Some("refs/heads/main:refs/heads/main".into()),
        ..PushSpec::default()
    };
    let e = co.push(&spec, &mut no_redo).unwrap_err();
    assert!(e.to_string().contains("already up-to-date"), "{e}");
}

#[test]
fn push_options_reach_the_server() {
    let (name, bare) = seed("pushopts");
    git(&bare, &["config", "receive.advertisePushOptions", "true"]).unwrap();
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nfor i in $(seq 0 $((GIT_PUSH_OPTION_COUNT - 1))); do eval echo \\$GIT_PUSH_OPTION_$i; done > \"$GIT_DIR/push-options\"\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&hook).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).unwrap();
    let remote = remote(GitTransport::Daemon, &name);
    let (mut co, _d) = fresh_checkout(&remote);
    edit_commit(&mut co, "deploy.yaml", "image: app:6\n")
        .unwrap()
        .unwrap();
    let spec = PushSpec {
        options: [
            ("merge_request.create".to_string(), String::new()),
            ("ci.skip".to_string(), "true".to_string()),
        ]
        .into(),
        ..PushSpec::default()
    };
    co.push(&spec, &mut no_redo).unwrap().unwrap();
    let got = std::fs::read_to_string(bare.join("push-options")).unwrap();
    assert_eq!(got, "ci.skip=true\nmerge_request.create\n");
}
