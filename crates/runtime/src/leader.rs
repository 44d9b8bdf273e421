//! Lease-based leader election (kube-lease-manager), driving when the controllers run.
//!
//! * Standby replicas wait for the lease; the controllers start only once it is held.
//! * On shutdown (SIGTERM) the controllers stop, then the lease is released at once when
//!   `--leader-election-release-on-cancel` (the default), so a successor takes over immediately.
//! * A killed leader stops renewing; others take over once `--leader-election-lease-duration`
//!   has passed since its last renewal.
//! * A leader that cannot confirm its lease within `--leader-election-renew-deadline` (API server
//!   unreachable), or finds another holder, stops its controllers at once so two leaders never
//!   act together, then stands by again (controller-runtime exits instead; staying up avoids a
//!   restart while the API server is away).

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::LeaseManagerBuilder;

use crate::metrics::{Metrics, NameLabels};
use crate::server::Health;
use crate::shutdown::{self, Shutdown};

/// Leader-election settings, from the `--leader-election-*` flags.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease name (see [`crate::flags::CommonFlags::lease_name`]).
    pub lease_name: String,
    /// Namespace of the lease.
    pub namespace: String,
    /// This replica's identity (`<hostname>_<random>`).
    pub identity: String,
    /// `--leader-election-lease-duration`.
    pub lease_duration: Duration,
    /// `--leader-election-renew-deadline`.
    pub renew_deadline: Duration,
    /// `--leader-election-retry-period`.
    pub retry_period: Duration,
    /// `--leader-election-release-on-cancel`.
    pub release_on_cancel: bool,
}

/// Why leader election ended the process.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The controllers failed.
    #[error(transparent)]
    Work(#[from] anyhow::Error),
}

/// 16 random hex digits (std's per-process random hash keys mixed with the clock and a counter).
pub fn random_hex() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// A unique identity for this replica: hostname plus random suffix, like controller-runtime.
pub fn identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string());
    format!("{host}_{}", random_hex())
}

/// Lease duration and renew grace in whole seconds for kube-lease-manager: the holder renews
/// every retry period, like client-go (grace = duration − retry period, at least 1s, below duration).
pub fn lease_seconds(cfg: &LeaderConfig) -> (u64, u64) {
    let duration = cfg.lease_duration.as_secs_f64().ceil().max(2.0) as u64;
    let retry = cfg.retry_period.as_secs_f64().ceil().max(1.0) as u64;
    let grace = duration.saturating_sub(retry).clamp(1, duration - 1);
    (duration, grace)
}

/// How one leadership term ended.
enum Term {
    /// Process shutdown (or the controllers returned): stop.
    Done,
    /// The lease was lost: stand by again.
    Lost(String),
}

/// Runs `work` only while holding the lease; see the module documentation.
///
/// `work` receives a [`Shutdown`] that fires when it must stop (process shutdown or lost lease);
/// after a lost lease this replica stands by again and calls `work` anew once it leads again.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    cfg: LeaderConfig,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    work: F,
) -> Result<(), LeaderError>
where
    F: Fn(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let labels = NameLabels {
        name: cfg.lease_name.clone(),
    };
    let gauge = metrics.leader_status.get_or_create(&labels).clone();
    loop {
        gauge.set(0);
        health.set_leading(false);
        match term(&client, &cfg, &health, &gauge, &shutdown, &work).await? {
            Term::Done => return Ok(()),
            Term::Lost(reason) => {
                tracing::error!(lease = %cfg.lease_name, reason = %reason,
                    "leader election lost; controllers stopped, standing by");
            }
        }
    }
}

/// Waits for the lease (or shutdown), runs `work` while holding it, and stops it on shutdown
/// or loss.
async fn term<F, Fut>(
    client: &kube::Client,
    cfg: &LeaderConfig,
    health: &Health,
    gauge: &prometheus_client::metrics::gauge::Gauge,
    shutdown: &Shutdown,
    work: &F,
) -> Result<Term, LeaderError>
where
    F: Fn(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (duration, grace) = lease_seconds(cfg);
    tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.lease_name), identity = %cfg.identity,
        "attempting to acquire leader lease");
    // Standby, like client-go: look at the lease every retry period. A fresh manager each round
    // reads the lease anew, so a lease released on SIGTERM is taken within one retry period (a
    // long-lived manager would only look again when the holder's lease expires).
    let mut delay = Duration::from_millis(500);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &cfg.lease_name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_duration(duration)
            .with_grace(grace)
            .build();
        let attempt = async {
            let m = built.await?;
            match tokio::time::timeout(cfg.retry_period, m.changed()).await {
                Ok(Ok(true)) => Ok(Some(m)),
                Ok(Ok(false)) | Err(_) => Ok(None),
                Ok(Err(e)) => Err(e),
            }
        };
        let pause = tokio::select! {
            res = attempt => match res {
                Ok(Some(m)) => break m,
                Ok(None) => {
                    delay = Duration::from_millis(500);
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::error!(error = %e, lease = %cfg.lease_name, namespace = %cfg.namespace,
                        "cannot acquire the leader election lease; retrying in {delay:?}");
                    let d = delay;
                    delay = (delay * 2).min(cfg.retry_period.max(Duration::from_secs(1)) * 6);
                    d
                }
            },
            () = shutdown.clone().wait() => return Ok(Term::Done),
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {},
            () = shutdown.clone().wait() => return Ok(Term::Done),
        }
    };
    let (mut rx, lease_task) = manager.watch().await;
    if !*rx.borrow_and_update() {
        lease_task.abort();
        return Ok(Term::Lost("lease lost right after acquiring it".into()));
    }
    tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.lease_name), "successfully acquired lease");
    gauge.set(1);
    health.set_leading(true);

    let (work_trigger, work_shutdown) = shutdown::channel();
    let mut work_task = tokio::spawn(work(work_shutdown));
    let watchdog = renew_watchdog(client.clone(), cfg.clone());
    tokio::pin!(watchdog);

    let outcome = tokio::select! {
        () = shutdown.clone().wait() => Term::Done,
        lost = &mut watchdog => Term::Lost(lost),
        changed = rx.changed() => match changed {
            Ok(()) if *rx.borrow() => Term::Lost("lease state changed unexpectedly".into()),
            _ => Term::Lost("lease taken by another replica".into()),
        },
        res = &mut work_task => {
            // The controllers ended on their own: give the lease back and report why.
            gauge.set(0);
            drop(rx);
            let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
            return match res {
                Ok(Ok(())) => Ok(Term::Done),
                Ok(Err(e)) => Err(LeaderError::Work(e)),
                Err(e) => Err(LeaderError::Work(anyhow::anyhow!("controllers panicked: {e}"))),
            };
        }
    };

    // Stop the controllers first, so nothing reconciles once the lease is released.
    work_trigger.fire();
    match tokio::time::timeout(Duration::from_secs(8), &mut work_task).await {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "controllers stopped with an error"),
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("controllers did not stop within 8s; aborting them");
            work_task.abort();
        }
    }
    gauge.set(0);
    health.set_leading(false);
    health.reset_controllers();
    if cfg.release_on_cancel && matches!(outcome, Term::Done) {
        // Dropping the receiver makes the lease task release the lease and exit.
        drop(rx);
        match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %cfg.lease_name, "released leader lease"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "failed to release the leader lease"),
            Ok(Err(e)) => tracing::error!(error = %e, "lease task failed"),
            Err(_) => tracing::error!("timed out releasing the leader lease"),
        }
    } else {
        lease_task.abort();
    }
    Ok(outcome)
}

/// Resolves with a reason once this replica can no longer prove it holds the lease: another
/// holder is recorded, or no successful read for longer than the renew deadline.
async fn renew_watchdog(client: kube::Client, cfg: LeaderConfig) -> String {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(cfg.retry_period).await;
        // A stalled API server accepts connections but never answers: bound each read.
        let read = tokio::time::timeout(
            cfg.retry_period.max(Duration::from_secs(1)),
            api.get(&cfg.lease_name),
        )
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("lease read timed out".into())));
        match read {
            Ok(lease) => {
                let holder = lease
                    .spec
                    .and_then(|s| s.holder_identity)
                    .unwrap_or_default();
                if holder != cfg.identity {
                    return format!("lease is held by '{holder}'");
                }
                last_ok = Instant::now();
            }
            Err(e) => {
                if last_ok.elapsed() > cfg.renew_deadline {
                    return format!(
                        "could not confirm the lease within the renew deadline ({:?}): {e}",
                        cfg.renew_deadline
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lease: u64, retry: u64) -> LeaderConfig {
        LeaderConfig {
            lease_name: "x".into(),
            namespace: "ns".into(),
            identity: identity(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(lease - 1),
            retry_period: Duration::from_secs(retry),
            release_on_cancel: true,
        }
    }

    #[test]
    fn lease_timing_follows_flags() {
        assert_eq!(lease_seconds(&cfg(35, 5)), (35, 30));
        assert_eq!(lease_seconds(&cfg(15, 2)), (15, 13));
        // Degenerate values stay within the crate's rules (0 < grace < duration).
        assert_eq!(lease_seconds(&cfg(2, 5)), (2, 1));
    }

    #[test]
    fn identities_are_unique() {
        let a = identity();
        let b = identity();
        assert_ne!(a, b);
        assert!(a.contains('_'));
    }
}
