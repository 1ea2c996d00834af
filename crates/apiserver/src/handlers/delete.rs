//! delete and deletecollection: preconditions, finalizers (`deletionTimestamp` first, removal
//! when the last finalizer goes), propagation policies for the garbage collector, and graceful
//! deletion of pods bound to a node.

use http::{Response, StatusCode};
use ledge_api::Pointer as _;
use ledge_api::{ApiError, GroupResource};
use serde_json::{Value, json};

use super::read::respond_object;
use super::write::store_error;
use super::{Ctx, Filter};
use crate::http::body::{self, Body, object_response};
use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

/// DeleteOptions from the body and query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `Background`, `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// Grace period override.
    pub grace_period: Option<i64>,
    /// Required uid.
    pub uid: Option<String>,
    /// Required resourceVersion.
    pub resource_version: Option<String>,
    /// Dry run.
    pub dry_run: bool,
}

impl DeleteOptions {
    fn parse(ctx: &Ctx, raw: &[u8]) -> Result<Self, ApiError> {
        let doc: Value = if raw.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            body::decode_object(&body::content_type(&ctx.headers), raw)?
        };
        let mut opts = DeleteOptions {
            propagation: doc
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            grace_period: doc.get("gracePeriodSeconds").and_then(Value::as_i64),
            uid: doc
                .at("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            resource_version: doc
                .at("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: ctx.dry_run()?
                || doc
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()),
        };
        if doc.get("orphanDependents") == Some(&json!(true)) && opts.propagation.is_none() {
            opts.propagation = Some("Orphan".into());
        }
        if let Some(p) = ctx.query.get("propagationPolicy") {
            opts.propagation = Some(p.to_string());
        }
        if let Some(g) = ctx.query.int("gracePeriodSeconds")? {
            opts.grace_period = Some(g);
        }
        if let Some(p) = &opts.propagation
            && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        Ok(opts)
    }
}

/// What happened to a deleted object.
pub enum Deleted {
    /// Gone from the store.
    Gone(Value),
    /// Marked for deletion; finalizers or a grace period still hold it.
    Pending(Value),
}

/// Delete one object through the full pipeline (also used by in-process controllers).
pub async fn delete_object(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let gr = GroupResource {
        group: &res.def.group,
        resource: &res.def.plural,
    };
    let key = res.def.key(namespace, name);
    for _ in 0..16 {
        state.cache.wait_for(state.store.current_revision()).await;
        let Some(old) = state.cache.get(&key) else {
            return Err(ApiError::not_found(gr, name));
        };
        if let Some(uid) = &opts.uid
            && object::uid(&old) != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                gr,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object::uid(&old).unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && object::meta_str(&old, "resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::conflict(
                gr,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    object::meta_str(&old, "resourceVersion").unwrap_or("")
                ),
            ));
        }
        let mut new = (*old).clone();
        let mut finalizers = object::finalizers(&old);
        match opts.propagation.as_deref() {
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into())
            }
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            _ => {}
        }
        let grace = graceful_period(res, &old, opts);
        let namespace_finalizers = res.def.group.is_empty()
            && res.def.plural == "namespaces"
            && old
                .at("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
        if finalizers.is_empty() && grace.is_none() && !namespace_finalizers {
            if opts.dry_run {
                return Ok(Deleted::Gone(new));
            }
            let rv = object::resource_version(&old).unwrap_or(0);
            match state.store.delete(&key, Some(rv)).await {
                Ok(kv) => {
                    object::set_resource_version(&mut new, kv.mod_revision);
                    return Ok(Deleted::Gone(new));
                }
                Err(ledge_store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(gr, name, e)),
            }
        }
        if object::is_deleting(&old) && object::finalizers(&old) == finalizers {
            // Already being deleted; a shorter grace period could be applied here (upstream allows it).
            return Ok(Deleted::Pending((*old).clone()));
        }
        let meta = object::meta_mut(&mut new);
        if !meta.contains_key("deletionTimestamp") {
            let at = chrono::Utc::now() + chrono::Duration::seconds(grace.unwrap_or(0));
            meta.insert(
                "deletionTimestamp".into(),
                json!(ledge_api::time::format_time(at)),
            );
            meta.insert(
                "deletionGracePeriodSeconds".into(),
                json!(grace.unwrap_or(0)),
            );
        }
        meta.insert("finalizers".into(), json!(finalizers));
        if finalizers.is_empty() {
            meta.remove("finalizers");
        }
        if namespace_finalizers {
            new["status"]["phase"] = json!("Terminating");
        }
        // Marking for deletion changes only server-owned fields (deletionTimestamp, finalizers,
        // a namespace's phase), which the update path protects from clients; write it directly.
        if opts.dry_run {
            return Ok(Deleted::Pending(new));
        }
        let rv = object::resource_version(&old).unwrap_or(0);
        match state
            .store
            .update(&key, object::encode_for_store(&new).into(), rv)
            .await
        {
            Ok(kv) => {
                object::set_resource_version(&mut new, kv.mod_revision);
                return Ok(Deleted::Pending(new));
            }
            Err(ledge_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(gr, name, e)),
        }
    }
    Err(ApiError::modified(gr, name))
}

/// Pods bound to a node are deleted gracefully: the node agent stops them and then removes the
/// object. Unbound or finished pods, and a grace period of 0, delete at once.
fn graceful_period(res: &Resource, pod: &Value, opts: &DeleteOptions) -> Option<i64> {
    if !(res.def.group.is_empty() && res.def.plural == "pods") {
        return None;
    }
    let bound = pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.at("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let grace = opts
        .grace_period
        .or_else(|| {
            pod.at("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    (bound && !finished && grace > 0).then_some(grace)
}

/// DELETE one object.
pub async fn delete(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let opts = DeleteOptions::parse(&ctx, &raw)?;
    match delete_object(&ctx.state, &ctx.res, ctx.namespace(), ctx.name(), &opts).await? {
        Deleted::Gone(obj) => Ok(respond_object(&ctx, StatusCode::OK, &obj)),
        Deleted::Pending(obj) => Ok(respond_object(&ctx, StatusCode::ACCEPTED, &obj)),
    }
}

/// DELETE a collection (with selectors).
pub async fn delete_collection(ctx: Ctx, raw: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let opts = DeleteOptions::parse(&ctx, &raw)?;
    let filter = Filter::from_query(&ctx)?;
    ctx.state
        .cache
        .wait_for(ctx.state.store.current_revision())
        .await;
    let snapshot = ctx
        .state
        .cache
        .list(&ctx.res.def.namespace_prefix(ctx.namespace()), None);
    let mut items = Vec::new();
    for obj in snapshot.items.iter().filter(|o| filter.matches(o)) {
        let (ns, name) = (
            object::namespace(obj).map(str::to_string),
            object::name(obj).to_string(),
        );
        match delete_object(&ctx.state, &ctx.res, ns.as_deref(), &name, &opts).await {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": ctx.res.def.list_kind(),
        "apiVersion": ctx.res.def.api_version(),
        "metadata": {"resourceVersion": ctx.state.cache.revision().to_string()},
        "items": items,
    });
    Ok(object_response(StatusCode::OK, &list, ctx.encoding))
}
