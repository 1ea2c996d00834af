//! `/openapi/v3`: the index of group-versions and one document per group-version, with
//! upstream's schemas (Kubernetes v1.32, descriptions and `x-kubernetes-*` extensions included)
//! for every built-in kind and each served CRD version's schema, so `kubectl explain` prints
//! upstream's documentation and `kubectl apply` computes strategic merge patches from them.
//! `/openapi/v2` (protobuf, [`v2`]) stays minimal: it only tells kubectl 1.27 that the server
//! validates fields itself.
//!
//! Documents are built per request from the compressed data in [`data`] and not kept: an idle
//! server carries no decoded schema. The index's hashes come from the data's digest and the
//! served resources, so listing it decodes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::registry::{Registry, Resource};

pub mod crd;
pub mod data;
pub mod paths;
pub mod v2;

/// Meta types every document's operations refer to.
const META_ROOTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
];

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

/// A hash of everything a group-version document is built from.
fn document_hash(cache: Option<&Cache>, gv: &str, resources: &[Arc<Resource>]) -> String {
    let mut h = Sha256::new();
    h.update(data::digest());
    h.update(gv.as_bytes());
    for r in resources {
        let d = &r.def;
        let subs: Vec<&str> = d.subresources.iter().map(|s| s.name()).collect();
        h.update(
            format!(
                "\n{}/{}/{}/{}/{}/{}/{}",
                d.group,
                d.version,
                d.kind,
                d.plural,
                d.namespaced,
                r.custom,
                subs.join(",")
            )
            .as_bytes(),
        );
        if r.custom {
            let schema = crd::schema_of(cache, r).unwrap_or(Value::Null);
            h.update(serde_json::to_vec(&schema).unwrap_or_default());
        }
    }
    let hex = format!("{:X}", h.finalize());
    hex[..32].to_string()
}

/// The `/openapi/v3` index. Custom resources' schemas come from the CRDs in `cache`.
pub fn index(reg: &Registry, cache: Option<&Cache>) -> Value {
    let mut paths = Map::new();
    for (gv, resources) in by_gv(reg) {
        let hash = document_hash(cache, &gv, &resources);
        paths.insert(
            gv.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// The document for one group-version path (`api/v1`, `apis/apps/v1`), if served.
pub fn group_version(reg: &Registry, cache: Option<&Cache>, gv: &str) -> Option<Value> {
    let resources = by_gv(reg).remove(gv)?;
    // Built on a short-lived thread: the few MB of transient allocations then come from that
    // thread's malloc arena, which shrinks back once the document is dropped, rather than
    // raising a request worker's arena for good (an idle server's memory is a goal).
    std::thread::scope(|s| s.spawn(|| document(cache, &resources)).join().ok())
}

fn document(cache: Option<&Cache>, resources: &[Arc<Resource>]) -> Value {
    let text = match data::text() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "openapi data unusable");
            String::new()
        }
    };
    let builtin = data::Schemas::parse(&text).unwrap_or_else(|e| {
        if !text.is_empty() {
            tracing::error!(error = %e, "openapi data unusable");
        }
        data::Schemas {
            kinds: BTreeMap::new(),
            schemas: BTreeMap::new(),
        }
    });
    let known = |api_version: &str, kind: &str| {
        builtin
            .kinds
            .get(&data::kind_key(api_version, kind))
            .map(String::as_str)
    };

    let mut paths = Map::new();
    let mut roots: Vec<&str> = META_ROOTS.to_vec();
    let mut custom = Map::new();
    for r in resources {
        let api_version = r.def.api_version();
        let scale = known("autoscaling/v1", "Scale");
        if r.custom {
            let [(list_name, list), (name, object)] = crd::components(r, crd::schema_of(cache, r));
            roots.extend([
                crd::OBJECT_META,
                "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
            ]);
            let names = paths::Names {
                object: Some(&name),
                list: Some(&list_name),
                scale,
            };
            paths::add(&mut paths, r, &names);
            custom.insert(name, object);
            custom.insert(list_name, list);
        } else {
            let names = paths::Names {
                object: known(&api_version, &r.def.kind),
                list: known(&api_version, &r.def.list_kind()),
                scale,
            };
            paths::add(&mut paths, r, &names);
            roots.extend(names.object);
            roots.extend(names.list);
        }
        if r.def.has(ledge_api::Subresource::Scale) {
            roots.extend(scale);
        }
    }

    let mut schemas = Map::new();
    let mut seen = BTreeSet::new();
    while let Some(name) = roots.pop() {
        if !seen.insert(name) {
            continue;
        }
        let Some(raw) = builtin.schemas.get(name) else {
            continue;
        };
        roots.extend(data::references(raw).filter(|r| !seen.contains(r)));
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(v) => {
                schemas.insert(name.to_string(), v);
            }
            Err(e) => tracing::error!(schema = name, error = %e, "openapi schema unusable"),
        }
    }
    schemas.extend(custom);
    schemas.sort_keys();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": data::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvk_schema<'a>(doc: &'a Value, group: &str, kind: &str) -> Option<&'a Value> {
        let want = json!({"group": group, "version": "v1", "kind": kind});
        doc["components"]["schemas"]
            .as_object()?
            .values()
            .find(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|a| a.contains(&want))
            })
    }

    #[test]
    fn core_document_has_upstream_schemas() {
        let reg = Registry::with_builtins();
        let doc = group_version(&reg, None, "api/v1").expect("api/v1 is served");
        let pod = gvk_schema(&doc, "", "Pod").expect("Pod schema");
        assert_eq!(
            pod["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let schemas = &doc["components"]["schemas"];
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert!(
            containers["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("List of containers belonging to the pod."))
        );
        // Every reference resolves inside the document.
        let text = doc.to_string();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap_or(0)];
            assert!(schemas.get(name).is_some(), "dangling {name}");
        }
        assert!(gvk_schema(&doc, "apps", "Deployment").is_none());
    }

    #[test]
    fn apps_document_has_scale_and_strategy() {
        let reg = Registry::with_builtins();
        let doc = group_version(&reg, None, "apis/apps/v1").expect("apps/v1 is served");
        assert!(gvk_schema(&doc, "autoscaling", "Scale").is_some());
        let spec = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(
            spec["properties"]["strategy"]["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        assert!(gvk_schema(&doc, "apps", "DeploymentList").is_some());
    }

    #[test]
    fn index_hashes_are_stable_and_per_document() {
        let reg = Registry::with_builtins();
        let a = index(&reg, None);
        let b = index(&reg, None);
        assert_eq!(a, b);
        let core = a["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or("");
        let apps = a["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or("");
        assert!(core.starts_with("/openapi/v3/api/v1?hash="), "{core}");
        assert_ne!(core.split('=').nth(1), apps.split('=').nth(1));
    }
}
