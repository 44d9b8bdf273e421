//! Object-level workload identity (`spec.serviceAccountName` with a cloud provider, feature gate
//! `ObjectLevelWorkloadIdentity`): the controller asks the API server for a token of the object's
//! service account (TokenRequest, with the provider's audience), reads the provider settings from the
//! service account's annotations, and exchanges the token with the provider like a pod of that
//! service account would.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use regex::Regex;

use super::{CloudError, CloudProvider};
use crate::options::SourceError;

/// AWS: the IAM role the service account assumes (IRSA's annotation).
pub const AWS_ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// GCP: the Google service account to impersonate (optional; direct access without it).
pub const GCP_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// GCP outside GKE: the workload identity federation provider whose audience the token carries.
pub const GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION: &str =
    "gcp.auth.fluxcd.io/workload-identity-provider";
/// Azure: the Entra ID application (client) ID of the federated identity.
pub const AZURE_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// Azure: the Entra ID tenant of that application.
pub const AZURE_TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// Audience of service-account tokens for AWS STS.
pub const AWS_AUDIENCE: &str = "sts.amazonaws.com";
/// Audience of service-account tokens for the Entra ID token exchange.
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Upstream's role ARN pattern.
const ROLE_ARN_PATTERN: &str = r"^arn:aws[\w-]*:iam::[0-9]{1,30}:role/.{1,200}$";
/// Upstream's Google service account e-mail pattern.
const GSA_PATTERN: &str = r"^[a-zA-Z0-9-]{1,100}@[a-zA-Z0-9-]{1,100}\.iam\.gserviceaccount\.com$";
/// Upstream's workload identity provider pattern.
const WIP_PATTERN: &str =
    r"^projects/\d{1,30}/locations/global/workloadIdentityPools/[^/]{1,100}/providers/[^/]{1,100}$";

/// Upstream's message when the operator's default service account is missing from the namespace.
pub const DEFAULT_SERVICE_ACCOUNT_NOT_FOUND: &str = "the specified default service account does not exist in the object namespace. your cluster is subject to multi-tenant workload identity lockdown, reach out to your cluster administrator for help";

static ROLE_ARN_RE: LazyLock<Result<Regex, regex::Error>> =
    LazyLock::new(|| Regex::new(ROLE_ARN_PATTERN));
static GSA_RE: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| Regex::new(GSA_PATTERN));
static WIP_RE: LazyLock<Result<Regex, regex::Error>> = LazyLock::new(|| Regex::new(WIP_PATTERN));

/// A boxed future (the trait below is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Kubernetes service accounts for object-level workload identity; implemented by the controller
/// over the API server (`get` on `serviceaccounts`, `create` on `serviceaccounts/token`).
pub trait ServiceAccounts: Send + Sync {
    /// The annotations of service account `namespace/name`, or `None` if it does not exist.
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BTreeMap<String, String>>, SourceError>>;

    /// A token of service account `namespace/name` for `audiences` (Kubernetes TokenRequest API).
    fn create_token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audiences: &'a [String],
    ) -> BoxFuture<'a, Result<String, SourceError>>;
}

/// Object-level workload identity settings of the controller (from its flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectLevelIdentity {
    /// Feature gate `ObjectLevelWorkloadIdentity`.
    pub enabled: bool,
    /// `--default-service-account`: used by cloud-provider objects without `serviceAccountName`
    /// (multi-tenant lockdown); only with the gate on.
    pub default_service_account: Option<String>,
}

/// The provider settings a service account's annotations carry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum AccountConfig {
    /// IAM role to assume.
    Aws {
        /// Role ARN.
        role_arn: String,
    },
    /// Google: optional service account to impersonate; optional federation provider (else GKE).
    Gcp {
        /// Google service account e-mail.
        email: Option<String>,
        /// `//iam.googleapis.com/projects/.../providers/...` outside GKE.
        wip_audience: Option<String>,
    },
    /// Entra ID application.
    Azure {
        /// Tenant ID.
        tenant_id: String,
        /// Client ID.
        client_id: String,
    },
}

impl fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cache_part())
    }
}

impl AccountConfig {
    /// The part of the cache key that names the cloud identity (no secrets: annotation values).
    pub(crate) fn cache_part(&self) -> String {
        match self {
            AccountConfig::Aws { role_arn } => format!("role={role_arn}"),
            AccountConfig::Gcp {
                email,
                wip_audience,
            } => format!(
                "gsa={};wip={}",
                email.as_deref().unwrap_or(""),
                wip_audience.as_deref().unwrap_or("")
            ),
            AccountConfig::Azure {
                tenant_id,
                client_id,
            } => format!("tenant={tenant_id};client={client_id}"),
        }
    }

    /// Reads `provider`'s annotations of service account `sa` (`namespace/name`).
    pub(crate) fn from_annotations(
        provider: CloudProvider,
        sa: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<AccountConfig, CloudError> {
        let err = |reason: String| CloudError::Identity {
            provider,
            reason: format!("service account '{sa}': {reason}"),
        };
        let get = |key: &str| {
            annotations
                .get(key)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let missing =
            |key: &str, what: &str| err(format!("annotation '{key}' is not set: set it to {what}"));
        let check =
            |key: &str, value: &str, re: &LazyLock<Result<Regex, regex::Error>>, pattern| {
                if re.as_ref().is_ok_and(|re| re.is_match(value)) {
                    Ok(())
                } else {
                    Err(err(format!(
                        "invalid annotation '{key}': '{value}' must match {pattern}"
                    )))
                }
            };
        match provider {
            CloudProvider::Aws => {
                let key = AWS_ROLE_ARN_ANNOTATION;
                let arn =
                    get(key).ok_or_else(|| missing(key, "the ARN of the IAM role to assume"))?;
                check(key, arn, &ROLE_ARN_RE, ROLE_ARN_PATTERN)?;
                Ok(AccountConfig::Aws {
                    role_arn: arn.to_string(),
                })
            }
            CloudProvider::Gcp => {
                let email = get(GCP_SERVICE_ACCOUNT_ANNOTATION);
                if let Some(e) = email {
                    check(GCP_SERVICE_ACCOUNT_ANNOTATION, e, &GSA_RE, GSA_PATTERN)?;
                }
                let wip = get(GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION);
                if let Some(w) = wip {
                    check(
                        GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION,
                        w,
                        &WIP_RE,
                        WIP_PATTERN,
                    )?;
                }
                Ok(AccountConfig::Gcp {
                    email: email.map(str::to_string),
                    wip_audience: wip.map(|w| format!("//iam.googleapis.com/{w}")),
                })
            }
            CloudProvider::Azure => {
                let tenant = get(AZURE_TENANT_ID_ANNOTATION)
                    .ok_or_else(|| missing(AZURE_TENANT_ID_ANNOTATION, "the Entra ID tenant ID"))?;
                let client = get(AZURE_CLIENT_ID_ANNOTATION).ok_or_else(|| {
                    missing(
                        AZURE_CLIENT_ID_ANNOTATION,
                        "the client ID of the federated identity",
                    )
                })?;
                Ok(AccountConfig::Azure {
                    tenant_id: tenant.to_string(),
                    client_id: client.to_string(),
                })
            }
        }
    }
}

/// A service-account token obtained from the API server, with what the exchange needs.
pub(crate) struct AccountToken {
    /// The JWT (never logged).
    pub(crate) token: String,
    /// `namespace`.
    pub(crate) namespace: String,
    /// `name`.
    pub(crate) name: String,
    /// Provider settings from the annotations.
    pub(crate) config: AccountConfig,
    /// GCP: the STS audience (differs from the token's on GKE); empty for the others.
    pub(crate) exchange_audience: String,
}

impl fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AccountToken({}/{}, {:?}, ***)",
            self.namespace, self.name, self.config
        )
    }
}

/// Turns an API error of the TokenRequest into a [`CloudError`] naming the service account.
pub(crate) fn token_request_error(provider: CloudProvider, sa: &str, e: SourceError) -> CloudError {
    CloudError::Identity {
        provider,
        reason: format!("failed to create kubernetes token for service account '{sa}': {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations() {
        let aws =
            |pairs| AccountConfig::from_annotations(CloudProvider::Aws, "apps/sa", &ann(pairs));
        assert_eq!(
            aws(&[(
                AWS_ROLE_ARN_ANNOTATION,
                "arn:aws:iam::123456789012:role/puller"
            )])
            .unwrap(),
            AccountConfig::Aws {
                role_arn: "arn:aws:iam::123456789012:role/puller".into()
            }
        );
        assert_eq!(
            aws(&[]).unwrap_err().to_string(),
            "provider 'aws': service account 'apps/sa': annotation 'eks.amazonaws.com/role-arn' is not set: set it to the ARN of the IAM role to assume"
        );
        assert!(
            aws(&[(AWS_ROLE_ARN_ANNOTATION, "puller")])
                .unwrap_err()
                .to_string()
                .contains(
                    "invalid annotation 'eks.amazonaws.com/role-arn': 'puller' must match ^arn:aws"
                )
        );
        let gcp =
            |pairs| AccountConfig::from_annotations(CloudProvider::Gcp, "apps/sa", &ann(pairs));
        assert_eq!(
            gcp(&[]).unwrap(),
            AccountConfig::Gcp {
                email: None,
                wip_audience: None
            }
        );
        assert_eq!(
            gcp(&[
                (GCP_SERVICE_ACCOUNT_ANNOTATION, "puller@proj.iam.gserviceaccount.com"),
                (
                    GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION,
                    "projects/123/locations/global/workloadIdentityPools/p/providers/k"
                )
            ])
            .unwrap(),
            AccountConfig::Gcp {
                email: Some("puller@proj.iam.gserviceaccount.com".into()),
                wip_audience: Some(
                    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/k"
                        .into()
                )
            }
        );
        assert!(gcp(&[(GCP_SERVICE_ACCOUNT_ANNOTATION, "x@gmail.com")]).is_err());
        assert!(gcp(&[(GCP_WORKLOAD_IDENTITY_PROVIDER_ANNOTATION, "pools/x")]).is_err());
        let azure =
            |pairs| AccountConfig::from_annotations(CloudProvider::Azure, "apps/sa", &ann(pairs));
        assert_eq!(
            azure(&[(AZURE_TENANT_ID_ANNOTATION, "t")])
                .unwrap_err()
                .to_string(),
            "provider 'azure': service account 'apps/sa': annotation 'azure.workload.identity/client-id' is not set: set it to the client ID of the federated identity"
        );
        assert!(
            azure(&[(AZURE_CLIENT_ID_ANNOTATION, "c")])
                .unwrap_err()
                .to_string()
                .contains("'azure.workload.identity/tenant-id' is not set")
        );
        assert_eq!(
            azure(&[
                (AZURE_CLIENT_ID_ANNOTATION, "c"),
                (AZURE_TENANT_ID_ANNOTATION, "t")
            ])
            .unwrap()
            .cache_part(),
            "tenant=t;client=c"
        );
    }
}
