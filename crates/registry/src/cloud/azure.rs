//! Azure: an AAD access token of the controller's identity (federated workload identity, or IMDS),
//! exchanged at the registry's `/oauth2/exchange` for an ACR refresh token, which is the password of the
//! null-GUID user.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use regex::Regex;
use serde::Deserialize;

use super::workload::{AccountConfig, AccountToken};
use super::{Call, CloudError, CloudProvider, Issued, json};
use crate::keychain::Credential;
use crate::reference::ImageRef;

/// ACR host pattern (reflector spec §1.7).
pub(crate) const ACR_PATTERN: &str = r"^.+\.(azurecr\.io|azurecr\.cn|azurecr\.de|azurecr\.us)$";
/// User name that goes with an ACR refresh token.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// Default AAD authority.
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// Default IMDS endpoint.
const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// ACR refresh tokens live 3 h; used when the token carries no readable `exp`.
const DEFAULT_REFRESH_TTL: u64 = 3 * 3600;
/// AAD token lifetime when the response gives none.
const DEFAULT_AAD_TTL: u64 = 3600;

static ACR_RE: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| Regex::new(ACR_PATTERN));

/// The cache scope: a refresh token is good for one registry.
pub(crate) fn cache_scope(registry: &str) -> Result<String, CloudError> {
    if !ACR_RE.as_ref().is_ok_and(|re| re.is_match(registry)) {
        return Err(CloudError::UnsupportedRegistry {
            provider: CloudProvider::Azure,
            registry: registry.to_string(),
            pattern: ACR_PATTERN,
        });
    }
    Ok(registry.to_string())
}

/// The ARM resource whose token ACR accepts, per sovereign cloud.
fn resource(registry: &str) -> &'static str {
    if registry.ends_with(".azurecr.cn") {
        "https://management.chinacloudapi.cn/"
    } else if registry.ends_with(".azurecr.us") {
        "https://management.usgovcloudapi.net/"
    } else if registry.ends_with(".azurecr.de") {
        "https://management.microsoftazure.de/"
    } else {
        "https://management.azure.com/"
    }
}

#[derive(Deserialize)]
struct AadResponse {
    #[serde(default)]
    access_token: String,
    /// A number from AAD, a string from IMDS.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ExchangeResponse {
    #[serde(default)]
    refresh_token: String,
}

/// The ACR credential for `image`'s registry, with the controller's identity or, given `account`,
/// the federated identity of that service account.
pub(crate) async fn registry_credential(
    call: &Call<'_>,
    image: &ImageRef,
    account: Option<&AccountToken>,
) -> Result<Issued, CloudError> {
    const STEP: &str = "ACR token exchange";
    let registry = image.registry();
    let federated = federated_identity(call, account)?;
    let (aad, aad_expiry) = aad_token(call, resource(registry), federated.as_ref()).await?;
    let scheme = if image.insecure() { "http" } else { "https" };
    let url = format!("{scheme}://{registry}/oauth2/exchange");
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", registry),
        ("access_token", aad.as_str()),
    ];
    let tenant = match &federated {
        Some(f) => Some(f.tenant),
        None => call.context.env().get("AZURE_TENANT_ID"),
    };
    if let Some(t) = tenant {
        form.push(("tenant", t));
    }
    let req = call.http.post(&url).form(&form);
    let (_, body) = call.send(STEP, "POST", &url, req).await?;
    let resp: ExchangeResponse = json(&body).map_err(|r| call.invalid(STEP, "POST", &url, r))?;
    if resp.refresh_token.is_empty() {
        return Err(call.invalid(STEP, "POST", &url, "no refresh_token in response"));
    }
    let expires_at =
        jwt_expiry(&resp.refresh_token).unwrap_or_else(|| call.expires_in(DEFAULT_REFRESH_TTL));
    Ok(Issued {
        credential: Credential::Basic {
            username: ACR_USERNAME.to_string(),
            password: resp.refresh_token,
        },
        // The refresh token is minted from the AAD token; never keep it past either.
        expires_at: expires_at.min(aad_expiry.max(call.context.now())),
    })
}

/// A federated identity: a service-account token (the client assertion) and the application it
/// stands for.
struct Federated<'a> {
    assertion: String,
    client: &'a str,
    tenant: &'a str,
}

/// The service account's federated identity, else the controller's when its three variables are set.
fn federated_identity<'a>(
    call: &'a Call<'_>,
    account: Option<&'a AccountToken>,
) -> Result<Option<Federated<'a>>, CloudError> {
    if let Some(a) = account {
        let AccountConfig::Azure {
            tenant_id,
            client_id,
        } = &a.config
        else {
            return Err(call.identity("the service account settings are not Azure's"));
        };
        return Ok(Some(Federated {
            assertion: a.token.clone(),
            client: client_id,
            tenant: tenant_id,
        }));
    }
    let env = call.context.env();
    let (Some(file), Some(client), Some(tenant)) = (
        env.get("AZURE_FEDERATED_TOKEN_FILE"),
        env.get("AZURE_CLIENT_ID"),
        env.get("AZURE_TENANT_ID"),
    ) else {
        return Ok(None);
    };
    Ok(Some(Federated {
        assertion: call.read_token_file("AZURE_FEDERATED_TOKEN_FILE", file)?,
        client,
        tenant,
    }))
}

/// An AAD access token for `resource`: the federated identity's client-assertion exchange, otherwise
/// the instance's managed identity through IMDS.
async fn aad_token(
    call: &Call<'_>,
    resource: &str,
    federated: Option<&Federated<'_>>,
) -> Result<(String, SystemTime), CloudError> {
    let env = call.context.env();
    let (step, method, url, req) = if let Some(Federated {
        assertion,
        client,
        tenant,
    }) = federated
    {
        let authority = env.get("AZURE_AUTHORITY_HOST").unwrap_or(DEFAULT_AUTHORITY);
        let url = format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        );
        let scope = format!("{resource}.default");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", *client),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let req = call.http.post(&url).form(&form);
        ("AAD workload identity token", "POST", url, req)
    } else {
        let base = env
            .get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
            .unwrap_or(DEFAULT_IMDS)
            .trim_end_matches('/');
        let url = format!("{base}/metadata/identity/oauth2/token");
        let mut query = vec![
            ("api-version", "2018-02-01"),
            ("resource", imds_resource(resource)),
        ];
        if let Some(c) = env.get("AZURE_CLIENT_ID") {
            query.push(("client_id", c));
        }
        let req = call.http.get(&url).query(&query).header("metadata", "true");
        ("IMDS managed identity token", "GET", url, req)
    };
    let (_, body) = call.send(step, method, &url, req).await?;
    let resp: AadResponse = json(&body).map_err(|r| call.invalid(step, method, &url, r))?;
    if resp.access_token.is_empty() {
        return Err(call.invalid(step, method, &url, "no access_token in response"));
    }
    let ttl = match resp.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(DEFAULT_AAD_TTL);
    Ok((resp.access_token, call.expires_in(ttl)))
}

/// The IMDS `resource` for a token resource: URLs as they are, an application ID (e.g. Azure DevOps'
/// `499b84ac-…`) without the trailing `/` that only its scope form (`<id>/.default`) carries.
fn imds_resource(resource: &str) -> &str {
    if resource.contains("://") {
        resource
    } else {
        resource.trim_end_matches('/')
    }
}

/// An AAD access token for `scope` (`<resource>/.default`) of the service account's federated
/// identity (`account`), else the controller's (federated workload identity, else IMDS), with its
/// expiry. Endpoints as for ACR.
pub(crate) async fn access_token(
    call: &Call<'_>,
    scope: &str,
    account: Option<&AccountToken>,
) -> Result<(String, SystemTime), CloudError> {
    let federated = federated_identity(call, account)?;
    aad_token(
        call,
        scope.strip_suffix(".default").unwrap_or(scope),
        federated.as_ref(),
    )
    .await
}

/// The `exp` claim of a JWT, read without verification (only to schedule the refresh).
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(cache_scope("myreg.azurecr.io").is_ok());
        assert!(cache_scope("myreg.azurecr.cn").is_ok());
        assert!(cache_scope("azurecr.io").is_err());
        assert!(cache_scope("myreg.azurecr.io.evil").is_err());
        assert_eq!(
            resource("a.azurecr.cn"),
            "https://management.chinacloudapi.cn/"
        );
    }

    #[test]
    fn imds_resources() {
        assert_eq!(
            imds_resource("https://management.azure.com/"),
            "https://management.azure.com/"
        );
        assert_eq!(
            imds_resource("499b84ac-1321-427f-aa17-267ca6975798/"),
            "499b84ac-1321-427f-aa17-267ca6975798"
        );
    }

    #[test]
    fn jwt() {
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1700000000}"#);
        let t = format!("h.{payload}.s");
        assert_eq!(
            jwt_expiry(&t),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(jwt_expiry("opaque"), None);
    }
}
