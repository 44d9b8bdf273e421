//! GCP: an access token of the controller's workload identity from the metadata server, used as the
//! password of user `oauth2accesstoken` on gcr.io and Artifact Registry.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use super::{Call, CloudError, CloudProvider, Issued, json};
use crate::keychain::Credential;

/// GCP registry host pattern (reflector spec §1.7).
pub(crate) const GCP_PATTERN: &str =
    r"^(((.+\.)?gcr\.io)|(.+-docker\.pkg\.dev)|(docker\.s3nsregistry\.fr))$";
/// User name that goes with an access token.
pub const GCP_USERNAME: &str = "oauth2accesstoken";
/// Default metadata server host.
const DEFAULT_METADATA_HOST: &str = "169.254.169.254";
/// Path of the default service account's token.
const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// Token lifetime when the response gives none.
const DEFAULT_TTL: u64 = 300;

static GCP_RE: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| Regex::new(GCP_PATTERN));

/// The cache scope: one access token serves every GCP registry.
pub(crate) fn cache_scope(registry: &str) -> Result<String, CloudError> {
    let matches = GCP_RE.as_ref().is_ok_and(|re| re.is_match(registry));
    if !matches {
        return Err(CloudError::UnsupportedRegistry {
            provider: CloudProvider::Gcp,
            registry: registry.to_string(),
            pattern: GCP_PATTERN,
        });
    }
    Ok(String::new())
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// GETs the default service account's token from the metadata server (`GCE_METADATA_HOST` moves it).
pub(crate) async fn registry_credential(call: &Call<'_>) -> Result<Issued, CloudError> {
    const STEP: &str = "metadata server access token";
    let host = call
        .context
        .env()
        .get("GCE_METADATA_HOST")
        .unwrap_or(DEFAULT_METADATA_HOST);
    let url = format!("http://{host}{TOKEN_PATH}");
    let req = call.http.get(&url).header("metadata-flavor", "Google");
    let (headers, body) = call.send(STEP, "GET", &url, req).await?;
    // The flavor header proves the answer comes from a metadata server, not some captive portal.
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Err(call.invalid(
            STEP,
            "GET",
            &url,
            "response lacks 'Metadata-Flavor: Google': not a GCP metadata server",
        ));
    }
    let resp: TokenResponse = json(&body).map_err(|r| call.invalid(STEP, "GET", &url, r))?;
    if resp.access_token.is_empty() {
        return Err(call.invalid(STEP, "GET", &url, "no access_token in response"));
    }
    Ok(Issued {
        credential: Credential::Basic {
            username: GCP_USERNAME.to_string(),
            password: resp.access_token,
        },
        expires_at: call.expires_in(resp.expires_in.unwrap_or(DEFAULT_TTL)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "gcr.io",
            "eu.gcr.io",
            "europe-west1-docker.pkg.dev",
            "docker.s3nsregistry.fr",
        ] {
            assert!(cache_scope(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ghcr.io",
            "docker.pkg.dev",
            "gcr.io.evil.com",
            "127.0.0.1:5000",
        ] {
            assert!(cache_scope(bad).is_err(), "{bad}");
        }
    }
}
