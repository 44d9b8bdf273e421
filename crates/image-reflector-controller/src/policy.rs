//! The ImagePolicy reconciler (`reflector.md` §2.3–2.5, §4): resolves the referenced
//! ImageRepository (with the cross-namespace ACL), applies the policy to the repository's stored
//! tags, reflects the digest of the selected tag and reports it in `status.latestRef` (and the
//! v1beta1 `latestImage`), with Flux's conditions, messages and events.
//!
//! Stored tags are used only when their revision equals the repository's
//! `status.lastScanResult.revision` and the repository has scanned its current image, so a policy
//! never moves backwards on a stale or empty store (flux2#4984): until then it is
//! `DependencyNotReady` and requeued after `--requeue-dependency`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api::duration::format_go_duration;
use api::image_policy::{
    DEFAULT_DIGEST_REFLECTION_INTERVAL, IMAGE_URL_INVALID_REASON, INVALID_POLICY_CHOICE_MESSAGE,
    INVALID_POLICY_REASON, ReflectionPolicy,
};
use api::image_repository::RegistryProvider;
use api::meta::{
    ACCESS_DENIED_REASON, DEPENDENCY_NOT_READY_REASON, FEATURE_GATE_DISABLED_REASON,
    PROGRESSING_REASON, READY,
};
use api::refs::ImageRef;
use api::{ImagePolicy, ImagePolicyStatus, ImageRepository};
use kube::ResourceExt;
use runtime::conditions::{
    Conditions, FinalizeError, ReconcileResult, ResultFinalizer, progressive_status,
};
use runtime::events::EventType;
use runtime::reconcile::{Reconciler, reconcile_request};
use store::{RepoKey, TagStore, Verified};

use crate::repository::notify_event;

/// Reason for errors that have no specific reason (`metav1.StatusFailure`).
const FAILURE_REASON: &str = api::image_policy::FAILURE_REASON;

/// Stall message when a repository uses object-level workload identity without the feature gate.
const FEATURE_GATE_MESSAGE: &str = "to use spec.serviceAccountName in the ImageRepository for provider authentication please enable the ObjectLevelWorkloadIdentity feature gate in the controller";

/// What the policy reconciler reads from the cluster and registries, and where its events go.
/// The controller implements it over the API server and the registry client; tests fake it.
pub trait Cluster: Send + Sync + 'static {
    /// The ImageRepository `namespace/name` from the watch cache, `None` if it does not exist.
    fn image_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ImageRepository>, String>> + Send;

    /// The labels of Namespace `name` (for the `accessFrom` ACL).
    fn namespace_labels(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, String>> + Send;

    /// The manifest digest of `tag` in `repo`'s image, read with the repository's access options
    /// (secrets, TLS, proxy) and timeout.
    fn digest(
        &self,
        repo: &ImageRepository,
        image: &registry::ImageRef,
        tag: &str,
    ) -> impl Future<Output = Result<String, String>> + Send;

    /// Records an event about `policy`.
    fn event(
        &self,
        policy: &ImagePolicy,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> impl Future<Output = ()> + Send;
}

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// `--no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
    /// `--requeue-dependency`.
    pub requeue_dependency: Duration,
    /// Feature gate `ObjectLevelWorkloadIdentity`.
    pub object_level_workload_identity: bool,
}

/// A reconcile error: the object is retried with backoff; the message is also in `Ready`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyFailure(pub String);

/// The ImagePolicy reconciler.
pub struct PolicyReconciler<C> {
    cluster: C,
    store: Arc<TagStore>,
    options: PolicyOptions,
}

impl<C: Cluster> PolicyReconciler<C> {
    /// A reconciler reading tags from `store`.
    pub fn new(cluster: C, store: Arc<TagStore>, options: PolicyOptions) -> Self {
        Self {
            cluster,
            store,
            options,
        }
    }
}

/// How one pass ended, before the result finalizer: Flux's `(result, err)` plus the Ready message.
struct Outcome {
    result: ReconcileResult,
    error: Option<PolicyFailure>,
    ready_message: String,
}

impl Outcome {
    fn done(result: ReconcileResult) -> Self {
        Self {
            result,
            error: None,
            ready_message: String::new(),
        }
    }

    fn failed(message: String) -> Self {
        Self {
            result: ReconcileResult::default(),
            error: Some(PolicyFailure(message)),
            ready_message: String::new(),
        }
    }
}

/// `GetInterval()`: the requeue period of a successful pass (only `Always` reflection requeues).
pub fn next_reconcile_time(policy: &ImagePolicy) -> Duration {
    if policy.spec.digest_reflection_policy() != ReflectionPolicy::Always {
        return Duration::ZERO;
    }
    match policy.spec.interval() {
        Ok(Some(d)) => d,
        // An unparsable interval cannot pass the CRD's pattern; fall back as for a missing one.
        Ok(None) | Err(_) => DEFAULT_DIGEST_REFLECTION_INTERVAL,
    }
}

/// The Ready message of a resolved policy (`composeImagePolicyReadyMessage`, exact).
pub fn ready_message(status: &ImagePolicyStatus) -> String {
    let Some(latest) = &status.latest_ref else {
        return String::new();
    };
    let mut msg = format!(
        "Latest image tag for {} resolved to {}",
        latest.name, latest.tag
    );
    if !latest.digest.is_empty() {
        msg.push_str(&format!(" with digest {}", latest.digest));
    }
    if let Some(prev) = &status.observed_previous_ref
        && prev != latest
    {
        msg.push_str(&format!(" (previously {}:{}", prev.name, prev.tag));
        if !prev.digest.is_empty() {
            msg.push_str(&format!("@{}", prev.digest));
        }
        msg.push(')');
    }
    msg
}

impl<C: Cluster> Reconciler<ImagePolicy> for PolicyReconciler<C> {
    type Error = FinalizeError<PolicyFailure>;

    async fn reconcile(&self, obj: &mut ImagePolicy) -> Result<ReconcileResult, Self::Error> {
        let old = obj.status.as_ref().map(|s| s.conditions.clone());
        let next = next_reconcile_time(obj);
        let outcome = self.steps(obj).await;

        let generation = obj.metadata.generation.unwrap_or(0);
        let requested_at = reconcile_request(obj).map(str::to_string);
        let status = obj.status.get_or_insert_default();
        let mut c = Conditions::new(&mut status.conditions, generation);
        let is_success =
            |r: &ReconcileResult, has_err: bool| !has_err && !r.requeue && r.requeue_after == next;
        let finalized = ResultFinalizer::new(is_success, outcome.ready_message.clone()).finalize(
            &mut c,
            &outcome.result,
            outcome.error,
            requested_at.as_deref(),
            &mut status.last_handled_reconcile_at,
        );
        c.mark_retrying();

        let (type_, reason, message) = notify_event(
            old.as_deref().unwrap_or_default(),
            &status.conditions,
            &outcome.ready_message,
        );
        self.cluster.event(obj, type_, &reason, &message).await;
        finalized.map(|()| outcome.result)
    }

    async fn cleanup(&self, _obj: &ImagePolicy) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<C: Cluster> PolicyReconciler<C> {
    /// `reconcile()` of §2.3 up to the result finalizer.
    async fn steps(&self, obj: &mut ImagePolicy) -> Outcome {
        let generation = obj.metadata.generation.unwrap_or(0);
        let policy_ns = obj.namespace().unwrap_or_default();

        // 1. What the CRD's CEL rules reject (servers before 1.25 ignore them). A missing policy
        // choice is reported when the policy is built, after the repository checks, as upstream.
        if let Err(v) = obj.spec.check()
            && v.message != INVALID_POLICY_CHOICE_MESSAGE
        {
            conds(obj).mark_stalled(v.reason, v.message);
            return Outcome::done(ReconcileResult::default());
        }

        // 2. Progressing.
        progressive_status(
            &mut conds(obj),
            false,
            PROGRESSING_REASON,
            "reconciliation in progress",
        );
        let observed = obj
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(-1);
        if observed != generation {
            let msg = format!("processing object: new generation {observed} -> {generation}");
            progressive_status(&mut conds(obj), false, PROGRESSING_REASON, &msg);
        }

        // 3. The referenced repository, with the ACL.
        let repo = match self.repository(obj).await {
            Ok(repo) => repo,
            Err((reason, err)) => {
                let msg = format!("failed to get the referred ImageRepository: {err}");
                conds(obj).mark_false(READY, reason, &msg);
                return Outcome::failed(msg);
            }
        };

        // 4. The repository's image.
        let image = match registry::ImageRef::parse(&repo.spec.image, repo.spec.insecure) {
            Ok(image) => image,
            Err(e) => {
                conds(obj).mark_stalled(IMAGE_URL_INVALID_REASON, &e.to_string());
                return Outcome::done(ReconcileResult::default());
            }
        };

        // 5. Object-level workload identity needs its feature gate.
        if repo.spec.provider() != RegistryProvider::Generic
            && repo
                .spec
                .service_account_name
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            && !self.options.object_level_workload_identity
        {
            conds(obj).mark_stalled(FEATURE_GATE_DISABLED_REASON, FEATURE_GATE_MESSAGE);
            return Outcome::done(ReconcileResult::default());
        }

        // 6. The policy over the stored tags.
        let latest = match self.apply_policy(obj, &repo, &image, &policy_ns).await {
            Ok(tag) => tag,
            Err(Applied::Invalid(msg)) => {
                conds(obj).mark_stalled(INVALID_POLICY_REASON, &msg);
                return Outcome::done(ReconcileResult::default());
            }
            Err(Applied::NotReady(msg)) => {
                let msg = format!(
                    "retrying in {} error: {msg}",
                    format_go_duration(round_to_second(self.options.requeue_dependency))
                );
                conds(obj).mark_false(READY, DEPENDENCY_NOT_READY_REASON, &msg);
                return Outcome::done(ReconcileResult::after(self.options.requeue_dependency));
            }
            Err(Applied::Failed(msg)) => {
                conds(obj).mark_false(READY, FAILURE_REASON, &msg);
                return Outcome::failed(msg);
            }
        };

        // 7. latestRef, with the digest the reflection policy asks for.
        if let Err(msg) = self.update_image_refs(obj, &repo, &image, latest).await {
            return Outcome::failed(msg);
        }

        // 8. Success: the finalizer sets Ready from the message.
        conds(obj).delete(READY);
        Outcome {
            result: ReconcileResult::after(next_reconcile_time(obj)),
            error: None,
            ready_message: obj.status.as_ref().map(ready_message).unwrap_or_default(),
        }
    }

    /// Step 3: the repository the policy refers to, or the condition reason and error.
    async fn repository(
        &self,
        obj: &ImagePolicy,
    ) -> Result<ImageRepository, (&'static str, String)> {
        let policy_ns = obj.namespace().unwrap_or_default();
        let r = &obj.spec.image_repository_ref;
        let ns = r.namespace_or(&policy_ns).to_string();
        if self.options.no_cross_namespace_refs && ns != policy_ns {
            return Err((
                ACCESS_DENIED_REASON,
                format!(
                    "cannot access 'ImageRepository/{ns}/{}', cross-namespace references have been blocked",
                    r.name
                ),
            ));
        }
        let repo = match self.cluster.image_repository(&ns, &r.name).await {
            Ok(Some(repo)) => repo,
            Ok(None) => {
                return Err((
                    DEPENDENCY_NOT_READY_REASON,
                    format!(
                        "referenced ImageRepository does not exist: ImageRepository.image.toolkit.fluxcd.io \"{}\" not found",
                        r.name
                    ),
                ));
            }
            Err(e) => return Err((FAILURE_REASON, e)),
        };
        if ns != policy_ns {
            let denied = |why: String| (ACCESS_DENIED_REASON, format!("access denied: {why}"));
            let Some(acl) = &repo.spec.access_from else {
                return Err(denied(format!(
                    "'{ns}/{}' can't be accessed due to missing ACL labels on 'accessFrom'",
                    r.name
                )));
            };
            let labels = self
                .cluster
                .namespace_labels(&policy_ns)
                .await
                .map_err(denied)?;
            if !acl.allows(&labels) {
                return Err(denied(format!(
                    "'{ns}/{}' can't be accessed due to ACL labels mismatch on namespace '{policy_ns}'",
                    r.name
                )));
            }
        }
        Ok(repo)
    }

    /// Step 6: compiles the policy and selects the latest tag among the repository's verified tags.
    async fn apply_policy(
        &self,
        obj: &ImagePolicy,
        repo: &ImageRepository,
        image: &registry::ImageRef,
        policy_ns: &str,
    ) -> Result<String, Applied> {
        let p = compile(&obj.spec).map_err(|e| Applied::Invalid(e.to_string()))?;

        let tags = self.verified_tags(repo, image, policy_ns).await?;
        if tags.is_empty() {
            return Err(Applied::NotReady("no tags in database".into()));
        }
        p.select(tags.iter().map(String::as_str))
            .map(str::to_string)
            .map_err(|e| Applied::Failed(e.to_string()))
    }

    /// The stored tags of `repo`, if they are exactly what its status reports for its current image.
    async fn verified_tags(
        &self,
        repo: &ImageRepository,
        image: &registry::ImageRef,
        policy_ns: &str,
    ) -> Result<Vec<String>, Applied> {
        let status = repo.status.as_ref();
        let revision = status
            .and_then(|s| s.last_scan_result.as_ref())
            .map(|r| r.revision.clone())
            .filter(|r| !r.is_empty());
        let Some(revision) = revision else {
            return Err(Applied::NotReady("no tags in database".into()));
        };
        // After an image change the stored tags are those of the old image until the next scan.
        let canonical = status
            .and_then(|s| s.canonical_image_name.as_deref())
            .unwrap_or_default();
        if canonical != image.canonical() {
            return Err(Applied::NotReady(format!(
                "the ImageRepository has not scanned '{}' yet (last scanned: '{canonical}')",
                image.canonical()
            )));
        }
        let key = RepoKey::new(
            repo.namespace().unwrap_or_else(|| policy_ns.to_string()),
            repo.name_any(),
        );
        let store = self.store.clone();
        let read = {
            let key = key.clone();
            let revision = revision.clone();
            tokio::task::spawn_blocking(move || store.read_if_revision(&key, &revision)).await
        };
        match read {
            Ok(Ok(Verified::Match(tags))) => Ok(tags),
            Ok(Ok(Verified::Missing)) => Err(Applied::NotReady("no tags in database".into())),
            Ok(Ok(Verified::Mismatch(stored))) => Err(Applied::NotReady(format!(
                "stored tags of ImageRepository '{key}' have revision {stored}, its status reports {revision}; waiting for a rescan"
            ))),
            Ok(Err(e)) => Err(Applied::Failed(format!(
                "failed to read tags from database: {e}"
            ))),
            Err(e) => Err(Applied::Failed(format!(
                "failed to read tags from database: {e}"
            ))),
        }
    }

    /// Step 7 (`updateImageRefs`): the new `latestRef` per the digest reflection policy; the old one
    /// becomes `observedPreviousRef` when it differs.
    async fn update_image_refs(
        &self,
        obj: &mut ImagePolicy,
        repo: &ImageRepository,
        image: &registry::ImageRef,
        tag: String,
    ) -> Result<(), String> {
        let mut latest = ImageRef {
            name: repo.spec.image.clone(),
            tag,
            digest: String::new(),
        };
        let current = obj.status.as_ref().and_then(|s| s.latest_ref.as_ref());
        let fetch = match obj.spec.digest_reflection_policy() {
            ReflectionPolicy::Never => false,
            ReflectionPolicy::Always => true,
            ReflectionPolicy::IfNotPresent => match current {
                Some(cur)
                    if cur.name == latest.name
                        && cur.tag == latest.tag
                        && !cur.digest.is_empty() =>
                {
                    latest.digest = cur.digest.clone();
                    false
                }
                _ => true,
            },
        };
        if fetch {
            latest.digest = self
                .cluster
                .digest(repo, image, &latest.tag)
                .await
                .map_err(|e| format!("failed fetching digest of {latest}: {e}"))?;
        }
        obj.status.get_or_insert_default().set_latest(latest);
        Ok(())
    }
}

/// The policy engine for `spec.policy` and `spec.filterTags`; the error names the field.
pub fn compile(spec: &api::ImagePolicySpec) -> Result<policy::Policy, policy::PolicyError> {
    let choice = &spec.policy;
    policy::Policy::new(
        policy::Choice::from_spec(
            choice.semver.as_ref().map(|s| s.range.as_str()),
            choice
                .alphabetical
                .as_ref()
                .map(|a| order_text(a.order.as_ref())),
            choice
                .numerical
                .as_ref()
                .map(|n| order_text(n.order.as_ref())),
        ),
        spec.filter_tags.as_ref().map(|f| policy::FilterSpec {
            pattern: &f.pattern,
            extract: &f.extract,
        }),
    )
}

/// The conditions of `obj`, stamped with its generation.
fn conds(obj: &mut ImagePolicy) -> Conditions<'_> {
    let generation = obj.metadata.generation.unwrap_or(0);
    Conditions::new(
        &mut obj.status.get_or_insert_default().conditions,
        generation,
    )
}

/// Why no tag was selected.
enum Applied {
    /// `InvalidPolicy`: stalled until the spec changes.
    Invalid(String),
    /// `DependencyNotReady`: the repository has no usable tags yet; requeued.
    NotReady(String),
    /// `Failure`: retried with backoff.
    Failed(String),
}

/// An order as the policy engine takes it (it upper-cases and validates).
fn order_text(order: Option<&api::image_policy::SortOrder>) -> &'static str {
    match order {
        Some(api::image_policy::SortOrder::Desc) => "desc",
        Some(api::image_policy::SortOrder::Asc) | None => "asc",
    }
}

/// Go's `Duration.Round(time.Second)`: halves round away from zero.
fn round_to_second(d: Duration) -> Duration {
    let ms = d.as_millis();
    let secs = ms / 1000 + u128::from(ms % 1000 >= 500);
    Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
