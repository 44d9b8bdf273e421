//! Kubernetes API types and CRDs of the image.toolkit.fluxcd.io group, plus the read-only GitRepository type.
//!
//! The controllers only read and write `v1`; the CRDs also serve `v1beta2` and `v1beta1` from the
//! same schema (see [`crd`]).

pub mod crd;
pub mod duration;
pub mod git_repository;
pub mod image_policy;
pub mod image_repository;
pub mod image_update_automation;
pub mod meta;
pub mod refs;

pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use git_repository::{GitCheckout, GitRepository, GitRepositoryRef, GitRepositorySpec};
pub use image_policy::{ImagePolicy, ImagePolicySpec, ImagePolicyStatus};
pub use image_repository::{ImageRepository, ImageRepositorySpec, ImageRepositoryStatus};
pub use image_update_automation::{
    ImageUpdateAutomation, ImageUpdateAutomationSpec, ImageUpdateAutomationStatus,
};
pub use refs::ImageRef;

/// API group of the image kinds.
pub const GROUP: &str = "image.toolkit.fluxcd.io";
