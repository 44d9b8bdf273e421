//! `hack/testenv.sh` itself: a run whose state was lost leaves processes that `check` reports and the next `up`
//! stops; after `down`, `check` passes. Runs a second, private environment (services only) in a temporary
//! directory, so it needs root and the Debian packages, like the environment itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions panic on failure by design.

use std::path::Path;
use std::process::{Command, Output};

fn dispatcher(dir: &Path, arg: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/testenv.sh");
    Command::new("bash")
        .arg(script)
        .arg(arg)
        .env("TESTENV_DIR", dir)
        .env("TESTENV_NO_KUBE", "1")
        .env("TESTENV_SERVER", env!("CARGO_BIN_EXE_testenv-server"))
        .env_remove("TESTENV_OWNER")
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stderr}");
    stderr
}

fn pids(dir: &Path) -> Vec<i32> {
    std::fs::read_dir(dir.join("pids"))
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; it no longer runs.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn lost_state_is_detected_and_cleaned_then_down_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(&dispatcher(dir, "up"), "up");
    let first = pids(dir);
    assert!(first.len() >= 10, "{first:?}");
    assert!(first.iter().all(|p| alive(*p)));

    // A killed run that also lost its pid files: its processes are still found.
    std::fs::remove_dir_all(dir.join("pids")).unwrap();
    let out = dispatcher(dir, "check");
    assert!(!out.status.success(), "check passed with processes alive");
    let listed = String::from_utf8_lossy(&out.stderr);
    assert!(
        listed.contains("docker-registry") && listed.contains("sshd") && listed.contains("nginx"),
        "{listed}"
    );

    let log = ok(&dispatcher(dir, "up"), "second up");
    assert!(
        log.contains("stopping processes left by an earlier run"),
        "{log}"
    );
    assert!(
        first.iter().all(|p| !alive(*p)),
        "leftovers survived the second up"
    );
    let second = pids(dir);

    ok(&dispatcher(dir, "down"), "down");
    ok(&dispatcher(dir, "check"), "check after down");
    assert!(second.iter().all(|p| !alive(*p)));
}
