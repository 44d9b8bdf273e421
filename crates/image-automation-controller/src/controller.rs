//! Wiring of the ImageUpdateAutomation controller.

use std::sync::Arc;

use api::ImageUpdateAutomation;
use runtime::app::Started;
use runtime::flags::AutomationFlags;
use runtime::reconcile::{self, ControllerSpec, PlumbingOnly, scoped_api, watcher_config};

/// Controller name: events' reporting controller, field manager, lease prefix.
pub const CONTROLLER_NAME: &str = "image-automation-controller";

/// Runs the ImageUpdateAutomation controller until `started.shutdown` fires (once per
/// leadership term).
pub async fn controllers(
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
