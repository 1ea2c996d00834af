//! Duplicate fields in a raw JSON body (`{"replicas": 2, "replicas": 3}`), which a decoder into
//! a map silently resolves to the last value. Found by one streaming pass with serde, paths
//! written like upstream's strict decoder (kubernetes-sigs/json) writes them: dotted keys, list
//! indexes in brackets, each duplicate reported once.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::walk::MAX_ERRORS;

/// Paths of the duplicate fields of a JSON document, in document order; empty when the
/// document is not valid JSON (decoding reports that).
pub fn find(raw: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(raw);
    let seed = Node {
        path: String::new(),
        found: &found,
    };
    if seed.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    found.into_inner()
}

struct Node<'a> {
    path: String,
    found: &'a RefCell<Vec<String>>,
}

impl Node<'_> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let item = Node {
                path: format!("{}[{i}]", self.path),
                found: self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if !seen.insert(key) {
                let mut found = self.found.borrow_mut();
                if found.len() < MAX_ERRORS && !found.contains(&path) {
                    found.push(path.clone());
                }
            }
            map.next_value_seed(Node {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_duplicates_at_every_depth() {
        let raw = br#"{"spec": {"replicas": 2, "replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "name": "c"}]}}},
            "metadata": {"labels": {"a": "1", "a": "2"}}, "spec": {}}"#;
        assert_eq!(
            find(raw),
            vec![
                "spec.replicas",
                "spec.template.spec.containers[1].name",
                "metadata.labels.a",
                "spec",
            ]
        );
    }

    #[test]
    fn each_duplicate_is_reported_once() {
        assert_eq!(find(br#"{"a": 1, "a": 2, "a": 3}"#), vec!["a"]);
    }

    #[test]
    fn clean_and_invalid_documents_have_none() {
        assert!(find(br#"{"a": [1, {"b": 2}], "c": "\"escaped\""}"#).is_empty());
        assert!(find(b"{not json").is_empty());
        assert!(find(b"[1, 2]").is_empty());
    }
}
