//! image-reflector-controller as a library: the reconcilers and their pure pieces, shared by the
//! controller binary and by the automation controller's standalone mode (`run-once`), which runs the
//! same scan and policy evaluation without a cluster.

pub mod cluster;
pub mod controller;
pub mod policy;
pub mod registry_metrics;
pub mod repository;
pub mod select;
