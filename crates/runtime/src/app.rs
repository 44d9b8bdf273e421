//! The controller process: logging, client configuration, metrics and health servers, API-server
//! probe, signal handling, events and leader election, around the controllers a binary starts.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::events::EventRecorder;
use crate::features::{FeatureGates, GateEffect};
use clap::error::ErrorKind;

use crate::flags::{AutomationFlags, CommonFlags, FlagError, ReflectorFlags};
use crate::leader::{self, LeaderConfig};
use crate::metrics::Metrics;
use crate::reconcile::{Backoff, Context};
use crate::server::{self, Health};
use crate::shutdown::{self, Shutdown};

/// A controller binary's flag set.
pub trait ControllerFlags: Send + Sync + 'static {
    /// The flags both controllers share.
    fn common(&self) -> &CommonFlags;
    /// Resolves the feature gates and checks cross-flag rules.
    fn validate(&self) -> Result<FeatureGates, FlagError>;
}

impl ControllerFlags for ReflectorFlags {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
    fn validate(&self) -> Result<FeatureGates, FlagError> {
        ReflectorFlags::validate(self)
    }
}

impl ControllerFlags for AutomationFlags {
    fn common(&self) -> &CommonFlags {
        &self.common
    }
    fn validate(&self) -> Result<FeatureGates, FlagError> {
        AutomationFlags::validate(self)
    }
}

/// A binary's `main` once clap has parsed the controller flags: validates them (an error prints
/// the message and usage of `cmd` and exits 2, like a parse error), sets up logging, and runs the
/// process (see [`run`]) on a multi-threaded runtime. `controllers(started, flags, namespace)`
/// starts the binary's controllers; `namespace` is `None` with `--watch-all-namespaces`.
/// Returns 0 after a clean shutdown, 1 after a failure.
pub fn start<Fl, F, Fut>(
    controller: &'static str,
    mut cmd: clap::Command,
    flags: Fl,
    controllers: F,
) -> ExitCode
where
    Fl: ControllerFlags,
    F: Fn(Started, Arc<Fl>, Option<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let gates = flags
        .validate()
        .unwrap_or_else(|e| cmd.error(ErrorKind::InvalidValue, e).exit());
    let namespace = flags
        .common()
        .watch_namespace()
        .unwrap_or_else(|e| cmd.error(ErrorKind::InvalidValue, e).exit());
    let common = flags.common().clone();
    if let Err(e) = crate::logging::init(common.log_level, common.log_encoding) {
        crate::logging::early_error("unable to set up logging", &e);
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "unable to start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let flags = Arc::new(flags);
    let process = run(controller, &common, &gates, move |started| {
        controllers(started, flags.clone(), namespace.clone())
    });
    match rt.block_on(process) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "problem running manager");
            ExitCode::FAILURE
        }
    }
}

/// How long the events queued at shutdown may take to be written.
const EVENT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything a binary's controllers receive.
pub struct Started {
    /// Shared reconcile context (client, events, metrics, backoff).
    pub ctx: Arc<Context>,
    /// Fires when the controllers must stop.
    pub shutdown: Shutdown,
}

/// Runs a controller process until SIGTERM/SIGINT.
///
/// `controllers` starts the binary's controllers and returns when they have stopped; it runs only
/// while this replica leads (always, without `--enable-leader-election`), and again after a lost
/// lease is won back.
pub async fn run<F, Fut>(
    controller: &'static str,
    flags: &CommonFlags,
    gates: &FeatureGates,
    controllers: F,
) -> anyhow::Result<()>
where
    F: Fn(Started) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    crate::client::install_crypto_provider();
    tracing::info!(controller, version = env!("CARGO_PKG_VERSION"), "starting");
    for (gate, value) in gates.changed() {
        match gate.effect {
            GateEffect::ChangesBehaviour => {
                tracing::info!(gate = gate.name, value, "loading feature gate")
            }
            GateEffect::Ignored(why) => {
                tracing::info!(
                    gate = gate.name,
                    value,
                    "feature gate accepted and ignored: {why}"
                )
            }
        }
    }
    if flags.kube_api_qps != 50.0 || flags.kube_api_burst != 300 {
        tracing::info!(
            "--kube-api-qps/--kube-api-burst are accepted; the API server's priority and fairness throttles instead"
        );
    }

    let config = crate::client::load_config(flags.kubeconfig.as_deref()).await?;
    let lease_namespace = crate::client::lease_namespace(&config);
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;

    let (trigger, shutdown) = shutdown::channel();
    let signals = shutdown::fire_on_signal(trigger.clone());

    let metrics = Arc::new(Metrics::new());
    let health = Health::new();
    let mut servers = Vec::new();
    if let Some(addr) = flags.metrics_addr.as_bind() {
        servers.push(
            server::serve(
                "metrics",
                addr,
                server::metrics_router(metrics.clone()),
                shutdown.clone(),
            )
            .await?,
        );
    }
    if let Some(addr) = flags.health_addr.as_bind() {
        servers.push(
            server::serve(
                "health",
                addr,
                server::health_router(health.clone()),
                shutdown.clone(),
            )
            .await?,
        );
    }
    let probe = tokio::spawn(crate::reconcile::probe_api_server(
        client.clone(),
        health.clone(),
        shutdown.clone(),
    ));

    let recorder = Arc::new(
        EventRecorder::new(client.clone(), controller, &flags.events_addr)?
            .with_background_writes(crate::events::QUEUE_SIZE),
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        manager: controller.to_string(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        backoff: Backoff::new(flags.min_retry_delay, flags.max_retry_delay),
        undeclared: Default::default(),
    });

    let outcome = if flags.enable_leader_election {
        let cfg = LeaderConfig {
            lease_name: flags.lease_name(controller),
            namespace: lease_namespace,
            identity: leader::identity(),
            lease_duration: flags.leader_election_lease_duration,
            renew_deadline: flags.leader_election_renew_deadline,
            retry_period: flags.leader_election_retry_period,
            release_on_cancel: flags.leader_election_release_on_cancel,
        };
        leader::run_elected(
            client,
            cfg,
            health.clone(),
            metrics,
            shutdown.clone(),
            move |s| {
                controllers(Started {
                    ctx: ctx.clone(),
                    shutdown: s,
                })
            },
        )
        .await
        .map_err(anyhow::Error::from)
    } else {
        health.set_leading(true);
        controllers(Started {
            ctx,
            shutdown: shutdown.clone(),
        })
        .await
    };

    // Stop the servers and the probe whatever ended the controllers.
    trigger.fire();
    recorder.flush(EVENT_FLUSH_TIMEOUT).await;
    signals.abort();
    let _ = probe.await;
    for s in servers {
        let _ = s.await;
    }
    match &outcome {
        Ok(()) => tracing::info!("stopped"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "stopped with an error"),
    }
    outcome
}
