//! Clone and push through every Git transport of the test environment (`hack/testenv.sh up`), with the git CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions panic on failure by design.

use std::path::Path;
use std::process::Command;

use testenv::git::{git, run};
use testenv::{GitTransport, SshKeyType, TestEnv, env, unique_name};

/// Clone `url` into `dir` with a prepared command.
fn clone(mut cmd: Command, url: &str, dir: &Path) -> testenv::Result<String> {
    cmd.args(["clone", "-q", url]).arg(dir);
    run(cmd)
}

/// Commit a new file in `work` and push it with a prepared command; return the new commit.
fn commit_and_push(mut cmd: Command, work: &Path, file: &str) -> testenv::Result<String> {
    std::fs::write(work.join(file), file).unwrap();
    git(work, &["add", file])?;
    git(work, &["commit", "-q", "-m", file])?;
    cmd.current_dir(work)
        .args(["push", "-q", "origin", "HEAD:main"]);
    run(cmd)?;
    Ok(git(work, &["rev-parse", "HEAD"])?.trim().to_owned())
}

fn bare_head(env: &TestEnv, name: &str) -> String {
    let bare = env.git_root().unwrap().join(format!("{name}.git"));
    git(&bare, &["rev-parse", "main"])
        .unwrap()
        .trim()
        .to_owned()
}

fn clone_and_push(transport: GitTransport) {
    let env = env();
    let name = unique_name("repo");
    env.seed_repo(&name, &[("deploy/app.yaml", "image: app:1.0.0\n")])
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let url = env.git_clone_url(transport, &name).unwrap();
    clone(env.git_command_for(transport).unwrap(), &url, &work)
        .unwrap_or_else(|e| panic!("{transport:?}: clone failed: {e}"));
    let content = std::fs::read_to_string(work.join("deploy/app.yaml")).unwrap();
    assert_eq!(content, "image: app:1.0.0\n");
    let pushed = commit_and_push(env.git_command_for(transport).unwrap(), &work, "pushed.txt")
        .unwrap_or_else(|e| panic!("{transport:?}: push failed: {e}"));
    assert_eq!(bare_head(env, &name), pushed, "{transport:?}");
}

#[test]
fn file_clone_and_push() {
    clone_and_push(GitTransport::File);
}

#[test]
fn daemon_clone_and_push() {
    clone_and_push(GitTransport::Daemon);
}

#[test]
fn http_basic_clone_and_push() {
    clone_and_push(GitTransport::HttpBasic);
}

#[test]
fn http_bearer_clone_and_push() {
    clone_and_push(GitTransport::HttpBearer);
}

#[test]
fn https_clone_and_push() {
    clone_and_push(GitTransport::Https);
}

#[test]
fn ssh_clone_and_push() {
    clone_and_push(GitTransport::Ssh);
}

#[test]
fn anonymous_http_clones_but_cannot_push() {
    let env = env();
    let name = unique_name("ro");
    env.seed_repo(&name, &[("a", "a")]).unwrap();
    let before = bare_head(env, &name);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    let t = GitTransport::Http;
    clone(
        env.git_command_for(t).unwrap(),
        &env.git_url(t, &name).unwrap(),
        &work,
    )
    .unwrap();
    let err = commit_and_push(env.git_command_for(t).unwrap(), &work, "b").unwrap_err();
    assert!(
        err.to_string().contains("403") || err.to_string().contains("401"),
        "{err}"
    );
    assert_eq!(bare_head(env, &name), before);
}

#[test]
fn ssh_accepts_every_key_type() {
    let env = env();
    let name = unique_name("keys");
    env.seed_repo(&name, &[("a", "a")]).unwrap();
    let url = env.git_url(GitTransport::Ssh, &name).unwrap();
    for kind in [SshKeyType::Ed25519, SshKeyType::Rsa, SshKeyType::Ecdsa] {
        let mut cmd = testenv::git::git_command();
        cmd.env("GIT_SSH_COMMAND", env.ssh_command(kind).unwrap());
        cmd.args(["ls-remote", &url, "main"]);
        let out = run(cmd).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(out.contains("refs/heads/main"), "{kind:?}: {out}");
    }
}

#[test]
fn ssh_rejects_a_wrong_host_key() {
    let env = env();
    let name = unique_name("hostkey");
    env.seed_repo(&name, &[("a", "a")]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // A known_hosts naming the server's address with a different key.
    let other = tmp.path().join("other");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let url = env.git_url(GitTransport::Ssh, &name).unwrap();
    let hostport = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let (host, port) = hostport.split_once(':').unwrap();
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let known = tmp.path().join("known_hosts");
    std::fs::write(&known, format!("[{host}]:{port} {} {}\n", key[0], key[1])).unwrap();
    let ssh = env
        .ssh_command(SshKeyType::Ed25519)
        .unwrap()
        .replace(&env.ssh_known_hosts().unwrap().display().to_string(), &known.display().to_string())
        // Force the host key type that the wrong entry names.
        + " -o HostKeyAlgorithms=ssh-ed25519";
    let mut cmd = testenv::git::git_command();
    cmd.env("GIT_SSH_COMMAND", ssh).args(["ls-remote", &url]);
    let err = run(cmd).unwrap_err().to_string();
    assert!(
        err.contains("HOST IDENTIFICATION HAS CHANGED")
            || err.contains("Host key verification failed"),
        "{err}"
    );
}

#[test]
fn authenticated_transports_reject_bad_credentials() {
    let env = env();
    let name = unique_name("denied");
    env.seed_repo(&name, &[("a", "a")]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let try_clone =
        |cmd: Command, url: &str, dir: &str| clone(cmd, url, &tmp.path().join(dir)).unwrap_err();

    let basic = env
        .git_url(GitTransport::HttpBasic, &name)
        .unwrap()
        .replace("://", "://testenv:wrong@");
    let err = try_clone(
        env.git_command_for(GitTransport::HttpBasic).unwrap(),
        &basic,
        "basic",
    );
    assert!(err.to_string().contains("Authentication failed"), "{err}");

    let mut bearer = testenv::git::git_command();
    bearer.args(["-c", "http.extraHeader=Authorization: Bearer wrong"]);
    let err = try_clone(
        bearer,
        &env.git_url(GitTransport::HttpBearer, &name).unwrap(),
        "bearer",
    );
    // git answers a 401 by asking for credentials, which the isolated command forbids.
    assert!(err.to_string().contains("could not read Username"), "{err}");

    // HTTPS without the test CA: the certificate is not trusted.
    let https = env.git_clone_url(GitTransport::Https, &name).unwrap();
    let err = try_clone(testenv::git::git_command(), &https, "https");
    assert!(err.to_string().contains("certificate"), "{err}");
}
