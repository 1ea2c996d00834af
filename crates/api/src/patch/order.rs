//! Element order of merged lists in strategic merge patch, following upstream
//! `normalizeElementOrder` / `mergeSortedSlice`: elements named by the patch (or by
//! `$setElementOrder`) take the patch's order, elements only on the server keep theirs, and the
//! two runs are interleaved by their positions in the live list. A server-only element goes in
//! front of a patch element only when both are in the live list and it comes first there, so
//! elements new to the object land before the remaining server-only ones.

use serde_json::Value;

/// Equality as Go's `==` on decoded JSON sees it: numbers compare by value (`80` = `80.0`).
pub(super) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// What identifies a list element: its merge-key value for objects, the value itself otherwise.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(k) => item.get(k),
        None => Some(item),
    }
}

/// Position of the first element of `list` with the same identity as `item`.
pub(super) fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter()
        .position(|v| identity(v, key).is_some_and(|other| same(other, id)))
}

/// Splits `merged` into (elements whose identity is in `named`, the others), keeping order.
pub(super) fn partition(
    merged: Vec<Value>,
    named: &[Value],
    key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|v| position(named, v, key).is_some())
}

fn sort_by_position(items: &mut [Value], order: &[Value], key: Option<&str>) {
    // Unknown elements sort last and keep their relative order (stable sort).
    items.sort_by_key(|v| position(order, v, key).unwrap_or(usize::MAX));
}

/// Orders a merged list: `patch_items` by `patch_order`, `server_only` by `server_order`, then
/// interleaved by their positions in `server_order` (the live list).
pub(super) fn normalize(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    sort_by_position(&mut patch_items, patch_order, key);
    sort_by_position(&mut server_only, server_order, key);
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, key), position(server_order, r, key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn list(v: Value) -> Vec<Value> {
        v.as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn server_only_items_are_interleaved_by_live_position() {
        // live [p, q, x, r, s]; the patch names [q, p, s, r]; x stays after p.
        let live = list(json!(["p", "q", "x", "r", "s"]));
        let named = list(json!(["q", "p", "s", "r"]));
        let (patch_items, server_only) = partition(live.clone(), &named, None);
        let out = normalize(patch_items, server_only, &named, &live, None);
        assert_eq!(Value::Array(out), json!(["q", "p", "x", "s", "r"]));
    }

    #[test]
    fn new_items_go_before_remaining_server_only_items() {
        let live = list(json!([{"k": 1}, {"k": 2}]));
        let merged = list(json!([{"k": 1}, {"k": 2}, {"k": 3}]));
        let named = list(json!([{"k": 3}]));
        let (patch_items, server_only) = partition(merged, &named, Some("k"));
        let out = normalize(patch_items, server_only, &named, &live, Some("k"));
        assert_eq!(Value::Array(out), json!([{"k": 3}, {"k": 1}, {"k": 2}]));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same(&json!(80), &json!(80.0)));
        assert_eq!(
            position(&list(json!([{"p": 80.0}])), &json!({"p": 80}), Some("p")),
            Some(0)
        );
    }
}
