//! Custom resources in the OpenAPI documents: each served CRD version's `openAPIV3Schema`
//! becomes a component named like upstream's (`com.example.stable.v1.CronTab` for group
//! `stable.example.com`), with `apiVersion`, `kind`, `metadata` (→ ObjectMeta) and the
//! `x-kubernetes-group-version-kind` that `kubectl explain` and kubectl's validation look for,
//! plus its `<Kind>List` (upstream apiextensions-apiserver `pkg/controller/openapi/builder`).
//!
//! The schemas are read from the stored CRD objects in the watch cache at request time.

use ledge_api::Pointer as _;
use serde_json::{Value, json};

use super::paths::schema_ref;
use crate::cache::Cache;
use crate::registry::Resource;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// Upstream's descriptions of the fields every object has (as on the built-in kinds).
const API_VERSION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Upstream's ObjectMeta and ListMeta definition names.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// The `openAPIV3Schema` of a custom resource version, from the CRD stored in `cache`.
pub fn version_schema(cache: &Cache, group: &str, plural: &str, version: &str) -> Option<Value> {
    let crd = cache.get(&format!("{CRD_PREFIX}{plural}.{group}"))?;
    crd.at("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .at("/schema/openAPIV3Schema")
        .cloned()
}

/// The schema of a custom resource version, from the CRD in `cache` (none without a cache).
pub fn schema_of(cache: Option<&Cache>, res: &Resource) -> Option<Value> {
    version_schema(cache?, &res.def.group, &res.def.plural, &res.def.version)
}

/// Upstream's component name for a custom kind: the group reversed, then version and kind.
pub fn component_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The components of one custom resource version: the object and its list, as
/// `(name, schema)` pairs.
pub fn components(res: &Resource, schema: Option<Value>) -> [(String, Value); 2] {
    let def = &res.def;
    let name = component_name(&def.group, &def.version, &def.kind);
    let gvk = |kind: &str| json!([{"group": def.group, "version": def.version, "kind": kind}]);
    let mut object = match schema {
        Some(Value::Object(m)) => Value::Object(m),
        _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    if object.get("type").is_none() {
        object["type"] = json!("object");
    }
    if !object.get("properties").is_some_and(Value::is_object) {
        object["properties"] = json!({});
    }
    object["properties"]["apiVersion"] = json!({"description": API_VERSION, "type": "string"});
    object["properties"]["kind"] = json!({"description": KIND, "type": "string"});
    object["properties"]["metadata"] =
        json!({"allOf": [schema_ref(OBJECT_META)], "description": METADATA});
    object["x-kubernetes-group-version-kind"] = gvk(&def.kind);

    let list_kind = def.list_kind();
    let list = json!({
        "description": format!("{list_kind} is a list of {}", def.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION, "type": "string"},
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md", def.plural),
                "type": "array",
                "items": schema_ref(&name),
            },
            "kind": {"description": KIND, "type": "string"},
            "metadata": {"allOf": [schema_ref(LIST_META)], "description": LIST_METADATA},
        },
        "x-kubernetes-group-version-kind": gvk(&list_kind),
    });
    [(format!("{name}List"), list), (name, object)]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use ledge_api::ResourceDef;

    fn widget() -> Resource {
        Resource {
            def: ResourceDef {
                group: "stable.example.com".into(),
                version: "v1".into(),
                kind: "Widget".into(),
                plural: "widgets".into(),
                singular: "widget".into(),
                namespaced: true,
                short_names: vec![],
                categories: vec![],
                subresources: vec![],
            },
            strategy: Arc::new(crate::registry::generic::Generic),
            custom: true,
        }
    }

    #[test]
    fn names_reverse_the_group() {
        assert_eq!(
            component_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn components_wrap_the_crd_schema() {
        let schema = json!({"type": "object", "description": "A widget.", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}});
        let [(list_name, list), (name, object)] = components(&widget(), Some(schema));
        assert_eq!(name, "com.example.stable.v1.Widget");
        assert_eq!(list_name, "com.example.stable.v1.WidgetList");
        assert_eq!(object["description"], "A widget.");
        assert_eq!(
            object["properties"]["spec"]["properties"]["size"]["type"],
            "integer"
        );
        assert_eq!(
            object["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert_eq!(
            object["x-kubernetes-group-version-kind"],
            json!([{"group": "stable.example.com", "version": "v1", "kind": "Widget"}])
        );
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            format!("#/components/schemas/{name}")
        );
    }
}
