//! JSON Pointer lookups without allocation. `serde_json::Value::pointer` unescapes every
//! reference token into a fresh `String` (two, in fact) before each map lookup; on the paths
//! the scheduler, the controllers and the API server read per object and per node that was a
//! measurable share of their CPU. [`Pointer::at`] walks the same RFC 6901 pointer borrowing
//! each token, and unescapes (`~1` → `/`, `~0` → `~`) only a token that holds a `~`.

use std::borrow::Cow;

use serde_json::Value;

/// RFC 6901 lookups on a JSON value, as `Value::pointer` and `Value::pointer_mut` answer them.
pub trait Pointer {
    /// The value at `pointer` (`""` is the whole value), or `None`.
    fn at(&self, pointer: &str) -> Option<&Value>;
    /// The value at `pointer`, mutably.
    fn at_mut(&mut self, pointer: &str) -> Option<&mut Value>;
}

fn tokens(pointer: &str) -> Option<impl Iterator<Item = Cow<'_, str>>> {
    let rest = pointer.strip_prefix('/')?;
    Some(rest.split('/').map(|t| {
        if t.contains('~') {
            Cow::Owned(t.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(t)
        }
    }))
}

/// An array index as RFC 6901 allows it: digits, no leading zero, no sign.
fn index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

impl Pointer for Value {
    fn at(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        tokens(pointer)?.try_fold(self, |target, token| match target {
            Value::Object(map) => map.get(token.as_ref()),
            Value::Array(list) => index(&token).and_then(|i| list.get(i)),
            _ => None,
        })
    }

    fn at_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        tokens(pointer)?.try_fold(self, |target, token| match target {
            Value::Object(map) => map.get_mut(token.as_ref()),
            Value::Array(list) => index(&token).and_then(move |i| list.get_mut(i)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_as_serde_json_pointer_does() {
        let v = json!({"a": {"b/c": [1, {"d~e": "x"}], "": {"z": true}}, "0": 7, "n": null});
        for p in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/d~0e",
            "/a//z",
            "/0",
            "/n",
            "/a/b~1c/01",
            "/a/b~1c/-1",
            "/a/b~1c/+1",
            "/a/b~1c/2",
            "/missing",
            "/a/missing/deeper",
            "a",
            "/n/x",
            "/a/b~1c/1/d~0e/x",
        ] {
            assert_eq!(v.at(p), v.pointer(p), "{p}");
        }
        let mut m = v.clone();
        *m.at_mut("/a/b~1c/1/d~0e").unwrap() = json!("y");
        assert_eq!(m.at("/a/b~1c/1/d~0e"), Some(&json!("y")));
        assert!(m.at_mut("/a/b~1c/9").is_none());
    }
}
