//! GitHub App installation tokens (`provider: github`, `automation.md` §2.4). The controller signs a
//! short RS256 JWT as the app (`iss` = app ID) with the app's private key and buys an installation
//! access token with it at `POST {api}/app/installations/{id}/access_tokens`; when the Secret names the
//! installation's owner instead of its ID, the ID comes from `GET {api}/orgs/{owner}/installation`, else
//! `GET {api}/users/{owner}/installation`. Git then authenticates as user `x-access-token` with the
//! token as password.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Secret key of the app ID.
pub const KEY_APP_ID: &str = "githubAppID";
/// Secret key of the installation ID.
pub const KEY_INSTALLATION_ID: &str = "githubAppInstallationID";
/// Secret key of the installation owner (organisation or user login).
pub const KEY_INSTALLATION_OWNER: &str = "githubAppInstallationOwner";
/// Secret key of the app's PEM private key (PKCS#1 or PKCS#8).
pub const KEY_PRIVATE_KEY: &str = "githubAppPrivateKey";
/// Secret key of the API base URL (GitHub Enterprise Server).
pub const KEY_BASE_URL: &str = "githubAppBaseURL";
/// Git user name that goes with an installation token.
pub const USERNAME: &str = "x-access-token";
/// The API when neither the Secret nor the environment names one.
pub const DEFAULT_API: &str = "https://api.github.com";

/// GitHub accepts app JWTs issued up to 60 s in the past; 30 s absorbs clock drift.
const JWT_BACKDATE: u64 = 30;
/// The JWT only buys the installation token: keep it short-lived (GitHub's limit is 10 min).
const JWT_LIFETIME: u64 = 120;
/// Token lifetime assumed when the answer carries no `expires_at` (GitHub's tokens live one hour).
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Longest error body quoted in a message.
const MAX_QUOTED: usize = 512;

/// Why no installation token could be had. Messages never carry keys, JWTs or tokens.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// A Secret value is malformed.
    #[error("invalid {key} '{value}': {reason}")]
    InvalidValue {
        /// Secret key.
        key: &'static str,
        /// The value (never the private key).
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The private key cannot be parsed or used.
    #[error("could not parse private key: {0}")]
    PrivateKey(String),
    /// A GitHub API call failed.
    #[error("{step}: {method} {url}: {reason}")]
    Api {
        /// What was being obtained.
        step: &'static str,
        /// HTTP method.
        method: &'static str,
        /// URL called.
        url: String,
        /// Status and error body, transport error, or what is wrong with the answer.
        reason: String,
    },
    /// No installation of the app was found for the owner.
    #[error(
        "no installation of app {app_id} found for owner '{owner}': as organization: {org}; as user: {user}"
    )]
    NoInstallation {
        /// App ID.
        app_id: u64,
        /// Owner login.
        owner: String,
        /// Why the organisation lookup failed.
        org: Box<GitHubError>,
        /// Why the user lookup failed.
        user: Box<GitHubError>,
    },
}

/// Which installation of the app the token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installation {
    /// By ID.
    Id(u64),
    /// By the login of the organisation or user it is installed on.
    Owner(String),
}

/// A GitHub App as a GitRepository's Secret describes it.
pub struct App {
    app_id: u64,
    installation: Installation,
    key: RsaPrivateKey,
    api: String,
    cache_key: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("installation", &self.installation)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// An installation token and when it expires.
pub struct Token {
    /// The token (a secret).
    pub token: String,
    /// Its expiry.
    pub expires_at: SystemTime,
}

fn value(data: &BTreeMap<String, Vec<u8>>, key: &str) -> Option<String> {
    data.get(key)
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the Secret holds the app data Flux requires before anything else: the app ID and the key.
pub fn has_app_data(data: &BTreeMap<String, Vec<u8>>) -> bool {
    data.contains_key(KEY_APP_ID) && data.contains_key(KEY_PRIVATE_KEY)
}

/// Whether the Secret names the installation exactly once (by ID or by owner).
pub fn names_one_installation(data: &BTreeMap<String, Vec<u8>>) -> bool {
    data.contains_key(KEY_INSTALLATION_ID) != data.contains_key(KEY_INSTALLATION_OWNER)
}

fn id(data: &BTreeMap<String, Vec<u8>>, key: &'static str) -> Result<u64, GitHubError> {
    let raw = value(data, key).unwrap_or_default();
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| GitHubError::InvalidValue {
            key,
            value: raw.chars().take(64).collect(),
            reason: "must be a positive integer".into(),
        })
}

impl App {
    /// The app of a Secret (see [`has_app_data`] and [`names_one_installation`]); `default_api` is the
    /// API base URL when the Secret has no `githubAppBaseURL`.
    pub fn from_secret(
        data: &BTreeMap<String, Vec<u8>>,
        default_api: &str,
    ) -> Result<App, GitHubError> {
        let app_id = id(data, KEY_APP_ID)?;
        let installation = match value(data, KEY_INSTALLATION_OWNER) {
            // A login goes into the URL path: letters, digits, `-`, `_` and `.` only.
            Some(owner)
                if owner
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    && !owner.starts_with('.') =>
            {
                Installation::Owner(owner)
            }
            Some(owner) => {
                return Err(GitHubError::InvalidValue {
                    key: KEY_INSTALLATION_OWNER,
                    value: owner.chars().take(64).collect(),
                    reason: "must be a GitHub organization or user login".into(),
                });
            }
            None => Installation::Id(id(data, KEY_INSTALLATION_ID)?),
        };
        let pem_bytes = data.get(KEY_PRIVATE_KEY).map(Vec::as_slice).unwrap_or(&[]);
        let pem = std::str::from_utf8(pem_bytes)
            .map_err(|_| GitHubError::PrivateKey("the key is not PEM text".into()))?
            .trim();
        let key = if pem.contains("BEGIN RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| GitHubError::PrivateKey(e.to_string()))
        } else if pem.contains("BEGIN PRIVATE KEY") {
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| GitHubError::PrivateKey(e.to_string()))
        } else {
            Err(GitHubError::PrivateKey(
                "key must be a PEM encoded PKCS1 or PKCS8 RSA private key".into(),
            ))
        }?;
        let raw_api = value(data, KEY_BASE_URL).unwrap_or_else(|| default_api.to_string());
        let api = raw_api.trim_end_matches('/').to_string();
        match reqwest::Url::parse(&api) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            _ => {
                return Err(GitHubError::InvalidValue {
                    key: KEY_BASE_URL,
                    value: raw_api,
                    reason: "must be an http(s) URL".into(),
                });
            }
        }
        // Everything that decides which token is issued, the key included: a Secret naming the same
        // app and installation with another (or a wrong) key never shares a cached token.
        let mut h = Sha256::new();
        h.update(app_id.to_string().as_bytes());
        h.update(b"\0");
        match &installation {
            Installation::Id(n) => h.update(format!("id={n}").as_bytes()),
            Installation::Owner(o) => h.update(format!("owner={o}").as_bytes()),
        }
        h.update(b"\0");
        h.update(api.as_bytes());
        h.update(b"\0");
        h.update(pem_bytes);
        let cache_key = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(App {
            app_id,
            installation,
            key,
            api,
            cache_key,
        })
    }

    /// A digest of everything that decides the token (app, installation, API, key); not reversible.
    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }

    /// The app JWT at `now`: RS256 over `{"iat","exp","iss"}`.
    pub fn jwt(&self, now: SystemTime) -> Result<String, GitHubError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| GitHubError::PrivateKey("system clock before 1970".into()))?
            .as_secs();
        let iat = now.saturating_sub(JWT_BACKDATE);
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": iat,
            "exp": iat + JWT_LIFETIME,
            "iss": self.app_id.to_string(),
        });
        let input = format!("{header}.{}", b64.encode(claims.to_string()));
        let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(self.key.clone());
        let sig = signer
            .try_sign(input.as_bytes())
            .map_err(|e| GitHubError::PrivateKey(format!("signing the app JWT: {e}")))?;
        Ok(format!("{input}.{}", b64.encode(sig.to_bytes())))
    }

    /// A fresh installation token, bought with an app JWT made at `now`.
    pub async fn installation_token(
        &self,
        http: &reqwest::Client,
        now: SystemTime,
    ) -> Result<Token, GitHubError> {
        let jwt = self.jwt(now)?;
        let id = match &self.installation {
            Installation::Id(id) => *id,
            Installation::Owner(owner) => self.installation_of(http, &jwt, owner).await?,
        };
        const STEP: &str = "creating installation token";
        let url = format!("{}/app/installations/{id}/access_tokens", self.api);
        let body = call(http, STEP, "POST", &url, &jwt).await?;
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            token: String,
            #[serde(default)]
            expires_at: Option<String>,
        }
        let invalid = |reason: String| GitHubError::Api {
            step: STEP,
            method: "POST",
            url: url.clone(),
            reason,
        };
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("invalid JSON response: {e}")))?;
        if answer.token.is_empty() {
            return Err(invalid("no token in response".into()));
        }
        let expires_at = match answer.expires_at {
            Some(s) => {
                time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                    .map(SystemTime::from)
                    .map_err(|e| invalid(format!("invalid expires_at '{s}': {e}")))?
            }
            None => now + DEFAULT_TOKEN_TTL,
        };
        Ok(Token {
            token: answer.token,
            expires_at,
        })
    }

    /// The installation ID for `owner`: as an organisation, else as a user.
    async fn installation_of(
        &self,
        http: &reqwest::Client,
        jwt: &str,
        owner: &str,
    ) -> Result<u64, GitHubError> {
        let org = match self.lookup(http, jwt, "orgs", owner).await {
            Ok(id) => return Ok(id),
            Err(e) => e,
        };
        let user = match self.lookup(http, jwt, "users", owner).await {
            Ok(id) => return Ok(id),
            Err(e) => e,
        };
        Err(GitHubError::NoInstallation {
            app_id: self.app_id,
            owner: owner.to_string(),
            org: Box::new(org),
            user: Box::new(user),
        })
    }

    /// `GET {api}/{kind}/{owner}/installation`: the installation's ID.
    async fn lookup(
        &self,
        http: &reqwest::Client,
        jwt: &str,
        kind: &str,
        owner: &str,
    ) -> Result<u64, GitHubError> {
        const STEP: &str = "finding installation";
        #[derive(Deserialize)]
        struct Answer {
            id: u64,
        }
        let url = format!("{}/{kind}/{owner}/installation", self.api);
        let body = call(http, STEP, "GET", &url, jwt).await?;
        serde_json::from_slice::<Answer>(&body)
            .map(|a| a.id)
            .map_err(|e| GitHubError::Api {
                step: STEP,
                method: "GET",
                url,
                reason: format!("invalid JSON response: {e}"),
            })
    }
}

/// One authenticated API call; the body of a 2xx answer, else an error quoting status and body.
async fn call(
    http: &reqwest::Client,
    step: &'static str,
    method: &'static str,
    url: &str,
    jwt: &str,
) -> Result<Vec<u8>, GitHubError> {
    let err = |reason: String| GitHubError::Api {
        step,
        method,
        url: url.to_string(),
        // An API that echoes the request must not leak the JWT into a condition.
        reason: reason.replace(jwt, "***"),
    };
    let req = match method {
        "POST" => http.post(url),
        _ => http.get(url),
    };
    let resp = req
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .bearer_auth(jwt)
        .send()
        .await
        .map_err(|e| err(registry::error_chain(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| err(registry::error_chain(&e)))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        let mut quoted: String = text.chars().take(MAX_QUOTED).collect();
        if quoted.len() < text.len() {
            quoted.push_str("...");
        }
        return Err(err(if quoted.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {quoted}")
        }));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/data/github-app-key.pem");
    const KEY8: &str = include_str!("../../tests/data/github-app-key.pkcs8.pem");
    const PUB: &str = include_str!("../../tests/data/github-app-key.pub.pem");

    fn secret(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    /// Verifies an app JWT as GitHub does: RS256 signature with the app's public key, `iss`.
    pub(crate) fn verify(jwt: &str, public_pem: &str) -> Result<serde_json::Value, String> {
        use rsa::pkcs8::DecodePublicKey as _;
        use rsa::signature::Verifier as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, s] = parts[..] else {
            return Err("not a JWT".into());
        };
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(h).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        if header["alg"] != "RS256" {
            return Err(format!("alg {}", header["alg"]));
        }
        let key = rsa::RsaPublicKey::from_public_key_pem(public_pem).map_err(|e| e.to_string())?;
        let sig = rsa::pkcs1v15::Signature::try_from(
            b64.decode(s).map_err(|e| e.to_string())?.as_slice(),
        )
        .map_err(|e| e.to_string())?;
        rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|e| format!("bad signature: {e}"))?;
        serde_json::from_slice(&b64.decode(c).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn jwt_is_rs256_signed_by_the_app_key_for_the_app_id() {
        for key in [KEY, KEY8] {
            let app = App::from_secret(
                &secret(&[
                    (KEY_APP_ID, "12345\n"),
                    (KEY_INSTALLATION_ID, "678"),
                    (KEY_PRIVATE_KEY, key),
                ]),
                DEFAULT_API,
            )
            .unwrap();
            let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let claims = verify(&app.jwt(now).unwrap(), PUB).unwrap();
            assert_eq!(claims["iss"], "12345");
            assert_eq!(claims["iat"], 1_700_000_000 - 30);
            assert_eq!(claims["exp"], 1_700_000_000 - 30 + 120);
            assert_eq!(app.api, DEFAULT_API);
        }
    }

    #[test]
    fn bad_secret_values_are_named() {
        let e = |pairs: &[(&str, &str)]| {
            App::from_secret(&secret(pairs), DEFAULT_API)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(&[
                (KEY_APP_ID, "abc"),
                (KEY_INSTALLATION_ID, "1"),
                (KEY_PRIVATE_KEY, KEY)
            ]),
            "invalid githubAppID 'abc': must be a positive integer"
        );
        assert_eq!(
            e(&[
                (KEY_APP_ID, "1"),
                (KEY_INSTALLATION_ID, "x"),
                (KEY_PRIVATE_KEY, KEY)
            ]),
            "invalid githubAppInstallationID 'x': must be a positive integer"
        );
        assert_eq!(
            e(&[
                (KEY_APP_ID, "1"),
                (KEY_INSTALLATION_ID, "2"),
                (KEY_PRIVATE_KEY, "abc")
            ]),
            "could not parse private key: key must be a PEM encoded PKCS1 or PKCS8 RSA private key"
        );
        let broken = KEY.replace("\n", "\nAAAA");
        let msg = e(&[
            (KEY_APP_ID, "1"),
            (KEY_INSTALLATION_ID, "2"),
            (KEY_PRIVATE_KEY, &broken),
        ]);
        assert!(msg.starts_with("could not parse private key: "), "{msg}");
        assert!(!msg.contains("AAAA"), "{msg}");
        assert_eq!(
            e(&[
                (KEY_APP_ID, "1"),
                (KEY_INSTALLATION_ID, "2"),
                (KEY_PRIVATE_KEY, KEY),
                (KEY_BASE_URL, "ftp://x")
            ]),
            "invalid githubAppBaseURL 'ftp://x': must be an http(s) URL"
        );
    }

    #[test]
    fn cache_key_covers_app_installation_api_and_key() {
        let other = include_str!("../../tests/data/other-key.pem");
        let key = |pairs: &[(&str, &str)]| {
            App::from_secret(&secret(pairs), DEFAULT_API)
                .unwrap()
                .cache_key()
                .to_string()
        };
        let base = [
            (KEY_APP_ID, "1"),
            (KEY_INSTALLATION_ID, "2"),
            (KEY_PRIVATE_KEY, KEY),
        ];
        let k = key(&base);
        assert_eq!(k, key(&base));
        assert_ne!(k, key(&[(KEY_APP_ID, "3"), base[1], base[2]]));
        assert_ne!(k, key(&[base[0], (KEY_INSTALLATION_ID, "3"), base[2]]));
        assert_ne!(k, key(&[base[0], (KEY_INSTALLATION_OWNER, "2"), base[2]]));
        assert_ne!(k, key(&[base[0], base[1], (KEY_PRIVATE_KEY, other)]));
        assert_ne!(
            k,
            key(&[
                base[0],
                base[1],
                base[2],
                (KEY_BASE_URL, "https://ghe.example.com/api/v3")
            ])
        );
        assert!(!k.contains("PRIVATE"));
    }
}
