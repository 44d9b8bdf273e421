//! image-reflector-controller's ImagePolicy reconciler against the real registry and API server: the
//! guide's "Configure image scanning" flow (as written, v1beta1, and as v1), the cross-namespace ACL,
//! digest reflection (single image and multi-arch index), a policy waiting for its repository, and
//! bad policies that must end in a clear condition.
//!
//! Each test runs its own controller process, sharded by its own `--watch-label-selector` and with its
//! own `--storage-path`. Waits are liveness bounds only.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use e2e::{
    KUBECONFIG_ADMIN, KUBECONFIG_REFLECTOR, admin_client, condition, controller_binary,
    create_namespace, eventually, kubectl_with_input, testenv_var, unique_name,
};
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use runtime::test_support::Process;
use serde_json::{Value, json};
use testenv::registry::RegistryClient;
use testenv::{RegistryVariant, env};

const REFLECTOR: &str = "image-reflector-controller";
const GROUP: &str = "image.toolkit.fluxcd.io";
const SHARD_LABEL: &str = "e2e-shard";

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// One test's controller and label.
struct Shard {
    label: String,
    /// A namespace of the test's own.
    ns: String,
    _storage: tempfile::TempDir,
    _controller: Process,
}

impl Shard {
    async fn start(prefix: &str, extra: &[&str]) -> Result<Self> {
        let label = unique_name(prefix)?;
        let storage = tempfile::tempdir()?;
        let kubeconfig = testenv_var(KUBECONFIG_REFLECTOR)?;
        let mut args = vec![
            format!("--kubeconfig={kubeconfig}"),
            "--watch-all-namespaces=true".to_owned(),
            format!("--watch-label-selector={SHARD_LABEL}={label}"),
            format!("--storage-path={}", storage.path().display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Process::start(&controller_binary(REFLECTOR)?, &args)
            .context("starting the controller")?;
        p.wait_for(&p.health, "/readyz", 200)
            .map_err(anyhow::Error::msg)?;
        let ns = create_namespace(&admin_client().await?, prefix).await?;
        Ok(Self {
            label,
            ns,
            _storage: storage,
            _controller: p,
        })
    }

    /// Creates a v1 object of `kind` in `ns`, labelled for this shard.
    async fn create(&self, kind: &str, ns: &str, name: &str, spec: Value) -> Result<()> {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/v1"),
            "kind": kind,
            "metadata": {"name": name, "namespace": ns, "labels": {SHARD_LABEL: &self.label}},
            "spec": spec,
        }))?;
        api(kind, ns)
            .await?
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating {kind} {ns}/{name}"))?;
        Ok(())
    }
}

fn plural(kind: &str) -> &'static str {
    if kind == "ImagePolicy" {
        "imagepolicies"
    } else {
        "imagerepositories"
    }
}

async fn api_version(kind: &str, ns: &str, version: &str) -> Result<Api<DynamicObject>> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, version, kind),
        plural(kind),
    );
    Ok(Api::namespaced_with(admin_client().await?, ns, &resource))
}

async fn api(kind: &str, ns: &str) -> Result<Api<DynamicObject>> {
    api_version(kind, ns, "v1").await
}

async fn status(kind: &str, ns: &str, name: &str) -> Result<Value> {
    let got = api(kind, ns).await?.get(name).await?;
    Ok(got.data.get("status").cloned().unwrap_or(Value::Null))
}

/// Sets `reconcile.fluxcd.io/requestedAt` to `token`, as `flux reconcile` does.
async fn request_reconcile(kind: &str, ns: &str, name: &str, token: &str) -> Result<()> {
    patch(
        kind,
        ns,
        name,
        json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}),
    )
    .await
}

async fn patch(kind: &str, ns: &str, name: &str, patch: Value) -> Result<()> {
    api(kind, ns)
        .await?
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patching {kind} {ns}/{name}"))?;
    Ok(())
}

/// Waits until `kind` `ns/name` has Ready=`want` with `reason`; returns its status.
async fn ready_is(kind: &str, ns: &str, name: &str, want: &str, reason: &str) -> Result<Value> {
    eventually(
        &format!("{kind} {ns}/{name} Ready={want} {reason}"),
        || async {
            let st = status(kind, ns, name).await?;
            let (s, r, m) = condition(&st, "Ready");
            ensure!(s == want && r == reason, "Ready={s} {r}: {m}");
            Ok(st)
        },
    )
    .await
}

/// Pushes `tags` to `repo` on the anonymous registry; returns the image name and the digests.
async fn push(repo: &str, tags: &[&str]) -> Result<(String, Vec<(String, String)>)> {
    let ep = env().registry(RegistryVariant::Anonymous)?;
    let digests = RegistryClient::new(&ep)?.push_tags(repo, tags, 8).await?;
    Ok((format!("{}/{repo}", ep.host), digests))
}

/// The guide's manifest, in `ns`, labelled for the shard, for `image`, at `version` (or as written).
fn guide_manifest(
    file: &str,
    ns: &str,
    label: &str,
    image: &str,
    version: Option<&str>,
) -> Result<String> {
    let path = repo_path("examples/guide/clusters/my-cluster").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::new();
    for line in text.lines() {
        match line {
            "  namespace: flux-system" => out.push_str(&format!(
                "  namespace: {ns}\n  labels:\n    {SHARD_LABEL}: {label}\n"
            )),
            "  image: ghcr.io/stefanprodan/podinfo" => out.push_str(&format!("  image: {image}\n")),
            l if l.starts_with("apiVersion: image.toolkit.fluxcd.io/") && version.is_some() => out
                .push_str(&format!(
                    "apiVersion: {GROUP}/{}\n",
                    version.unwrap_or_default()
                )),
            l => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    ensure!(out.contains(label), "{file}: no namespace line to rewrite");
    Ok(out)
}

/// The guide's "Configure image scanning": ImageRepository `podinfo` and ImagePolicy `podinfo`
/// (semver `5.0.x`), applied as written (v1beta1) and as v1, resolve to 5.0.3 with upstream's exact
/// message; the v1beta1 view shows `latestImage` too.
#[tokio::test(flavor = "multi_thread")]
async fn guide_image_scanning_flow_as_written_and_as_v1() -> Result<()> {
    let shard = Shard::start("pol-guide", &[]).await?;
    let (image, _) = push(
        &format!("{}/podinfo", shard.label),
        &[
            "5.0.0", "5.0.1", "5.0.2", "5.0.3", "5.1.0", "6.0.0", "latest",
        ],
    )
    .await?;
    let admin = admin_client().await?;
    let mut last_ns = None;
    for version in [None, Some("v1")] {
        let ns = create_namespace(&admin, "pol-guide").await?;
        last_ns = Some(ns.clone());
        for file in ["podinfo-registry.yaml", "podinfo-policy.yaml"] {
            let manifest = guide_manifest(file, &ns, &shard.label, &image, version)?;
            kubectl_with_input(KUBECONFIG_ADMIN, &["apply", "-f", "-"], Some(&manifest))
                .with_context(|| format!("applying {file}"))?;
        }
        let repo = ready_is("ImageRepository", &ns, "podinfo", "True", "Succeeded").await?;
        let (_, _, msg) = condition(&repo, "Ready");
        ensure!(
            msg.starts_with("successful scan: found 7 tags with checksum sha256:"),
            "{msg}"
        );
        let pol = ready_is("ImagePolicy", &ns, "podinfo", "True", "Succeeded").await?;
        let (_, _, msg) = condition(&pol, "Ready");
        ensure!(
            msg == format!("Latest image tag for {image} resolved to 5.0.3"),
            "{version:?}: {msg}"
        );
        ensure!(
            pol["latestRef"] == json!({"name": image, "tag": "5.0.3"}),
            "{}",
            pol["latestRef"]
        );
        ensure!(pol["observedGeneration"] == 1, "{pol}");
        // The resolution is announced as a Normal event from the controller.
        let events = Api::<Event>::namespaced(admin.clone(), &ns);
        eventually("the ImagePolicy's Succeeded event", || async {
            let list = events
                .list(&ListParams::default().fields("involvedObject.kind=ImagePolicy"))
                .await?;
            let found = list.items.iter().any(|e| {
                e.type_.as_deref() == Some("Normal")
                    && e.reason.as_deref() == Some("Succeeded")
                    && e.message.as_deref() == Some(msg.as_str())
                    && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(REFLECTOR)
            });
            ensure!(
                found,
                "no such event among {:?}",
                list.items.iter().map(|e| &e.message).collect::<Vec<_>>()
            );
            Ok(())
        })
        .await?;
        let beta = api_version("ImagePolicy", &ns, "v1beta1")
            .await?
            .get("podinfo")
            .await?;
        ensure!(
            beta.data["status"]["latestImage"] == format!("{image}:5.0.3"),
            "{}",
            beta.data["status"]
        );
    }

    // A new tag in range: a rescan moves the policy (and its v1beta1 fields) forward.
    push(&format!("{}/podinfo", shard.label), &["5.0.4"]).await?;
    let ns = last_ns.context("no namespace")?;
    request_reconcile("ImageRepository", &ns, "podinfo", "t1").await?;
    let want = format!("Latest image tag for {image} resolved to 5.0.4 (previously {image}:5.0.3)");
    eventually("the policy at 5.0.4", || async {
        let st = status("ImagePolicy", &ns, "podinfo").await?;
        let (_, _, msg) = condition(&st, "Ready");
        ensure!(msg == want, "{msg}");
        ensure!(st["observedPreviousRef"]["tag"] == "5.0.3", "{st}");
        let beta = api_version("ImagePolicy", &ns, "v1beta1")
            .await?
            .get("podinfo")
            .await?;
        ensure!(
            beta.data["status"]["observedPreviousImage"] == format!("{image}:5.0.3"),
            "{}",
            beta.data["status"]
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// A policy in another namespace is denied without `accessFrom`, and with labels that do not match,
/// with upstream's messages; labelling its namespace to match lets it resolve.
#[tokio::test(flavor = "multi_thread")]
async fn cross_namespace_acl_denies_then_allows() -> Result<()> {
    let shard = Shard::start("pol-acl", &[]).await?;
    let admin = admin_client().await?;
    let (repo_ns, pol_ns) = (shard.ns.clone(), create_namespace(&admin, "pol-acl").await?);
    let (image, _) = push(
        &format!("{}/app", shard.label),
        &["1.0.0", "1.0.1", "2.0.0"],
    )
    .await?;
    shard
        .create(
            "ImageRepository",
            &repo_ns,
            "app",
            json!({"image": image, "interval": "1h"}),
        )
        .await?;
    ready_is("ImageRepository", &repo_ns, "app", "True", "Succeeded").await?;
    shard
        .create(
            "ImagePolicy",
            &pol_ns,
            "app",
            json!({"imageRepositoryRef": {"name": "app", "namespace": repo_ns},
                   "policy": {"semver": {"range": "1.0.x"}}}),
        )
        .await?;
    let st = ready_is("ImagePolicy", &pol_ns, "app", "False", "AccessDenied").await?;
    let (_, _, msg) = condition(&st, "Ready");
    ensure!(
        msg == format!(
            "failed to get the referred ImageRepository: access denied: '{repo_ns}/app' can't be accessed due to missing ACL labels on 'accessFrom'"
        ),
        "{msg}"
    );

    patch(
        "ImageRepository",
        &repo_ns,
        "app",
        json!({"spec": {"accessFrom": {"namespaceSelectors": [{"matchLabels": {"tenant": "blue"}}]}}}),
    )
    .await?;
    // ACL changes are not watched (as upstream): denied policies retry with backoff, and a reconcile
    // request (`flux reconcile`) re-evaluates at once.
    request_reconcile("ImagePolicy", &pol_ns, "app", "acl-1").await?;
    eventually("the mismatch message", || async {
        let (_, _, msg) = condition(&status("ImagePolicy", &pol_ns, "app").await?, "Ready");
        ensure!(
            msg == format!("failed to get the referred ImageRepository: access denied: '{repo_ns}/app' can't be accessed due to ACL labels mismatch on namespace '{pol_ns}'"),
            "{msg}"
        );
        Ok(())
    })
    .await?;

    Api::<Namespace>::all(admin)
        .patch(
            &pol_ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tenant": "blue"}}})),
        )
        .await?;
    request_reconcile("ImagePolicy", &pol_ns, "app", "acl-2").await?;
    let st = ready_is("ImagePolicy", &pol_ns, "app", "True", "Succeeded").await?;
    ensure!(st["latestRef"]["tag"] == "1.0.1", "{st}");
    Ok(())
}

/// `digestReflectionPolicy: Always` reports the digest of the pushed manifest, and of a multi-arch
/// index, and follows a re-pushed tag on the next interval.
#[tokio::test(flavor = "multi_thread")]
async fn digest_reflection_always_reports_manifest_and_index_digests() -> Result<()> {
    let shard = Shard::start("pol-digest", &[]).await?;
    let ns = shard.ns.clone();
    let repo = format!("{}/app", shard.label);
    let (image, digests) = push(&repo, &["1.0.0", "1.1.0"]).await?;
    let ep = env().registry(RegistryVariant::Anonymous)?;
    let index = RegistryClient::new(&ep)?
        .push_index(&repo, "2.0.0", &[("linux", "amd64"), ("linux", "arm64")])
        .await?;
    shard
        .create(
            "ImageRepository",
            &ns,
            "app",
            json!({"image": image, "interval": "1h"}),
        )
        .await?;
    for (name, range, digest) in [
        ("single", "1.x", digests[1].1.clone()),
        ("index", "2.x", index.clone()),
    ] {
        shard
            .create(
                "ImagePolicy",
                &ns,
                name,
                json!({"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": range}},
                       "digestReflectionPolicy": "Always", "interval": "2s"}),
            )
            .await?;
        let st = ready_is("ImagePolicy", &ns, name, "True", "Succeeded").await?;
        ensure!(st["latestRef"]["digest"] == digest.as_str(), "{name}: {st}");
        ensure!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        let (_, _, msg) = condition(&st, "Ready");
        ensure!(msg.ends_with(&format!(" with digest {digest}")), "{msg}");
    }
    // The tag moves to another manifest; Always notices on its interval, without a rescan.
    let moved = RegistryClient::new(&ep)?
        .push_index(&repo, "1.1.0", &[("linux", "amd64")])
        .await?;
    eventually("the digest of the re-pushed tag", || async {
        let st = status("ImagePolicy", &ns, "single").await?;
        ensure!(st["latestRef"]["digest"] == moved.as_str(), "{st}");
        ensure!(
            st["observedPreviousRef"]["digest"] == digests[1].1.as_str(),
            "{st}"
        );
        Ok(())
    })
    .await?;
    Ok(())
}

/// A policy created before its repository waits (`DependencyNotReady`), and one whose repository has
/// no tags waits with upstream's message; both resolve as soon as the repository's revision changes.
#[tokio::test(flavor = "multi_thread")]
async fn policy_waits_for_its_repository_then_resolves() -> Result<()> {
    let shard = Shard::start("pol-dep", &["--requeue-dependency=1h"]).await?;
    let ns = shard.ns.clone();
    let repo = format!("{}/app", shard.label);
    let ep = env().registry(RegistryVariant::Anonymous)?;
    let image = format!("{}/{repo}", ep.host);
    shard
        .create(
            "ImagePolicy",
            &ns,
            "app",
            json!({"imageRepositoryRef": {"name": "app"}, "policy": {"alphabetical": {}}}),
        )
        .await?;
    let st = ready_is("ImagePolicy", &ns, "app", "False", "DependencyNotReady").await?;
    let (_, _, msg) = condition(&st, "Ready");
    ensure!(
        msg == "failed to get the referred ImageRepository: referenced ImageRepository does not exist: ImageRepository.image.toolkit.fluxcd.io \"app\" not found",
        "{msg}"
    );

    // The repository exists but its image has no tags yet: a successful scan of nothing.
    RegistryClient::new(&ep)?
        .push_index(&repo, "seed", &[("linux", "amd64")])
        .await?;
    shard
        .create(
            "ImageRepository",
            &ns,
            "app",
            json!({"image": image, "interval": "1h", "exclusionList": ["^seed$"]}),
        )
        .await?;
    ready_is("ImageRepository", &ns, "app", "True", "Succeeded").await?;
    let st = ready_is("ImagePolicy", &ns, "app", "False", "DependencyNotReady").await?;
    let (_, _, msg) = condition(&st, "Ready");
    ensure!(
        msg == "retrying in 1h0m0s error: no tags in database",
        "{msg}"
    );

    // Tags arrive and a rescan records a new revision: the policy follows at once (the 1h requeue
    // rules out anything but the repository watch).
    push(&repo, &["a", "b"]).await?;
    request_reconcile("ImageRepository", &ns, "app", "now").await?;
    let st = ready_is("ImagePolicy", &ns, "app", "True", "Succeeded").await?;
    ensure!(st["latestRef"]["tag"] == "b", "{st}");
    Ok(())
}

/// Bad policies end in clear conditions: an invalid regex and an invalid range stall with
/// `InvalidPolicy`; a numerical policy over non-numeric tags fails (retried) naming the tag.
#[tokio::test(flavor = "multi_thread")]
async fn bad_policies_get_clear_conditions() -> Result<()> {
    let shard = Shard::start("pol-bad", &[]).await?;
    let ns = shard.ns.clone();
    let (image, _) = push(&format!("{}/app", shard.label), &["1", "2", "latest"]).await?;
    shard
        .create(
            "ImageRepository",
            &ns,
            "app",
            json!({"image": image, "interval": "1h"}),
        )
        .await?;
    for (name, spec, reason, want) in [
        (
            "regex",
            json!({"policy": {"alphabetical": {}}, "filterTags": {"pattern": "^(v", "extract": "$1"}}),
            "InvalidPolicy",
            "failed to filter tags: invalid regular expression pattern '^(v': ",
        ),
        (
            "range",
            json!({"policy": {"semver": {"range": "*-*"}}}),
            "InvalidPolicy",
            "invalid policy: improper constraint",
        ),
        (
            "numerical",
            json!({"policy": {"numerical": {}}}),
            "Failure",
            "failed to parse invalid numeric value 'latest'",
        ),
    ] {
        let mut spec = spec;
        spec["imageRepositoryRef"] = json!({"name": "app"});
        shard.create("ImagePolicy", &ns, name, spec).await?;
        let st = ready_is("ImagePolicy", &ns, name, "False", reason).await?;
        let (_, _, msg) = condition(&st, "Ready");
        ensure!(msg.starts_with(want), "{name}: {msg}");
        let stalled = condition(&st, "Stalled").0 == "True";
        ensure!(stalled == (reason == "InvalidPolicy"), "{name}: {st}");
    }
    // Fixing the numerical policy with a filter resolves it.
    patch(
        "ImagePolicy",
        &ns,
        "numerical",
        json!({"spec": {"filterTags": {"pattern": "^[0-9]+$"}}}),
    )
    .await?;
    let st = ready_is("ImagePolicy", &ns, "numerical", "True", "Succeeded").await?;
    ensure!(st["latestRef"]["tag"] == "2", "{st}");
    Ok(())
}
