//! Pod garbage collection (upstream `pkg/controller/podgc`): pods bound to a node that no
//! longer exists are deleted at once — nothing would ever stop them or confirm their end — and
//! so are terminating pods that were never scheduled.

use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cache::{Change, ChangeKind};
use crate::handlers::delete::{DeleteOptions, delete_object};
use crate::object;
use crate::state::ApiState;

const PODS: &str = "/registry/core/pods/";
const NODES: &str = "/registry/core/nodes/";

/// Run the pod garbage collector until shutdown.
pub async fn run(state: Arc<ApiState>, cancel: CancellationToken) {
    super::follow(
        state,
        cancel,
        async |state, change: Arc<Change>| {
            if change.key.starts_with(PODS) && change.kind != ChangeKind::Deleted {
                check(state, &change.object).await;
            } else if change.key.starts_with(NODES) && change.kind == ChangeKind::Deleted {
                let node = object::name(&change.object).to_string();
                for pod in state.cache.list(PODS, None).items {
                    if pod.at("/spec/nodeName").and_then(Value::as_str) == Some(node.as_str()) {
                        check(state, &pod).await;
                    }
                }
            }
        },
        async |state| {
            for pod in state.cache.list(PODS, None).items {
                check(state, &pod).await;
            }
        },
    )
    .await;
}

async fn check(state: &Arc<ApiState>, pod: &Value) {
    let node = pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let orphaned = !node.is_empty() && state.cache.get(&format!("{NODES}{node}")).is_none();
    let unscheduled_terminating = node.is_empty() && object::is_deleting(pod);
    if !(orphaned || unscheduled_terminating) {
        return;
    }
    let Some(res) = state.registry.get("", "v1", "pods") else {
        return;
    };
    let name = object::name(pod).to_string();
    let opts = DeleteOptions {
        grace_period: Some(0),
        uid: object::uid(pod).map(str::to_string),
        ..Default::default()
    };
    match delete_object(state, &res, object::namespace(pod), &name, &opts).await {
        Ok(_) => tracing::info!(pod = %name, node, "deleted a pod whose node is gone"),
        Err(e) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "pod garbage collection failed"),
    }
}
