//! The Docker credential-helper protocol: `docker-credential-<name> get` reads the server URL on stdin
//! and prints `{"ServerURL": ..., "Username": ..., "Secret": ...}`. Only helpers the operator allowed
//! with `--allowed-credential-helpers` are run, each bounded in time and output.

use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::CloudError;
use crate::keychain::Credential;

/// Time one helper run may take when the operation's deadline is further away.
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest helper output read.
const MAX_OUTPUT: usize = 64 << 10;
/// The user name by which a helper says the secret is an identity (refresh) token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// Which credential helpers may run, and for how long.
#[derive(Clone)]
pub struct CredentialHelpers {
    allowed: Arc<[String]>,
    timeout: Duration,
    /// `PATH` for finding and running helpers; the controller's own `PATH` when unset.
    search_path: Option<std::ffi::OsString>,
}

impl Default for CredentialHelpers {
    /// None allowed: a tenant's pull secret cannot make the controller run a binary.
    fn default() -> Self {
        CredentialHelpers {
            allowed: Arc::from(Vec::new()),
            timeout: DEFAULT_HELPER_TIMEOUT,
            search_path: None,
        }
    }
}

impl fmt::Debug for CredentialHelpers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialHelpers")
            .field("allowed", &self.allowed)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Whether `name` can be the suffix of a `docker-credential-` program (no paths, no shell syntax).
pub fn valid_helper_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl CredentialHelpers {
    /// Allows the helpers named (suffixes of `docker-credential-`), each run bounded by `timeout`.
    /// Invalid names are rejected with a message naming them.
    pub fn new(allowed: Vec<String>, timeout: Duration) -> Result<CredentialHelpers, String> {
        if let Some(bad) = allowed.iter().find(|n| !valid_helper_name(n)) {
            return Err(format!(
                "invalid credential helper name '{bad}': expected letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(CredentialHelpers {
            allowed: Arc::from(allowed),
            timeout,
            search_path: None,
        })
    }

    /// Looks helpers up in `path` (a `PATH`-style list) instead of the controller's `PATH`.
    pub fn with_search_path(mut self, path: impl Into<std::ffi::OsString>) -> CredentialHelpers {
        self.search_path = Some(path.into());
        self
    }

    /// Whether `name` may run.
    pub fn is_allowed(&self, name: &str) -> bool {
        self.allowed.iter().any(|a| a == name)
    }

    /// Runs `docker-credential-<helper> get` for `registry`. `Ok(None)` when the helper has no
    /// credentials for it.
    pub async fn get(
        &self,
        helper: &str,
        registry: &str,
        deadline: Instant,
    ) -> Result<Option<Credential>, CloudError> {
        let err = |reason: String| CloudError::Helper {
            helper: helper.to_string(),
            registry: registry.to_string(),
            reason,
        };
        if !valid_helper_name(helper) || !self.is_allowed(helper) {
            return Err(CloudError::HelperNotAllowed {
                helper: helper.to_string(),
                registry: registry.to_string(),
            });
        }
        let program = format!("docker-credential-{helper}");
        // Docker Hub's server URL is the v1 index address, as the Docker CLI sends it.
        let server = if registry == crate::reference::DEFAULT_REGISTRY {
            "https://index.docker.io/v1/".to_string()
        } else {
            registry.to_string()
        };
        let limit = self
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut cmd = tokio::process::Command::new(&program);
        // With PATH set for the child, the program is also looked up there (Unix).
        if let Some(p) = &self.search_path {
            cmd.env("PATH", p);
        }
        let mut child = cmd
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("cannot run {program}: {e}")))?;
        let run = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A helper may exit without reading its input; its output decides.
                match stdin.write_all(server.as_bytes()).await {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        return Err(err(format!("cannot write to {program}: {e}")));
                    }
                    _ => {}
                }
            }
            let mut out = Vec::new();
            if let Some(stdout) = child.stdout.take() {
                stdout
                    .take(MAX_OUTPUT as u64 + 1)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| err(format!("cannot read from {program}: {e}")))?;
            }
            let status = child
                .wait()
                .await
                .map_err(|e| err(format!("cannot wait for {program}: {e}")))?;
            Ok::<_, CloudError>((status, out))
        };
        let (status, out) = match tokio::time::timeout(limit, run).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(err(format!(
                    "{program} did not answer within {}s",
                    limit.as_secs_f32()
                )));
            }
        };
        if out.len() > MAX_OUTPUT {
            return Err(err(format!("output larger than {MAX_OUTPUT} bytes")));
        }
        if !status.success() {
            // The protocol's not-found answer; any other output is not quoted, it may hold secrets.
            if String::from_utf8_lossy(&out).contains("credentials not found") {
                return Ok(None);
            }
            return Err(err(format!("{program} get failed ({status})")));
        }
        let parsed: HelperOutput = serde_json::from_slice(&out).map_err(|_| {
            err("output is not the protocol's JSON {\"Username\", \"Secret\"}".to_string())
        })?;
        if parsed.secret.is_empty() {
            return Err(err("output has an empty Secret".to_string()));
        }
        if parsed.username == IDENTITY_TOKEN_USER {
            return Ok(Some(Credential::IdentityToken {
                username: String::new(),
                token: parsed.secret,
            }));
        }
        Ok(Some(Credential::Basic {
            username: parsed.username,
            password: parsed.secret,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_helper_name("ecr-login"));
        assert!(valid_helper_name("gcloud"));
        assert!(!valid_helper_name("../bin/sh"));
        assert!(!valid_helper_name("a b"));
        assert!(!valid_helper_name(""));
        assert!(CredentialHelpers::new(vec!["x;y".into()], DEFAULT_HELPER_TIMEOUT).is_err());
    }
}
