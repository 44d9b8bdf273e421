//! Reconcile plumbing shared by every Flux kind: the watch with Flux's predicates, the finalizer,
//! suspend, `reconcile.fluxcd.io/requestedAt` → `status.lastHandledReconcileAt`, status patches by
//! server-side apply, per-object exponential backoff, panic recovery and metrics.
//!
//! The flow for one object follows Flux's `Reconcile` skeleton (`reflector.md` §2.1):
//! deleting ⇒ [`Reconciler::cleanup`], then drop the finalizer; no finalizer ⇒ add it and go on;
//! suspended ⇒ log and stop; otherwise [`Reconciler::reconcile`] on a copy of the object whose
//! status it may change. Afterwards (in every branch but deletion) the annotation is copied to
//! `lastHandledReconcileAt`, `observedGeneration` is set when the object is Ready or Stalled, and
//! the status is applied if it changed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, ReconcileRequest, trigger_self};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, applier, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument;

use api::meta::{FINALIZER, RECONCILE_REQUEST_ANNOTATION};

use crate::conditions::{self, ReconcileResult};
use crate::events::EventRecorder;
use crate::metrics::{ControllerLabels, Metrics, ObjectLabels, Timer};
use crate::schema::{MAX_LEARNED_PER_WRITE, UndeclaredFields};
use crate::server::Health;
use crate::shutdown::Shutdown;

/// What the plumbing needs to know about a Flux kind's object and status.
pub trait FluxObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// `spec.suspend`.
    fn suspended(&self) -> bool;
    /// `status.conditions` (empty without a status).
    fn conditions(&self) -> &[Condition];
    /// `status.lastHandledReconcileAt`.
    fn last_handled_reconcile_at(&self) -> Option<&str>;
    /// Sets `status.lastHandledReconcileAt`, creating the status if needed.
    fn set_last_handled_reconcile_at(&mut self, value: String);
    /// Sets `status.observedGeneration`, creating the status if needed.
    fn set_observed_generation(&mut self, generation: i64);
    /// The status as JSON (`null` without one).
    fn status_json(&self) -> Value;
}

/// The value of `reconcile.fluxcd.io/requestedAt`, if set.
pub fn reconcile_request<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(RECONCILE_REQUEST_ANNOTATION))
        .map(String::as_str)
}

/// Flux's watch predicate `GenerationChanged OR ReconcileRequested`, as a hash: an event passes
/// when the generation or the request annotation differs from the last one seen (new objects
/// always pass).
pub fn flux_predicate<K: Resource>(obj: &K) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    reconcile_request(obj).hash(&mut h);
    Some(h.finish())
}

/// A kind's reconcile logic; the plumbing around it is [`run`].
pub trait Reconciler<K: FluxObject>: Send + Sync + 'static {
    /// Reconcile error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reconciles a live, unsuspended object carrying the finalizer. `obj` is a private copy;
    /// status changes made to it are applied afterwards.
    fn reconcile(
        &self,
        obj: &mut K,
    ) -> impl Future<Output = Result<ReconcileResult, Self::Error>> + Send;

    /// Releases what the object holds before its finalizer is removed.
    fn cleanup(&self, obj: &K) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The reconciler both binaries run until their kinds' reconcile logic lands: the plumbing alone
/// (finalizer, suspend, `lastHandledReconcileAt`), never any invented status.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlumbingOnly;

impl<K: FluxObject> Reconciler<K> for PlumbingOnly {
    type Error = std::convert::Infallible;

    async fn reconcile(&self, _obj: &mut K) -> Result<ReconcileResult, Self::Error> {
        Ok(ReconcileResult::default())
    }

    async fn cleanup(&self, _obj: &K) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// An API handle over one namespace, or all namespaces when `namespace` is `None`
/// (`--watch-all-namespaces`).
pub fn scoped_api<K>(client: kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Watch options for `--watch-label-selector` (empty: everything).
pub fn watcher_config(label_selector: &str) -> watcher::Config {
    let wc = watcher::Config::default();
    if label_selector.is_empty() {
        wc
    } else {
        wc.labels(label_selector)
    }
}

/// Per-object exponential failure backoff (controller-runtime's
/// `ItemExponentialFailureRateLimiter` with `--min-retry-delay` and `--max-retry-delay`).
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// A backoff from `min`, doubling per consecutive failure, capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The delay before the next retry of `key`, counting this failure.
    pub fn next_delay(&self, key: &str) -> Duration {
        let n = match self.failures.lock() {
            Ok(mut f) => {
                let n = f.entry(key.to_string()).or_insert(0);
                let cur = *n;
                *n = n.saturating_add(1);
                cur
            }
            Err(_) => 0,
        };
        let factor = 2f64.powi(n.min(62) as i32);
        let secs = (self.min.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// Forgets the failures of `key` (after a success).
    pub fn reset(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

/// Shared state of one controller process.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Controller name; also the field manager of every patch (`image-reflector-controller`).
    pub manager: String,
    /// Event recorder.
    pub recorder: Arc<EventRecorder>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub health: Arc<Health>,
    /// Retry backoff.
    pub backoff: Backoff,
    /// Status fields the server's CRDs do not declare, learned from rejected status writes.
    pub undeclared: UndeclaredFields,
}

/// Errors of the plumbing around a reconciler.
#[derive(Debug, thiserror::Error)]
pub enum Error<E: std::error::Error + 'static> {
    /// The kind's reconcile or cleanup failed.
    #[error(transparent)]
    Reconcile(E),
    /// A patch failed.
    #[error("{what} of {kind} '{object}' failed: {source}")]
    Patch {
        /// Which patch.
        what: &'static str,
        /// Kind.
        kind: String,
        /// `namespace/name`.
        object: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The reconciler panicked; the panic was contained.
    #[error("reconciler panicked: {0}")]
    Panic(String),
}

/// `namespace/name` of an object.
pub fn object_key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds `finalizers.fluxcd.io` with a JSON patch guarded by a `test` of the current list, so a
/// concurrent change is never overwritten.
pub async fn add_finalizer<K: FluxObject>(api: &Api<K>, obj: &K) -> Result<K, kube::Error> {
    let patch = match &obj.meta().finalizers {
        Some(list) if !list.is_empty() => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
        _ => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
    };
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
}

/// Removes `finalizers.fluxcd.io`, guarded by a `test` of its position.
pub async fn remove_finalizer<K: FluxObject>(api: &Api<K>, obj: &K) -> Result<(), kube::Error> {
    let Some(i) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .map_err(kube::Error::SerdeError)?;
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies `status` with server-side apply, field manager `manager`, forcing ownership.
pub async fn apply_status<K: FluxObject>(
    api: &Api<K>,
    obj: &K,
    status: &Value,
    manager: &str,
) -> Result<K, kube::Error> {
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": obj.name_any(), "namespace": obj.namespace()},
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
}

/// Flux's deferred status handling: record the handled request, stamp `observedGeneration`
/// when Ready or Stalled, and apply the status if it changed. Fields the server's CRD does not
/// declare are dropped (see [`crate::schema`]).
async fn finish_status<K: FluxObject>(
    api: &Api<K>,
    before: &Value,
    obj: &mut K,
    manager: &str,
    undeclared: &UndeclaredFields,
) -> Result<(), kube::Error> {
    if let Some(v) = reconcile_request(obj).map(str::to_string) {
        obj.set_last_handled_reconcile_at(v);
    }
    let conds = obj.conditions();
    if conditions::is_stalled(conds) || conditions::is_ready(conds) {
        let g = obj.meta().generation.unwrap_or(0);
        obj.set_observed_generation(g);
    }
    let kind = K::kind(&());
    let mut after = obj.status_json();
    let mut learned = 0;
    loop {
        undeclared.prune(&kind, &mut after);
        if &after == before || after.is_null() {
            return Ok(());
        }
        match apply_status(api, obj, &after, manager).await {
            Ok(_) => return Ok(()),
            // The object is gone or going; nothing to record.
            Err(kube::Error::Api(s))
                if s.code == 404 && obj.meta().deletion_timestamp.is_some() =>
            {
                return Ok(());
            }
            Err(e) if learned < MAX_LEARNED_PER_WRITE && undeclared.learn(&kind, &e) => {
                learned += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn patch_err<K: Resource<DynamicType = ()>, E: std::error::Error>(
    what: &'static str,
    obj: &K,
    source: kube::Error,
) -> Error<E> {
    Error::Patch {
        what,
        kind: K::kind(&()).into_owned(),
        object: object_key(obj),
        source: Box::new(source),
    }
}

/// One pass of the Flux skeleton for `obj` (see the module documentation).
pub async fn reconcile_object<K, R>(
    obj: Arc<K>,
    ctx: &Context,
    reconciler: &R,
) -> Result<ReconcileResult, Error<R::Error>>
where
    K: FluxObject,
    R: Reconciler<K>,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let labels = ObjectLabels {
        kind: K::kind(&()).into_owned(),
        name: obj.name_any(),
        namespace: obj.namespace().unwrap_or_default(),
    };
    let timer = Timer::start();

    if obj.meta().deletion_timestamp.is_some() {
        if has_finalizer(obj.as_ref()) {
            reconciler
                .cleanup(obj.as_ref())
                .await
                .map_err(Error::Reconcile)?;
            remove_finalizer(&api, obj.as_ref())
                .await
                .map_err(|e| patch_err("removing the finalizer", obj.as_ref(), e))?;
        }
        ctx.metrics.delete_object(&labels);
        return Ok(ReconcileResult::default());
    }

    // Flux adds the finalizer and requeues (a `--min-retry-delay` wait for every new object); the
    // patched object carries it, so the pass goes on with that object instead.
    let obj = if has_finalizer(obj.as_ref()) {
        obj
    } else {
        let patched = add_finalizer(&api, obj.as_ref())
            .await
            .map_err(|e| patch_err("adding the finalizer", obj.as_ref(), e))?;
        Arc::new(patched)
    };

    let before = obj.status_json();
    let mut work = (*obj).clone();
    let outcome = if work.suspended() {
        tracing::info!("reconciliation is suspended for this object");
        Ok(ReconcileResult::default())
    } else {
        reconciler
            .reconcile(&mut work)
            .await
            .map_err(Error::Reconcile)
    };
    let patched = finish_status(&api, &before, &mut work, &ctx.manager, &ctx.undeclared)
        .await
        .map_err(|e| patch_err("applying the status", obj.as_ref(), e));
    ctx.metrics.record_duration(&labels, timer.elapsed());
    let result = outcome?;
    patched?;
    Ok(result)
}

/// How one controller is set up.
pub struct ControllerSpec<K: FluxObject> {
    /// controller-runtime style name, e.g. `imagerepository` (metrics and logs).
    pub name: String,
    /// Where to watch (all namespaces or one).
    pub api: Api<K>,
    /// Watch options (label selector).
    pub watcher_config: watcher::Config,
    /// `--concurrent`.
    pub concurrency: u16,
    writer: reflector::store::Writer<K>,
    reader: Store<K>,
    triggers: Vec<BoxStream<'static, ObjectRef<K>>>,
}

impl<K: FluxObject> ControllerSpec<K> {
    /// A controller for `K` watching through `api`.
    pub fn new(name: &str, api: Api<K>, watcher_config: watcher::Config, concurrency: u16) -> Self {
        let writer = reflector::store::Writer::default();
        let reader = writer.as_reader();
        Self {
            name: name.to_string(),
            api,
            watcher_config,
            concurrency,
            writer,
            reader,
            triggers: Vec::new(),
        }
    }

    /// The cache of watched objects (for mapping other kinds' events to these objects).
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// Adds a stream of extra reconcile requests (e.g. from a watch on another kind).
    pub fn with_trigger(mut self, s: BoxStream<'static, ObjectRef<K>>) -> Self {
        self.triggers.push(s);
        self
    }
}

/// How long in-flight reconciles may run after shutdown (Flux's pods get 10s in total).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(7);

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs a controller until `shutdown`: watch with Flux's predicates, reconcile through
/// [`reconcile_object`], back off per object on failures.
pub async fn run<K, R>(
    spec: ControllerSpec<K>,
    ctx: Arc<Context>,
    reconciler: Arc<R>,
    shutdown: Shutdown,
) where
    K: FluxObject,
    R: Reconciler<K>,
{
    let ControllerSpec {
        name,
        api,
        watcher_config,
        concurrency,
        writer,
        reader,
        triggers,
    } = spec;
    let kind = K::kind(&()).into_owned();
    let group = K::group(&()).into_owned();
    let clabels = ControllerLabels {
        controller: name.clone(),
    };
    ctx.metrics
        .max_concurrent
        .get_or_create(&clabels)
        .set(i64::from(concurrency));
    ctx.health.add_controller();
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (reader, health, name) = (reader.clone(), ctx.health.clone(), name.clone());
        let synced = synced.clone();
        tokio::spawn(async move {
            // The store's readiness future wakes only its most recent poller (the applier polls
            // it too), so re-poll on a short timer rather than trusting a single wake-up.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), reader.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => {
                        tracing::info!(controller = %name, "cache synced, starting workers");
                        synced.store(true, std::sync::atomic::Ordering::SeqCst);
                        health.mark_synced();
                        return;
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
        });
    }

    let watch = reflector::reflector(writer, watcher(api, watcher_config).default_backoff())
        .applied_objects()
        .predicate_filter(flux_predicate::<K>, PredicateConfig::default());
    let mut queue: Vec<BoxStream<'static, Result<ReconcileRequest<K>, watcher::Error>>> =
        vec![trigger_self(watch, ()).boxed()];
    for t in triggers {
        queue.push(t.map(|r| Ok(ReconcileRequest::from(r))).boxed());
    }
    let queue = futures::stream::select_all(queue).take_until(shutdown.clone().wait());

    let reconcile_fn = {
        let (reconciler, name, kind, group) = (
            reconciler.clone(),
            name.clone(),
            kind.clone(),
            group.clone(),
        );
        move |obj: Arc<K>, ctx: Arc<Context>| -> BoxFut<Result<Action, Error<R::Error>>> {
            let (reconciler, name) = (reconciler.clone(), name.clone());
            let span = tracing::info_span!(
                "reconcile",
                controller = %name,
                controllerGroup = %group,
                controllerKind = %kind,
                name = %obj.name_any(),
                namespace = %obj.namespace().unwrap_or_default(),
                reconcileID = %crate::leader::random_hex(),
            );
            Box::pin(
                async move {
                    let clabels = ControllerLabels {
                        controller: name.clone(),
                    };
                    let workers = ctx.metrics.active_workers.get_or_create(&clabels).clone();
                    workers.inc();
                    let timer = Timer::start();
                    let key = object_key(obj.as_ref());
                    let res = AssertUnwindSafe(reconcile_object(obj, &ctx, reconciler.as_ref()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|p| Err(Error::Panic(panic_message(&p))));
                    workers.dec();
                    let (outcome, action) = match &res {
                        Ok(r) if r.requeue => {
                            ("requeue", Action::requeue(ctx.backoff.next_delay(&key)))
                        }
                        Ok(r) if !r.requeue_after.is_zero() => {
                            ctx.backoff.reset(&key);
                            ("requeue_after", Action::requeue(r.requeue_after))
                        }
                        Ok(_) => {
                            ctx.backoff.reset(&key);
                            ("success", Action::await_change())
                        }
                        Err(_) => ("error", Action::await_change()),
                    };
                    ctx.metrics.record_outcome(&name, outcome, timer.elapsed());
                    res.map(|_| action)
                }
                .instrument(span),
            )
        }
    };
    let error_policy = |obj: Arc<K>, err: &Error<R::Error>, ctx: Arc<Context>| {
        let delay = ctx.backoff.next_delay(&object_key(obj.as_ref()));
        tracing::error!(
            name = %obj.name_any(),
            namespace = %obj.namespace().unwrap_or_default(),
            error = %err,
            retry_in = ?delay,
            "Reconciler error"
        );
        Action::requeue(delay)
    };

    let config = kube::runtime::controller::Config::default().concurrency(concurrency);
    let drained = applier(
        reconcile_fn,
        error_policy,
        ctx.clone(),
        reader,
        queue,
        config,
    )
    .for_each(|res| {
        if let Err(e) = res {
            use kube::runtime::controller::Error as CE;
            match e {
                // Reconcile failures were logged by the error policy.
                CE::ReconcilerFailed(..) | CE::ObjectNotFound(_) => {}
                other => tracing::warn!(error = %other, "watch error; retrying with backoff"),
            }
        }
        futures::future::ready(())
    });
    // After shutdown the applier finishes the reconciles in flight and ends; it never ends while
    // its cache has not synced (e.g. API server unreachable), and then there is nothing to wait for.
    let stop = async {
        shutdown.clone().wait().await;
        if synced.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!(controller = %name, "reconciles still running after {SHUTDOWN_GRACE:?}; abandoning them");
        }
    };
    tokio::select! {
        () = drained => {}
        () = stop => {}
    }
    tracing::info!(controller = %name, "controller stopped");
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Probes the API server and records the result for `/readyz`: every 5s while it answers (3s
/// timeout), from 0.5s doubling to 10s while it does not.
pub async fn probe_api_server(client: kube::Client, health: Arc<Health>, shutdown: Shutdown) {
    let mut was_ok: Option<bool> = None;
    let mut fail_delay = Duration::from_millis(500);
    loop {
        let probe = tokio::time::timeout(Duration::from_secs(3), client.apiserver_version()).await;
        let ok = match probe {
            Ok(Ok(v)) => {
                if was_ok != Some(true) {
                    tracing::info!(version = %v.git_version, "connected to the Kubernetes API server");
                }
                true
            }
            Ok(Err(e)) => {
                if was_ok != Some(false) {
                    tracing::error!(error = %e, "Kubernetes API server unreachable; retrying with backoff");
                }
                false
            }
            Err(_) => {
                if was_ok != Some(false) {
                    tracing::error!(
                        "Kubernetes API server did not answer within 3s; retrying with backoff"
                    );
                }
                false
            }
        };
        health.set_connected(ok);
        was_ok = Some(ok);
        let sleep = if ok {
            fail_delay = Duration::from_millis(500);
            Duration::from_secs(5)
        } else {
            let d = fail_delay;
            fail_delay = (fail_delay * 2).min(Duration::from_secs(10));
            d
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
