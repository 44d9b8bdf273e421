//! Wiring of the ImageRepository and ImagePolicy controllers.

use std::sync::Arc;

use api::{ImagePolicy, ImageRepository};
use runtime::app::Started;
use runtime::flags::ReflectorFlags;

use crate::spec_checks::SpecChecks;
use runtime::reconcile::{self, ControllerSpec, PlumbingOnly, scoped_api, watcher_config};

/// Controller name: events' reporting controller, field manager, lease prefix.
pub const CONTROLLER_NAME: &str = "image-reflector-controller";

/// Runs both controllers until `started.shutdown` fires (once per leadership term).
pub async fn controllers(
    started: Started,
    flags: Arc<ReflectorFlags>,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let (ctx, shutdown) = (started.ctx, started.shutdown);
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
        scoped_api(client, ns),
        wc,
        flags.common.concurrent,
    );
    tokio::join!(
        reconcile::run(repos, ctx.clone(), Arc::new(PlumbingOnly), shutdown.clone()),
        reconcile::run(policies, ctx, Arc::new(SpecChecks), shutdown),
    );
    Ok(())
}
