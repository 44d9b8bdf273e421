//! Controller plumbing shared by both binaries: flags, logging, metrics, health, leader election,
//! events, conditions and the reconcile loop. It knows Kubernetes, never registries, Git or YAML.
//!
//! | module | what |
//! |---|---|
//! | [`flags`], [`features`] | Flux's command-line flags and feature gates, per controller |
//! | [`logging`] | JSON lines with Flux's keys (`level`, `ts`, `msg`, …) or console output |
//! | [`metrics`], [`server`] | `gotk_*` and controller-runtime metrics on `/metrics`; `/healthz`, `/readyz` |
//! | [`client`] | kubeconfig / in-cluster configuration, one rustls provider (aws-lc-rs) |
//! | [`leader`] | Lease leader election (kube-lease-manager) |
//! | [`events`] | core/v1 Events with count deduplication; notification-controller forwarding |
//! | [`conditions`] | Flux's Ready/Reconciling/Stalled rules and `ResultFinalizer` |
//! | [`reconcile`], [`kinds`] | watch + predicates, finalizer, suspend, status by server-side apply, backoff |
//! | [`app`] | the process: everything above around a binary's controllers |
//!
//! Feature gates and what they do here (see [`features`] and each binary's `--help`):
//!
//! | gate | controller | default | here |
//! |---|---|---|---|
//! | `ObjectLevelWorkloadIdentity` | both | false | changes behaviour (cloud `serviceAccountName`; needed by `--default-service-account`) |
//! | `CacheSecretsAndConfigMaps` | both | false | accepted, ignored: Secrets/ConfigMaps are always read directly |
//! | `FluxStorage` | reflector | false | accepted, ignored: the tag store is always file-per-repository with `sha256:` revisions |
//! | `GitForcePushBranch` | automation | true | changes behaviour (push-branch semantics) |
//! | `GitAllBranchReferences` | automation | true | changes behaviour (push-branch semantics) |
//! | `GitShallowClone` | automation | true | accepted, ignored: clones come from an incrementally fetched local mirror |
//! | `GitSparseCheckout` | automation | false | accepted, ignored: checkouts come from the local mirror |

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
pub mod schema;
pub mod selector;
pub mod server;
pub mod shutdown;
#[cfg(feature = "test-support")]
pub mod test_support;

#[cfg(test)]
pub(crate) mod testing;
