//! What a Service's endpoints should be, from its pods (upstream
//! `pkg/controller/endpointslice/reconciler.go` and `pkg/controller/endpoint`): which pods are
//! listed, their conditions, the ports a named `targetPort` resolves to in each pod, the
//! EndpointSlices (grouped by port mapping, at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints each)
//! and the legacy Endpoints subsets.
//!
//! ledge runs wasm and process pods in the host network, so several pods often share one IP:
//! each pod is still its own endpoint (its own `targetRef`), never merged by address.

use std::collections::BTreeMap;
use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::{meta, pod};

/// The EndpointSlice label naming the Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The EndpointSlice label naming the controller that manages it.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`] (upstream's, so tools recognise it).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Set on the endpoints of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Upstream `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The Service's pod selector as label pairs; `None` when the Service has no selector (its
/// endpoints are the user's to manage).
pub fn selector(service: &Value) -> Option<ledge_api::selector::LabelSelector> {
    let sel = service.at("/spec/selector")?.as_object()?;
    if sel.is_empty() {
        return None;
    }
    Some(ledge_api::selector::LabelSelector::from_set(
        sel.iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))),
    ))
}

fn publish_not_ready(service: &Value) -> bool {
    service
        .at("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        == Some(true)
}

/// The pod's first IPv4 address, if it has one.
pub fn ipv4(pod: &Value) -> Option<&str> {
    let listed = pod
        .at("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip").and_then(Value::as_str));
    std::iter::once(meta::str_at(pod, "/status/podIP"))
        .chain(listed)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Whether `pod` belongs in the endpoints at all (upstream `ShouldPodBeInEndpoints`): it has an
/// IPv4 address, has not finished, and — unless terminating pods are wanted — is not being
/// deleted.
pub fn listed(pod: &Value, include_terminating: bool) -> bool {
    ipv4(pod).is_some()
        && !matches!(pod::phase(pod), "Succeeded" | "Failed")
        && (include_terminating || !meta::is_deleting(pod))
}

/// The container port named `name` in `pod` (protocol must match), as upstream `FindPort`.
fn named_port(pod: &Value, name: &str, protocol: &str) -> Option<i64> {
    pod.at("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|p| {
            p.get("name").and_then(Value::as_str) == Some(name)
                && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == protocol
        })
        .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
}

/// The endpoint ports of `service` for `pod`: each Service port with its `targetPort` resolved
/// (a name looked up in the pod's containers; a port whose name the pod lacks is left out for
/// that pod, as upstream does).
pub fn ports_for(service: &Value, pod: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in service
        .at("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        let number = match p.get("targetPort") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => named_port(pod, s, protocol),
            },
            _ => p.get("port").and_then(Value::as_i64),
        };
        let Some(number) = number.filter(|n| *n > 0) else {
            continue;
        };
        let mut port = json!({
            "name": p.get("name").and_then(Value::as_str).unwrap_or(""),
            "port": number,
            "protocol": protocol,
        });
        if let Some(app) = p.get("appProtocol").and_then(Value::as_str) {
            port["appProtocol"] = json!(app);
        }
        out.push(port);
    }
    out
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": meta::namespace(pod).unwrap_or(""),
        "name": meta::name(pod),
        "uid": meta::uid(pod),
    })
}

/// A pod's `hostname` in the Service's DNS, if it asked for one under this Service
/// (`spec.hostname` with `spec.subdomain` = the Service's name).
fn hostname<'a>(service: &Value, pod: &'a Value) -> Option<&'a str> {
    let h = meta::str_at(pod, "/spec/hostname");
    (!h.is_empty() && meta::str_at(pod, "/spec/subdomain") == meta::name(service)).then_some(h)
}

/// One EndpointSlice endpoint for `pod` (upstream `podToEndpoint`): ready only when the pod is
/// ready and not terminating (or the Service publishes not-ready addresses), serving when ready
/// regardless of termination.
pub fn slice_endpoint(service: &Value, pod: &Value) -> Value {
    let publish = publish_not_ready(service);
    let terminating = meta::is_deleting(pod);
    let serving = publish || pod::is_ready(pod);
    let ready = serving && (publish || !terminating);
    let mut e = json!({
        "addresses": [ipv4(pod).unwrap_or("")],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": target_ref(pod),
    });
    let node = meta::str_at(pod, "/spec/nodeName");
    if !node.is_empty() {
        e["nodeName"] = json!(node);
    }
    if let Some(h) = hostname(service, pod) {
        e["hostname"] = json!(h);
    }
    e
}

/// The identity endpoints are ordered by: address, then pod name (stable output, so an
/// unchanged set is recognised as unchanged).
fn endpoint_order(e: &Value) -> (String, String) {
    (
        meta::str_at(e, "/addresses/0").to_string(),
        meta::str_at(e, "/targetRef/name").to_string(),
    )
}

/// One EndpointSlice's worth of content.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    /// The slice's `ports`.
    pub ports: Vec<Value>,
    /// The slice's `endpoints`, ordered.
    pub endpoints: Vec<Value>,
}

/// The EndpointSlices `service` should have for `pods` (all pods of its namespace): endpoints
/// grouped by their resolved ports, at most [`MAX_ENDPOINTS_PER_SLICE`] per slice. A Service
/// without endpoints still gets one empty slice, as upstream's placeholder.
pub fn slices(service: &Value, pods: &[Arc<Value>]) -> Vec<SliceContent> {
    let Some(sel) = selector(service) else {
        return Vec::new();
    };
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for p in pods.iter().map(|p| &**p) {
        if !sel.matches_object(p) || !listed(p, true) {
            continue;
        }
        let ports = ports_for(service, p);
        let key = Value::Array(ports.clone()).to_string();
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(slice_endpoint(service, p));
    }
    if groups.is_empty() {
        return vec![SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
        }];
    }
    let mut out = Vec::new();
    for (_, (ports, mut endpoints)) in groups {
        endpoints.sort_by_key(endpoint_order);
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    out
}

/// The legacy core/v1 Endpoints `subsets` for `service` (upstream endpoints controller plus
/// `RepackSubsets`): ready pods in `addresses`, the others in `notReadyAddresses`, grouped by
/// resolved ports. Terminating pods are left out unless the Service publishes not-ready
/// addresses.
pub fn subsets(service: &Value, pods: &[Arc<Value>]) -> Vec<Value> {
    let Some(sel) = selector(service) else {
        return Vec::new();
    };
    let publish = publish_not_ready(service);
    type Group = (Vec<Value>, Vec<Value>, Vec<Value>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for p in pods.iter().map(|p| &**p) {
        if !sel.matches_object(p) || !listed(p, publish) {
            continue;
        }
        let ports = ports_for(service, p);
        let mut address = json!({"ip": ipv4(p).unwrap_or(""), "targetRef": target_ref(p)});
        let node = meta::str_at(p, "/spec/nodeName");
        if !node.is_empty() {
            address["nodeName"] = json!(node);
        }
        if let Some(h) = hostname(service, p) {
            address["hostname"] = json!(h);
        }
        let key = Value::Array(ports.clone()).to_string();
        let g = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pod::is_ready(p) {
            g.1.push(address);
        } else {
            g.2.push(address);
        }
    }
    let order = |a: &Value| {
        (
            meta::str_at(a, "/ip").to_string(),
            meta::str_at(a, "/targetRef/name").to_string(),
        )
    };
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by_key(order);
            not_ready.sort_by_key(order);
            let mut subset = json!({});
            if !ready.is_empty() {
                subset["addresses"] = Value::Array(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = Value::Array(not_ready);
            }
            if !ports.is_empty() {
                subset["ports"] = Value::Array(ports);
            }
            subset
        })
        .collect()
}

/// The labels an EndpointSlice of `service` carries: the Service's own, the service-name and
/// managed-by labels, and the headless marker for a headless Service.
pub fn slice_labels(service: &Value) -> Value {
    let mut labels = meta::labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), json!(meta::name(service)));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    Value::Object(labels)
}

/// The labels of a Service's legacy Endpoints: the Service's own plus the headless marker.
pub fn endpoints_labels(service: &Value) -> Value {
    let mut labels = meta::labels(service);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    Value::Object(labels)
}

fn is_headless(service: &Value) -> bool {
    meta::str_at(service, "/spec/clusterIP") == "None"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(target: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "a", "labels": {"tier": "fe"}},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}]}})
    }

    fn arcs(pods: Vec<Value>) -> Vec<Arc<Value>> {
        pods.into_iter().map(Arc::new).collect()
    }

    fn pod(name: &str, ip: &str, ready: bool, port_name: Option<&str>) -> Value {
        let ports = port_name
            .map(|n| json!([{"name": n, "containerPort": 8080, "protocol": "TCP"}]))
            .unwrap_or(json!([]));
        json!({"metadata": {"name": name, "namespace": "a", "uid": format!("u-{name}"), "labels": {"app": "web"}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn pods_sharing_an_ip_are_separate_endpoints() {
        let svc = service(json!(8080));
        let pods = arcs(vec![
            pod("b", "10.0.0.1", true, None),
            pod("a", "10.0.0.1", false, None),
        ]);
        let s = slices(&svc, &pods);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].ports,
            [json!({"name": "http", "port": 8080, "protocol": "TCP"})]
        );
        let names: Vec<&str> = s[0]
            .endpoints
            .iter()
            .map(|e| meta::str_at(e, "/targetRef/name"))
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            s[0].endpoints[0]["conditions"],
            json!({"ready": false, "serving": false, "terminating": false})
        );
        assert_eq!(s[0].endpoints[1]["nodeName"], json!("n1"));
        let legacy = subsets(&svc, &pods);
        assert_eq!(legacy.len(), 1);
        assert_eq!(legacy[0]["addresses"][0]["targetRef"]["name"], json!("b"));
        assert_eq!(
            legacy[0]["notReadyAddresses"][0]["targetRef"]["name"],
            json!("a")
        );
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let svc = service(json!("web"));
        let pods = arcs(vec![
            pod("a", "10.0.0.1", true, Some("web")),
            pod("b", "10.0.0.2", true, None),
        ]);
        let s = slices(&svc, &pods);
        assert_eq!(s.len(), 2, "{s:?}");
        let with_port = s.iter().find(|c| !c.ports.is_empty()).expect("a group");
        assert_eq!(with_port.ports[0]["port"], json!(8080));
        assert_eq!(with_port.endpoints[0]["targetRef"]["name"], json!("a"));
    }

    #[test]
    fn terminating_pods_stay_in_slices_as_not_ready_and_leave_endpoints() {
        let svc = service(json!(80));
        let mut p = pod("a", "10.0.0.1", true, None);
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let s = slices(&svc, &arcs(vec![p.clone()]));
        assert_eq!(
            s[0].endpoints[0]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert!(subsets(&svc, &arcs(vec![p])).is_empty());
    }

    #[test]
    fn unselected_finished_and_addressless_pods_are_left_out() {
        let svc = service(json!(80));
        let mut other = pod("o", "10.0.0.3", true, None);
        other["metadata"]["labels"] = json!({"app": "db"});
        let mut done = pod("d", "10.0.0.4", true, None);
        done["status"]["phase"] = json!("Succeeded");
        let mut pending = pod("p", "", false, None);
        pending["status"]["phase"] = json!("Pending");
        let s = slices(&svc, &arcs(vec![other, done, pending]));
        assert_eq!(
            s,
            [SliceContent {
                ports: vec![],
                endpoints: vec![]
            }]
        );
        let mut no_selector = svc.clone();
        no_selector["spec"]
            .as_object_mut()
            .map(|m| m.remove("selector"));
        assert!(slices(&no_selector, &arcs(vec![pod("a", "10.0.0.1", true, None)])).is_empty());
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let svc = service(json!(80));
        let pods = arcs(
            (0..250)
                .map(|i| pod(&format!("p{i:03}"), "10.0.0.1", true, None))
                .collect(),
        );
        let sizes: Vec<usize> = slices(&svc, &pods)
            .iter()
            .map(|s| s.endpoints.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn labels_carry_the_service_name_and_manager() {
        let l = slice_labels(&service(json!(80)));
        assert_eq!(l[SERVICE_NAME_LABEL], json!("web"));
        assert_eq!(l[MANAGED_BY_LABEL], json!(MANAGED_BY));
        assert_eq!(l["tier"], json!("fe"));
    }
}
