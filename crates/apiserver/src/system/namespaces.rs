//! Namespace lifecycle: a deleting namespace has its contents deleted, then its `kubernetes`
//! finalizer removed, which lets the object go. Every live namespace gets a `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap, as upstream controllers provide.

use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cache::{Change, ChangeKind};
use crate::handlers::delete::{DeleteOptions, delete_object};
use crate::handlers::write::Part;
use crate::handlers::{create_object, system_update};
use crate::object;
use crate::state::ApiState;

const PREFIX: &str = "/registry/core/namespaces/";

/// Run the namespace loop until shutdown.
pub async fn run(state: Arc<ApiState>, cancel: CancellationToken) {
    super::follow(
        state,
        cancel,
        async |state, change: Arc<Change>| {
            if change.key.starts_with(PREFIX) {
                if change.kind != ChangeKind::Deleted {
                    reconcile(state, &change.object).await;
                }
            } else if change.kind == ChangeKind::Deleted
                && let Some(ns) = object::namespace(&change.object)
                && let Some(namespace) = state.cache.get(&format!("{PREFIX}{ns}"))
                && object::is_deleting(&namespace)
            {
                // Something inside a terminating namespace went away: maybe it is empty now.
                reconcile(state, &namespace).await;
            } else if is_namespace_default(&change.key)
                && let Some(ns) = object::namespace(&change.object)
                && let Some(namespace) = state.cache.get(&format!("{PREFIX}{ns}"))
            {
                // A namespace default was changed or removed: put it back.
                reconcile(state, &namespace).await;
            }
        },
        async |state| {
            for ns in state.cache.list(PREFIX, None).items {
                reconcile(state, &ns).await;
            }
        },
    )
    .await;
}

/// Whether a key is one of the objects every namespace gets (`default` SA, `kube-root-ca.crt`).
fn is_namespace_default(key: &str) -> bool {
    (key.starts_with("/registry/core/serviceaccounts/") && key.ends_with("/default"))
        || (key.starts_with("/registry/core/configmaps/") && key.ends_with("/kube-root-ca.crt"))
}

async fn reconcile(state: &Arc<ApiState>, ns: &Value) {
    let name = object::name(ns).to_string();
    if object::is_deleting(ns) {
        finalize(state, &name).await;
    } else {
        ensure_defaults(state, &name).await;
    }
}

async fn ensure_defaults(state: &Arc<ApiState>, ns: &str) {
    let wanted = [
        (
            "serviceaccounts",
            "default",
            json!({"metadata": {"name": "default"}}),
        ),
        (
            "configmaps",
            "kube-root-ca.crt",
            json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": state.ca_pem}}),
        ),
    ];
    for (plural, name, obj) in wanted {
        if state
            .cache
            .get(&format!("/registry/core/{plural}/{ns}/{name}"))
            .is_some()
        {
            continue;
        }
        let Some(res) = state.registry.get("", "v1", plural) else {
            continue;
        };
        match create_object(state, &res, Some(ns), obj, false, None).await {
            Ok(_) => {}
            Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => {}
            Err(e) => {
                tracing::warn!(namespace = ns, object = name, error = %e, "could not create namespace default")
            }
        }
    }
}

/// Delete everything in a terminating namespace; when nothing is left, release it.
async fn finalize(state: &Arc<ApiState>, ns: &str) {
    let mut remaining = 0;
    for res in state
        .registry
        .all()
        .into_iter()
        .filter(|r| r.def.namespaced)
    {
        let prefix = res.def.namespace_prefix(Some(ns));
        for item in state.cache.list(&prefix, None).items {
            remaining += 1;
            if object::is_deleting(&item) {
                continue;
            }
            let opts = DeleteOptions {
                propagation: Some("Background".into()),
                ..Default::default()
            };
            match delete_object(state, &res, Some(ns), object::name(&item), &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(namespace = ns, error = %e, "could not delete namespace content")
                }
            }
        }
    }
    if remaining > 0 {
        // Deletions in flight: we run again as each DELETED event arrives.
        let still = state
            .registry
            .all()
            .into_iter()
            .filter(|r| r.def.namespaced)
            .any(|r| {
                !state
                    .cache
                    .list(&r.def.namespace_prefix(Some(ns)), None)
                    .items
                    .is_empty()
            });
        if still {
            return;
        }
    }
    let Some(res) = state.registry.get("", "v1", "namespaces") else {
        return;
    };
    let result = system_update(state, &res, None, ns, Part::Main, |current| {
        let fs = current
            .at("/spec/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if fs.is_empty() {
            return None;
        }
        let mut c = current.clone();
        c["spec"]["finalizers"] = json!(
            fs.into_iter()
                .filter(|f| f != "kubernetes")
                .collect::<Vec<_>>()
        );
        Some(c)
    })
    .await;
    match result {
        Ok(_) => {}
        Err(e) if e.code == 404 => {}
        Err(e) => tracing::warn!(namespace = ns, error = %e, "could not finalize namespace"),
    }
}
