//! Wiring of the ImageRepository and ImagePolicy controllers.

use std::sync::Arc;

use anyhow::Context as _;
use api::{ImagePolicy, ImageRepository};
use runtime::app::Started;
use runtime::features::OBJECT_LEVEL_WORKLOAD_IDENTITY;
use runtime::flags::ReflectorFlags;
use store::{DEFAULT_COMPRESSION_THRESHOLD, TagStore};

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
    );
    Ok(())
}
