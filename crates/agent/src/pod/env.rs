//! A container's environment, computed as kubelet does: `envFrom` first (in order, later
//! sources win), then `env` (in order); `valueFrom` reads the pod's own fields, its resources,
//! ConfigMap and Secret keys; `$(VAR)` in values, command and args expands to variables defined
//! before it, `$$` escapes, unknown references stay as written.

use std::collections::HashMap;

use ledge_api::Pointer as _;
use serde_json::Value;

use super::refs::{RefKind, Refs};
use super::spec::{Container, str_at};

/// What `fieldRef` and `resourceFieldRef` read besides the pod itself.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// The node's InternalIP (the pod's IP too: ledge pods share the node's network).
    pub host_ip: String,
    /// Allocatable CPU in millicores (the default for an unset `limits.cpu`).
    pub cpu_millis: i64,
    /// Allocatable memory in bytes (the default for an unset `limits.memory`).
    pub memory_bytes: i64,
}

/// The environment of `container` of `pod`, in order, later names overriding earlier ones.
///
/// # Errors
/// The upstream message for a missing ConfigMap, Secret or key, or an unsupported field path —
/// the container then waits with `CreateContainerConfigError`.
pub fn resolve(
    pod: &Value,
    container: &Container,
    refs: &Refs,
    node: &NodeFacts,
) -> Result<Vec<(String, String)>, String> {
    let namespace = str_at(pod, "/metadata/namespace").unwrap_or("default");
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for from in &container.env_from {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, r) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (RefKind::ConfigMap, r),
            (None, Some(r)) => (RefKind::Secret, r),
            (None, None) => continue,
        };
        for (k, v) in refs.data(kind, &r.name, r.optional.unwrap_or(false))? {
            set(
                &mut env,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in &container.env {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match value_from(pod, container, from, namespace, refs, node)? {
                Some(v) => v,
                None => continue,
            },
            (Some(v), None) => {
                let known: HashMap<&str, &str> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(v, &known)
            }
            (None, None) => String::new(),
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

fn value_from(
    pod: &Value,
    container: &Container,
    from: &Value,
    namespace: &str,
    refs: &Refs,
    node: &NodeFacts,
) -> Result<Option<String>, String> {
    let optional = |r: &Value| r.get("optional").and_then(Value::as_bool).unwrap_or(false);
    if let Some(r) = from
        .get("configMapKeyRef")
        .or_else(|| from.get("secretKeyRef"))
    {
        let kind = if from.get("configMapKeyRef").is_some() {
            RefKind::ConfigMap
        } else {
            RefKind::Secret
        };
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let key = r.get("key").and_then(Value::as_str).unwrap_or("");
        let v = refs.key(kind, namespace, name, key, optional(r))?;
        return Ok(v.map(|v| String::from_utf8_lossy(&v).into_owned()));
    }
    if let Some(r) = from.get("fieldRef") {
        let path = r.get("fieldPath").and_then(Value::as_str).unwrap_or("");
        return field(pod, path, node).map(Some);
    }
    if let Some(r) = from.get("resourceFieldRef") {
        let target = r
            .get("containerName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(&container.name);
        let res = r.get("resource").and_then(Value::as_str).unwrap_or("");
        let divisor = r.get("divisor").and_then(Value::as_str).unwrap_or("1");
        return resource(pod, target, res, divisor, node).map(Some);
    }
    Ok(None)
}

/// A downward-API field of the pod (`fieldRef.fieldPath`).
///
/// # Errors
/// A field path upstream does not support.
pub fn field(pod: &Value, path: &str, node: &NodeFacts) -> Result<String, String> {
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").and_then(|r| r.strip_suffix("']")))
    };
    let text = |p: &str| str_at(pod, p).unwrap_or("").to_string();
    Ok(match path {
        "metadata.name" => text("/metadata/name"),
        "metadata.namespace" => text("/metadata/namespace"),
        "metadata.uid" => text("/metadata/uid"),
        "spec.nodeName" => text("/spec/nodeName"),
        "spec.serviceAccountName" => text("/spec/serviceAccountName"),
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => {
            node.host_ip.clone()
        }
        "metadata.labels" | "metadata.annotations" => {
            let m = pod.at(&format!("/{}", path.replace('.', "/")));
            map_lines(m)
        }
        _ => {
            if let Some(k) = map_key("metadata.labels") {
                text(&format!("/metadata/labels/{}", escape(k)))
            } else if let Some(k) = map_key("metadata.annotations") {
                text(&format!("/metadata/annotations/{}", escape(k)))
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

/// `key="value"` lines, sorted, as kubelet writes labels and annotations.
fn map_lines(m: Option<&Value>) -> String {
    let mut lines: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    lines.join("\n")
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A `resourceFieldRef` value: limits default to the node's allocatable, rounded up by the
/// divisor as upstream.
///
/// # Errors
/// An unknown container, resource or divisor.
pub fn resource(
    pod: &Value,
    container: &str,
    res: &str,
    divisor: &str,
    node: &NodeFacts,
) -> Result<String, String> {
    let containers = pod.at("/spec/containers").and_then(Value::as_array);
    let c = containers
        .into_iter()
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
        .ok_or_else(|| format!("container {container} not found in the pod"))?;
    let (section, name) = res
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource: {res}"))?;
    let cpu = name == "cpu";
    let raw = c.at(&format!("/resources/{section}/{name}")).and_then(|v| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.as_i64().map(|n| n.to_string()))
    });
    let milli = |q: &str| ledge_api::quantity::milli_value(q).map_err(|e| format!("{res}: {e}"));
    let amount_milli: i64 = match (raw, section) {
        (Some(q), _) => milli(&q)?,
        (None, "limits") if cpu => node.cpu_millis,
        (None, "limits") if name == "memory" => node.memory_bytes.saturating_mul(1000),
        (None, _) => 0,
    };
    let divisor_milli = milli(divisor)?.max(1);
    let value = (amount_milli + divisor_milli - 1) / divisor_milli;
    Ok(value.to_string())
}

/// Expand `$(VAR)` references to `known` variables; `$$` is a literal `$`.
pub fn expand(input: &str, known: &HashMap<&str, &str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match known.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// `command` and `args` with `$(VAR)` expanded against the container's environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let known: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    items.iter().map(|s| expand(s, &known)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pod::spec::PodSpec;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x", "a/b": "c"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "i",
                "resources": {"limits": {"memory": "64Mi"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "$(A)-$(NOPE)-$$(A)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['a/b']"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                    {"name": "A", "value": "2"}
                ]
            }]}
        })
    }

    fn refs() -> Refs {
        Refs::from_objects(
            vec![json!({"metadata": {"name": "cm"}, "data": {"X": "y"}})],
            vec![json!({"metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}})],
        )
    }

    #[test]
    fn resolves_like_kubelet() {
        let pod = pod();
        let spec = PodSpec::of(&pod).unwrap();
        let node = NodeFacts {
            host_ip: "10.0.0.5".into(),
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
        };
        let env = resolve(&pod, &spec.containers[0], &refs(), &node).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_X"), Some("y"));
        assert_eq!(get("A"), Some("2"));
        assert_eq!(get("B"), Some("1-$(NOPE)-$(A)"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("LBL"), Some("c"));
        assert_eq!(get("IP"), Some("10.0.0.5"));
        assert_eq!(get("S"), Some("secret"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("2"));
        // A is set once, where it was first defined.
        assert_eq!(env.iter().filter(|(n, _)| n == "A").count(), 1);
    }

    #[test]
    fn missing_references_have_upstream_messages() {
        let pod = pod();
        let spec = PodSpec::of(&pod).unwrap();
        let empty = Refs::default();
        let err = resolve(&pod, &spec.containers[0], &empty, &NodeFacts::default()).unwrap_err();
        assert_eq!(err, "configmap \"cm\" not found");
        let only_cm = Refs::from_objects(
            vec![json!({"metadata": {"name": "cm"}})],
            vec![json!({"metadata": {"name": "s"}, "data": {}})],
        );
        let err = resolve(&pod, &spec.containers[0], &only_cm, &NodeFacts::default()).unwrap_err();
        assert_eq!(err, "couldn't find key k in Secret ns/s");
    }
}
