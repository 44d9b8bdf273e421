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

#[test]
fn dry_run_prints_the_rendered_commit_message_after_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.yaml");
    let input = "kind: Deployment\nmetadata:\n  name: podinfo\nspec:\n  image: ghcr.io/stefanprodan/podinfo:5.0.0 # {\"$imagepolicy\": \"flux-system:podinfo\"}\n";
    std::fs::write(&file, input).unwrap();
    let template = dir.path().join("message.tpl");
    std::fs::write(
        &template,
        "Automated update by {{ .AutomationObject }} for {{ .Values.env }}\n{{ range .Updated.Images }}- {{ . }}\n{{ end }}",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-automation-controller"))
        .args(["update", "--path", dir.path().to_str().unwrap()])
        .args([
            "--policy",
            "flux-system:podinfo=ghcr.io/stefanprodan/podinfo:5.0.3",
        ])
        .args(["--message-template", template.to_str().unwrap()])
        .args([
            "--template-value",
            "env=prod",
            "--automation",
            "apps/podinfo",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let diff_at = stdout
        .find("+  image: ghcr.io/stefanprodan/podinfo:5.0.3")
        .unwrap();
    let message_at = stdout
        .find("Automated update by apps/podinfo for prod\n- ghcr.io/stefanprodan/podinfo:5.0.3\n")
        .unwrap();
    assert!(diff_at < message_at, "{stdout}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), input);
}

#[test]
fn a_failing_template_leaves_every_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.yaml");
    let input = "spec:\n  image: app:1.0 # {\"$imagepolicy\": \"ns:app\"}\n";
    std::fs::write(&file, input).unwrap();
    let template = dir.path().join("message.tpl");
    std::fs::write(&template, "{{ .Nope.Deeper }}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-automation-controller"))
        .args(["update", "--path", dir.path().to_str().unwrap()])
        .args(["--policy", "ns:app=app:2.0"])
        .args(["--message-template", template.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("commit message"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), input);
}
