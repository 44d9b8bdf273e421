//! The variables published by `hack/testenv.sh up`, read from the process environment or `$TESTENV_DIR/env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Error, Result};

/// The test environment's published variables, with typed accessors.
#[derive(Debug, Clone)]
pub struct TestEnv {
    vars: BTreeMap<String, String>,
    source: String,
}

/// The shared environment of this test process; panics with a clear message when the environment is not up.
pub fn env() -> &'static TestEnv {
    static ENV: OnceLock<std::result::Result<TestEnv, String>> = OnceLock::new();
    match ENV.get_or_init(|| TestEnv::load().map_err(|e| e.to_string())) {
        Ok(env) => env,
        Err(e) => panic!("{e}"),
    }
}

/// The default state directory of `hack/testenv.sh` (`<repo>/target/testenv`).
fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testenv")
}

impl TestEnv {
    /// Load `$TESTENV_DIR/env` (default `<repo>/target/testenv/env`) if it exists, overridden by `TESTENV_*`
    /// variables of the process environment.
    pub fn load() -> Result<Self> {
        let dir = std::env::var_os("TESTENV_DIR").map_or_else(default_dir, PathBuf::from);
        let file = dir.join("env");
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::Io {
                    context: format!("reading {}", file.display()),
                    source: e,
                });
            }
        };
        let process = std::env::vars().filter(|(k, _)| k.starts_with("TESTENV_"));
        Self::from_sources(text.as_deref(), process, &file)
    }

    /// Build from the env file's text (if any) and process variables (which win). Fails when nothing names a
    /// service, i.e. the environment was never started.
    pub fn from_sources(
        file_text: Option<&str>,
        process: impl IntoIterator<Item = (String, String)>,
        file: &Path,
    ) -> Result<Self> {
        let mut vars = BTreeMap::new();
        if let Some(text) = file_text {
            for line in text.lines() {
                let line = line.trim();
                let line = line.strip_prefix("export ").unwrap_or(line);
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    vars.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        vars.extend(process);
        let env = Self {
            vars,
            source: format!("process environment and {}", file.display()),
        };
        // The registry is the first service started; without it nothing is up.
        env.var("TESTENV_REGISTRY_ANON")?;
        Ok(env)
    }

    /// A variable's value, or a "not up" error naming it.
    pub fn var(&self, name: &str) -> Result<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::NotUp(format!("{name} is not set in the {}", self.source)))
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        self.var(name).map(PathBuf::from)
    }

    /// The CA certificate (PEM) that signed every TLS server and the client certificate.
    pub fn ca_cert(&self) -> Result<PathBuf> {
        self.path("TESTENV_CA_CERT")
    }

    /// The client certificate and key (PEM) for mutual TLS.
    pub fn client_identity(&self) -> Result<(PathBuf, PathBuf)> {
        Ok((
            self.path("TESTENV_CLIENT_CERT")?,
            self.path("TESTENV_CLIENT_KEY")?,
        ))
    }

    /// The user name and password every authenticating service accepts.
    pub fn credentials(&self) -> Result<(String, String)> {
        Ok((
            self.var("TESTENV_USERNAME")?.to_owned(),
            self.var("TESTENV_PASSWORD")?.to_owned(),
        ))
    }

    /// How to reach one registry variant.
    pub fn registry(&self, variant: RegistryVariant) -> Result<RegistryEndpoint> {
        let (user, password) = self.credentials()?;
        let host = self.var(variant.var())?.to_owned();
        let mut ep = RegistryEndpoint {
            variant,
            host,
            tls: false,
            ca_cert: None,
            client_identity: None,
            auth: RegistryAuth::Anonymous,
        };
        match variant {
            RegistryVariant::Anonymous | RegistryVariant::Paged => {}
            RegistryVariant::Basic => ep.auth = RegistryAuth::Basic { user, password },
            RegistryVariant::Token => ep.auth = RegistryAuth::Token { user, password },
            RegistryVariant::Tls => {
                ep.tls = true;
                ep.ca_cert = Some(self.ca_cert()?);
            }
            RegistryVariant::MutualTls => {
                ep.tls = true;
                ep.ca_cert = Some(self.ca_cert()?);
                ep.client_identity = Some(self.client_identity()?);
            }
        }
        Ok(ep)
    }

    /// The page size of [`RegistryVariant::Paged`] when the client gives no `n`.
    pub fn paged_default_n(&self) -> Result<usize> {
        let v = self.var("TESTENV_REGISTRY_PAGED_DEFAULT_N")?;
        v.parse().map_err(|_| {
            Error::NotUp(format!(
                "TESTENV_REGISTRY_PAGED_DEFAULT_N is not a number: {v}"
            ))
        })
    }

    /// The token server's URL and the service name of the bearer-token registry.
    pub fn token_realm(&self) -> Result<(String, String)> {
        Ok((
            self.var("TESTENV_REGISTRY_TOKEN_REALM")?.to_owned(),
            self.var("TESTENV_REGISTRY_TOKEN_SERVICE")?.to_owned(),
        ))
    }

    /// The directory holding the bare repositories every Git transport serves.
    pub fn git_root(&self) -> Result<PathBuf> {
        self.path("TESTENV_GIT_ROOT")
    }

    /// The base URL of a Git transport (without credentials); a repository `NAME` is at `<base>/NAME.git`.
    pub fn git_base_url(&self, transport: GitTransport) -> Result<&str> {
        self.var(transport.var())
    }

    /// The URL of repository `name` over `transport`, without credentials.
    pub fn git_url(&self, transport: GitTransport, name: &str) -> Result<String> {
        Ok(format!("{}/{name}.git", self.git_base_url(transport)?))
    }

    /// The bearer token of [`GitTransport::HttpBearer`].
    pub fn git_bearer_token(&self) -> Result<&str> {
        self.var("TESTENV_GIT_BEARER_TOKEN")
    }

    /// A private key (OpenSSH format) in sshd's `authorized_keys`; the public key is next to it (`.pub`).
    pub fn ssh_key(&self, kind: SshKeyType) -> Result<PathBuf> {
        self.path(match kind {
            SshKeyType::Ed25519 => "TESTENV_GIT_SSH_KEY",
            SshKeyType::Rsa => "TESTENV_GIT_SSH_KEY_RSA",
            SshKeyType::Ecdsa => "TESTENV_GIT_SSH_KEY_ECDSA",
        })
    }

    /// A `known_hosts` file naming the sshd's host keys.
    pub fn ssh_known_hosts(&self) -> Result<PathBuf> {
        self.path("TESTENV_GIT_SSH_KNOWN_HOSTS")
    }

    /// The URL (without credentials) of a proxy.
    pub fn proxy_url(&self, variant: ProxyVariant) -> Result<&str> {
        self.var(match variant {
            ProxyVariant::Open => "TESTENV_PROXY_URL",
            ProxyVariant::BasicAuth => "TESTENV_PROXY_AUTH_URL",
        })
    }
}

/// The registry variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryVariant {
    /// Plain HTTP, no auth.
    Anonymous,
    /// Plain HTTP, htpasswd basic auth.
    Basic,
    /// Plain HTTP, bearer tokens from the token server.
    Token,
    /// Plain HTTP, no auth: the anonymous registry behind a proxy that pages tag lists like Docker Hub and GHCR.
    Paged,
    /// HTTPS with a certificate from the test CA.
    Tls,
    /// HTTPS requiring a client certificate.
    MutualTls,
}

impl RegistryVariant {
    /// Every variant.
    pub const ALL: [Self; 6] = [
        Self::Anonymous,
        Self::Basic,
        Self::Token,
        Self::Paged,
        Self::Tls,
        Self::MutualTls,
    ];

    fn var(self) -> &'static str {
        match self {
            Self::Anonymous => "TESTENV_REGISTRY_ANON",
            Self::Basic => "TESTENV_REGISTRY_BASIC",
            Self::Token => "TESTENV_REGISTRY_TOKEN",
            Self::Paged => "TESTENV_REGISTRY_PAGED",
            Self::Tls => "TESTENV_REGISTRY_TLS",
            Self::MutualTls => "TESTENV_REGISTRY_MTLS",
        }
    }
}

/// How a client authenticates to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No credentials.
    Anonymous,
    /// Basic credentials on every request.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens obtained from the challenge's realm without credentials (anonymous pulls).
    AnonymousToken,
    /// Bearer tokens obtained from the challenge's realm with these basic credentials.
    Token {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct RegistryEndpoint {
    /// Which variant this is.
    pub variant: RegistryVariant,
    /// `host:port`.
    pub host: String,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    /// The CA certificate to trust (TLS variants).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate and key (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Credentials.
    pub auth: RegistryAuth,
}

impl RegistryEndpoint {
    /// `http://host:port` or `https://host:port`.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host
        )
    }
}

/// The Git transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitTransport {
    /// `file://` on the bare repositories.
    File,
    /// `git://` (git daemon, push enabled).
    Daemon,
    /// `http://`, anonymous and read-only.
    Http,
    /// `http://` with basic auth.
    HttpBasic,
    /// `http://` with a bearer token.
    HttpBearer,
    /// `https://` (test CA) with basic auth.
    Https,
    /// `ssh://` to sshd with public-key auth.
    Ssh,
}

impl GitTransport {
    /// Every transport.
    pub const ALL: [Self; 7] = [
        Self::File,
        Self::Daemon,
        Self::Http,
        Self::HttpBasic,
        Self::HttpBearer,
        Self::Https,
        Self::Ssh,
    ];

    fn var(self) -> &'static str {
        match self {
            Self::File => "TESTENV_GIT_FILE_URL",
            Self::Daemon => "TESTENV_GIT_DAEMON_URL",
            Self::Http => "TESTENV_GIT_HTTP_URL",
            Self::HttpBasic => "TESTENV_GIT_HTTP_BASIC_URL",
            Self::HttpBearer => "TESTENV_GIT_HTTP_BEARER_URL",
            Self::Https => "TESTENV_GIT_HTTPS_URL",
            Self::Ssh => "TESTENV_GIT_SSH_URL",
        }
    }
}

/// The SSH client key types in `authorized_keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshKeyType {
    /// ed25519.
    Ed25519,
    /// RSA.
    Rsa,
    /// ECDSA P-256.
    Ecdsa,
}

/// The proxy variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVariant {
    /// No auth.
    Open,
    /// Basic auth with the shared credentials.
    BasicAuth,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_process_variables() {
        let text = "export TESTENV_REGISTRY_ANON=127.0.0.1:1\nexport TESTENV_USERNAME=a\n\n# c\n";
        let env = TestEnv::from_sources(
            Some(text),
            [("TESTENV_USERNAME".to_owned(), "b".to_owned())],
            Path::new("/x/env"),
        )
        .unwrap();
        assert_eq!(env.var("TESTENV_REGISTRY_ANON").unwrap(), "127.0.0.1:1");
        assert_eq!(env.var("TESTENV_USERNAME").unwrap(), "b");
    }

    #[test]
    fn not_up_names_the_variable_and_the_fix() {
        let err = TestEnv::from_sources(None, [], Path::new("/x/env"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TESTENV_REGISTRY_ANON"), "{err}");
        assert!(err.contains("/x/env"), "{err}");
        assert!(err.contains("hack/testenv.sh up"), "{err}");
    }
}
