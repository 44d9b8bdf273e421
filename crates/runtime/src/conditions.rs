//! Flux's kstatus condition rules (`fluxcd/pkg/runtime/conditions` and `.../reconcile`),
//! reproduced on `Vec<metav1.Condition>`.
//!
//! * [`Conditions::set`]: `observedGeneration` is always the object's generation, the message is
//!   truncated to 32768 bytes with a `...` suffix, `lastTransitionTime` changes only when status,
//!   reason or message change, and the list stays sorted `Stalled`, `Reconciling`, `Ready`, then
//!   the others by descending `observedGeneration` and type.
//! * [`Conditions::mark_stalled`], [`Conditions::mark_reconciling`], [`progressive_status`] and
//!   [`ResultFinalizer::finalize`] (steps 1–8 of `reflector.md` §2.1).

use std::cmp::Ordering;
use std::fmt::Display;
use std::time::Duration;

use api::meta::{
    FAILED_REASON, MAX_CONDITION_MESSAGE_LEN, PROGRESSING_WITH_RETRY_REASON, READY, RECONCILING,
    STALLED, SUCCEEDED_REASON,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition status `True`.
pub const TRUE: &str = "True";
/// Condition status `False`.
pub const FALSE: &str = "False";
/// Condition status `Unknown`.
pub const UNKNOWN: &str = "Unknown";

const TRIM_SUFFIX: &str = "...";

/// The current time truncated to whole seconds, as Flux stamps `lastTransitionTime`.
pub fn now_seconds() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Truncates `msg` to at most `max` bytes, ending in `...` when cut. Go slices bytes and may
/// split a UTF-8 sequence; we cut at the nearest character boundary below instead.
pub fn trim_message(msg: &str, max: usize) -> String {
    let max = max.max(TRIM_SUFFIX.len());
    if msg.len() <= max {
        return msg.to_string();
    }
    let mut cut = max - TRIM_SUFFIX.len();
    while !msg.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{TRIM_SUFFIX}", &msg[..cut])
}

/// The condition of type `t`, if present.
pub fn get<'a>(list: &'a [Condition], t: &str) -> Option<&'a Condition> {
    list.iter().find(|c| c.type_ == t)
}

/// Whether a condition of type `t` is present.
pub fn has(list: &[Condition], t: &str) -> bool {
    get(list, t).is_some()
}

/// Whether condition `t` is present with status True.
pub fn is_true(list: &[Condition], t: &str) -> bool {
    get(list, t).is_some_and(|c| c.status == TRUE)
}

/// Whether condition `t` is present with status False.
pub fn is_false(list: &[Condition], t: &str) -> bool {
    get(list, t).is_some_and(|c| c.status == FALSE)
}

/// Whether condition `t` is Unknown or absent.
pub fn is_unknown(list: &[Condition], t: &str) -> bool {
    get(list, t).is_none_or(|c| c.status == UNKNOWN)
}

/// `Stalled=True` and not `Reconciling=True`.
pub fn is_stalled(list: &[Condition]) -> bool {
    !is_true(list, RECONCILING) && is_true(list, STALLED)
}

/// `Reconciling=True` and not `Stalled=True`.
pub fn is_reconciling(list: &[Condition]) -> bool {
    !is_true(list, STALLED) && is_true(list, RECONCILING)
}

/// `Ready=True` and neither stalled nor reconciling.
pub fn is_ready(list: &[Condition]) -> bool {
    !is_stalled(list) && !is_reconciling(list) && is_true(list, READY)
}

/// Reason of condition `t`, empty when absent.
pub fn reason<'a>(list: &'a [Condition], t: &str) -> &'a str {
    get(list, t).map_or("", |c| c.reason.as_str())
}

/// Message of condition `t`, empty when absent.
pub fn message<'a>(list: &'a [Condition], t: &str) -> &'a str {
    get(list, t).map_or("", |c| c.message.as_str())
}

fn weight(t: &str) -> Option<u8> {
    match t {
        STALLED => Some(0),
        RECONCILING => Some(1),
        READY => Some(2),
        _ => None,
    }
}

/// Flux's `lexicographicLess` as a total order.
fn order(a: &Condition, b: &Condition) -> Ordering {
    match (weight(&a.type_), weight(&b.type_)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b
            .observed_generation
            .unwrap_or(0)
            .cmp(&a.observed_generation.unwrap_or(0))
            .then_with(|| a.type_.cmp(&b.type_)),
    }
}

fn same_state(a: &Condition, b: &Condition) -> bool {
    a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message
}

/// A mutable view of an object's conditions, bound to its generation and a clock reading.
#[derive(Debug)]
pub struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    generation: i64,
    now: Time,
}

impl<'a> Conditions<'a> {
    /// A view stamping transitions with the current time (truncated to seconds).
    pub fn new(list: &'a mut Vec<Condition>, generation: i64) -> Self {
        Self::at(list, generation, now_seconds())
    }

    /// A view stamping transitions with `now` (for tests and replays).
    pub fn at(list: &'a mut Vec<Condition>, generation: i64, now: Time) -> Self {
        Self {
            list,
            generation,
            now,
        }
    }

    /// The conditions as they are now.
    pub fn list(&self) -> &[Condition] {
        self.list
    }

    /// Flux's `conditions.Set`.
    pub fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let mut cond = Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: trim_message(message, MAX_CONDITION_MESSAGE_LEN),
            observed_generation: Some(self.generation),
            last_transition_time: self.now.clone(),
        };
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(existing) => {
                if !same_state(existing, &cond) {
                    *existing = cond;
                } else if existing.observed_generation != cond.observed_generation {
                    cond.last_transition_time = existing.last_transition_time.clone();
                    *existing = cond;
                }
            }
            None => self.list.push(cond),
        }
        self.list.sort_by(order);
    }

    /// Sets `t` to True.
    pub fn mark_true(&mut self, t: &str, reason: &str, message: &str) {
        self.set(t, TRUE, reason, message);
    }

    /// Sets `t` to False.
    pub fn mark_false(&mut self, t: &str, reason: &str, message: &str) {
        self.set(t, FALSE, reason, message);
    }

    /// Sets `t` to Unknown.
    pub fn mark_unknown(&mut self, t: &str, reason: &str, message: &str) {
        self.set(t, UNKNOWN, reason, message);
    }

    /// Removes condition `t`.
    pub fn delete(&mut self, t: &str) {
        self.list.retain(|c| c.type_ != t);
    }

    /// Deletes Stalled and sets Reconciling=True.
    pub fn mark_reconciling(&mut self, reason: &str, message: &str) {
        self.delete(STALLED);
        self.mark_true(RECONCILING, reason, message);
    }

    /// Deletes Reconciling and sets Stalled=True.
    pub fn mark_stalled(&mut self, reason: &str, message: &str) {
        self.delete(RECONCILING);
        self.mark_true(STALLED, reason, message);
    }

    /// What both controllers do after finalizing: a Reconciling condition still present gets
    /// reason `ProgressingWithRetry`, keeping its message.
    pub fn mark_retrying(&mut self) {
        if let Some(c) = get(self.list, RECONCILING) {
            let (status, message) = (c.status.clone(), c.message.clone());
            self.set(
                RECONCILING,
                &status,
                PROGRESSING_WITH_RETRY_REASON,
                &message,
            );
        }
    }
}

/// Flux's `reconcile.ProgressiveStatus`: Reconciling=True always; Ready=Unknown with the same
/// reason and message when `drift`, or Ready is absent or Unknown.
pub fn progressive_status(c: &mut Conditions<'_>, drift: bool, reason: &str, message: &str) {
    c.mark_reconciling(reason, message);
    if drift || !has(c.list(), READY) || is_unknown(c.list(), READY) {
        c.mark_unknown(READY, reason, message);
    }
}

/// controller-runtime's `ctrl.Result`: zero means "done, wait for a change".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconcileResult {
    /// Requeue now (with rate limiting).
    pub requeue: bool,
    /// Requeue after this delay; zero means not at all.
    pub requeue_after: Duration,
}

impl ReconcileResult {
    /// A result requeueing after `d`.
    pub fn after(d: Duration) -> Self {
        Self {
            requeue: false,
            requeue_after: d,
        }
    }

    /// Whether this is the zero result.
    pub fn is_zero(&self) -> bool {
        !self.requeue && self.requeue_after.is_zero()
    }
}

/// The error [`ResultFinalizer::finalize`] returns.
#[derive(Debug, PartialEq, Eq)]
pub enum FinalizeError<E> {
    /// The reconcile error, passed through.
    Reconcile(E),
    /// A "successful" result that left Ready=False (step 6): the Ready message as an error.
    NotReady(String),
}

impl<E: Display> Display for FinalizeError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FinalizeError::Reconcile(e) => e.fmt(f),
            FinalizeError::NotReady(m) => f.write_str(m),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FinalizeError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FinalizeError::Reconcile(e) => Some(e),
            FinalizeError::NotReady(_) => None,
        }
    }
}

/// Flux's `reconcile.ResultFinalizer` (without summary conditions, which neither image
/// controller uses).
pub struct ResultFinalizer<F> {
    is_success: F,
    ready_message: String,
}

impl<F: Fn(&ReconcileResult, bool) -> bool> ResultFinalizer<F> {
    /// `is_success(result, has_error)` defines success; `ready_message` is the Ready=True message.
    pub fn new(is_success: F, ready_message: impl Into<String>) -> Self {
        Self {
            is_success,
            ready_message: ready_message.into(),
        }
    }

    /// Steps 1–8: makes the conditions kstatus-compliant for the outcome, copies the reconcile
    /// request annotation (`requested_at`) into `last_handled`, and returns the error to report.
    pub fn finalize<E: Display>(
        &self,
        c: &mut Conditions<'_>,
        res: &ReconcileResult,
        rec_err: Option<E>,
        requested_at: Option<&str>,
        last_handled: &mut Option<String>,
    ) -> Result<(), FinalizeError<E>> {
        // 1. What success means for this reconciler.
        let no_requeue = (self.is_success)(&ReconcileResult::default(), false);
        let success = (self.is_success)(res, rec_err.is_some());
        // 2. An error means a retry, never Stalled.
        if rec_err.is_some() {
            c.delete(STALLED);
        }
        // 3. Not success (or indistinguishable from stalled): settle Stalled and mirror it in Ready.
        if !success || no_requeue {
            if !res.is_zero() && !(self.is_success)(res, false) {
                c.delete(STALLED);
            }
            let overwrite_ready = is_unknown(c.list(), READY) || is_true(c.list(), READY);
            if is_true(c.list(), STALLED) && overwrite_ready {
                let (r, m) = (
                    reason(c.list(), STALLED).to_string(),
                    message(c.list(), STALLED).to_string(),
                );
                c.mark_false(READY, &r, &m);
            }
        }
        // 4. Done reconciling when successful or stalled.
        if success || is_true(c.list(), STALLED) {
            c.delete(RECONCILING);
        }
        // 5. The error becomes Ready=False unless a specific Ready=False is already there.
        if let Some(e) = &rec_err
            && (is_unknown(c.list(), READY) || is_true(c.list(), READY))
        {
            c.mark_false(READY, FAILED_REASON, &e.to_string());
        }
        // 6. "Success" with an explicit Ready=False that is not stalled is an error.
        let mut err = rec_err.map(FinalizeError::Reconcile);
        if success
            && !no_requeue
            && !is_unknown(c.list(), READY)
            && is_false(c.list(), READY)
            && !is_stalled(c.list())
        {
            err = Some(FinalizeError::NotReady(
                message(c.list(), READY).to_string(),
            ));
        }
        // 7. Ready=True when nothing else decided Ready.
        if is_unknown(c.list(), READY)
            && (self.is_success)(res, err.is_some())
            && !is_reconciling(c.list())
            && !is_stalled(c.list())
        {
            c.mark_true(READY, SUCCEEDED_REASON, &self.ready_message);
        }
        // 8. Record the handled reconcile request.
        if let Some(v) = requested_at {
            *last_handled = Some(v.to_string());
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
