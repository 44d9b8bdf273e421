//! Wiring of the ImageRepository and ImagePolicy controllers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use api::{ImagePolicy, ImageRepository};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use runtime::app::Started;
use runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY;
use runtime::flags::ReflectorFlags;
use runtime::shutdown::Shutdown;
use store::{DEFAULT_COMPRESSION_THRESHOLD, RepoKey, TagStore};

use crate::registry_metrics::RegistryMetrics;
use crate::repository::Repositories;
use crate::spec_checks::SpecChecks;
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
        wc,
        flags.common.concurrent,
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
        reconcile::run(policies, ctx, Arc::new(SpecChecks), shutdown),
        gc,
    );
    Ok(())
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
