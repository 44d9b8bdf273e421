//! Controller plumbing shared by both binaries: flags, logging, metrics, health, leader election, events, conditions.

pub mod conditions;
pub mod features;
pub mod flags;
pub mod logging;
pub mod metrics;
pub mod selector;
pub mod server;
pub mod shutdown;
