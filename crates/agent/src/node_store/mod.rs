//! The node store: everything the agent needs to run its node without the server — the Node's
//! identity, the pods bound to it, the ConfigMaps and Secrets those pods reference, the
//! RuntimeClasses — kept in `<data dir>/node-store/state.json` so that an agent started with the
//! server unreachable (even after a reboot that took every workload with it) starts its pods at
//! once ([`cached`] serves the stored copies while the link is down).
//!
//! # Guarantees
//! - Crash-safe: the file is replaced atomically (temp file, fsync, rename, fsync of the
//!   directory); a crash leaves the previous state or the new one, never a mix.
//! - Flash-friendly: a change only marks the store dirty; the flusher writes at most once per
//!   [`FLUSH_DELAY`], and only when a stored record really changed. Pods are stored without the
//!   fields that churn (`resourceVersion`, `managedFields`, the status beyond its phase), so the
//!   agent's own status writes never cause a disk write: an idle node writes nothing.
//! - Secrets are sealed with the node key ([`seal`]).
//!
//! What it is not: a second source of truth. The server wins whenever it can be reached; the
//! store is the last state the node saw.

pub mod cached;
pub mod seal;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ledge_controller::Kind;
use ledge_controller::kinds::{CONFIG_MAP, RUNTIME_CLASS, SECRET};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::files::{self, FileError};
use crate::pod::refs;
use crate::pod::spec::{PodSpec, str_at};
pub use cached::{Cached, Link};
use seal::{SealError, Sealer};

/// How long changes gather before they are written: long enough to batch a burst (a rollout
/// lands many pods at once), short enough that a pod which started is on disk before a crash
/// or power cut is likely to take it.
pub const FLUSH_DELAY: Duration = Duration::from_millis(100);
/// The on-disk format.
const FORMAT: u32 = 1;

/// Why the node store cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum NodeStoreError {
    /// Reading or writing its file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The node key is unusable.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The Node this store belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Its name.
    pub name: String,
    /// Its uid on the server (the Lease's owner).
    pub uid: String,
    /// Its InternalIP when it registered (pods' hostIP during an offline start).
    #[serde(default)]
    pub ip: Option<std::net::IpAddr>,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    format: u32,
    node: Option<NodeIdentity>,
    /// Pods by uid.
    pods: BTreeMap<String, Value>,
    /// ConfigMaps and RuntimeClasses by [`key`].
    objects: BTreeMap<String, Value>,
    /// Secrets by [`key`], sealed.
    secrets: BTreeMap<String, String>,
}

/// The node store. Cheap to share (`Arc`); every method is synchronous and quick (memory
/// only) but [`flush`](Self::flush).
pub struct NodeStore {
    path: PathBuf,
    sealer: Sealer,
    state: Mutex<State>,
    changed: Notify,
    dirty: std::sync::atomic::AtomicBool,
    flushes: AtomicU64,
}

/// The store key of an object: `<plural>/<namespace>/<name>` (no namespace part when
/// cluster-scoped).
fn key(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{}/{ns}/{name}", kind.plural),
        _ => format!("{}/{name}", kind.plural),
    }
}

/// Whether objects of `kind` are kept.
pub fn keeps(kind: &Kind) -> bool {
    [CONFIG_MAP, SECRET, RUNTIME_CLASS].contains(kind)
}

/// A pod as stored: without the fields that change with every status write.
pub fn pod_record(pod: &Value) -> Value {
    let mut p = pod.clone();
    if let Some(meta) = p.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    if let Some(obj) = p.as_object_mut() {
        let phase = obj.get("status").and_then(|s| s.get("phase")).cloned();
        match phase {
            Some(phase) => {
                obj.insert("status".into(), serde_json::json!({ "phase": phase }));
            }
            None => {
                obj.remove("status");
            }
        }
    }
    p
}

fn object_record(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    o
}

impl NodeStore {
    /// The store file of a data dir.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node-store").join("state.json")
    }

    /// Open the store of `data_dir` (empty if there is none yet). A file that cannot be read
    /// as a node store is moved aside (`state.json.corrupt`) with a warning: the server holds
    /// the truth, the node only loses its offline copy.
    ///
    /// # Errors
    /// An unusable node key or an unwritable data dir.
    pub fn open(data_dir: &Path) -> Result<Arc<Self>, NodeStoreError> {
        let path = Self::path(data_dir);
        let sealer = Sealer::open(&files::pki_dir(data_dir))?;
        if let Some(parent) = path.parent() {
            files::create_private_dir(parent)?;
        }
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(s) if s.format == FORMAT => s,
                other => {
                    let why = match other {
                        Ok(s) => format!("unknown format {}", s.format),
                        Err(e) => e.to_string(),
                    };
                    let aside = path.with_extension("json.corrupt");
                    let _ = std::fs::rename(&path, &aside);
                    tracing::warn!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        error = %why,
                        "the node store cannot be read; starting with an empty one"
                    );
                    State::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => {
                return Err(FileError {
                    action: "read",
                    path,
                    source,
                }
                .into());
            }
        };
        Ok(Arc::new(Self {
            path,
            sealer,
            state: Mutex::new(State {
                format: FORMAT,
                ..state
            }),
            changed: Notify::new(),
            dirty: false.into(),
            flushes: AtomicU64::new(0),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Apply `f`; mark the store dirty if it says something changed.
    fn change(&self, f: impl FnOnce(&mut State) -> bool) {
        let changed = f(&mut self.state());
        if changed {
            self.mark_dirty();
        }
    }

    /// The node this store was written for.
    pub fn node(&self) -> Option<NodeIdentity> {
        self.state().node.clone()
    }

    /// Record the node's identity.
    pub fn set_node(&self, node: NodeIdentity) {
        self.change(|s| {
            let changed = s.node.as_ref() != Some(&node);
            s.node = Some(node);
            changed
        });
    }

    /// Every stored pod.
    pub fn pods(&self) -> Vec<Value> {
        self.state().pods.values().cloned().collect()
    }

    /// Store (or refresh) a pod.
    pub fn put_pod(&self, pod: &Value) {
        let Some(uid) = str_at(pod, "/metadata/uid").filter(|u| !u.is_empty()) else {
            return;
        };
        let record = pod_record(pod);
        self.change(|s| s.pods.insert(uid.to_string(), record.clone()).as_ref() != Some(&record));
    }

    /// Forget a pod.
    pub fn remove_pod(&self, uid: &str) {
        self.change(|s| s.pods.remove(uid).is_some());
    }

    /// Make the stored pods exactly `pods` (after a full list from the server).
    pub fn replace_pods<'a>(&self, pods: impl IntoIterator<Item = &'a Value>) {
        let fresh: BTreeMap<String, Value> = pods
            .into_iter()
            .filter_map(|p| Some((str_at(p, "/metadata/uid")?.to_string(), pod_record(p))))
            .collect();
        self.change(|s| {
            let changed = s.pods != fresh;
            s.pods = fresh;
            changed
        });
    }

    /// Keep a copy of `obj` (a ConfigMap, Secret or RuntimeClass); other kinds are ignored.
    pub fn put(&self, kind: &Kind, obj: &Value) {
        if !keeps(kind) {
            return;
        }
        let name = str_at(obj, "/metadata/name").unwrap_or("");
        let k = key(kind, str_at(obj, "/metadata/namespace"), name);
        let record = object_record(obj);
        if *kind == SECRET {
            // Sealing draws a fresh nonce each time: compare the plain text first.
            if self
                .get(kind, str_at(obj, "/metadata/namespace"), name)
                .as_ref()
                == Some(&record)
            {
                return;
            }
            let sealed = match self.sealer.seal(record.to_string().as_bytes()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(secret = %k, error = %e, "cannot seal a secret; not kept offline");
                    return;
                }
            };
            self.change(|s| {
                s.secrets.insert(k, sealed);
                true
            });
        } else {
            self.change(|s| s.objects.insert(k, record.clone()).as_ref() != Some(&record));
        }
    }

    /// Forget an object (it was deleted on the server).
    pub fn remove(&self, kind: &Kind, namespace: Option<&str>, name: &str) {
        let k = key(kind, namespace, name);
        self.change(|s| s.objects.remove(&k).is_some() | s.secrets.remove(&k).is_some());
    }

    /// The stored copy of an object.
    pub fn get(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
        let k = key(kind, namespace, name);
        if *kind == SECRET {
            let sealed = self.state().secrets.get(&k).cloned()?;
            match self.sealer.open_sealed(&sealed) {
                Ok(plain) => serde_json::from_slice(&plain).ok(),
                Err(e) => {
                    tracing::warn!(secret = %k, error = %e, "a stored secret cannot be opened");
                    None
                }
            }
        } else {
            self.state().objects.get(&k).cloned()
        }
    }

    /// Drop ConfigMaps and Secrets no stored pod references any more.
    fn prune(state: &mut State) {
        let mut wanted = BTreeSet::new();
        for pod in state.pods.values() {
            let Ok(spec) = PodSpec::of(pod) else { continue };
            let ns = str_at(pod, "/metadata/namespace").unwrap_or("default");
            let (cms, secrets) = refs::names(&spec);
            wanted.extend(cms.iter().map(|n| key(&CONFIG_MAP, Some(ns), n)));
            wanted.extend(secrets.iter().map(|n| key(&SECRET, Some(ns), n)));
        }
        let cm_prefix = format!("{}/", CONFIG_MAP.plural);
        state
            .objects
            .retain(|k, _| !k.starts_with(&cm_prefix) || wanted.contains(k));
        state.secrets.retain(|k, _| wanted.contains(k));
    }

    /// Write the state now if it changed since the last write.
    ///
    /// # Errors
    /// The file cannot be written; the state stays dirty, to be written next time.
    pub fn flush(&self) -> Result<(), NodeStoreError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let bytes = {
            let mut s = self.state();
            Self::prune(&mut s);
            serde_json::to_vec(&*s).unwrap_or_default()
        };
        if let Err(e) = files::write_private(&self.path, &bytes) {
            self.dirty.store(true, Ordering::Release);
            return Err(e.into());
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many times the state was written (a gauge of disk wear).
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Write changes at most once per [`FLUSH_DELAY`] until `cancel`, then a last time.
    ///
    /// # Cancel safety
    /// Returns when `cancel` fires, after a final flush.
    pub async fn run_flusher(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = cancel.cancelled() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_DELAY) => {}
                _ = cancel.cancelled() => break,
            }
            self.flush_logged().await;
        }
        self.flush_logged().await;
    }

    async fn flush_logged(self: &Arc<Self>) {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the node store; will retry"),
            Err(e) => tracing::warn!(error = %e, "the node store writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, rv: &str, phase: &str) -> Value {
        json!({
            "metadata": {"name": format!("p-{uid}"), "namespace": "ns", "uid": uid,
                          "resourceVersion": rv, "managedFields": [{}]},
            "spec": {"containers": [{"name": "c", "image": "i",
                       "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "pw"}}]}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]},
        })
    }

    fn named(kind: &str, name: &str) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "namespace": "ns"}, "data": {"k": "v"}})
    }

    #[test]
    fn state_survives_a_restart_and_secrets_are_sealed_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path()).unwrap();
        store.set_node(NodeIdentity {
            name: "n".into(),
            uid: "node-uid".into(),
            ip: None,
        });
        store.put_pod(&pod("a", "5", "Running"));
        store.put(&CONFIG_MAP, &named("ConfigMap", "cfg"));
        let mut secret = named("Secret", "pw");
        secret["data"]["k"] = json!("hunter2");
        store.put(&SECRET, &secret);
        store.flush().unwrap();
        let text = std::fs::read_to_string(NodeStore::path(dir.path())).unwrap();
        assert!(text.contains("p-a") && text.contains("cfg"));
        assert!(!text.contains("hunter2"), "secrets are sealed: {text}");

        let again = NodeStore::open(dir.path()).unwrap();
        assert_eq!(again.node().unwrap().uid, "node-uid");
        let pods = again.pods();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0]["status"], json!({"phase": "Running"}));
        assert!(pods[0]["metadata"].get("resourceVersion").is_none());
        assert_eq!(
            again.get(&SECRET, Some("ns"), "pw").unwrap()["data"]["k"],
            "hunter2"
        );
        assert_eq!(
            again.get(&CONFIG_MAP, Some("ns"), "cfg").unwrap()["data"]["k"],
            "v"
        );
    }

    #[test]
    fn status_churn_does_not_dirty_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path()).unwrap();
        store.put_pod(&pod("a", "5", "Running"));
        store.flush().unwrap();
        assert_eq!(store.flushes(), 1);
        let mut newer = pod("a", "9", "Running");
        newer["status"]["conditions"][0]["status"] = json!("False");
        store.put_pod(&newer);
        store.put(&SECRET, &named("Secret", "pw"));
        store.flush().unwrap();
        store.put(&SECRET, &named("Secret", "pw"));
        store.flush().unwrap();
        assert_eq!(store.flushes(), 2, "only the new secret was written");
        store.put_pod(&pod("a", "10", "Succeeded"));
        store.flush().unwrap();
        assert_eq!(store.flushes(), 3, "a phase change is written");
    }

    #[test]
    fn objects_no_pod_references_are_pruned_with_their_pods() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path()).unwrap();
        store.put_pod(&pod("a", "1", "Running"));
        store.put(&CONFIG_MAP, &named("ConfigMap", "cfg"));
        store.put(&CONFIG_MAP, &named("ConfigMap", "other"));
        store.put(
            &RUNTIME_CLASS,
            &json!({"metadata": {"name": "wasm"}, "handler": "wasm"}),
        );
        store.flush().unwrap();
        assert!(store.get(&CONFIG_MAP, Some("ns"), "other").is_none());
        assert!(store.get(&CONFIG_MAP, Some("ns"), "cfg").is_some());
        store.replace_pods(std::iter::empty());
        store.flush().unwrap();
        assert!(store.get(&CONFIG_MAP, Some("ns"), "cfg").is_none());
        assert!(
            store.get(&RUNTIME_CLASS, None, "wasm").is_some(),
            "classes are kept"
        );
    }

    #[test]
    fn an_unreadable_store_is_moved_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = NodeStore::path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let store = NodeStore::open(dir.path()).unwrap();
        assert!(store.pods().is_empty());
        assert!(path.with_extension("json.corrupt").exists());
    }
}
