//! CRD establishment: every CRD in the cache is served by the registry (one resource per
//! served version) and gets the `Established`/`NamesAccepted` status; a deleted CRD stops
//! being served and its custom resources are deleted.

use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cache::{Change, ChangeKind};
use crate::handlers::system_update;
use crate::handlers::write::Part;
use crate::object;
use crate::registry::Resource;
use crate::registry::crd::{CLEANUP_FINALIZER, established_status, served_versions};
use crate::state::ApiState;

const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// Keep the registry in step with the stored CRDs.
pub async fn run(state: Arc<ApiState>, cancel: CancellationToken) {
    super::follow(
        state,
        cancel,
        async |state, change: Arc<Change>| {
            if change.key.starts_with(PREFIX) {
                handle(state, &change.kind, &change.object).await;
            }
        },
        async |state| {
            for crd in state.cache.list(PREFIX, None).items {
                handle(state, &ChangeKind::Modified, &crd).await;
            }
        },
    )
    .await;
}

async fn handle(state: &Arc<ApiState>, kind: &ChangeKind, crd: &Value) {
    let group = crd
        .at("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let plural = crd
        .at("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if *kind == ChangeKind::Deleted {
        state.registry.remove_custom(&group, &plural);
        return;
    }
    if object::is_deleting(crd) {
        state.registry.remove_custom(&group, &plural);
        remove_instances(state, crd, &group, &plural).await;
        return;
    }
    let served = served_versions(crd)
        .into_iter()
        .map(|v| Resource {
            def: v.def,
            strategy: Arc::new(v.strategy),
            custom: true,
        })
        .collect();
    state.registry.replace_custom(&group, &plural, served);
    let established = crd
        .at("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type") == Some(&json!("Established"))
                    && c.get("status") == Some(&json!("True"))
            })
        });
    if !established
        && let Some(res) = state
            .registry
            .by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
    {
        let name = object::name(crd).to_string();
        let result = system_update(state, &res, None, &name, Part::Status, |current| {
            let mut c = current.clone();
            c["status"] = established_status(current);
            Some(c)
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(crd = %name, error = %e, "could not mark CRD established");
        }
    }
}

/// Delete every custom resource of a terminating CRD, then drop its finalizer.
async fn remove_instances(state: &Arc<ApiState>, crd: &Value, group: &str, plural: &str) {
    let prefix = format!("/registry/{group}/{plural}/");
    for item in state.cache.list(&prefix, None).items {
        let key = item
            .at("/metadata/namespace")
            .and_then(Value::as_str)
            .map_or_else(
                || format!("{prefix}{}", object::name(&item)),
                |ns| format!("{prefix}{ns}/{}", object::name(&item)),
            );
        if let Some(rev) = object::resource_version(&item) {
            let _ = state.store.delete(&key, Some(rev)).await;
        }
    }
    if let Some(res) = state
        .registry
        .by_kind("apiextensions.k8s.io", "CustomResourceDefinition")
    {
        let name = object::name(crd).to_string();
        let _ = system_update(state, &res, None, &name, Part::Main, |current| {
            let mut c = current.clone();
            let fs: Vec<String> = object::finalizers(current)
                .into_iter()
                .filter(|f| f != CLEANUP_FINALIZER)
                .collect();
            c["metadata"]["finalizers"] = json!(fs);
            Some(c)
        })
        .await;
    }
}
