//! Both controller binaries against the real kube-apiserver, each with the RBAC-restricted identity that
//! `config/rbac` grants it: they win their Lease, serve `/healthz`, `/readyz` and `/metrics`, maintain
//! finalizers and `lastHandledReconcileAt`, and hand the Lease over when the leader is killed (after the
//! lease duration) or stopped with SIGTERM (at once).
//!
//! Every test shards with its own `--watch-label-selector`, which gives it its own Lease and objects, so
//! the tests run in parallel without seeing each other. Waits are liveness bounds only.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use e2e::{
    KUBECONFIG_AUTOMATION, KUBECONFIG_REFLECTOR, admin_client, controller_binary, create_namespace,
    eventually, testenv_var, unique_name,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use runtime::test_support::Process;

const REFLECTOR: &str = "image-reflector-controller";
const AUTOMATION: &str = "image-automation-controller";
const CONTROLLERS_NAMESPACE: &str = "flux-system";

/// Start `controller` with its own identity, sharded by `selector`, with the given lease timings.
fn start(
    controller: &str,
    kubeconfig_var: &str,
    selector: &str,
    lease: [&str; 3],
) -> Result<Process> {
    let kubeconfig = testenv_var(kubeconfig_var)?;
    let args = [
        format!("--kubeconfig={kubeconfig}"),
        "--enable-leader-election".to_owned(),
        format!("--watch-label-selector={selector}"),
        format!("--leader-election-lease-duration={}", lease[0]),
        format!("--leader-election-renew-deadline={}", lease[1]),
        format!("--leader-election-retry-period={}", lease[2]),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Process::start(&controller_binary(controller)?, &args).context("starting the controller")
}

async fn lease_holder(controller: &str, selector: &str) -> Result<String> {
    let leases: Api<Lease> = Api::namespaced(admin_client().await?, CONTROLLERS_NAMESPACE);
    let name = runtime::flags::lease_name(controller, selector);
    let lease = leases
        .get(&name)
        .await
        .with_context(|| format!("reading Lease {name}"))?;
    match lease.spec.and_then(|s| s.holder_identity) {
        Some(holder) if !holder.is_empty() => Ok(holder),
        _ => bail!("Lease {name} has no holder"),
    }
}

/// Wait until the Lease is held by someone other than `previous`; return the new holder and how long it took.
async fn new_holder(
    controller: &str,
    selector: &str,
    previous: &str,
) -> Result<(String, Duration)> {
    let started = Instant::now();
    let holder = eventually("a new lease holder", || async {
        let holder = lease_holder(controller, selector).await?;
        ensure!(holder != previous, "still held by {previous}");
        Ok(holder)
    })
    .await?;
    Ok((holder, started.elapsed()))
}

fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    Process::get(addr, path).with_context(|| format!("GET http://{addr}{path} got no answer"))
}

/// The kind each controller reconciles, as a dynamic resource (the same shape `kubectl apply` sends).
fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "ImageRepository" => "imagerepositories",
        "ImagePolicy" => "imagepolicies",
        _ => "imageupdateautomations",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("image.toolkit.fluxcd.io", "v1", kind),
        plural,
    )
}

/// Create an object the controller watches (labelled with its shard) and wait for it to carry the finalizer
/// and have its reconcile request handled.
async fn finalizer_and_requested_at_are_maintained(kind: &str, selector: &str) -> Result<()> {
    let admin = admin_client().await?;
    let ns = create_namespace(&admin, "ctl").await?;
    let (label_key, label_value) = selector.split_once('=').context("selector is key=value")?;
    let spec = match kind {
        "ImageRepository" => {
            serde_json::json!({"image": "ghcr.io/stefanprodan/podinfo", "interval": "1m"})
        }
        _ => serde_json::json!({
            "interval": "1m",
            "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            "git": {"commit": {"author": {"email": "bot@example.com"}}},
        }),
    };
    let requested_at = unique_name("requested")?;
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": kind,
        "metadata": {
            "name": "podinfo",
            "namespace": ns,
            "labels": {label_key: label_value},
            "annotations": {"reconcile.fluxcd.io/requestedAt": requested_at},
        },
        "spec": spec,
    }))?;
    let api: Api<DynamicObject> = Api::namespaced_with(admin, &ns, &resource(kind));
    api.create(&PostParams::default(), &object)
        .await
        .context("creating the object")?;
    eventually("finalizer and lastHandledReconcileAt", || async {
        let got = api.get("podinfo").await?;
        let finalizers = got.metadata.finalizers.unwrap_or_default();
        ensure!(
            finalizers.iter().any(|f| f == api::meta::FINALIZER),
            "no finalizer yet: {finalizers:?}"
        );
        let handled = got
            .data
            .pointer("/status/lastHandledReconcileAt")
            .and_then(|v| v.as_str());
        ensure!(
            handled == Some(requested_at.as_str()),
            "lastHandledReconcileAt is {handled:?}"
        );
        Ok(())
    })
    .await
}

async fn runs_with_its_own_identity(
    controller: &str,
    kubeconfig_var: &str,
    kind: &str,
) -> Result<()> {
    let selector = format!("e2e-shard={}", unique_name("own")?);
    let p = start(controller, kubeconfig_var, &selector, ["15s", "10s", "2s"])?;
    p.wait_for(&p.health, "/readyz", 200)
        .map_err(anyhow::Error::msg)?;
    ensure!(
        http_get(&p.health, "/healthz")?.0 == 200,
        "/healthz is not 200"
    );
    let holder = eventually("the lease taken", || lease_holder(controller, &selector)).await?;
    finalizer_and_requested_at_are_maintained(kind, &selector)
        .await
        .with_context(|| p.logs())?;
    // The reconcile of that object is now in Flux's duration histogram.
    let (status, metrics) = http_get(&p.metrics, "/metrics")?;
    ensure!(status == 200, "/metrics answered {status}");
    let series = format!("gotk_reconcile_duration_seconds_count{{kind=\"{kind}\"");
    ensure!(metrics.contains(&series), "no {series} in:\n{metrics}");
    ensure!(
        metrics.contains("leader_election_master_status"),
        "no leader metric in:\n{metrics}"
    );
    let (exit, logs) = p.terminate().map_err(anyhow::Error::msg)?;
    ensure!(
        exit.code() == Some(0),
        "exit {exit:?} after SIGTERM; log:\n{logs}"
    );
    ensure!(
        logs.contains(&holder),
        "the holder {holder} is not this process; log:\n{logs}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reflector_runs_with_its_own_identity() -> Result<()> {
    runs_with_its_own_identity(REFLECTOR, KUBECONFIG_REFLECTOR, "ImageRepository").await
}

#[tokio::test(flavor = "multi_thread")]
async fn automation_runs_with_its_own_identity() -> Result<()> {
    runs_with_its_own_identity(AUTOMATION, KUBECONFIG_AUTOMATION, "ImageUpdateAutomation").await
}

/// A killed leader stops renewing: the standby takes over once the (short) lease expires.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_after_the_leader_is_killed() -> Result<()> {
    let selector = format!("e2e-shard={}", unique_name("kill")?);
    let lease = ["4s", "3s", "1s"];
    let first = start(REFLECTOR, KUBECONFIG_REFLECTOR, &selector, lease)?;
    let leader = eventually("the lease taken", || lease_holder(REFLECTOR, &selector)).await?;
    let second = start(REFLECTOR, KUBECONFIG_REFLECTOR, &selector, lease)?;
    second
        .wait_for(&second.health, "/readyz", 200)
        .map_err(anyhow::Error::msg)?;
    drop(first); // SIGKILL: no release
    let (holder, took) = new_holder(REFLECTOR, &selector, &leader).await?;
    ensure!(
        second.logs().contains(&holder),
        "{holder} is not the standby; log:\n{}",
        second.logs()
    );
    eprintln!("takeover after SIGKILL with a 4s lease: {took:?}");
    Ok(())
}

/// A leader stopped with SIGTERM releases the lease, so the standby takes over long before a (60s) lease
/// would expire: only a release makes the takeover happen within the liveness bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_at_once_after_sigterm() -> Result<()> {
    let selector = format!("e2e-shard={}", unique_name("term")?);
    let lease = ["60s", "40s", "1s"];
    let first = start(REFLECTOR, KUBECONFIG_REFLECTOR, &selector, lease)?;
    let leader = eventually("the lease taken", || lease_holder(REFLECTOR, &selector)).await?;
    let second = start(REFLECTOR, KUBECONFIG_REFLECTOR, &selector, lease)?;
    second
        .wait_for(&second.health, "/readyz", 200)
        .map_err(anyhow::Error::msg)?;
    let (exit, logs) = first.terminate().map_err(anyhow::Error::msg)?;
    ensure!(exit.code() == Some(0), "exit {exit:?}; log:\n{logs}");
    let (holder, took) = new_holder(REFLECTOR, &selector, &leader).await?;
    ensure!(
        took < Duration::from_secs(60),
        "takeover took {took:?}: the lease was not released"
    );
    ensure!(
        second.logs().contains(&holder),
        "{holder} is not the standby"
    );
    eprintln!("takeover after SIGTERM: {took:?}");
    Ok(())
}

/// What the schema can express is rejected by the API server itself, naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_interval_is_rejected_by_the_schema() -> Result<()> {
    let admin = admin_client().await?;
    let ns = create_namespace(&admin, "badinterval").await?;
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImageRepository",
        "metadata": {"name": "podinfo", "namespace": ns},
        "spec": {"image": "ghcr.io/stefanprodan/podinfo", "interval": "1 minute"},
    }))?;
    let api: Api<DynamicObject> = Api::namespaced_with(admin, &ns, &resource("ImageRepository"));
    match api.create(&PostParams::default(), &object).await {
        Err(kube::Error::Api(e)) => {
            ensure!(e.code == 422, "expected 422 Invalid, got {e:?}");
            ensure!(
                e.message.contains("spec.interval"),
                "the error does not name the field: {}",
                e.message
            );
            Ok(())
        }
        other => bail!("a bad interval was not rejected: {other:?}"),
    }
}

/// What only CEL can express (ignored before Kubernetes 1.25) is stalled by the controller, naming the field.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_policy_violating_a_cel_rule_is_stalled_naming_the_field() -> Result<()> {
    let selector = format!("e2e-shard={}", unique_name("cel")?);
    let p = start(
        REFLECTOR,
        KUBECONFIG_REFLECTOR,
        &selector,
        ["15s", "10s", "2s"],
    )?;
    let admin = admin_client().await?;
    let ns = create_namespace(&admin, "cel").await?;
    let (label_key, label_value) = selector.split_once('=').context("selector is key=value")?;
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImagePolicy",
        "metadata": {"name": "podinfo", "namespace": ns, "labels": {label_key: label_value}},
        "spec": {
            "imageRepositoryRef": {"name": "podinfo"},
            "policy": {"semver": {"range": "5.0.x"}},
            "digestReflectionPolicy": "Always",
        },
    }))?;
    let api: Api<DynamicObject> = Api::namespaced_with(admin, &ns, &resource("ImagePolicy"));
    api.create(&PostParams::default(), &object)
        .await
        .context("1.20 ignores CEL: the create must pass")?;
    let condition = |obj: &DynamicObject, t: &str| -> Option<serde_json::Value> {
        obj.data
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
    };
    eventually("the Stalled condition", || async {
        let got = api.get("podinfo").await?;
        let stalled = condition(&got, "Stalled").context("no Stalled condition yet")?;
        ensure!(
            stalled["status"] == "True" && stalled["reason"] == "IntervalNotConfigured",
            "{stalled}"
        );
        ensure!(
            stalled["message"]
                == "spec.interval must be set when spec.digestReflectionPolicy is set to 'Always'",
            "{stalled}"
        );
        let ready = condition(&got, "Ready").context("no Ready condition")?;
        ensure!(
            ready["status"] == "False" && ready["reason"] == "IntervalNotConfigured",
            "{ready}"
        );
        Ok(())
    })
    .await
    .with_context(|| p.logs())
}
