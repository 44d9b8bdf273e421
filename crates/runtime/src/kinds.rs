//! [`FluxObject`] for the image kinds (here because of the orphan rule: the trait lives in this
//! crate and the types in `api`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::Value;

use api::{ImagePolicy, ImageRepository, ImageUpdateAutomation};

use crate::reconcile::FluxObject;

macro_rules! flux_object {
    ($($t:ty),+) => {$(
        impl FluxObject for $t {
            fn suspended(&self) -> bool {
                self.spec.suspend
            }
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map_or(&[], |s| s.conditions.as_slice())
            }
            fn last_handled_reconcile_at(&self) -> Option<&str> {
                self.status.as_ref()?.last_handled_reconcile_at.as_deref()
            }
            fn set_last_handled_reconcile_at(&mut self, value: String) {
                self.status.get_or_insert_default().last_handled_reconcile_at = Some(value);
            }
            fn set_observed_generation(&mut self, generation: i64) {
                self.status.get_or_insert_default().observed_generation = Some(generation);
            }
            fn status_json(&self) -> Value {
                serde_json::to_value(&self.status).unwrap_or(Value::Null)
            }
        }
    )+};
}

flux_object!(ImageRepository, ImagePolicy, ImageUpdateAutomation);

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn status_round_trip_through_the_trait() {
        let mut r: ImageRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": {"name": "podinfo", "namespace": "flux-system", "generation": 3},
            "spec": {"image": "ghcr.io/stefanprodan/podinfo", "interval": "1m", "suspend": true}
        }))
        .unwrap();
        assert!(r.suspended());
        assert!(r.conditions().is_empty());
        assert_eq!(r.status_json(), Value::Null);
        r.set_last_handled_reconcile_at("now".into());
        assert_eq!(r.last_handled_reconcile_at(), Some("now"));
        assert_eq!(
            r.status_json(),
            serde_json::json!({"lastHandledReconcileAt": "now"})
        );
        assert_eq!(ImageRepository::kind(&()), "ImageRepository");
        let p: ImagePolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImagePolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"imageRepositoryRef": {"name": "podinfo"}, "policy": {"semver": {"range": "5.0.x"}}}
        }))
        .unwrap();
        assert!(!p.suspended());
    }
}
