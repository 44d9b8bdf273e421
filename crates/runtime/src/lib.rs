//! Controller plumbing shared by both binaries: flags, logging, metrics, health, leader election, events, conditions.

pub mod app;
pub mod client;
pub mod conditions;
pub mod events;
pub mod features;
pub mod flags;
pub mod kinds;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod reconcile;
pub mod selector;
pub mod server;
pub mod shutdown;
#[cfg(feature = "test-support")]
pub mod test_support;

#[cfg(test)]
pub(crate) mod testing;
