//! Admission steps that need cluster state, run on create after validation: ClusterIP and
//! NodePort allocation for Services; priority and RuntimeClass resolution for Pods. Kept
//! apart from the per-kind strategies, which are pure.

use std::collections::HashSet;

use ledge_api::Pointer as _;
use ledge_api::{ApiError, StatusCause};
use serde_json::{Value, json};

use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

/// The service CIDR ledge allocates ClusterIPs from (K3s uses the same default).
pub const SERVICE_CIDR_PREFIX: [u8; 2] = [10, 43];

/// The IP of the `kubernetes` Service.
pub const KUBERNETES_SERVICE_IP: &str = "10.43.0.1";

/// Mutations on create that depend on other objects.
pub async fn on_create(state: &ApiState, res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    if res.def.group.is_empty() && res.def.plural == "services" {
        allocate_service(state, obj)?;
    }
    if res.def.group.is_empty() && res.def.plural == "pods" {
        resolve_priority(state, obj)?;
        resolve_runtime_class(state, obj)?;
    }
    Ok(())
}

/// Priority admission: a pod's `priorityClassName` (or the global default class) sets
/// `spec.priority` and `spec.preemptionPolicy` (upstream `plugin/pkg/admission/priority`).
fn resolve_priority(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    let name = pod
        .at("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let class = if name.is_empty() {
        state
            .cache
            .list("/registry/scheduling.k8s.io/priorityclasses/", None)
            .items
            .into_iter()
            .find(|c| c.get("globalDefault") == Some(&json!(true)))
    } else {
        let found = state.cache.get(&format!(
            "/registry/scheduling.k8s.io/priorityclasses/{name}"
        ));
        if found.is_none() {
            return Err(ApiError::forbidden(format!(
                "pods \"{}\" is forbidden: no PriorityClass with name {name} was found",
                object::name(pod)
            )));
        }
        found
    };
    let value = class
        .as_ref()
        .and_then(|c| c.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(given) = pod.at("/spec/priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(ApiError::forbidden(format!(
            "pods \"{}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name",
            object::name(pod)
        )));
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("priority".into(), json!(value));
        if let Some(c) = &class {
            if !name.is_empty() || c.get("globalDefault") == Some(&json!(true)) {
                spec.insert(
                    "priorityClassName".into(),
                    c.at("/metadata/name").cloned().unwrap_or(json!(name)),
                );
            }
            spec.insert(
                "preemptionPolicy".into(),
                c.get("preemptionPolicy")
                    .cloned()
                    .unwrap_or(json!("PreemptLowerPriority")),
            );
        } else {
            spec.entry("preemptionPolicy")
                .or_insert(json!("PreemptLowerPriority"));
        }
    }
    Ok(())
}

/// The RuntimeClass a pod without `runtimeClassName` gets, when that class exists: ledge runs
/// WebAssembly unless a pod asks for another runtime.
pub const DEFAULT_RUNTIME_CLASS: &str = "wasm";

/// RuntimeClass admission (upstream `plugin/pkg/admission/runtimeclass`): the class must exist;
/// its `overhead.podFixed` becomes `spec.overhead`; its `scheduling.nodeSelector` and
/// `scheduling.tolerations` are merged into the pod's, so the scheduler keeps the pod on nodes
/// that offer the runtime. A pod naming no class gets [`DEFAULT_RUNTIME_CLASS`] (a ledge
/// departure: upstream leaves it empty, meaning the node's default runtime).
fn resolve_runtime_class(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    let key = |name: &str| format!("/registry/node.k8s.io/runtimeclasses/{name}");
    let forbidden = |pod: &Value, why: String| {
        ApiError::forbidden(format!(
            "pods \"{}\" is forbidden: {why}",
            object::name(pod)
        ))
    };
    let named = pod
        .at("/spec/runtimeClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (name, class) = match named {
        Some(name) => {
            let Some(class) = state.cache.get(&key(&name)) else {
                return Err(forbidden(
                    pod,
                    format!("pod rejected: RuntimeClass \"{name}\" not found"),
                ));
            };
            (name, class)
        }
        None => match state.cache.get(&key(DEFAULT_RUNTIME_CLASS)) {
            Some(class) => (DEFAULT_RUNTIME_CLASS.to_string(), class),
            None => return Ok(()),
        },
    };
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Ok(());
    };
    let mut spec = spec.clone();
    spec.insert("runtimeClassName".into(), json!(name));
    match (class.at("/overhead/podFixed"), spec.get("overhead")) {
        (Some(fixed), Some(given)) if fixed != given => {
            return Err(forbidden(
                pod,
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(forbidden(
                pod,
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                    .into(),
            ));
        }
        (Some(fixed), _) => {
            spec.insert("overhead".into(), fixed.clone());
        }
        (None, None) => {}
    }
    if let Some(selector) = class
        .at("/scheduling/nodeSelector")
        .and_then(Value::as_object)
    {
        let merged = spec.entry("nodeSelector").or_insert_with(|| json!({}));
        if !merged.is_object() {
            *merged = json!({});
        }
        for (k, v) in selector {
            match merged.get(k) {
                Some(existing) if existing != v => {
                    let show = |v: &Value| v.as_str().unwrap_or_default().to_string();
                    return Err(forbidden(
                        pod,
                        format!(
                            "conflict: runtimeClass.scheduling.nodeSelector[{k}] = {}; pod.spec.nodeSelector[{k}] = {}",
                            show(v),
                            show(existing)
                        ),
                    ));
                }
                _ => {
                    merged[k] = v.clone();
                }
            }
        }
    }
    if let Some(tolerations) = class
        .at("/scheduling/tolerations")
        .and_then(Value::as_array)
    {
        let merged = spec.entry("tolerations").or_insert_with(|| json!([]));
        if let Some(list) = merged.as_array_mut() {
            for t in tolerations {
                if !list.contains(t) {
                    list.push(t.clone());
                }
            }
        }
    }
    pod["spec"] = Value::Object(spec);
    Ok(())
}

/// Whether an update that marks or finalizes a deleting object completes the deletion: the last
/// finalizer was just removed (for namespaces, also the last `spec.finalizers` entry). A write
/// that only marks an object for graceful deletion (a pod on a node) does not.
pub fn completes_deletion(res: &Resource, old: &Value, new: &Value) -> bool {
    if !object::is_deleting(new) || !object::finalizers(new).is_empty() {
        return false;
    }
    let spec_finalizers = |o: &Value| {
        o.at("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let is_namespace = res.def.group.is_empty() && res.def.plural == "namespaces";
    if is_namespace {
        return !spec_finalizers(new)
            && (spec_finalizers(old) || !object::finalizers(old).is_empty());
    }
    !object::finalizers(old).is_empty()
}

fn allocate_service(state: &ApiState, svc: &mut Value) -> Result<(), ApiError> {
    let existing = state.cache.list("/registry/core/services/", None).items;
    let ty = svc
        .at("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let used_ips: HashSet<String> = existing
        .iter()
        .filter_map(|s| {
            s.at("/spec/clusterIP")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let requested = svc
        .at("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = if requested.is_empty() {
        let mut found = None;
        for _ in 0..1024 {
            let n: u16 = rand::random_range(2..65534);
            let ip = format!(
                "{}.{}.{}.{}",
                SERVICE_CIDR_PREFIX[0],
                SERVICE_CIDR_PREFIX[1],
                n >> 8,
                n & 0xff
            );
            if !used_ips.contains(&ip) {
                found = Some(ip);
                break;
            }
        }
        found.ok_or_else(|| ApiError::internal("failed to allocate a service IP: range is full"))?
    } else if requested == "None" {
        requested
    } else {
        if used_ips.contains(&requested) {
            return Err(invalid_ip(
                svc,
                &requested,
                "provided IP is already allocated",
            ));
        }
        requested
    };
    svc["spec"]["clusterIP"] = json!(ip);
    if ip != "None" {
        svc["spec"]["clusterIPs"] = json!([ip]);
        svc["spec"]["ipFamilies"] = json!(["IPv4"]);
        svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        let used_ports: HashSet<i64> = existing
            .iter()
            .flat_map(|s| {
                s.at("/spec/ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
            .collect();
        if let Some(ports) = svc.at_mut("/spec/ports").and_then(Value::as_array_mut) {
            let mut taken = used_ports;
            for p in ports.iter_mut() {
                if p.get("nodePort").and_then(Value::as_i64).is_some() {
                    continue;
                }
                let port = (0..4096)
                    .map(|_| rand::random_range(30000..=32767))
                    .find(|n| !taken.contains(n))
                    .ok_or_else(|| {
                        ApiError::internal("failed to allocate a node port: range is full")
                    })?;
                taken.insert(port);
                p["nodePort"] = json!(port);
            }
        }
        svc["spec"]["externalTrafficPolicy"] = svc
            .at("/spec/externalTrafficPolicy")
            .cloned()
            .unwrap_or(json!("Cluster"));
    }
    Ok(())
}

fn invalid_ip(svc: &Value, ip: &str, why: &str) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        object::name(svc),
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "spec.clusterIPs: Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: {why}"
            ),
            field: "spec.clusterIPs".into(),
        }],
    )
}
