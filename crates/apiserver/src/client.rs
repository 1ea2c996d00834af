//! The in-process [`Client`] controllers in the server use: the same pipeline as HTTPS
//! requests (defaults, validation, admission, optimistic concurrency) and the same watch cache,
//! without serialising to JSON text and back.

use std::sync::Arc;

use futures_util::stream;
use ledge_api::selector::LabelSelector;
use ledge_api::{ApiError, GroupResource};
use ledge_controller::{BoxFuture, BoxStream, Client, Kind, WatchEvent};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::cache::{Change, ChangeKind, Subscription};
use crate::handlers::create_object;
use crate::handlers::delete::{DeleteOptions, delete_object};
use crate::handlers::write::{Part, Update, write_update};
use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

/// The field manager recorded for in-process controllers.
pub const MANAGER: &str = "ledge-controller-manager";

/// A [`Client`] served by this process.
#[derive(Clone)]
pub struct LocalClient {
    state: Arc<ApiState>,
}

impl LocalClient {
    /// A client over the server's state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }

    fn resource(&self, kind: &Kind) -> Result<Arc<Resource>, ApiError> {
        self.state
            .registry
            .get(kind.group, kind.version, kind.plural)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("the server does not serve {}", kind.plural),
                )
            })
    }

    async fn write(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        obj: Value,
        part: Part,
    ) -> Result<Value, ApiError> {
        let res = self.resource(kind)?;
        let name = object::name(&obj).to_string();
        let gr = GroupResource {
            group: &res.def.group,
            resource: &res.def.plural,
        };
        self.state
            .cache
            .wait_for(self.state.store.current_revision())
            .await;
        let old = self
            .state
            .cache
            .get(&res.def.key(namespace, &name))
            .ok_or_else(|| ApiError::not_found(gr, &name))?;
        if let Some(rv) = object::meta_str(&obj, "resourceVersion").filter(|s| !s.is_empty())
            && object::meta_str(&old, "resourceVersion") != Some(rv)
        {
            return Err(ApiError::modified(gr, &name));
        }
        let u = Update {
            res: &res,
            namespace,
            name: &name,
            part,
            dry_run: false,
            manager: Some(MANAGER),
        };
        write_update(&self.state, &u, &old, obj).await
    }
}

fn to_event(change: &Change) -> WatchEvent {
    let obj = change.object.clone();
    match change.kind {
        ChangeKind::Added => WatchEvent::Added(obj),
        ChangeKind::Modified => WatchEvent::Modified(obj),
        ChangeKind::Deleted => WatchEvent::Deleted(obj),
    }
}

impl Client for LocalClient {
    fn get<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let res = self.resource(kind)?;
            self.state
                .cache
                .wait_for(self.state.store.current_revision())
                .await;
            Ok(self
                .state
                .cache
                .get(&res.def.key(namespace, name))
                .map(|v| (*v).clone()))
        })
    }

    fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        labels: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<Value>, String), ApiError>> {
        Box::pin(async move {
            let res = self.resource(kind)?;
            let selector = match labels {
                Some(s) => Some(
                    LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
                ),
                None => None,
            };
            self.state
                .cache
                .wait_for(self.state.store.current_revision())
                .await;
            let snapshot = self
                .state
                .cache
                .list(&res.def.namespace_prefix(namespace), None);
            let items = snapshot
                .items
                .iter()
                .filter(|o| {
                    selector
                        .as_ref()
                        .is_none_or(|s| s.matches(&object::labels(o)))
                })
                .map(|o| (**o).clone())
                .collect();
            Ok((items, snapshot.revision.to_string()))
        })
    }

    fn create<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(async move {
            let res = self.resource(kind)?;
            create_object(&self.state, &res, namespace, obj, false, Some(MANAGER)).await
        })
    }

    fn update<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(self.write(kind, namespace, obj, Part::Main))
    }

    fn update_status<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>> {
        Box::pin(self.write(kind, namespace, obj, Part::Status))
    }

    fn delete<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
        propagation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let res = self.resource(kind)?;
            let opts = DeleteOptions {
                propagation: Some(propagation.unwrap_or("Background").to_string()),
                ..Default::default()
            };
            delete_object(&self.state, &res, namespace, name, &opts)
                .await
                .map(|_| ())
        })
    }

    fn bind<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let res = self.resource(&ledge_controller::kinds::POD)?;
            crate::handlers::bind_pod(&self.state, &res, namespace, pod, node).await
        })
    }

    fn watch<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        resource_version: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<Result<WatchEvent, ApiError>>, ApiError>> {
        Box::pin(async move {
            let res = self.resource(kind)?;
            let prefix = res.def.namespace_prefix(namespace);
            let (initial, sub): (Vec<WatchEvent>, Subscription) = if resource_version.is_empty()
                || resource_version == "0"
            {
                let (snap, sub) = self.state.cache.snapshot_and_subscribe(&prefix);
                (
                    snap.items
                        .iter()
                        .map(|o| WatchEvent::Added(o.clone()))
                        .collect(),
                    sub,
                )
            } else {
                let after: i64 = resource_version.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version {resource_version:?}"))
                })?;
                self.state.cache.wait_for(after).await;
                let sub = self
                    .state
                    .cache
                    .subscribe(&prefix, after)
                    .map_err(|e| match e {
                        crate::cache::CacheError::Expired { requested, oldest } => {
                            ApiError::expired(requested, oldest)
                        }
                    })?;
                (Vec::new(), sub)
            };
            let Subscription {
                replay,
                live,
                revision,
            } = sub;
            let mut first: Vec<Result<WatchEvent, ApiError>> =
                initial.into_iter().map(Ok).collect();
            let last = replay.last().map_or(revision, |c| c.revision);
            first.extend(replay.iter().map(|c| Ok(to_event(c))));
            let live_events = stream::unfold(
                (live, last, prefix, false),
                |(mut live, mut last, prefix, done)| async move {
                    if done {
                        return None;
                    }
                    loop {
                        match live.recv().await {
                            Ok(c) if c.revision > last && c.key.starts_with(&prefix) => {
                                last = c.revision;
                                return Some((Ok(to_event(&c)), (live, last, prefix, false)));
                            }
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return Some((
                                    Err(ApiError::expired(last, last)),
                                    (live, last, prefix, true),
                                ));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                },
            );
            let s: BoxStream<Result<WatchEvent, ApiError>> = Box::pin(
                futures_util::StreamExt::chain(stream::iter(first), live_events),
            );
            Ok(s)
        })
    }
}
