//! The Node object this agent stands for: its name, labels (`kubernetes.io/hostname`, `os`,
//! `arch`, the runtimes it offers, the user's `--node-label`s), taints (`--node-taint`, applied at
//! registration as kubelet's `--register-with-taints`), and registration — create, or bring an
//! existing Node's labels up to date. Status lives in [`status`], machine facts in [`facts`].

pub mod facts;
pub mod status;

use std::collections::BTreeMap;

use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::{Client, kinds};
use serde_json::{Map, Value, json};

/// Label prefix of the runtimes a node offers (`node.ledge.dev/runtime.<name>=true`).
pub const RUNTIME_LABEL_PREFIX: &str = "node.ledge.dev/runtime.";

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value ("" for none).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// The taint as it appears in `spec.taints`.
    pub fn to_json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if !self.value.is_empty() {
            t["value"] = json!(self.value);
        }
        t
    }
}

fn check_key(key: &str) -> Result<(), String> {
    match ledge_api::validation::is_qualified_name(key).first() {
        None => Ok(()),
        Some(e) => Err(format!("key {key:?}: {e}")),
    }
}

fn check_value(value: &str) -> Result<(), String> {
    match ledge_api::validation::is_valid_label_value(value).first() {
        None => Ok(()),
        Some(e) => Err(format!("value {value:?}: {e}")),
    }
}

/// Parse `--node-label key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid node label {text:?}: expected key=value"))?;
    check_key(key).map_err(|e| format!("invalid node label {text:?}: {e}"))?;
    check_value(value).map_err(|e| format!("invalid node label {text:?}: {e}"))?;
    Ok((key.to_string(), value.to_string()))
}

/// Parse `--node-taint key[=value]:Effect`.
pub fn parse_taint(text: &str) -> Result<Taint, String> {
    let bad = |why: String| format!("invalid node taint {text:?}: {why}");
    let (kv, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("expected key=value:Effect".into()))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad(format!(
            "effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        )));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    check_key(key).map_err(bad)?;
    check_value(value).map_err(bad)?;
    Ok(Taint {
        key: key.to_string(),
        value: value.to_string(),
        effect: effect.to_string(),
    })
}

/// Check a node name (a DNS subdomain, as upstream requires).
pub fn check_name(name: &str) -> Result<(), String> {
    match ledge_api::validation::name_is_dns_subdomain(name, false).first() {
        None => Ok(()),
        Some(e) => Err(format!(
            "invalid node name {name:?}: {e} (choose one with --node-name)"
        )),
    }
}

/// What the agent registers.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// User labels (`--node-label`).
    pub labels: BTreeMap<String, String>,
    /// Taints to register with (`--node-taint`).
    pub taints: Vec<Taint>,
    /// The runtimes the agent offers (`node.ledge.dev/runtime.<name>=true`).
    pub runtimes: Vec<&'static str>,
}

impl NodeSpec {
    /// Every label the agent owns on its Node: the well-known ones, then the user's.
    pub fn labels(&self, architecture: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("kubernetes.io/hostname".into(), json!(self.name));
        m.insert("kubernetes.io/os".into(), json!("linux"));
        m.insert("kubernetes.io/arch".into(), json!(architecture));
        m.insert("beta.kubernetes.io/os".into(), json!("linux"));
        m.insert("beta.kubernetes.io/arch".into(), json!(architecture));
        for rt in &self.runtimes {
            m.insert(format!("{RUNTIME_LABEL_PREFIX}{rt}"), json!("true"));
        }
        for (k, v) in &self.labels {
            m.insert(k.clone(), json!(v));
        }
        m
    }

    /// The Node to create.
    pub fn object(&self, architecture: &str, status: Value) -> Value {
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels(architecture)},
            "spec": {},
            "status": status,
        });
        if !self.taints.is_empty() {
            node["spec"]["taints"] =
                json!(self.taints.iter().map(Taint::to_json).collect::<Vec<_>>());
        }
        node
    }
}

/// Register the node: create it, or add this agent's labels to the existing one (keeping
/// everything else, taints included, as an administrator may have changed them). Returns the
/// Node as stored.
pub async fn register(
    client: &dyn Client,
    spec: &NodeSpec,
    architecture: &str,
    status: Value,
) -> Result<Value, ApiError> {
    for _ in 0..5 {
        let Some(existing) = client.get(&kinds::NODE, None, &spec.name).await? else {
            match client
                .create(
                    &kinds::NODE,
                    None,
                    spec.object(architecture, status.clone()),
                )
                .await
            {
                Ok(created) => return Ok(created),
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        };
        let wanted = spec.labels(architecture);
        let current = existing
            .at("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if wanted.iter().all(|(k, v)| current.get(k) == Some(v)) {
            return Ok(existing);
        }
        let mut updated = existing.clone();
        let mut labels = current;
        labels.extend(wanted);
        updated["metadata"]["labels"] = Value::Object(labels);
        match client.update(&kinds::NODE, None, updated).await {
            Ok(stored) => return Ok(stored),
            // Someone else wrote it meanwhile: read it again.
            Err(e) if e.code == 409 || e.code == 404 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        format!(
            "node {:?} kept changing while it was being registered",
            spec.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_taints_parse_like_kubelet_flags() {
        assert_eq!(
            parse_label("site=berlin"),
            Ok(("site".to_string(), "berlin".to_string()))
        );
        assert_eq!(
            parse_label("example.com/tier="),
            Ok(("example.com/tier".to_string(), String::new()))
        );
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("bad key=x").is_err());
        assert!(parse_label("k=white space").is_err());
        assert_eq!(
            parse_taint("ledge.dev/e2e-agent=true:NoSchedule"),
            Ok(Taint {
                key: "ledge.dev/e2e-agent".into(),
                value: "true".into(),
                effect: "NoSchedule".into()
            })
        );
        assert_eq!(
            parse_taint("dedicated:NoExecute").map(|t| t.to_json()),
            Ok(json!({"key": "dedicated", "effect": "NoExecute"}))
        );
        assert!(parse_taint("k=v").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert!(check_name("edge-1").is_ok());
        assert!(check_name("Edge_1").is_err());
    }

    #[test]
    fn the_node_carries_the_well_known_and_user_labels() {
        let spec = NodeSpec {
            name: "edge-1".into(),
            labels: BTreeMap::from([("site".to_string(), "berlin".to_string())]),
            taints: vec![Taint {
                key: "k".into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            }],
            runtimes: vec!["process"],
        };
        let node = spec.object("arm64", json!({}));
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
        assert_eq!(labels["node.ledge.dev/runtime.process"], "true");
        assert_eq!(labels["site"], "berlin");
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": "k", "effect": "NoSchedule"}])
        );
    }
}
