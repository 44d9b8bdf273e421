//! Tag selection engine: Masterminds-compatible semver, alphabetical and numerical policies, tag filters.
