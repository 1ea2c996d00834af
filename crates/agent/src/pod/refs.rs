//! The ConfigMaps and Secrets a pod references (env, envFrom, volumes), fetched before its
//! containers start so env and volume contents are computed from one consistent snapshot.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::{Client, kinds};
use serde_json::Value;

use super::spec::PodSpec;

/// The referenced objects of one pod; `None` for one that does not exist.
#[derive(Clone, Debug, Default)]
pub struct Refs {
    config_maps: HashMap<String, Option<Value>>,
    secrets: HashMap<String, Option<Value>>,
}

/// Whether a reference is to a ConfigMap or a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl RefKind {
    fn lower(self) -> &'static str {
        match self {
            RefKind::ConfigMap => "configmap",
            RefKind::Secret => "secret",
        }
    }

    fn title(self) -> &'static str {
        match self {
            RefKind::ConfigMap => "ConfigMap",
            RefKind::Secret => "Secret",
        }
    }
}

impl Refs {
    /// Fetch everything `spec` references in `namespace`.
    ///
    /// # Errors
    /// The API could not be asked (not-found is not an error: it is recorded as `None`).
    pub async fn fetch(
        client: &dyn Client,
        namespace: &str,
        spec: &PodSpec,
    ) -> Result<Self, ApiError> {
        let (cms, secrets) = names(spec);
        let mut refs = Refs::default();
        for name in cms {
            let obj = client
                .get(&kinds::CONFIG_MAP, Some(namespace), &name)
                .await?;
            refs.config_maps.insert(name, obj);
        }
        for name in secrets {
            let obj = client.get(&kinds::SECRET, Some(namespace), &name).await?;
            refs.secrets.insert(name, obj);
        }
        Ok(refs)
    }

    /// Build from objects at hand (tests, the node store).
    pub fn from_objects(config_maps: Vec<Value>, secrets: Vec<Value>) -> Self {
        let name = |o: &Value| {
            super::spec::str_at(o, "/metadata/name")
                .unwrap_or("")
                .to_string()
        };
        Refs {
            config_maps: config_maps
                .into_iter()
                .map(|o| (name(&o), Some(o)))
                .collect(),
            secrets: secrets.into_iter().map(|o| (name(&o), Some(o))).collect(),
        }
    }

    /// Every key → value of one object (Secret values decoded), or why not. `optional`
    /// references that are missing give an empty map.
    ///
    /// # Errors
    /// The upstream message: `configmap "x" not found`.
    pub fn data(
        &self,
        kind: RefKind,
        name: &str,
        optional: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        let obj = match kind {
            RefKind::ConfigMap => self.config_maps.get(name),
            RefKind::Secret => self.secrets.get(name),
        };
        let Some(Some(obj)) = obj else {
            if optional {
                return Ok(Vec::new());
            }
            return Err(format!("{} \"{name}\" not found", kind.lower()));
        };
        let mut out = Vec::new();
        if let Some(data) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                let text = v.as_str().unwrap_or("");
                let bytes = match kind {
                    RefKind::ConfigMap => text.as_bytes().to_vec(),
                    RefKind::Secret => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| format!("secret \"{name}\" key {k} is not base64: {e}"))?,
                };
                out.push((k.clone(), bytes));
            }
        }
        if kind == RefKind::ConfigMap
            && let Some(data) = obj.get("binaryData").and_then(Value::as_object)
        {
            for (k, v) in data {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or(""))
                    .map_err(|e| {
                        format!("configmap \"{name}\" binaryData {k} is not base64: {e}")
                    })?;
                out.push((k.clone(), bytes));
            }
        }
        Ok(out)
    }

    /// One key of one object.
    ///
    /// # Errors
    /// The upstream messages for a missing object or key (unless `optional`).
    pub fn key(
        &self,
        kind: RefKind,
        namespace: &str,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<Vec<u8>>, String> {
        let data = self.data(kind, name, optional)?;
        match data.into_iter().find(|(k, _)| k == key) {
            Some((_, v)) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {key} in {} {namespace}/{name}",
                kind.title()
            )),
        }
    }
}

/// The ConfigMap and Secret names a pod spec references.
pub fn names(spec: &PodSpec) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for c in spec.init_containers.iter().chain(&spec.containers) {
        for e in &c.env {
            let Some(from) = &e.value_from else { continue };
            if let Some(n) = from.at("/configMapKeyRef/name").and_then(Value::as_str) {
                cms.insert(n.to_string());
            }
            if let Some(n) = from.at("/secretKeyRef/name").and_then(Value::as_str) {
                secrets.insert(n.to_string());
            }
        }
        for f in &c.env_from {
            if let Some(r) = &f.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for v in &spec.volumes {
        if let Some(n) = v
            .source
            .get("configMap")
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str)
        {
            cms.insert(n.to_string());
        }
        if let Some(n) = v
            .source
            .get("secret")
            .and_then(|s| s.get("secretName"))
            .and_then(Value::as_str)
        {
            secrets.insert(n.to_string());
        }
        let sources = v
            .source
            .get("projected")
            .and_then(|p| p.get("sources"))
            .and_then(Value::as_array);
        for s in sources.into_iter().flatten() {
            if let Some(n) = s.at("/configMap/name").and_then(Value::as_str) {
                cms.insert(n.to_string());
            }
            if let Some(n) = s.at("/secret/name").and_then(Value::as_str) {
                secrets.insert(n.to_string());
            }
        }
    }
    (cms, secrets)
}
