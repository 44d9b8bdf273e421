//! The binary as a process: help, flag errors, missing configuration, and a clean start and stop.

use runtime::features::REFLECTOR_GATES;
use runtime::flags::REFLECTOR_UPSTREAM_FLAGS;
use runtime::test_support::{Process, unreachable_kubeconfig};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_image-reflector-controller");

#[test]
fn help_lists_every_upstream_flag_and_gate() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for f in REFLECTOR_UPSTREAM_FLAGS {
        assert!(help.contains(&format!("--{f}")), "--{f} missing from help");
    }
    for g in REFLECTOR_GATES {
        assert!(help.contains(g.name), "gate {} missing from help", g.name);
    }
}

#[test]
fn unknown_gate_and_unknown_flag_fail_with_usage() {
    for (arg, want) in [
        (
            "--feature-gates=GitShallowClone=true",
            "feature-gate 'GitShallowClone' not supported",
        ),
        (
            "--aws-autologin-for-ecr",
            "unexpected argument '--aws-autologin-for-ecr'",
        ),
    ] {
        let out = Command::new(BIN).arg(arg).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(want), "{err}");
        assert!(err.contains("Usage: image-reflector-controller"), "{err}");
    }
}

#[test]
fn missing_kubeconfig_names_what_was_tried() {
    let out = Command::new(BIN)
        .args(["--metrics-addr=0", "--health-addr=0"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent-home")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    for tried in [
        "KUBECONFIG: not set",
        "in-cluster: KUBERNETES_SERVICE_HOST not set",
        "/nonexistent-home/.kube/config: not found",
    ] {
        assert!(err.contains(tried), "{tried} not in {err}");
    }
}

#[test]
fn unreachable_api_server_keeps_running_unready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(dir.path()).unwrap();
    let kc = format!("--kubeconfig={}", kc.display());
    for leader in ["--enable-leader-election=false", "--enable-leader-election"] {
        let p = Process::start(BIN, &[&kc, leader]).unwrap();
        p.wait_for(&p.health, "/healthz", 200).unwrap();
        let body = p.wait_for(&p.health, "/readyz", 503).unwrap();
        assert!(body.contains("apiserver: not reachable"), "{body}");
        let metrics = p.wait_for(&p.metrics, "/metrics", 200).unwrap();
        assert!(
            metrics.contains("process_resident_memory_bytes"),
            "{metrics}"
        );
        // Still alive and still unready after a few retries: no crash loop.
        std::thread::sleep(std::time::Duration::from_secs(2));
        assert_eq!(Process::get(&p.health, "/readyz").map(|r| r.0), Some(503));
        let (status, logs) = p.terminate().unwrap();
        assert_eq!(status.code(), Some(0), "{logs}");
        assert!(logs.contains("retrying with backoff"), "{logs}");
        assert!(logs.contains("\"msg\":\"stopped\""), "{logs}");
    }
}

/// Against a real API server: `hack/testenv/kube.sh up`, then
/// `TESTENV_KUBECONFIG=... cargo test -p image-reflector-controller -- --ignored`.
#[test]
#[ignore = "needs a Kubernetes API server with the CRDs applied (TESTENV_KUBECONFIG)"]
fn starts_ready_and_stops_cleanly_against_an_api_server() {
    let kc = std::env::var("TESTENV_KUBECONFIG").expect("TESTENV_KUBECONFIG");
    let p = Process::start(
        BIN,
        &[&format!("--kubeconfig={kc}"), "--enable-leader-election"],
    )
    .unwrap();
    p.wait_for(&p.health, "/readyz", 200).unwrap();
    let (status, logs) = p.terminate().unwrap();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("released leader lease"), "{logs}");
}
