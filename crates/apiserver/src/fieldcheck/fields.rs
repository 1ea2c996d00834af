//! The field table of the built-in kinds: for each upstream definition, which fields an object
//! may have and what each holds. It is the `fields` section of the embedded OpenAPI data
//! (`crate::openapi::data`), decoded on the first write that needs it and kept (a few hundred
//! KB: names only, no descriptions).
//!
//! Encoding in the data file: `1` is a leaf (scalars, int-or-string, quantities, and opaque
//! JSON such as `RawExtension` and `FieldsV1`), a string names another definition,
//! `["o", {field: shape}]` is an object with known fields, `["m", shape]` a map's values and
//! `["l", shape]` a list's items.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use crate::openapi::data;

/// What a value of a built-in type may contain.
#[derive(Debug, PartialEq)]
pub enum Shape {
    /// Anything; nothing inside is checked.
    Leaf,
    /// Another definition, by upstream name.
    Ref(String),
    /// An object with exactly these fields.
    Object(HashMap<String, Shape>),
    /// A map (`additionalProperties`) whose values have this shape.
    Map(Box<Shape>),
    /// A list whose items have this shape.
    List(Box<Shape>),
}

impl Shape {
    /// Decode one entry of the data file's field table.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        match v {
            Value::Number(_) => Ok(Self::Leaf),
            Value::String(name) => Ok(Self::Ref(name.clone())),
            Value::Array(pair) if pair.len() == 2 => {
                let inner = &pair[1];
                match pair[0].as_str() {
                    Some("o") => {
                        let fields = inner.as_object().ok_or("object shape without fields")?;
                        fields
                            .iter()
                            .map(|(k, s)| Ok((k.clone(), Self::from_json(s)?)))
                            .collect::<Result<_, String>>()
                            .map(Self::Object)
                    }
                    Some("m") => Ok(Self::Map(Box::new(Self::from_json(inner)?))),
                    Some("l") => Ok(Self::List(Box::new(Self::from_json(inner)?))),
                    _ => Err(format!("unknown shape tag {}", pair[0])),
                }
            }
            other => Err(format!("unknown shape {other}")),
        }
    }
}

/// The decoded field table.
#[derive(Debug, Default)]
pub struct Fields {
    kinds: HashMap<String, String>,
    types: HashMap<String, Shape>,
}

#[derive(Deserialize)]
struct Section {
    kinds: BTreeMap<String, String>,
    fields: BTreeMap<String, Value>,
}

impl Fields {
    /// Build from the `kinds` and `fields` sections.
    fn decode(kinds: BTreeMap<String, String>, fields: BTreeMap<String, Value>) -> Self {
        let mut types = HashMap::with_capacity(fields.len());
        for (name, v) in fields {
            match Shape::from_json(&v) {
                Ok(s) => {
                    types.insert(name, s);
                }
                Err(e) => tracing::error!(definition = %name, error = %e, "bad field table entry"),
            }
        }
        Self {
            kinds: kinds.into_iter().collect(),
            types,
        }
    }

    /// The shape of a definition (a leaf for names the table does not list).
    pub fn get(&self, name: &str) -> &Shape {
        self.types.get(name).unwrap_or(&Shape::Leaf)
    }

    /// The definition name of a built-in kind (`v1`, `ConfigMap`).
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&data::kind_key(api_version, kind))
            .map(String::as_str)
    }

    /// A table from literal JSON, for tests.
    #[cfg(test)]
    pub fn from_value(kinds: Value, fields: Value) -> Self {
        let kinds = serde_json::from_value(kinds).unwrap_or_default();
        let fields = serde_json::from_value(fields).unwrap_or_default();
        Self::decode(kinds, fields)
    }
}

/// The table of the embedded data, decoded on first use. Empty (nothing is ever unknown) if
/// the data cannot be decoded, which the data module's tests rule out.
pub fn table() -> &'static Fields {
    static TABLE: OnceLock<Fields> = OnceLock::new();
    TABLE.get_or_init(|| match data::sections::<Section>() {
        Ok(s) => Fields::decode(s.kinds, s.fields),
        Err(e) => {
            tracing::error!(error = %e, "field validation disabled: openapi data unusable");
            Fields::default()
        }
    })
}

/// Upstream's ObjectMeta definition, which every object's `metadata` is checked against.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_knows_built_in_kinds() {
        let t = table();
        let cm = t.kind("v1", "ConfigMap").expect("ConfigMap is listed");
        let Shape::Object(fields) = t.get(cm) else {
            panic!("ConfigMap is an object");
        };
        assert_eq!(fields["metadata"], Shape::Ref(OBJECT_META.into()));
        assert_eq!(fields["data"], Shape::Map(Box::new(Shape::Leaf)));
        assert!(t.kind("apps/v1", "Deployment").is_some());
        assert!(matches!(t.get(OBJECT_META), Shape::Object(f) if f.contains_key("labels")));
    }

    #[test]
    fn bad_entries_are_rejected() {
        assert!(Shape::from_json(&serde_json::json!(["x", 1])).is_err());
        assert!(Shape::from_json(&serde_json::json!(["o", 1])).is_err());
        assert!(Shape::from_json(&serde_json::json!(true)).is_err());
    }
}
