//! Events like Flux's recorder (`fluxcd/pkg/runtime/events`): core/v1 Events (Flux's RBAC grants
//! only core `events` create/patch), repeated events counted by patching `count` and
//! `lastTimestamp` as client-go's recorder does, and, with `--events-addr`, the same event POSTed
//! to notification-controller as an `event.toolkit.fluxcd.io/v1beta1` Event. `Trace` events become
//! Kubernetes `Normal` events and are never forwarded.
//!
//! With [`EventRecorder::with_background_writes`] the core/v1 writes leave the reconcile: one task
//! writes them in order (as client-go's broadcaster does), so a reconcile never waits for an event's
//! API round trip. The queue is bounded; when it is full, publishing waits for room rather than
//! dropping the event, and [`EventRecorder::flush`] writes what is left at shutdown.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Annotation prefix whose object annotations travel with every event as metadata.
pub const EVENT_ANNOTATION_PREFIX: &str = "event.toolkit.fluxcd.io/";
/// How many distinct events the deduplication cache remembers (client-go's default).
pub const CACHE_SIZE: usize = 4096;
/// How many events may wait for the background writer (client-go's broadcaster queue length).
pub const QUEUE_SIZE: usize = 1000;

/// Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A normal event (severity `info`).
    Normal,
    /// A warning (severity `error`).
    Warning,
    /// A trace: recorded in Kubernetes as `Normal`, not forwarded to notification-controller.
    Trace,
}

impl EventType {
    /// The core/v1 Event `type`.
    pub fn kubernetes_type(self) -> &'static str {
        match self {
            EventType::Warning => "Warning",
            EventType::Normal | EventType::Trace => "Normal",
        }
    }

    /// Flux's severity for notification-controller.
    pub fn severity(self) -> &'static str {
        match self {
            EventType::Normal => "info",
            EventType::Warning => "error",
            EventType::Trace => "trace",
        }
    }
}

/// The JSON body notification-controller accepts (`event.toolkit.fluxcd.io/v1beta1` Event).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationEvent {
    /// The object the event is about.
    pub involved_object: ObjectReference,
    /// `info` or `error`.
    pub severity: String,
    /// RFC 3339 time, second precision.
    pub timestamp: Time,
    /// Human-readable message.
    pub message: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Object annotations with the `event.toolkit.fluxcd.io/` prefix, plus caller metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// The controller, e.g. `image-reflector-controller`.
    pub reporting_controller: String,
    /// This replica's hostname.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DedupKey {
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    type_: &'static str,
    reason: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Seen {
    name: String,
    count: i32,
}

/// A bounded map remembering the most recent events, evicting the oldest.
#[derive(Debug, Default)]
struct DedupCache {
    map: HashMap<DedupKey, Seen>,
    order: VecDeque<DedupKey>,
}

impl DedupCache {
    fn get(&self, k: &DedupKey) -> Option<Seen> {
        self.map.get(k).cloned()
    }

    fn put(&mut self, k: DedupKey, v: Seen) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > CACHE_SIZE {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// Records events for one controller.
pub struct EventRecorder {
    sink: Arc<KubeSink>,
    webhook: Option<reqwest::Url>,
    http: reqwest::Client,
    /// The background writer's queue; `None` writes in the caller (tests, and after [`EventRecorder::flush`]).
    queue: Mutex<Option<mpsc::Sender<Pending>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Writes and counts core/v1 Events.
struct KubeSink {
    client: kube::Client,
    controller: String,
    instance: String,
    cache: Mutex<DedupCache>,
}

/// A core/v1 Event waiting for the background writer, stamped when it was published.
struct Pending {
    target: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
    annotations: BTreeMap<String, String>,
    at: Timestamp,
}

/// Why the recorder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// `--events-addr` is not a URL.
    #[error("invalid --events-addr '{addr}': {reason}")]
    Url {
        /// The flag value.
        addr: String,
        /// The parse error.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the events HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("controller", &self.sink.controller)
            .field("instance", &self.sink.instance)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

impl EventRecorder {
    /// A recorder for `controller`; `events_addr` empty disables forwarding.
    pub fn new(
        client: kube::Client,
        controller: &str,
        events_addr: &str,
    ) -> Result<Self, RecorderError> {
        let webhook = if events_addr.is_empty() {
            None
        } else {
            Some(
                reqwest::Url::parse(events_addr).map_err(|e| RecorderError::Url {
                    addr: events_addr.to_string(),
                    reason: e.to_string(),
                })?,
            )
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let instance = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Ok(Self {
            sink: Arc::new(KubeSink {
                client,
                controller: controller.to_string(),
                instance,
                cache: Mutex::new(DedupCache::default()),
            }),
            webhook,
            http,
            queue: Mutex::new(None),
            writer: Mutex::new(None),
        })
    }

    /// Moves the core/v1 writes to a background task (started on the current Tokio runtime) with a
    /// queue of `capacity` events.
    pub fn with_background_writes(self, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(capacity.max(1));
        let sink = self.sink.clone();
        let writer = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                sink.write(&p).await;
            }
        });
        *lock(&self.queue) = Some(tx);
        *lock(&self.writer) = Some(writer);
        self
    }

    /// Closes the background queue and waits up to `timeout` for the queued events to be written;
    /// later events are written by their publisher. Logs how many were still queued on timeout.
    pub async fn flush(&self, timeout: Duration) {
        let queue = lock(&self.queue).take();
        let left = queue
            .as_ref()
            .map_or(0, |q| q.max_capacity() - q.capacity());
        drop(queue);
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer
            && tokio::time::timeout(timeout, writer).await.is_err()
        {
            tracing::error!(
                queued = left,
                "unable to record events: still writing the queued events after {timeout:?}"
            );
        }
    }

    /// Records an event about `obj`; see [`EventRecorder::publish`].
    pub async fn publish_for<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
        metadata: BTreeMap<String, String>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let mut reference = obj.object_ref(&());
        // Flux's references carry no field path.
        reference.field_path = None;
        self.publish(
            &reference,
            obj.annotations(),
            type_,
            reason,
            message,
            metadata,
        )
        .await;
    }

    /// Records an event: logs it, writes or bumps the core/v1 Event, and forwards it to
    /// notification-controller unless it is a trace. Failures are logged, never returned: an
    /// event must not fail a reconciliation.
    pub async fn publish(
        &self,
        target: &ObjectReference,
        object_annotations: &BTreeMap<String, String>,
        type_: EventType,
        reason: &str,
        message: &str,
        mut metadata: BTreeMap<String, String>,
    ) {
        for (k, v) in object_annotations {
            if k.starts_with(EVENT_ANNOTATION_PREFIX) {
                metadata.insert(k.clone(), v.clone());
            }
        }
        let name = target.name.as_deref().unwrap_or_default();
        let namespace = target.namespace.as_deref().unwrap_or_default();
        match type_ {
            EventType::Warning => {
                tracing::error!(name, namespace, reason, "{message}")
            }
            _ => tracing::info!(name, namespace, reason, "{message}"),
        }
        let pending = Pending {
            target: target.clone(),
            type_,
            reason: reason.to_string(),
            message: message.to_string(),
            annotations: metadata.clone(),
            at: now_seconds(),
        };
        let queue = lock(&self.queue).clone();
        match queue {
            Some(q) => match q.try_send(pending) {
                Ok(()) => {}
                // Wait for room rather than drop the event.
                Err(mpsc::error::TrySendError::Full(p)) => {
                    tracing::debug!(name, namespace, "event queue full; waiting for room");
                    if let Err(mpsc::error::SendError(p)) = q.send(p).await {
                        self.sink.write(&p).await;
                    }
                }
                // The writer is gone (it panicked): write here rather than lose the event.
                Err(mpsc::error::TrySendError::Closed(p)) => self.sink.write(&p).await,
            },
            None => self.sink.write(&pending).await,
        }
        if type_ == EventType::Trace {
            return;
        }
        if let Some(url) = &self.webhook {
            let ev = NotificationEvent {
                involved_object: target.clone(),
                severity: type_.severity().to_string(),
                timestamp: Time(now_seconds()),
                message: message.to_string(),
                reason: reason.to_string(),
                metadata,
                reporting_controller: self.sink.controller.clone(),
                reporting_instance: self.sink.instance.clone(),
            };
            if let Err(e) = validate_for_webhook(&ev) {
                tracing::error!(error = %e, "unable to record event");
                return;
            }
            let (http, url) = (self.http.clone(), url.clone());
            // Posting may retry for ~15s; never hold up the reconcile for it.
            tokio::spawn(async move {
                if let Err(e) = post_with_retry(&http, &url, &ev).await {
                    tracing::error!(error = %e, "unable to record event");
                }
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KubeSink {
    /// Writes `p`, logging a failure: an event must not fail a reconciliation.
    async fn write(&self, p: &Pending) {
        if let Err(e) = self.record(p).await {
            let name = p.target.name.as_deref().unwrap_or_default();
            let namespace = p.target.namespace.as_deref().unwrap_or_default();
            let reason = p.reason.as_str();
            tracing::error!(error = %e, name, namespace, reason, "unable to record event");
        }
    }

    async fn record(&self, p: &Pending) -> Result<(), kube::Error> {
        let Pending {
            target,
            type_,
            reason,
            message,
            annotations,
            at: now,
        } = p;
        let (type_, now) = (*type_, *now);
        let namespace = target
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let key = DedupKey {
            api_version: target.api_version.clone().unwrap_or_default(),
            kind: target.kind.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            name: target.name.clone().unwrap_or_default(),
            uid: target.uid.clone().unwrap_or_default(),
            type_: type_.kubernetes_type(),
            reason: reason.clone(),
            message: message.clone(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let seen = self.cache.lock().ok().and_then(|c| c.get(&key));
        if let Some(seen) = seen {
            let count = seen.count.saturating_add(1);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(now),
                "message": message,
            });
            match api
                .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    if let Ok(mut c) = self.cache.lock() {
                        c.put(
                            key,
                            Seen {
                                name: seen.name,
                                count,
                            },
                        );
                    }
                    return Ok(());
                }
                // Expired or deleted: fall through and create a fresh one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let obj_name = target.name.clone().unwrap_or_default();
        let event_name = format!("{obj_name}.{:x}", now_nanos());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name.clone()),
                namespace: Some(namespace),
                annotations: (!annotations.is_empty()).then(|| annotations.clone()),
                ..ObjectMeta::default()
            },
            involved_object: target.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(type_.kubernetes_type().to_string()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            source: Some(EventSource {
                component: Some(self.controller.clone()),
                host: None,
            }),
            reporting_component: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            event_time: None::<MicroTime>,
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        if let Ok(mut c) = self.cache.lock() {
            c.put(
                key,
                Seen {
                    name: event_name,
                    count: 1,
                },
            );
        }
        Ok(())
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Flux refuses to forward an event about an object without kind, name or namespace.
fn validate_for_webhook(ev: &NotificationEvent) -> Result<(), String> {
    let o = &ev.involved_object;
    for (what, v) in [
        ("kind", &o.kind),
        ("name", &o.name),
        ("namespace", &o.namespace),
    ] {
        if v.as_deref().unwrap_or_default().is_empty() {
            return Err(format!("failed to get object {what}"));
        }
    }
    Ok(())
}

/// POSTs with retries on connection errors and 5xx (4 retries, 1s doubling), 5s per attempt;
/// 429 means notification-controller already has this event and is not retried.
async fn post_with_retry(
    http: &reqwest::Client,
    url: &reqwest::Url,
    ev: &NotificationEvent,
) -> Result<(), String> {
    let mut wait = Duration::from_secs(1);
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        match http.post(url.clone()).json(ev).send().await {
            Ok(resp) => {
                let s = resp.status();
                if s.is_success() || s.as_u16() == 429 {
                    return Ok(());
                }
                last = format!("POST {url}: HTTP {s}");
                if !s.is_server_error() {
                    return Err(last);
                }
            }
            Err(e) => last = format!("POST {url}: {e}"),
        }
    }
    Err(format!("{last} (giving up after 5 attempts)"))
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
