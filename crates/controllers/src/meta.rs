//! Reading the fields controllers need from JSON objects, with upstream's zero values for what
//! is missing or malformed (an object from the API is never trusted to have a shape).

use chrono::{DateTime, Utc};
use ledge_api::Pointer as _;
use ledge_api::selector::LabelSelector;
use serde_json::{Map, Value};

/// A string at a JSON pointer, or "".
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.at(pointer).and_then(Value::as_str).unwrap_or("")
}

/// An integer at a JSON pointer, or 0 (clamped into `i32`, as the API's int32 fields are).
pub fn int_at(obj: &Value, pointer: &str) -> i32 {
    obj.at(pointer)
        .and_then(Value::as_i64)
        .map_or(0, |n| n.clamp(i32::MIN.into(), i32::MAX.into()) as i32)
}

/// `spec.replicas`, 1 when unset (the API default for Deployments and ReplicaSets).
pub fn spec_replicas(obj: &Value) -> i32 {
    match obj.at("/spec/replicas") {
        Some(Value::Number(_)) => int_at(obj, "/spec/replicas"),
        _ => 1,
    }
}

/// `metadata.name`.
pub fn name(obj: &Value) -> &str {
    str_at(obj, "/metadata/name")
}

/// `metadata.namespace`, if set.
pub fn namespace(obj: &Value) -> Option<&str> {
    obj.at("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata.uid`.
pub fn uid(obj: &Value) -> &str {
    str_at(obj, "/metadata/uid")
}

/// `metadata.generation`.
pub fn generation(obj: &Value) -> i64 {
    obj.at("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.at("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// One annotation.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.at("/metadata/annotations")?.get(key)?.as_str()
}

/// `metadata.labels` (empty when missing).
pub fn labels(obj: &Value) -> Map<String, Value> {
    obj.at("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A timestamp field parsed; `None` when missing or malformed.
pub fn time_at(obj: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    obj.at(pointer)
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `metadata.creationTimestamp`.
pub fn created(obj: &Value) -> Option<DateTime<Utc>> {
    time_at(obj, "/metadata/creationTimestamp")
}

/// `spec.selector` as a selector; a malformed one selects nothing.
pub fn selector(obj: &Value) -> LabelSelector {
    obj.at("/spec/selector")
        .map(|s| LabelSelector::from_json(s).unwrap_or_else(|_| LabelSelector::nothing()))
        .unwrap_or_else(LabelSelector::nothing)
}

/// The condition of `type_` in `status.conditions`.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.at("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Set the member at `path` (object keys), turning anything on the way that is not an object
/// into one: a write into an object of unexpected shape never panics.
pub fn set(obj: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        *obj = value;
        return;
    };
    let mut cur = obj;
    for key in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else {
            return;
        };
        cur = m.entry(key.to_string()).or_insert(Value::Null);
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(m) = cur {
        m.insert(last.to_string(), value);
    }
}

/// Format a time the way the API does.
pub fn format_time(t: DateTime<Utc>) -> String {
    ledge_api::time::format_time(t)
}

/// Orders objects by creation time, then name (upstream `ByCreationTimestamp` tie-break).
pub fn by_creation(a: &Value, b: &Value) -> std::cmp::Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| name(a).cmp(name(b)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn set_makes_room_for_the_value() {
        let mut o = json!({"metadata": "oops", "spec": {"replicas": 1}});
        set(&mut o, &["metadata", "labels", "a"], json!("b"));
        set(&mut o, &["spec", "replicas"], json!(3));
        assert_eq!(
            o,
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn missing_and_malformed_fields_read_as_zero_values() {
        let o = json!({"metadata": {"name": "x", "generation": "7"}, "spec": {"replicas": 9_000_000_000_i64}});
        assert_eq!(generation(&o), 0);
        assert_eq!(int_at(&o, "/spec/replicas"), i32::MAX);
        assert_eq!(namespace(&o), None);
        assert!(selector(&o).matches_nothing());
        assert_eq!(created(&o), None);
    }
}
