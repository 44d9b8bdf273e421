//! GCP: an access token of the controller's workload identity from the metadata server, or of a
//! service account's (object-level identity: STS token exchange, then impersonation of the annotated
//! Google service account if any), used as the password of user `oauth2accesstoken` on gcr.io and
//! Artifact Registry.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

use super::workload::{AccountConfig, AccountToken};
use super::{Call, CloudError, CloudProvider, Issued, endpoint, json};
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
/// Default Security Token Service endpoint.
const DEFAULT_STS: &str = "https://sts.googleapis.com/";
/// Default IAM Credentials endpoint.
const DEFAULT_IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com/";
/// Scope of registry tokens.
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Also asked for, as upstream.
const USERINFO_EMAIL_SCOPE: &str = "https://www.googleapis.com/auth/userinfo.email";

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

/// The registry credential: the controller's token from the metadata server or, given `account`,
/// that service account's token exchanged at STS (and impersonating its Google service account).
pub(crate) async fn registry_credential(
    call: &Call<'_>,
    account: Option<&AccountToken>,
) -> Result<Issued, CloudError> {
    let (token, expires_in) = match account {
        None => metadata_token(call).await?,
        Some(a) => exchange(call, a).await?,
    };
    Ok(Issued {
        credential: Credential::Basic {
            username: GCP_USERNAME.to_string(),
            password: token,
        },
        expires_at: call.expires_in(expires_in),
    })
}

/// GETs `path` from the metadata server (`GCE_METADATA_HOST` moves it), checking that the answer
/// comes from one.
async fn metadata_get(
    call: &Call<'_>,
    step: &'static str,
    path: &str,
) -> Result<(String, Vec<u8>), CloudError> {
    let host = call
        .context
        .env()
        .get("GCE_METADATA_HOST")
        .unwrap_or(DEFAULT_METADATA_HOST);
    let url = format!("http://{host}{path}");
    let req = call.http.get(&url).header("metadata-flavor", "Google");
    let (headers, body) = call.send(step, "GET", &url, req).await?;
    // The flavor header proves the answer comes from a metadata server, not some captive portal.
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Err(call.invalid(
            step,
            "GET",
            &url,
            "response lacks 'Metadata-Flavor: Google': not a GCP metadata server",
        ));
    }
    Ok((url, body))
}

/// The default service account's token from the metadata server, and its lifetime in seconds.
async fn metadata_token(call: &Call<'_>) -> Result<(String, u64), CloudError> {
    const STEP: &str = "metadata server access token";
    let (url, body) = metadata_get(call, STEP, TOKEN_PATH).await?;
    let resp: TokenResponse = json(&body).map_err(|r| call.invalid(STEP, "GET", &url, r))?;
    if resp.access_token.is_empty() {
        return Err(call.invalid(STEP, "GET", &url, "no access_token in response"));
    }
    Ok((resp.access_token, resp.expires_in.unwrap_or(DEFAULT_TTL)))
}

/// The audiences of a service account: that of the service-account token and that sent to STS. With a
/// workload identity provider (outside GKE) both are the provider; on GKE the token is for the
/// cluster's workload identity pool and STS gets the pool and the cluster, read from the metadata server.
pub(crate) async fn audiences(
    call: &Call<'_>,
    wip_audience: Option<&str>,
) -> Result<(String, String), CloudError> {
    if let Some(a) = wip_audience {
        return Ok((a.to_string(), a.to_string()));
    }
    let attribute = |name: &'static str, path: &'static str| async move {
        let step = "GKE cluster metadata";
        let (_, body) = metadata_get(call, step, path).await.map_err(|e| {
            call.identity(format!(
                "no '{}' annotation and not on GKE: cannot read the cluster {name} from the metadata server: {e}",
                super::GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION
            ))
        })?;
        let value = String::from_utf8_lossy(&body).trim().to_string();
        if value.is_empty() {
            return Err(call.identity(format!(
                "the metadata server returned an empty GKE cluster {name}"
            )));
        }
        Ok(value)
    };
    let project = attribute("project ID", "/computeMetadata/v1/project/project-id").await?;
    let location = attribute(
        "location",
        "/computeMetadata/v1/instance/attributes/cluster-location",
    )
    .await?;
    let name = attribute(
        "name",
        "/computeMetadata/v1/instance/attributes/cluster-name",
    )
    .await?;
    let pool = format!("{project}.svc.id.goog");
    let provider = format!(
        "https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{name}"
    );
    Ok((pool.clone(), format!("identitynamespace:{pool}:{provider}")))
}

#[derive(Deserialize)]
struct ImpersonationResponse {
    #[serde(rename = "accessToken", default)]
    access_token: String,
    #[serde(rename = "expireTime", default)]
    expire_time: Option<String>,
}

/// STS token exchange of the service-account token (RFC 8693), then, with a Google service account
/// annotated, IAM Credentials `generateAccessToken` for it.
async fn exchange(call: &Call<'_>, account: &AccountToken) -> Result<(String, u64), CloudError> {
    const STS_STEP: &str = "STS token exchange";
    const IAM_STEP: &str = "IAM generateAccessToken";
    let AccountConfig::Gcp { email, .. } = &account.config else {
        return Err(call.identity("the service account settings are not GCP's"));
    };
    let env = call.context.env();
    let base = env
        .get("CLOUDSDK_API_ENDPOINT_OVERRIDES_STS")
        .map(endpoint)
        .unwrap_or_else(|| DEFAULT_STS.to_string());
    let url = format!("{}/v1/token", base.trim_end_matches('/'));
    let both_scopes = format!("{CLOUD_PLATFORM_SCOPE} {USERINFO_EMAIL_SCOPE}");
    let scope = if email.is_some() {
        CLOUD_PLATFORM_SCOPE
    } else {
        both_scopes.as_str()
    };
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", account.exchange_audience.as_str()),
        ("scope", scope),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token", account.token.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ];
    let req = call.http.post(&url).form(&form);
    let (_, body) = call.send(STS_STEP, "POST", &url, req).await?;
    let resp: TokenResponse = json(&body).map_err(|r| call.invalid(STS_STEP, "POST", &url, r))?;
    if resp.access_token.is_empty() {
        return Err(call.invalid(STS_STEP, "POST", &url, "no access_token in response"));
    }
    let ttl = resp.expires_in.unwrap_or(DEFAULT_TTL);
    let Some(email) = email else {
        return Ok((resp.access_token, ttl));
    };
    let base = env
        .get("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS")
        .map(endpoint)
        .unwrap_or_else(|| DEFAULT_IAM_CREDENTIALS.to_string());
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
        base.trim_end_matches('/')
    );
    let body = serde_json::json!({
        "scope": [CLOUD_PLATFORM_SCOPE, USERINFO_EMAIL_SCOPE],
        "lifetime": "3600s",
    });
    let req = call
        .http
        .post(&url)
        .bearer_auth(&resp.access_token)
        .json(&body);
    let (_, body) = call.send(IAM_STEP, "POST", &url, req).await?;
    let resp: ImpersonationResponse =
        json(&body).map_err(|r| call.invalid(IAM_STEP, "POST", &url, r))?;
    if resp.access_token.is_empty() {
        return Err(call.invalid(IAM_STEP, "POST", &url, "no accessToken in response"));
    }
    let ttl = match resp.expire_time.as_deref() {
        Some(t) => super::rfc3339(t)
            .map_err(|r| call.invalid(IAM_STEP, "POST", &url, r))?
            .duration_since(call.context.now())
            .map_or(0, |d| d.as_secs()),
        None => DEFAULT_TTL,
    };
    Ok((resp.access_token, ttl))
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
