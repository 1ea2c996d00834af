//! Small helpers over objects kept as JSON: reading and writing metadata fields, and the storage
//! form (the stored bytes carry no `resourceVersion`; it is the store revision, injected on read).

use ledge_store::Revision;
use serde_json::{Map, Value};

/// Decode stored bytes and set `metadata.resourceVersion` to the key's mod revision.
pub fn decode_stored(bytes: &[u8], revision: Revision) -> Result<Value, serde_json::Error> {
    let mut obj: Value = serde_json::from_slice(bytes)?;
    set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// Encode an object for storage, without its resourceVersion (serialised in place, not copied).
pub fn encode_for_store(obj: &Value) -> Vec<u8> {
    let result = match obj.as_object() {
        Some(map) => serde_json::to_vec(&ForStore(map)),
        None => serde_json::to_vec(obj),
    };
    result.unwrap_or_default()
}

/// An object as stored: `metadata.resourceVersion` left out.
struct ForStore<'a>(&'a Map<String, Value>);

impl serde::Serialize for ForStore<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = ser.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v.as_object() {
                Some(meta) if k == "metadata" => out.serialize_entry(k, &WithoutRv(meta))?,
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

/// `metadata` without `resourceVersion`.
struct WithoutRv<'a>(&'a Map<String, Value>);

impl serde::Serialize for WithoutRv<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = ser.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != "resourceVersion" {
                out.serialize_entry(k, v)?;
            }
        }
        out.end()
    }
}

/// Set `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    meta_mut(obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
}

/// `metadata` as a mutable map, created if missing or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let root = obj.as_object_mut().expect("just made an object");
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name` ("" if unset).
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.namespace`.
pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

/// `metadata.uid`.
pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

/// `metadata.resourceVersion` parsed as a revision.
pub fn resource_version(obj: &Value) -> Option<Revision> {
    meta_str(obj, "resourceVersion").and_then(|s| s.parse().ok())
}

/// `metadata.labels` as a map (empty if unset).
pub fn labels(obj: &Value) -> Map<String, Value> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

pub use ledge_api::time::now as now_rfc3339;

/// Whether two objects differ in the content compared for generation bumps (everything but
/// metadata, status, apiVersion and kind), compared in place.
pub fn spec_differs(a: &Value, b: &Value) -> bool {
    fn spec(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
        v.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
    }
    let b_map = b.as_object();
    spec(a).count() != spec(b).count()
        || spec(a).any(|(k, v)| b_map.and_then(|m| m.get(k)) != Some(v))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stored_encoding_leaves_out_only_the_resource_version() {
        let obj = json!({
            "kind": "Pod",
            "metadata": {"name": "a", "resourceVersion": "7", "labels": {"resourceVersion": "x"}},
            "spec": {"resourceVersion": "kept"},
        });
        let stored: Value = serde_json::from_slice(&encode_for_store(&obj)).unwrap();
        assert_eq!(
            stored,
            json!({
                "kind": "Pod",
                "metadata": {"name": "a", "labels": {"resourceVersion": "x"}},
                "spec": {"resourceVersion": "kept"},
            })
        );
        assert_eq!(decode_stored(&encode_for_store(&obj), 7).unwrap(), obj);
    }

    #[test]
    fn spec_differs_ignores_metadata_status_and_type() {
        let a = json!({"kind": "A", "metadata": {"name": "x"}, "spec": {"n": 1}, "status": {}});
        let b = json!({"kind": "B", "metadata": {"name": "y"}, "spec": {"n": 1}});
        assert!(!spec_differs(&a, &b));
        assert!(spec_differs(&a, &json!({"spec": {"n": 2}})));
        assert!(spec_differs(&a, &json!({"spec": {"n": 1}, "data": {}})));
        assert!(spec_differs(&json!({"data": {}}), &json!({"spec": {}})));
    }
}
