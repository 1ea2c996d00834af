//! The API as the node's pods see it: [`Cached`] wraps the agent's client, keeps a copy of every
//! ConfigMap, Secret and RuntimeClass it reads in the [`NodeStore`], and answers reads from that
//! copy when the server cannot be reached — at once, without waiting for a connection attempt to
//! time out, while the [`Link`] is known to be down. Writes, lists and watches go to the server
//! unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ledge_api::ApiError;
use ledge_controller::{BoxFuture, BoxStream, Client, Kind, WatchEvent};
use serde_json::Value;

use super::{NodeStore, keeps};

/// Whether the server was reachable at the last attempt. Starts down: an agent that has just
/// started has not reached anything yet, so its first reads come from the store.
#[derive(Default)]
pub struct Link {
    up: AtomicBool,
}

impl Link {
    /// Whether the last request reached the server.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Record that the server was (not) reached.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }

    /// Record the outcome of a request: any answer from the server (even an error status) means
    /// the link is up; 503 from the client means it could not get one.
    pub fn observe<T>(&self, result: &Result<T, ApiError>) {
        let up = match result {
            Ok(_) => true,
            Err(e) => !unreachable(e),
        };
        self.up.store(up, Ordering::Release);
    }
}

/// Whether an error means the server was not reached (the agent's client reports that as 503
/// `ServiceUnavailable`).
fn unreachable(e: &ApiError) -> bool {
    e.code == 503
}

/// The agent's client with the node store behind its reads.
pub struct Cached {
    inner: Arc<dyn Client>,
    store: Arc<NodeStore>,
    link: Arc<Link>,
}

impl Cached {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Client>, store: Arc<NodeStore>, link: Arc<Link>) -> Self {
        Self { inner, store, link }
    }

    async fn get_inner(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let kept = keeps(kind);
        if kept
            && !self.link.is_up()
            && let Some(obj) = self.store.get(kind, namespace, name)
        {
            return Ok(Some(obj));
        }
        let result = self.inner.get(kind, namespace, name).await;
        self.link.observe(&result);
        match result {
            Ok(Some(obj)) => {
                if kept {
                    self.store.put(kind, &obj);
                }
                Ok(Some(obj))
            }
            Ok(None) => {
                if kept {
                    self.store.remove(kind, namespace, name);
                }
                Ok(None)
            }
            Err(e) if kept && unreachable(&e) => match self.store.get(kind, namespace, name) {
                Some(obj) => Ok(Some(obj)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn observed<T>(&self, f: BoxFuture<'_, Result<T, ApiError>>) -> Result<T, ApiError> {
        let result = f.await;
        self.link.observe(&result);
        result
    }
}

impl Client for Cached {
    fn get<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(self.get_inner(kind, namespace, name))
    }

    fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        labels: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<Value>, String), ApiError>> {
        Box::pin(self.observed(self.inner.list(kind, namespace, labels)))
    }

    fn create<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(self.observed(self.inner.create(kind, namespace, obj)))
    }

    fn update<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(self.observed(self.inner.update(kind, namespace, obj)))
    }

    fn update_status<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(self.observed(self.inner.update_status(kind, namespace, obj)))
    }

    fn delete<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
        propagation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.observed(self.inner.delete(kind, namespace, name, propagation)))
    }

    fn bind<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(self.observed(self.inner.bind(namespace, pod, node)))
    }

    fn watch<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        resource_version: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<Result<WatchEvent, ApiError>>, ApiError>> {
        Box::pin(self.observed(self.inner.watch(kind, namespace, resource_version)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledge_controller::kinds::{CONFIG_MAP, POD};
    use ledge_controller::testing::FakeApi;
    use serde_json::json;

    #[tokio::test]
    async fn reads_fall_back_to_the_store_and_skip_the_server_while_it_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeStore::open(dir.path()).unwrap();
        // A server that holds one ConfigMap.
        let api = FakeApi::default();
        api.put(
            &CONFIG_MAP,
            Some("ns"),
            json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "v"}}),
        );
        let server = api.client();
        let link = Arc::new(Link::default());
        let c = Cached::new(server.clone(), store.clone(), link.clone());
        let cm = c
            .get(&CONFIG_MAP, Some("ns"), "cfg")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cm["data"]["k"], "v");
        assert!(link.is_up());

        server.fail(true);
        let again = c
            .get(&CONFIG_MAP, Some("ns"), "cfg")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again, cm,
            "the stored copy answers when the server does not"
        );
        assert!(!link.is_up());
        let asked = server.gets();
        c.get(&CONFIG_MAP, Some("ns"), "cfg")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(server.gets(), asked, "a known-down link is not waited on");
        // Kinds the store does not keep, and objects it never saw, are the server's errors.
        assert_eq!(c.get(&POD, Some("ns"), "p").await.unwrap_err().code, 503);
        assert_eq!(
            c.get(&CONFIG_MAP, Some("ns"), "never")
                .await
                .unwrap_err()
                .code,
            503
        );

        server.fail(false);
        assert!(
            c.get(&CONFIG_MAP, Some("ns"), "gone")
                .await
                .unwrap()
                .is_none()
        );
        assert!(link.is_up());
        assert!(
            c.get(&CONFIG_MAP, Some("ns"), "cfg")
                .await
                .unwrap()
                .is_some()
        );
    }
}
