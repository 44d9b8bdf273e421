//! The binaries' process tests (feature `test-support`): start a controller on free ports, query
//! its endpoints with plain HTTP/1.0, stop it with SIGTERM, and the checks both binaries share.

// These are test assertions: failing loudly is their job.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::features::Gate;

/// A controller process under test.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// `127.0.0.1:port` of `/healthz` and `/readyz`.
    pub health: String,
    /// `127.0.0.1:port` of `/metrics`.
    pub metrics: String,
    log: tempfile::NamedTempFile,
}

/// A free local port (bound, then released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A kubeconfig pointing at a port where nothing listens.
pub fn unreachable_kubeconfig(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let port = free_port()?;
    let path = dir.join("unreachable.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: flux-system\ncurrent-context: x\n"
        ),
    )?;
    Ok(path)
}

impl Process {
    /// Starts `bin` with `args` plus `--metrics-addr`/`--health-addr` on free ports.
    pub fn start(bin: &str, args: &[&str]) -> std::io::Result<Self> {
        Self::start_with_env(bin, args, &[])
    }

    /// Same, with extra environment variables for the process.
    pub fn start_with_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Self> {
        let health = format!("127.0.0.1:{}", free_port()?);
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .arg(format!("--metrics-addr={metrics}"))
            .arg(format!("--health-addr={health}"))
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()?;
        Ok(Self {
            child,
            health,
            metrics,
            log,
        })
    }

    /// `GET path` on `addr`: status code and body; `None` while nothing answers.
    pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let status = resp.split_whitespace().nth(1)?.parse().ok()?;
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// Polls `path` on `addr` until it answers `status` (generous liveness bound: 30s).
    pub fn wait_for(&self, addr: &str, path: &str, status: u16) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some((code, body)) = Self::get(addr, path) {
                if code == status {
                    return Ok(body);
                }
                last = Some((code, body));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "{path} never answered {status} (last: {last:?}); log:\n{}",
            self.logs()
        ))
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most 30s) for the exit; returns the status and the logs.
    pub fn terminate(mut self) -> Result<(ExitStatus, String), String> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok((status, self.logs())),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return Err(format!("no exit 30s after SIGTERM; log:\n{}", self.logs()));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never leave a controller running after a failed test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `--help` exits 0 and names every upstream flag and every feature gate.
pub fn check_help(bin: &str, upstream_flags: &[&str], gates: &[Gate]) {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "--help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    for f in upstream_flags {
        assert!(help.contains(&format!("--{f}")), "--{f} missing from help");
    }
    for g in gates {
        assert!(help.contains(g.name), "gate {} missing from help", g.name);
    }
}

/// A gate of the other controller and a removed upstream flag both fail with the message and
/// the usage line, exit code 2.
pub fn check_flag_errors(bin: &str, name: &str, foreign_gate: &str) {
    for (arg, want) in [
        (
            format!("--feature-gates={foreign_gate}=true"),
            format!("feature-gate '{foreign_gate}' not supported"),
        ),
        (
            "--aws-autologin-for-ecr".to_string(),
            "unexpected argument '--aws-autologin-for-ecr'".to_string(),
        ),
    ] {
        let out = Command::new(bin).arg(&arg).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&want), "{err}");
        assert!(err.contains(&format!("Usage: {name}")), "{err}");
    }
}

/// Without any configuration the process exits 1 naming every source it tried.
pub fn check_missing_kubeconfig(bin: &str) {
    let out = Command::new(bin)
        .args(["--metrics-addr=0", "--health-addr=0"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent-home")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for tried in [
        "KUBECONFIG: not set",
        "in-cluster: KUBERNETES_SERVICE_HOST not set",
        "/nonexistent-home/.kube/config: not found",
    ] {
        assert!(err.contains(tried), "{tried} not in {err}");
    }
}

/// With an unreachable API server the process stays up, healthy but not ready, retries with
/// backoff, serves metrics, and exits 0 on SIGTERM; with and without leader election.
pub fn check_unreachable_api_server(bin: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = unreachable_kubeconfig(dir.path()).expect("kubeconfig");
    let kc = format!("--kubeconfig={}", kc.display());
    for leader in ["--enable-leader-election=false", "--enable-leader-election"] {
        let p = Process::start(bin, &[&kc, leader]).expect("start");
        p.wait_for(&p.health, "/healthz", 200)
            .unwrap_or_else(|e| panic!("{e}"));
        let body = p
            .wait_for(&p.health, "/readyz", 503)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(body.contains("apiserver: not reachable"), "{body}");
        let metrics = p
            .wait_for(&p.metrics, "/metrics", 200)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            metrics.contains("process_resident_memory_bytes"),
            "{metrics}"
        );
        // Still alive and still unready after a few retries: no crash loop.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(Process::get(&p.health, "/readyz").map(|r| r.0), Some(503));
        let (status, logs) = p.terminate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.code(), Some(0), "{logs}");
        assert!(logs.contains("retrying with backoff"), "{logs}");
        assert!(logs.contains("\"msg\":\"stopped\""), "{logs}");
    }
}
