//! Strategic merge patch application (upstream `strategicpatch.StrategicMergePatch` with
//! `MergeParallelList` and `IgnoreUnmatchedNulls`, as the API server runs it).
//!
//! Upstream leaves directive leftovers in new content and relies on typed Go decoding to drop
//! them; ledge stores JSON, so content that is new to the object is "applied to nothing"
//! instead: directives are resolved and `null`s dropped wherever they appear.

use serde_json::{Map, Value};

use super::PatchError;
use super::order::{normalize, partition, position, same};
use super::schema::{FieldStrategy, PatchSchema};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList";

/// Where the merge is: field names feed the schema, indices only the error messages.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root,
    Field(&'a str),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

impl<'a> Path<'a> {
    fn child(&'a self, name: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    fn fields(&self) -> Vec<&'a str> {
        let mut out = self.parent.map(Path::fields).unwrap_or_default();
        if let Seg::Field(name) = self.seg {
            out.push(name);
        }
        out
    }

    fn display(&self) -> String {
        let mut out = self.parent.map(Path::display).unwrap_or_default();
        match self.seg {
            Seg::Root => {}
            Seg::Field(name) if out.is_empty() => out.push_str(name),
            Seg::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
        out
    }
}

/// Which JSON kind a list holds; lists must be homogeneous to merge.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Object,
    Scalar(u8),
}

fn element_kind(v: &Value, path: &Path<'_>) -> Result<ElementKind, PatchError> {
    Ok(match v {
        Value::Object(_) => ElementKind::Object,
        Value::Array(_) => {
            return Err(PatchError::ListOfLists {
                field: path.display(),
            });
        }
        Value::Null => ElementKind::Scalar(0),
        Value::Bool(_) => ElementKind::Scalar(1),
        Value::Number(_) => ElementKind::Scalar(2),
        Value::String(_) => ElementKind::Scalar(3),
    })
}

/// The common element kind of several lists, `None` when they are all empty.
fn list_kind(lists: &[&[Value]], path: &Path<'_>) -> Result<Option<ElementKind>, PatchError> {
    let mut kind = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        let k = element_kind(v, path)?;
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => {
                return Err(PatchError::MixedList {
                    field: path.display(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

fn directive_name(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn missing_key(path: &Path<'_>, key: &str, element: &Map<String, Value>) -> PatchError {
    PatchError::MissingMergeKey {
        field: path.display(),
        key: key.to_string(),
        element: Value::Object(element.clone()).to_string(),
    }
}

fn bad_directive(path: &Path<'_>, directive: &'static str, reason: &str) -> PatchError {
    PatchError::BadDirective {
        field: path.display(),
        directive,
        reason: reason.to_string(),
    }
}

/// Splits `$setElementOrder/x` / `$deleteFromPrimitiveList/x` keys into (directive, field).
fn list_directive(key: &str) -> Option<(&'static str, &str)> {
    [SET_ORDER, DELETE_PRIMITIVE]
        .into_iter()
        .find_map(|d| key.strip_prefix(d).map(|rest| (d, rest)))
}

struct Merger<'s> {
    schema: &'s dyn PatchSchema,
}

impl Merger<'_> {
    fn strategy(&self, path: &Path<'_>) -> FieldStrategy<'_> {
        self.schema.strategy(&path.fields())
    }

    /// Merges `patch` into `original`; `None` original means "apply to nothing". Returns
    /// `None` when the map must disappear (`$patch: delete` on a map that did not exist).
    fn merge_map(
        &self,
        original: Option<Map<String, Value>>,
        patch: &Map<String, Value>,
        path: &Path<'_>,
    ) -> Result<Option<Map<String, Value>>, PatchError> {
        if let Some(directive) = patch.get(PATCH) {
            match directive.as_str() {
                Some("replace") => {
                    let mut rest = patch.clone();
                    rest.shift_remove(PATCH);
                    return self.merge_map(None, &rest, path);
                }
                // Upstream answers an empty map, which decodes to the zero value.
                Some("delete") => return Ok(original.map(|_| Map::new())),
                // Upstream rejects `merge` on maps; it is the default, so ledge accepts it.
                Some("merge") => {}
                _ => {
                    return Err(PatchError::UnknownPatchType {
                        field: path.display(),
                        value: directive_name(directive),
                    });
                }
            }
        }
        let mut out = original.unwrap_or_default();
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            apply_retain_keys(&mut out, retain, patch, path)?;
        }
        let mut handled: Vec<&str> = Vec::new();
        for (key, order) in patch {
            if let Some((SET_ORDER, field)) = list_directive(key) {
                let field = field
                    .strip_prefix('/')
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| {
                        bad_directive(path, SET_ORDER, "expected $setElementOrder/<field>")
                    })?;
                self.set_element_order(
                    &mut out,
                    field,
                    order,
                    patch.get(field),
                    &path.child(field),
                )?;
                handled.push(field);
            }
        }
        let mut deletions = Vec::new();
        for (key, value) in patch {
            if key == PATCH || key == RETAIN_KEYS || handled.contains(&key.as_str()) {
                continue;
            }
            match list_directive(key) {
                Some((SET_ORDER, _)) => continue,
                Some((_, field)) => {
                    let field = field
                        .strip_prefix('/')
                        .filter(|f| !f.is_empty())
                        .ok_or_else(|| {
                            bad_directive(
                                path,
                                DELETE_PRIMITIVE,
                                "expected $deleteFromPrimitiveList/<field>",
                            )
                        })?;
                    deletions.push((field, value));
                    continue;
                }
                None => {}
            }
            let child = path.child(key);
            if value.is_null() {
                out.shift_remove(key);
                continue;
            }
            // Take the value out in place so the key keeps its position in the object.
            let merged = match out.get_mut(key).map(Value::take) {
                None => self.clean(value, &child)?,
                Some(original) => self.merge_value(original, value, &child)?,
            };
            match merged {
                Some(merged) => {
                    out.insert(key.clone(), merged);
                }
                None => {
                    out.shift_remove(key);
                }
            }
        }
        for (field, value) in deletions {
            let Value::Array(remove) = value else {
                return Err(bad_directive(
                    &path.child(field),
                    DELETE_PRIMITIVE,
                    "expected a list",
                ));
            };
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|item| !remove.iter().any(|r| same(r, item)));
            }
        }
        Ok(Some(out))
    }

    /// Merges a patch value into an existing value of the same field.
    fn merge_value(
        &self,
        original: Value,
        patch: &Value,
        path: &Path<'_>,
    ) -> Result<Option<Value>, PatchError> {
        match (original, patch) {
            (Value::Object(o), Value::Object(p)) => {
                Ok(self.merge_map(Some(o), p, path)?.map(Value::Object))
            }
            (Value::Array(o), Value::Array(p)) => {
                let strategy = self.strategy(path);
                Ok(Some(Value::Array(self.merge_list(
                    Some(o),
                    p,
                    strategy,
                    path,
                )?)))
            }
            // Scalars and kind changes: the patch value wins.
            (_, p) => self.clean(p, path),
        }
    }

    /// Applies patch content to nothing: resolves directives, drops `null` map values.
    fn clean(&self, patch: &Value, path: &Path<'_>) -> Result<Option<Value>, PatchError> {
        match patch {
            Value::Null => Ok(None),
            Value::Object(p) => Ok(self.merge_map(None, p, path)?.map(Value::Object)),
            Value::Array(p) => {
                let strategy = self.strategy(path);
                Ok(Some(Value::Array(
                    self.merge_list(None, p, strategy, path)?,
                )))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// Merges two lists according to the field's strategy (upstream `mergeSlice`).
    fn merge_list(
        &self,
        original: Option<Vec<Value>>,
        patch: &[Value],
        strategy: FieldStrategy<'_>,
        path: &Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        if !strategy.merge {
            return self.clean_elements(patch, path);
        }
        let original = original.unwrap_or_default();
        match list_kind(&[&original, patch], path)? {
            None => Ok(original),
            Some(ElementKind::Scalar(_)) => {
                let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
                for v in original.iter().chain(patch) {
                    if !merged.iter().any(|m| same(m, v)) {
                        merged.push(v.clone());
                    }
                }
                let (named, server_only) = partition(merged, patch, None);
                Ok(normalize(named, server_only, patch, &original, None))
            }
            Some(ElementKind::Object) => {
                let key = strategy
                    .merge_key
                    .ok_or_else(|| PatchError::NoMergeKeyForObjects {
                        field: path.display(),
                    })?;
                self.merge_keyed(original, patch, key, path)
            }
        }
    }

    /// Merges lists of objects by `key`, honouring `$patch` elements.
    fn merge_keyed(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
        path: &Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        let mut plain: Vec<(usize, Map<String, Value>)> = Vec::new();
        let mut replace = false;
        for (i, item) in patch.iter().enumerate() {
            let Value::Object(item) = item else { continue };
            match item.get(PATCH).map(|d| (d, d.as_str())) {
                None => plain.push((i, item.clone())),
                Some((_, Some("delete"))) => {
                    let id = item
                        .get(key)
                        .ok_or_else(|| missing_key(&path.index(i), key, item))?;
                    original.retain(|o| !o.get(key).is_some_and(|v| same(v, id)));
                }
                Some((_, Some("replace"))) => replace = true,
                Some((_, Some("merge"))) => {
                    let mut item = item.clone();
                    item.shift_remove(PATCH);
                    if !item.is_empty() {
                        plain.push((i, item));
                    }
                }
                Some((d, _)) => {
                    return Err(PatchError::UnknownPatchType {
                        field: path.index(i).display(),
                        value: directive_name(d),
                    });
                }
            }
        }
        let mut order = Vec::with_capacity(plain.len());
        for (i, item) in &plain {
            let id = item
                .get(key)
                .ok_or_else(|| missing_key(&path.index(*i), key, item))?;
            order.push(Value::Object(Map::from_iter([(
                key.to_string(),
                id.clone(),
            )])));
        }
        if replace {
            let items: Vec<Value> = plain
                .into_iter()
                .map(|(_, item)| Value::Object(item))
                .collect();
            return self.clean_elements(&items, path);
        }
        let live = original.clone();
        for (i, item) in &plain {
            let element = path.index(*i);
            match position(&original, &Value::Object(item.clone()), Some(key)) {
                Some(at) => {
                    let existing = match original[at].take() {
                        Value::Object(m) => Some(m),
                        _ => None,
                    };
                    if let Some(m) = self.merge_map(existing, item, &element)? {
                        original[at] = Value::Object(m);
                    }
                }
                None => {
                    if let Some(m) = self.merge_map(None, item, &element)? {
                        original.push(Value::Object(m));
                    }
                }
            }
        }
        let (named, server_only) = partition(original, &order, Some(key));
        Ok(normalize(named, server_only, &order, &live, Some(key)))
    }

    /// Elements of an atomic list or a `$patch: replace` list, applied to nothing.
    fn clean_elements(&self, items: &[Value], path: &Path<'_>) -> Result<Vec<Value>, PatchError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Null => out.push(Value::Null),
                other => out.extend(self.clean(other, &path.index(i))?),
            }
        }
        Ok(out)
    }

    /// Handles `$setElementOrder/<field>` together with the patch list of that field
    /// (upstream `mergePatchIntoOriginal`).
    fn set_element_order(
        &self,
        out: &mut Map<String, Value>,
        field: &str,
        order: &Value,
        patch_list: Option<&Value>,
        path: &Path<'_>,
    ) -> Result<(), PatchError> {
        let Value::Array(order) = order else {
            return Err(bad_directive(path, SET_ORDER, "expected a list"));
        };
        let patch_list = match patch_list {
            None => None,
            Some(Value::Array(items)) => Some(items.as_slice()),
            Some(_) => {
                return Err(PatchError::NotAList {
                    field: path.display(),
                });
            }
        };
        let original = match out.get_mut(field) {
            None => None,
            Some(Value::Array(items)) => Some(std::mem::take(items)),
            Some(_) => {
                return Err(PatchError::NotAList {
                    field: path.display(),
                });
            }
        };
        let strategy = self.strategy(path);
        let key = strategy.merge_key;
        check_order(patch_list.unwrap_or_default(), order, key, path)?;
        let live = original.clone().unwrap_or_default();
        let merged = match (original, patch_list) {
            (None, None) => return Ok(()),
            (Some(o), None) => o,
            (o, Some(p)) => self.merge_list(o, p, strategy, path)?,
        };
        let kind = list_kind(&[&live, patch_list.unwrap_or_default()], path)?;
        if let (Some(key), Some(ElementKind::Object)) = (key, kind) {
            for item in merged.iter().chain(order) {
                match item {
                    Value::Object(m) if !m.contains_key(key) => {
                        return Err(missing_key(path, key, m));
                    }
                    _ => {}
                }
            }
        }
        let (named, server_only) = partition(merged, order, key);
        let ordered = normalize(named, server_only, order, &live, key);
        out.insert(field.to_string(), Value::Array(ordered));
        Ok(())
    }
}

/// `$retainKeys`: drop every original key not listed; the patch may only set listed keys.
fn apply_retain_keys(
    out: &mut Map<String, Value>,
    retain: &Value,
    patch: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let keys: Vec<&str> = match retain {
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| bad_directive(path, RETAIN_KEYS, "expected a list of field names"))?,
        _ => {
            return Err(bad_directive(
                path,
                RETAIN_KEYS,
                "expected a list of field names",
            ));
        }
    };
    for (k, v) in patch {
        let directive = k == PATCH || k == RETAIN_KEYS || list_directive(k).is_some();
        if !directive && !v.is_null() && !keys.contains(&k.as_str()) {
            let reason = format!("the patch sets {k:?}, which is not in the $retainKeys list");
            return Err(bad_directive(path, RETAIN_KEYS, &reason));
        }
    }
    out.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// Upstream `validatePatchWithSetOrderList`: the patch list (deletions aside) must name its
/// elements in the same relative order as `$setElementOrder`.
fn check_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &Path<'_>,
) -> Result<(), PatchError> {
    let is_directive = |v: &Value| v.get(PATCH).is_some();
    let items: Vec<&Value> = patch.iter().filter(|v| !is_directive(v)).collect();
    let mut next = 0;
    for wanted in order {
        let Some(item) = items.get(next) else { break };
        if position(std::slice::from_ref(wanted), item, key).is_some() {
            next += 1;
        }
    }
    if next < items.len() {
        return Err(PatchError::OrderMismatch {
            field: path.display(),
        });
    }
    Ok(())
}

/// Applies a strategic merge patch to `doc` (see the module docs of [`crate::patch`]).
///
/// # Errors
/// [`PatchError`] naming the field when the patch is malformed (bad directives, order lists)
/// or cannot be applied to this object (missing merge keys, mixed or nested lists).
pub fn strategic_merge(
    doc: &Value,
    patch: &Value,
    schema: &dyn PatchSchema,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::InvalidPatch(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match doc {
        Value::Object(m) => Some(m.clone()),
        _ => None,
    };
    let root = Path {
        parent: None,
        seg: Seg::Root,
    };
    let merged = Merger { schema }.merge_map(original, patch, &root)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}
