//! One shutdown signal shared by servers, the leader elector and the controllers.

use tokio::sync::watch;

/// Fires the shutdown.
#[derive(Debug, Clone)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, unfired shutdown pair.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Fires the shutdown; every waiter wakes. Idempotent.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A new waiter.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Resolves once the shutdown fired (or its trigger was dropped).
    pub async fn wait(mut self) {
        // An error means every trigger is gone, which also means shut down.
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// Whether the shutdown has fired.
    pub fn fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT, shutting down"),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot install SIGTERM handler; only SIGINT stops the process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Spawns a task that fires `trigger` on SIGTERM/SIGINT.
pub fn fire_on_signal(trigger: Trigger) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        signal().await;
        trigger.fire();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fire_wakes_all_waiters() {
        let (t, s) = channel();
        let a = tokio::spawn(s.clone().wait());
        let b = tokio::spawn(t.subscribe().wait());
        assert!(!s.fired());
        t.fire();
        a.await.unwrap();
        b.await.unwrap();
        assert!(s.fired());
        // A waiter created after firing returns at once.
        t.subscribe().wait().await;
    }
}
