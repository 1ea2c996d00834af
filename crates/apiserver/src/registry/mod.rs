//! The registry: which resources are served and how each kind behaves. One generic pipeline
//! (`crate::handlers`) does all CRUD; a kind contributes only its [`Strategy`]: defaults,
//! validation, and how it prints as a table (upstream `pkg/registry/<group>/<resource>/strategy.go`).
//! Custom resources are added and removed at run time as their CRDs come and go.

pub mod apps;
pub mod certificates;
pub mod core;
pub mod crd;
pub mod generic;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ledge_api::{ResourceDef, StatusCause};
use serde_json::Value;

use crate::table::Column;

/// A kind's behaviour. Every method has a sensible generic default.
pub trait Strategy: Send + Sync {
    /// Fill defaults on create and update (e.g. a Service's `type: ClusterIP`).
    fn defaults(&self, _obj: &mut Value) {}

    /// Kind-specific validation; `old` is set on update. Generic metadata checks run separately.
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        Vec::new()
    }

    /// Whether names must be DNS-1123 labels (namespaces, services) rather than subdomains.
    fn name_is_label(&self) -> bool {
        false
    }

    /// Table columns (`kubectl get`); the Name column comes first and is added by the caller.
    fn columns(&self) -> Vec<Column> {
        Vec::new()
    }

    /// Cells for [`Strategy::columns`], in order.
    fn cells(&self, _obj: &Value) -> Vec<Value> {
        Vec::new()
    }

    /// Whether tables get an Age column after [`Strategy::columns`] (upstream prints Age for
    /// every built-in kind, and for a custom resource only when its CRD declares no columns).
    fn default_age(&self) -> bool {
        true
    }

    /// Whether this kind bumps `metadata.generation` on spec changes.
    fn tracks_generation(&self) -> bool {
        false
    }
}

/// One served resource: its definition and behaviour.
pub struct Resource {
    /// Names, scope, subresources.
    pub def: ResourceDef,
    /// Kind behaviour.
    pub strategy: Arc<dyn Strategy>,
    /// Whether the resource is a custom resource (served from a CRD).
    pub custom: bool,
}

type Key = (String, String, String);

/// Every resource the server serves, built-in and custom.
#[derive(Default)]
pub struct Registry {
    by_path: RwLock<HashMap<Key, Arc<Resource>>>,
    order: RwLock<Vec<Arc<Resource>>>,
}

impl Registry {
    /// The registry with every built-in kind.
    pub fn with_builtins() -> Self {
        let reg = Self::default();
        for def in ledge_api::resource::builtin_resources() {
            let strategy = strategy_for(&def);
            reg.add(Resource {
                def,
                strategy,
                custom: false,
            });
        }
        reg
    }

    /// Serve a resource (replacing one at the same group/version/plural).
    pub fn add(&self, res: Resource) {
        let mut by_path = self.by_path.write().unwrap_or_else(|p| p.into_inner());
        let mut order = self.order.write().unwrap_or_else(|p| p.into_inner());
        insert(&mut by_path, &mut order, res);
    }

    /// Stop serving a custom resource group/plural (all versions).
    pub fn remove_custom(&self, group: &str, plural: &str) {
        self.replace_custom(group, plural, Vec::new());
    }

    /// Serve exactly `served` for a custom resource group/plural, in one step: a request that
    /// races a CRD update finds either the old versions or the new ones, never neither (a
    /// status write on the CRD must not make its resources 404 for a moment).
    pub fn replace_custom(&self, group: &str, plural: &str, served: Vec<Resource>) {
        let mut by_path = self.by_path.write().unwrap_or_else(|p| p.into_inner());
        let mut order = self.order.write().unwrap_or_else(|p| p.into_inner());
        by_path.retain(|(g, _, p), r| !(r.custom && g == group && p == plural));
        order.retain(|r| !(r.custom && r.def.group == group && r.def.plural == plural));
        for res in served {
            insert(&mut by_path, &mut order, res);
        }
    }

    /// Find a resource by path segments.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        let by_path = self.by_path.read().unwrap_or_else(|p| p.into_inner());
        by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Find a resource by group and kind (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<Resource>> {
        self.all()
            .into_iter()
            .find(|r| r.def.group == group && r.def.kind == kind)
    }

    /// Every resource, in registration order.
    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.order.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Put `res` in both indexes, replacing any resource at its group/version/plural.
fn insert(
    by_path: &mut HashMap<Key, Arc<Resource>>,
    order: &mut Vec<Arc<Resource>>,
    res: Resource,
) {
    let res = Arc::new(res);
    let key = (
        res.def.group.clone(),
        res.def.version.clone(),
        res.def.plural.clone(),
    );
    order.retain(|r| (&r.def.group, &r.def.version, &r.def.plural) != (&key.0, &key.1, &key.2));
    order.push(res.clone());
    by_path.insert(key, res);
}

fn strategy_for(def: &ResourceDef) -> Arc<dyn Strategy> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", plural) => core::strategy(plural),
        ("apps", plural) => apps::strategy(plural),
        ("batch", plural) => apps::batch_strategy(plural),
        ("apiextensions.k8s.io", "customresourcedefinitions") => Arc::new(crd::CrdStrategy),
        ("certificates.k8s.io", "certificatesigningrequests") => Arc::new(certificates::Csrs),
        _ => Arc::new(generic::Generic),
    }
}
