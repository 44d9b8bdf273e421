//! Support for the end-to-end tests: where the test environment's services are, and clients for them.
//!
//! The services are started by `hack/testenv.sh up`, which publishes their addresses as `TESTENV_*`
//! variables in `$TESTENV_DIR/env`; `make test` does both. Nothing here starts or fakes a service.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Variable naming the admin kubeconfig (token in `system:masters`).
pub const KUBECONFIG_ADMIN: &str = "TESTENV_KUBECONFIG";
/// Variable naming the kubeconfig of image-reflector-controller's ServiceAccount identity.
pub const KUBECONFIG_REFLECTOR: &str = "TESTENV_KUBECONFIG_REFLECTOR";
/// Variable naming the kubeconfig of image-automation-controller's ServiceAccount identity.
pub const KUBECONFIG_AUTOMATION: &str = "TESTENV_KUBECONFIG_AUTOMATION";
/// Variable naming the namespace the controllers' identities belong to (`flux-system`).
pub const KUBE_NAMESPACE: &str = "TESTENV_KUBE_NAMESPACE";

/// Generous liveness bound for what the API server does asynchronously (CRD establishment, RBAC caches).
/// It fails a test only when the thing never happens.
pub const LIVENESS: Duration = Duration::from_secs(90);

/// Value of a `TESTENV_*` variable, from the process environment or `$TESTENV_DIR/env` (the `testenv`
/// crate's loader, which fails with "start it with `hack/testenv.sh up`" when the environment is not up).
pub fn testenv_var(name: &str) -> Result<String> {
    Ok(testenv::env().var(name)?.to_owned())
}

/// A client authenticated by the kubeconfig that the variable `var` names.
pub async fn client_from(var: &str) -> Result<Client> {
    let path = testenv_var(var)?;
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {path} (named by {var})"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {path} (named by {var})"))?;
    Client::try_from(config).with_context(|| format!("building a client from kubeconfig {path}"))
}

/// A client with the admin identity.
pub async fn admin_client() -> Result<Client> {
    client_from(KUBECONFIG_ADMIN).await
}

/// A name no other test or earlier run uses (namespaces never finish deleting without a controller-manager).
pub fn unique_name(prefix: &str) -> Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_nanos();
    // The low 40 bits of the clock change between runs; pid and counter separate concurrent tests.
    Ok(format!(
        "e2e-{prefix}-{:x}-{}-{n}",
        nanos & 0xff_ffff_ffff,
        std::process::id()
    ))
}

/// Create a fresh namespace and return its name.
pub async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = unique_name(prefix)?;
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}

/// Retry `attempt` until it succeeds or [`LIVENESS`] passes; then return its last error, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + LIVENESS;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => {
                return Err(err.context(format!(
                    "{what}: still failing after {}s",
                    LIVENESS.as_secs()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Run `kubectl` with the kubeconfig that the variable `kubeconfig_var` names; return its stdout, or an error
/// carrying its stderr.
pub fn kubectl(kubeconfig_var: &str, args: &[&str]) -> Result<String> {
    Ok(kubectl_with_input(kubeconfig_var, args, None)?.stdout)
}

/// What a successful `kubectl` run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error (warnings, e.g. the API server's deprecation warnings).
    pub stderr: String,
}

/// [`kubectl`] with `input` on its standard input (for `-f -`), returning both output streams.
pub fn kubectl_with_input(
    kubeconfig_var: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<KubectlOutput> {
    kubectl_at(&PathBuf::from(testenv_var(kubeconfig_var)?), args, input)
}

/// Runs `kubectl` with the kubeconfig at `kubeconfig` (e.g. a second API server's), `input` on its standard
/// input; returns both output streams, or an error carrying them.
pub fn kubectl_at(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Result<KubectlOutput> {
    // Discovery is cached per server address; keep it with this environment, not in $HOME.
    let cache_dir = kubeconfig
        .parent()
        .unwrap_or(Path::new("."))
        .join("kubectl-cache");
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(&cache_dir)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (is it installed? hack/testenv.sh up installs it)")?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .context("writing kubectl's stdin")?;
    }
    let output = child.wait_with_output().context("waiting for kubectl")?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!(
            "kubectl {} failed ({}):\n{stdout}{stderr}",
            args.join(" "),
            output.status
        );
    }
    Ok(KubectlOutput { stdout, stderr })
}

/// The path of controller binary `name`, built next to the running test (target/<profile>/) by
/// `cargo build --workspace --bins` (as `make test` does).
pub fn controller_binary(name: &str) -> Result<String> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test executable has no target dir")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` (make test does)",
            path.display()
        );
    }
    Ok(path.to_string_lossy().into_owned())
}

/// `(status, reason, message)` of condition `type_` in an object's `status` JSON (empty strings when absent).
pub fn condition(status: &serde_json::Value, type_: &str) -> (String, String, String) {
    let c = status
        .get("conditions")
        .and_then(serde_json::Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let s = |k: &str| c.and_then(|c| c[k].as_str()).unwrap_or_default().to_owned();
    (s("status"), s("reason"), s("message"))
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The non-empty documents of a multi-document YAML text, as JSON values.
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).context("parsing YAML")?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The objects `kubectl kustomize config/default` renders (kubectl must be installed; `make test` installs it).
pub fn kustomize_default() -> Result<Vec<serde_json::Value>> {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo_root().join("config/default"))
        .output()
        .context("running kubectl kustomize (kubectl must be installed; make test installs it)")?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize config/default failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    yaml_documents(&String::from_utf8(out.stdout).context("kubectl kustomize output")?)
}

/// Runs `hack/testenv/kube.sh ARGS` with its state in `state` (and `extra_env`); fails with its stderr.
pub fn kube_sh(
    state: &Path,
    args: &[&str],
    extra_env: &[(&str, String)],
) -> Result<std::process::Output> {
    let script = repo_root().join("hack/testenv/kube.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).args(args).env("TESTENV_DIR", state);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "kube.sh {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A private state dir for a second API server, inside the shared environment's dir so that
/// `hack/testenv.sh down`/`check` also find what is started there should the test be killed halfway.
pub fn private_state_dir(prefix: &str) -> Result<tempfile::TempDir> {
    let admin = PathBuf::from(testenv_var(KUBECONFIG_ADMIN)?);
    // $TESTENV_DIR/kube/admin.kubeconfig
    let testenv_dir = admin
        .parent()
        .and_then(Path::parent)
        .context("TESTENV_KUBECONFIG is not inside $TESTENV_DIR/kube")?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(testenv_dir)
        .context("creating a private state dir")
}

/// The payload of a JWT, not verified (the API server signed it; a test reads what it says), or
/// `null` when it is not one.
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = unique_name("ns").unwrap();
        let b = unique_name("ns").unwrap();
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.len() <= 63, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
    }
}
