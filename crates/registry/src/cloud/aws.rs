//! AWS: controller credentials from static keys, IRSA (STS `AssumeRoleWithWebIdentity`), EKS Pod
//! Identity or IMDSv2, then ECR `GetAuthorizationToken` (SigV4-signed with `aws-sigv4`) for private
//! registries and ECR Public's for `public.ecr.aws`.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use regex::Regex;
use serde::Deserialize;

use super::workload::{AccountConfig, AccountToken};
use super::{Call, CloudError, CloudProvider, Issued, endpoint, json, rfc3339};
use crate::keychain::Credential;

/// Private ECR host pattern: reflector spec §1.7's, anchored and with a 12-digit account. Upstream's
/// pattern also matches `<ecr host>.attacker.example`, which would hand the controller's ECR token to
/// that host; a full match proves the host is ECR's.
pub(crate) const ECR_PATTERN: &str = r"^([0-9]{12})\.dkr[.-]ecr(?:-fips)?\.([a-z0-9-]+)\.(amazonaws\.com(?:\.cn)?|amazonaws\.eu|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov|on\.aws)$";
/// ECR Public's registry host.
pub(crate) const PUBLIC_ECR_HOST: &str = "public.ecr.aws";
/// ECR Public's only region.
const PUBLIC_ECR_REGION: &str = "us-east-1";
/// Default IMDS endpoint.
const DEFAULT_IMDS: &str = "http://169.254.169.254";
/// IMDSv2 session token lifetime asked for.
const IMDS_TOKEN_TTL: &str = "21600";
/// ECR tokens live 12 h; used when the response has no expiry.
const ECR_TOKEN_TTL: u64 = 12 * 3600;
/// Role session name when `AWS_ROLE_SESSION_NAME` is unset.
const DEFAULT_SESSION_NAME: &str = "image-reflector-controller";

static ECR_RE: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| Regex::new(ECR_PATTERN));

/// A private ECR registry host, split.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EcrHost {
    /// Account ID.
    pub(crate) account: String,
    /// Region.
    pub(crate) region: String,
    /// DNS suffix, e.g. `amazonaws.com` or `amazonaws.com.cn`.
    pub(crate) domain: String,
    /// Whether the FIPS endpoint is used.
    pub(crate) fips: bool,
}

/// Parses a private ECR host; `None` when it does not match [`ECR_PATTERN`].
pub(crate) fn parse_ecr_host(registry: &str) -> Option<EcrHost> {
    let re = ECR_RE.as_ref().ok()?;
    let caps = re.captures(registry)?;
    Some(EcrHost {
        account: caps.get(1)?.as_str().to_string(),
        region: caps.get(2)?.as_str().to_string(),
        domain: caps.get(3)?.as_str().to_string(),
        fips: registry.contains("ecr-fips."),
    })
}

/// The cache scope: a token is good for one account and region (or ECR Public).
pub(crate) fn cache_scope(registry: &str) -> Result<String, CloudError> {
    if registry == PUBLIC_ECR_HOST {
        return Ok(PUBLIC_ECR_HOST.to_string());
    }
    match parse_ecr_host(registry) {
        Some(h) => Ok(format!("{}.{}", h.account, h.region)),
        None => Err(CloudError::UnsupportedRegistry {
            provider: CloudProvider::Aws,
            registry: registry.to_string(),
            pattern: ECR_PATTERN,
        }),
    }
}

/// AWS credentials for signing.
#[derive(Clone)]
pub(crate) struct AwsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCredentials({}, ***)", self.access_key_id)
    }
}

/// The registry credential for an ECR or ECR Public host, with the controller's identity or, given
/// `account`, the role of that service account.
pub(crate) async fn registry_credential(
    call: &Call<'_>,
    registry: &str,
    account: Option<&AccountToken>,
) -> Result<Issued, CloudError> {
    let env = call.context.env();
    if registry == PUBLIC_ECR_HOST {
        let creds = identity_credentials(call, account, PUBLIC_ECR_REGION, "amazonaws.com").await?;
        let url = env
            .get("AWS_ENDPOINT_URL_ECR_PUBLIC")
            .map(endpoint)
            .unwrap_or_else(|| {
                format!("https://api.ecr-public.{PUBLIC_ECR_REGION}.amazonaws.com/")
            });
        let body = ecr_call(
            call,
            &creds,
            &url,
            "ecr-public",
            PUBLIC_ECR_REGION,
            "SpencerFrontendService.GetAuthorizationToken",
            "ECR Public GetAuthorizationToken",
        )
        .await?;
        let resp: PublicTokenResponse = json(&body)
            .map_err(|r| call.invalid("ECR Public GetAuthorizationToken", "POST", &url, r))?;
        return decode_token(
            call,
            &url,
            "ECR Public GetAuthorizationToken",
            resp.authorization_data,
        );
    }
    let host = parse_ecr_host(registry).ok_or_else(|| CloudError::UnsupportedRegistry {
        provider: CloudProvider::Aws,
        registry: registry.to_string(),
        pattern: ECR_PATTERN,
    })?;
    let creds = identity_credentials(call, account, &host.region, &host.domain).await?;
    let url = env
        .get("AWS_ENDPOINT_URL_ECR")
        .map(endpoint)
        .unwrap_or_else(|| {
            if host.fips {
                format!("https://ecr-fips.{}.{}/", host.region, host.domain)
            } else {
                format!("https://api.ecr.{}.{}/", host.region, host.domain)
            }
        });
    let body = ecr_call(
        call,
        &creds,
        &url,
        "ecr",
        &host.region,
        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        "ECR GetAuthorizationToken",
    )
    .await?;
    let resp: PrivateTokenResponse =
        json(&body).map_err(|r| call.invalid("ECR GetAuthorizationToken", "POST", &url, r))?;
    let data = resp.authorization_data.into_iter().next().ok_or_else(|| {
        call.invalid(
            "ECR GetAuthorizationToken",
            "POST",
            &url,
            "no authorizationData in response",
        )
    })?;
    decode_token(call, &url, "ECR GetAuthorizationToken", data)
}

#[derive(Deserialize)]
struct AuthorizationData {
    #[serde(rename = "authorizationToken", default)]
    authorization_token: String,
    /// Epoch seconds (the JSON protocol's timestamp format).
    #[serde(rename = "expiresAt", default)]
    expires_at: Option<f64>,
}

#[derive(Deserialize)]
struct PrivateTokenResponse {
    #[serde(rename = "authorizationData", default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
struct PublicTokenResponse {
    #[serde(rename = "authorizationData")]
    authorization_data: AuthorizationData,
}

/// Decodes `base64(user:password)` into basic credentials with the token's expiry.
fn decode_token(
    call: &Call<'_>,
    url: &str,
    step: &'static str,
    data: AuthorizationData,
) -> Result<Issued, CloudError> {
    let bad = |r: &str| call.invalid(step, "POST", url, r);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token.trim())
        .map_err(|_| bad("authorizationToken is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("authorizationToken is not UTF-8"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| bad("authorizationToken is not 'user:password'"))?;
    if username.is_empty() || password.is_empty() {
        return Err(bad("authorizationToken has an empty user or password"));
    }
    let expires_at = match data.expires_at {
        Some(secs) if secs.is_finite() && secs > 0.0 => {
            SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
        }
        _ => call.expires_in(ECR_TOKEN_TTL),
    };
    Ok(Issued {
        credential: Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        },
        expires_at,
    })
}

/// POSTs `{}` to an ECR JSON API, signed with SigV4.
async fn ecr_call(
    call: &Call<'_>,
    creds: &AwsCredentials,
    url: &str,
    service: &str,
    region: &str,
    target: &str,
    step: &'static str,
) -> Result<Vec<u8>, CloudError> {
    let body = b"{}";
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let signed = sign(creds, "POST", url, &headers, body, service, region)
        .map_err(|r| call.invalid(step, "POST", url, format!("cannot sign request: {r}")))?;
    let mut req = call.http.post(url).body(body.to_vec());
    for (k, v) in headers.iter() {
        req = req.header(*k, *v);
    }
    for (k, v) in signed {
        req = req.header(k, v);
    }
    Ok(call.send(step, "POST", url, req).await?.1)
}

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) for a request.
pub(crate) fn sign(
    creds: &AwsCredentials,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
    region: &str,
) -> Result<Vec<(String, String)>, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        creds.expires_at,
        "image-reflector-controller",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    // aws-sigv4 traces the canonical request, session token included: sign with logging off.
    let signed =
        tracing::dispatcher::with_default(&tracing::Dispatch::none(), || sign(signable, &params));
    let (instructions, _) = signed.map_err(|e| e.to_string())?.into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Credentials of the service account's role (STS in the registry's region, as upstream) or, without
/// `account`, the controller's.
async fn identity_credentials(
    call: &Call<'_>,
    account: Option<&AccountToken>,
    region: &str,
    domain: &str,
) -> Result<AwsCredentials, CloudError> {
    let Some(account) = account else {
        return credentials(call, region, domain).await;
    };
    let AccountConfig::Aws { role_arn } = &account.config else {
        return Err(call.identity("the service account settings are not AWS's"));
    };
    // Upstream's session name; STS allows at most 64 characters.
    let session: String = format!("{}.{}.{region}.fluxcd.io", account.name, account.namespace)
        .chars()
        .take(64)
        .collect();
    assume_role(call, &account.token, role_arn, &session, region, domain).await
}

/// The controller's AWS credentials, in the SDK's order: environment keys, web identity (IRSA), container
/// credentials (EKS Pod Identity), then IMDSv2.
pub(crate) async fn credentials(
    call: &Call<'_>,
    registry_region: &str,
    domain: &str,
) -> Result<AwsCredentials, CloudError> {
    let env = call.context.env();
    if let (Some(id), Some(secret)) = (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(AwsCredentials {
            access_key_id: id.to_string(),
            secret_access_key: secret.to_string(),
            session_token: env.get("AWS_SESSION_TOKEN").map(str::to_string),
            expires_at: None,
        });
    }
    if let (Some(file), Some(role)) = (
        env.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
        env.get("AWS_ROLE_ARN"),
    ) {
        let region = env
            .get("AWS_REGION")
            .or_else(|| env.get("AWS_DEFAULT_REGION"))
            .unwrap_or(registry_region);
        return web_identity(call, file, role, region, domain).await;
    }
    if let Some(uri) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        return container(call, uri).await;
    }
    if env
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(call.identity(
            "no AWS credentials: set up IRSA (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) or EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI); IMDS is disabled",
        ));
    }
    imds(call).await
}

/// IRSA: STS `AssumeRoleWithWebIdentity` with the projected service-account token file.
async fn web_identity(
    call: &Call<'_>,
    file: &str,
    role: &str,
    region: &str,
    domain: &str,
) -> Result<AwsCredentials, CloudError> {
    let token = call.read_token_file("AWS_WEB_IDENTITY_TOKEN_FILE", file)?;
    let session = call
        .context
        .env()
        .get("AWS_ROLE_SESSION_NAME")
        .unwrap_or(DEFAULT_SESSION_NAME);
    assume_role(call, &token, role, session, region, domain).await
}

/// STS `AssumeRoleWithWebIdentity` with a service-account token (unsigned, query API).
async fn assume_role(
    call: &Call<'_>,
    token: &str,
    role: &str,
    session: &str,
    region: &str,
    domain: &str,
) -> Result<AwsCredentials, CloudError> {
    const STEP: &str = "STS AssumeRoleWithWebIdentity";
    let url = call
        .context
        .env()
        .get("AWS_ENDPOINT_URL_STS")
        .map(endpoint)
        .unwrap_or_else(|| format!("https://sts.{region}.{domain}/"));
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session),
        ("WebIdentityToken", token),
    ];
    let req = call.http.post(&url).form(&form);
    let (_, body) = call.send(STEP, "POST", &url, req).await?;
    parse_sts(&body).map_err(|r| call.invalid(STEP, "POST", &url, r))
}

/// Reads `Credentials` of an `AssumeRoleWithWebIdentityResponse` XML document.
fn parse_sts(body: &[u8]) -> Result<AwsCredentials, String> {
    let text = std::str::from_utf8(body).map_err(|_| "response is not UTF-8".to_string())?;
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("invalid XML response: {e}"))?;
    let creds = doc
        .descendants()
        .find(|n| n.has_tag_name("Credentials"))
        .ok_or_else(|| "no Credentials element in response".to_string())?;
    let field = |name: &str| {
        creds
            .children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("no Credentials/{name} in response"))
    };
    Ok(AwsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
        expires_at: Some(rfc3339(&field("Expiration")?)?),
    })
}

/// The JSON shape of container and IMDS credentials.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonCredentials {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

fn from_json(body: &[u8]) -> Result<AwsCredentials, String> {
    let c: JsonCredentials = json(body)?;
    if let Some(code) = c.code.as_deref().filter(|c| *c != "Success") {
        return Err(format!("credentials not available: Code {code}"));
    }
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
        return Err("no AccessKeyId or SecretAccessKey in response".to_string());
    }
    Ok(AwsCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: c.token.filter(|t| !t.is_empty()),
        expires_at: c.expiration.as_deref().map(rfc3339).transpose()?,
    })
}

/// EKS Pod Identity (container credentials): GET the full URI with the agent token.
async fn container(call: &Call<'_>, uri: &str) -> Result<AwsCredentials, CloudError> {
    const STEP: &str = "EKS Pod Identity credentials";
    let env = call.context.env();
    let token = match (
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    ) {
        (Some(file), _) => {
            Some(call.read_token_file("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", file)?)
        }
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => None,
    };
    let uri = &endpoint(uri);
    let mut req = call.http.get(uri);
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    let (_, body) = call.send(STEP, "GET", uri, req).await?;
    from_json(&body).map_err(|r| call.invalid(STEP, "GET", uri, r))
}

/// IMDSv2: session token (PUT), role name, then the role's credentials.
async fn imds(call: &Call<'_>) -> Result<AwsCredentials, CloudError> {
    const STEP: &str = "IMDS credentials";
    let base = call
        .context
        .env()
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or(DEFAULT_IMDS)
        .trim_end_matches('/')
        .to_string();
    let token_url = format!("{base}/latest/api/token");
    let req = call
        .http
        .put(&token_url)
        .header("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL);
    let (_, token) = call
        .send("IMDS session token", "PUT", &token_url, req)
        .await?;
    let token = String::from_utf8(token).map_err(|_| {
        call.invalid(
            "IMDS session token",
            "PUT",
            &token_url,
            "token is not UTF-8",
        )
    })?;
    let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
    let req = call
        .http
        .get(&roles_url)
        .header("x-aws-ec2-metadata-token", token.trim());
    let (_, roles) = call.send(STEP, "GET", &roles_url, req).await?;
    let roles = String::from_utf8_lossy(&roles);
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or_else(|| {
            call.invalid(
                STEP,
                "GET",
                &roles_url,
                "no IAM role attached to the instance",
            )
        })?
        .to_string();
    let creds_url = format!("{roles_url}{role}");
    let req = call
        .http
        .get(&creds_url)
        .header("x-aws-ec2-metadata-token", token.trim());
    let (_, body) = call.send(STEP, "GET", &creds_url, req).await?;
    from_json(&body).map_err(|r| call.invalid(STEP, "GET", &creds_url, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let h = parse_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            h,
            EcrHost {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                domain: "amazonaws.com".into(),
                fips: false
            }
        );
        let h = parse_ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").unwrap();
        assert!(h.fips);
        let h = parse_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").unwrap();
        assert_eq!(h.domain, "amazonaws.com.cn");
        assert!(parse_ecr_host("123456789012.dkr-ecr.eu-west-1.on.aws").is_some());
        assert!(parse_ecr_host("ghcr.io").is_none());
        // Never a look-alike: the controller's ECR token would go to that host.
        assert!(
            parse_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com.attacker.example")
                .is_none()
        );
        assert!(parse_ecr_host("x123456789012.dkr.ecr.us-east-1.amazonaws.com").is_none());
        assert!(parse_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.cn").is_none());
        assert!(parse_ecr_host("127.0.0.1:5000").is_none());
        assert_eq!(cache_scope("public.ecr.aws").unwrap(), "public.ecr.aws");
        assert!(cache_scope("gcr.io").is_err());
    }

    #[test]
    fn sts_xml() {
        let xml = br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials>
    <AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>s&amp;k</SecretAccessKey>
    <SessionToken>tok</SessionToken><Expiration>2026-11-22T20:00:00Z</Expiration>
  </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let c = parse_sts(xml).unwrap();
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(c.secret_access_key, "s&k");
        assert!(c.expires_at.is_some());
        assert!(!format!("{c:?}").contains("s&k"));
        assert!(parse_sts(b"<x/>").unwrap_err().contains("no Credentials"));
        assert!(parse_sts(b"nope").unwrap_err().contains("invalid XML"));
    }

    #[test]
    fn signing() {
        let c = AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: Some("st".into()),
            expires_at: None,
        };
        let h = sign(
            &c,
            "POST",
            "https://api.ecr.us-east-1.amazonaws.com/",
            &[("x-amz-target", "T")],
            b"{}",
            "ecr",
            "us-east-1",
        )
        .unwrap();
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/ecr/aws4_request"), "{auth}");
        assert!(auth.contains("x-amz-target"), "{auth}");
        assert!(
            h.iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "st")
        );
    }
}
