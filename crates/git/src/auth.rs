//! Transport credentials and options from Kubernetes Secrets: the GitRepository `secretRef` (HTTP basic,
//! bearer token, SSH key and known_hosts, CA and client certificates) and `proxySecretRef`.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::GitError;
use crate::known_hosts::KnownHosts;
use crate::url::{RemoteUrl, redact_url};

/// Default per-operation timeout when the GitRepository sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Credentials and TLS material for one remote. `Debug` never prints secrets.
#[derive(Clone, Default)]
pub struct GitAuth {
    pub(crate) credential: Credential,
    /// PEM CA bundle trusted for HTTPS instead of the system roots.
    pub(crate) ca: Option<Vec<u8>>,
    /// PEM client certificate and key for HTTPS (mutual TLS).
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// The stable identity behind a provider-issued credential (e.g. a GitHub App installation): the
    /// token rotates, the identity does not, so the cache keeps one mirror across token refreshes.
    pub(crate) issued_for: Option<String>,
}

/// The credential presented to the server.
#[derive(Clone, Default)]
pub(crate) enum Credential {
    /// Nothing (anonymous).
    #[default]
    None,
    /// HTTP basic auth.
    Basic { username: String, password: String },
    /// HTTP `Authorization: Bearer`.
    Bearer(String),
    /// SSH public-key auth with strict host-key checking.
    Ssh {
        username: String,
        identity: Vec<u8>,
        passphrase: Option<String>,
        known_hosts: KnownHosts,
    },
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.credential {
            Credential::None => "anonymous".to_string(),
            Credential::Basic { username, .. } => {
                format!("basic(user={username}, password=<redacted>)")
            }
            Credential::Bearer(_) => "bearer(<redacted>)".into(),
            Credential::Ssh {
                username,
                known_hosts,
                passphrase,
                ..
            } => format!(
                "ssh(user={username}, identity=<redacted>, passphrase={}, {known_hosts:?})",
                if passphrase.is_some() {
                    "<redacted>"
                } else {
                    "none"
                }
            ),
        };
        f.debug_struct("GitAuth")
            .field("credential", &kind)
            .field("ca", &self.ca.as_ref().map(|c| c.len()))
            .field("client_cert", &self.client_cert.is_some())
            .field("issued_for", &self.issued_for)
            .finish()
    }
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches(['\n', '\r'])
                .to_string()
        })
        .filter(|s| !s.is_empty())
}

impl GitAuth {
    /// Anonymous access, no TLS options.
    pub fn anonymous() -> GitAuth {
        GitAuth::default()
    }

    /// Build the auth options for `url` from a GitRepository `secretRef` Secret's data (empty map when the
    /// GitRepository has none), as Flux's `git.NewAuthOptions`: `ssh` needs `identity` and `known_hosts`
    /// (`password` is the key's passphrase, user from the URL or `git`); `http(s)` takes `bearerToken` or
    /// `username`/`password` (falling back to the URL's userinfo), `ca.crt` (else `caFile`) and
    /// `tls.crt`/`tls.key`. `file` and `git` remotes take no credentials.
    pub fn from_secret(url: &str, data: &BTreeMap<String, Vec<u8>>) -> Result<GitAuth, GitError> {
        let parsed = RemoteUrl::parse(url);
        let scheme = match &parsed {
            Some(u) => u.scheme.clone(),
            None => "file".into(),
        };
        match scheme.as_str() {
            "ssh" => {
                let identity = data
                    .get("identity")
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        GitError::InvalidAuth(
                            "invalid 'ssh' auth option: 'identity' is required".into(),
                        )
                    })?;
                let known = data
                    .get("known_hosts")
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        GitError::InvalidAuth(
                            "invalid 'ssh' auth option: 'known_hosts' is required".into(),
                        )
                    })?;
                let known_hosts = KnownHosts::parse(known).map_err(|e| {
                    GitError::InvalidAuth(format!("invalid 'ssh' auth option: 'known_hosts': {e}"))
                })?;
                let username = parsed
                    .as_ref()
                    .and_then(|u| u.user.clone())
                    .unwrap_or_else(|| "git".into());
                Ok(GitAuth {
                    credential: Credential::Ssh {
                        username,
                        identity: identity.clone(),
                        passphrase: text(data, "password"),
                        known_hosts,
                    },
                    ca: None,
                    client_cert: None,
                    issued_for: None,
                })
            }
            "http" | "https" => {
                let bearer = text(data, "bearerToken");
                let mut username = text(data, "username");
                let mut password = text(data, "password");
                if username.is_none()
                    && password.is_none()
                    && let Some(u) = &parsed
                {
                    username = u.user.clone();
                    password = u.password.clone();
                }
                if password.is_some() && username.is_none() {
                    return Err(GitError::InvalidAuth(format!(
                        "invalid '{scheme}' auth option: 'password' requires 'username' to be set"
                    )));
                }
                let credential = match (bearer, username) {
                    (Some(_), Some(_)) if data.contains_key("username") => {
                        return Err(GitError::InvalidAuth(
                            "basic auth and bearer token cannot be set at the same time".into(),
                        ));
                    }
                    (Some(token), _) => Credential::Bearer(token),
                    (None, Some(username)) => Credential::Basic {
                        username,
                        password: password.unwrap_or_default(),
                    },
                    (None, None) => Credential::None,
                };
                let ca = data
                    .get("ca.crt")
                    .or_else(|| data.get("caFile"))
                    .filter(|v| !v.is_empty())
                    .cloned();
                let client_cert = match (data.get("tls.crt"), data.get("tls.key")) {
                    (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => {
                        Some((c.clone(), k.clone()))
                    }
                    (None, None) => None,
                    _ => {
                        return Err(GitError::InvalidAuth(format!(
                            "invalid '{scheme}' auth option: 'tls.crt' and 'tls.key' must be set together"
                        )));
                    }
                };
                Ok(GitAuth {
                    credential,
                    ca,
                    client_cert,
                    issued_for: None,
                })
            }
            "file" | "git" => Ok(GitAuth::anonymous()),
            other => Err(GitError::Unsupported {
                url: redact_url(url),
                reason: format!(
                    "URL scheme '{other}' is not supported (file, git, http, https, ssh are)"
                ),
            }),
        }
    }

    /// The same options with HTTP basic `username`/`password` issued by a Git provider (Flux: provider
    /// credentials overwrite the Secret's `username`, `password` and `bearerToken`; TLS options stay).
    /// `identity` names who the credential was issued to, without secrets (see [`GitAuth::identity_digest`]).
    pub fn with_issued_basic(
        self,
        username: String,
        password: String,
        identity: String,
    ) -> GitAuth {
        GitAuth {
            credential: Credential::Basic { username, password },
            issued_for: Some(identity),
            ..self
        }
    }

    /// The same options with an HTTP bearer token issued by a Git provider for `identity` (see
    /// [`GitAuth::with_issued_basic`]).
    pub fn with_issued_bearer(self, token: String, identity: String) -> GitAuth {
        GitAuth {
            credential: Credential::Bearer(token),
            issued_for: Some(identity),
            ..self
        }
    }

    /// A digest of the credential identity (not reversible), separating cache mirrors of one URL fetched
    /// with different credentials. A provider-issued credential counts as its stable identity, so a
    /// refreshed token keeps using the same mirror.
    pub fn identity_digest(&self) -> String {
        let mut h = Sha256::new();
        if let Some(identity) = &self.issued_for {
            h.update(b"issued\0");
            h.update(identity.as_bytes());
            let d = h.finalize();
            return d.iter().take(8).map(|b| format!("{b:02x}")).collect();
        }
        match &self.credential {
            Credential::None => h.update(b"none"),
            Credential::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Credential::Bearer(t) => {
                h.update(b"bearer\0");
                h.update(t.as_bytes());
            }
            Credential::Ssh {
                username, identity, ..
            } => {
                h.update(b"ssh\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(identity);
            }
        }
        let d = h.finalize();
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// A proxy for HTTP(S) remotes, from a GitRepository `proxySecretRef` Secret. `Debug` hides credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Proxy URL with credentials as userinfo.
    pub(crate) url: String,
    /// Lower-case scheme of the proxy: `http`, `https` or `socks5`.
    pub(crate) scheme: String,
}

impl std::fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl ProxyOptions {
    /// Build from a proxy Secret's data: `address` (required, `http`, `https` or `socks5`, at most 2048
    /// characters), optional `username` and `password`. `name` (`<ns>/<name>`) goes into messages.
    pub fn from_secret(
        name: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<ProxyOptions, GitError> {
        let address = text(data, "address").ok_or_else(|| {
            GitError::InvalidAuth(format!("secret '{name}': proxy address is empty"))
        })?;
        if address.len() > 2048 {
            return Err(GitError::InvalidAuth(format!(
                "secret '{name}': proxy address exceeds 2048 characters"
            )));
        }
        let Some((scheme, rest)) = address.split_once("://") else {
            return Err(GitError::InvalidAuth(format!(
                "secret '{name}': proxy address '{}' has no scheme (http, https or socks5)",
                redact_url(&address)
            )));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "socks5") {
            return Err(GitError::InvalidAuth(format!(
                "secret '{name}': proxy scheme '{scheme}' is not supported (http, https or socks5)"
            )));
        }
        let url = match text(data, "username") {
            Some(user) => {
                let pw = text(data, "password")
                    .map(|p| format!(":{}", userinfo_escape(&p)))
                    .unwrap_or_default();
                format!("{scheme}://{}{pw}@{rest}", userinfo_escape(&user))
            }
            None => format!("{scheme}://{rest}"),
        };
        Ok(ProxyOptions { url, scheme })
    }

    /// The proxy URL, credentials included as userinfo: hand it to an HTTP client, never to a log.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A proxy from a URL (credentials as userinfo), e.g. from the environment.
    pub fn from_url(url: &str) -> Result<ProxyOptions, GitError> {
        let mut data = BTreeMap::new();
        data.insert("address".to_string(), url.as_bytes().to_vec());
        ProxyOptions::from_secret("proxy", &data)
    }
}

fn userinfo_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SSH algorithm overrides (the controllers' `--ssh-kex-algos` and `--ssh-hostkey-algos`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshOptions {
    /// Key-exchange algorithms, most preferred first; empty means libssh2's defaults.
    pub kex_algos: Vec<String>,
    /// Host-key algorithms, most preferred first; empty means those listed in known_hosts for the host.
    pub hostkey_algos: Vec<String>,
}

/// Everything needed to talk to one remote.
#[derive(Clone, Debug)]
pub struct RemoteSpec {
    /// The remote URL (`file`, `git`, `http`, `https`, `ssh`); userinfo credentials are honoured for HTTP.
    pub url: String,
    /// Credentials and TLS options.
    pub auth: GitAuth,
    /// Proxy for HTTP(S) remotes, if any.
    pub proxy: Option<ProxyOptions>,
    /// Timeout of each network operation (clone/fetch, push).
    pub timeout: Duration,
    /// SSH algorithm overrides.
    pub ssh: SshOptions,
}

impl RemoteSpec {
    /// A remote with anonymous access, no proxy and the default timeout.
    pub fn new(url: impl Into<String>) -> RemoteSpec {
        RemoteSpec {
            url: url.into(),
            auth: GitAuth::anonymous(),
            proxy: None,
            timeout: DEFAULT_TIMEOUT,
            ssh: SshOptions::default(),
        }
    }

    /// The URL with credentials stripped, for messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn http_variants() {
        let a = GitAuth::from_secret(
            "https://h/r",
            &secret(&[("username", "u"), ("password", "p")]),
        )
        .unwrap();
        assert!(matches!(a.credential, Credential::Basic { ref username, .. } if username == "u"));
        let a = GitAuth::from_secret("https://h/r", &secret(&[("bearerToken", "t")])).unwrap();
        assert!(matches!(a.credential, Credential::Bearer(_)));
        let e = GitAuth::from_secret("https://h/r", &secret(&[("password", "p")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid 'https' auth option: 'password' requires 'username' to be set"
        );
        let e = GitAuth::from_secret(
            "https://h/r",
            &secret(&[("username", "u"), ("bearerToken", "t")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "basic auth and bearer token cannot be set at the same time"
        );
        let a = GitAuth::from_secret("https://x:y@h/r", &BTreeMap::new()).unwrap();
        assert!(matches!(a.credential, Credential::Basic { ref password, .. } if password == "y"));
        let a = GitAuth::from_secret("https://h/r", &secret(&[("caFile", "CA")])).unwrap();
        assert_eq!(a.ca.as_deref(), Some(&b"CA"[..]));
        assert!(GitAuth::from_secret("https://h/r", &secret(&[("tls.crt", "c")])).is_err());
    }

    #[test]
    fn ssh_requires_identity_and_known_hosts_and_debug_hides_secrets() {
        let e = GitAuth::from_secret("ssh://git@h/r", &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid 'ssh' auth option: 'identity' is required"
        );
        let e = GitAuth::from_secret("ssh://git@h/r", &secret(&[("identity", "KEY")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid 'ssh' auth option: 'known_hosts' is required"
        );
        let a = GitAuth::from_secret(
            "ssh://h/r",
            &secret(&[
                ("identity", "SECRETKEY"),
                ("password", "SECRETPASS"),
                ("known_hosts", "h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"),
            ]),
        )
        .unwrap();
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
        assert!(matches!(a.credential, Credential::Ssh { ref username, .. } if username == "git"));
        let b = GitAuth::from_secret(
            "https://h/r",
            &secret(&[("username", "u"), ("password", "SECRETPASS")]),
        )
        .unwrap();
        assert!(!format!("{b:?}").contains("SECRET"));
        assert_ne!(a.identity_digest(), b.identity_digest());
    }

    #[test]
    fn issued_credentials_replace_the_secret_ones_and_keep_a_stable_identity() {
        let base = GitAuth::from_secret(
            "https://h/r",
            &secret(&[("username", "u"), ("password", "p"), ("ca.crt", "CA")]),
        )
        .unwrap();
        let a = base.clone().with_issued_basic(
            "x-access-token".into(),
            "SECRET-1".into(),
            "github app 1".into(),
        );
        assert!(
            matches!(a.credential, Credential::Basic { ref username, ref password } if username == "x-access-token" && password == "SECRET-1")
        );
        assert_eq!(a.ca.as_deref(), Some(&b"CA"[..]));
        let b = base.clone().with_issued_basic(
            "x-access-token".into(),
            "SECRET-2".into(),
            "github app 1".into(),
        );
        assert_eq!(a.identity_digest(), b.identity_digest());
        let c = base.clone().with_issued_basic(
            "x-access-token".into(),
            "SECRET-1".into(),
            "github app 2".into(),
        );
        assert_ne!(a.identity_digest(), c.identity_digest());
        assert_ne!(a.identity_digest(), base.identity_digest());
        let d = base.with_issued_bearer("SECRET-3".into(), "azure".into());
        assert!(matches!(d.credential, Credential::Bearer(_)));
        for x in [&a, &b, &c, &d] {
            assert!(!format!("{x:?}").contains("SECRET"));
        }
    }

    #[test]
    fn proxy_secret() {
        let p = ProxyOptions::from_secret(
            "ns/p",
            &secret(&[
                ("address", "http://proxy:3128"),
                ("username", "u"),
                ("password", "p@ss"),
            ]),
        )
        .unwrap();
        assert_eq!(p.url, "http://u:p%40ss@proxy:3128");
        assert!(!format!("{p:?}").contains("p%40ss"));
        let e = ProxyOptions::from_secret("ns/p", &BTreeMap::new()).unwrap_err();
        assert_eq!(e.to_string(), "secret 'ns/p': proxy address is empty");
        assert!(ProxyOptions::from_secret("ns/p", &secret(&[("address", "ftp://x")])).is_err());
    }
}
