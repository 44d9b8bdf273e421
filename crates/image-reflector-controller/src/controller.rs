//! Wiring of the ImageRepository and ImagePolicy controllers.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api::{ImagePolicy, ImageRepository};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use runtime::app::Started;
use runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY;
use runtime::flags::ReflectorFlags;
use runtime::shutdown::Shutdown;
use store::{DEFAULT_COMPRESSION_THRESHOLD, RepoKey, TagStore};

use crate::cluster::KubeCluster;
use crate::policy::{PolicyOptions, PolicyReconciler};
use crate::registry_metrics::RegistryMetrics;
use crate::repository::Repositories;
use runtime::reconcile::{self, ControllerSpec, scoped_api, watcher_config};

/// Controller name: events' reporting controller, field manager, lease prefix.
pub const CONTROLLER_NAME: &str = "image-reflector-controller";

/// What both reconcilers share in one process: the tag store (written by ImageRepository scans,
/// read by ImagePolicies, which trust it only at the repository's `lastScanResult.revision`) and
/// the registry client (per-registry limits, token cache, request metrics).
#[derive(Clone)]
pub struct Shared {
    /// The tag store under `--storage-path`.
    pub store: Arc<TagStore>,
    /// The registry client.
    pub registry: registry::Client,
}

impl Shared {
    /// Opens the store under `--storage-path` and builds the registry client (listing `page_size`
    /// tags per request) reporting to `metrics`.
    pub fn new(
        flags: &ReflectorFlags,
        metrics: &runtime::metrics::Metrics,
        page_size: u32,
    ) -> anyhow::Result<Self> {
        let threshold = u64::try_from(flags.storage_compression_threshold)
            .ok()
            .filter(|kib| *kib > 0)
            .map_or(DEFAULT_COMPRESSION_THRESHOLD, |kib| {
                kib.saturating_mul(1024)
            });
        let store = TagStore::open(&flags.storage_path, threshold).with_context(|| {
            format!(
                "opening the tag store at --storage-path={}",
                flags.storage_path.display()
            )
        })?;
        let registry = registry::Client::with_observer(
            registry::ClientConfig {
                page_size,
                ..registry::ClientConfig::default()
            },
            RegistryMetrics::registered(metrics),
        )
        .context("building the registry client")?;
        Ok(Self {
            store: Arc::new(store),
            registry,
        })
    }
}

/// Runs both controllers until `started.shutdown` fires (once per leadership term).
pub async fn controllers(
    started: Started,
    flags: Arc<ReflectorFlags>,
    namespace: Option<String>,
    page_size: u32,
) -> anyhow::Result<()> {
    let (ctx, shutdown) = (started.ctx, started.shutdown);
    let gates = flags.validate().context("feature gates")?;
    let shared = Shared::new(&flags, &ctx.metrics, page_size)?;
    let client = ctx.client.clone();
    let wc = watcher_config(&flags.common.watch_label_selector);
    let ns = namespace.as_deref();
    let repos = ControllerSpec::<ImageRepository>::new(
        "imagerepository",
        scoped_api(client.clone(), ns),
        wc.clone(),
        flags.common.concurrent,
    );
    let policies = ControllerSpec::<ImagePolicy>::new(
        "imagepolicy",
        scoped_api(client.clone(), ns),
        wc.clone(),
        flags.common.concurrent,
    );
    let policy_store = policies.store();
    let policies = policies.with_trigger(policies_for_repositories(
        scoped_api(client.clone(), ns),
        wc,
        policy_store,
    ));
    let policy_reconciler = PolicyReconciler::new(
        KubeCluster {
            client: client.clone(),
            repositories: repos.store(),
            registry: shared.registry.clone(),
            recorder: ctx.recorder.clone(),
        },
        shared.store.clone(),
        PolicyOptions {
            no_cross_namespace_refs: flags.common.no_cross_namespace_refs,
            requeue_dependency: flags.requeue_dependency,
            object_level_workload_identity: gates.enabled(OBJECT_LEVEL_WORKLOAD_IDENTITY),
        },
    );
    let gc = collect_garbage(
        scoped_api(client.clone(), ns),
        namespace.clone(),
        shared.store.clone(),
        flags.gc_interval,
        shutdown.clone(),
    );
    let repository_reconciler = Repositories::new(
        client,
        ctx.recorder.clone(),
        shared.registry.clone(),
        shared.store.clone(),
        &ctx.manager,
        gates.enabled(OBJECT_LEVEL_WORKLOAD_IDENTITY),
    );
    tokio::join!(
        reconcile::run(
            repos,
            ctx.clone(),
            Arc::new(repository_reconciler),
            shutdown.clone()
        ),
        reconcile::run(policies, ctx, Arc::new(policy_reconciler), shutdown),
        gc,
    );
    Ok(())
}

/// Upstream's ImageRepository → ImagePolicy watch: a repository's creation, deletion, or a change
/// of `status.lastScanResult.revision` re-evaluates the policies that refer to it.
fn policies_for_repositories(
    api: Api<ImageRepository>,
    wc: watcher::Config,
    policies: Store<ImagePolicy>,
) -> BoxStream<'static, ObjectRef<ImagePolicy>> {
    let mut revisions = RevisionFilter::default();
    watcher::watcher(api, wc)
        .default_backoff()
        .filter_map(move |event| {
            let changed = match event {
                Ok(e) => revisions.changed(e),
                Err(e) => {
                    tracing::debug!(error = %e, "ImageRepository watch error; retrying");
                    Vec::new()
                }
            };
            let refs: Vec<ObjectRef<ImagePolicy>> = changed
                .iter()
                .flat_map(|(ns, name)| referring_policies(&policies, ns, name))
                .collect();
            futures::future::ready(Some(futures::stream::iter(refs)))
        })
        .flatten()
        .boxed()
}

/// The policies in the cache whose `imageRepositoryRef` resolves to `namespace/name`.
fn referring_policies(
    policies: &Store<ImagePolicy>,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<ImagePolicy>> {
    policies
        .state()
        .iter()
        .filter(|p| {
            let own = p.namespace().unwrap_or_default();
            let r = &p.spec.image_repository_ref;
            r.name == name && r.namespace_or(&own) == namespace
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Remembers each repository's last seen scan revision, to pass only the watch events upstream's
/// predicate passes.
#[derive(Debug, Default)]
struct RevisionFilter {
    seen: HashMap<(String, String), Option<String>>,
}

impl RevisionFilter {
    /// The `(namespace, name)` of repositories whose event should re-evaluate their policies:
    /// creations (and the initial listing), deletions, and updates that set a new scan revision.
    fn changed(&mut self, event: Event<ImageRepository>) -> Vec<(String, String)> {
        match event {
            Event::Init | Event::InitDone => Vec::new(),
            Event::InitApply(repo) | Event::Apply(repo) => {
                let key = (repo.namespace().unwrap_or_default(), repo.name_any());
                let revision = repo
                    .status
                    .as_ref()
                    .and_then(|s| s.last_scan_result.as_ref())
                    .map(|r| r.revision.clone());
                match self.seen.insert(key.clone(), revision.clone()) {
                    // Created (or first seen since the start).
                    None => vec![key],
                    Some(old) if revision.is_some() && old != revision => vec![key],
                    Some(_) => Vec::new(),
                }
            }
            Event::Delete(repo) => {
                let key = (repo.namespace().unwrap_or_default(), repo.name_any());
                self.seen.remove(&key);
                vec![key]
            }
        }
    }
}

/// Removes stored tags of ImageRepositories that no longer exist (e.g. a finalizer removed by hand, or
/// a volume that served another cluster): once at start and then every `--gc-interval` minutes
/// (0: never), as upstream's filesystem garbage collector. All objects in scope count as live, whatever
/// their shard, so replicas sharing a volume never delete each other's entries; a failed list skips
/// the round.
async fn collect_garbage(
    api: Api<ImageRepository>,
    namespace: Option<String>,
    store: Arc<TagStore>,
    minutes: u16,
    shutdown: Shutdown,
) {
    if minutes == 0 {
        return;
    }
    let period = Duration::from_secs(u64::from(minutes) * 60);
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let live: HashSet<RepoKey> = list
                    .items
                    .iter()
                    .map(|r| RepoKey::new(r.namespace().unwrap_or_default(), r.name_any()))
                    .collect();
                let store = store.clone();
                let scope = namespace.clone();
                let removed = tokio::task::spawn_blocking(move || {
                    store.retain(|key| {
                        live.contains(key) || scope.as_ref().is_some_and(|ns| *ns != key.namespace)
                    })
                })
                .await;
                match removed {
                    Ok(Ok(keys)) if !keys.is_empty() => {
                        tracing::info!(
                            count = keys.len(),
                            "removed the stored tags of deleted ImageRepositories"
                        );
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "tag store garbage collection failed")
                    }
                    Err(e) => tracing::error!(error = %e, "tag store garbage collection failed"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list ImageRepositories; skipping this garbage collection")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, revision: Option<&str>) -> ImageRepository {
        let mut v = serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"image": "ghcr.io/a/b", "interval": "1m"},
        });
        if let Some(r) = revision {
            v["status"] = serde_json::json!({"lastScanResult": {"revision": r, "tagCount": 1}});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_creation_deletion_and_new_revisions_pass() {
        let mut f = RevisionFilter::default();
        let key = vec![("ns".to_string(), "r".to_string())];
        assert_eq!(f.changed(Event::Init), Vec::new());
        assert_eq!(f.changed(Event::InitApply(repo("r", None))), key);
        assert_eq!(f.changed(Event::InitDone), Vec::new());
        // A status write without a scan result (e.g. Reconciling) does not pass.
        assert_eq!(f.changed(Event::Apply(repo("r", None))), Vec::new());
        assert_eq!(f.changed(Event::Apply(repo("r", Some("sha256:a")))), key);
        // A rescan with the same revision, or a Ready flip, does not pass.
        assert_eq!(
            f.changed(Event::Apply(repo("r", Some("sha256:a")))),
            Vec::new()
        );
        assert_eq!(f.changed(Event::Apply(repo("r", Some("sha256:b")))), key);
        assert_eq!(f.changed(Event::Delete(repo("r", Some("sha256:b")))), key);
        assert_eq!(f.changed(Event::Apply(repo("r", Some("sha256:b")))), key);
    }
}
