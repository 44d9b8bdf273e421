//! End to end: the `update` subcommand of the built binary.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: failing loudly is the point

use std::process::Command;

#[test]
fn update_subcommand_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.yaml");
    let input = "spec:\n  image: app:1.0 # {\"$imagepolicy\": \"ns:app\"}\n";
    std::fs::write(&file, input).unwrap();
    let bin = env!("CARGO_BIN_EXE_image-automation-controller");
    let path = dir.path().to_str().unwrap();

    let dry = Command::new(bin)
        .args([
            "update",
            "--path",
            path,
            "--policy",
            "ns:app=app:2.0",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("+  image: app:2.0 #"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), input);

    let real = Command::new(bin)
        .args(["update", "--path", path, "--policy", "ns:app=app:2.0"])
        .output()
        .unwrap();
    assert!(real.status.success());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        input.replace("app:1.0", "app:2.0")
    );

    let bad = Command::new(bin)
        .args(["update", "--path", path, "--policy", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
