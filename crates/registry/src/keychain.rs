//! Docker config keychain built from pull-secret contents, matching registry keys the way Kubernetes
//! and go-containerregistry's `authn/kubernetes` do (reflector spec §1.7).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::ImageRef;

/// Secret type whose `.dockerconfigjson` key is read.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Data key of a `kubernetes.io/dockerconfigjson` secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// Legacy secret type whose `.dockercfg` key is read.
pub const DOCKER_CFG_TYPE: &str = "kubernetes.io/dockercfg";
/// Data key of a `kubernetes.io/dockercfg` secret.
pub const DOCKER_CFG_KEY: &str = ".dockercfg";

/// Credentials presented to a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credential {
    /// No credentials; an anonymous token is still requested when the registry asks for one.
    #[default]
    Anonymous,
    /// Username and password (basic auth, or basic auth at the token endpoint).
    Basic {
        /// User name, e.g. `_json_key` for a GCR service-account key.
        username: String,
        /// Password or key.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in a docker config), exchanged at the token endpoint.
    IdentityToken {
        /// User name sent with the token, if any.
        username: String,
        /// The refresh token.
        token: String,
    },
    /// A ready bearer token (`registrytoken` in a docker config), sent as is.
    RegistryToken(String),
}

impl fmt::Debug for Credential {
    // Never print secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Anonymous => write!(f, "Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, ***)")
            }
            Credential::RegistryToken(_) => write!(f, "RegistryToken(***)"),
        }
    }
}

/// The contents of one Secret, as handed over by the controller (no Kubernetes types).
#[derive(Clone, Default)]
pub struct SecretData {
    /// `namespace/name`, used in error messages.
    pub name: String,
    /// The secret's `type`; only the two docker config types are read, others are ignored.
    pub secret_type: String,
    /// The secret's data (decoded bytes).
    pub data: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for SecretData {
    // Values are secret: print only the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a docker config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeychainError {
    /// The JSON in the secret is malformed.
    #[error("invalid docker config in secret '{secret}' key '{key}': {source}")]
    Json {
        /// `namespace/name` of the secret.
        secret: String,
        /// The data key that was read.
        key: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// An `auths` key is not a usable registry URL.
    #[error("Entry {entry:?} in dockercfg invalid ({reason})")]
    Entry {
        /// The `auths` key, prefixed with `https://` when it had no scheme.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `auth` field is not base64 of `user:password`.
    #[error("invalid 'auth' value for registry '{key}': {reason}")]
    Auth {
        /// The matching keychain key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One `auths` entry of a docker config.
#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

#[derive(Default, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    /// Registry host → credential helper name (suffix of `docker-credential-`).
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
    /// Credential helper for every registry without a `credHelpers` entry.
    #[serde(rename = "credsStore", default)]
    creds_store: String,
}

/// Credentials from pull secrets, keyed by `host[:port][/path]`.
#[derive(Clone, Default)]
pub struct Keychain {
    /// Keys in reverse-sorted order (longer, more specific keys first), each with its entries in secret order.
    entries: Vec<(String, Vec<AuthEntry>)>,
    /// `credHelpers` of all secrets (registry host → helper); the first secret naming a host wins.
    helpers: BTreeMap<String, String>,
    /// The first `credsStore` named.
    store: Option<String>,
}

impl fmt::Debug for Keychain {
    // Credentials are secret: print only the registry keys (and helper names, which are not secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        l.entries(self.entries.iter().map(|(k, _)| k));
        if !self.helpers.is_empty() {
            l.entry(&format_args!("credHelpers: {:?}", self.helpers));
        }
        if let Some(s) = &self.store {
            l.entry(&format_args!("credsStore: {s:?}"));
        }
        l.finish()
    }
}

impl Keychain {
    /// Builds a keychain from pull secrets. Secrets of other types, or without the expected key, are
    /// ignored (an Opaque secret therefore means anonymous access, as upstream).
    pub fn from_pull_secrets(secrets: &[SecretData]) -> Result<Keychain, KeychainError> {
        let mut map: BTreeMap<String, Vec<AuthEntry>> = BTreeMap::new();
        let mut helpers = BTreeMap::new();
        let mut store = None;
        for secret in secrets {
            let config = match read_config(secret)? {
                Some(c) => c,
                None => continue,
            };
            for (registry, helper) in config.cred_helpers {
                if helper.is_empty() {
                    continue;
                }
                // Keys are written like `auths` keys (`https://index.docker.io/v1/`): compare hosts.
                let key = keychain_key(&registry)?;
                let host = key.split('/').next().unwrap_or(&key).to_string();
                helpers.entry(host).or_insert(helper);
            }
            if store.is_none() && !config.creds_store.is_empty() {
                store = Some(config.creds_store);
            }
            let auths = config.auths;
            // Sorted so that a secret's own duplicates resolve deterministically.
            let mut auths: Vec<(String, AuthEntry)> = auths.into_iter().collect();
            auths.sort_by(|a, b| a.0.cmp(&b.0));
            for (registry, entry) in auths {
                let key = keychain_key(&registry)?;
                map.entry(key).or_default().push(entry);
            }
        }
        let mut entries: Vec<(String, Vec<AuthEntry>)> = map.into_iter().collect();
        entries.reverse();
        Ok(Keychain {
            entries,
            helpers,
            store,
        })
    }

    /// Builds a keychain from the bytes of one `.dockerconfigjson`.
    pub fn from_docker_config_json(name: &str, bytes: &[u8]) -> Result<Keychain, KeychainError> {
        let secret = SecretData {
            name: name.to_string(),
            secret_type: DOCKER_CONFIG_JSON_TYPE.to_string(),
            data: BTreeMap::from([(DOCKER_CONFIG_JSON_KEY.to_string(), bytes.to_vec())]),
        };
        Self::from_pull_secrets(&[secret])
    }

    /// Whether the keychain holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.helpers.is_empty() && self.store.is_none()
    }

    /// The credential helper for `image`, in the Docker CLI's order: a `credHelpers` entry for its
    /// registry, else `credsStore`. When the helper has nothing, the `auths` entries apply.
    pub(crate) fn helper_for(&self, image: &ImageRef) -> Option<&str> {
        self.helpers
            .get(image.registry())
            .or(self.store.as_ref())
            .map(String::as_str)
    }

    /// The credential for `image`: the first entry of the first matching key; anonymous when none matches.
    pub fn resolve(&self, image: &ImageRef) -> Result<Credential, KeychainError> {
        let target = image.canonical();
        for (key, list) in &self.entries {
            if !urls_match(key, &target) {
                continue;
            }
            if let Some(entry) = list.first() {
                return to_credential(key, entry);
            }
        }
        Ok(Credential::Anonymous)
    }
}

/// Reads a docker config secret; `None` for secrets of other types. A legacy `.dockercfg` has only auths.
fn read_config(secret: &SecretData) -> Result<Option<DockerConfigJson>, KeychainError> {
    let json_err = |key, source| KeychainError::Json {
        secret: secret.name.clone(),
        key,
        source,
    };
    if secret.secret_type == DOCKER_CONFIG_JSON_TYPE
        && let Some(b) = secret.data.get(DOCKER_CONFIG_JSON_KEY)
        && !b.is_empty()
    {
        let cfg: DockerConfigJson =
            serde_json::from_slice(b).map_err(|e| json_err(DOCKER_CONFIG_JSON_KEY, e))?;
        return Ok(Some(cfg));
    }
    if secret.secret_type == DOCKER_CFG_TYPE
        && let Some(b) = secret.data.get(DOCKER_CFG_KEY)
        && !b.is_empty()
    {
        let auths: HashMap<String, AuthEntry> =
            serde_json::from_slice(b).map_err(|e| json_err(DOCKER_CFG_KEY, e))?;
        return Ok(Some(DockerConfigJson {
            auths,
            ..Default::default()
        }));
    }
    Ok(None)
}

/// Turns an `auths` key into a keychain key: scheme dropped, `/v1/` and `/v2/` prefixes stripped,
/// `host` alone when no path is left.
fn keychain_key(registry: &str) -> Result<String, KeychainError> {
    let value = if registry.starts_with("https://") || registry.starts_with("http://") {
        registry.to_string()
    } else {
        format!("https://{registry}")
    };
    let invalid = |reason: String| KeychainError::Entry {
        entry: value.clone(),
        reason,
    };
    let rest = value
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| invalid("no scheme".to_string()))?;
    // Query and fragment are not part of the key.
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.contains(char::is_whitespace) {
        return Err(invalid("invalid host".to_string()));
    }
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
        &path[3..]
    } else {
        path
    };
    if !path.is_empty() && path != "/" {
        Ok(format!("{host}{path}"))
    } else {
        Ok(host.to_string())
    }
}

/// Kubernetes credential-provider matching: same port, same number of host labels, each label a glob,
/// and the key's path a prefix of the target's path.
pub(crate) fn urls_match(glob: &str, target: &str) -> bool {
    let (glob_host, glob_path) = split_host_path(glob);
    let (target_host, target_path) = split_host_path(target);
    let (glob_labels, glob_port) = split_host_port(glob_host);
    let (target_labels, target_port) = split_host_port(target_host);
    if glob_port != target_port || glob_labels.len() != target_labels.len() {
        return false;
    }
    if !target_path.starts_with(glob_path) {
        return false;
    }
    glob_labels
        .iter()
        .zip(&target_labels)
        .all(|(g, t)| glob_match(g, t))
}

fn split_host_path(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Splits `host[:port]` into dot labels and port; like Go's `net.SplitHostPort` failing, a host without
/// a valid `:port` keeps everything as host.
fn split_host_port(host: &str) -> (Vec<&str>, &str) {
    let (h, p) = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p),
        _ => (host, ""),
    };
    (h.split('.').collect(), p)
}

/// Go `filepath.Match` for one host label: `*`, `?`, `[...]` classes (with `^` negation and ranges) and
/// `\` escapes. A malformed pattern matches nothing.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t).unwrap_or(false)
}

fn glob_at(p: &[char], t: &[char]) -> Option<bool> {
    let (mut pi, mut ti) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after `*`, text index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                c => {
                    if ti < t.len() {
                        let (ok, next) = match_one(p, pi, c, t[ti])?;
                        if ok && t[ti] != '/' {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    }
                }
            }
        } else if ti == t.len() {
            return Some(true);
        }
        match star {
            Some((sp, st)) if st < t.len() && t[st] != '/' => {
                star = Some((sp, st + 1));
                pi = sp;
                ti = st + 1;
            }
            _ => {
                // Validate the rest of the pattern like Go does before reporting no match.
                validate_rest(p, pi)?;
                return Some(false);
            }
        }
    }
}

/// Matches one non-`*` pattern element at `pi` against `c`; returns (matched, next pattern index), or
/// `None` for a malformed pattern.
fn match_one(p: &[char], pi: usize, pc: char, c: char) -> Option<(bool, usize)> {
    match pc {
        '?' => Some((true, pi + 1)),
        '\\' => {
            let e = *p.get(pi + 1)?;
            Some((e == c, pi + 2))
        }
        '[' => {
            let mut i = pi + 1;
            let negated = p.get(i) == Some(&'^');
            if negated {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let ch = *p.get(i)?;
                if ch == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let (lo, ni) = class_char(p, i)?;
                i = ni;
                let mut hi = lo;
                if p.get(i) == Some(&'-') {
                    let (h, nj) = class_char(p, i + 1)?;
                    hi = h;
                    i = nj;
                }
                if lo <= c && c <= hi {
                    matched = true;
                }
            }
            Some((matched != negated, i))
        }
        other => Some((other == c, pi + 1)),
    }
}

fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match *p.get(i)? {
        '-' | ']' => None,
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        c => Some((c, i + 1)),
    }
}

fn validate_rest(p: &[char], mut pi: usize) -> Option<()> {
    while pi < p.len() {
        if p[pi] == '*' {
            pi += 1;
            continue;
        }
        let (_, next) = match_one(p, pi, p[pi], '\0')?;
        pi = next;
    }
    Some(())
}

/// Decodes an entry into credentials: `auth` (base64 `user:pass`) wins over username/password.
fn to_credential(key: &str, entry: &AuthEntry) -> Result<Credential, KeychainError> {
    let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
    if !entry.auth.is_empty() {
        let bad = |reason: String| KeychainError::Auth {
            key: key.to_string(),
            reason,
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("not UTF-8".to_string()))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad("expected 'username:password'".to_string()))?;
        username = u.to_string();
        password = p.to_string();
    }
    if !entry.registrytoken.is_empty() {
        return Ok(Credential::RegistryToken(entry.registrytoken.clone()));
    }
    if !entry.identitytoken.is_empty() {
        return Ok(Credential::IdentityToken {
            username,
            token: entry.identitytoken.clone(),
        });
    }
    if username.is_empty() && password.is_empty() {
        return Ok(Credential::Anonymous);
    }
    Ok(Credential::Basic { username, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            keychain_key("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(keychain_key("example.com").unwrap(), "example.com");
        assert_eq!(
            keychain_key("example.com:5000/").unwrap(),
            "example.com:5000"
        );
        assert_eq!(
            keychain_key("http://example.com/v2/team").unwrap(),
            "example.com/team"
        );
        assert_eq!(
            keychain_key("example.com/team/app").unwrap(),
            "example.com/team/app"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let k = Keychain::from_docker_config_json(
            "ns/s",
            br#"{"auths":{"example.com":{"username":"u","password":"hunter2"}}}"#,
        )
        .unwrap();
        assert_eq!(format!("{k:?}"), r#"["example.com"]"#);
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let s = SecretData {
            name: "ns/s".into(),
            secret_type: "Opaque".into(),
            data: BTreeMap::from([("password".to_string(), b"hunter2".to_vec())]),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn credential_helpers() {
        let k = Keychain::from_docker_config_json(
            "ns/s",
            br#"{"credHelpers":{"https://index.docker.io/v1/":"hub","gcr.io":"gcloud","x.io":""},"credsStore":"store"}"#,
        )
        .unwrap();
        let img = |s: &str| ImageRef::parse(s, false).unwrap();
        assert_eq!(k.helper_for(&img("alpine")), Some("hub"));
        assert_eq!(k.helper_for(&img("gcr.io/p/app")), Some("gcloud"));
        // An empty helper name is ignored; other registries go to the store.
        assert_eq!(k.helper_for(&img("x.io/app")), Some("store"));
        assert!(!k.is_empty());
        let k = Keychain::from_docker_config_json("ns/s", br#"{"auths":{}}"#).unwrap();
        assert_eq!(k.helper_for(&img("alpine")), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "example"));
        assert!(glob_match("ex*e", "example"));
        assert!(glob_match("ex?mple", "example"));
        assert!(glob_match("[a-f]x", "ex"));
        assert!(!glob_match("[^a-f]x", "ex"));
        assert!(!glob_match("ex", "example"));
        assert!(!glob_match("[", "x"));
        assert!(glob_match("\\*", "*"));
    }

    #[test]
    fn matching() {
        assert!(urls_match("*.example.com", "eu.example.com/foo/bar"));
        assert!(!urls_match("*.example.com", "a.eu.example.com/foo"));
        assert!(!urls_match("docker.io", "index.docker.io/library/alpine"));
        assert!(urls_match("example.com:5000", "example.com:5000/x"));
        assert!(!urls_match("example.com", "example.com:5000/x"));
        assert!(urls_match("example.com/team", "example.com/team/app"));
        assert!(!urls_match("example.com/team", "example.com/other/app"));
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics(glob in ".{0,40}", target in ".{0,40}") {
            let _ = urls_match(&glob, &target);
            let _ = glob_match(&glob, &target);
            let _ = keychain_key(&glob);
        }
    }
}
