//! image-reflector-controller's ImageRepository reconciler against the real registries of the test
//! environment and the real API server: one repository per registry variant and credential kind,
//! paging, rescans (interval, annotation), suspend, restarts over the same or a damaged tag store,
//! and bad input that must end in a clear condition.
//!
//! Each test runs its own controller process, sharded by its own `--watch-label-selector` and with its
//! own `--storage-path`, so the tests run in parallel without seeing each other. Waits are liveness
//! bounds only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use e2e::{
    KUBECONFIG_REFLECTOR, admin_client, condition, create_namespace, eventually, testenv_var,
    unique_name,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use runtime::test_support::Process;
use serde_json::{Value, json};
use testenv::registry::RegistryClient;
use testenv::{ProxyVariant, RegistryVariant, env};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REFLECTOR: &str = "image-reflector-controller";

/// Object-level workload identity (cloud providers with `serviceAccountName`), on this file's shards.
#[path = "reflector_repository/workload_identity.rs"]
mod workload_identity;

/// One test's shard: label selector, namespace, controller storage.
struct Shard {
    label: (String, String),
    ns: String,
    storage: tempfile::TempDir,
    api: Api<DynamicObject>,
}

impl Shard {
    async fn new(prefix: &str) -> Result<Self> {
        let admin = admin_client().await?;
        let ns = create_namespace(&admin, prefix).await?;
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("image.toolkit.fluxcd.io", "v1", "ImageRepository"),
            "imagerepositories",
        );
        Ok(Self {
            label: ("e2e-shard".to_owned(), unique_name(prefix)?),
            api: Api::namespaced_with(admin, &ns, &resource),
            ns,
            storage: tempfile::tempdir()?,
        })
    }

    fn start(&self, extra: &[&str]) -> Result<Process> {
        self.start_with_storage(self.storage.path(), extra)
    }

    fn start_with_storage(&self, storage: &Path, extra: &[&str]) -> Result<Process> {
        self.start_full(storage, extra, &[])
    }

    /// Starts the controller with extra environment variables (e.g. cloud endpoints).
    fn start_with_env(&self, env: &[(&str, &str)]) -> Result<Process> {
        self.start_full(self.storage.path(), &[], env)
    }

    fn start_full(&self, storage: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Process> {
        let kubeconfig = testenv_var(KUBECONFIG_REFLECTOR)?;
        let mut args = vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--watch-label-selector={}={}", self.label.0, self.label.1),
            format!("--storage-path={}", storage.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Process::start_with_env(&e2e::controller_binary(REFLECTOR)?, &args, env)
            .context("starting the controller")?;
        p.wait_for(&p.health, "/readyz", 200)
            .map_err(anyhow::Error::msg)?;
        Ok(p)
    }

    async fn create(&self, name: &str, spec: Value) -> Result<()> {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": self.ns, "labels": {&self.label.0: &self.label.1}},
            "spec": spec,
        }))?;
        self.api
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating ImageRepository {name}"))?;
        Ok(())
    }

    async fn patch(&self, name: &str, patch: Value) -> Result<()> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("patching ImageRepository {name}"))?;
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<Value> {
        let got = self.api.get(name).await?;
        Ok(got.data.get("status").cloned().unwrap_or(Value::Null))
    }

    /// Waits until `name` is Ready with `tags` tags and returns its status.
    async fn ready_with(&self, name: &str, tags: u64) -> Result<Value> {
        eventually(&format!("{name} Ready with {tags} tags"), || async {
            let status = self.status(name).await?;
            let (r, reason, message) = condition(&status, "Ready");
            ensure!(r == "True", "{name}: Ready={r} {reason}: {message}");
            let count = status
                .pointer("/lastScanResult/tagCount")
                .and_then(Value::as_u64);
            ensure!(count == Some(tags), "{name}: tagCount {count:?}");
            Ok(status)
        })
        .await
    }

    /// Waits until `name` has condition `type_` with `status` and `reason`, and returns its message.
    async fn condition_is(
        &self,
        name: &str,
        type_: &str,
        want: &str,
        reason: &str,
    ) -> Result<String> {
        eventually(&format!("{name} {type_}={want} {reason}"), || async {
            let status = self.status(name).await?;
            let (s, r, m) = condition(&status, type_);
            ensure!(s == want && r == reason, "{name}: {type_}={s} {r}: {m}");
            Ok(m)
        })
        .await
    }

    async fn secret(&self, secret: Value) -> Result<()> {
        let mut secret = secret;
        secret["metadata"]["namespace"] = json!(self.ns);
        let secret: Secret = serde_json::from_value(secret)?;
        Api::<Secret>::namespaced(admin_client().await?, &self.ns)
            .create(&PostParams::default(), &secret)
            .await
            .context("creating a secret")?;
        Ok(())
    }
}

fn latest_tags(status: &Value) -> Vec<String> {
    status
        .pointer("/lastScanResult/latestTags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn scan_time(status: &Value) -> String {
    status
        .pointer("/lastScanResult/scanTime")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn push(
    variant: RegistryVariant,
    repo: &str,
    tags: &[&str],
) -> Result<Vec<(String, String)>> {
    let ep = env().registry(variant)?;
    Ok(RegistryClient::new(&ep)?.push_tags(repo, tags, 16).await?)
}

fn docker_config_json(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    json!({"auths": {host: {"auth": auth}}}).to_string()
}

fn b64(data: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// One ImageRepository per registry variant and credential kind, all in one controller; each must
/// become Ready with the exact upstream message, drop the default-excluded `.sig` tag, and show up
/// in the per-registry metrics.
#[tokio::test(flavor = "multi_thread")]
async fn every_registry_variant_and_credential_kind_is_scanned() -> Result<()> {
    let shard = Shard::new("repo-variants").await?;
    let (user, password) = env().credentials()?;
    let tags = ["1.0.0", "1.1.0", "2.0.0", "2.0.0.sig"];
    let anon = env().registry(RegistryVariant::Anonymous)?;
    let basic = env().registry(RegistryVariant::Basic)?;
    let token = env().registry(RegistryVariant::Token)?;
    let tls = env().registry(RegistryVariant::Tls)?;
    let mtls = env().registry(RegistryVariant::MutualTls)?;
    let ca = std::fs::read(env().ca_cert()?)?;
    let (cert, key) = env().client_identity()?;
    let (cert, key) = (std::fs::read(cert)?, std::fs::read(key)?);
    let repo = |v: &str| format!("{}/{v}", shard.label.1);

    for (variant, name) in [
        (RegistryVariant::Anonymous, "anonymous"),
        (RegistryVariant::Anonymous, "insecure"),
        (RegistryVariant::Anonymous, "proxy"),
        (RegistryVariant::Basic, "htpasswd"),
        (RegistryVariant::Basic, "dockercfg"),
        (RegistryVariant::Basic, "service-account"),
        (RegistryVariant::Token, "token"),
        (RegistryVariant::Tls, "tls"),
        (RegistryVariant::MutualTls, "mtls"),
    ] {
        push(variant, &repo(name), &tags).await?;
    }

    shard
        .secret(json!({
            "metadata": {"name": "basic-auth"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(docker_config_json(&basic.host, &user, &password))},
        }))
        .await?;
    shard
        .secret(json!({
            "metadata": {"name": "token-auth"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(json!({"auths": {&token.host: {"username": user, "password": password}}}).to_string())},
        }))
        .await?;
    shard
        .secret(json!({
            "metadata": {"name": "legacy"},
            "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": b64(json!({format!("https://{}", basic.host): {"auth": b64(format!("{user}:{password}"))}}).to_string())},
        }))
        .await?;
    shard
        .secret(json!({"metadata": {"name": "ca"}, "data": {"ca.crt": b64(&ca)}}))
        .await?;
    shard
        .secret(json!({
            "metadata": {"name": "client"},
            "type": "kubernetes.io/tls",
            "data": {"ca.crt": b64(&ca), "tls.crt": b64(&cert), "tls.key": b64(&key)},
        }))
        .await?;
    shard
        .secret(json!({
            "metadata": {"name": "proxy"},
            "stringData": {
                "address": env().proxy_url(ProxyVariant::BasicAuth)?,
                "username": user,
                "password": password,
            },
        }))
        .await?;
    let sa: ServiceAccount = serde_json::from_value(json!({
        "metadata": {"name": "puller", "namespace": shard.ns},
        "imagePullSecrets": [{"name": "basic-auth"}],
    }))?;
    Api::<ServiceAccount>::namespaced(admin_client().await?, &shard.ns)
        .create(&PostParams::default(), &sa)
        .await?;

    let p = shard.start(&[])?;
    let image = |host: &str, name: &str| format!("{host}/{}", repo(name));
    let specs = [
        (
            "anonymous",
            json!({"image": image(&anon.host, "anonymous")}),
        ),
        (
            "insecure",
            json!({"image": image(&anon.host, "insecure"), "insecure": true}),
        ),
        (
            "proxy",
            json!({"image": image(&anon.host, "proxy"), "proxySecretRef": {"name": "proxy"}}),
        ),
        (
            "htpasswd",
            json!({"image": image(&basic.host, "htpasswd"), "secretRef": {"name": "basic-auth"}}),
        ),
        (
            "dockercfg",
            json!({"image": image(&basic.host, "dockercfg"), "secretRef": {"name": "legacy"}}),
        ),
        (
            "service-account",
            json!({"image": image(&basic.host, "service-account"), "serviceAccountName": "puller"}),
        ),
        (
            "token",
            json!({"image": image(&token.host, "token"), "secretRef": {"name": "token-auth"}}),
        ),
        (
            "tls",
            json!({"image": image(&tls.host, "tls"), "certSecretRef": {"name": "ca"}}),
        ),
        (
            "mtls",
            json!({"image": image(&mtls.host, "mtls"), "certSecretRef": {"name": "client"}}),
        ),
    ];
    for (name, mut spec) in specs.clone() {
        spec["interval"] = json!("1h");
        shard.create(name, spec).await?;
    }
    for (name, spec) in &specs {
        let status = shard.ready_with(name, 3).await.with_context(|| p.logs())?;
        let revision = status
            .pointer("/lastScanResult/revision")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure!(
            revision.starts_with("sha256:"),
            "{name}: revision {revision}"
        );
        let (_, reason, message) = condition(&status, "Ready");
        ensure!(reason == "Succeeded", "{name}: {reason}");
        ensure!(
            message == format!("successful scan: found 3 tags with checksum {revision}"),
            "{name}: {message}"
        );
        ensure!(
            latest_tags(&status) == ["2.0.0", "1.1.0", "1.0.0"],
            "{name}: {:?}",
            latest_tags(&status)
        );
        ensure!(
            status["canonicalImageName"] == spec["image"],
            "{name}: canonical {}",
            status["canonicalImageName"]
        );
        ensure!(
            status["observedExclusionList"] == json!(["^.*\\.sig$"]),
            "{name}: {}",
            status["observedExclusionList"]
        );
        ensure!(status["observedGeneration"] == json!(1), "{name}");
    }
    let (code, metrics) = Process::get(&p.metrics, "/metrics").context("no /metrics")?;
    ensure!(code == 200);
    for host in [&anon.host, &basic.host, &token.host, &tls.host, &mtls.host] {
        let series = format!(
            "image_reflector_registry_requests_total{{registry=\"{host}\",method=\"GET\",code=\"200\"}}"
        );
        ensure!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
    ensure!(metrics.contains("gotk_reconcile_duration_seconds_count{kind=\"ImageRepository\""));
    Ok(())
}

/// 2,500 tags behind a registry that pages by 100 (`Link` headers) are all listed.
#[tokio::test(flavor = "multi_thread")]
async fn all_2500_tags_are_listed_in_pages_of_100() -> Result<()> {
    let shard = Shard::new("repo-paged").await?;
    let repo = format!("{}/many", shard.label.1);
    let tags: Vec<String> = (0..2500).map(|i| format!("v{i:04}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    push(RegistryVariant::Anonymous, &repo, &refs).await?;
    let paged = env().registry(RegistryVariant::Paged)?;
    let p = shard.start(&["--registry-page-size=100"])?;
    shard
        .create(
            "many",
            json!({"image": format!("{}/{repo}", paged.host), "interval": "1h"}),
        )
        .await?;
    let status = shard
        .ready_with("many", 2500)
        .await
        .with_context(|| p.logs())?;
    ensure!(latest_tags(&status).first().map(String::as_str) == Some("v2499"));
    // 25 pages plus the ping: the pages really were 100 tags each.
    let (_, metrics) = Process::get(&p.metrics, "/metrics").context("no /metrics")?;
    let series = format!(
        "image_reflector_registry_requests_total{{registry=\"{}\",method=\"GET\",code=\"200\"}} ",
        paged.host
    );
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .context("no request counter")?
        .trim()
        .parse()?;
    ensure!(count >= 25, "only {count} successful GETs for 25 pages");
    // The stored list is the sorted tag list the revision names.
    let stored = std::fs::read_to_string(
        shard
            .storage
            .path()
            .join(format!("imagerepository/{}/many/tags.txt", shard.ns)),
    )
    .or_else(|_| {
        gunzip(
            &shard
                .storage
                .path()
                .join(format!("imagerepository/{}/many/tags.txt.gz", shard.ns)),
        )
    })?;
    ensure!(stored.lines().count() == 2500);
    Ok(())
}

fn gunzip(path: &Path) -> Result<String> {
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .context("gzip")?;
    ensure!(out.status.success(), "gzip -dc {} failed", path.display());
    Ok(String::from_utf8(out.stdout)?)
}

/// Rescans: on the interval (a deleted tag disappears), on the reconcile annotation (at once, well
/// inside a long interval), never while suspended, and again after resuming.
#[tokio::test(flavor = "multi_thread")]
async fn rescans_follow_the_interval_the_annotation_and_suspend() -> Result<()> {
    let shard = Shard::new("repo-rescan").await?;
    let anon = env().registry(RegistryVariant::Anonymous)?;
    let client = RegistryClient::new(&anon)?;
    let short = format!("{}/short", shard.label.1);
    let long = format!("{}/long", shard.label.1);
    let pushed = push(RegistryVariant::Anonymous, &short, &["a", "b", "c"]).await?;
    push(RegistryVariant::Anonymous, &long, &["a"]).await?;
    let p = shard.start(&[])?;
    shard
        .create(
            "short",
            json!({"image": format!("{}/{short}", anon.host), "interval": "2s"}),
        )
        .await?;
    shard
        .create(
            "long",
            json!({"image": format!("{}/{long}", anon.host), "interval": "1h"}),
        )
        .await?;
    shard
        .ready_with("short", 3)
        .await
        .with_context(|| p.logs())?;
    shard
        .ready_with("long", 1)
        .await
        .with_context(|| p.logs())?;

    // A deleted tag disappears after the next interval scan.
    let (_, digest_b) = pushed.iter().find(|(t, _)| t == "b").context("b pushed")?;
    client.delete_manifest(&short, digest_b).await?;
    let status = shard
        .ready_with("short", 2)
        .await
        .with_context(|| p.logs())?;
    ensure!(
        latest_tags(&status) == ["c", "a"],
        "{:?}",
        latest_tags(&status)
    );

    // The annotation rescans at once although the interval is an hour.
    push(RegistryVariant::Anonymous, &long, &["b"]).await?;
    let requested = unique_name("now")?;
    shard
        .patch(
            "long",
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": requested}}}),
        )
        .await?;
    let status = shard
        .ready_with("long", 2)
        .await
        .with_context(|| p.logs())?;
    ensure!(status["lastHandledReconcileAt"] == json!(requested));

    // Suspended: no scan for several intervals; resumed: the next scan picks up the new tag.
    shard
        .patch("short", json!({"spec": {"suspend": true}}))
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = scan_time(&shard.status("short").await?);
    push(RegistryVariant::Anonymous, &short, &["d"]).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = shard.status("short").await?;
    ensure!(
        scan_time(&status) == before
            && status.pointer("/lastScanResult/tagCount") == Some(&json!(2)),
        "scanned while suspended: {status}"
    );
    shard
        .patch("short", json!({"spec": {"suspend": false}}))
        .await?;
    shard
        .ready_with("short", 3)
        .await
        .with_context(|| p.logs())?;
    Ok(())
}

fn stored_tags_path(storage: &Path, ns: &str, name: &str) -> PathBuf {
    storage.join(format!("imagerepository/{ns}/{name}/tags.txt"))
}

fn revision_of_file(path: &Path) -> Result<String> {
    Ok(store::revision_of(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    ))
}

/// A restarted controller keeps the stored tags (no rescan inside the interval); an empty or
/// tampered store entry is rescanned at once, before anything can use it.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_the_stored_tags_and_rescans_a_missing_or_wrong_entry() -> Result<()> {
    let shard = Shard::new("repo-restart").await?;
    let anon = env().registry(RegistryVariant::Anonymous)?;
    let repo = format!("{}/kept", shard.label.1);
    push(RegistryVariant::Anonymous, &repo, &["1", "2", "3"]).await?;
    let file = stored_tags_path(shard.storage.path(), &shard.ns, "kept");

    let p = shard.start(&[])?;
    shard
        .create(
            "kept",
            json!({"image": format!("{}/{repo}", anon.host), "interval": "1h"}),
        )
        .await?;
    let first = shard
        .ready_with("kept", 3)
        .await
        .with_context(|| p.logs())?;
    let revision = first["lastScanResult"]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    ensure!(revision_of_file(&file)? == revision);
    let (exit, _) = p.terminate().map_err(anyhow::Error::msg)?;
    ensure!(exit.success());

    // Same store: served as is, no scan; the entry of an object that no longer exists is collected.
    let ghost = stored_tags_path(shard.storage.path(), &shard.ns, "ghost");
    std::fs::create_dir_all(ghost.parent().context("ghost dir")?)?;
    std::fs::write(&ghost, "1\n")?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = shard.start(&[])?;
    eventually("the ghost entry collected", || async {
        ensure!(!ghost.exists(), "still there");
        Ok(())
    })
    .await
    .with_context(|| p.logs())?;
    eventually("the restarted controller reconciled", || async {
        let logs = p.logs();
        ensure!(
            logs.contains("no change in repository configuration since last scan"),
            "not yet"
        );
        Ok(())
    })
    .await
    .with_context(|| p.logs())?;
    let status = shard.status("kept").await?;
    ensure!(
        scan_time(&status) == scan_time(&first),
        "rescanned although the store was current"
    );
    let (exit, _) = p.terminate().map_err(anyhow::Error::msg)?;
    ensure!(exit.success());

    // Tampered entry: rescanned before use, and the store again matches the status.
    std::fs::write(&file, "9\n")?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = shard.start(&[])?;
    let status = eventually("rescan of the tampered entry", || async {
        let status = shard.status("kept").await?;
        ensure!(scan_time(&status) != scan_time(&first), "not rescanned yet");
        Ok(status)
    })
    .await
    .with_context(|| p.logs())?;
    ensure!(status["lastScanResult"]["revision"] == json!(revision));
    ensure!(revision_of_file(&file)? == revision);
    let (exit, _) = p.terminate().map_err(anyhow::Error::msg)?;
    ensure!(exit.success());

    // Empty store (a new volume): rescanned at once.
    let empty = tempfile::tempdir()?;
    let before = scan_time(&status);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = shard.start_with_storage(empty.path(), &[])?;
    eventually("rescan into the empty store", || async {
        let status = shard.status("kept").await?;
        ensure!(scan_time(&status) != before, "not rescanned yet");
        ensure!(condition(&status, "Ready").0 == "True");
        Ok(())
    })
    .await
    .with_context(|| p.logs())?;
    ensure!(revision_of_file(&stored_tags_path(empty.path(), &shard.ns, "kept"))? == revision);

    // Deleting the object removes its entry.
    shard.api.delete("kept", &Default::default()).await?;
    eventually("store entry removed", || async {
        ensure!(!stored_tags_path(empty.path(), &shard.ns, "kept").exists());
        Ok(())
    })
    .await
    .with_context(|| p.logs())?;
    Ok(())
}

/// A registry stand-in that answers every request the same way: `503`, `429` with `Retry-After`, or
/// never (for timeouts).
async fn fake_registry(mode: &'static str) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = match mode {
                    "503" => {
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    }
                    "429" => {
                        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// A scan still running after a second shows its progress (`Reconciling`, `scanning: <reason>`)
/// while it runs; a faster one is reported by the final status alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_scan_shows_its_progress_while_it_runs() -> Result<()> {
    let shard = Shard::new("repo-slow").await?;
    let silent = fake_registry("hang").await?;
    let p = shard.start(&[])?;
    shard
        .create(
            "slow",
            json!({"image": format!("{silent}/app"), "interval": "1h", "timeout": "60s"}),
        )
        .await?;
    let msg = shard
        .condition_is("slow", "Reconciling", "True", "Progressing")
        .await
        .with_context(|| p.logs())?;
    ensure!(msg == "scanning: first scan", "{msg}");
    let status = shard.status("slow").await?;
    let (ready, reason, message) = condition(&status, "Ready");
    ensure!(
        ready == "Unknown" && reason == "Progressing" && message == "scanning: first scan",
        "Ready={ready} {reason}: {message}"
    );
    ensure!(status.get("lastScanResult").is_none(), "{status}");
    Ok(())
}

/// Bad input ends in a condition naming the cause (stalled or retried as upstream), never a crash.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_a_clear_condition() -> Result<()> {
    let shard = Shard::new("repo-bad").await?;
    let anon = env().registry(RegistryVariant::Anonymous)?;
    let basic = env().registry(RegistryVariant::Basic)?;
    let (user, _) = env().credentials()?;
    let repo = format!("{}/bad", shard.label.1);
    push(RegistryVariant::Anonymous, &repo, &["1"]).await?;
    let image = format!("{}/{repo}", anon.host);
    shard
        .secret(json!({
            "metadata": {"name": "malformed"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": r#"{"auths": ["not", "a", "map"]}"#},
        }))
        .await?;
    shard
        .secret(json!({
            "metadata": {"name": "bad-auth"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json!({"auths": {&anon.host: {"auth": "!!not base64"}}}).to_string()},
        }))
        .await?;
    shard
        .secret(json!({
            "metadata": {"name": "wrong-proxy"},
            "stringData": {"address": env().proxy_url(ProxyVariant::BasicAuth)?, "username": user, "password": "wrong"},
        }))
        .await?;
    let unavailable = fake_registry("503").await?;
    let limited = fake_registry("429").await?;
    let silent = fake_registry("hang").await?;
    // Cloud identity endpoints on a closed port: the provider objects fail fast and clearly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (aws_imds, azure_imds) = (format!("http://{closed}"), format!("http://{closed}"));
    let gce = closed.to_string();
    let p = shard.start_with_env(&[
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &aws_imds),
        ("GCE_METADATA_HOST", &gce),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &azure_imds),
    ])?;
    let cases: Vec<(&str, Value)> = vec![
        ("scheme", json!({"image": format!("https://{image}")})),
        ("tagged", json!({"image": format!("{image}:1")})),
        ("unparsable", json!({"image": "Example.com/Foo"})),
        (
            "missing-secret",
            json!({"image": image, "secretRef": {"name": "nope"}}),
        ),
        (
            "malformed-config",
            json!({"image": image, "secretRef": {"name": "malformed"}}),
        ),
        (
            "missing-sa",
            json!({"image": image, "serviceAccountName": "ghost"}),
        ),
        (
            "bad-auth",
            json!({"image": image, "secretRef": {"name": "bad-auth"}}),
        ),
        (
            "bad-regex",
            json!({"image": image, "exclusionList": ["[="]}),
        ),
        (
            "unauthorised",
            json!({"image": format!("{}/{repo}", basic.host)}),
        ),
        (
            "wrong-proxy",
            json!({"image": image, "proxySecretRef": {"name": "wrong-proxy"}}),
        ),
        (
            "unavailable",
            json!({"image": format!("{unavailable}/app")}),
        ),
        ("rate-limited", json!({"image": format!("{limited}/app")})),
        (
            "timeout",
            json!({"image": format!("{silent}/app"), "timeout": "2s"}),
        ),
        (
            "aws",
            json!({"image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", "provider": "aws"}),
        ),
        (
            "gcp",
            json!({"image": "europe-docker.pkg.dev/p/r/x", "provider": "gcp"}),
        ),
        (
            "azure",
            json!({"image": "x.azurecr.io/app", "provider": "azure"}),
        ),
    ];
    for (name, mut spec) in cases {
        spec["interval"] = json!("1h");
        shard.create(name, spec).await?;
    }
    // Stalled, no retry.
    for (name, reason, needle) in [
        ("scheme", "ImageURLInvalid", "should not include URL scheme"),
        ("tagged", "ImageURLInvalid", "should not include a tag"),
        (
            "unparsable",
            "ImageURLInvalid",
            "could not parse reference: Example.com/Foo",
        ),
    ] {
        let msg = shard
            .condition_is(name, "Stalled", "True", reason)
            .await
            .with_context(|| p.logs())?;
        ensure!(msg.contains(needle), "{name}: {msg}");
        let (r, rr, _) = condition(&shard.status(name).await?, "Ready");
        ensure!(r == "False" && rr == reason, "{name}: Ready={r} {rr}");
    }
    // Retried: Ready=False with the reason and a message naming the cause.
    let ns = &shard.ns;
    for (name, reason, needle) in [
        (
            "missing-secret",
            "AuthenticationFailed",
            format!("failed to configure authentication options: secret '{ns}/nope' not found"),
        ),
        (
            "malformed-config",
            "AuthenticationFailed",
            format!(
                "failed to configure authentication options: invalid docker config in secret '{ns}/malformed'"
            ),
        ),
        (
            "bad-auth",
            "ReadOperationFailed",
            format!("invalid 'auth' value for registry '{}'", anon.host),
        ),
        (
            "missing-sa",
            "AuthenticationFailed",
            format!("serviceaccount '{ns}/ghost' not found"),
        ),
        (
            "bad-regex",
            "ReadOperationFailed",
            "scan failed: failed to compile regex [=".to_owned(),
        ),
        (
            "unauthorised",
            "ReadOperationFailed",
            "scan failed: ".to_owned(),
        ),
        (
            "wrong-proxy",
            "ReadOperationFailed",
            "unexpected status code 40".to_owned(),
        ),
        ("unavailable", "ReadOperationFailed", "503".to_owned()),
        ("rate-limited", "ReadOperationFailed", "429".to_owned()),
        ("timeout", "ReadOperationFailed", "scan failed: ".to_owned()),
        // Cloud credentials are fetched by the scan: failures are retried read errors, as upstream.
        (
            "aws",
            "ReadOperationFailed",
            format!(
                "scan failed: provider 'aws': IMDS session token: PUT http://{closed}/latest/api/token: "
            ),
        ),
        (
            "gcp",
            "ReadOperationFailed",
            format!(
                "scan failed: provider 'gcp': metadata server access token: GET http://{closed}/computeMetadata/v1/"
            ),
        ),
        (
            "azure",
            "ReadOperationFailed",
            format!(
                "scan failed: provider 'azure': IMDS managed identity token: GET http://{closed}/metadata/identity/oauth2/token: "
            ),
        ),
    ] {
        let msg = shard
            .condition_is(name, "Ready", "False", reason)
            .await
            .with_context(|| p.logs())?;
        ensure!(msg.contains(&needle), "{name}: {msg}");
        let status = shard.status(name).await?;
        ensure!(status.get("lastScanResult").is_none(), "{name}: {status}");
        // Retried, so still reconciling: `ProgressingWithRetry` between attempts, `Progressing` while
        // the next attempt runs.
        let (rec, rec_reason, _) = condition(&status, "Reconciling");
        ensure!(
            rec == "True" && rec_reason.starts_with("Progressing"),
            "{name}: Reconciling={rec} {rec_reason}"
        );
    }
    // Fixing the regex recovers; a later failure keeps the previous tags.
    shard
        .patch("bad-regex", json!({"spec": {"exclusionList": ["^x$"]}}))
        .await?;
    let ok = shard
        .ready_with("bad-regex", 1)
        .await
        .with_context(|| p.logs())?;
    shard
        .patch(
            "bad-regex",
            json!({"spec": {"exclusionList": ["(unclosed"]}}),
        )
        .await?;
    shard
        .condition_is("bad-regex", "Ready", "False", "ReadOperationFailed")
        .await?;
    let failed = shard.status("bad-regex").await?;
    ensure!(failed["lastScanResult"] == ok["lastScanResult"], "{failed}");
    let stored = stored_tags_path(shard.storage.path(), ns, "bad-regex");
    ensure!(std::fs::read_to_string(&stored)? == "1\n");
    ensure!(!p.logs().contains("panicked"), "{}", p.logs());
    if p.logs().contains("reconciler panicked") {
        bail!("a reconcile panicked:\n{}", p.logs());
    }
    Ok(())
}
