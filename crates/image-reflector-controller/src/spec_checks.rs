//! ImagePolicy spec checks that the CRD's CEL rules make only on servers that enforce CEL (1.25+):
//! on older servers an invalid object is stalled with a condition naming the field instead.

use std::convert::Infallible;

use api::ImagePolicy;
use api::image_policy::{INTERVAL_NOT_CONFIGURED_REASON, INVALID_POLICY_REASON};
use api::meta::{READY, STALLED};
use runtime::conditions::{self, Conditions, ReconcileResult};
use runtime::reconcile::Reconciler;

/// The ImagePolicy reconciler until tag selection lands: the plumbing plus the spec checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpecChecks;

impl Reconciler<ImagePolicy> for SpecChecks {
    type Error = Infallible;

    async fn reconcile(&self, obj: &mut ImagePolicy) -> Result<ReconcileResult, Infallible> {
        let generation = obj.metadata.generation.unwrap_or(0);
        match obj.spec.check() {
            Err(v) => {
                let status = obj.status.get_or_insert_default();
                let mut c = Conditions::new(&mut status.conditions, generation);
                c.mark_stalled(v.reason, v.message);
                c.mark_false(READY, v.reason, v.message);
            }
            Ok(()) => {
                // A fixed spec clears the stall this check set, and nothing else.
                if let Some(status) = obj.status.as_mut()
                    && conditions::is_true(&status.conditions, STALLED)
                    && matches!(
                        conditions::reason(&status.conditions, STALLED),
                        INTERVAL_NOT_CONFIGURED_REASON | INVALID_POLICY_REASON
                    )
                {
                    let mut c = Conditions::new(&mut status.conditions, generation);
                    c.delete(STALLED);
                    c.delete(READY);
                }
            }
        }
        Ok(ReconcileResult::default())
    }

    async fn cleanup(&self, _obj: &ImagePolicy) -> Result<(), Infallible> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: serde_json::Value) -> ImagePolicy {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImagePolicy",
            "metadata": {"name": "podinfo", "namespace": "flux-system", "generation": 2},
            "spec": spec,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn an_invalid_spec_stalls_naming_the_field_and_a_fixed_one_clears_it() {
        let mut p = policy(serde_json::json!({
            "imageRepositoryRef": {"name": "podinfo"},
            "policy": {"semver": {"range": "5.0.x"}},
            "digestReflectionPolicy": "Always",
        }));
        SpecChecks.reconcile(&mut p).await.unwrap();
        let conds = &p.status.as_ref().unwrap().conditions;
        assert!(conditions::is_stalled(conds));
        assert_eq!(
            conditions::reason(conds, READY),
            INTERVAL_NOT_CONFIGURED_REASON
        );
        assert!(conditions::message(conds, STALLED).contains("spec.interval"));
        assert!(conditions::is_false(conds, READY));

        p.spec.interval = Some("5m".into());
        SpecChecks.reconcile(&mut p).await.unwrap();
        assert!(p.status.as_ref().unwrap().conditions.is_empty());
    }

    #[tokio::test]
    async fn a_valid_spec_gets_no_status() {
        let mut p = policy(serde_json::json!({
            "imageRepositoryRef": {"name": "podinfo"},
            "policy": {"semver": {"range": "5.0.x"}},
        }));
        SpecChecks.reconcile(&mut p).await.unwrap();
        assert!(p.status.is_none());
    }
}
