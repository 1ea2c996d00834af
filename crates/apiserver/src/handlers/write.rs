//! create, update and patch (and the status, scale, binding and finalize subresources): one
//! write path that fills server-owned metadata, runs the kind's defaults and validation, checks
//! the namespace, and writes with compare-and-swap.

use http::{Response, StatusCode};
use ledge_api::Pointer as _;
use ledge_api::{ApiError, GroupResource, StatusCause, Subresource};
use ledge_store::StoreError;
use serde_json::{Value, json};

use super::Ctx;
use super::admit::{check_namespace, check_type, validate_all};
use super::read::respond_object;
use super::subresource::{apply_scale, scale_of};
use crate::http::body::{self, Body};
use crate::object;
use crate::patch;
use crate::registry::Resource;
use crate::state::ApiState;

/// How many times a write that lost a compare-and-swap race is retried (patch, unconditional
/// update) before answering 409.
pub(super) const MAX_RETRIES: usize = 16;

/// Map a store error to the API error a client expects.
pub fn store_error(gr: GroupResource<'_>, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(_) => ApiError::already_exists(gr, name),
        StoreError::NotFound(_) => ApiError::not_found(gr, name),
        StoreError::Conflict { .. } => ApiError::modified(gr, name),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(requested, compacted),
        StoreError::Unavailable(m) => ApiError::unavailable(format!("storage is unavailable: {m}")),
        other => ApiError::internal(other.to_string()),
    }
}

/// Create an object through the full pipeline (also used by in-process controllers).
pub async fn create_object(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    // The OpenAPI documents read CRD schemas from this server's cache (crate::openapi::crd).
    check_type(res, &mut obj)?;
    let gr = GroupResource {
        group: &res.def.group,
        resource: &res.def.plural,
    };
    let meta = object::meta_mut(&mut obj);
    if res.def.namespaced {
        match (meta.get("namespace").and_then(Value::as_str), namespace) {
            (Some(body_ns), Some(path_ns)) if !body_ns.is_empty() && body_ns != path_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (_, Some(path_ns)) => {
                meta.insert("namespace".into(), json!(path_ns));
            }
            (_, None) => {
                return Err(ApiError::bad_request(
                    "a namespace is required to create this object",
                ));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty()
        && let Some(base) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    {
        let generated = ledge_api::validation::generate_name(base, |n| rand::random_range(0..n));
        meta.insert("name".into(), json!(generated));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(f);
    }
    if res.strategy.tracks_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    res.strategy.defaults(&mut obj);
    if let Some(m) = manager {
        patch::record_update(res, None, &mut obj, m);
    }
    validate_all(res, &obj, None)?;
    check_namespace(state, res, namespace, true).await?;
    let name = object::name(&obj).to_string();
    crate::admission::on_create(state, res, &mut obj).await?;
    if dry_run {
        if state.cache.get(&res.def.key(namespace, &name)).is_some() {
            return Err(ApiError::already_exists(gr, &name));
        }
        return Ok(obj);
    }
    let key = res.def.key(namespace, &name);
    let kv = state
        .store
        .create(&key, object::encode_for_store(&obj).into())
        .await
        .map_err(|e| store_error(gr, &name, e))?;
    object::set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// POST.
pub async fn create(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    // fieldValidation (crate::fieldcheck): unknown/duplicate fields rejected, dropped or warned.
    crate::fieldcheck::screened(ctx, raw, create_checked).await
}

async fn create_checked(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let obj = body::decode_object(&body::content_type(&ctx.headers), &raw)?;
    let manager = field_manager(&ctx);
    let obj = create_object(
        &ctx.state,
        &ctx.res,
        ctx.namespace(),
        obj,
        ctx.dry_run()?,
        Some(&manager),
    )
    .await?;
    Ok(respond_object(&ctx, StatusCode::CREATED, &obj))
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `.status` (when a status subresource exists).
    Main,
    /// `/status`: only `.status`.
    Status,
}

/// Merge server-owned fields of `old` into `new` for an update of `part`.
fn carry_over(res: &Resource, part: Part, old: &Value, new: &mut Value) {
    let keep = [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ];
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    match part {
        Part::Main => {
            if res.def.has(Subresource::Status) {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        }
        Part::Status => {
            // Upstream status strategies keep everything but `.status` from the stored object.
            let status = new.get("status").cloned();
            *new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
    }
    let meta = object::meta_mut(new);
    if !meta.contains_key("managedFields")
        && let Some(m) = old_meta.get("managedFields")
    {
        meta.insert("managedFields".into(), m.clone());
    }
    for f in keep {
        match old_meta.get(f) {
            Some(v) => {
                meta.insert(f.into(), v.clone());
            }
            None => {
                meta.remove(f);
            }
        }
    }
}

/// Everything an update needs to know, for `write_update`.
pub struct Update<'a> {
    /// Resource.
    pub res: &'a Resource,
    /// Namespace.
    pub namespace: Option<&'a str>,
    /// Name.
    pub name: &'a str,
    /// Which part is written.
    pub part: Part,
    /// Dry run.
    pub dry_run: bool,
    /// The field manager recorded in `managedFields` (None for apply, which records itself).
    pub manager: Option<&'a str>,
}

/// Write `new` over the stored object at `old`'s revision: carry server fields, bump
/// generation, default, validate, CAS. A deleting object whose last finalizer was removed is
/// deleted instead. Returns the stored object.
pub async fn write_update(
    state: &ApiState,
    u: &Update<'_>,
    old: &Value,
    mut new: Value,
) -> Result<Value, ApiError> {
    let res = u.res;
    let gr = GroupResource {
        group: &res.def.group,
        resource: &res.def.plural,
    };
    check_type(res, &mut new)?;
    if object::name(&new) != u.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            object::name(&new),
            u.name
        )));
    }
    if res.def.namespaced {
        match object::namespace(&new) {
            Some(ns) if Some(ns) != u.namespace && !ns.is_empty() => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                object::meta_mut(&mut new)
                    .insert("namespace".into(), json!(u.namespace.unwrap_or("")));
            }
        }
    }
    let old_rv = object::resource_version(old).unwrap_or(0);
    carry_over(res, u.part, old, &mut new);
    res.strategy.defaults(&mut new);
    if res.strategy.tracks_generation() && object::spec_differs(&new, old) {
        let g = old
            .at("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object::meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if let Some(manager) = u.manager {
        patch::record_update(res, Some(old), &mut new, manager);
    }
    validate_all(res, &new, Some(old))?;
    if object::is_deleting(old) {
        let old_f = object::finalizers(old);
        if object::finalizers(&new).iter().any(|f| !old_f.contains(f)) {
            return Err(ApiError::invalid(&res.def.group, &res.def.kind, u.name, vec![StatusCause {
                reason: "FieldValueForbidden".into(),
                message: "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".into(),
                field: "metadata.finalizers".into(),
            }]));
        }
    }
    let key = res.def.key(u.namespace, u.name);
    if u.dry_run {
        object::set_resource_version(&mut new, old_rv);
        return Ok(new);
    }
    if crate::admission::completes_deletion(res, old, &new) {
        let kv = state
            .store
            .delete(&key, Some(old_rv))
            .await
            .map_err(|e| store_error(gr, u.name, e))?;
        object::set_resource_version(&mut new, kv.mod_revision);
        return Ok(new);
    }
    // The stored encoding leaves the resourceVersion out, so it can be set before comparing.
    object::set_resource_version(&mut new, old_rv);
    if &new == old {
        // Nothing changed: upstream skips the write and returns the object as is.
        return Ok(new);
    }
    let kv = state
        .store
        .update(&key, object::encode_for_store(&new).into(), old_rv)
        .await
        .map_err(|e| store_error(gr, u.name, e))?;
    object::set_resource_version(&mut new, kv.mod_revision);
    Ok(new)
}

/// A read-modify-write loop for in-process controllers: `change` returns the new object or
/// `None` for "nothing to do"; retried on conflicts.
pub async fn system_update(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
    part: Part,
    mut change: impl FnMut(&Value) -> Option<Value>,
) -> Result<Option<Value>, ApiError> {
    let gr = GroupResource {
        group: &res.def.group,
        resource: &res.def.plural,
    };
    let key = res.def.key(namespace, name);
    for _ in 0..MAX_RETRIES {
        state.cache.wait_for(state.store.current_revision()).await;
        let Some(old) = state.cache.get(&key) else {
            return Err(ApiError::not_found(gr, name));
        };
        let Some(new) = change(&old) else {
            return Ok(None);
        };
        let u = Update {
            res,
            namespace,
            name,
            part,
            dry_run: false,
            manager: None,
        };
        match write_update(state, &u, &old, new).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            other => return other.map(Some),
        }
    }
    Err(ApiError::modified(gr, name))
}

/// The field manager of a write: `fieldManager`, else the client's User-Agent program name
/// (upstream `prefixFromUserAgent`).
pub fn field_manager(ctx: &Ctx) -> String {
    if let Some(m) = ctx.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    ctx.headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn part_of(sub: Option<Subresource>) -> Part {
    if sub == Some(Subresource::Status) {
        Part::Status
    } else {
        Part::Main
    }
}

/// PUT.
pub async fn update(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    // fieldValidation (crate::fieldcheck): unknown/duplicate fields rejected, dropped or warned.
    crate::fieldcheck::screened(ctx, raw, update_checked).await
}

async fn update_checked(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let new = body::decode_object(&body::content_type(&ctx.headers), &raw)?;
    update_part(ctx, new, Part::Main).await
}

pub(super) async fn update_part(
    ctx: Ctx,
    new: Value,
    part: Part,
) -> Result<Response<Body>, ApiError> {
    let dry_run = ctx.dry_run()?;
    let wanted_rv = object::meta_str(&new, "resourceVersion")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let manager = field_manager(&ctx);
    let u = Update {
        res: &ctx.res,
        namespace: ctx.namespace(),
        name: ctx.name(),
        part,
        dry_run,
        manager: Some(&manager),
    };
    for _ in 0..MAX_RETRIES {
        let old = match ctx.current().await {
            Ok(o) => o,
            Err(e) if e.code == 404 && part == Part::Main => {
                // PUT creates when the object is absent (upstream AllowCreateOnUpdate for most kinds).
                if wanted_rv.is_some() {
                    return Err(e);
                }
                let obj = create_object(
                    &ctx.state,
                    &ctx.res,
                    ctx.namespace(),
                    new,
                    dry_run,
                    Some(&manager),
                )
                .await?;
                return Ok(respond_object(&ctx, StatusCode::CREATED, &obj));
            }
            Err(e) => return Err(e),
        };
        if let Some(rv) = &wanted_rv
            && old.at("/metadata/resourceVersion").and_then(Value::as_str) != Some(rv.as_str())
        {
            return Err(ApiError::modified(ctx.gr(), ctx.name()));
        }
        match write_update(&ctx.state, &u, &old, new.clone()).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" && wanted_rv.is_none() => continue,
            Err(e) => return Err(e),
            Ok(obj) => return Ok(respond_object(&ctx, StatusCode::OK, &obj)),
        }
    }
    Err(ApiError::modified(ctx.gr(), ctx.name()))
}

/// PATCH (all four patch types).
pub async fn patch(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    // fieldValidation (crate::fieldcheck): unknown/duplicate fields rejected, dropped or warned.
    crate::fieldcheck::screened(ctx, raw, |ctx, raw| patch_part(ctx, raw, None)).await
}

pub(super) async fn patch_part(
    ctx: Ctx,
    raw: bytes::Bytes,
    sub: Option<Subresource>,
) -> Result<Response<Body>, ApiError> {
    let dry_run = ctx.dry_run()?;
    let kind = patch::PatchKind::from_content_type(&body::content_type(&ctx.headers), &ctx.res)?;
    let manager = ctx.query.get("fieldManager").unwrap_or("").to_string();
    let force = ctx.query.flag("force");
    if kind == patch::PatchKind::Apply && manager.is_empty() {
        return Err(ApiError::invalid(
            "",
            "PatchOptions",
            "",
            vec![StatusCause {
                reason: "FieldValueRequired".into(),
                message: "fieldManager: Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            }],
        ));
    }
    if force && kind != patch::PatchKind::Apply {
        return Err(ApiError::invalid(
            "",
            "PatchOptions",
            "",
            vec![StatusCause {
                reason: "FieldValueForbidden".into(),
                message: "force: Forbidden: may not be specified for non-apply patch".into(),
                field: "force".into(),
            }],
        ));
    }
    let patch_doc = patch::decode(kind, &raw)?;
    let part = part_of(sub);
    let update_manager = field_manager(&ctx);
    let recorded = (kind != patch::PatchKind::Apply).then_some(update_manager.as_str());
    let u = Update {
        res: &ctx.res,
        namespace: ctx.namespace(),
        name: ctx.name(),
        part,
        dry_run,
        manager: recorded,
    };
    for _ in 0..MAX_RETRIES {
        let old = match ctx.current().await {
            Ok(o) => o,
            Err(e) if e.code == 404 && kind == patch::PatchKind::Apply && part == Part::Main => {
                let obj = patch::apply_create(&ctx.res, &patch_doc, &manager)?;
                let obj = create_object(&ctx.state, &ctx.res, ctx.namespace(), obj, dry_run, None)
                    .await?;
                return Ok(respond_object(&ctx, StatusCode::CREATED, &obj));
            }
            Err(e) => return Err(e),
        };
        let scale_view = sub == Some(Subresource::Scale);
        let base = if scale_view {
            scale_of(&ctx.res, &old)
        } else {
            (*old).clone()
        };
        let patched = patch::apply_patch(kind, &ctx.res, &base, &patch_doc, &manager, force)?;
        // A patch that sets metadata.resourceVersion makes it a precondition (409 on
        // mismatch, no retry); otherwise a lost compare-and-swap race is retried against the
        // fresh object, as upstream does for patches.
        let patched_rv = patched
            .at("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let base_rv = base.at("/metadata/resourceVersion").and_then(Value::as_str);
        let pinned = patched_rv.is_some_and(|rv| Some(rv) != base_rv)
            || patch::mentions_resource_version(kind, &patch_doc);
        if patched_rv.is_some() && patched_rv != base_rv {
            return Err(ApiError::modified(ctx.gr(), ctx.name()));
        }
        let new = if scale_view {
            apply_scale(&ctx.res, &old, &patched)?
        } else {
            patched
        };
        match write_update(&ctx.state, &u, &old, new).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" && !pinned => continue,
            Err(e) => return Err(e),
            Ok(obj) => {
                let shown = if scale_view {
                    scale_of(&ctx.res, &obj)
                } else {
                    obj
                };
                return Ok(respond_object(&ctx, StatusCode::OK, &shown));
            }
        }
    }
    Err(ApiError::modified(ctx.gr(), ctx.name()))
}
