//! The Helm chart renders, with the project's Go-template engine and the few Helm functions the chart
//! uses, to the same objects as `kubectl kustomize config/default`: CRDs byte-identical (files in
//! `crds/`), Deployments, ServiceAccounts and RBAC equal once the chart's Helm-only labels
//! (`helm.sh/chart`, `app.kubernetes.io/managed-by`, `app.kubernetes.io/instance`) are dropped. The
//! `flux-system` Namespace is not the chart's: Helm installs into the release namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use e2e::{kustomize_default, repo_root, yaml_documents};
use serde_json::{Value, json};
use templates::{FuncMap, Limits, Template};

/// Labels the chart adds that config/ does not have.
const HELM_LABELS: [&str; 3] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
];

fn chart() -> PathBuf {
    repo_root().join("charts/flux-image-automation")
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_saphyr::from_str(&text).with_context(|| path.display().to_string())
}

/// Helm's functions that Sprig lacks, as Helm defines them.
fn helm_funcs() -> FuncMap {
    let mut funcs = FuncMap::new();
    funcs.insert_include("include");
    funcs.insert("toYaml", |args: &[templates::Value]| {
        let [v] = args else {
            return Err("toYaml takes one value".into());
        };
        let yaml = serde_saphyr::to_string(&v.to_json()?).map_err(|e| e.to_string())?;
        // Helm trims the final newline so that `nindent` places the value exactly.
        Ok(templates::Value::str(yaml.trim_end_matches('\n')))
    });
    funcs.insert("required", |args: &[templates::Value]| match args {
        [templates::Value::Str(msg), v] => match v {
            templates::Value::Missing | templates::Value::Nil => Err(msg.to_string()),
            templates::Value::Str(s) if s.is_empty() => Err(msg.to_string()),
            v => Ok(v.clone()),
        },
        _ => Err("required takes a message and a value".into()),
    });
    funcs
}

/// Deep-merges `over` into `base`, as `helm --set`/`-f` do for maps (other values replace).
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Renders every template of the chart (files not starting with `_`), the `_*.tpl` helpers shared
/// by all of them as in Helm, with the chart's values merged with `overrides`.
fn render(overrides: &Value) -> Result<Vec<Value>> {
    let meta = read_yaml(&chart().join("Chart.yaml"))?;
    let mut values = read_yaml(&chart().join("values.yaml"))?;
    merge(&mut values, overrides);
    let root = json!({
        "Values": values,
        "Release": {"Name": "flux-image-automation", "Namespace": "flux-system", "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    });
    let root = templates::Value::from_json(&root).map_err(|e| anyhow!(e))?;
    let mut helpers = String::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(chart().join("templates"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('_') {
            helpers.push_str(&std::fs::read_to_string(&path)?);
        } else if name.ends_with(".yaml") {
            files.push(path);
        }
    }
    files.sort();
    let funcs = helm_funcs();
    let mut docs = Vec::new();
    for path in files {
        let name = path.display().to_string();
        // Helpers go after the file's own text so that error positions in the file stay right.
        let text = std::fs::read_to_string(&path)? + &helpers;
        let template = Template::parse_with_funcs(&name, &text, &funcs)?;
        let out = template.execute(&root, &Limits::default())?;
        docs.extend(yaml_documents(&out).with_context(|| format!("{name} rendered:\n{out}"))?);
    }
    Ok(docs)
}

fn strip_helm_labels(mut doc: Value) -> Value {
    if let Some(labels) = doc["metadata"]["labels"].as_object_mut() {
        for l in HELM_LABELS {
            labels.remove(l);
        }
        if labels.is_empty()
            && let Some(meta) = doc["metadata"].as_object_mut()
        {
            meta.remove("labels");
        }
    }
    doc
}

fn by_kind_and_name(docs: Vec<Value>) -> BTreeMap<(String, String), Value> {
    docs.into_iter()
        .map(|d| {
            let key = (
                d["kind"].as_str().unwrap_or_default().to_owned(),
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            (key, d)
        })
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| anyhow!("no {kind} {name} rendered"))
}

#[test]
fn chart_crds_are_byte_identical_to_config_crd_bases() -> Result<()> {
    let list = |dir: PathBuf| -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            files.insert(name.to_owned(), std::fs::read(&path)?);
        }
        Ok(files)
    };
    let bases = list(repo_root().join("config/crd/bases"))?;
    let chart_crds = list(chart().join("crds"))?;
    ensure!(bases.len() == 3, "expected 3 CRDs in config/crd/bases");
    ensure!(
        bases.keys().eq(chart_crds.keys()),
        "charts/flux-image-automation/crds has {:?}, config/crd/bases has {:?}; run `make crds`",
        chart_crds.keys().collect::<Vec<_>>(),
        bases.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &bases {
        ensure!(
            chart_crds[name] == *bytes,
            "charts/flux-image-automation/crds/{name} differs from config/crd/bases; run `make crds`"
        );
    }
    Ok(())
}

#[test]
fn default_values_render_the_objects_of_config_default() -> Result<()> {
    let chart = by_kind_and_name(
        render(&json!({}))?
            .into_iter()
            .map(strip_helm_labels)
            .collect(),
    );
    let kustomize = by_kind_and_name(
        kustomize_default()?
            .into_iter()
            .filter(|d| d["kind"] != "CustomResourceDefinition" && d["kind"] != "Namespace")
            .collect(),
    );
    ensure!(
        chart.keys().eq(kustomize.keys()),
        "the chart renders {:?}, config/default has {:?}",
        chart.keys().collect::<Vec<_>>(),
        kustomize.keys().collect::<Vec<_>>()
    );
    for (key, want) in &kustomize {
        let got = &chart[key];
        ensure!(
            got == want,
            "{key:?} differs:\nchart:\n{}\nconfig/default:\n{}",
            serde_saphyr::to_string(got)?,
            serde_saphyr::to_string(want)?
        );
    }
    ensure!(
        kustomize.len() == 12,
        "expected 12 objects, got {}",
        kustomize.len()
    );
    Ok(())
}

#[test]
fn every_rendered_object_carries_the_helm_labels() -> Result<()> {
    for doc in render(&json!({}))? {
        for label in HELM_LABELS {
            ensure!(
                doc["metadata"]["labels"][label].is_string(),
                "{} {} lacks {label}",
                doc["kind"],
                doc["metadata"]["name"]
            );
        }
    }
    Ok(())
}

#[test]
fn values_set_flags_image_env_resources_and_leader_election() -> Result<()> {
    let docs = render(&json!({
        "logLevel": "debug",
        "watchAllNamespaces": false,
        "leaderElection": {"leaseDuration": "60s", "retryPeriod": "10s"},
        "imagePullSecrets": [{"name": "regcred"}],
        "reflector": {
            "image": {"repository": "registry.local/irc", "tag": "dev"},
            "extraArgs": ["--concurrent=8", "--storage-compression-threshold=1024"],
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "resources": {"limits": {"memory": "128Mi"}},
            "replicas": 2,
        },
        "automation": {"enabled": true},
    }))?;
    let reflector = &find(&docs, "Deployment", "image-reflector-controller")?["spec"];
    let container = &reflector["template"]["spec"]["containers"][0];
    ensure!(container["image"] == "registry.local/irc:dev");
    ensure!(reflector["replicas"] == 2);
    ensure!(reflector["template"]["spec"]["imagePullSecrets"] == json!([{"name": "regcred"}]));
    ensure!(
        container["args"]
            == json!([
                "--log-level=debug",
                "--log-encoding=json",
                "--enable-leader-election",
                "--leader-election-lease-duration=60s",
                "--leader-election-retry-period=10s",
                "--concurrent=8",
                "--storage-compression-threshold=1024"
            ]),
        "args: {}",
        container["args"]
    );
    ensure!(container["env"][1] == json!({"name": "HTTPS_PROXY", "value": "http://proxy:3128"}));
    // Values merge into the defaults as in Helm: the other limits and the requests stay.
    ensure!(
        container["resources"]
            == json!({"limits": {"cpu": "1000m", "memory": "128Mi"},
                      "requests": {"cpu": "100m", "memory": "64Mi"}}),
        "resources: {}",
        container["resources"]
    );
    let automation = &find(&docs, "Deployment", "image-automation-controller")?["spec"];
    ensure!(
        automation["template"]["spec"]["containers"][0]["image"]
            == "ghcr.io/flux-image-automation-rs/image-automation-controller:v0.1.0"
    );

    let docs = render(&json!({"leaderElection": {"enabled": false}}))?;
    let args = &find(&docs, "Deployment", "image-automation-controller")?["spec"]["template"]["spec"]
        ["containers"][0]["args"];
    ensure!(
        !args
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "--enable-leader-election")),
        "leader election still enabled: {args}"
    );
    Ok(())
}

#[test]
fn service_monitor_is_off_by_default_and_scrapes_both_controllers_when_on() -> Result<()> {
    ensure!(
        !render(&json!({}))?
            .iter()
            .any(|d| d["kind"] == "ServiceMonitor" || d["kind"] == "Service")
    );
    let docs = render(
        &json!({"serviceMonitor": {"enabled": true, "interval": "30s",
        "labels": {"release": "prometheus"}}}),
    )?;
    for name in ["image-reflector-controller", "image-automation-controller"] {
        let sm = find(&docs, "ServiceMonitor", name)?;
        ensure!(sm["metadata"]["labels"]["release"] == "prometheus");
        ensure!(sm["spec"]["selector"]["matchLabels"]["app"] == name);
        ensure!(
            sm["spec"]["endpoints"][0]
                == json!({"port": "http-prom", "path": "/metrics", "interval": "30s"})
        );
        let svc = find(&docs, "Service", &format!("{name}-metrics"))?;
        ensure!(svc["metadata"]["labels"]["app"] == name);
        ensure!(svc["spec"]["selector"]["app"] == name);
        ensure!(svc["spec"]["ports"][0]["targetPort"] == "http-prom");
    }
    Ok(())
}

#[test]
fn a_controller_can_be_left_out_and_a_missing_image_repository_is_an_error() -> Result<()> {
    let docs = render(&json!({"automation": {"enabled": false}}))?;
    ensure!(
        docs.iter().all(|d| !d["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .starts_with("image-automation")),
        "automation objects rendered although disabled"
    );
    let err = render(&json!({"reflector": {"image": {"repository": ""}}}))
        .err()
        .ok_or_else(|| anyhow!("an empty image repository rendered"))?;
    ensure!(
        format!("{err:#}").contains("image.repository is required"),
        "{err:#}"
    );
    Ok(())
}

/// The Dockerfile builds exactly what `make dist` builds, with the same cargo command.
#[test]
fn dockerfile_builds_with_the_make_dist_command() -> Result<()> {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile"))?;
    let dist = makefile
        .split("\ndist:\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .ok_or_else(|| anyhow!("no dist target in the Makefile"))?
        .trim()
        .replace("$(CARGO)", "cargo");
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile"))?;
    // Join `\`-continued lines, then squeeze spaces.
    let joined = dockerfile.replace("\\\n", " ");
    let run = joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RUN "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>();
    let dist = dist.split_whitespace().collect::<Vec<_>>().join(" ");
    ensure!(
        run.contains(&dist),
        "the Dockerfile's RUN commands {run:?} do not include make dist's `{dist}`"
    );
    for binary in ["image-reflector-controller", "image-automation-controller"] {
        ensure!(
            dockerfile.contains(&format!(
                "COPY --from=builder /src/target/release/{binary} "
            )),
            "the Dockerfile does not copy the {binary} release binary"
        );
    }
    Ok(())
}
