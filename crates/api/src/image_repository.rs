//! `ImageRepository` (image.toolkit.fluxcd.io/v1): a container image repository to scan for tags.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{DurationError, parse_go_duration};
use crate::refs::{AccessFrom, LocalObjectReference};

/// Reason: the repository's image address cannot be parsed (ImageRepository and ImagePolicy).
pub const IMAGE_URL_INVALID_REASON: &str = "ImageURLInvalid";
/// Reason: the registry credentials could not be assembled.
pub const AUTHENTICATION_FAILED_REASON: &str = "AuthenticationFailed";
/// Reason: listing tags (or storing them) failed.
pub const READ_OPERATION_FAILED_REASON: &str = "ReadOperationFailed";
/// Reason: an internal failure such as a tag-database error (Kubernetes' `StatusFailure`),
/// used by ImageRepository and ImagePolicy.
pub const FAILURE_REASON: &str = "Failure";

/// Exclusion list used when `spec.exclusionList` is empty: drop cosign signature tags.
pub const DEFAULT_EXCLUSION_LIST: &[&str] = &["^.*\\.sig$"];
/// Maximum number of entries in `spec.exclusionList`.
pub const MAX_EXCLUSION_LIST_LEN: usize = 25;
/// Lower bound of the effective scan timeout.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Desired state of an ImageRepository.
// clippy mistakes the repeated `type_ = ...` of printer columns for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "image.toolkit.fluxcd.io",
    version = "v1",
    kind = "ImageRepository",
    doc = "An image repository scanned for tags by image-reflector-controller.",
    plural = "imagerepositories",
    singular = "imagerepository",
    namespaced,
    status = "ImageRepositoryStatus",
    derive = "PartialEq",
    shortname = "imgrepo",
    shortname = "imagerepo",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-images",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Tags",
        type_ = "string",
        json_path = ".status.lastScanResult.tagCount"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#
    ),
    printcolumn(
        name = "Last scan",
        type_ = "string",
        json_path = ".status.lastScanResult.scanTime",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositorySpec {
    /// Image repository to scan, without scheme, tag or digest (e.g. `ghcr.io/stefanprodan/podinfo`).
    pub image: String,

    /// How often to scan the repository, as a Go duration (e.g. `5m`).
    #[schemars(regex(pattern = crate::duration::INTERVAL_PATTERN))]
    pub interval: String,

    /// Timeout for building credentials and scanning; defaults to the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::duration::TIMEOUT_PATTERN))]
    pub timeout: Option<String>,

    /// Secret (same namespace) of type `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`
    /// holding registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// Secret (same namespace) with `address`, `username` and `password` of an HTTP(S) or SOCKS5
    /// proxy used for registry calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,

    /// Service account whose image pull secrets are used (generic provider), or whose workload
    /// identity is used (cloud providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// Secret (same namespace) with `tls.crt`/`tls.key` for client authentication and/or `ca.crt`
    /// to trust the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,

    /// Stop scanning while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Namespaces whose ImagePolicies may refer to this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<AccessFrom>,

    /// Regular expressions; a tag matching any of them is not stored. Defaults to `["^.*\\.sig$"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 25), extend("default" = ["^.*\\.sig$"]))]
    pub exclusion_list: Vec<String>,

    /// Cloud provider whose credentials are used for the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "generic"))]
    pub provider: Option<RegistryProvider>,

    /// Use plain HTTP to talk to the registry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Source of registry credentials.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistryProvider {
    /// Credentials from `secretRef` and the service account's image pull secrets.
    #[default]
    Generic,
    /// Amazon ECR.
    Aws,
    /// Azure Container Registry.
    Azure,
    /// Google Artifact Registry / Container Registry.
    Gcp,
}

impl RegistryProvider {
    /// The provider's name as written in `spec.provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Aws => "aws",
            Self::Azure => "azure",
            Self::Gcp => "gcp",
        }
    }
}

impl ImageRepositorySpec {
    /// The scan interval.
    pub fn interval(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.interval)
    }

    /// The scan timeout: `timeout`, else `interval`, never less than one second.
    pub fn get_timeout(&self) -> Result<Duration, DurationError> {
        let d = parse_go_duration(self.timeout.as_deref().unwrap_or(&self.interval))?;
        Ok(d.max(MIN_TIMEOUT))
    }

    /// The exclusion regexes in force: the user's list, or the default when it is empty.
    pub fn get_exclusion_list(&self) -> Vec<String> {
        if self.exclusion_list.is_empty() {
            DEFAULT_EXCLUSION_LIST
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        } else {
            self.exclusion_list.clone()
        }
    }

    /// The credential provider, `generic` when unset.
    pub fn provider(&self) -> RegistryProvider {
        self.provider.unwrap_or_default()
    }
}

/// Observed state of an ImageRepository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRepositoryStatus {
    /// Generation of the spec last reconciled to Ready or Stalled; -1 before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling` and `Stalled` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Canonical form of `spec.image`, e.g. `index.docker.io/library/alpine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_image_name: Option<String>,

    /// Result of the last scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_result: Option<ScanResult>,

    /// Exclusion list used by the last successful scan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observed_exclusion_list: Vec<String>,

    /// Last handled value of the `reconcile.fluxcd.io/requestedAt` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}

/// Summary of one scan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanResult {
    /// Revision (content digest) of the stored tag list.
    #[serde(default)]
    #[schemars(transform = crate::crd::drop_default)]
    pub revision: String,

    /// Number of tags stored after exclusion.
    pub tag_count: i64,

    /// When the scan finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_time: Option<Time>,

    /// Up to ten stored tags, in descending byte-wise order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(interval: &str, timeout: Option<&str>) -> ImageRepositorySpec {
        ImageRepositorySpec {
            image: "ghcr.io/a/b".into(),
            interval: interval.into(),
            timeout: timeout.map(Into::into),
            secret_ref: None,
            proxy_secret_ref: None,
            service_account_name: None,
            cert_secret_ref: None,
            suspend: false,
            access_from: None,
            exclusion_list: Vec::new(),
            provider: None,
            insecure: false,
        }
    }

    #[test]
    fn timeout_defaults_to_interval_and_is_floored() {
        assert_eq!(spec("5m", None).get_timeout(), Ok(Duration::from_secs(300)));
        assert_eq!(
            spec("5m", Some("30s")).get_timeout(),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(spec("0s", None).get_timeout(), Ok(MIN_TIMEOUT));
        assert_eq!(spec("5m", Some("100ms")).get_timeout(), Ok(MIN_TIMEOUT));
        assert!(spec("5m", Some("x")).get_timeout().is_err());
        assert_eq!(spec("1m0s", None).interval(), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn exclusion_list_default_and_replacement() {
        let mut s = spec("1m", None);
        assert_eq!(s.get_exclusion_list(), vec!["^.*\\.sig$".to_string()]);
        s.exclusion_list = vec!["^dev-".into()];
        assert_eq!(s.get_exclusion_list(), vec!["^dev-".to_string()]);
    }

    #[test]
    fn provider_defaults_to_generic() {
        let mut s = spec("1m", None);
        assert_eq!(s.provider(), RegistryProvider::Generic);
        s.provider = Some(RegistryProvider::Gcp);
        assert_eq!(s.provider().as_str(), "gcp");
    }
}
