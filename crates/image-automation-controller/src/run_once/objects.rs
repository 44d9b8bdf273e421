//! The objects `run-once` reads instead of the API server's: those of the loaded manifests, and
//! Secrets from `--secrets-dir` (`DIR/<name>/<key>`, one file per key, as Kubernetes mounts a
//! Secret). They serve the automation's source resolution ([`SourceObjects`]) and the registry
//! keychain ([`registry::SecretSource`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use api::GitRepository;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use registry::{SecretData, SecretSource, SourceError};

use super::manifests::{Loaded, Manifests};
use crate::source::SourceObjects;

/// The manifests and the secrets directory.
#[derive(Clone)]
pub struct LocalObjects {
    manifests: Arc<Manifests>,
    secrets_dir: Option<PathBuf>,
}

fn find<'a, T: kube::Resource>(list: &'a [Loaded<T>], ns: &str, name: &str) -> Option<&'a T> {
    list.iter().map(|l| &l.object).find(|o| {
        o.meta().namespace.as_deref() == Some(ns) && o.meta().name.as_deref() == Some(name)
    })
}

impl LocalObjects {
    /// Objects of `manifests`, Secrets also from `secrets_dir`.
    pub fn new(manifests: Arc<Manifests>, secrets_dir: Option<PathBuf>) -> Self {
        Self {
            manifests,
            secrets_dir,
        }
    }

    /// The manifests.
    pub fn manifests(&self) -> &Manifests {
        &self.manifests
    }

    /// The Secret `namespace/name`: a Secret manifest of the input, else the directory
    /// `--secrets-dir/<name>` (whatever the namespace: one directory per name), `stringData`
    /// folded into `data` as the API server does.
    pub fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        if let Some(s) = find(&self.manifests.secrets, namespace, name) {
            let mut s = s.clone();
            let mut data = s.data.take().unwrap_or_default();
            for (k, v) in s.string_data.take().unwrap_or_default() {
                data.insert(k, ByteString(v.into_bytes()));
            }
            s.data = Some(data);
            return Ok(Some(s));
        }
        match &self.secrets_dir {
            Some(dir) => read_secret_dir(dir, name),
            None => Ok(None),
        }
    }
}

/// The Secret `name` mounted under `dir`: each regular file of `dir/name` is a key (Kubernetes'
/// `..data` links and timestamped directories are skipped). The type follows the keys, as a
/// Secret of type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg` has them.
pub fn read_secret_dir(dir: &Path, name: &str) -> Result<Option<Secret>, String> {
    // A Kubernetes name never contains a path separator; refusing one keeps the read in `dir`.
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!("invalid secret name {name:?}"));
    }
    let path = dir.join(name);
    if !path.is_dir() {
        return Ok(None);
    }
    let read_err = |e: std::io::Error| format!("reading {}: {e}", path.display());
    let mut data = BTreeMap::new();
    for entry in std::fs::read_dir(&path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let key = entry.file_name().to_string_lossy().into_owned();
        if key.starts_with("..") {
            continue;
        }
        let file = entry.path();
        if !std::fs::metadata(&file).map_err(read_err)?.is_file() {
            continue;
        }
        let value = std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        data.insert(key, ByteString(value));
    }
    let type_ = if data.contains_key(registry::DOCKER_CONFIG_JSON_KEY) {
        registry::DOCKER_CONFIG_JSON_TYPE
    } else if data.contains_key(registry::DOCKER_CFG_KEY) {
        registry::DOCKER_CFG_TYPE
    } else {
        "Opaque"
    };
    Ok(Some(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some(data),
        type_: Some(type_.to_owned()),
        ..Default::default()
    }))
}

impl SourceObjects for LocalObjects {
    async fn git_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<GitRepository>, String> {
        Ok(find(&self.manifests.git_repositories, namespace, name).cloned())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        LocalObjects::secret(self, namespace, name)
    }
}

impl SecretSource for LocalObjects {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SourceError> {
        let secret = LocalObjects::secret(self, namespace, name).map_err(SourceError)?;
        Ok(secret.map(|s| image_reflector_controller::cluster::secret_data(namespace, name, s)))
    }

    async fn service_account_pull_secrets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        Ok(
            find(&self.manifests.service_accounts, namespace, name).map(|sa| {
                sa.image_pull_secrets
                    .iter()
                    .flatten()
                    .map(|r| r.name.clone())
                    .filter(|n| !n.is_empty())
                    .collect()
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (p, t) in files {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        }
    }

    #[tokio::test]
    async fn secrets_come_from_the_directory_one_file_per_key() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            &[
                ("git/username", "u"),
                ("git/password", "p"),
                ("git/..2026_01_01/password", "old"),
                ("regcred/.dockerconfigjson", "{\"auths\":{}}"),
            ],
        );
        let objects = LocalObjects::new(Arc::default(), Some(d.path().to_owned()));
        let git = LocalObjects::secret(&objects, "any", "git")
            .unwrap()
            .unwrap();
        let data = git.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["password", "username"]);
        assert_eq!(data["password"].0, b"p");
        assert_eq!(git.type_.as_deref(), Some("Opaque"));
        let reg = SecretSource::secret(&objects, "ns", "regcred")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reg.secret_type, registry::DOCKER_CONFIG_JSON_TYPE);
        assert_eq!(reg.name, "ns/regcred");
        assert!(
            LocalObjects::secret(&objects, "ns", "missing")
                .unwrap()
                .is_none()
        );
        assert!(LocalObjects::secret(&objects, "ns", "../etc").is_err());
    }

    #[tokio::test]
    async fn secret_manifests_win_and_fold_string_data() {
        let mut m = Manifests::default();
        m.load_text(
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git\n  namespace: ns\nstringData:\n  username: from-manifest\n",
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &[("git/username", "from-dir")]);
        let objects = LocalObjects::new(Arc::new(m), Some(d.path().to_owned()));
        let s = SourceObjects::secret(&objects, "ns", "git")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.data.unwrap()["username"].0, b"from-manifest");
        // Another namespace: the manifest does not apply, the directory does.
        let s = SourceObjects::secret(&objects, "other", "git")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.data.unwrap()["username"].0, b"from-dir");
    }
}
