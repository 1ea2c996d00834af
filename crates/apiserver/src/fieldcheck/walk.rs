//! Unknown fields: the fields of a decoded object that upstream would drop while decoding it —
//! for built-in kinds, fields its Go types do not have (walked with the field table); for
//! custom resources, fields pruning would remove (properties the structural schema does not
//! list, unless `x-kubernetes-preserve-unknown-fields`; `metadata` of the object and of
//! `x-kubernetes-embedded-resource` objects checked against ObjectMeta). Paths are written like
//! upstream's strict decoder writes them (`spec.template.spec.containers[0].foo`).

use serde_json::{Map, Value};

use super::fields::{Fields, OBJECT_META, Shape};

/// Upstream reports at most this many strict decoding errors per request.
pub const MAX_ERRORS: usize = 100;

/// One walk over a value, collecting (and optionally removing) unknown fields.
pub struct Walk<'a> {
    fields: &'a Fields,
    /// Paths of the unknown fields found, in document order.
    pub unknown: Vec<String>,
    /// JSON pointers of every unknown field, reported or not (stored before).
    pub pointers: Vec<String>,
    prune: bool,
    patch: bool,
    path: String,
    pointer: String,
    pruned: bool,
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

impl<'a> Walk<'a> {
    /// A walk over objects (`patch: false`) or over merge/strategic/apply patch documents
    /// (`patch: true`: `$`-directives and `null` deletions are not fields). With `prune`, unknown
    /// fields are removed from the walked value.
    pub fn new(fields: &'a Fields, prune: bool, patch: bool) -> Self {
        Self {
            fields,
            unknown: Vec::new(),
            pointers: Vec::new(),
            prune,
            patch,
            path: String::new(),
            pointer: String::new(),
            pruned: false,
        }
    }

    /// Whether the walk removed anything from the value.
    pub fn pruned(&self) -> bool {
        self.pruned
    }

    /// Walk a value of the built-in definition `def`. Fields that `old` (the stored object) has
    /// at the same path are removed when pruning but not reported: they were accepted before.
    pub fn builtin(&mut self, v: &mut Value, def: &str, old: Option<&Value>) {
        let shape = self.fields.get(def);
        self.shape(v, shape, old);
    }

    /// Walk a custom resource against its version's structural schema.
    pub fn custom(&mut self, v: &mut Value, schema: &Value, old: Option<&Value>) {
        self.structural(v, schema, old, true);
    }

    /// Descend into `key`; returns where to truncate back to.
    fn push_key(&mut self, key: &str) -> (usize, usize) {
        let at = (self.path.len(), self.pointer.len());
        if at.0 > 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        self.pointer.push('/');
        self.pointer
            .push_str(&key.replace('~', "~0").replace('/', "~1"));
        at
    }

    /// Descend into list item `i`; returns where to truncate back to.
    fn push_index(&mut self, i: usize) -> (usize, usize) {
        let at = (self.path.len(), self.pointer.len());
        self.path.push_str(&format!("[{i}]"));
        self.pointer.push_str(&format!("/{i}"));
        at
    }

    fn pop(&mut self, at: (usize, usize)) {
        self.path.truncate(at.0);
        self.pointer.truncate(at.1);
    }

    fn report(&mut self, key: &str, known_before: bool) {
        let at = self.push_key(key);
        self.pointers.push(self.pointer.clone());
        if !known_before && self.unknown.len() < MAX_ERRORS {
            self.unknown.push(self.path.clone());
        }
        self.pop(at);
    }

    /// Whether `key` of a patch document is a directive or deletion rather than a field.
    fn not_a_field(&self, key: &str, v: &Value) -> bool {
        self.patch && (key.starts_with('$') || v.is_null())
    }

    fn remove(&mut self, obj: &mut Map<String, Value>, unknown: Vec<String>) {
        if self.prune && !unknown.is_empty() {
            self.pruned = true;
            for k in unknown {
                obj.shift_remove(&k);
            }
        }
    }

    fn shape(&mut self, v: &mut Value, shape: &Shape, old: Option<&Value>) {
        let fields = self.fields;
        match (shape, v) {
            (Shape::Ref(name), v) => self.shape(v, fields.get(name), old),
            (Shape::Object(known), Value::Object(obj)) => {
                let mut unknown = Vec::new();
                for (k, child) in obj.iter_mut() {
                    let old_child = old.and_then(|o| o.get(k));
                    match known.get(k) {
                        Some(sub) => {
                            let at = self.push_key(k);
                            self.shape(child, sub, old_child);
                            self.pop(at);
                        }
                        None if self.not_a_field(k, child) => {}
                        None => {
                            self.report(k, old_child.is_some());
                            unknown.push(k.clone());
                        }
                    }
                }
                self.remove(obj, unknown);
            }
            (Shape::Map(values), Value::Object(obj)) => {
                for (k, child) in obj.iter_mut() {
                    let at = self.push_key(k);
                    self.shape(child, values, old.and_then(|o| o.get(k)));
                    self.pop(at);
                }
            }
            (Shape::List(items), Value::Array(list)) => {
                for (i, child) in list.iter_mut().enumerate() {
                    let at = self.push_index(i);
                    self.shape(child, items, old.and_then(|o| o.get(i)));
                    self.pop(at);
                }
            }
            // Leaves, and values of the wrong type (validation reports those).
            _ => {}
        }
    }

    fn structural(&mut self, v: &mut Value, schema: &Value, old: Option<&Value>, embedded: bool) {
        if flag(schema, "x-kubernetes-int-or-string") {
            return;
        }
        match v {
            Value::Object(obj) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                let values = additional.filter(|a| a.is_object());
                let keep = flag(schema, "x-kubernetes-preserve-unknown-fields")
                    || additional.and_then(Value::as_bool) == Some(true);
                let meta = self.fields.get(OBJECT_META);
                let mut unknown = Vec::new();
                for (k, child) in obj.iter_mut() {
                    let old_child = old.and_then(|o| o.get(k));
                    let at = self.push_key(k);
                    if embedded && (k == "apiVersion" || k == "kind") {
                    } else if embedded && k == "metadata" {
                        self.shape(child, meta, old_child);
                    } else if let Some(sub) = props.and_then(|p| p.get(k)).or(values) {
                        let nested = flag(sub, "x-kubernetes-embedded-resource");
                        self.structural(child, sub, old_child, nested);
                    } else if !keep && !self.not_a_field(k, child) {
                        self.pop(at);
                        self.report(k, old_child.is_some());
                        unknown.push(k.clone());
                    }
                    self.pop(at);
                }
                self.remove(obj, unknown);
            }
            Value::Array(list) => {
                if let Some(items) = schema.get("items") {
                    let nested = flag(items, "x-kubernetes-embedded-resource");
                    for (i, child) in list.iter_mut().enumerate() {
                        let at = self.push_index(i);
                        self.structural(child, items, old.and_then(|o| o.get(i)), nested);
                        self.pop(at);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small table: a Thing with a spec holding a list of items, a map of ports, an
    /// int-or-string, opaque raw JSON, and metadata.
    fn table() -> Fields {
        Fields::from_value(
            json!({"v1/Thing": "Thing"}),
            json!({
                "Thing": ["o", {"apiVersion": 1, "kind": 1, "metadata": OBJECT_META, "spec": "Spec"}],
                "Spec": ["o", {
                    "replicas": 1,
                    "port": 1,
                    "raw": 1,
                    "items": ["l", "Item"],
                    "byName": ["m", "Item"],
                    "labels": ["m", 1],
                }],
                "Item": ["o", {"name": 1, "value": 1}],
                OBJECT_META: ["o", {"name": 1, "labels": ["m", 1], "annotations": ["m", 1]}],
            }),
        )
    }

    fn unknown(v: &mut Value, prune: bool, patch: bool) -> Vec<String> {
        let t = table();
        let mut w = Walk::new(&t, prune, patch);
        w.builtin(v, "Thing", None);
        w.unknown
    }

    #[test]
    fn finds_unknown_nested_fields_in_lists_and_maps() {
        let mut v = json!({
            "apiVersion": "v1", "kind": "Thing",
            "metadata": {"name": "a", "labels": {"x": "y"}, "unknownMeta": 1},
            "spec": {
                "replicas": 1, "foo": true,
                "port": "http", "raw": {"anything": {"goes": [1]}},
                "items": [{"name": "a"}, {"name": "b", "vaule": 2}],
                "byName": {"k": {"name": "a", "extra": 1}},
                "labels": {"free": "form"},
            },
            "status": {},
        });
        assert_eq!(
            unknown(&mut v, false, false),
            vec![
                "metadata.unknownMeta",
                "spec.foo",
                "spec.items[1].vaule",
                "spec.byName.k.extra",
                "status"
            ]
        );
        // Reporting alone leaves the value as it was.
        assert_eq!(v["spec"]["foo"], json!(true));
    }

    #[test]
    fn pruning_removes_what_was_reported_and_keeps_order() {
        let mut v = json!({"spec": {"a": 1, "replicas": 2, "b": 3, "port": 8080}});
        assert_eq!(unknown(&mut v, true, false), vec!["spec.a", "spec.b"]);
        assert_eq!(
            serde_json::to_string(&v).unwrap_or_default(),
            r#"{"spec":{"replicas":2,"port":8080}}"#
        );
    }

    #[test]
    fn patch_directives_and_deletions_are_not_fields() {
        let mut v = json!({"spec": {
            "$setElementOrder/items": [{"name": "a"}],
            "items": [{"$patch": "delete", "name": "a"}],
            "gone": null,
            "bad": 1,
        }});
        assert_eq!(unknown(&mut v, false, true), vec!["spec.bad"]);
        let mut v = json!({"spec": {"$retainKeys": ["replicas"]}});
        assert_eq!(unknown(&mut v, false, false), vec!["spec.$retainKeys"]);
    }

    #[test]
    fn fields_the_stored_object_had_are_not_reported() {
        let t = table();
        let old = json!({"spec": {"legacy": 1}});
        let mut v = json!({"spec": {"legacy": 1, "fresh": 2}});
        let mut w = Walk::new(&t, true, false);
        w.builtin(&mut v, "Thing", Some(&old));
        assert_eq!(w.unknown, vec!["spec.fresh"]);
        assert_eq!(v, json!({"spec": {}}));
    }

    #[test]
    fn pointers_name_every_unknown_field_for_removal() {
        let t = table();
        let old = json!({"spec": {"byName": {"a/b": {"stale": 1}}}});
        let mut v = json!({"spec": {"byName": {"a/b": {"stale": 1, "new~x": 2}}}});
        let mut w = Walk::new(&t, false, false);
        w.builtin(&mut v, "Thing", Some(&old));
        assert_eq!(w.unknown, vec!["spec.byName.a/b.new~x"]);
        assert_eq!(
            w.pointers,
            vec!["/spec/byName/a~1b/stale", "/spec/byName/a~1b/new~0x"]
        );
        assert!(!w.pruned());
    }

    #[test]
    fn upstream_deployment_fields() {
        let t = super::super::fields::table();
        let def = t.kind("apps/v1", "Deployment").unwrap_or("missing");
        let mut v = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a.b/c": "d"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}],
                         "resources": {"limits": {"cpu": "500m", "memory": 128}},
                         "livenessProbe": {"httpGet": {"port": "http", "path": "/"}},
                         "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
                        {"name": "side", "image": "busybox", "imagePullPolicy": "Always", "cpu": 1,
                         "env": [{"name": "B", "vaule": "x"}]},
                    ]},
                },
            },
            "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True", "bogus": 1}]},
        });
        let mut w = Walk::new(t, false, false);
        w.builtin(&mut v, def, None);
        assert_eq!(
            w.unknown,
            vec![
                "spec.template.spec.containers[1].cpu",
                "spec.template.spec.containers[1].env[0].vaule",
                "status.conditions[0].bogus",
            ]
        );
    }

    fn crd_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "port": {"x-kubernetes-int-or-string": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                         "properties": {"known": {"type": "object", "properties": {}}}},
                "env": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                             "properties": {"spec": {"type": "object"}}},
            }},
        }})
    }

    fn unknown_custom(v: &mut Value, prune: bool) -> Vec<String> {
        let t = table();
        let mut w = Walk::new(&t, prune, false);
        w.custom(v, &crd_schema(), None);
        w.unknown
    }

    #[test]
    fn custom_resources_report_what_pruning_would_drop() {
        let mut v = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "bogus": 1},
            "spec": {
                "size": 1, "colour": "red", "port": "http",
                "free": {"anything": {"nested": 1}, "known": {"x": 1}},
                "env": {"A": {"v": "1", "w": 2}},
                "list": [{"name": "a", "nmae": "b"}],
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "unknownSubMeta": 1}, "spec": {"x": 1}},
            },
            "extra": 1,
        });
        assert_eq!(
            unknown_custom(&mut v, true),
            vec![
                "metadata.bogus",
                "spec.colour",
                "spec.free.known.x",
                "spec.env.A.w",
                "spec.list[0].nmae",
                "spec.template.metadata.unknownSubMeta",
                "spec.template.spec.x",
                "extra",
            ]
        );
        assert_eq!(v["spec"]["free"]["anything"], json!({"nested": 1}));
        assert!(v.get("extra").is_none());
        assert!(v["spec"].get("colour").is_none());
    }

    #[test]
    fn preserve_unknown_fields_at_the_root_keeps_everything_but_metadata() {
        let t = table();
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let mut v = json!({"metadata": {"name": "a", "nope": 1}, "spec": {"a": 1}, "other": 2});
        let mut w = Walk::new(&t, false, false);
        w.custom(&mut v, &schema, None);
        assert_eq!(w.unknown, vec!["metadata.nope"]);
    }
}
