//! `/openapi/v3`: the index of group-versions and one document per group-version. Each
//! resource's PATCH operation carries `x-kubernetes-group-version-kind` and the
//! `fieldValidation` parameter, which is what kubectl reads to decide that the server validates
//! fields itself (kube-api.md §1.3). Built-in kinds do not advertise strategic merge patch
//! here, so kubectl computes it from its compiled-in types.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::registry::{Registry, Resource};

pub mod v2;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn by_gv(reg: &Registry) -> BTreeMap<String, Vec<Arc<Resource>>> {
    let mut out: BTreeMap<String, Vec<Arc<Resource>>> = BTreeMap::new();
    for r in reg.all() {
        out.entry(gv_path(&r.def.group, &r.def.version))
            .or_default()
            .push(r);
    }
    out
}

/// The `/openapi/v3` index.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (gv, resources) in by_gv(reg) {
        let doc = serde_json::to_vec(&document(&resources)).unwrap_or_default();
        let hash = format!("{:X}", Sha256::digest(&doc));
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", &hash[..32])}),
        );
    }
    json!({"paths": paths})
}

/// The document for one group-version path (`api/v1`, `apis/apps/v1`), if served.
pub fn group_version(reg: &Registry, gv: &str) -> Option<Value> {
    by_gv(reg).get(gv).map(|rs| document(rs))
}

fn document(resources: &[Arc<Resource>]) -> Value {
    let mut paths = Map::new();
    for r in resources {
        let base = if r.def.group.is_empty() {
            format!("/api/{}", r.def.version)
        } else {
            format!("/apis/{}/{}", r.def.group, r.def.version)
        };
        let ns = if r.def.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = json!({"group": r.def.group, "version": r.def.version, "kind": r.def.kind});
        let patch_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        let body: Map<String, Value> = patch_types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": {"type": "object"}})))
            .collect();
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        let item = json!({
            "get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
            "put": {"x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk,
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]},
            "patch": {"x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                      "parameters": params, "requestBody": {"content": Value::Object(body)}},
            "delete": {"x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk},
        });
        let collection = json!({
            "get": {"x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk},
            "post": {"x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk,
                     "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]},
        });
        paths.insert(format!("{base}{ns}/{}/{{name}}", r.def.plural), item);
        paths.insert(format!("{base}{ns}/{}", r.def.plural), collection);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}
