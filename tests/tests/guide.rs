//! The project's generated CRDs on the real API server, and the Flux image-update guide's three manifests
//! (crates/api/tests/data, copied verbatim) applied as written (v1beta1) and as v1, shown by `kubectl get` with
//! the printer columns.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use e2e::{KUBECONFIG_ADMIN, admin_client, create_namespace, kubectl, kubectl_with_input};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const GROUP: &str = "image.toolkit.fluxcd.io";
/// (kind, plural) of the project's CRDs.
const KINDS: [(&str, &str); 3] = [
    ("ImageRepository", "imagerepositories"),
    ("ImagePolicy", "imagepolicies"),
    ("ImageUpdateAutomation", "imageupdateautomations"),
];
/// The guide's manifests (copied verbatim into the api crate's test data), in the order the guide creates them.
const GUIDE_DIR: &str = "crates/api/tests/data";
const GUIDE: [&str; 3] = [
    "podinfo-registry.yaml",
    "podinfo-policy.yaml",
    "flux-system-automation.yaml",
];

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn guide_manifest(file: &str) -> Result<String> {
    let path = repo_path(GUIDE_DIR).join(file);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// The guide manifest with its namespace and, optionally, its apiVersion changed; both lines must exist.
fn rewrite(manifest: &str, namespace: &str, version: Option<&str>) -> Result<String> {
    let mut ns_done = false;
    let mut version_done = version.is_none();
    let mut out = String::new();
    for line in manifest.lines() {
        if line == "  namespace: flux-system" {
            out.push_str(&format!("  namespace: {namespace}\n"));
            ns_done = true;
        } else if let (Some(v), Some(_)) = (
            version,
            line.strip_prefix("apiVersion: image.toolkit.fluxcd.io/"),
        ) {
            out.push_str(&format!("apiVersion: {GROUP}/{v}\n"));
            version_done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    ensure!(
        ns_done && version_done,
        "manifest lacks the namespace or apiVersion line:\n{manifest}"
    );
    Ok(out)
}

/// Install config/crd the way a user would (`kubectl apply -k`) and wait until the CRDs are established.
/// 1.20 does not know `x-kubernetes-validations` (it drops those rules; they are checked as schema content
/// elsewhere): kubectl's client-side validation rejects the field, and server-side apply fails building the
/// typed patch, so this is a client-side apply without client validation.
fn install_crds() -> Result<()> {
    // Once per test binary: concurrent client-side applies race on create (AlreadyExists).
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install_crds_now().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn install_crds_now() -> Result<()> {
    let dir = repo_path("config/crd");
    let dir = dir.to_str().context("non-UTF-8 repository path")?;
    kubectl(KUBECONFIG_ADMIN, &["apply", "--validate=false", "-k", dir])?;
    let names: Vec<String> = KINDS
        .iter()
        .map(|(_, plural)| format!("crd/{plural}.{GROUP}"))
        .collect();
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=90s"];
    args.extend(names.iter().map(String::as_str));
    kubectl(KUBECONFIG_ADMIN, &args)?;
    Ok(())
}

#[tokio::test]
async fn generated_crds_install_and_are_accepted() -> Result<()> {
    install_crds()?;
    let crds = Api::<CustomResourceDefinition>::all(admin_client().await?);
    for (kind, plural) in KINDS {
        let crd = crds
            .get(&format!("{plural}.{GROUP}"))
            .await
            .with_context(|| format!("reading CRD of {kind}"))?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let status_of = |t: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| c.status.clone())
        };
        assert_eq!(
            status_of("Established").as_deref(),
            Some("True"),
            "{kind}: {conditions:?}"
        );
        assert_eq!(
            status_of("NamesAccepted").as_deref(),
            Some("True"),
            "{kind}: {conditions:?}"
        );
        // A non-structural schema would disable pruning and defaulting.
        assert_eq!(
            status_of("NonStructuralSchema"),
            None,
            "{kind}: {conditions:?}"
        );
        let storage: Vec<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(storage, ["v1"], "{kind}: storage version");
        let served: Vec<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.as_str())
            .collect();
        for version in ["v1", "v1beta1"] {
            assert!(
                served.contains(&version),
                "{kind}: {version} not served ({served:?})"
            );
        }
    }
    Ok(())
}

/// Apply the three guide manifests into `ns` (rewritten to `version` if given) and check what the server
/// stored, read back as v1.
async fn apply_guide(client: &Client, ns: &str, version: Option<&str>) -> Result<()> {
    for (file, (kind, plural)) in GUIDE.into_iter().zip(KINDS) {
        let manifest = rewrite(&guide_manifest(file)?, ns, version)?;
        let out = kubectl_with_input(KUBECONFIG_ADMIN, &["apply", "-f", "-"], Some(&manifest))
            .with_context(|| format!("applying {file} as {}", version.unwrap_or("written")))?;
        // The server warns about the deprecated version the guide uses, and only about that.
        let warning = format!("v1beta1 {kind} is deprecated, upgrade to v1");
        match version {
            None => ensure!(
                out.stderr.contains(&warning),
                "{file}: no deprecation warning in {:?}",
                out.stderr
            ),
            Some(_) => ensure!(
                !out.stderr.contains("deprecated"),
                "{file}: unexpected warning {:?}",
                out.stderr
            ),
        }
        // Status defaults to observedGeneration -1 until a controller reports.
        let obj = v1_api(client, ns, kind, plural)
            .get(&object_name(&manifest)?)
            .await?;
        let obj = serde_json::to_value(obj)?;
        assert_eq!(
            obj["status"],
            json!({"observedGeneration": -1}),
            "{kind}: {obj:#}"
        );
    }
    let repo = get_v1(
        client,
        ns,
        "ImageRepository",
        "imagerepositories",
        "podinfo",
    )
    .await?;
    assert_eq!(repo["spec"]["image"], "ghcr.io/stefanprodan/podinfo");
    assert_eq!(repo["spec"]["interval"], "1m0s");
    // Defaults from the schema.
    assert_eq!(
        repo["spec"]["exclusionList"],
        json!(["^.*\\.sig$"]),
        "{repo:#}"
    );
    assert_eq!(repo["spec"]["provider"], "generic", "{repo:#}");

    let policy = get_v1(client, ns, "ImagePolicy", "imagepolicies", "podinfo").await?;
    assert_eq!(policy["spec"]["imageRepositoryRef"]["name"], "podinfo");
    assert_eq!(policy["spec"]["policy"]["semver"]["range"], "5.0.x");

    let auto = get_v1(
        client,
        ns,
        "ImageUpdateAutomation",
        "imageupdateautomations",
        "flux-system",
    )
    .await?;
    assert_eq!(
        auto["spec"]["sourceRef"],
        json!({"kind": "GitRepository", "name": "flux-system"}),
        "{auto:#}"
    );
    assert_eq!(auto["spec"]["git"]["checkout"]["ref"]["branch"], "main");
    assert_eq!(auto["spec"]["git"]["push"]["branch"], "main");
    assert_eq!(
        auto["spec"]["git"]["commit"]["messageTemplate"],
        "{{range .Updated.Images}}{{println .}}{{end}}"
    );
    assert_eq!(
        auto["spec"]["update"],
        json!({"path": "./clusters/my-cluster", "strategy": "Setters"})
    );
    Ok(())
}

/// `metadata.name` of a guide manifest (the first indented `name:` line).
fn object_name(manifest: &str) -> Result<String> {
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .map(str::to_owned)
        .context("manifest without metadata.name")
}

fn v1_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    api_at(client, ns, "v1", kind, plural)
}

fn api_at(
    client: &Client,
    ns: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, version, kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn get_v1(client: &Client, ns: &str, kind: &str, plural: &str, name: &str) -> Result<Value> {
    let obj = v1_api(client, ns, kind, plural)
        .get(name)
        .await
        .with_context(|| format!("reading {kind} {ns}/{name} as v1"))?;
    serde_json::to_value(obj).context("serialising")
}

#[tokio::test]
async fn guide_manifests_apply_as_written() -> Result<()> {
    install_crds()?;
    // Exactly as written (namespace flux-system): the server validates and defaults them without storing.
    for file in GUIDE {
        let path = repo_path(GUIDE_DIR).join(file);
        let path = path.to_str().context("non-UTF-8 path")?;
        kubectl(KUBECONFIG_ADMIN, &["apply", "--dry-run=server", "-f", path])
            .with_context(|| format!("server dry-run of {file} as written"))?;
    }
    // And stored for real, in a namespace of their own.
    let client = admin_client().await?;
    let ns = create_namespace(&client, "guide-v1beta1").await?;
    apply_guide(&client, &ns, None).await?;

    // Every served version reads the same object (no conversion webhook: only apiVersion changes).
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for ((kind, plural), file) in KINDS.into_iter().zip(GUIDE) {
        let name = object_name(&guide_manifest(file)?)?;
        let crd = crds.get(&format!("{plural}.{GROUP}")).await?;
        let mut specs = Vec::new();
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let obj = api_at(&client, &ns, &version.name, kind, plural)
                .get(&name)
                .await
                .with_context(|| format!("reading {kind} {name} as {}", version.name))?;
            let obj = serde_json::to_value(obj)?;
            assert_eq!(obj["apiVersion"], format!("{GROUP}/{}", version.name));
            specs.push(obj["spec"].clone());
        }
        ensure!(specs.len() >= 2, "{kind}: fewer than two served versions");
        ensure!(
            specs.windows(2).all(|w| w[0] == w[1]),
            "{kind}: versions differ: {specs:#?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn guide_manifests_apply_as_v1() -> Result<()> {
    install_crds()?;
    let client = admin_client().await?;
    let ns = create_namespace(&client, "guide-v1").await?;
    apply_guide(&client, &ns, Some("v1")).await
}

/// One table of `kubectl get` output: header names and rows of cells, cut at the header's column offsets.
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn parse_tables(output: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("NAME") {
            continue;
        }
        // Column starts: where a non-space follows two spaces (or the line start). Headers like "LAST SCAN"
        // contain single spaces only.
        let bytes = line.as_bytes();
        let mut starts = vec![0];
        for i in 2..bytes.len() {
            if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
                starts.push(i);
            }
        }
        let cut = |l: &str| -> Vec<String> {
            starts
                .iter()
                .enumerate()
                .map(|(n, &s)| {
                    let e = starts.get(n + 1).copied().unwrap_or(l.len()).min(l.len());
                    l.get(s.min(l.len())..e).unwrap_or("").trim().to_string()
                })
                .collect()
        };
        let headers = cut(line);
        let mut rows = Vec::new();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.starts_with("NAME") {
                break;
            }
            rows.push(cut(next));
            lines.next();
        }
        tables.push(Table { headers, rows });
    }
    tables
}

fn table_for<'a>(tables: &'a [Table], kind_prefix: &str) -> Result<&'a Table> {
    tables
        .iter()
        .find(|t| {
            t.rows
                .first()
                .is_some_and(|r| r[0].starts_with(kind_prefix))
        })
        .with_context(|| format!("no table for {kind_prefix}"))
}

fn cell<'a>(table: &'a Table, header: &str) -> Result<&'a str> {
    let i = table
        .headers
        .iter()
        .position(|h| h == header)
        .with_context(|| format!("no column {header}"))?;
    match table.rows.as_slice() {
        [row] => Ok(row[i].as_str()),
        rows => bail!("expected one row, got {}", rows.len()),
    }
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() -> Result<()> {
    install_crds()?;
    let client = admin_client().await?;
    let ns = create_namespace(&client, "columns").await?;
    apply_guide(&client, &ns, Some("v1")).await?;

    // What the controllers would report, written through /status so every column has a value.
    let now = "2026-01-02T03:04:05Z";
    let ready = |message: &str| {
        json!([{"type": "Ready", "status": "True", "reason": "Succeeded",
        "message": message, "lastTransitionTime": now, "observedGeneration": 1}])
    };
    let statuses = [
        (
            "ImageRepository",
            "imagerepositories",
            "podinfo",
            json!({"observedGeneration": 1, "lastScanResult": {"tagCount": 42, "scanTime": now},
                "conditions": ready("successful scan: found 42 tags")}),
        ),
        (
            "ImagePolicy",
            "imagepolicies",
            "podinfo",
            json!({"observedGeneration": 1, "latestRef": {"name": "ghcr.io/stefanprodan/podinfo", "tag": "5.0.3"},
                "conditions": ready("Latest image tag for ghcr.io/stefanprodan/podinfo resolved to 5.0.3")}),
        ),
        (
            "ImageUpdateAutomation",
            "imageupdateautomations",
            "flux-system",
            json!({"observedGeneration": 1, "lastAutomationRunTime": now,
                "conditions": ready("repository up-to-date")}),
        ),
    ];
    for (kind, plural, name, status) in statuses {
        let patch = json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind, "status": status});
        v1_api(&client, &ns, kind, plural)
            .patch_status(
                name,
                &PatchParams::apply("e2e-status").force(),
                &Patch::Apply(&patch),
            )
            .await
            .with_context(|| format!("writing {kind} status"))?;
    }

    let resources = "imagerepositories,imagepolicies,imageupdateautomations";
    let plain = parse_tables(&kubectl(KUBECONFIG_ADMIN, &["get", "-n", &ns, resources])?);
    let wide = parse_tables(&kubectl(
        KUBECONFIG_ADMIN,
        &["get", "-n", &ns, resources, "-o", "wide"],
    )?);
    ensure!(
        plain.len() == 3 && wide.len() == 3,
        "expected three tables per output"
    );

    let repo = table_for(&plain, "imagerepository")?;
    assert_eq!(
        repo.headers,
        ["NAME", "IMAGE", "TAGS", "READY", "STATUS", "AGE"]
    );
    assert_eq!(cell(repo, "IMAGE")?, "ghcr.io/stefanprodan/podinfo");
    assert_eq!(cell(repo, "TAGS")?, "42");
    assert_eq!(cell(repo, "READY")?, "True");
    assert_eq!(cell(repo, "STATUS")?, "successful scan: found 42 tags");
    let repo_wide = table_for(&wide, "imagerepository")?;
    assert_eq!(
        repo_wide.headers,
        [
            "NAME",
            "IMAGE",
            "TAGS",
            "READY",
            "STATUS",
            "LAST SCAN",
            "AGE"
        ]
    );
    assert_eq!(cell(repo_wide, "LAST SCAN")?, now);

    let policy = table_for(&plain, "imagepolicy")?;
    assert_eq!(
        policy.headers,
        ["NAME", "IMAGE", "TAG", "READY", "STATUS", "AGE"]
    );
    assert_eq!(cell(policy, "IMAGE")?, "ghcr.io/stefanprodan/podinfo");
    assert_eq!(cell(policy, "TAG")?, "5.0.3");
    assert_eq!(cell(policy, "READY")?, "True");

    let auto = table_for(&plain, "imageupdateautomation")?;
    assert_eq!(auto.headers, ["NAME", "READY", "STATUS", "AGE"]);
    assert_eq!(cell(auto, "STATUS")?, "repository up-to-date");
    let auto_wide = table_for(&wide, "imageupdateautomation")?;
    assert_eq!(
        auto_wide.headers,
        ["NAME", "READY", "STATUS", "LAST RUN", "AGE"]
    );
    assert_eq!(cell(auto_wide, "LAST RUN")?, now);
    Ok(())
}
