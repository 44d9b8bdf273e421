//! Kubernetes API types and CRDs of the image.toolkit.fluxcd.io group, plus the read-only GitRepository type.

pub mod meta;
