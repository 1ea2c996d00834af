//! get and list, served from the watch cache after it caught up with the store.

use base64::Engine as _;
use http::{Response, StatusCode};
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use serde_json::{Value, json};

use super::{Ctx, Filter};
use crate::http::body::{Body, Encoding, json_response, object_response};
use crate::table;

/// Respond with one object in the negotiated encoding.
pub fn respond_object(ctx: &Ctx, status: StatusCode, obj: &Value) -> Response<Body> {
    if ctx.encoding == Encoding::Table {
        let rv = obj
            .at("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(json!(""));
        let t = table::table(&ctx.res, &[obj], json!({"resourceVersion": rv}), true);
        return json_response(status, &t);
    }
    object_response(status, obj, ctx.encoding)
}

/// GET one object.
pub async fn get(ctx: Ctx) -> Result<Response<Body>, ApiError> {
    let obj = ctx.current().await?;
    Ok(respond_object(&ctx, StatusCode::OK, &obj))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: i64,
    start: String,
}

fn decode_continue(token: &str, prefix: &str) -> Result<Continue, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: the token was not issued by this server or has been altered",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let c: Continue = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if !c.start.starts_with(prefix) {
        return Err(bad());
    }
    Ok(c)
}

/// LIST a collection: selectors, `limit`/`continue` paging, tables.
pub async fn list(ctx: Ctx) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(&ctx)?;
    let prefix = ctx.res.def.namespace_prefix(ctx.namespace());
    let limit = ctx
        .query
        .int("limit")?
        .filter(|n| *n > 0)
        .map(|n| n as usize);
    let resume = match ctx.query.get("continue").filter(|s| !s.is_empty()) {
        Some(token) => Some(decode_continue(token, &prefix)?),
        None => None,
    };
    ctx.state
        .cache
        .wait_for(ctx.state.store.current_revision())
        .await;
    let snapshot = ctx
        .state
        .cache
        .list(&prefix, resume.as_ref().map(|c| c.start.as_str()));
    let revision = resume.as_ref().map_or(snapshot.revision, |c| c.rv);
    let matching: Vec<&Value> = snapshot
        .items
        .iter()
        .map(|a| a.as_ref())
        .filter(|o| filter.matches(o))
        .collect();
    let (page, rest) = match limit {
        Some(n) if matching.len() > n => matching.split_at(n),
        _ => (matching.as_slice(), &[][..]),
    };
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if !rest.is_empty()
        && let Some(last) = page.last()
    {
        let key = ctx
            .res
            .def
            .key(crate::object::namespace(last), crate::object::name(last));
        let token = serde_json::to_vec(&Continue {
            rv: revision,
            start: key,
        })
        .unwrap_or_default();
        meta["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
        if filter.is_empty() {
            meta["remainingItemCount"] = json!(rest.len());
        }
    }
    if ctx.encoding == Encoding::Table {
        let full = ctx.query.get("includeObject") == Some("Object");
        return Ok(json_response(
            StatusCode::OK,
            &table::table_with(&ctx.res, page, meta, true, full),
        ));
    }
    let list = ListBody {
        kind: ctx.res.def.list_kind(),
        api_version: ctx.res.def.api_version(),
        metadata: meta,
        items: page,
    };
    if ctx.encoding == Encoding::Json {
        // Serialised straight from the cached objects: no copy of the items into a new tree.
        let bytes = serde_json::to_vec(&list).unwrap_or_default();
        return Ok(crate::http::body::bytes_response(
            StatusCode::OK,
            "application/json",
            bytes.into(),
        ));
    }
    let value = serde_json::to_value(&list).unwrap_or_default();
    Ok(object_response(StatusCode::OK, &value, ctx.encoding))
}

/// A list response, serialised without copying its items.
#[derive(serde::Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: &'a [&'a Value],
}
