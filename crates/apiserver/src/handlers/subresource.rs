//! Subresources: `status` and `scale` views of an object, pod `binding`, namespace
//! `finalize`, `eviction`; `log` streams from the pod's node through its agent's tunnel (`exec`
//! has its own module, as it upgrades the connection).

use http::{Response, StatusCode};
use ledge_api::Pointer as _;
use ledge_api::{ApiError, GroupResource, StatusCause, Subresource};
use serde_json::{Value, json};

use super::Ctx;
use super::read::respond_object;
use super::write::{
    MAX_RETRIES, Part, Update, field_manager, patch_part, store_error, system_update, update_part,
    write_update,
};
use crate::http::body;
use crate::http::body::Body;
use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

/// The `autoscaling/v1 Scale` view of an object.
pub(super) fn scale_of(res: &Resource, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let selector = obj
        .at("/spec/selector")
        .and_then(|s| ledge_api::selector::LabelSelector::from_json(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let _ = res;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"), "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.at("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.at("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

/// Apply a changed Scale back onto the object.
pub(super) fn apply_scale(res: &Resource, old: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale.at("/spec/replicas").cloned().unwrap_or(json!(0));
    if replicas.as_i64().is_none_or(|n| n < 0) {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            object::name(old),
            vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
                ),
                field: "spec.replicas".into(),
            }],
        ));
    }
    let _ = res;
    let mut new = old.clone();
    new["spec"]["replicas"] = replicas;
    Ok(new)
}

/// Subresource requests: status, scale, binding, finalize; log/exec answer that no agent serves them yet.
pub async fn subresource(
    ctx: Ctx,
    sub: Subresource,
    raw: bytes::Bytes,
) -> Result<Response<Body>, ApiError> {
    // fieldValidation (crate::fieldcheck) of status and scale writes.
    crate::fieldcheck::screened(ctx, raw, |ctx, raw| subresource_checked(ctx, sub, raw)).await
}

async fn subresource_checked(
    ctx: Ctx,
    sub: Subresource,
    raw: bytes::Bytes,
) -> Result<Response<Body>, ApiError> {
    use crate::http::request::Verb;
    match (sub, ctx.info.verb) {
        (Subresource::Status, Verb::Get) => super::read::get(ctx).await,
        (Subresource::Status, Verb::Update) => {
            let new = body::decode_object(&body::content_type(&ctx.headers), &raw)?;
            update_part(ctx, new, Part::Status).await
        }
        (Subresource::Status, Verb::Patch) => patch_part(ctx, raw, Some(Subresource::Status)).await,
        (Subresource::Scale, Verb::Get) => {
            let obj = ctx.current().await?;
            Ok(body::json_response(
                StatusCode::OK,
                &scale_of(&ctx.res, &obj),
            ))
        }
        (Subresource::Scale, Verb::Patch) => patch_part(ctx, raw, Some(Subresource::Scale)).await,
        (Subresource::Scale, Verb::Update) => {
            let scale = body::decode_object(&body::content_type(&ctx.headers), &raw)?;
            let manager = field_manager(&ctx);
            let u = Update {
                res: &ctx.res,
                namespace: ctx.namespace(),
                name: ctx.name(),
                part: Part::Main,
                dry_run: ctx.dry_run()?,
                manager: Some(&manager),
            };
            let old = ctx.current().await?;
            if let Some(rv) = scale
                .at("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                && old.at("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv)
            {
                return Err(ApiError::modified(ctx.gr(), ctx.name()));
            }
            let new = apply_scale(&ctx.res, &old, &scale)?;
            let obj = write_update(&ctx.state, &u, &old, new).await?;
            Ok(body::json_response(
                StatusCode::OK,
                &scale_of(&ctx.res, &obj),
            ))
        }
        (Subresource::Binding, Verb::Create) => {
            let binding = body::decode_object(&body::content_type(&ctx.headers), &raw)?;
            let node = binding
                .at("/target/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if node.is_empty() {
                return Err(ApiError::invalid(
                    "",
                    "Binding",
                    ctx.name(),
                    vec![StatusCause {
                        reason: "FieldValueRequired".into(),
                        message: "target.name: Required value".into(),
                        field: "target.name".into(),
                    }],
                ));
            }
            bind_pod(
                &ctx.state,
                &ctx.res,
                ctx.namespace().unwrap_or(""),
                ctx.name(),
                &node,
            )
            .await?;
            Ok(body::json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Subresource::Finalize, Verb::Update) => {
            let new = body::decode_object(&body::content_type(&ctx.headers), &raw)?;
            let finalizers = new.at("/spec/finalizers").cloned().unwrap_or(json!([]));
            let name = ctx.name().to_string();
            let obj = system_update(&ctx.state, &ctx.res, None, &name, Part::Main, |ns| {
                let mut n = ns.clone();
                n["spec"]["finalizers"] = finalizers.clone();
                Some(n)
            })
            .await?;
            let obj = match obj {
                Some(o) => o,
                None => (*ctx.current().await?).clone(),
            };
            Ok(respond_object(&ctx, StatusCode::OK, &obj))
        }
        (Subresource::Log, Verb::Get) => pod_log(&ctx).await,
        (Subresource::Log | Subresource::Exec, _) => Err(ApiError::method_not_allowed(
            ctx.info.verb.as_str(),
            ctx.gr(),
        )),
        (Subresource::Eviction, Verb::Create) => {
            super::delete::delete(ctx, bytes::Bytes::from_static(b"{}")).await
        }
        _ => Err(ApiError::method_not_allowed(
            ctx.info.verb.as_str(),
            ctx.gr(),
        )),
    }
}

/// The query parameters of `pods/log` the agent understands (`PodLogOptions`).
const LOG_OPTIONS: [&str; 7] = [
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
];

/// `GET pods/<name>/log`: pick the container as upstream does, then stream the log from the
/// pod's node through its agent's tunnel.
async fn pod_log(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let pod = ctx.current().await?;
    let name = ctx.name();
    let text = |p: &str| pod.at(p).and_then(Value::as_str).unwrap_or("");
    let node = text("/spec/nodeName");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let container = pick_container(&pod, ctx.query.get("container"), true)?;
    let mut path = format!(
        "/containerLogs/{}/{name}/{container}?podUID={}",
        text("/metadata/namespace"),
        text("/metadata/uid")
    );
    for key in LOG_OPTIONS {
        if let Some(v) = ctx.query.get(key) {
            path.push_str(&format!("&{key}={}", crate::http::query::encode(v)));
        }
    }
    let resp = ctx.state.tunnels.get(node, &path).await?;
    Ok(crate::tunnel::relay(resp))
}

/// Assign a pending pod to a node, as upstream's binding storage (`assignPod`) does: a guarded
/// write of the stored pod that sets `spec.nodeName` and `PodScheduled=True` and nothing else —
/// no defaulting, validation or managed-fields pass, which a binding cannot make necessary. A
/// pod already assigned, or being deleted, is a conflict. Shared by `pods/binding` and the
/// in-process scheduler's client.
pub async fn bind_pod(
    state: &ApiState,
    res: &Resource,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<(), ApiError> {
    let gr = GroupResource {
        group: "",
        resource: "pods",
    };
    let key = res.def.key(Some(namespace), name);
    for _ in 0..MAX_RETRIES {
        state.cache.wait_for(state.store.current_revision()).await;
        let Some(current) = state.cache.get(&key) else {
            return Err(ApiError::not_found(gr, name));
        };
        let bound = current
            .at("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bound.is_empty() {
            return Err(ApiError::conflict(
                gr,
                name,
                &format!("pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        if object::is_deleting(&current) {
            return Err(ApiError::conflict(
                gr,
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let rv = object::resource_version(&current).unwrap_or(0);
        let mut pod = (*current).clone();
        drop(current);
        pod["spec"]["nodeName"] = json!(node);
        mark_scheduled(&mut pod);
        match state
            .store
            .update(&key, object::encode_for_store(&pod).into(), rv)
            .await
        {
            Ok(_) => return Ok(()),
            Err(ledge_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(gr, name, e)),
        }
    }
    Err(ApiError::modified(gr, name))
}

/// Binding also records `PodScheduled=True`, replacing an earlier `Unschedulable`, as
/// upstream's binding storage does.
fn mark_scheduled(pod: &mut Value) {
    let now = ledge_api::time::format_time(chrono::Utc::now());
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    if let Some(list) = status["conditions"].as_array_mut() {
        list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        list.insert(0, cond);
    }
}

/// The container a log or exec request means: the one named, or the only one; else the
/// upstream error listing the choices. Logs may name init containers too.
pub(crate) fn pick_container(
    pod: &Value,
    asked: Option<&str>,
    with_init: bool,
) -> Result<String, ApiError> {
    let name = pod
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let list = |p: &str| -> Vec<&str> {
        pod.at(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect()
    };
    let main = list("/spec/containers");
    let mut all = main.clone();
    if with_init {
        all.extend(list("/spec/initContainers"));
    }
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if all.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if main.len() == 1 => Ok(main[0].to_string()),
        None => {
            let init = list("/spec/initContainers");
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                main.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}
