//! The real kube-apiserver of the test environment: namespaces, a CRD with server-side apply of spec and
//! status, core/v1 Events, and the controllers' ServiceAccount identities under RBAC.

use anyhow::{Context, Result, ensure};
use e2e::{
    KUBE_NAMESPACE, KUBECONFIG_AUTOMATION, KUBECONFIG_REFLECTOR, admin_client, client_from,
    create_namespace, eventually, testenv_var,
};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, ObjectReference};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A tiny namespaced custom resource with a status subresource.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "e2e.testenv.example",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[serde(rename_all = "camelCase")]
struct WidgetSpec {
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct WidgetStatus {
    observed_generation: i64,
    ready: bool,
}

#[tokio::test]
async fn namespace_create() -> Result<()> {
    let client = admin_client().await?;
    let name = create_namespace(&client, "ns").await?;
    let ns = Api::<Namespace>::all(client)
        .get(&name)
        .await
        .context("reading the namespace back")?;
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    Ok(())
}

async fn install_widget_crd(client: &Client) -> Result<()> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = Widget::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .with_context(|| format!("server-side apply of CRD {name}"))?;
    tokio::time::timeout(
        e2e::LIVENESS,
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await
    .with_context(|| format!("CRD {name} not Established"))?
    .with_context(|| format!("watching CRD {name}"))?;
    Ok(())
}

#[tokio::test]
async fn custom_resource_spec_and_status_server_side_apply() -> Result<()> {
    let client = admin_client().await?;
    install_widget_crd(&client).await?;
    let ns = create_namespace(&client, "crd").await?;
    let widgets = Api::<Widget>::namespaced(client.clone(), &ns);

    // Spec through the main resource. A status sent along is ignored: status is a subresource.
    let mut widget = Widget::new(
        "w1",
        WidgetSpec {
            size: 3,
            label: Some("first".into()),
        },
    );
    widget.status = Some(WidgetStatus {
        observed_generation: 99,
        ready: true,
    });
    let spec_pp = PatchParams::apply("e2e-spec").force();
    // Discovery of a just-established CRD can lag by a moment.
    let created = eventually("applying Widget w1", || async {
        widgets
            .patch("w1", &spec_pp, &Patch::Apply(&widget))
            .await
            .context("SSA of Widget w1")
    })
    .await?;
    assert_eq!(
        created.spec,
        WidgetSpec {
            size: 3,
            label: Some("first".into())
        }
    );
    assert_eq!(
        created.status, None,
        "status written through the main resource must be ignored"
    );
    let generation = created.metadata.generation.context("no generation")?;

    // Status through the /status subresource, by another field manager.
    let status_patch = json!({
        "apiVersion": "e2e.testenv.example/v1",
        "kind": "Widget",
        "status": { "observedGeneration": generation, "ready": true },
    });
    let with_status = widgets
        .patch_status(
            "w1",
            &PatchParams::apply("e2e-status").force(),
            &Patch::Apply(&status_patch),
        )
        .await
        .context("SSA of Widget w1 status")?;
    assert_eq!(
        with_status.status,
        Some(WidgetStatus {
            observed_generation: generation,
            ready: true
        })
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(generation),
        "a status write must not bump generation"
    );
    assert_eq!(with_status.spec, created.spec);

    // A spec change bumps generation and keeps the status; dropping `label` from the applied config removes it.
    let changed = Widget::new(
        "w1",
        WidgetSpec {
            size: 5,
            label: None,
        },
    );
    let updated = widgets
        .patch("w1", &spec_pp, &Patch::Apply(&changed))
        .await
        .context("re-applying Widget w1")?;
    assert_eq!(
        updated.spec,
        WidgetSpec {
            size: 5,
            label: None
        }
    );
    assert_eq!(updated.metadata.generation, Some(generation + 1));
    assert_eq!(
        updated.status,
        Some(WidgetStatus {
            observed_generation: generation,
            ready: true
        })
    );

    let managers: Vec<String> = updated
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"e2e-spec".to_string()), "{managers:?}");
    assert!(managers.contains(&"e2e-status".to_string()), "{managers:?}");
    Ok(())
}

#[tokio::test]
async fn core_v1_event_for_an_object() -> Result<()> {
    let client = admin_client().await?;
    let ns = create_namespace(&client, "event").await?;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("subject".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let cm = config_maps
        .create(&PostParams::default(), &cm)
        .await
        .context("creating ConfigMap subject")?;
    let uid = cm.uid().context("ConfigMap without uid")?;

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some("subject.".into()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            name: Some("subject".into()),
            namespace: Some(ns.clone()),
            uid: Some(uid.clone()),
            ..ObjectReference::default()
        },
        reason: Some("E2ETest".into()),
        message: Some("an event from the end-to-end tests".into()),
        type_: Some("Normal".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("e2e".into()),
            host: None,
        }),
        ..Event::default()
    };
    let events = Api::<Event>::namespaced(client, &ns);
    events
        .create(&PostParams::default(), &event)
        .await
        .context("creating the Event")?;

    let found = events
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .context("listing Events by involvedObject.uid")?;
    ensure!(
        found.items.len() == 1,
        "expected one Event for the ConfigMap, got {:?}",
        found.items
    );
    let got = &found.items[0];
    assert_eq!(got.reason.as_deref(), Some("E2ETest"));
    assert_eq!(got.involved_object.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(
        got.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("e2e")
    );
    Ok(())
}

/// The controllers' tokens carry their ServiceAccount user names, so a binding whose subject is the
/// ServiceAccount (as in config/rbac) grants them exactly what it says, and nothing else.
#[tokio::test]
async fn controller_identities_get_only_what_their_serviceaccount_is_bound_to() -> Result<()> {
    let admin = admin_client().await?;
    let home = testenv_var(KUBE_NAMESPACE)?;
    let ns = create_namespace(&admin, "rbac").await?;
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-configmaps".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .context("creating Role")?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("reflector-reads-configmaps".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "read-configmaps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "image-reflector-controller".into(),
            namespace: Some(home.clone()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .context("creating RoleBinding")?;

    let reflector = client_from(KUBECONFIG_REFLECTOR).await?;
    let automation = client_from(KUBECONFIG_AUTOMATION).await?;
    // The authorizer's cache picks the binding up shortly.
    eventually("reflector identity listing configmaps", || async {
        Api::<ConfigMap>::namespaced(reflector.clone(), &ns)
            .list(&ListParams::default())
            .await
            .context("reflector listing configmaps")
    })
    .await?;

    let denied = Api::<ConfigMap>::namespaced(automation, &ns)
        .list(&ListParams::default())
        .await;
    assert_forbidden(denied, "automation identity (not bound) listing configmaps")?;
    // Neither check may touch what config/rbac grants (tests/rbac.rs installs it into the same server):
    // configmaps in a namespace other than the home one, and pods.
    let other = create_namespace(&admin, "rbac-other").await?;
    let elsewhere = Api::<ConfigMap>::namespaced(reflector.clone(), &other)
        .list(&ListParams::default())
        .await;
    assert_forbidden(
        elsewhere,
        "reflector identity listing configmaps outside the bound namespace",
    )?;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(reflector, &ns)
        .list(&ListParams::default())
        .await;
    assert_forbidden(pods, "reflector identity listing pods (not in the Role)")?;
    Ok(())
}

fn assert_forbidden<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            // The message names the user, proving which identity the token carries.
            ensure!(
                status.message.contains("system:serviceaccount:"),
                "{what}: unexpected message {}",
                status.message
            );
            Ok(())
        }
        other => anyhow::bail!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// kube's `Recorder` writes events.k8s.io/v1 Events; 1.20 serves them as core/v1 Events too, which is what
/// `kubectl describe` and Flux's notification tooling read.
#[tokio::test]
async fn recorder_event_is_visible_as_core_v1_event() -> Result<()> {
    use kube::runtime::events::{Event as RecordedEvent, EventType, Recorder, Reporter};
    let client = admin_client().await?;
    let ns = create_namespace(&client, "recorder").await?;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("subject".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .context("creating ConfigMap subject")?;
    let uid = cm.uid().context("ConfigMap without uid")?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "e2e-controller".into(),
            instance: Some("e2e-0".into()),
        },
    );
    let event = RecordedEvent {
        type_: EventType::Warning,
        reason: "E2ERecorded".into(),
        note: Some("published through kube's Recorder".into()),
        action: "Testing".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &cm.object_ref(&()))
        .await
        .context("publishing through the Recorder")?;

    let found = Api::<Event>::namespaced(client, &ns)
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .context("listing core/v1 Events")?;
    ensure!(
        found.items.len() == 1,
        "expected one Event, got {:?}",
        found.items
    );
    let got = &found.items[0];
    assert_eq!(got.reason.as_deref(), Some("E2ERecorded"));
    assert_eq!(
        got.message.as_deref(),
        Some("published through kube's Recorder")
    );
    assert_eq!(got.type_.as_deref(), Some("Warning"));
    assert_eq!(got.reporting_component.as_deref(), Some("e2e-controller"));
    Ok(())
}

/// The runtime's watch stream against 1.20: the initial list, then a change made after it.
#[tokio::test]
async fn watcher_lists_then_sees_changes() -> Result<()> {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event as WatchEvent};
    let client = admin_client().await?;
    let ns = create_namespace(&client, "watch").await?;
    let config_maps = Api::<ConfigMap>::namespaced(client, &ns);
    let existing = ConfigMap {
        metadata: ObjectMeta {
            name: Some("before".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    config_maps
        .create(&PostParams::default(), &existing)
        .await
        .context("creating ConfigMap before")?;

    let mut stream = watcher::watcher(config_maps.clone(), watcher::Config::default()).boxed();
    let mut next = async || {
        tokio::time::timeout(e2e::LIVENESS, stream.next())
            .await
            .context("no watch event within the liveness bound")?
            .context("watch stream ended")?
            .context("watch error")
    };
    assert!(matches!(next().await?, WatchEvent::Init));
    match next().await? {
        WatchEvent::InitApply(cm) => assert_eq!(cm.name_any(), "before"),
        other => anyhow::bail!("expected InitApply(before), got {other:?}"),
    }
    assert!(matches!(next().await?, WatchEvent::InitDone));

    let added = ConfigMap {
        metadata: ObjectMeta {
            name: Some("after".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    config_maps
        .create(&PostParams::default(), &added)
        .await
        .context("creating ConfigMap after")?;
    match next().await? {
        WatchEvent::Apply(cm) => assert_eq!(cm.name_any(), "after"),
        other => anyhow::bail!("expected Apply(after), got {other:?}"),
    }
    Ok(())
}
