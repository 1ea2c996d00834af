//! `meta.k8s.io/v1 Table` responses: what `kubectl get` prints. Columns follow upstream's
//! printers (`pkg/printers/internalversion/printers.go`) so output looks as it does on Kubernetes.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::object;
use crate::registry::Resource;

/// One table column.
#[derive(Clone, Debug)]
pub struct Column {
    /// Header, e.g. `Ready`.
    pub name: Cow<'static, str>,
    /// `string`, `integer`, `date`, ...
    pub kind: Cow<'static, str>,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: u8,
    /// Column description.
    pub description: Cow<'static, str>,
}

/// A column shown by default.
pub const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name: Cow::Borrowed(name),
        kind: Cow::Borrowed(kind),
        priority: 0,
        description: Cow::Borrowed(description),
    }
}

/// A column shown only with `-o wide`.
pub const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name: Cow::Borrowed(name),
        kind: Cow::Borrowed(kind),
        priority: 1,
        description: Cow::Borrowed(description),
    }
}

/// The Age column.
pub const AGE: Column = col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

/// Upstream's short human duration (`5s`, `3m2s`, `4h`, `2d3h`, `12d`, `1y20d`).
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 730 {
        format!("{d}d")
    } else {
        let y = d / 365;
        if y < 8 && d % 365 != 0 {
            format!("{y}y{}d", d % 365)
        } else {
            format!("{y}y")
        }
    }
}

/// Age of a timestamp field, as printed.
pub fn age_of(ts: Option<&str>) -> Value {
    let Some(ts) = ts else {
        return json!("<unknown>");
    };
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => json!(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
        )),
        Err(_) => json!("<invalid>"),
    }
}

/// The object's age cell.
pub fn age(obj: &Value) -> Value {
    age_of(object::meta_str(obj, "creationTimestamp"))
}

/// Build a Table for `items` of `res`; `with_headers` false for watch events after the first.
/// Rows carry `PartialObjectMetadata` (upstream's default `includeObject=Metadata`).
pub fn table(res: &Resource, items: &[&Value], list_meta: Value, with_headers: bool) -> Value {
    table_with(res, items, list_meta, with_headers, false)
}

/// As [`table`]; with `full_objects` rows carry the whole object (`includeObject=Object`,
/// which `kubectl get --sort-by` asks for).
pub fn table_with(
    res: &Resource,
    items: &[&Value],
    list_meta: Value,
    with_headers: bool,
    full_objects: bool,
) -> Value {
    let mut columns = vec![col(
        "Name",
        "string",
        "Name must be unique within a namespace.",
    )];
    columns.extend(res.strategy.columns());
    let add_age = res.strategy.default_age() && !columns.iter().any(|c| c.name == "Age");
    if add_age {
        columns.push(AGE);
    }
    let defs: Vec<Value> = columns
        .iter()
        .map(|c| {
            let mut d = json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority});
            if c.name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells = vec![json!(object::name(obj))];
            cells.extend(res.strategy.cells(obj));
            if add_age {
                cells.push(age(obj));
            }
            let object = if full_objects {
                (*obj).clone()
            } else {
                partial_metadata(obj)
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows});
    if with_headers {
        t["columnDefinitions"] = Value::Array(defs);
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

/// `PartialObjectMetadata` of an object (what a table row carries for `-A`, `--show-labels`).
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Read a dotted path (`.spec.replicas`) from an object; `[n]` indexes arrays.
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in dotted
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// A cell from a path: the value, or "<none>"-style empty when absent.
pub fn cell(obj: &Value, dotted: &str) -> Value {
    path(obj, dotted).cloned().unwrap_or(Value::Null)
}

/// Number of entries in a map or list field.
pub fn count(obj: &Value, dotted: &str) -> Value {
    let n = match path(obj, dotted) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    json!(n)
}

/// An integer field, 0 when absent.
pub fn int(obj: &Value, dotted: &str) -> i64 {
    path(obj, dotted).and_then(Value::as_i64).unwrap_or(0)
}

/// A string field, "" when absent.
pub fn text<'a>(obj: &'a Value, dotted: &str) -> &'a str {
    path(obj, dotted).and_then(Value::as_str).unwrap_or("")
}

/// Join a label-selector map as `k=v,k2=v2`, or `<none>`.
pub fn selector_text(sel: Option<&Value>) -> String {
    match sel.and_then(Value::as_object) {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 7200), "3d2h");
        assert_eq!(human_duration(20 * 86400), "20d");
    }

    #[test]
    fn paths_walk_maps_and_lists() {
        let v = json!({"spec": {"containers": [{"image": "a"}]}});
        assert_eq!(path(&v, ".spec.containers[0].image"), Some(&json!("a")));
        assert_eq!(path(&v, ".spec.missing"), None);
    }
}
