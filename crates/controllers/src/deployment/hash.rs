//! The `pod-template-hash` that names a Deployment's ReplicaSets and keeps their pods apart, and
//! template equality "ignoring the hash" that finds the ReplicaSet of a template (upstream
//! `ComputeHash` and `EqualIgnoreHash` in `pkg/controller/{controller_utils.go,
//! deployment/util/deployment_util.go}`).
//!
//! Upstream hashes Go's printed form of the template with FNV-32a and spells the number with
//! `rand.SafeEncodeString`. Here the input is the template's canonical JSON (keys sorted, nulls
//! and empty maps/lists dropped, as Go's semantic equality treats them as absent); FNV-32a and
//! the safe alphabet are the same, so the value is a short valid label value without vowels.

use std::fmt::Write as _;

use ledge_api::Pointer as _;
use serde_json::Value;

/// The label (and selector key) a Deployment adds to each ReplicaSet and its pods.
pub const HASH_LABEL: &str = "pod-template-hash";

/// The hash of a PodTemplateSpec, perturbed by the Deployment's `status.collisionCount`.
pub fn template_hash(template: &Value, collision_count: Option<i32>) -> String {
    let mut text = String::new();
    canonical(&without_hash_label(template), &mut text);
    let mut h = fnv1a32(FNV_OFFSET, text.as_bytes());
    if let Some(c) = collision_count {
        // Upstream writes the count as 8 little-endian bytes (4 significant).
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv1a32(h, &bytes);
    }
    safe_encode(&h.to_string())
}

/// Whether two PodTemplateSpecs are the same apart from their `pod-template-hash` labels.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    let (mut x, mut y) = (String::new(), String::new());
    canonical(&without_hash_label(a), &mut x);
    canonical(&without_hash_label(b), &mut y);
    x == y
}

/// `template` without the hash label.
pub fn without_hash_label(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t.at_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(HASH_LABEL);
    }
    t
}

/// Whether a value is "absent" for semantic equality: null, `{}` or `[]` (after pruning).
fn is_absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_absent),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Canonical JSON text: object keys sorted, absent members dropped.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m
                .iter()
                .filter(|(_, v)| !is_absent(v))
                .map(|(k, _)| k)
                .collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String((*k).clone()));
                canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a32(mut h: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Upstream `rand.SafeEncodeString`: every byte mapped into an alphabet without vowels (no
/// words) and without characters that look alike.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    #[test]
    fn hash_is_a_stable_label_value_that_follows_the_template() {
        let h = template_hash(&template("a:1"), None);
        assert_eq!(h, template_hash(&template("a:1"), None));
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric()), "{h}");
        assert_ne!(h, template_hash(&template("a:2"), None));
        assert_ne!(h, template_hash(&template("a:1"), Some(1)));
        assert_ne!(
            template_hash(&template("a:1"), Some(1)),
            template_hash(&template("a:1"), Some(2))
        );
    }

    #[test]
    fn known_fnv_vectors() {
        assert_eq!(fnv1a32(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn equality_ignores_the_hash_label_key_order_and_absent_members() {
        let mut a = template("a:1");
        a["metadata"]["labels"][HASH_LABEL] = json!("xyz");
        a["metadata"]["creationTimestamp"] = Value::Null;
        a["metadata"]["annotations"] = json!({});
        let b = json!({"spec": {"containers": [{"image": "a:1", "name": "c", "env": []}]},
                       "metadata": {"labels": {"app": "web"}}});
        assert!(equal_ignore_hash(&a, &b));
        assert_eq!(template_hash(&a, None), template_hash(&b, None));
        assert!(!equal_ignore_hash(&a, &template("a:2")));
        let mut c = template("a:1");
        c["metadata"]["labels"]["tier"] = json!("fe");
        assert!(!equal_ignore_hash(&a, &c));
    }
}
