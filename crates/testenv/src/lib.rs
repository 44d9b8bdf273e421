//! Test support for the loopback test environment started by `hack/testenv.sh up`: typed access to its registries,
//! Git servers and proxies, a registry push helper, and seeded Git repositories. For other crates' tests only.

pub mod token;
