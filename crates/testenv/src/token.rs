//! Registry token issuing, as distribution's `auth.token` expects it (the Docker Hub / GHCR flow).
//!
//! The registry answers `401` with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; the client asks the
//! realm for a token with those parameters (and basic credentials when it has them); the registry then accepts the
//! token as `Authorization: Bearer`. Tokens are ES256 JWTs whose `x5c` header carries the signing certificate, which
//! the registry verifies against its `rootcertbundle`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::Serialize;

/// How long an issued token is valid, in seconds.
pub const TOKEN_TTL_SECS: u64 = 300;

/// Errors of the token issuer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The signing key or certificate could not be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    Load {
        /// Which input ("signing key", "certificate").
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A requested scope is not `type:name:actions`.
    #[error("malformed scope {0:?}: expected type:name:actions")]
    Scope(String),
    /// Signing failed (should not happen with a valid key).
    #[error("signing the token failed")]
    Sign,
}

/// One entry of the token's `access` claim: what may be done on which resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Resource type, e.g. `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name, e.g. `team/app` or `catalog`.
    pub name: String,
    /// Granted actions, e.g. `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// Parse a scope such as `repository:team/app:pull,push` (the name may itself contain `:`).
pub fn parse_scope(scope: &str) -> Result<Access, TokenError> {
    let err = || TokenError::Scope(scope.to_owned());
    let (kind, rest) = scope.split_once(':').ok_or_else(err)?;
    let (name, actions) = rest.rsplit_once(':').ok_or_else(err)?;
    if kind.is_empty() || name.is_empty() {
        return Err(err());
    }
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Access {
        kind: kind.to_owned(),
        name: name.to_owned(),
        actions,
    })
}

/// Who asks for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// No credentials: read-only access, like anonymous pulls of public images.
    Anonymous,
    /// Valid credentials of this user: every requested action.
    User(String),
}

/// Grant what `subject` may do of what it asked for.
pub fn grant(subject: &Subject, requested: Vec<Access>) -> Vec<Access> {
    requested
        .into_iter()
        .map(|mut a| {
            if *subject == Subject::Anonymous {
                a.actions.retain(|action| action == "pull");
            }
            a
        })
        .filter(|a| !a.actions.is_empty())
        .collect()
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'a str,
    alg: &'a str,
    x5c: [String; 1],
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

/// Signs registry tokens with an ECDSA P-256 key.
pub struct Issuer {
    key: EcdsaKeyPair,
    cert_b64: String,
    issuer: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Load a PKCS#8 PEM P-256 key and its PEM certificate; `issuer` is the `iss` claim the registry expects.
    pub fn from_pem_files(key: &Path, cert: &Path, issuer: &str) -> Result<Self, TokenError> {
        let load = |what, path: &Path, reason: String| TokenError::Load {
            what,
            path: path.display().to_string(),
            reason,
        };
        let key_der = PrivatePkcs8KeyDer::from_pem_file(key)
            .map_err(|e| load("signing key", key, e.to_string()))?;
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key_der.secret_pkcs8_der())
                .map_err(|e| load("signing key", key, format!("not a P-256 PKCS#8 key: {e}")))?;
        let cert_der = CertificateDer::from_pem_file(cert)
            .map_err(|e| load("certificate", cert, e.to_string()))?;
        Ok(Self {
            key: key_pair,
            cert_b64: STANDARD.encode(cert_der.as_ref()),
            issuer: issuer.to_owned(),
            rng: SystemRandom::new(),
        })
    }

    /// Issue a token for `subject` with audience `service` granting `access`.
    pub fn issue(
        &self,
        subject: &Subject,
        service: &str,
        access: &[Access],
    ) -> Result<String, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| TokenError::Sign)?;
        let header = Header {
            typ: "JWT",
            alg: "ES256",
            x5c: [self.cert_b64.clone()],
        };
        let sub = match subject {
            Subject::Anonymous => "",
            Subject::User(u) => u,
        };
        let claims = Claims {
            iss: &self.issuer,
            sub,
            aud: service,
            exp: now + TOKEN_TTL_SECS,
            // Tolerate small clock differences between this process and the registry.
            nbf: now.saturating_sub(10),
            iat: now,
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
            access,
        };
        let signing_input = format!("{}.{}", b64_json(&header)?, b64_json(&claims)?);
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| TokenError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

fn b64_json<T: Serialize>(v: &T) -> Result<String, TokenError> {
    let json = serde_json::to_vec(v).map_err(|_| TokenError::Sign)?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        let a = parse_scope("repository:team/app:pull,push").unwrap();
        assert_eq!(a.kind, "repository");
        assert_eq!(a.name, "team/app");
        assert_eq!(a.actions, ["pull", "push"]);
        assert_eq!(parse_scope("registry:catalog:*").unwrap().actions, ["*"]);
        assert_eq!(
            parse_scope("repository:host:5000/app:pull").unwrap().name,
            "host:5000/app"
        );
        assert!(parse_scope("repository").is_err());
        assert!(parse_scope("repository::pull").is_err());
    }

    #[test]
    fn anonymous_gets_pull_only() {
        let req = vec![
            parse_scope("repository:a:pull,push").unwrap(),
            parse_scope("repository:b:push").unwrap(),
        ];
        let g = grant(&Subject::Anonymous, req.clone());
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].actions, ["pull"]);
        assert_eq!(grant(&Subject::User("u".into()), req.clone()), req);
    }
}
