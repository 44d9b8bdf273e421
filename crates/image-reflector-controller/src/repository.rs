//! The ImageRepository reconciler (`reflector.md` §2.2, §3): decides when to scan, lists the tags,
//! drops excluded ones, stores the sorted list and reports `lastScanResult`, conditions and events.
//!
//! Beyond upstream: stored tags count only when their revision equals `status.lastScanResult.revision`;
//! a missing or different entry (an empty volume after a restart, a stale replica) forces a rescan
//! before any policy can read it; cloud provider credentials are fetched when the registry is contacted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api::ImageRepository;
use api::duration::format_go_duration;
use api::image_repository::{
    AUTHENTICATION_FAILED_REASON, FAILURE_REASON, IMAGE_URL_INVALID_REASON, ImageRepositoryStatus,
    READ_OPERATION_FAILED_REASON, RegistryProvider, ScanResult,
};
use api::meta::{FEATURE_GATE_DISABLED_REASON, PROGRESSING_REASON, READY, STALLED};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt};
use registry::cloud::BoxFuture;
use registry::{ImageRef, SecretData, SecretSource, ServiceAccounts, SourceError, resolve_access};
use runtime::conditions::{
    self, Conditions, ReconcileResult, ResultFinalizer, now_seconds, progressive_status,
};
use runtime::events::{EventRecorder, EventType};
use runtime::reconcile::{FluxObject, Reconciler, apply_status, reconcile_request};
use store::{RepoKey, TagStore, Verified};

/// How many tags `lastScanResult.latestTags` holds.
pub const LATEST_TAGS: usize = 10;

/// How long a step upstream announces with a progress status patch (credentials after a new
/// generation or request, the scan) may run before that patch is written. A faster step's outcome
/// reaches the object with the final status apply alone, sparing the API server a write that would
/// be replaced within the same reconcile; a slower one shows `Reconciling` while it runs.
pub const PROGRESS_PATCH_DELAY: Duration = Duration::from_secs(1);

/// `shouldScan` reasons (`reflector.md` §3.5), shown as `scanning: <reason>`.
pub const REASON_FIRST_SCAN: &str = "first scan";
/// The reconcile annotation changed.
pub const REASON_REQUESTED: &str = "reconcile requested";
/// `spec.image` changed.
pub const REASON_NEW_IMAGE: &str = "new image name";
/// The exclusion list changed.
pub const REASON_EXCLUSION: &str = "updated exclusion list";
/// Nothing (or an empty list) is stored.
pub const REASON_NO_TAGS: &str = "no tags in database";
/// The stored list is not the one the status describes (restart with another volume, stale replica).
pub const REASON_STALE_STORE: &str = "stored tags do not match the last scan revision";
/// The interval elapsed.
pub const REASON_INTERVAL: &str = "triggered by interval";

/// A reconcile error (the Ready=False message); the plumbing retries with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RepositoryError(String);

/// What the store holds for a repository, compared with `status.lastScanResult.revision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The list the status describes, with this many tags.
    Current(usize),
    /// Nothing is stored.
    Missing,
    /// A list with another revision.
    Stale,
}

/// The outcome of [`should_scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanDecision {
    /// Whether to scan now.
    pub scan: bool,
    /// When the next scan is due.
    pub next: Duration,
    /// Why (empty when not scanning).
    pub reason: &'static str,
}

/// What [`should_scan`] looks at besides the status.
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    /// `spec.interval`.
    pub interval: Duration,
    /// Canonical form of `spec.image`.
    pub canonical: &'a str,
    /// `GetExclusionList()`.
    pub exclusion_list: &'a [String],
    /// The `reconcile.fluxcd.io/requestedAt` annotation.
    pub requested_at: Option<&'a str>,
}

/// Upstream's `isEqualSliceContent`: same length and every element of `a` found in `b`.
pub fn is_equal_slice_content(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Upstream's `shouldScan` (`reflector.md` §3.5) plus the store check: `stored` is consulted only when
/// the earlier rules do not already decide, as upstream reads its database only there.
pub fn should_scan(
    inputs: ScanInputs<'_>,
    status: Option<&ImageRepositoryStatus>,
    now: Timestamp,
    stored: impl FnOnce() -> Result<Stored, String>,
) -> Result<ScanDecision, String> {
    let scan = |reason| ScanDecision {
        scan: true,
        next: inputs.interval,
        reason,
    };
    let Some(last) = status.and_then(|s| s.last_scan_result.as_ref()) else {
        return Ok(scan(REASON_FIRST_SCAN));
    };
    let status = status.cloned().unwrap_or_default();
    if let Some(req) = inputs.requested_at
        && Some(req) != status.last_handled_reconcile_at.as_deref()
    {
        return Ok(scan(REASON_REQUESTED));
    }
    if status.canonical_image_name.as_deref() != Some(inputs.canonical) {
        return Ok(scan(REASON_NEW_IMAGE));
    }
    if !is_equal_slice_content(inputs.exclusion_list, &status.observed_exclusion_list) {
        return Ok(scan(REASON_EXCLUSION));
    }
    match stored()? {
        Stored::Current(0) | Stored::Missing => return Ok(scan(REASON_NO_TAGS)),
        Stored::Stale => return Ok(scan(REASON_STALE_STORE)),
        Stored::Current(_) => {}
    }
    let scanned = last.scan_time.as_ref().map_or(0, |t| t.0.as_nanosecond());
    let elapsed = now.as_nanosecond() - scanned;
    let when = i128::try_from(inputs.interval.as_nanos()).unwrap_or(i128::MAX) - elapsed;
    if when < 1_000_000_000 {
        return Ok(scan(REASON_INTERVAL));
    }
    Ok(ScanDecision {
        scan: false,
        next: Duration::from_nanos(u64::try_from(when).unwrap_or(u64::MAX)),
        reason: "",
    })
}

/// Drops every tag any exclusion regex finds (unanchored), keeping input order; a bad regex is
/// `failed to compile regex <p>: <err>`.
pub fn filter_out_tags(
    tags: Vec<String>,
    exclusion_list: &[String],
) -> Result<Vec<String>, String> {
    let regexes = compile_exclusions(exclusion_list)?;
    Ok(tags
        .into_iter()
        .filter(|t| !regexes.iter().any(|r| r.is_match(t)))
        .collect())
}

fn compile_exclusions(exclusion_list: &[String]) -> Result<Vec<regex::Regex>, String> {
    exclusion_list
        .iter()
        .map(|p| regex::Regex::new(p).map_err(|e| format!("failed to compile regex {p}: {e}")))
        .collect()
}

/// Sorts `tags` in descending byte order (stable, in place) and returns the first [`LATEST_TAGS`].
pub fn sort_tags_and_get_latest(tags: &mut [String]) -> Vec<String> {
    tags.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    tags.iter().take(LATEST_TAGS).cloned().collect()
}

/// The event upstream's `notify` records: `(type, reason, message)`.
pub fn notify_event(
    old: &[Condition],
    new: &[Condition],
    next_scan_msg: &str,
) -> (EventType, String, String) {
    let ready = conditions::get(new, READY);
    let (reason, message) = ready.map_or((String::new(), String::new()), |c| {
        (c.reason.clone(), c.message.clone())
    });
    let (was, is) = (conditions::is_ready(old), conditions::is_ready(new));
    if is && (!was || conditions::message(old, READY) != message) {
        (EventType::Normal, reason, message)
    } else if !is {
        (EventType::Warning, reason, message)
    } else {
        (
            EventType::Trace,
            api::meta::SUCCEEDED_REASON.to_string(),
            next_scan_msg.to_string(),
        )
    }
}

/// Ready message of a successful reconcile.
pub fn ready_message(status: Option<&ImageRepositoryStatus>) -> String {
    let last = status
        .and_then(|s| s.last_scan_result.clone())
        .unwrap_or_default();
    format!(
        "successful scan: found {} tags with checksum {}",
        last.tag_count, last.revision
    )
}

/// Secrets and service accounts read from the API server (never cached, as upstream).
#[derive(Clone)]
pub struct ApiSecrets {
    client: kube::Client,
}

impl ApiSecrets {
    /// Reads through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl SecretSource for ApiSecrets {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SourceError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| SourceError(e.to_string()))?;
        Ok(secret.map(|s| crate::cluster::secret_data(namespace, name, s)))
    }

    async fn service_account_pull_secrets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Vec<String>>, SourceError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let sa = api
            .get_opt(name)
            .await
            .map_err(|e| SourceError(e.to_string()))?;
        Ok(sa.map(|sa| {
            sa.image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .collect()
        }))
    }

    fn service_accounts(&self) -> Option<Arc<dyn ServiceAccounts>> {
        Some(Arc::new(self.clone()))
    }
}

/// Object-level workload identity: service-account annotations and TokenRequests (the controller's
/// ClusterRole grants `get` on `serviceaccounts` and `create` on `serviceaccounts/token`).
impl ServiceAccounts for ApiSecrets {
    fn annotations<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::BTreeMap<String, String>>, SourceError>>
    {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            let sa = api
                .get_opt(name)
                .await
                .map_err(|e| SourceError(e.to_string()))?;
            Ok(sa.map(|sa| sa.metadata.annotations.unwrap_or_default()))
        })
    }

    fn create_token<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        audiences: &'a [String],
    ) -> BoxFuture<'a, Result<String, SourceError>> {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: audiences.to_vec(),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            };
            let issued = api
                .create_token_request(name, &Default::default(), &request)
                .await
                .map_err(|e| SourceError(e.to_string()))?;
            issued
                .status
                .map(|s| s.token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| SourceError("the API server returned no token".to_string()))
        })
    }
}

/// The ImageRepository reconciler; one per process, shared by all workers.
pub struct Repositories {
    client: kube::Client,
    recorder: Arc<EventRecorder>,
    registry: registry::Client,
    store: Arc<TagStore>,
    manager: String,
    workload_identity: bool,
}

impl Repositories {
    /// A reconciler scanning with `registry` into `store`; `workload_identity` is the
    /// `ObjectLevelWorkloadIdentity` feature gate.
    pub fn new(
        client: kube::Client,
        recorder: Arc<EventRecorder>,
        registry: registry::Client,
        store: Arc<TagStore>,
        manager: &str,
        workload_identity: bool,
    ) -> Self {
        Self {
            client,
            recorder,
            registry,
            store,
            manager: manager.to_string(),
            workload_identity,
        }
    }

    /// Persists the status now (progress conditions), as upstream's intermediate patches.
    async fn patch_now(&self, obj: &ImageRepository) -> Result<(), String> {
        let api: Api<ImageRepository> =
            Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        apply_status(&api, obj, &obj.status_json(), &self.manager)
            .await
            .map(|_| ())
            .map_err(|e| format!("failed to patch the status: {e}"))
    }

    /// Runs `work`; if it is still running after [`PROGRESS_PATCH_DELAY`], persists `obj`'s
    /// status (its progress conditions) meanwhile. A failed patch is the error once `work` is done.
    async fn progress_while<T>(
        &self,
        obj: &ImageRepository,
        work: impl Future<Output = T>,
    ) -> Result<T, String> {
        let mut work = std::pin::pin!(work);
        tokio::select! {
            out = &mut work => return Ok(out),
            () = tokio::time::sleep(PROGRESS_PATCH_DELAY) => {}
        }
        let (patched, out) = tokio::join!(self.patch_now(obj), work);
        patched.map(|()| out)
    }

    /// Upstream's `reconcile()` steps 1–10; `Err` carries the reconcile error (Ready already set).
    async fn steps(
        &self,
        obj: &mut ImageRepository,
        interval: Duration,
        next_scan: &mut Duration,
        next_scan_msg: &mut String,
    ) -> Result<ReconcileResult, String> {
        let generation = obj.metadata.generation.unwrap_or(0);
        let provider = obj.spec.provider();
        let has_sa = obj
            .spec
            .service_account_name
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        // 1. Workload identity needs the gate.
        if provider != RegistryProvider::Generic && has_sa && !self.workload_identity {
            let msg = "to use spec.serviceAccountName for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller";
            with_conditions(obj, |c| c.mark_stalled(FEATURE_GATE_DISABLED_REASON, msg));
            return Ok(ReconcileResult::default());
        }
        // 2–3. Progress, persisted on a new generation or a new reconcile request (if resolving the
        // credentials is slow, else with the scan's progress or the final status).
        with_conditions(obj, |c| {
            progressive_status(c, false, PROGRESSING_REASON, "reconciliation in progress")
        });
        let observed = obj
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(-1);
        let announce = if observed != generation {
            let msg = format!("processing object: new generation {observed} -> {generation}");
            with_conditions(obj, |c| {
                progressive_status(c, false, PROGRESSING_REASON, &msg)
            });
            true
        } else {
            reconcile_request(obj).unwrap_or_default()
                != obj.last_handled_reconcile_at().unwrap_or_default()
        };
        // 4. The image reference.
        let image = match ImageRef::parse(&obj.spec.image, obj.spec.insecure) {
            Ok(image) => image,
            Err(e) => {
                let msg = e.to_string();
                with_conditions(obj, |c| c.mark_stalled(IMAGE_URL_INVALID_REASON, &msg));
                return Ok(ReconcileResult::default());
            }
        };
        with_conditions(obj, |c| c.delete(STALLED));
        let canonical = image.canonical();
        // 5. One deadline spans credentials and the scan.
        let timeout = obj
            .spec
            .get_timeout()
            .map_err(|e| fail(obj, FAILURE_REASON, format!("invalid spec.timeout: {e}")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        // 6. Credentials. Cloud provider credentials are fetched lazily by the scan, so their
        // failures are `ReadOperationFailed`, as upstream.
        let spec = crate::cluster::access_spec(obj);
        let secrets = ApiSecrets::new(self.client.clone());
        let resolving = tokio::time::timeout_at(deadline, resolve_access(&spec, &secrets));
        let resolved = if announce {
            self.progress_while(obj, resolving).await?
        } else {
            resolving.await
        };
        let access = match resolved {
            Ok(Ok(access)) => access,
            // Cannot succeed without a spec change (e.g. an unsupported provider): stall rather
            // than retry or scan anonymously.
            Ok(Err(e)) if e.is_stalling() => {
                let msg = e.to_string();
                with_conditions(obj, |c| c.mark_stalled(AUTHENTICATION_FAILED_REASON, &msg));
                return Ok(ReconcileResult::default());
            }
            Ok(Err(e)) => {
                return Err(fail(
                    obj,
                    AUTHENTICATION_FAILED_REASON,
                    format!("failed to configure authentication options: {e}"),
                ));
            }
            Err(_) => {
                return Err(fail(
                    obj,
                    AUTHENTICATION_FAILED_REASON,
                    format!(
                        "failed to configure authentication options: timed out after {}",
                        format_go_duration(timeout)
                    ),
                ));
            }
        };
        // 7. Whether to scan.
        let exclusion_list = obj.spec.get_exclusion_list();
        let key = RepoKey::new(obj.namespace().unwrap_or_default(), obj.name_any());
        let stored = match obj
            .status
            .as_ref()
            .and_then(|s| s.last_scan_result.as_ref())
        {
            Some(last) => {
                let (store, key, rev) = (self.store.clone(), key.clone(), last.revision.clone());
                Some(
                    tokio::task::spawn_blocking(move || store.read_if_revision(&key, &rev))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                        .map(|v| match v {
                            Verified::Match(tags) => Stored::Current(tags.len()),
                            Verified::Missing => Stored::Missing,
                            Verified::Mismatch(_) => Stored::Stale,
                        }),
                )
            }
            None => None,
        };
        let inputs = ScanInputs {
            interval,
            canonical: &canonical,
            exclusion_list: &exclusion_list,
            requested_at: reconcile_request(obj),
        };
        let decision = should_scan(inputs, obj.status.as_ref(), Timestamp::now(), || {
            stored.unwrap_or(Ok(Stored::Missing))
        })
        .map_err(|e| {
            fail(
                obj,
                FAILURE_REASON,
                format!("failed to determine if it's scan time: {e}"),
            )
        })?;
        // 8. Scan.
        if decision.scan {
            let drift = decision.reason == REASON_NO_TAGS || decision.reason == REASON_STALE_STORE;
            let msg = format!("scanning: {}", decision.reason);
            with_conditions(obj, |c| {
                progressive_status(c, drift, PROGRESSING_REASON, &msg)
            });
            let old_revision = obj
                .status
                .as_ref()
                .and_then(|s| s.last_scan_result.as_ref())
                .map(|r| r.revision.clone());
            let scanning = self.scan(&image, &access, &key, &exclusion_list, deadline);
            let result = self.progress_while(obj, scanning).await?.map_err(|e| {
                fail(
                    obj,
                    READ_OPERATION_FAILED_REASON,
                    format!("scan failed: {e}"),
                )
            })?;
            let unchanged = old_revision.as_deref() == Some(result.revision.as_str());
            obj.status.get_or_insert_default().last_scan_result = Some(result);
            // 9.
            *next_scan_msg = if unchanged {
                format!(
                    "tags did not change, next scan in {}",
                    format_go_duration(decision.next)
                )
            } else {
                format!(
                    "successful scan, next scan in {}",
                    format_go_duration(decision.next)
                )
            };
        } else {
            *next_scan_msg = format!(
                "no change in repository configuration since last scan, next scan in {}",
                format_go_duration(decision.next)
            );
        }
        // 10.
        *next_scan = decision.next;
        let status = obj.status.get_or_insert_default();
        status.canonical_image_name = Some(canonical);
        status.observed_exclusion_list = exclusion_list;
        with_conditions(obj, |c| c.delete(READY));
        Ok(ReconcileResult::after(decision.next))
    }

    /// Lists, filters, sorts and stores the tags; stores nothing on failure.
    async fn scan(
        &self,
        image: &ImageRef,
        access: &registry::Access,
        key: &RepoKey,
        exclusion_list: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<ScanResult, String> {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return Err("timed out before listing tags".to_string());
        }
        scan_tags(
            &self.registry,
            &self.store,
            image,
            access,
            key,
            exclusion_list,
            remaining,
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// Why [`scan_tags`] failed; each step's error kept apart so callers can classify it.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The registry did not list the tags.
    #[error("{0}")]
    List(#[from] registry::RegistryError),
    /// A pattern of `spec.exclusionList` does not compile.
    #[error("{0}")]
    Exclusion(String),
    /// The tag store could not be written.
    #[error("failed to set tags: {0}")]
    Store(String),
}

/// One scan: lists the image's tags within `timeout`, drops excluded ones, stores the rest under `key`, and
/// returns the scan result. Shared by the ImageRepository reconciler and `run-once`.
pub async fn scan_tags(
    registry: &registry::Client,
    store: &Arc<TagStore>,
    image: &ImageRef,
    access: &registry::Access,
    key: &RepoKey,
    exclusion_list: &[String],
    timeout: Duration,
) -> Result<ScanResult, ScanError> {
    let tags = registry.list_tags(image, access, timeout).await?;
    let mut tags = filter_out_tags(tags, exclusion_list).map_err(ScanError::Exclusion)?;
    let latest_tags = sort_tags_and_get_latest(&mut tags);
    let tag_count = i64::try_from(tags.len()).unwrap_or(i64::MAX);
    let (store, key) = (store.clone(), key.clone());
    let revision = tokio::task::spawn_blocking(move || store.set_tags(&key, &tags))
        .await
        .map_err(|e| ScanError::Store(e.to_string()))?
        .map_err(|e| ScanError::Store(e.to_string()))?;
    Ok(ScanResult {
        revision,
        tag_count,
        scan_time: Some(now_seconds()),
        latest_tags,
    })
}

/// Runs `f` on the object's conditions (creating the status).
fn with_conditions(obj: &mut ImageRepository, f: impl FnOnce(&mut Conditions<'_>)) {
    let generation = obj.metadata.generation.unwrap_or(0);
    let status = obj.status.get_or_insert_default();
    let mut c = Conditions::new(&mut status.conditions, generation);
    f(&mut c);
}

/// Sets Ready=False with `reason` and returns the message as the reconcile error.
fn fail(obj: &mut ImageRepository, reason: &str, message: String) -> String {
    with_conditions(obj, |c| c.mark_false(READY, reason, &message));
    message
}

impl Reconciler<ImageRepository> for Repositories {
    type Error = RepositoryError;

    async fn reconcile(
        &self,
        obj: &mut ImageRepository,
    ) -> Result<ReconcileResult, RepositoryError> {
        let old_conditions = obj.conditions().to_vec();
        let interval = match obj.spec.interval() {
            Ok(d) => d,
            Err(e) => {
                // The CRD's pattern rejects this; an object created before the CRD had it stalls.
                let msg = format!("invalid spec.interval '{}': {e}", obj.spec.interval);
                with_conditions(obj, |c| {
                    c.mark_stalled(FAILURE_REASON, &msg);
                    c.mark_false(READY, FAILURE_REASON, &msg);
                });
                return Ok(ReconcileResult::default());
            }
        };
        let mut next_scan = interval;
        let mut next_scan_msg = String::new();
        let outcome = self
            .steps(obj, interval, &mut next_scan, &mut next_scan_msg)
            .await;
        let (result, error) = match outcome {
            Ok(r) => (r, None),
            Err(e) => (ReconcileResult::default(), Some(e)),
        };
        let finalizer = ResultFinalizer::new(
            |r: &ReconcileResult, has_err: bool| {
                !has_err && !r.requeue && r.requeue_after == next_scan
            },
            ready_message(obj.status.as_ref()),
        );
        let requested_at = reconcile_request(obj).map(str::to_string);
        let generation = obj.metadata.generation.unwrap_or(0);
        let status = obj.status.get_or_insert_default();
        let mut c = Conditions::new(&mut status.conditions, generation);
        let finalized = finalizer.finalize(
            &mut c,
            &result,
            error,
            requested_at.as_deref(),
            &mut status.last_handled_reconcile_at,
        );
        c.mark_retrying();
        let (kind, reason, message) =
            notify_event(&old_conditions, obj.conditions(), &next_scan_msg);
        self.recorder
            .publish_for(&*obj, kind, &reason, &message, Default::default())
            .await;
        match finalized {
            Ok(()) => Ok(result),
            Err(e) => Err(RepositoryError(e.to_string())),
        }
    }

    async fn cleanup(&self, obj: &ImageRepository) -> Result<(), RepositoryError> {
        let key = RepoKey::new(obj.namespace().unwrap_or_default(), obj.name_any());
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.delete(&key))
            .await
            .map_err(|e| RepositoryError(format!("failed to delete stored tags: {e}")))?
            .map_err(|e| RepositoryError(format!("failed to delete stored tags: {e}")))
    }
}

#[cfg(test)]
#[path = "repository_tests.rs"]
mod tests;
