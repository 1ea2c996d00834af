//! The `paths` of a group-version document: for every resource, the operations upstream
//! publishes (list, create, get, replace, patch, delete; the all-namespaces list; `status` and
//! `scale`), each tagged with `x-kubernetes-action` and `x-kubernetes-group-version-kind`.
//!
//! What clients read here: kubectl's field-validation check (cli-runtime
//! `query_param_verifier_v3.go`) takes the *first* PATCH operation with the object's GVK and
//! looks for a `fieldValidation` query parameter, so every PATCH operation carries the same
//! parameters; kubectl apply computes a strategic merge patch from these schemas only when that
//! PATCH operation lists `application/strategic-merge-patch+json` (built-in kinds, whose
//! schemas carry `x-kubernetes-patch-merge-key`/`-strategy`); `kubectl explain` finds a
//! resource's GVK on its list path (kubectl 1.27 only looks at the cluster-wide list path,
//! `/api/v1/pods`, which namespaced resources therefore also publish).

use ledge_api::Subresource;
use serde_json::{Map, Value, json};

use crate::registry::Resource;

const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";

/// A `$ref` to a component schema.
pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}});
    if !description.is_empty() {
        p["description"] = json!(description);
    }
    p
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

/// The query parameters of a write (POST, PUT; PATCH adds `force`).
fn write_params(patch: bool) -> Value {
    let mut params = vec![
        query(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted.",
        ),
        query(
            "fieldManager",
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query("fieldValidation", "string", FIELD_VALIDATION),
    ];
    if patch {
        params.push(query(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests.",
        ));
    }
    Value::Array(params)
}

fn ok(schema: Option<&str>) -> Value {
    match schema {
        Some(name) => {
            json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref(name)}}}})
        }
        None => json!({"200": {"description": "OK"}}),
    }
}

/// The schema names a resource's operations refer to.
pub struct Names<'a> {
    /// The object's schema, if known.
    pub object: Option<&'a str>,
    /// The list's schema, if known.
    pub list: Option<&'a str>,
    /// The `autoscaling/v1 Scale` schema, if known.
    pub scale: Option<&'a str>,
}

fn op(action: &str, gvk: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("x-kubernetes-action".into(), json!(action));
    m.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
    m
}

/// `get`, `put` and `patch` of an object (or of its `status`/`scale` view).
fn object_ops(gvk: &Value, schema: Option<&str>, smp: bool) -> Map<String, Value> {
    let mut patch_types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if smp {
        patch_types.push("application/strategic-merge-patch+json");
    }
    patch_types.push("application/apply-patch+yaml");
    let patch_schema = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    let content: Map<String, Value> = patch_types
        .into_iter()
        .map(|t| (t.to_string(), json!({"schema": patch_schema})))
        .collect();
    let body = schema.map_or(json!({"type": "object"}), schema_ref);

    let mut get = op("get", gvk);
    get.insert("responses".into(), ok(schema));
    let mut put = op("put", gvk);
    put.insert("parameters".into(), write_params(false));
    put.insert(
        "requestBody".into(),
        json!({"content": {"application/json": {"schema": body}}, "required": true}),
    );
    put.insert("responses".into(), ok(schema));
    let mut patch = op("patch", gvk);
    patch.insert("parameters".into(), write_params(true));
    patch.insert(
        "requestBody".into(),
        json!({"content": content, "required": true}),
    );
    patch.insert("responses".into(), ok(schema));

    let mut item = Map::new();
    item.insert("get".into(), Value::Object(get));
    item.insert("put".into(), Value::Object(put));
    item.insert("patch".into(), Value::Object(patch));
    item
}

/// Add every path of `res` to `paths`.
pub fn add(paths: &mut Map<String, Value>, res: &Resource, names: &Names<'_>) {
    let def = &res.def;
    let base = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let ns = if def.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let smp = !res.custom;
    let mut scope_params = Vec::new();
    if def.namespaced {
        scope_params.push(path_param("namespace"));
    }
    let with_name = {
        let mut p = scope_params.clone();
        p.push(path_param("name"));
        Value::Array(p)
    };

    let mut list = op("list", &gvk);
    list.insert("responses".into(), ok(names.list));
    let mut post = op("post", &gvk);
    post.insert("parameters".into(), write_params(false));
    let body = names.object.map_or(json!({"type": "object"}), schema_ref);
    post.insert(
        "requestBody".into(),
        json!({"content": {"application/json": {"schema": body}}, "required": true}),
    );
    post.insert("responses".into(), ok(names.object));
    let mut delete_collection = op("deletecollection", &gvk);
    delete_collection.insert(
        "responses".into(),
        ok(Some("io.k8s.apimachinery.pkg.apis.meta.v1.Status")),
    );
    let mut collection = Map::new();
    collection.insert("get".into(), Value::Object(list.clone()));
    collection.insert("post".into(), Value::Object(post));
    collection.insert("delete".into(), Value::Object(delete_collection));
    collection.insert("parameters".into(), Value::Array(scope_params));
    paths.insert(
        format!("{base}{ns}/{}", def.plural),
        Value::Object(collection),
    );
    if def.namespaced {
        // The list across namespaces (`kubectl get pods -A`); kubectl 1.27 explain reads it.
        let mut all = Map::new();
        all.insert("get".into(), Value::Object(list));
        paths.insert(format!("{base}/{}", def.plural), Value::Object(all));
    }

    let mut item = object_ops(&gvk, names.object, smp);
    let mut delete = op("delete", &gvk);
    delete.insert(
        "requestBody".into(),
        json!({"content": {"application/json": {"schema": schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")}}}),
    );
    delete.insert("responses".into(), ok(names.object));
    item.insert("delete".into(), Value::Object(delete));
    item.insert("parameters".into(), with_name.clone());
    let item_path = format!("{base}{ns}/{}/{{name}}", def.plural);
    if def.has(Subresource::Status) {
        let mut status = object_ops(&gvk, names.object, smp);
        status.insert("parameters".into(), with_name.clone());
        paths.insert(format!("{item_path}/status"), Value::Object(status));
    }
    if def.has(Subresource::Scale) {
        let scale_gvk = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        let mut scale = object_ops(&scale_gvk, names.scale, smp);
        scale.insert("parameters".into(), with_name);
        paths.insert(format!("{item_path}/scale"), Value::Object(scale));
    }
    paths.insert(item_path, Value::Object(item));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn every_patch_operation_offers_field_validation() {
        let reg = Registry::with_builtins();
        let mut paths = Map::new();
        for r in reg.all() {
            let names = Names {
                object: None,
                list: None,
                scale: None,
            };
            add(&mut paths, &r, &names);
        }
        let deploy = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            deploy["patch"]["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert!(paths.contains_key("/apis/apps/v1/deployments"));
        assert!(
            paths.contains_key("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale")
        );
        for (path, item) in &paths {
            if let Some(patch) = item.get("patch") {
                let params = patch["parameters"].as_array().cloned().unwrap_or_default();
                assert!(
                    params.iter().any(|p| p["name"] == "fieldValidation"),
                    "{path} lacks fieldValidation"
                );
                let smp = patch["requestBody"]["content"]
                    .get("application/strategic-merge-patch+json")
                    .is_some();
                assert!(
                    smp,
                    "{path}: built-in kinds advertise strategic merge patch"
                );
            }
        }
    }
}
