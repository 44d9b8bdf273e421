//! Kubernetes client configuration: `--kubeconfig`, `$KUBECONFIG`, in-cluster, `~/.kube/config`,
//! in that order (controller-runtime's order), with an error naming everything that was tried.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// No usable configuration was found; the message lists each source tried and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("no usable Kubernetes client configuration; tried: {}", tried.join("; "))]
pub struct ConfigError {
    /// One entry per source: what it was and why it did not work.
    pub tried: Vec<String>,
}

/// Installs aws-lc-rs as the process-wide rustls provider (the one kube and reqwest are built
/// with), so no TLS handshake depends on which crates happen to enable which provider.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn from_file(path: &Path) -> Result<kube::Config, String> {
    let kc = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())
}

fn home_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"))
}

/// Loads the client configuration.
pub async fn load_config(flag: Option<&Path>) -> Result<kube::Config, ConfigError> {
    let mut tried = Vec::new();
    if let Some(path) = flag {
        // An explicit flag is authoritative: do not silently fall back.
        return from_file(path).await.map_err(|e| ConfigError {
            tried: vec![format!("--kubeconfig={}: {e}", path.display())],
        });
    }
    match std::env::var_os("KUBECONFIG") {
        Some(v) if !v.is_empty() => {
            let shown = v.to_string_lossy().into_owned();
            let res = async {
                let kc = Kubeconfig::from_env()
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "empty".to_string())?;
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match res {
                Ok(c) => return Ok(c),
                Err(e) => {
                    return Err(ConfigError {
                        tried: vec![format!("KUBECONFIG={shown}: {e}")],
                    });
                }
            }
        }
        _ => tried.push("KUBECONFIG: not set".to_string()),
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        match kube::Config::incluster() {
            Ok(c) => return Ok(c),
            Err(e) => tried.push(format!("in-cluster service account: {e}")),
        }
    } else {
        tried.push("in-cluster: KUBERNETES_SERVICE_HOST not set".to_string());
    }
    match home_kubeconfig() {
        Some(p) if p.exists() => match from_file(&p).await {
            Ok(c) => return Ok(c),
            Err(e) => tried.push(format!("{}: {e}", p.display())),
        },
        Some(p) => tried.push(format!("{}: not found", p.display())),
        None => tried.push("~/.kube/config: HOME not set".to_string()),
    }
    Err(ConfigError { tried })
}

/// The default namespace of a configuration (`--watch-all-namespaces=false` and the lease fall
/// back to it outside a cluster).
pub fn default_namespace(config: &kube::Config) -> String {
    config.default_namespace.clone()
}

/// The namespace holding the lease: `$RUNTIME_NAMESPACE`, else the pod's service-account
/// namespace, else the kubeconfig context's namespace.
pub fn lease_namespace(config: &kube::Config) -> String {
    if let Ok(ns) = std::env::var("RUNTIME_NAMESPACE")
        && !ns.is_empty()
    {
        return ns;
    }
    if let Ok(ns) =
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    {
        let ns = ns.trim();
        if !ns.is_empty() {
            return ns.to_string();
        }
    }
    default_namespace(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: abc
contexts:
- name: ctx
  context:
    cluster: c
    user: u
    namespace: flux-system
current-context: ctx
"#;

    #[tokio::test]
    async fn explicit_kubeconfig_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kc");
        std::fs::write(&p, KUBECONFIG).unwrap();
        let c = load_config(Some(&p)).await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(default_namespace(&c), "flux-system");
    }

    #[tokio::test]
    async fn missing_kubeconfig_names_the_path() {
        let err = load_config(Some(Path::new("/nonexistent/kubeconfig")))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("no usable Kubernetes client configuration; tried: --kubeconfig=/nonexistent/kubeconfig:"),
            "{msg}"
        );
    }
}
