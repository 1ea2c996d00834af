//! Server-side apply and `managedFields`: which manager owns which fields, conflicts between
//! managers, and removal of fields a manager stopped applying (upstream structured-merge-diff,
//! simplified: ownership is tracked per leaf field; lists are associative where the kind's
//! patch schema gives a merge key, sets where it says "merge" on primitives, atomic otherwise).

use std::collections::BTreeMap;

use ledge_api::Pointer as _;
use ledge_api::{ApiError, StatusCause};
use serde_json::{Map, Value, json};

use crate::object;
use crate::registry::Resource;

/// How a list is merged and tracked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ListKind {
    Atomic,
    Map(String),
    Set,
}

fn list_kind(res: &Resource, path: &[String]) -> ListKind {
    if res.custom {
        return ListKind::Atomic;
    }
    let schema = ledge_api::patch::builtin_schema(&res.def.group, &res.def.kind);
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    let strategy = schema.strategy(&refs);
    match (strategy.merge, strategy.merge_key) {
        (true, Some(key)) => ListKind::Map(key.to_string()),
        (true, None) => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// A set of owned fields, in the shape of `fieldsV1`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn from_v1(v: &Value) -> Self {
        let mut set = FieldSet::default();
        if let Some(m) = v.as_object() {
            if m.is_empty() {
                set.member = true;
            }
            for (k, child) in m {
                if k == "." {
                    set.member = true;
                } else {
                    set.children.insert(k.clone(), FieldSet::from_v1(child));
                }
            }
        }
        set
    }

    fn to_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_v1());
        }
        Value::Object(m)
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Every owned path: only leaves, or (`inner`) also owned inner nodes such as list items.
    fn paths(&self, inner: bool, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member && (inner || self.children.is_empty()) {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.paths(inner, prefix, out);
            prefix.pop();
        }
    }

    /// Every owned leaf path.
    fn leaves(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.paths(false, &mut Vec::new(), &mut out);
        out
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((head, rest)) => {
                if let Some(c) = self.children.get_mut(head) {
                    c.remove(rest);
                    if c.is_empty() {
                        self.children.remove(head);
                    }
                }
            }
        }
    }

    fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((head, rest)) => self.children.entry(head.clone()).or_default().insert(rest),
        }
    }
}

fn key_of(item: &Value, key: &str) -> String {
    let mut m = Map::new();
    m.insert(
        key.to_string(),
        item.get(key).cloned().unwrap_or(Value::Null),
    );
    format!("k:{}", Value::Object(m))
}

/// The fields set in `v` (a whole object or a part at `path`).
fn fields_of(res: &Resource, v: &Value, path: &mut Vec<String>, root: bool) -> FieldSet {
    let mut set = FieldSet::default();
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path.len() == 1
                    && path[0] == "metadata"
                    && matches!(
                        k.as_str(),
                        "name"
                            | "namespace"
                            | "resourceVersion"
                            | "uid"
                            | "managedFields"
                            | "creationTimestamp"
                            | "generation"
                    )
                {
                    continue;
                }
                path.push(k.clone());
                let child_set = match child {
                    Value::Array(items) => list_fields(res, items, path),
                    other => fields_of(res, other, path, false),
                };
                path.pop();
                if !child_set.is_empty() {
                    set.children.insert(format!("f:{k}"), child_set);
                }
            }
            if set.children.is_empty() && !root {
                set.member = true;
            }
        }
        _ => set.member = !root,
    }
    set
}

fn list_fields(res: &Resource, items: &[Value], path: &mut Vec<String>) -> FieldSet {
    let mut set = FieldSet::default();
    match list_kind(res, path) {
        ListKind::Map(key) => {
            for item in items {
                let mut child = fields_of(res, item, path, false);
                child.member = true;
                set.children.insert(key_of(item, &key), child);
            }
        }
        ListKind::Set => {
            for item in items {
                set.children.insert(
                    format!("v:{item}"),
                    FieldSet {
                        member: true,
                        children: BTreeMap::new(),
                    },
                );
            }
        }
        ListKind::Atomic => set.member = true,
    }
    set
}

/// Resolve a field path (`f:`, `k:`, `v:` elements) in an object.
fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((head, rest)) = path.split_first() else {
        return Some(v);
    };
    if let Some(f) = head.strip_prefix("f:") {
        return lookup(v.get(f)?, rest);
    }
    if let Some(k) = head.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        let item = v
            .as_array()?
            .iter()
            .find(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv)))?;
        return lookup(item, rest);
    }
    if let Some(val) = head.strip_prefix("v:") {
        let want: Value = serde_json::from_str(val).ok()?;
        return v.as_array()?.iter().find(|i| **i == want);
    }
    None
}

/// Remove the field at `path` from `v`.
fn remove_at(v: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if let Some(f) = head.strip_prefix("f:") {
        if rest.is_empty() {
            if let Some(m) = v.as_object_mut() {
                m.remove(f);
            }
        } else if let Some(child) = v.get_mut(f) {
            remove_at(child, rest);
        }
        return;
    }
    let Some(items) = v.as_array_mut() else {
        return;
    };
    let pos = if let Some(k) = head.strip_prefix("k:") {
        let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
            return;
        };
        items
            .iter()
            .position(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv)))
    } else if let Some(val) = head.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(val) else {
            return;
        };
        items.iter().position(|i| *i == want)
    } else {
        None
    };
    if let Some(pos) = pos {
        if rest.is_empty() {
            items.remove(pos);
        } else {
            remove_at(&mut items[pos], rest);
        }
    }
}

/// Merge applied configuration into the live object.
fn merge(res: &Resource, live: &mut Value, applied: &Value, path: &mut Vec<String>) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                path.push(k.clone());
                match l.get_mut(k) {
                    Some(lv) => merge(res, lv, av, path),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
                path.pop();
            }
        }
        (live @ Value::Array(_), Value::Array(a)) => match list_kind(res, path) {
            ListKind::Map(key) => {
                let Value::Array(l) = live else { return };
                for item in a {
                    match l.iter_mut().find(|i| i.get(&key) == item.get(&key)) {
                        Some(existing) => merge(res, existing, item, path),
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                let Value::Array(l) = live else { return };
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *live = Value::Array(a.clone()),
        },
        (live, applied) => *live = applied.clone(),
    }
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.at("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn entry_set(e: &Value) -> FieldSet {
    e.get("fieldsV1").map(FieldSet::from_v1).unwrap_or_default()
}

fn entry_is(e: &Value, manager: &str, operation: &str) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some(operation)
}

fn new_entry(res: &Resource, manager: &str, operation: &str, set: &FieldSet) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": res.def.api_version(),
        "time": object::now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": set.to_v1(),
    });
    if operation == "Update" && e["fieldsV1"] == json!({}) {
        e["fieldsV1"] = json!({});
    }
    e
}

fn shown_path(path: &[String]) -> String {
    path.iter()
        .map(|p| {
            if let Some(f) = p.strip_prefix("f:") {
                format!(".{f}")
            } else if let Some(k) = p.strip_prefix("k:") {
                format!(
                    "[{}]",
                    k.trim_matches(|c| c == '{' || c == '}')
                        .replace('"', "")
                        .replace(':', "=")
                )
            } else if let Some(v) = p.strip_prefix("v:") {
                format!("[{v}]")
            } else {
                p.clone()
            }
        })
        .collect()
}

fn check_applied(res: &Resource, applied: &Value) -> Result<(), ApiError> {
    let av = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = applied.get("kind").and_then(Value::as_str).unwrap_or("");
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply patch",
        ));
    }
    if av != res.def.api_version() || kind != res.def.kind {
        return Err(ApiError::bad_request(format!(
            "the apply patch is for {av}, Kind={kind} but the request is for {}, Kind={}",
            res.def.api_version(),
            res.def.kind
        )));
    }
    Ok(())
}

/// The object to create when an apply patch names an object that does not exist yet.
pub fn apply_create(res: &Resource, applied: &Value, manager: &str) -> Result<Value, ApiError> {
    check_applied(res, applied)?;
    let set = fields_of(res, applied, &mut Vec::new(), true);
    let mut obj = applied.clone();
    object::meta_mut(&mut obj).insert(
        "managedFields".into(),
        json!([new_entry(res, manager, "Apply", &set)]),
    );
    Ok(obj)
}

/// Server-side apply of `applied` by `manager` onto `live`.
pub fn apply(
    res: &Resource,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    check_applied(res, applied)?;
    let new_set = fields_of(res, applied, &mut Vec::new(), true);
    let leaves = new_set.leaves();
    let mut entries = entries(live);
    let prev_set = entries
        .iter()
        .find(|e| entry_is(e, manager, "Apply"))
        .map(entry_set)
        .unwrap_or_default();

    // Conflicts: another manager owns a field this apply sets to a different value. Fields
    // recorded in kubectl's last-applied annotation are taken over without a conflict, so moving
    // from client-side to server-side apply just works (upstream `lastAppliedManager`).
    let last_applied = live
        .at("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .map(|v| fields_of(res, &v, &mut Vec::new(), true))
        .unwrap_or_default();
    let mut conflicts = Vec::new();
    for e in entries
        .iter_mut()
        .filter(|e| !entry_is(e, manager, "Apply"))
    {
        let mut set = entry_set(e);
        let other = e
            .get("manager")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut changed = false;
        for leaf in &leaves {
            if set.contains(leaf) && lookup(live, leaf) != lookup(applied, leaf) {
                if force || last_applied.contains(leaf) {
                    set.remove(leaf);
                    changed = true;
                } else {
                    conflicts.push((other.clone(), leaf.clone()));
                }
            }
        }
        if changed {
            e["fieldsV1"] = set.to_v1();
        }
    }
    if !conflicts.is_empty() {
        let causes: Vec<StatusCause> = conflicts
            .iter()
            .map(|(m, p)| StatusCause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with \"{m}\""),
                field: shown_path(p),
            })
            .collect();
        let detail: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {}", shown_path(p)))
            .collect();
        let mut err = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                detail.join("\n")
            ),
        );
        err.causes = causes;
        return Err(err);
    }

    // Fields this manager applied before but not now, and nobody else owns, are removed.
    let mut prev_paths = Vec::new();
    prev_set.paths(true, &mut Vec::new(), &mut prev_paths);
    let others: Vec<FieldSet> = entries
        .iter()
        .filter(|e| !entry_is(e, manager, "Apply"))
        .map(entry_set)
        .collect();
    let mut merged = live.clone();
    for path in prev_paths.iter().rev() {
        if !new_set.contains(path) && !others.iter().any(|s| s.contains(path)) {
            remove_at(&mut merged, path);
        }
    }
    merge(res, &mut merged, applied, &mut Vec::new());

    entries.retain(|e| !entry_is(e, manager, "Apply") && !entry_set(e).is_empty());
    entries.push(new_entry(res, manager, "Apply", &new_set));
    object::meta_mut(&mut merged).insert("managedFields".into(), Value::Array(entries));
    Ok(merged)
}

/// Record that `manager` changed `old` into `new` with a non-apply write: it takes ownership of
/// every changed leaf, which other managers lose.
pub fn record_update(res: &Resource, old: Option<&Value>, new: &mut Value, manager: &str) {
    let leaves = fields_of(res, new, &mut Vec::new(), true).leaves();
    let changed: Vec<Vec<String>> = match old {
        None => leaves,
        Some(old) => leaves
            .into_iter()
            .filter(|l| lookup(old, l) != lookup(new, l))
            .collect(),
    };
    if changed.is_empty() {
        return;
    }
    let mut entries = entries(new);
    for e in entries.iter_mut() {
        let mut set = entry_set(e);
        let before = set.clone();
        for leaf in &changed {
            set.remove(leaf);
        }
        if set != before {
            e["fieldsV1"] = set.to_v1();
        }
    }
    let mut mine = entries
        .iter()
        .find(|e| entry_is(e, manager, "Update"))
        .map(entry_set)
        .unwrap_or_default();
    for leaf in &changed {
        mine.insert(leaf);
    }
    entries.retain(|e| !entry_is(e, manager, "Update") && !entry_set(e).is_empty());
    entries.push(new_entry(res, manager, "Update", &mine));
    object::meta_mut(new).insert("managedFields".into(), Value::Array(entries));
}
