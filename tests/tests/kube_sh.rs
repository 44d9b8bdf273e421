//! hack/testenv/kube.sh itself, run in a private state dir beside the shared test environment: a taken
//! port is replaced by a free one, processes left by a killed run are found and stopped, and `down`
//! leaves nothing running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use e2e::{kube_sh, private_state_dir, testenv_var};
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

fn tracked_pids(state: &Path) -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(state.join("pids")).context("reading pids dir")? {
        let text = std::fs::read_to_string(entry?.path())?;
        pids.push(text.trim().parse().context("pid file content")?);
    }
    Ok(pids)
}

fn running(pid: u32) -> bool {
    // A zombie still has a /proc entry; it no longer runs.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Processes whose command line mentions `state`: what kube.sh started there.
fn processes_using(state: &Path) -> Result<Vec<u32>> {
    let needle = state.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !running(pid) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(&needle)
        {
            found.push(pid);
        }
    }
    Ok(found)
}

fn server_of(state: &Path) -> Result<String> {
    let env = std::fs::read_to_string(state.join("kube.env")).context("reading kube.env")?;
    env.lines()
        .find_map(|l| l.strip_prefix("export TESTENV_KUBE_SERVER="))
        .map(str::to_owned)
        .context("kube.env has no TESTENV_KUBE_SERVER")
}

/// A second `build` reuses the cached binary: nothing is rebuilt or replaced.
#[test]
fn build_reuses_the_cached_apiserver() -> Result<()> {
    let bin = PathBuf::from(testenv_var("TESTENV_KUBE_APISERVER_BIN")?);
    let before = std::fs::metadata(&bin)
        .context("cached kube-apiserver")?
        .modified()?;
    let state = private_state_dir("kube-sh-test-")?;
    let out = kube_sh(state.path(), &["build"], &[])?;
    let log = String::from_utf8_lossy(&out.stderr);
    ensure!(!log.contains("building kube-apiserver"), "rebuilt: {log}");
    ensure!(
        std::fs::metadata(&bin)?.modified()? == before,
        "cached binary replaced"
    );
    Ok(())
}

#[tokio::test]
async fn taken_ports_are_replaced_and_stale_processes_cleaned() -> Result<()> {
    let state = private_state_dir("kube-sh-test-")?;
    let busy = TcpListener::bind("127.0.0.1:0")?;
    let busy_port = busy.local_addr()?.port();
    let ports = [
        ("TESTENV_KUBE_PORT", busy_port.to_string()),
        ("TESTENV_ETCD_PORT", busy_port.to_string()),
    ];

    let result = async {
        let up = kube_sh(state.path(), &["up"], &ports)?;
        let log = String::from_utf8_lossy(&up.stderr);
        ensure!(log.contains("etcd: port already in use"), "{log}");
        ensure!(log.contains("kube-apiserver: port already in use"), "{log}");
        let server = server_of(state.path())?;
        ensure!(
            !server.ends_with(&format!(":{busy_port}")),
            "{server} uses the taken port"
        );

        let kubeconfig = Kubeconfig::read_from(state.path().join("kube/admin.kubeconfig"))?;
        let client = Client::try_from(
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?,
        )?;
        Api::<Namespace>::all(client)
            .get("flux-system")
            .await
            .context("flux-system namespace from `up`")?;

        // A killed run that also lost its pid files: the next `up` still finds and stops its processes.
        let first = tracked_pids(state.path())?;
        ensure!(
            first.len() == 2,
            "expected etcd and kube-apiserver tracked, got {first:?}"
        );
        for entry in std::fs::read_dir(state.path().join("pids"))? {
            std::fs::remove_file(entry?.path())?;
        }
        let again = kube_sh(state.path(), &["up"], &[])?;
        let log = String::from_utf8_lossy(&again.stderr);
        ensure!(
            log.contains("killing orphaned etcd")
                && log.contains("killing orphaned kube-apiserver"),
            "{log}"
        );
        for pid in &first {
            ensure!(!running(*pid), "stale process {pid} still running");
        }
        let second = tracked_pids(state.path())?;
        ensure!(
            second.len() == 2 && second.iter().all(|p| running(*p)),
            "{second:?}"
        );

        kube_sh(state.path(), &["down"], &[])?;
        ensure!(
            tracked_pids(state.path())?.is_empty(),
            "pid files left after down"
        );
        let left = processes_using(state.path())?;
        ensure!(left.is_empty(), "processes left after down: {left:?}");
        Ok(())
    }
    .await;
    if result.is_err() {
        // Never leak a second apiserver, whatever failed.
        let _ = kube_sh(state.path(), &["down"], &[]);
    }
    drop(busy);
    result
}
