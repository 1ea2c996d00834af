//! The structural-schema subset of OpenAPI v3 that CRDs use: type checks, required fields,
//! enums, bounds, defaults and pruning of unknown fields (upstream apiextensions-apiserver
//! `pkg/apiserver/schema`). Field paths in errors are dotted like upstream's (`spec.size`).

use serde_json::{Map, Value, json};

/// A schema violation at a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Dotted field path.
    pub field: String,
    /// Upstream cause type.
    pub reason: &'static str,
    /// Message after the field path.
    pub message: String,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name) == Some(&json!(true))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Check the parts of "structural" that matter for serving: every node says its type (unless it
/// is int-or-string or preserves unknown fields). Returns (path suffix, message) pairs.
pub fn check_structural(schema: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk_structural(schema, "", true, &mut out);
    out
}

fn walk_structural(s: &Value, path: &str, root: bool, out: &mut Vec<(String, String)>) {
    let Some(m) = s.as_object() else {
        out.push((path.to_string(), "must be an object".into()));
        return;
    };
    let typed = m.contains_key("type")
        || flag(s, "x-kubernetes-int-or-string")
        || flag(s, "x-kubernetes-preserve-unknown-fields");
    if !typed {
        out.push((
            format!("{path}.type"),
            "Required value: must not be empty for specified object fields".into(),
        ));
    }
    if root && m.get("type").is_some_and(|t| t != "object") {
        out.push((format!("{path}.type"), "must be object at the root".into()));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk_structural(v, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(items) = m.get("items") {
        walk_structural(items, &format!("{path}.items"), false, out);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|v| v.is_object()) {
        walk_structural(ap, &format!("{path}.additionalProperties"), false, out);
    }
}

/// Apply `default`s and drop fields the schema does not know (unless it preserves them). At
/// the root, `apiVersion`, `kind` and `metadata` are always kept.
pub fn apply_defaults_and_prune(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                for (k, ps) in props {
                    if !obj.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        obj.insert(k.clone(), d.clone());
                    }
                }
            }
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let allow_any = schema.get("additionalProperties") == Some(&json!(true));
            let keys: Vec<String> = obj.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(sub) => {
                        if let Some(child) = obj.get_mut(&k) {
                            apply_defaults_and_prune(child, sub, false);
                        }
                    }
                    None if preserve || allow_any => {}
                    None => {
                        obj.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults_and_prune(item, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

/// Validate `v` against `schema`; `path` is the field path of `v`.
pub fn validate(v: &Value, schema: &Value, path: &str) -> Vec<SchemaError> {
    let mut errs = Vec::new();
    check(v, schema, path, &mut errs);
    errs
}

fn check(v: &Value, s: &Value, path: &str, errs: &mut Vec<SchemaError>) {
    let shown_path = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if !flag(s, "nullable") && s.get("type").is_some() {
            errs.push(SchemaError {
                field: shown_path.into(),
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: \"null\": {shown_path} in body must be of type {}: \"null\"",
                    s["type"].as_str().unwrap_or("object")
                ),
            });
        }
        return;
    }
    let actual = type_name(v);
    if flag(s, "x-kubernetes-int-or-string") {
        if !matches!(actual, "integer" | "string") {
            errs.push(SchemaError {
                field: shown_path.into(),
                reason: "FieldValueInvalid",
                message: format!(
                    "Invalid value: {}: {shown_path} in body must be of type integer or string",
                    shown(v)
                ),
            });
        }
    } else if let Some(want) = s.get("type").and_then(Value::as_str) {
        let ok = want == actual || (want == "number" && actual == "integer");
        if !ok {
            errs.push(SchemaError {
                field: shown_path.into(),
                reason: "FieldValueTypeInvalid",
                message: format!("Invalid value: \"{actual}\": {shown_path} in body must be of type {want}: \"{actual}\""),
            });
            return;
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(shown).collect();
        errs.push(SchemaError {
            field: shown_path.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                list.join(", ")
            ),
        });
    }
    check_bounds(v, s, shown_path, errs);
    match v {
        Value::Object(obj) => check_object(obj, s, path, errs),
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

fn check_bounds(v: &Value, s: &Value, path: &str, errs: &mut Vec<SchemaError>) {
    let mut fail = |message: String| {
        errs.push(SchemaError {
            field: path.into(),
            reason: "FieldValueInvalid",
            message,
        })
    };
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            fail(format!(
                "Invalid value: {v}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            fail(format!(
                "Invalid value: {v}: {path} in body should be less than or equal to {max}"
            ));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            fail(format!(
                "Invalid value: {}: {path} in body should be at least {min} chars long",
                shown(v)
            ));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            fail(format!("Too long: may not be more than {max} bytes"));
        }
    }
    if let Some(items) = v.as_array() {
        let len = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            fail(format!(
                "Invalid value: {len}: {path} in body should have at least {min} items"
            ));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            fail(format!("Too many: {len}: must have at most {max} items"));
        }
    }
}

fn check_object(obj: &Map<String, Value>, s: &Value, path: &str, errs: &mut Vec<SchemaError>) {
    for req in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = req.as_str()
            && !obj.contains_key(name)
        {
            errs.push(SchemaError {
                field: join(path, name),
                reason: "FieldValueRequired",
                message: "Required value".into(),
            });
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in obj {
        if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
            check(child, sub, &join(path, k), errs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "default": 1},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "port": {"x-kubernetes-int-or-string": true}
        }}}})
    }

    #[test]
    fn defaults_and_pruning() {
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"unknown": 1}, "extra": true});
        apply_defaults_and_prune(&mut obj, &widget_schema(), true);
        assert_eq!(
            obj,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "color": "red"}})
        );
    }

    #[test]
    fn validation_names_the_field() {
        let errs = validate(
            &json!({"spec": {"size": "big", "color": "green", "tags": [1], "port": 1.5}}),
            &widget_schema(),
            "",
        );
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.size", "spec.color", "spec.tags[0]", "spec.port"]
        );
        assert!(
            errs[0].message.contains("must be of type integer"),
            "{:?}",
            errs[0]
        );
        let errs = validate(&json!({"spec": {"size": 0}}), &widget_schema(), "");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("greater than or equal to 1"));
        let errs = validate(&json!({"spec": {}}), &widget_schema(), "");
        assert_eq!(errs[0].field, "spec.size");
    }

    #[test]
    fn structural_requires_types() {
        assert!(check_structural(&widget_schema()).is_empty());
        let bad = json!({"type": "object", "properties": {"spec": {"properties": {}}}});
        assert_eq!(check_structural(&bad).len(), 1);
    }
}
