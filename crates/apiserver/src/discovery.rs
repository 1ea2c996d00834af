//! API discovery: aggregated v2 (`/api`, `/apis` with the apidiscovery Accept) and the legacy
//! documents (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`). Built from the
//! registry on each request, so custom resources appear as soon as their CRD is established.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;
use ledge_api::resource::STANDARD_VERBS;
use serde_json::{Value, json};

use crate::registry::{Registry, Resource};

/// Which aggregated discovery version the client asked for (`v2`, or `v2beta1` from kubectl
/// 1.26–1.29), in its order of preference; `None` means legacy discovery.
pub fn wants_aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())?;
    for clause in accept.split(',') {
        let params: Vec<&str> = clause.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

/// The response media type for an aggregated discovery version.
pub fn aggregated_media_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// One served version of a group and its resources.
type Version = (String, Vec<Arc<Resource>>);

/// Group name → versions (in order) → resources.
fn groups(reg: &Registry) -> BTreeMap<String, Vec<Version>> {
    let mut out: BTreeMap<String, Vec<Version>> = BTreeMap::new();
    for r in reg.all() {
        let versions = out.entry(r.def.group.clone()).or_default();
        match versions.iter_mut().find(|(v, _)| *v == r.def.version) {
            Some((_, list)) => list.push(r),
            None => versions.push((r.def.version.clone(), vec![r])),
        }
    }
    // Prefer the highest version first (v1 before v1beta1, v2 before v1), like upstream's order.
    for versions in out.values_mut() {
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.0)));
    }
    out
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let num_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major: u32 = rest[..num_end].parse().unwrap_or(0);
    let tail = &rest[num_end..];
    let (stage, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, minor)
}

fn scope(r: &Resource) -> &'static str {
    if r.def.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

fn sub_kind(r: &Resource, sub: ledge_api::Subresource) -> Value {
    use ledge_api::Subresource::*;
    match sub {
        Scale => json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
        Binding => json!({"group": "", "version": "v1", "kind": "Binding"}),
        Eviction => json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
        Log | Exec => {
            json!({"group": "", "version": "v1", "kind": if sub == Log { "Pod" } else { "PodExecOptions" }})
        }
        Status | Finalize => {
            json!({"group": r.def.group, "version": r.def.version, "kind": r.def.kind})
        }
    }
}

fn aggregated_resource(r: &Resource) -> Value {
    let subs: Vec<Value> = r
        .def
        .subresources
        .iter()
        .map(|s| json!({"subresource": s.name(), "responseKind": sub_kind(r, *s), "verbs": s.verbs()}))
        .collect();
    let mut v = json!({
        "resource": r.def.plural,
        "responseKind": {"group": r.def.group, "version": r.def.version, "kind": r.def.kind},
        "scope": scope(r),
        "singularResource": r.def.singular,
        "verbs": STANDARD_VERBS,
    });
    if !r.def.short_names.is_empty() {
        v["shortNames"] = json!(r.def.short_names);
    }
    if !r.def.categories.is_empty() {
        v["categories"] = json!(r.def.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = Value::Array(subs);
    }
    v
}

/// Aggregated discovery for `/api` (core only) or `/apis` (every named group).
pub fn aggregated(reg: &Registry, core: bool, version: &str) -> Value {
    let items: Vec<Value> = groups(reg)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|(v, rs)| {
                    json!({"version": v, "freshness": "Current", "resources": rs.iter().map(|r| aggregated_resource(r)).collect::<Vec<_>>()})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items})
}

/// Legacy `/api`.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn group_doc(g: &str, versions: &[Version]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|(v, _)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(json!({}));
    json!({"name": g, "versions": vs, "preferredVersion": preferred})
}

/// Legacy `/apis`.
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = groups(reg)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`, if served.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let all = groups(reg);
    let versions = all.get(name).filter(|_| !name.is_empty())?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`, if served.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<Arc<Resource>> = reg
        .all()
        .into_iter()
        .filter(|r| r.def.group == group && r.def.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &rs {
        let mut v = json!({
            "name": r.def.plural, "singularName": r.def.singular, "namespaced": r.def.namespaced,
            "kind": r.def.kind, "verbs": STANDARD_VERBS,
        });
        if !r.def.short_names.is_empty() {
            v["shortNames"] = json!(r.def.short_names);
        }
        if !r.def.categories.is_empty() {
            v["categories"] = json!(r.def.categories);
        }
        resources.push(v);
        for s in &r.def.subresources {
            let k = sub_kind(r, *s);
            let mut sv = json!({
                "name": format!("{}/{}", r.def.plural, s.name()), "singularName": "", "namespaced": r.def.namespaced,
                "kind": k["kind"], "verbs": s.verbs(),
            });
            if k["group"] != json!(r.def.group) || k["version"] != json!(r.def.version) {
                sv["group"] = k["group"].clone();
                sv["version"] = k["version"].clone();
            }
            resources.push(sv);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_upstream() {
        let mut v = vec!["v1beta1", "v1", "v2alpha1", "v2"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v1beta1", "v2alpha1"]);
    }

    #[test]
    fn discovery_lists_builtins_with_short_names() {
        let reg = Registry::with_builtins();
        let core = aggregated(&reg, true, "v2");
        let resources = &core["items"][0]["versions"][0]["resources"];
        let cm = resources
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "configmaps")
            .unwrap();
        assert_eq!(cm["shortNames"], json!(["cm"]));
        let apps = resource_list(&reg, "apps", "v1").unwrap();
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert!(group(&reg, "apps").is_some());
        assert!(group(&reg, "nope").is_none());
    }
}
