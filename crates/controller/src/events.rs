//! Recording core/v1 Events about objects, as upstream's `record.EventRecorder` does: written in
//! the background (a reconcile never waits for or fails on an event), and a repeat of the same
//! event about the same object bumps `count` and `lastTimestamp` instead of adding an object
//! (the event correlator's de-duplication). `kubectl describe` lists them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::client::{Client, Kind};
use crate::kinds::EVENT;

/// Remembered events (for de-duplication) before the memory is cleared.
const REMEMBERED: usize = 4096;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Routine progress.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// What makes two events the same one (upstream's correlator key, minus the source).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Identity {
    involved_uid: String,
    kind_of_event: &'static str,
    reason: String,
    message: String,
}

/// An event about to be written.
struct Draft {
    namespace: String,
    involved_name: String,
    involved: Value,
    identity: Identity,
}

/// Writes Events on behalf of one component (e.g. `deployment-controller`).
#[derive(Clone)]
pub struct EventRecorder {
    client: Arc<dyn Client>,
    component: &'static str,
    /// Name of the Event written for each identity, to count repeats.
    seen: Arc<Mutex<HashMap<Identity, String>>>,
}

impl EventRecorder {
    /// A recorder signing events as `component`.
    pub fn new(client: Arc<dyn Client>, component: &'static str) -> Self {
        Self {
            client,
            component,
            seen: Arc::default(),
        }
    }

    /// Record a `Normal` event about `obj` (of `kind`).
    pub fn normal(&self, kind: &Kind, obj: &Value, reason: &str, message: impl Into<String>) {
        self.record(kind, obj, EventType::Normal, reason, message.into());
    }

    /// Record a `Warning` event about `obj` (of `kind`).
    pub fn warning(&self, kind: &Kind, obj: &Value, reason: &str, message: impl Into<String>) {
        self.record(kind, obj, EventType::Warning, reason, message.into());
    }

    /// Record an event in the background.
    pub fn record(
        &self,
        kind: &Kind,
        obj: &Value,
        kind_of_event: EventType,
        reason: &str,
        message: String,
    ) {
        let s = |p: &str| obj.at(p).and_then(Value::as_str).unwrap_or("").to_string();
        let (ns, name, uid) = (
            s("/metadata/namespace"),
            s("/metadata/name"),
            s("/metadata/uid"),
        );
        let involved = json!({
            "kind": kind.kind, "namespace": ns, "name": name, "uid": uid,
            "apiVersion": kind.api_version(), "resourceVersion": s("/metadata/resourceVersion"),
        });
        let draft = Draft {
            namespace: if ns.is_empty() { "default".into() } else { ns },
            involved_name: name,
            involved,
            identity: Identity {
                involved_uid: uid,
                kind_of_event: kind_of_event.as_str(),
                reason: reason.to_string(),
                message,
            },
        };
        let me = self.clone();
        tokio::spawn(async move { me.write(draft).await });
    }

    async fn write(&self, draft: Draft) {
        let now = now();
        let ns = draft.namespace.as_str();
        let known = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&draft.identity)
            .cloned();
        if let Some(event_name) = known
            && let Ok(Some(mut ev)) = self.client.get(&EVENT, Some(ns), &event_name).await
        {
            let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
            if let Some(m) = ev.as_object_mut() {
                m.insert("count".into(), json!(count + 1));
                m.insert("lastTimestamp".into(), json!(now));
            }
            match self.client.update(&EVENT, Some(ns), ev).await {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "could not update event; writing a new one"),
            }
        }
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let event_name = format!("{}.{nanos:x}", draft.involved_name);
        let id = &draft.identity;
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": draft.involved,
            "reason": id.reason, "message": id.message, "type": id.kind_of_event,
            "source": {"component": self.component},
            "reportingComponent": self.component, "reportingInstance": "",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        match self.client.create(&EVENT, Some(ns), ev).await {
            Ok(_) => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.len() >= REMEMBERED {
                    seen.clear();
                }
                seen.insert(draft.identity, event_name);
            }
            // A terminating namespace refuses new content; that is routine.
            Err(e) => tracing::debug!(error = %e, "could not record event"),
        }
    }
}

pub use ledge_api::time::now;
