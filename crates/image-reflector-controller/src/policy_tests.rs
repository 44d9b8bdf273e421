//! The ImagePolicy conformance cases (`tests/data/policy-cases.json`, copied from the project's
//! conformance data) run through the reconciler against a fake cluster and a real tag store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use api::meta::{RECONCILING, STALLED, SUCCEEDED_REASON};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use runtime::conditions;

const CASES: &str = include_str!("../tests/data/policy-cases.json");
const REQUEUE_DEPENDENCY: Duration = Duration::from_secs(30);
/// The image of the conformance repositories (`<imgRepo>` in the data).
const IMAGE: &str = "registry.example.com/foo/bar";

/// A cluster of ImageRepositories and Namespaces in memory; digests are `D<pass>(<tag>)`, as the
/// cases name them; events are recorded as `<type> <reason> <message>`.
#[derive(Default)]
struct Fake {
    repos: Mutex<HashMap<(String, String), ImageRepository>>,
    namespaces: Mutex<HashMap<String, BTreeMap<String, String>>>,
    pass: AtomicUsize,
    digest_calls: AtomicUsize,
    digest_error: Mutex<Option<String>>,
    events: Mutex<Vec<String>>,
}

impl Cluster for Arc<Fake> {
    async fn image_repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ImageRepository>, String> {
        let repos = self.repos.lock().unwrap();
        Ok(repos.get(&(namespace.into(), name.into())).cloned())
    }

    async fn namespace_labels(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        let nss = self.namespaces.lock().unwrap();
        nss.get(name)
            .cloned()
            .ok_or_else(|| format!("namespaces \"{name}\" not found"))
    }

    async fn digest(
        &self,
        _repo: &ImageRepository,
        _image: &registry::ImageRef,
        tag: &str,
    ) -> Result<String, String> {
        self.digest_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = self.digest_error.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(format!("D{}({tag})", self.pass.load(Ordering::SeqCst)))
    }

    async fn event(&self, _policy: &ImagePolicy, type_: EventType, reason: &str, message: &str) {
        let t = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
            EventType::Trace => "Trace",
        };
        self.events
            .lock()
            .unwrap()
            .push(format!("{t} {reason} {message}"));
    }
}

struct Env {
    fake: Arc<Fake>,
    store: TagStore,
    _dir: tempfile::TempDir,
    rec: PolicyReconciler<Arc<Fake>>,
}

fn env(options: PolicyOptions) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = TagStore::open(dir.path(), store::DEFAULT_COMPRESSION_THRESHOLD).unwrap();
    let fake = Arc::new(Fake::default());
    let rec = PolicyReconciler::new(fake.clone(), Arc::new(store.clone()), options);
    Env {
        fake,
        store,
        _dir: dir,
        rec,
    }
}

fn options() -> PolicyOptions {
    PolicyOptions {
        no_cross_namespace_refs: false,
        requeue_dependency: REQUEUE_DEPENDENCY,
        object_level_workload_identity: false,
    }
}

impl Env {
    /// Adds an ImageRepository `ns/name` for `image` with extra spec fields.
    fn add_repo(&self, ns: &str, name: &str, image: &str, extra: Value) -> ImageRepository {
        let mut spec = json!({"image": image, "interval": "1m"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        let repo: ImageRepository = serde_json::from_value(json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": "ImageRepository",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": spec,
        }))
        .unwrap();
        self.put_repo(repo.clone());
        repo
    }

    fn put_repo(&self, repo: ImageRepository) {
        let key = (repo.namespace().unwrap(), repo.name_any());
        self.fake.repos.lock().unwrap().insert(key, repo);
    }

    fn repo(&self, ns: &str, name: &str) -> ImageRepository {
        self.fake.repos.lock().unwrap()[&(ns.to_string(), name.to_string())].clone()
    }

    /// What a successful scan leaves: the tags in the store and the revision and canonical name in
    /// the repository's status.
    fn scan(&self, ns: &str, name: &str, tags: &[&str]) {
        let mut repo = self.repo(ns, name);
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let revision = self.store.set_tags(&RepoKey::new(ns, name), &tags).unwrap();
        let canonical = registry::ImageRef::parse(&repo.spec.image, false)
            .unwrap()
            .canonical();
        let status = repo.status.get_or_insert_default();
        status.canonical_image_name = Some(canonical);
        status.last_scan_result = Some(
            serde_json::from_value(json!({
                "revision": revision, "tagCount": tags.len(),
            }))
            .unwrap(),
        );
        self.put_repo(repo);
    }

    fn add_namespace(&self, name: &str, labels: Option<&Value>) {
        let labels: BTreeMap<String, String> = labels
            .filter(|l| !l.is_null())
            .map(|l| serde_json::from_value(l.clone()).unwrap())
            .unwrap_or_default();
        self.fake
            .namespaces
            .lock()
            .unwrap()
            .insert(name.to_string(), labels);
    }

    /// One pass of the reconciler plus what the plumbing does after it (observedGeneration).
    async fn reconcile(&self, p: &mut ImagePolicy) -> Result<ReconcileResult, String> {
        let res = self.rec.reconcile(p).await.map_err(|e| e.to_string());
        let conds = p.status.as_ref().unwrap().conditions.clone();
        if conditions::is_ready(&conds) || conditions::is_stalled(&conds) {
            p.status.as_mut().unwrap().observed_generation = p.metadata.generation;
        }
        res
    }

    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.fake.events.lock().unwrap())
    }
}

/// An ImagePolicy in `ns` with the case's `policy` (orders lower-cased: the CRD's enum) and filter.
fn policy(ns: &str, repo_ref: Value, choice: &Value, filter: Option<&Value>) -> ImagePolicy {
    let mut choice = choice.clone();
    for kind in ["alphabetical", "numerical"] {
        if let Some(o) = choice.pointer_mut(&format!("/{kind}/order"))
            && let Some(s) = o.as_str()
        {
            *o = Value::String(s.to_lowercase());
        }
    }
    let mut spec = json!({"imageRepositoryRef": repo_ref, "policy": choice});
    if let Some(f) = filter.filter(|f| !f.is_null()) {
        spec["filterTags"] = f.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImagePolicy",
        "metadata": {"name": "pol", "namespace": ns, "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

/// A policy in `default` on repository `repo`, without a filter.
fn repo_policy(choice: Value) -> ImagePolicy {
    policy("default", json!({"name": "repo"}), &choice, None)
}

fn conds(p: &ImagePolicy) -> &[Condition] {
    &p.status.as_ref().unwrap().conditions
}

fn latest(p: &ImagePolicy) -> Option<&ImageRef> {
    p.status.as_ref().unwrap().latest_ref.as_ref()
}

fn cases(suite_prefix: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(CASES).unwrap();
    let out: Vec<Value> = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["suite"].as_str().unwrap().starts_with(suite_prefix))
        .cloned()
        .collect();
    assert!(!out.is_empty(), "no cases for {suite_prefix}");
    out
}

fn name(c: &Value) -> String {
    format!("{} / {}", c["suite"], c["name"])
}

/// Checks the `expected` keys shared by the e2e-style cases; every key must be understood.
fn check_expected(c: &Value, p: &ImagePolicy, expected: &Value) {
    let n = name(c);
    let cs = conds(p);
    for (k, v) in expected.as_object().unwrap() {
        match k.as_str() {
            "ready" => assert_eq!(
                conditions::is_ready(cs),
                v.as_bool().unwrap(),
                "{n}: {cs:?}"
            ),
            "stalled" => assert_eq!(
                conditions::is_stalled(cs),
                v.as_bool().unwrap(),
                "{n}: {cs:?}"
            ),
            "readyReason" => assert_eq!(conditions::reason(cs, READY), v, "{n}"),
            "readyReasonContains" => assert!(
                conditions::reason(cs, READY).contains(v.as_str().unwrap()),
                "{n}: {cs:?}"
            ),
            "readyMessage" => assert_eq!(conditions::message(cs, READY), v, "{n}"),
            "readyMessageContains" => assert!(
                conditions::message(cs, READY).contains(v.as_str().unwrap()),
                "{n}: {cs:?}"
            ),
            "stalledReason" => assert_eq!(conditions::reason(cs, STALLED), v, "{n}"),
            "stalledMessage" => assert_eq!(conditions::message(cs, STALLED), v, "{n}"),
            "latestRef.tag" => assert_eq!(latest(p).map(|l| l.tag.as_str()), v.as_str(), "{n}"),
            "latestRefString" => assert_eq!(
                latest(p).map(|l| l.to_string()),
                v.as_str().map(|s| s.replace("<imgRepo>", IMAGE)),
                "{n}"
            ),
            "observedPreviousRef" => {
                assert!(v.is_null(), "{n}: only null is expected here");
                assert_eq!(
                    p.status.as_ref().unwrap().observed_previous_ref,
                    None,
                    "{n}"
                );
            }
            "lastHandledReconcileAt" => assert_eq!(
                p.status
                    .as_ref()
                    .unwrap()
                    .last_handled_reconcile_at
                    .as_deref(),
                v.as_str(),
                "{n}"
            ),
            other => panic!("{n}: unhandled expectation {other}"),
        }
    }
}

#[tokio::test]
async fn apply_policy_cases() {
    for c in cases("controller.applyPolicy") {
        let n = name(&c);
        let e = env(options());
        e.add_repo("default", "repo", IMAGE, json!({}));
        let db = &c["db"];
        if let Some(tags) = db["tags"].as_array() {
            let tags: Vec<&str> = tags.iter().map(|t| t.as_str().unwrap()).collect();
            e.scan("default", "repo", &tags);
        } else if db["readError"].is_string() {
            // An unreadable entry: a directory where the tag file belongs.
            e.scan("default", "repo", &["x"]);
            let dir = e.store.root().join("imagerepository/default/repo");
            std::fs::remove_file(dir.join("tags.txt")).unwrap();
            std::fs::create_dir(dir.join("tags.txt")).unwrap();
        }
        let mut p = policy(
            "default",
            json!({"name": "repo"}),
            &c["policy"],
            c.get("filter"),
        );
        let res = e.reconcile(&mut p).await;
        let exp = &c["expected"];
        let cs = conds(&p);
        if let Some(tag) = exp["result"].as_str() {
            assert_eq!(res, Ok(ReconcileResult::default()), "{n}");
            assert_eq!(latest(&p).unwrap().tag, tag, "{n}");
            assert_eq!(latest(&p).unwrap().name, IMAGE, "{n}");
            assert!(conditions::is_ready(cs), "{n}: {cs:?}");
            continue;
        }
        assert_eq!(exp["error"], true, "{n}");
        let msg = conditions::message(cs, READY);
        match exp["errorType"].as_str() {
            Some("errInvalidPolicy") => {
                assert_eq!(res, Ok(ReconcileResult::default()), "{n}");
                assert!(conditions::is_stalled(cs), "{n}: {cs:?}");
                assert_eq!(conditions::reason(cs, READY), INVALID_POLICY_REASON, "{n}");
            }
            Some("errNoTagsInDatabase") => {
                assert_eq!(res, Ok(ReconcileResult::after(REQUEUE_DEPENDENCY)), "{n}");
                assert_eq!(
                    conditions::reason(cs, READY),
                    DEPENDENCY_NOT_READY_REASON,
                    "{n}"
                );
                assert_eq!(msg, "retrying in 30s error: no tags in database", "{n}");
            }
            _ => {
                assert_eq!(res.as_ref().err().map(String::as_str), Some(msg), "{n}");
                assert_eq!(conditions::reason(cs, READY), FAILURE_REASON, "{n}");
            }
        }
        if let Some(m) = exp["errorMessage"].as_str() {
            if db["readError"].is_string() {
                // The store's own error replaces the fake database's "fail".
                assert!(
                    msg.starts_with("failed to read tags from database: "),
                    "{n}: {msg}"
                );
            } else if exp["errorType"] == "errNoTagsInDatabase" {
                assert!(msg.ends_with(m), "{n}: {msg}");
            } else {
                assert_eq!(msg, m, "{n}");
            }
        }
        if let Some(m) = exp["errorMessageContains"].as_str() {
            assert!(msg.contains(m), "{n}: {msg}");
        }
        assert!(latest(&p).is_none(), "{n}");
    }
}

#[tokio::test]
async fn calculate_and_filter_cases() {
    let mut all = cases("controller.ImagePolicy.calculateImageFromRepoTags");
    all.extend(cases("controller.ImagePolicy.filterTags"));
    for c in all {
        let e = env(options());
        e.add_repo("default", "repo", IMAGE, json!({}));
        let tags: Vec<&str> = c["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        e.scan("default", "repo", &tags);
        let mut p = policy(
            "default",
            json!({"name": "repo"}),
            &c["policy"],
            c.get("filter"),
        );
        let _ = e.reconcile(&mut p).await;
        check_expected(&c, &p, &c["expected"]);
    }
}

/// The ACL cases: `accessImageRepo`, `crossNamespaceRefsDisallowed` and `getImageRepository`.
#[tokio::test]
async fn acl_cases() {
    let mut all = cases("controller.ImagePolicy.accessImageRepo");
    all.extend(cases("controller.ImagePolicy.crossNamespaceRefsDisallowed"));
    all.extend(cases("controller.ImagePolicy.getImageRepository"));
    for c in all {
        let n = name(&c);
        let no_cross = c["aclOptions"]["noCrossNamespaceRefs"] == true;
        let e = env(PolicyOptions {
            no_cross_namespace_refs: no_cross,
            ..options()
        });
        let policy_ns = c["imagePolicyNamespace"].as_str().unwrap();
        e.add_namespace(policy_ns, c.get("imagePolicyNamespaceLabels"));
        let repo_name = c["imageRepoName"].as_str().unwrap_or("repo");
        if let Some(repo_ns) = c["imageRepoNamespace"].as_str() {
            e.add_namespace(repo_ns, None);
            let mut extra = json!({});
            if !c["imageRepoAccessFrom"].is_null() {
                extra["accessFrom"] = c["imageRepoAccessFrom"].clone();
            }
            e.add_repo(repo_ns, repo_name, IMAGE, extra);
            let tags: Vec<&str> = c["tags"]
                .as_array()
                .map(|t| t.iter().map(|t| t.as_str().unwrap()).collect())
                .unwrap_or_else(|| vec!["1.0.0"]);
            e.scan(repo_ns, repo_name, &tags);
        }
        let mut repo_ref = c["imageRepositoryRef"].clone();
        if repo_ref.is_null() {
            repo_ref = json!({"name": repo_name, "namespace": c["imageRepoNamespace"]});
        }
        if repo_ref["name"] == "<repo>" {
            repo_ref["name"] = json!(repo_name);
        }
        let choice = if c["policy"].is_null() {
            json!({"semver": {"range": ">=0.0.0"}})
        } else {
            c["policy"].clone()
        };
        let mut p = policy(policy_ns, repo_ref, &choice, c.get("filter"));
        let res = e.reconcile(&mut p).await;
        let cs = conds(&p);
        let exp = &c["expected"];
        match c["kind"].as_str().unwrap() {
            "getImageRepository" => {
                let failed = conditions::message(cs, READY)
                    .starts_with("failed to get the referred ImageRepository: ");
                assert_eq!(failed, exp["error"].as_bool().unwrap(), "{n}: {cs:?}");
                assert_eq!(res.is_err(), failed, "{n}: errors are retried");
                if exp["error"] == false {
                    assert!(conditions::is_ready(cs), "{n}: {cs:?}");
                }
            }
            "reconcile.acl" => {
                assert_eq!(res.is_err(), exp["reconcileError"] == true, "{n}");
                assert_eq!(conditions::reason(cs, READY), exp["readyReason"], "{n}");
                assert_eq!(
                    conditions::message(cs, READY),
                    format!(
                        "failed to get the referred ImageRepository: cannot access 'ImageRepository/default/{repo_name}', cross-namespace references have been blocked"
                    ),
                    "{n}"
                );
            }
            _ => {
                check_expected(&c, &p, exp);
                if exp["readyReason"] == ACCESS_DENIED_REASON {
                    assert!(res.is_err(), "{n}: access denial is retried");
                }
            }
        }
    }
}

#[tokio::test]
async fn acl_messages_are_exact() {
    let e = env(options());
    e.add_namespace("tenant", Some(&json!({"team": "a"})));
    e.add_repo("shared", "repo", IMAGE, json!({}));
    e.scan("shared", "repo", &["1.0.0"]);
    let mut p = policy(
        "tenant",
        json!({"name": "repo", "namespace": "shared"}),
        &json!({"semver": {"range": "1.x"}}),
        None,
    );
    let res = e.reconcile(&mut p).await;
    let want = "failed to get the referred ImageRepository: access denied: 'shared/repo' can't be accessed due to missing ACL labels on 'accessFrom'";
    assert_eq!(res.as_ref().err().map(String::as_str), Some(want));
    assert_eq!(conditions::message(conds(&p), READY), want);
    assert_eq!(conditions::reason(conds(&p), READY), ACCESS_DENIED_REASON);

    let mut repo = e.repo("shared", "repo");
    repo.spec.access_from =
        serde_json::from_value(json!({"namespaceSelectors": [{"matchLabels": {"team": "b"}}]}))
            .unwrap();
    e.put_repo(repo);
    let _ = e.reconcile(&mut p).await;
    assert_eq!(
        conditions::message(conds(&p), READY),
        "failed to get the referred ImageRepository: access denied: 'shared/repo' can't be accessed due to ACL labels mismatch on namespace 'tenant'"
    );

    let mut p = policy(
        "tenant",
        json!({"name": "missing"}),
        &json!({"semver": {"range": "1.x"}}),
        None,
    );
    let _ = e.reconcile(&mut p).await;
    assert_eq!(
        conditions::message(conds(&p), READY),
        "failed to get the referred ImageRepository: referenced ImageRepository does not exist: ImageRepository.image.toolkit.fluxcd.io \"missing\" not found"
    );
    assert_eq!(
        conditions::reason(conds(&p), READY),
        DEPENDENCY_NOT_READY_REASON
    );
}

#[test]
fn ready_message_cases() {
    for c in cases("controller.composeImagePolicyReadyMessage") {
        let status: ImagePolicyStatus = serde_json::from_value(c["status"].clone()).unwrap();
        assert_eq!(
            ready_message(&status),
            c["expected"]["message"],
            "{}",
            name(&c)
        );
    }
}

#[tokio::test]
async fn digest_reflection_cases() {
    for c in cases("controller.ImagePolicy.digestReflection") {
        let n = name(&c);
        let e = env(options());
        e.add_repo("default", "repo", IMAGE, json!({}));
        let tags: Vec<&str> = c["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        e.scan("default", "repo", &tags);
        let mut p = policy("default", json!({"name": "repo"}), &c["policy"], None);
        for (i, pass) in ["pass1", "pass2"].into_iter().enumerate() {
            let pass = &c[pass];
            e.fake.pass.store(i + 1, Ordering::SeqCst);
            let drp = pass["digestReflectionPolicy"].as_str().unwrap();
            p.spec.digest_reflection_policy = match drp {
                "" => None,
                s => Some(serde_json::from_value(json!(s)).unwrap()),
            };
            // Upstream's fake client sets interval=10m on every case; the CRD accepts it only with
            // Always (CEL), so it is set only there.
            p.spec.interval = (drp == "Always").then(|| "10m".to_string());
            if let Some(range) = pass["semverRange"].as_str() {
                p.spec.policy.semver.as_mut().unwrap().range = range.to_string();
            }
            let res = e.reconcile(&mut p).await;
            let exp = &pass["expected"];
            let requeue = match &exp["requeueAfter"] {
                Value::String(s) => api::duration::parse_go_duration(s).unwrap(),
                _ => Duration::ZERO,
            };
            assert_eq!(res, Ok(ReconcileResult::after(requeue)), "{n} {pass}");
            let l = latest(&p).unwrap();
            assert_eq!(l.digest, exp["latestRef.digest"], "{n} {pass}");
            let prev = &p.status.as_ref().unwrap().observed_previous_ref;
            let want: Option<ImageRef> = if exp["observedPreviousRef"].is_null() {
                None
            } else {
                let mut v = exp["observedPreviousRef"].clone();
                v["name"] = json!(IMAGE);
                Some(serde_json::from_value(v).unwrap())
            };
            assert_eq!(prev, &want, "{n} {pass}");
            assert!(conditions::is_ready(conds(&p)), "{n} {pass}");
            assert_eq!(
                conditions::message(conds(&p), READY),
                ready_message(p.status.as_ref().unwrap()),
                "{n} {pass}"
            );
        }
    }
}

#[tokio::test]
async fn status_cases() {
    for c in cases("controller.ImagePolicy.status") {
        let n = name(&c);
        let mut opts = options();
        if c["name"]
            .as_str()
            .unwrap()
            .contains("ObjectLevelWorkloadIdentity enabled")
        {
            opts.object_level_workload_identity = true;
        }
        let e = env(opts);
        let mut extra = json!({});
        let repo_spec = &c["imageRepository"];
        for k in ["provider", "serviceAccountName", "suspend"] {
            if !repo_spec[k].is_null() {
                extra[k] = repo_spec[k].clone();
            }
        }
        let image = repo_spec["image"].as_str().unwrap_or(IMAGE);
        e.add_repo("default", "repo", image, extra);
        let choice = match &c["policy"] {
            Value::Null => json!({"alphabetical": {}}),
            v => v.clone(),
        };
        let mut p = policy("default", json!({"name": "repo"}), &choice, c.get("filter"));
        match c["name"].as_str().unwrap() {
            "interval not configured with Always" => {
                p.spec.digest_reflection_policy = Some(ReflectionPolicy::Always);
                let res = e.reconcile(&mut p).await;
                assert_eq!(res, Ok(ReconcileResult::default()), "{n}");
                check_expected(&c, &p, &strip(&c["expected"], &["error", "result"]));
            }
            "repo has no tags -> DependencyNotReady"
            | "repo image invalid -> policy Stalled ImageURLInvalid"
            | "ObjectLevelWorkloadIdentity disabled: policy stalled"
            | "ObjectLevelWorkloadIdentity enabled: policy DependencyNotReady (repo never scanned)" =>
            {
                let res = e.reconcile(&mut p).await;
                assert!(res.is_ok(), "{n}: {res:?}");
                check_expected(&c, &p, &c["expected"]);
            }
            "repo revision lifecycle" => {
                let tags = ["6.8.0", "6.7.1", "6.7.0", "6.6.0"];
                e.scan("default", "repo", &tags);
                let _ = e.reconcile(&mut p).await;
                assert_eq!(latest(&p).unwrap().tag, c["expected"]["initialTag"], "{n}");
                let ready_at = conditions::get(conds(&p), READY).cloned();
                // The same revision again (a rescan after the reconcile annotation): nothing moves.
                e.scan("default", "repo", &tags);
                let _ = e.reconcile(&mut p).await;
                assert_eq!(latest(&p).unwrap().tag, "6.7.1", "{n}");
                assert_eq!(conditions::get(conds(&p), READY).cloned(), ready_at, "{n}");
                // The exclusion list drops 6.7.1: a new revision, and the policy follows it.
                e.scan("default", "repo", &["6.8.0", "6.7.0", "6.6.0"]);
                let _ = e.reconcile(&mut p).await;
                assert_eq!(latest(&p).unwrap().tag, "6.7.0", "{n}");
            }
            "ImagePolicy: reconcile annotation sets lastHandledReconcileAt" => {
                e.scan("default", "repo", &["1.0.0"]);
                p.metadata.annotations =
                    Some(serde_json::from_value(c["annotation"].clone()).unwrap());
                let _ = e.reconcile(&mut p).await;
                check_expected(&c, &p, &c["expected"]);
            }
            "digestReflectionPolicy Always + interval sets digest; default Never leaves it empty" =>
            {
                e.scan("default", "repo", &["a", "b"]);
                e.fake.pass.store(1, Ordering::SeqCst);
                for case in c["policies"].as_array().unwrap() {
                    let mut p = policy("default", json!({"name": "repo"}), &case["policy"], None);
                    if let Some(d) = case["digestReflectionPolicy"].as_str() {
                        p.spec.digest_reflection_policy =
                            Some(serde_json::from_value(json!(d)).unwrap());
                        p.spec.interval = case["interval"].as_str().map(str::to_string);
                    }
                    let res = e.reconcile(&mut p).await;
                    let exp = &case["expected"];
                    assert!(conditions::is_ready(conds(&p)), "{n}");
                    let digest = &latest(&p).unwrap().digest;
                    if exp["latestRef.digestNonEmpty"] == true {
                        assert_eq!(digest, "D1(b)", "{n}");
                        assert_eq!(res, Ok(ReconcileResult::after(Duration::from_secs(60))));
                    } else {
                        assert_eq!(digest, "", "{n}");
                        assert_eq!(res, Ok(ReconcileResult::default()));
                    }
                }
            }
            // Plumbing (suspend is handled before the reconciler runs) and watch behaviour: covered
            // by the runtime's tests, `controller::tests` and the e2e tests.
            "suspended policy: finalizer added, status untouched"
            | "repo becomes Stalled: policy not re-triggered" => {}
            other => panic!("unhandled status case {other}"),
        }
    }
}

fn strip(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    v
}

#[tokio::test]
async fn tags_of_another_revision_are_never_used() {
    let e = env(options());
    e.add_repo("default", "repo", IMAGE, json!({}));
    e.scan("default", "repo", &["1.0.0", "1.0.1"]);
    let mut p = repo_policy(json!({"semver": {"range": "1.0.x"}}));
    e.reconcile(&mut p).await.unwrap();
    assert_eq!(latest(&p).unwrap().tag, "1.0.1");

    // A stale store (e.g. a replica that led earlier) holds an older list than the status reports.
    let repo = e.repo("default", "repo");
    e.store
        .set_tags(&RepoKey::new("default", "repo"), &["1.0.0".to_string()])
        .unwrap();
    let res = e.reconcile(&mut p).await;
    assert_eq!(res, Ok(ReconcileResult::after(REQUEUE_DEPENDENCY)));
    let cs = conds(&p);
    assert_eq!(conditions::reason(cs, READY), DEPENDENCY_NOT_READY_REASON);
    assert!(
        conditions::message(cs, READY).starts_with("retrying in 30s error: stored tags of ImageRepository 'default/repo' have revision sha256:"),
        "{cs:?}"
    );
    assert_eq!(
        latest(&p).unwrap().tag,
        "1.0.1",
        "latestRef never moves backwards"
    );

    // An empty store (wiped volume) is the same.
    e.store.delete(&RepoKey::new("default", "repo")).unwrap();
    let _ = e.reconcile(&mut p).await;
    assert_eq!(
        conditions::message(conds(&p), READY),
        "retrying in 30s error: no tags in database"
    );
    assert_eq!(latest(&p).unwrap().tag, "1.0.1");

    // The rescan restores the status revision: Ready again.
    e.put_repo(repo);
    e.scan("default", "repo", &["1.0.0", "1.0.1"]);
    e.reconcile(&mut p).await.unwrap();
    assert!(conditions::is_ready(conds(&p)));

    // A new image that has not been scanned yet: the old image's tags are not used.
    let mut repo = e.repo("default", "repo");
    repo.spec.image = "registry.example.com/other".into();
    e.put_repo(repo);
    let _ = e.reconcile(&mut p).await;
    assert_eq!(
        conditions::message(conds(&p), READY),
        "retrying in 30s error: the ImageRepository has not scanned 'registry.example.com/other' yet (last scanned: 'registry.example.com/foo/bar')"
    );
}

#[tokio::test]
async fn bad_input_gives_clear_conditions() {
    let e = env(options());
    e.add_repo("default", "repo", IMAGE, json!({}));
    e.scan("default", "repo", &["latest", "1", "2"]);
    let run = |choice: Value, filter: Option<Value>| {
        let e = &e;
        async move {
            let mut p = policy("default", json!({"name": "repo"}), &choice, filter.as_ref());
            let res = e.reconcile(&mut p).await;
            (res, p)
        }
    };

    let (res, p) = run(json!({"semver": {"range": "*-*"}}), None).await;
    assert_eq!(res, Ok(ReconcileResult::default()));
    assert!(conditions::is_stalled(conds(&p)));
    assert_eq!(
        conditions::reason(conds(&p), STALLED),
        INVALID_POLICY_REASON
    );
    assert!(
        conditions::message(conds(&p), READY).starts_with("invalid policy: improper constraint"),
        "{:?}",
        conds(&p)
    );

    let (res, p) = run(
        json!({"alphabetical": {}}),
        Some(json!({"pattern": "^(v", "extract": "$1"})),
    )
    .await;
    assert_eq!(res, Ok(ReconcileResult::default()));
    assert!(conditions::is_stalled(conds(&p)));
    assert!(
        conditions::message(conds(&p), STALLED)
            .starts_with("failed to filter tags: invalid regular expression pattern '^(v': "),
        "{:?}",
        conds(&p)
    );

    let (res, p) = run(json!({"numerical": {}}), None).await;
    let msg = "failed to parse invalid numeric value 'latest'";
    assert_eq!(res.as_ref().err().map(String::as_str), Some(msg));
    assert_eq!(conditions::reason(conds(&p), READY), FAILURE_REASON);
    assert_eq!(conditions::message(conds(&p), READY), msg);
    assert!(!conditions::is_stalled(conds(&p)), "retried, not stalled");
    assert_eq!(
        conditions::reason(conds(&p), RECONCILING),
        api::meta::PROGRESSING_WITH_RETRY_REASON
    );

    // The filter that excludes the non-numeric tag fixes it.
    let (res, p) = run(
        json!({"numerical": {}}),
        Some(json!({"pattern": "^[0-9]+$", "extract": ""})),
    )
    .await;
    assert_eq!(res, Ok(ReconcileResult::default()));
    assert_eq!(latest(&p).unwrap().tag, "2");

    // A filter that keeps nothing.
    let (res, p) = run(
        json!({"alphabetical": {}}),
        Some(json!({"pattern": "^nothing$", "extract": ""})),
    )
    .await;
    assert_eq!(
        res.as_ref().err().map(String::as_str),
        Some("version list argument cannot be empty")
    );
    assert_eq!(conditions::reason(conds(&p), READY), FAILURE_REASON);
}

#[tokio::test]
async fn digest_errors_fail_the_pass_and_keep_the_previous_ref() {
    let e = env(options());
    e.add_repo("default", "repo", IMAGE, json!({}));
    e.scan("default", "repo", &["1.0.0"]);
    let mut p = repo_policy(json!({"semver": {"range": "1.x"}}));
    p.spec.digest_reflection_policy = Some(ReflectionPolicy::IfNotPresent);
    e.fake.pass.store(1, Ordering::SeqCst);
    e.reconcile(&mut p).await.unwrap();
    assert_eq!(latest(&p).unwrap().digest, "D1(1.0.0)");
    assert_eq!(e.fake.digest_calls.load(Ordering::SeqCst), 1);
    e.reconcile(&mut p).await.unwrap();
    assert_eq!(
        e.fake.digest_calls.load(Ordering::SeqCst),
        1,
        "IfNotPresent looks up once"
    );

    e.scan("default", "repo", &["1.0.0", "1.0.1"]);
    *e.fake.digest_error.lock().unwrap() = Some("connection refused".into());
    let res = e.reconcile(&mut p).await;
    let want = format!("failed fetching digest of {IMAGE}:1.0.1: connection refused");
    assert_eq!(res.as_ref().err().map(String::as_str), Some(want.as_str()));
    let cs = conds(&p);
    assert_eq!(conditions::reason(cs, READY), api::meta::FAILED_REASON);
    assert_eq!(conditions::message(cs, READY), want);
    assert_eq!(latest(&p).unwrap().tag, "1.0.0");
}

#[tokio::test]
async fn events_and_v1beta1_fields_follow_the_latest_image() {
    let e = env(options());
    e.add_repo("default", "repo", IMAGE, json!({}));
    e.scan("default", "repo", &["5.0.0", "5.0.1"]);
    let mut p = repo_policy(json!({"semver": {"range": "5.0.x"}}));
    e.reconcile(&mut p).await.unwrap();
    let first = format!("Latest image tag for {IMAGE} resolved to 5.0.1");
    assert_eq!(e.events(), vec![format!("Normal Succeeded {first}")]);
    let st = p.status.as_ref().unwrap();
    assert_eq!(st.latest_image.as_deref(), Some(&*format!("{IMAGE}:5.0.1")));
    assert_eq!(st.observed_previous_image, None);
    assert_eq!(st.observed_generation, Some(1));
    assert!(!conditions::has(conds(&p), RECONCILING));
    assert_eq!(conditions::reason(conds(&p), READY), SUCCEEDED_REASON);

    // Nothing changed: a trace event with the Ready message.
    e.reconcile(&mut p).await.unwrap();
    assert_eq!(e.events(), vec![format!("Trace Succeeded {first}")]);

    // A new tag: a Normal event naming the new and the previous image.
    e.scan("default", "repo", &["5.0.0", "5.0.1", "5.0.3"]);
    e.reconcile(&mut p).await.unwrap();
    let second =
        format!("Latest image tag for {IMAGE} resolved to 5.0.3 (previously {IMAGE}:5.0.1)");
    assert_eq!(e.events(), vec![format!("Normal Succeeded {second}")]);
    let st = p.status.as_ref().unwrap();
    assert_eq!(st.latest_image.as_deref(), Some(&*format!("{IMAGE}:5.0.3")));
    assert_eq!(
        st.observed_previous_image.as_deref(),
        Some(&*format!("{IMAGE}:5.0.1"))
    );
    assert_eq!(conditions::message(conds(&p), READY), second);

    // A failure emits a warning with the Ready message.
    let mut p2 = policy(
        "default",
        json!({"name": "missing"}),
        &json!({"semver": {"range": "5.0.x"}}),
        None,
    );
    let _ = e.reconcile(&mut p2).await;
    let ev = e.events();
    assert_eq!(ev.len(), 1);
    assert!(
        ev[0].starts_with("Warning DependencyNotReady failed to get the referred ImageRepository")
    );
}

#[test]
fn duration_rounding_matches_go() {
    assert_eq!(
        round_to_second(Duration::from_millis(30_400)),
        Duration::from_secs(30)
    );
    assert_eq!(
        round_to_second(Duration::from_millis(1_500)),
        Duration::from_secs(2)
    );
    assert_eq!(
        format_go_duration(round_to_second(Duration::from_secs(90))),
        "1m30s"
    );
}

/// Every suite of the data file is run above, or named here with where it is covered instead.
#[test]
fn every_suite_is_accounted_for() {
    let run = [
        "controller.applyPolicy",
        "controller.ImagePolicy.calculateImageFromRepoTags",
        "controller.ImagePolicy.filterTags",
        "controller.ImagePolicy.accessImageRepo",
        "controller.ImagePolicy.crossNamespaceRefsDisallowed",
        "controller.ImagePolicy.getImageRepository",
        "controller.composeImagePolicyReadyMessage",
        "controller.ImagePolicy.digestReflection",
        "controller.ImagePolicy.status",
    ];
    let elsewhere = [
        // `notify_event` is shared with the ImageRepository reconciler and run there.
        "controller.notify",
        // The runtime's plumbing: a status patch of an object being deleted is not an error.
        "controller.ImagePolicy.deleteBeforeFinalizer",
        // Go context cancellation; the registry client bounds each lookup by the repository's timeout.
        "controller.ImagePolicy.fetchDigest",
    ];
    let all: Value = serde_json::from_str(CASES).unwrap();
    for c in all["cases"].as_array().unwrap() {
        let suite = c["suite"].as_str().unwrap();
        assert!(
            run.contains(&suite) || elsewhere.contains(&suite),
            "suite {suite} is not run"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// Whatever the user writes and the registry returns, a pass ends in a known condition, never a
    /// panic: Ready, or Ready=False with one of the spec's reasons and a non-empty message.
    #[test]
    fn any_spec_and_tags_end_in_a_known_condition(
        kind in 0u8..3,
        range in "[ 0-9xX*^~<>=!|,.v-]{0,12}",
        pattern in proptest::option::of("[a-z0-9.*+?()\\[\\]^$|\\\\-]{0,10}"),
        extract in "[$a-z0-9{}]{0,6}",
        tags in proptest::collection::vec("[a-zA-Z0-9._-]{1,12}", 0..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let e = env(options());
            e.add_repo("default", "repo", IMAGE, json!({}));
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            e.scan("default", "repo", &tags);
            let choice = match kind {
                0 => json!({"semver": {"range": range}}),
                1 => json!({"alphabetical": {"order": "desc"}}),
                _ => json!({"numerical": {}}),
            };
            let filter = pattern.map(|p| json!({"pattern": p, "extract": extract}));
            let mut p = policy("default", json!({"name": "repo"}), &choice, filter.as_ref());
            let res = e.reconcile(&mut p).await;
            let cs = conds(&p);
            if conditions::is_ready(cs) {
                assert!(res.is_ok());
                assert!(tags.contains(&latest(&p).unwrap().tag.as_str()));
            } else {
                let reason = conditions::reason(cs, READY);
                assert!(
                    [INVALID_POLICY_REASON, FAILURE_REASON, DEPENDENCY_NOT_READY_REASON].contains(&reason),
                    "{cs:?}"
                );
                assert!(!conditions::message(cs, READY).is_empty());
                assert!(latest(&p).is_none());
            }
        });
    }
}
