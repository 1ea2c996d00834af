//! Test support: an in-memory API with etcd-like optimistic concurrency (a global revision that
//! becomes `resourceVersion`; updates carrying a stale one are refused with 409), enough for
//! code that gets, creates and updates objects. Each [`FakeClient`] shares the objects but has
//! its own failure switch (so a test can cut one caller off from the API) and counts its GETs.
//! Other crates' tests use it through the `testing` feature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ledge_api::{ApiError, GroupResource};
use serde_json::{Value, json};

use crate::client::{BoxFuture, BoxStream, Client, Kind, WatchEvent};

type Key = (&'static str, Option<String>, String);

#[derive(Default)]
struct Objects {
    revision: u64,
    items: HashMap<Key, Value>,
}

/// The shared objects behind every [`FakeClient`].
#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<Objects>>,
}

impl FakeApi {
    /// A new client over these objects, reachable until [`FakeClient::fail`] says otherwise.
    pub fn client(&self) -> Arc<FakeClient> {
        Arc::new(FakeClient {
            api: self.clone(),
            failing: AtomicBool::new(false),
            gets: AtomicUsize::new(0),
        })
    }

    /// One object, as stored.
    pub fn get(&self, kind: &Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.lock().items.get(&key(kind, namespace, name)).cloned()
    }

    /// Every object of a kind, in no particular order.
    pub fn all(&self, kind: &Kind) -> Vec<Value> {
        self.lock()
            .items
            .iter()
            .filter(|((plural, _, _), _)| *plural == kind.plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Store `obj` as is, bypassing concurrency checks (a write by someone outside the test's
    /// candidates).
    pub fn put(&self, kind: &Kind, namespace: Option<&str>, mut obj: Value) {
        let mut objects = self.lock();
        objects.revision += 1;
        obj["metadata"]["resourceVersion"] = json!(objects.revision.to_string());
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        objects.items.insert(key(kind, namespace, &name), obj);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(kind: &Kind, namespace: Option<&str>, name: &str) -> Key {
    (kind.plural, namespace.map(str::to_string), name.to_string())
}

fn gr(kind: &Kind) -> GroupResource<'static> {
    GroupResource {
        group: kind.group,
        resource: kind.plural,
    }
}

/// One caller's connection to a [`FakeApi`].
pub struct FakeClient {
    api: FakeApi,
    failing: AtomicBool,
    gets: AtomicUsize,
}

impl FakeClient {
    /// Make every call fail with 503 (`true`) or succeed again (`false`).
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many GETs reached this client (failed ones included).
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("injected failure"));
        }
        Ok(())
    }

    fn write(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        mut obj: Value,
        create: bool,
    ) -> Result<Value, ApiError> {
        self.check()?;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let k = key(kind, namespace, &name);
        let mut objects = self.api.lock();
        match (objects.items.get(&k), create) {
            (Some(_), true) => return Err(ApiError::already_exists(gr(kind), &name)),
            (None, false) => return Err(ApiError::not_found(gr(kind), &name)),
            (Some(old), false) => {
                let sent = obj["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if !sent.is_empty() && Some(sent) != old["metadata"]["resourceVersion"].as_str() {
                    return Err(ApiError::modified(gr(kind), &name));
                }
            }
            (None, true) => {}
        }
        objects.revision += 1;
        obj["metadata"]["resourceVersion"] = json!(objects.revision.to_string());
        objects.items.insert(k, obj.clone());
        Ok(obj)
    }
}

fn unsupported<T>() -> Result<T, ApiError> {
    Err(ApiError::new(
        405,
        "MethodNotAllowed",
        "not supported by the fake API",
    ))
}

impl Client for FakeClient {
    fn get<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            self.check()?;
            Ok(self.api.get(kind, namespace, name))
        })
    }

    fn list<'a>(
        &'a self,
        _kind: &'a Kind,
        _namespace: Option<&'a str>,
        _labels: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<Value>, String), ApiError>> {
        Box::pin(async { unsupported() })
    }

    fn create<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { self.write(kind, namespace, obj, true) })
    }

    fn update<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move { self.write(kind, namespace, obj, false) })
    }

    fn update_status<'a>(
        &'a self,
        _kind: &'a Kind,
        _namespace: Option<&'a str>,
        _obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async { unsupported() })
    }

    fn delete<'a>(
        &'a self,
        _kind: &'a Kind,
        _namespace: Option<&'a str>,
        _name: &'a str,
        _propagation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { unsupported() })
    }

    fn bind<'a>(
        &'a self,
        _namespace: &'a str,
        _pod: &'a str,
        _node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { unsupported() })
    }

    fn watch<'a>(
        &'a self,
        _kind: &'a Kind,
        _namespace: Option<&'a str>,
        _resource_version: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<Result<WatchEvent, ApiError>>, ApiError>> {
        Box::pin(async { unsupported() })
    }
}
