//! Strategies for the core/v1 kinds: defaults, validation and table columns as upstream's
//! `pkg/registry/core/*` and printers define them.

use std::sync::Arc;

use ledge_api::Pointer as _;
use ledge_api::StatusCause;
use serde_json::{Value, json};

use super::Strategy;
use super::generic::{self, Generic, invalid};
use crate::object;
use crate::table::{self, Column, col, wide};

/// The strategy for a core/v1 resource.
pub fn strategy(plural: &str) -> Arc<dyn Strategy> {
    match plural {
        "namespaces" => Arc::new(Namespaces),
        "pods" => Arc::new(Pods),
        "nodes" => Arc::new(Nodes),
        "services" => Arc::new(Services),
        "configmaps" => Arc::new(ConfigMaps),
        "secrets" => Arc::new(Secrets),
        "events" => Arc::new(Events),
        "endpoints" => Arc::new(Endpoints),
        "serviceaccounts" => Arc::new(ServiceAccounts),
        "podtemplates" => Arc::new(PodTemplates),
        _ => Arc::new(Generic),
    }
}

struct Namespaces;

impl Strategy for Namespaces {
    fn defaults(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        let spec = m.entry("spec").or_insert(json!({}));
        if let Some(s) = spec.as_object_mut() {
            s.entry("finalizers").or_insert(json!(["kubernetes"]));
        }
        let status = m.entry("status").or_insert(json!({}));
        if let Some(s) = status.as_object_mut() {
            s.entry("phase").or_insert(json!("Active"));
        }
        // Upstream labels every namespace with its own name.
        let name = object::name(obj).to_string();
        let meta = object::meta_mut(obj);
        let labels = meta.entry("labels").or_insert(json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }

    fn name_is_label(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![col("Status", "string", "The status of the namespace")]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![table::cell(obj, ".status.phase")]
    }
}

struct Pods;

/// The STATUS column of `kubectl get pods` (upstream `printPod`).
/// The Restarts cell as upstream prints it (`printPod`): the restarts of the init containers
/// while the pod initializes, of its containers afterwards, and how long ago the newest of them
/// ended, `3 (2m ago)`.
fn restarts(pod: &Value, now: chrono::DateTime<chrono::Utc>) -> String {
    let statuses = |field: &str| {
        table::path(pod, field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let init = statuses(".status.initContainerStatuses");
    let initialized = init
        .iter()
        .all(|c| c.at("/state/terminated/exitCode").and_then(Value::as_i64) == Some(0))
        || pod
            .at("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Initialized" && c["status"] == "True")
            });
    let counted = if initialized {
        statuses(".status.containerStatuses")
    } else {
        init
    };
    let count: i64 = counted
        .iter()
        .filter_map(|c| c.get("restartCount")?.as_i64())
        .sum();
    let last = counted
        .iter()
        .filter_map(|c| c.at("/lastState/terminated/finishedAt")?.as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .max();
    match last {
        Some(t) if count != 0 => {
            let ago = (now - t.with_timezone(&chrono::Utc)).num_seconds();
            format!("{count} ({} ago)", table::human_duration(ago))
        }
        _ => count.to_string(),
    }
}

fn pod_reason(pod: &Value) -> String {
    let mut reason = table::text(pod, ".status.reason").to_string();
    if reason.is_empty() {
        reason = table::text(pod, ".status.phase").to_string();
    }
    let statuses = table::path(pod, ".status.containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let init = table::path(pod, ".status.initContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut initializing = false;
    for (i, s) in init.iter().enumerate() {
        if let Some(t) = s.at("/state/terminated")
            && t.get("exitCode").and_then(Value::as_i64) == Some(0)
        {
            continue;
        }
        initializing = true;
        reason = if let Some(t) = s.at("/state/terminated") {
            match t.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!(
                    "Init:ExitCode:{}",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                ),
            }
        } else if let Some(r) = s
            .at("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", init.len())
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        for s in statuses.iter().rev() {
            if let Some(r) = s
                .at("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if let Some(t) = s.at("/state/terminated") {
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match t.get("signal").and_then(Value::as_i64) {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!(
                            "ExitCode:{}",
                            t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                        ),
                    },
                };
            } else if s.get("ready").and_then(Value::as_bool) == Some(true)
                && s.at("/state/running").is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = pod
                .at("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == Some("Ready")
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                });
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    if object::is_deleting(pod) {
        reason = if table::text(pod, ".status.reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

/// A pod's spec defaults. Upstream's ServiceAccount admission is among them: a pod runs as
/// `default` unless it names another (the namespace controller keeps `default` in every
/// namespace); the deprecated `serviceAccount` mirrors it.
fn default_spec(spec: &mut Value) {
    generic::default_pod_spec(spec);
    if let Some(m) = spec.as_object_mut() {
        let account = m
            .get("serviceAccountName")
            .or_else(|| m.get("serviceAccount"))
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .unwrap_or("default")
            .to_string();
        m.insert("serviceAccountName".into(), json!(account));
        m.insert("serviceAccount".into(), json!(account));
    }
}

impl Strategy for Pods {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            default_spec(spec);
        }
        let qos = obj.get("spec").map_or("BestEffort", generic::qos_class);
        if let Some(m) = obj.as_object_mut() {
            let status = m.entry("status").or_insert(json!({}));
            if let Some(s) = status.as_object_mut() {
                s.entry("phase").or_insert(json!("Pending"));
                s.entry("qosClass").or_insert(json!(qos));
            }
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = generic::validate_pod_spec(obj.get("spec"), "spec");
        if let Some(old) = old {
            // Upstream allows only a few pod spec fields to change after creation.
            let mut new_spec = obj.get("spec").cloned().unwrap_or(json!({}));
            let mut old_spec = old.get("spec").cloned().unwrap_or(json!({}));
            // A pod stored before a default existed gets it on this write: not a change.
            default_spec(&mut old_spec);
            for s in [&mut new_spec, &mut old_spec] {
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                        "schedulingGates",
                    ] {
                        m.remove(f);
                    }
                    if let Some(cs) = m.get_mut("containers").and_then(Value::as_array_mut) {
                        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                            c.remove("image");
                        }
                    }
                }
            }
            let old_node = table::text(old, ".spec.nodeName");
            if old_node.is_empty()
                && let Some(m) = new_spec.as_object_mut()
            {
                m.remove("nodeName");
                if let Some(o) = old_spec.as_object_mut() {
                    o.remove("nodeName");
                }
            }
            if new_spec != old_spec {
                causes.push(StatusCause {
                    reason: "FieldValueForbidden".into(),
                    message: "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
                    field: "spec".into(),
                });
            }
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            table::AGE,
            wide("IP", "string", "IP address allocated to the pod."),
            wide(
                "Node",
                "string",
                "Name of the node this pod is assigned to.",
            ),
            wide(
                "Nominated Node",
                "string",
                "Name of the node this pod is nominated to run on.",
            ),
            wide("Readiness Gates", "string", "Pod readiness gates."),
        ]
    }

    fn cells(&self, pod: &Value) -> Vec<Value> {
        let total = table::path(pod, ".spec.containers")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let statuses = table::path(pod, ".status.containerStatuses").and_then(Value::as_array);
        let ready = statuses.map_or(0, |s| {
            s.iter()
                .filter(|c| c.get("ready") == Some(&json!(true)))
                .count()
        });
        let or_none = |s: &str| {
            if s.is_empty() {
                json!("<none>")
            } else {
                json!(s)
            }
        };
        let gates: Vec<&str> = table::path(pod, ".spec.readinessGates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
            .collect();
        let conditions = table::path(pod, ".status.conditions").and_then(Value::as_array);
        let gates_true = gates
            .iter()
            .filter(|g| {
                conditions.into_iter().flatten().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some(**g)
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
            .count();
        vec![
            json!(format!("{ready}/{total}")),
            json!(pod_reason(pod)),
            json!(restarts(pod, chrono::Utc::now())),
            table::age(pod),
            or_none(table::text(pod, ".status.podIP")),
            or_none(table::text(pod, ".spec.nodeName")),
            or_none(table::text(pod, ".status.nominatedNodeName")),
            if gates.is_empty() {
                json!("<none>")
            } else {
                json!(format!("{gates_true}/{}", gates.len()))
            },
        ]
    }
}

struct Nodes;

impl Strategy for Nodes {
    fn columns(&self) -> Vec<Column> {
        vec![
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            table::AGE,
            col("Version", "string", "Kubelet Version reported by the node."),
            wide(
                "Internal-IP",
                "string",
                "List of internal IPs for the node.",
            ),
            wide(
                "External-IP",
                "string",
                "List of external IPs for the node.",
            ),
            wide(
                "OS-Image",
                "string",
                "OS image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "string",
                "Kernel version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "string",
                "Container runtime version reported by the node.",
            ),
        ]
    }

    fn cells(&self, node: &Value) -> Vec<Value> {
        let conditions = table::path(node, ".status.conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ready = conditions
            .iter()
            .find(|c| c.get("type") == Some(&json!("Ready")));
        let mut status = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
            Some("True") => "Ready".to_string(),
            Some(_) => "NotReady".to_string(),
            None => "Unknown".to_string(),
        };
        if node.at("/spec/unschedulable") == Some(&json!(true)) {
            status.push_str(",SchedulingDisabled");
        }
        let mut roles: Vec<String> = object::labels(node)
            .keys()
            .filter_map(|k| {
                k.strip_prefix("node-role.kubernetes.io/")
                    .map(str::to_string)
            })
            .collect();
        roles.sort();
        let addr = |t: &str| {
            table::path(node, ".status.addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x.get("type") == Some(&json!(t))))
                .and_then(|x| x.get("address").and_then(Value::as_str))
                .unwrap_or("<none>")
                .to_string()
        };
        vec![
            json!(status),
            json!(if roles.is_empty() {
                "<none>".into()
            } else {
                roles.join(",")
            }),
            table::age(node),
            table::cell(node, ".status.nodeInfo.kubeletVersion"),
            json!(addr("InternalIP")),
            json!(addr("ExternalIP")),
            table::cell(node, ".status.nodeInfo.osImage"),
            table::cell(node, ".status.nodeInfo.kernelVersion"),
            table::cell(node, ".status.nodeInfo.containerRuntimeVersion"),
        ]
    }
}

struct Services;

impl Strategy for Services {
    fn defaults(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.entry("type").or_insert(json!("ClusterIP"));
        spec.entry("sessionAffinity").or_insert(json!("None"));
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.entry("protocol").or_insert(json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    p.entry("targetPort").or_insert(port);
                }
            }
        }
        if let Some(m) = obj.as_object_mut() {
            m.entry("status").or_insert(json!({"loadBalancer": {}}));
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = Vec::new();
        let ty = table::text(obj, ".spec.type");
        if !matches!(
            ty,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            causes.push(StatusCause {
                reason: "FieldValueNotSupported".into(),
                message: format!("spec.type: Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
                field: "spec.type".into(),
            });
        }
        let ports = table::path(obj, ".spec.ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if ports.is_empty() && ty != "ExternalName" && table::text(obj, ".spec.clusterIP") != "None"
        {
            causes.push(generic::required("spec.ports"));
        }
        for (i, p) in ports.iter().enumerate() {
            match p.get("port").and_then(Value::as_i64) {
                Some(n) if (1..=65535).contains(&n) => {}
                Some(n) => causes.push(invalid(
                    &format!("spec.ports[{i}].port"),
                    &json!(n),
                    "must be between 1 and 65535, inclusive",
                )),
                None => causes.push(generic::required(&format!("spec.ports[{i}].port"))),
            }
        }
        causes
    }

    fn name_is_label(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Type", "string", "The type of the service."),
            col("Cluster-IP", "string", "The cluster IP of the service."),
            col("External-IP", "string", "The external IP of the service."),
            col("Port(s)", "string", "The ports of the service."),
            table::AGE,
            wide("Selector", "string", "The label selector of the service."),
        ]
    }

    fn cells(&self, svc: &Value) -> Vec<Value> {
        let ports: Vec<String> = table::path(svc, ".spec.ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                        match p.get("nodePort").and_then(Value::as_i64) {
                            Some(np) => format!("{port}:{np}/{proto}"),
                            None => format!("{port}/{proto}"),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let external = table::path(svc, ".spec.externalIPs")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| {
                if table::text(svc, ".spec.type") == "ExternalName" {
                    table::text(svc, ".spec.externalName").to_string()
                } else if table::text(svc, ".spec.type") == "LoadBalancer" {
                    "<pending>".into()
                } else {
                    "<none>".into()
                }
            });
        let cluster_ip = table::text(svc, ".spec.clusterIP");
        vec![
            table::cell(svc, ".spec.type"),
            json!(if cluster_ip.is_empty() {
                "<none>"
            } else {
                cluster_ip
            }),
            json!(external),
            json!(if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            }),
            table::age(svc),
            json!(table::selector_text(table::path(svc, ".spec.selector"))),
        ]
    }
}

/// ConfigMap and Secret keys: `[-._a-zA-Z0-9]+`, upstream `IsConfigMapKey`.
fn validate_keys(obj: &Value, fields: &[&str]) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    for field in fields {
        let Some(map) = obj.get(*field).and_then(Value::as_object) else {
            continue;
        };
        for key in map.keys() {
            let ok = !key.is_empty()
                && key.len() <= 253
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && key != "."
                && key != ".."
                && !key.starts_with("..");
            if !ok {
                causes.push(invalid(
                    &format!("{field}[{key}]"),
                    &json!(key),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
    causes
}

struct ConfigMaps;

impl Strategy for ConfigMaps {
    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = validate_keys(obj, &["data", "binaryData"]);
        for (field, want) in [("data", "string"), ("binaryData", "base64 string")] {
            if let Some(map) = obj.get(field).and_then(Value::as_object) {
                for (k, v) in map {
                    if !v.is_string() {
                        causes.push(invalid(
                            &format!("{field}[{k}]"),
                            v,
                            &format!("must be a {want}"),
                        ));
                    }
                }
            }
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![col(
            "Data",
            "string",
            "Data contains the configuration data.",
        )]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let n = table::count(obj, ".data").as_u64().unwrap_or(0)
            + table::count(obj, ".binaryData").as_u64().unwrap_or(0);
        vec![json!(n)]
    }
}

struct Secrets;

impl Strategy for Secrets {
    fn defaults(&self, obj: &mut Value) {
        use base64::Engine as _;
        let Some(m) = obj.as_object_mut() else { return };
        m.entry("type").or_insert(json!("Opaque"));
        // `stringData` is write-only: it is folded into `data` (upstream secret strategy).
        if let Some(Value::Object(sd)) = m.remove("stringData") {
            let data = m.entry("data").or_insert(json!({}));
            if let Some(d) = data.as_object_mut() {
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default().to_string();
                    d.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        use base64::Engine as _;
        let mut causes = validate_keys(obj, &["data"]);
        if let Some(map) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in map {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    causes.push(invalid(
                        &format!("data[{k}]"),
                        v,
                        "must be a base64-encoded string",
                    ));
                }
            }
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Type", "string", "The type of the secret"),
            col("Data", "string", "The number of entries in the secret"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![table::cell(obj, ".type"), table::count(obj, ".data")]
    }
}

struct Events;

impl Strategy for Events {
    fn columns(&self) -> Vec<Column> {
        vec![
            col("Last Seen", "string", "Time when last event occurred"),
            col("Type", "string", "Type of the event"),
            col("Reason", "string", "Reason of the event"),
            col("Object", "string", "Object the event is about"),
            col("Message", "string", "Message of the event"),
        ]
    }

    fn cells(&self, ev: &Value) -> Vec<Value> {
        let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
            .iter()
            .find_map(|f| ev.get(*f).and_then(Value::as_str))
            .or(object::meta_str(ev, "creationTimestamp"));
        let kind = table::text(ev, ".involvedObject.kind").to_lowercase();
        vec![
            table::age_of(last),
            table::cell(ev, ".type"),
            table::cell(ev, ".reason"),
            json!(format!(
                "{kind}/{}",
                table::text(ev, ".involvedObject.name")
            )),
            table::cell(ev, ".message"),
        ]
    }
}

struct PodTemplates;

impl Strategy for PodTemplates {
    fn defaults(&self, obj: &mut Value) {
        if let Some(spec) = obj.at_mut("/template/spec") {
            generic::default_pod_spec(spec);
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        generic::validate_pod_spec(obj.at("/template/spec"), "template.spec")
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            col("Containers", "string", "Container names"),
            col("Images", "string", "Container images"),
            col("Pod Labels", "string", "Pod labels"),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let (names, images) = generic::containers_images(obj, ".template.spec");
        vec![
            names,
            images,
            json!(table::selector_text(table::path(
                obj,
                ".template.metadata.labels"
            ))),
        ]
    }
}

struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    fn columns(&self) -> Vec<Column> {
        vec![col(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        )]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![table::count(obj, ".secrets")]
    }
}

struct Endpoints;

impl Strategy for Endpoints {
    fn columns(&self) -> Vec<Column> {
        vec![col("Endpoints", "string", "Endpoints of the service")]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let mut shown = Vec::new();
        let mut total = 0;
        for subset in table::path(obj, ".subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ports: Vec<i64> = subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("port")?.as_i64())
                .collect();
            for addr in subset
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ip = addr.get("ip").and_then(Value::as_str).unwrap_or("");
                if ports.is_empty() {
                    total += 1;
                    if shown.len() < 3 {
                        shown.push(ip.to_string());
                    }
                }
                for port in &ports {
                    total += 1;
                    if shown.len() < 3 {
                        shown.push(format!("{ip}:{port}"));
                    }
                }
            }
        }
        let mut text = if shown.is_empty() {
            "<none>".to_string()
        } else {
            shown.join(",")
        };
        if total > shown.len() {
            text.push_str(&format!(" + {} more...", total - shown.len()));
        }
        vec![json!(text)]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Pods, Strategy as _, restarts};

    #[test]
    fn a_pod_stored_before_newer_defaults_can_still_be_updated() {
        // As stored by an older ledge: no service account, a probe without its defaults.
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
            "image": "x:1", "readinessProbe": {"tcpSocket": {"port": 80}}}]}});
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"a": "b"});
        Pods.defaults(&mut new);
        assert_eq!(new["spec"]["serviceAccountName"], "default");
        assert_eq!(
            new["spec"]["containers"][0]["readinessProbe"]["periodSeconds"],
            10
        );
        assert!(Pods.validate(&new, Some(&old)).is_empty());
        let mut changed = new.clone();
        changed["spec"]["serviceAccountName"] = json!("other");
        assert!(!Pods.validate(&changed, Some(&old)).is_empty());
    }

    #[test]
    fn restarts_print_as_kubectl_shows_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-01T01:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let pod = json!({"status": {"containerStatuses": [
            {"name": "a", "restartCount": 2,
             "lastState": {"terminated": {"finishedAt": "2025-01-01T00:30:00Z"}}},
            {"name": "b", "restartCount": 1,
             "lastState": {"terminated": {"finishedAt": "2025-01-01T00:58:00Z"}}},
        ]}});
        assert_eq!(restarts(&pod, now), "3 (2m ago)");
        // Never restarted, or no finish time known: the bare count.
        let fresh = json!({"status": {"containerStatuses": [{"name": "a", "restartCount": 0}]}});
        assert_eq!(restarts(&fresh, now), "0");
        assert_eq!(restarts(&json!({}), now), "0");
        // While the pod initializes, its init containers' restarts are the ones shown.
        let initializing = json!({"status": {
            "initContainerStatuses": [{"name": "i", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T00:59:50Z"}}}],
            "containerStatuses": [{"name": "a", "restartCount": 0}],
        }});
        assert_eq!(restarts(&initializing, now), "4 (10s ago)");
    }
}
