//! Objects every Kubernetes cluster has from the start: the four system namespaces, the
//! `kubernetes` Service in `default`, the two system PriorityClasses — and ledge's own
//! RuntimeClasses, one per runtime (`wasm`, the default, and `process`).

use ledge_api::ApiError;
use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::admission::KUBERNETES_SERVICE_IP;
use crate::handlers::create_object;
use crate::state::ApiState;

async fn ensure(
    state: &ApiState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    let Some(res) = state
        .registry
        .all()
        .into_iter()
        .find(|r| r.def.group == group && r.def.plural == plural)
    else {
        return Err(ApiError::internal(format!("{plural} is not registered")));
    };
    // On a restart the objects exist already: creating them again would fail admission (the
    // `kubernetes` Service's ClusterIP is taken — by itself) rather than with AlreadyExists.
    let name = obj
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if state.cache.get(&res.def.key(ns, name)).is_some() {
        return Ok(());
    }
    match create_object(state, &res, ns, obj, false, None).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create what a fresh cluster must contain (idempotent).
pub async fn bootstrap(state: &ApiState, https_port: u16) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            state,
            "",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    ensure(
        state,
        "",
        "services",
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": KUBERNETES_SERVICE_IP, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": https_port}]},
        }),
    )
    .await?;
    for (name, value) in [
        ("system-node-critical", 2_000_001_000),
        ("system-cluster-critical", 2_000_000_000),
    ] {
        ensure(
            state,
            "scheduling.k8s.io",
            "priorityclasses",
            None,
            json!({"metadata": {"name": name}, "value": value, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority",
                   "description": "Used for system critical pods that must not be moved from their current node."}),
        )
        .await?;
    }
    // A RuntimeClass's handler names the runtime; nodes offering it carry the label
    // `node.ledge.dev/runtime.<handler>=true`, which the scheduler looks for.
    for runtime in ["wasm", "process"] {
        ensure(
            state,
            "node.k8s.io",
            "runtimeclasses",
            None,
            json!({"metadata": {"name": runtime, "labels": {"app.kubernetes.io/managed-by": "ledge"}},
                   "handler": runtime}),
        )
        .await?;
    }
    Ok(())
}
