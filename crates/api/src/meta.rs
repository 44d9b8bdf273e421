//! Constants shared by all Flux kinds (fluxcd/pkg/apis/meta): condition types, generic reasons,
//! the finalizer and the reconcile-request annotation.

/// Condition type: the object is ready.
pub const READY: &str = "Ready";
/// Condition type (negative polarity, present only when True): a reconciliation is in progress.
pub const RECONCILING: &str = "Reconciling";
/// Condition type (negative polarity, present only when True): the object cannot make progress without a change.
pub const STALLED: &str = "Stalled";

/// Reason: the reconciliation succeeded.
pub const SUCCEEDED_REASON: &str = "Succeeded";
/// Reason: the reconciliation failed.
pub const FAILED_REASON: &str = "Failed";
/// Reason: a reconciliation is in progress.
pub const PROGRESSING_REASON: &str = "Progressing";
/// Reason: a failed reconciliation will be retried.
pub const PROGRESSING_WITH_RETRY_REASON: &str = "ProgressingWithRetry";
/// Reason: a dependency is not ready yet.
pub const DEPENDENCY_NOT_READY_REASON: &str = "DependencyNotReady";
/// Reason: a feature gate needed by the object is disabled.
pub const FEATURE_GATE_DISABLED_REASON: &str = "FeatureGateDisabled";
/// Reason: a cross-namespace reference was denied.
pub const ACCESS_DENIED_REASON: &str = "AccessDenied";

/// Finalizer put on every object the controllers reconcile.
pub const FINALIZER: &str = "finalizers.fluxcd.io";
/// Annotation whose change requests an immediate reconciliation; its value is copied to
/// `status.lastHandledReconcileAt`.
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Maximum length of a condition message; longer ones are truncated with a `...` suffix.
pub const MAX_CONDITION_MESSAGE_LEN: usize = 32768;
