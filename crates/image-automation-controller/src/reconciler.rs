//! The ImageUpdateAutomation reconciler (`automation.md` §6.2): policies, source, the shared
//! Git cycle, status fields, conditions and events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use api::image_update_automation::{
    INVALID_SOURCE_CONFIGURATION_REASON, ImageUpdateAutomation, ImageUpdateAutomationStatus,
};
use api::meta::{PROGRESSING_REASON, READY, SUCCEEDED_REASON};
use kube::{Api, ResourceExt};
use runtime::conditions::{self, Conditions, ReconcileResult, ResultFinalizer};
use runtime::events::{EventRecorder, EventType};
use runtime::reconcile::{FluxObject, Reconciler, apply_status, reconcile_request};

use crate::cycle::{Job, Outcome, Writers, push_summary};
use crate::policies;
use crate::source::{self, Failure, ResolveOptions};

/// Ready message of a successful run.
pub const READY_MESSAGE: &str = "repository up-to-date";

/// The event of a run (§6.4): a push or a recovery is `Normal`, a failure `Warning`, anything
/// else a `Trace`. `ready` is the final Ready condition's (reason, message).
fn event(
    old_ready: bool,
    new_ready: bool,
    push_summary: Option<String>,
    sync_needed: bool,
    ready: (String, String),
) -> (EventType, String, String) {
    let (reason, message) = ready;
    if new_ready && (!old_ready || push_summary.is_some()) {
        (EventType::Normal, reason, push_summary.unwrap_or(message))
    } else if !new_ready {
        (EventType::Warning, reason, message)
    } else if !sync_needed {
        (
            EventType::Trace,
            SUCCEEDED_REASON.to_owned(),
            "no change since last reconciliation".to_owned(),
        )
    } else {
        (EventType::Trace, SUCCEEDED_REASON.to_owned(), message)
    }
}

/// The reconciler of ImageUpdateAutomations.
pub struct Automation {
    /// API client.
    pub client: kube::Client,
    /// Field manager of status patches.
    pub manager: String,
    /// Event recorder.
    pub recorder: Arc<EventRecorder>,
    /// Resolution options from flags and gates.
    pub opts: ResolveOptions,
    /// One writer per repository branch.
    pub writers: Arc<Writers>,
}

/// What a successful run did.
struct Ran {
    observed: BTreeMap<String, api::refs::ImageRef>,
    outcome: Outcome,
    branches: source::Branches,
}

impl Automation {
    /// Steps after the progress conditions: policies, source, cycle.
    async fn run(&self, obj: &ImageUpdateAutomation, started: Instant) -> Result<Ran, Failure> {
        let ns = obj.namespace().unwrap_or_default();
        let observed =
            policies::observed(&self.client, &ns, obj.spec.policy_selector.as_ref()).await?;
        let source = source::resolve(&source::KubeObjects(&self.client), obj, self.opts).await?;
        let policies = policies::setter_policies(&ns, &observed)?;
        let branches = source.branches.clone();
        let job = Job::new(obj, source, policies, started);
        let outcome = self.writers.submit(job).await?;
        Ok(Ran {
            observed,
            outcome,
            branches,
        })
    }

    async fn patch_progress(&self, obj: &ImageUpdateAutomation) {
        let api: Api<ImageUpdateAutomation> =
            Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        if let Err(e) = apply_status(&api, obj, &obj.status_json(), &self.manager).await {
            tracing::warn!(error = %e, "unable to record the progress status");
        }
    }
}

impl Reconciler<ImageUpdateAutomation> for Automation {
    type Error = Failure;

    async fn reconcile(&self, obj: &mut ImageUpdateAutomation) -> Result<ReconcileResult, Failure> {
        let started = Instant::now();
        let generation = obj.metadata.generation.unwrap_or(0);
        let old_ready = conditions::is_ready(obj.conditions());
        let requested = reconcile_request(obj).map(str::to_owned);
        let status = obj
            .status
            .get_or_insert_with(ImageUpdateAutomationStatus::default);
        let previous_policies = status.observed_policies.clone();
        let previous_revision = status.observed_source_revision.clone();
        status.last_automation_run_time = Some(conditions::now_seconds());
        let new_generation = status.observed_generation.unwrap_or(-1) != generation;
        {
            let mut c = Conditions::new(&mut status.conditions, generation);
            let message = if new_generation {
                format!(
                    "processing object: new generation {} -> {generation}",
                    status.observed_generation.unwrap_or(-1)
                )
            } else {
                "reconciliation in progress".to_owned()
            };
            conditions::progressive_status(&mut c, new_generation, PROGRESSING_REASON, &message);
        }
        if new_generation || requested.as_deref() != status.last_handled_reconcile_at.as_deref() {
            self.patch_progress(obj).await;
        }

        let interval = obj.spec.interval();
        let run = match &interval {
            Ok(_) => self.run(obj, started).await,
            Err(e) => Err(Failure::stalled(
                INVALID_SOURCE_CONFIGURATION_REASON,
                format!("invalid spec.interval: {e}"),
            )),
        };
        let interval = interval.unwrap_or_default();

        let status = obj
            .status
            .get_or_insert_with(ImageUpdateAutomationStatus::default);
        let mut c = Conditions::new(&mut status.conditions, generation);
        let mut summary = None;
        let mut sync_needed = true;
        let (result, err) = match run {
            Ok(ran) => {
                c.delete(READY);
                match ran.outcome {
                    Outcome::UpToDate { revision } => {
                        sync_needed =
                            revision != previous_revision || ran.observed != previous_policies;
                        status.observed_source_revision = revision;
                    }
                    Outcome::Pushed {
                        commit,
                        message,
                        revision,
                        ..
                    } => {
                        summary = Some(push_summary(&commit, &ran.branches, &message));
                        status.last_push_commit = commit;
                        status.last_push_time = Some(conditions::now_seconds());
                        status.observed_source_revision = revision;
                    }
                }
                status.observed_policies = ran.observed;
                (ReconcileResult::after(interval), None)
            }
            Err(Failure::Stalled { reason, message }) => {
                c.mark_stalled(reason, &message);
                c.mark_false(READY, reason, &message);
                (ReconcileResult::default(), None)
            }
            Err(f @ Failure::Retry { .. }) => {
                c.mark_false(READY, f.reason(), f.message());
                (ReconcileResult::default(), Some(f))
            }
        };
        let finalizer = ResultFinalizer::new(
            |r: &ReconcileResult, has_err: bool| !has_err && r.requeue_after == interval,
            READY_MESSAGE,
        );
        let finalized = finalizer.finalize(
            &mut c,
            &result,
            err.clone(),
            requested.as_deref(),
            &mut status.last_handled_reconcile_at,
        );
        c.mark_retrying();
        let ready = conditions::get(c.list(), READY).cloned();
        let new_ready = conditions::is_ready(c.list());
        let (reason, message) = ready.map(|r| (r.reason, r.message)).unwrap_or_default();
        let (t, reason, message) = event(
            old_ready,
            new_ready,
            summary,
            sync_needed,
            (reason, message),
        );
        self.recorder
            .publish_for(obj, t, &reason, &message, BTreeMap::new())
            .await;
        match finalized {
            Ok(()) => Ok(result),
            Err(conditions::FinalizeError::Reconcile(f)) => Err(f),
            Err(conditions::FinalizeError::NotReady(m)) => {
                Err(Failure::retry(api::meta::FAILED_REASON, m))
            }
        }
    }

    async fn cleanup(&self, _obj: &ImageUpdateAutomation) -> Result<(), Failure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> (String, String) {
        (SUCCEEDED_REASON.to_owned(), READY_MESSAGE.to_owned())
    }

    #[test]
    fn events_follow_flux() {
        let pushed = Some("pushed commit 'rev' to branch 'branch'\ntest commit message".to_owned());
        let e = |old, new, push: Option<String>, sync, r| {
            let (t, reason, message) = event(old, new, push, sync, r);
            (t, format!("{reason} {message}"))
        };
        assert_eq!(
            e(false, true, None, true, ready()),
            (EventType::Normal, "Succeeded repository up-to-date".into())
        );
        assert_eq!(
            e(true, true, None, false, ready()),
            (
                EventType::Trace,
                "Succeeded no change since last reconciliation".into()
            )
        );
        assert_eq!(
            e(true, true, None, true, ready()),
            (EventType::Trace, "Succeeded repository up-to-date".into())
        );
        assert_eq!(
            e(true, true, pushed.clone(), true, ready()),
            (
                EventType::Normal,
                "Succeeded pushed commit 'rev' to branch 'branch'\ntest commit message".into()
            )
        );
        assert_eq!(
            e(
                true,
                false,
                None,
                true,
                (
                    "GitOperationFailed".into(),
                    "failed to checkout source".into()
                )
            ),
            (
                EventType::Warning,
                "GitOperationFailed failed to checkout source".into()
            )
        );
    }
}
