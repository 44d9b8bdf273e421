//! Wiring of the ImageUpdateAutomation controller: the reconciler, and the triggers that run an
//! automation as soon as a policy it may use has a new latest image (not at its next interval,
//! IAC#363) or its GitRepository's spec changes (`automation.md` §6.5).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api::git_repository::GitRepository;
use api::image_policy::ImagePolicy;
use api::image_update_automation::ImageUpdateAutomation;
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use runtime::app::Started;
use runtime::features::{
    GIT_ALL_BRANCH_REFERENCES, GIT_FORCE_PUSH_BRANCH, GIT_SHALLOW_CLONE,
    OBJECT_LEVEL_WORKLOAD_IDENTITY,
};
use runtime::flags::AutomationFlags;
use runtime::reconcile::{self, ControllerSpec, scoped_api, watcher_config};

use crate::cycle::Writers;
use crate::gitops::{GitCache, GitSettings};
use crate::reconciler::Automation;
use crate::source::ResolveOptions;

/// Controller name: events' reporting controller, field manager, lease prefix.
pub const CONTROLLER_NAME: &str = "image-automation-controller";

/// Runs the ImageUpdateAutomation controller until `started.shutdown` fires (once per
/// leadership term).
pub async fn controllers(
    started: Started,
    flags: Arc<AutomationFlags>,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let (ctx, shutdown) = (started.ctx, started.shutdown);
    let gates = flags.validate()?;
    install_cloud_auth(&flags, gates.enabled(OBJECT_LEVEL_WORKLOAD_IDENTITY));
    let cache = GitCache::new(
        &flags.git_cache_path,
        flags.git_cache_max_size,
        GitSettings {
            all_branch_refs: gates.enabled(GIT_ALL_BRANCH_REFERENCES),
            force_push_branch: gates.enabled(GIT_FORCE_PUSH_BRANCH),
            shallow: gates.enabled(GIT_SHALLOW_CLONE),
            ssh: git::SshOptions {
                kex_algos: flags.ssh_kex_algos.clone(),
                hostkey_algos: flags.ssh_hostkey_algos.clone(),
            },
        },
        ctx.metrics.clone(),
    )?;
    let automations = ControllerSpec::<ImageUpdateAutomation>::new(
        "imageupdateautomation",
        scoped_api(ctx.client.clone(), namespace.as_deref()),
        watcher_config(&flags.common.watch_label_selector),
        flags.common.concurrent,
    );
    let store = automations.store();
    let automations = automations
        .with_trigger(policy_trigger(
            ctx.client.clone(),
            namespace.as_deref(),
            store.clone(),
        ))
        .with_trigger(git_repository_trigger(
            ctx.client.clone(),
            namespace.as_deref(),
            store,
        ));
    let reconciler = Automation {
        client: ctx.client.clone(),
        manager: ctx.manager.clone(),
        recorder: ctx.recorder.clone(),
        opts: ResolveOptions {
            no_cross_namespace_refs: flags.common.no_cross_namespace_refs,
            object_level_workload_identity: gates.enabled(OBJECT_LEVEL_WORKLOAD_IDENTITY),
        },
        writers: Arc::new(Writers::new(Arc::new(cache))),
    };
    reconcile::run(automations, ctx, Arc::new(reconciler), shutdown).await;
    Ok(())
}

/// Installs the registry's process-wide cloud context for the Git providers (Azure): token cache
/// bounds and object-level workload identity from the flags. Once per process: a later leadership
/// term keeps the installed one (same flags).
fn install_cloud_auth(flags: &AutomationFlags, object_level_identity: bool) {
    let limits = registry::CacheLimits {
        max_entries: usize::try_from(flags.common.token_cache_max_size).unwrap_or(0),
        max_duration: Some(flags.common.token_cache_max_duration),
    };
    let object_level = registry::ObjectLevelIdentity {
        enabled: object_level_identity,
        default_service_account: Some(flags.common.default_service_account.clone())
            .filter(|s| !s.is_empty()),
    };
    let context = registry::AuthContext::new(registry::CloudEnv::from_env(), Default::default())
        .with_cache_limits(limits)
        .with_object_level_identity(object_level);
    if registry::AuthContext::install_global(context).is_err() {
        tracing::debug!("cloud credential context already installed");
    }
}

/// Whether `automation` may select a policy labelled `labels`: its selector matches them (an
/// unparsable selector counts as a match, so the run reports the error).
fn selects(automation: &ImageUpdateAutomation, labels: &BTreeMap<String, String>) -> bool {
    match &automation.spec.policy_selector {
        None => true,
        Some(sel) => Selector::try_from(sel.clone()).map_or(true, |s| s.matches(labels)),
    }
}

/// The automations of `namespace` in the cache whose selector matches `labels`.
fn automations_for(
    store: &Store<ImageUpdateAutomation>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<ObjectRef<ImageUpdateAutomation>> {
    store
        .state()
        .iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace) && selects(a, labels))
        .map(|a| ObjectRef::from_obj(a.as_ref()))
        .collect()
}

/// The object of an applied watch event; a deleted object is forgotten from `seen`, whose entries
/// would otherwise outlive it.
fn applied<K: ResourceExt, V>(
    event: watcher::Event<K>,
    seen: &mut HashMap<(String, String), V>,
) -> Option<K> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => Some(o),
        watcher::Event::Delete(o) => {
            seen.remove(&(o.namespace().unwrap_or_default(), o.name_any()));
            None
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// A policy whose `latestRef` changed (digest included) runs the automations of its namespace
/// that select it (Flux runs every automation of the namespace).
fn policy_trigger(
    client: kube::Client,
    namespace: Option<&str>,
    store: Store<ImageUpdateAutomation>,
) -> BoxStream<'static, ObjectRef<ImageUpdateAutomation>> {
    let api: Api<ImagePolicy> = scoped_api(client, namespace);
    let mut seen: HashMap<(String, String), Option<api::refs::ImageRef>> = HashMap::new();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|r| futures::future::ready(r.ok()))
        .flat_map(move |event| {
            let Some(p) = applied(event, &mut seen) else {
                return futures::stream::iter(Vec::new());
            };
            let key = (p.namespace().unwrap_or_default(), p.name_any());
            let latest = p.status.as_ref().and_then(|s| s.latest_ref.clone());
            let changed = latest.is_some() && seen.get(&key) != Some(&latest);
            seen.insert(key.clone(), latest);
            let targets = if changed {
                automations_for(&store, &key.0, p.labels())
            } else {
                Vec::new()
            };
            futures::stream::iter(targets)
        })
        .boxed()
}

/// A GitRepository whose generation changed runs the automations that reference it.
fn git_repository_trigger(
    client: kube::Client,
    namespace: Option<&str>,
    store: Store<ImageUpdateAutomation>,
) -> BoxStream<'static, ObjectRef<ImageUpdateAutomation>> {
    let api: Api<GitRepository> = scoped_api(client, namespace);
    let mut seen: HashMap<(String, String), Option<i64>> = HashMap::new();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|r| futures::future::ready(r.ok()))
        .flat_map(move |event| {
            let Some(r) = applied(event, &mut seen) else {
                return futures::stream::iter(Vec::new());
            };
            let key = (r.namespace().unwrap_or_default(), r.name_any());
            let generation = r.metadata.generation;
            // Create events are ignored, as upstream: only a changed generation counts.
            let changed = matches!(seen.get(&key), Some(g) if *g != generation);
            seen.insert(key.clone(), generation);
            let targets: Vec<_> = if changed {
                store
                    .state()
                    .iter()
                    .filter(|a| {
                        let ns = a.namespace().unwrap_or_default();
                        let src = &a.spec.source_ref;
                        let src_ns = src
                            .namespace
                            .clone()
                            .filter(|n| !n.is_empty())
                            .unwrap_or(ns);
                        src_ns == key.0 && src.name == key.1
                    })
                    .map(|a| ObjectRef::from_obj(a.as_ref()))
                    .collect()
            } else {
                Vec::new()
            };
            futures::stream::iter(targets)
        })
        .boxed()
}
