//! Wiring of the ImageUpdateAutomation controller.

use std::sync::Arc;

use api::ImageUpdateAutomation;
use runtime::app::Started;
use runtime::features::FeatureGates;
use runtime::flags::AutomationFlags;
use runtime::reconcile::{self, ControllerSpec, PlumbingOnly, scoped_api, watcher_config};

/// Controller name: events' reporting controller, field manager, lease prefix.
pub const CONTROLLER_NAME: &str = "image-automation-controller";

/// Runs the controller process until SIGTERM/SIGINT.
pub async fn run(
    flags: AutomationFlags,
    gates: FeatureGates,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let flags = Arc::new(flags);
    let common = flags.common.clone();
    runtime::app::run(CONTROLLER_NAME, &common, &gates, move |started| {
        controllers(started, flags.clone(), namespace.clone())
    })
    .await
}

/// Runs the ImageUpdateAutomation controller until `started.shutdown` fires.
async fn controllers(
    started: Started,
    flags: Arc<AutomationFlags>,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let (ctx, shutdown) = (started.ctx, started.shutdown);
    let automations = ControllerSpec::<ImageUpdateAutomation>::new(
        "imageupdateautomation",
        scoped_api(ctx.client.clone(), namespace.as_deref()),
        watcher_config(&flags.common.watch_label_selector),
        flags.common.concurrent,
    );
    reconcile::run(automations, ctx, Arc::new(PlumbingOnly), shutdown).await;
    Ok(())
}
