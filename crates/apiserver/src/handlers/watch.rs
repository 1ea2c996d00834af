//! watch: a chunked stream of one JSON event per line (`ADDED`, `MODIFIED`, `DELETED`,
//! `BOOKMARK`, `ERROR`), served from the watch cache. Objects entering or leaving a selector
//! appear as ADDED/DELETED; a resourceVersion older than the cache's history gets an ERROR event
//! with a 410 `Expired` status, as upstream does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use ledge_api::Pointer as _;
use ledge_api::{ApiError, StatusCause};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::{Ctx, Filter};
use crate::cache::{CacheError, ChangeKind, Subscription};
use crate::http::body::{Body, Encoding};
use crate::registry::Resource;
use crate::table;

/// How often a watch that allows bookmarks gets one (upstream sends them about every minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// The longest a watch runs without `timeoutSeconds` (upstream picks 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Encoder {
    res: Arc<Resource>,
    encoding: Encoding,
    sent_headers: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, obj: &Value) -> Bytes {
        if self.encoding == Encoding::Table && kind != "ERROR" && kind != "BOOKMARK" {
            let rv = obj
                .at("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            let t = table::table(
                &self.res,
                &[obj],
                json!({"resourceVersion": rv}),
                !self.sent_headers,
            );
            self.sent_headers = true;
            let mut line =
                serde_json::to_vec(&json!({"type": kind, "object": t})).unwrap_or_default();
            line.push(b'\n');
            return Bytes::from(line);
        }
        let object = serde_json::to_vec(obj).unwrap_or_default();
        Self::line(kind, &object)
    }

    /// `{"type":KIND,"object":OBJECT}` + newline, around an already encoded object.
    fn line(kind: &str, object_json: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(object_json.len() + kind.len() + 24);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(object_json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&mut self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.res.def.kind, "apiVersion": self.res.def.api_version(), "metadata": meta});
        self.event("BOOKMARK", &obj)
    }
}

fn streaming(rx: mpsc::Receiver<Bytes>, encoding: Encoding) -> Response<Body> {
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    *resp.status_mut() = StatusCode::OK;
    let ct = if encoding == Encoding::Table {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    resp
}

/// Start a watch.
pub async fn watch(ctx: Ctx) -> Result<Response<Body>, ApiError> {
    let filter = Filter::from_query(&ctx)?;
    let prefix = ctx.res.def.namespace_prefix(ctx.namespace());
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("").to_string();
    let initial_events = ctx.query.get("sendInitialEvents").map(|v| v == "true");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    if initial_events.is_some() && ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid("", "ListOptions", "", vec![StatusCause {
            reason: "FieldValueForbidden".into(),
            message: "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
            field: "resourceVersionMatch".into(),
        }]));
    }
    if initial_events == Some(true) && !bookmarks {
        return Err(ApiError::invalid("", "ListOptions", "", vec![StatusCause {
            reason: "FieldValueForbidden".into(),
            message: "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true".into(),
            field: "allowWatchBookmarks".into(),
        }]));
    }
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => DEFAULT_TIMEOUT,
    };
    let state = ctx.state.clone();
    let mut enc = Encoder {
        res: ctx.res.clone(),
        encoding: ctx.encoding,
        sent_headers: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);

    // Resolve where the watch starts: with the current state (RV "" or "0", or
    // sendInitialEvents), or after a given revision.
    let mut initial = Vec::new();
    let mut initial_end = None;
    let sub: Subscription;
    let start_from_state = rv_param.is_empty() || rv_param == "0" || initial_events == Some(true);
    if start_from_state {
        if rv_param.is_empty() || initial_events == Some(true) {
            state.cache.wait_for(state.store.current_revision()).await;
        }
        if let Some(min) = rv_param.parse::<i64>().ok().filter(|r| *r > 0) {
            wait_not_older(&state, min).await?;
        }
        let (snapshot, s) = state.cache.snapshot_and_subscribe(&prefix);
        initial = snapshot
            .items
            .into_iter()
            .filter(|o| filter.matches(o))
            .collect();
        if initial_events == Some(true) {
            initial_end = Some(snapshot.revision);
        }
        sub = s;
    } else {
        let after: i64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {rv_param:?}"))
        })?;
        wait_not_older(&state, after).await?;
        match state.cache.subscribe(&prefix, after) {
            Ok(s) => sub = s,
            Err(CacheError::Expired { requested, oldest }) => {
                let status = ApiError::expired(requested, oldest).to_status();
                let line = enc.event("ERROR", &status);
                let _ = tx.try_send(line);
                drop(tx);
                return Ok(streaming(rx, ctx.encoding));
            }
        }
    }

    let cancel = state.cancel.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for obj in &initial {
            if tx.send(enc.event("ADDED", obj)).await.is_err() {
                return;
            }
        }
        if let Some(rev) = initial_end
            && tx.send(enc.bookmark(rev, true)).await.is_err()
        {
            return;
        }
        let Subscription {
            replay,
            mut live,
            revision,
        } = sub;
        let mut last = revision;
        // The revision the client last heard of (its resourceVersion, an event or a bookmark).
        // A periodic bookmark that would repeat it is not sent: on a quiet cluster an idle
        // edge node's watches cost no bytes.
        let mut told = rv_param
            .parse::<i64>()
            .unwrap_or(0)
            .max(initial_end.unwrap_or(0));
        for change in replay {
            last = change.revision;
            if let Some(line) = encode_change(&mut enc, &filter, &change) {
                if tx.send(line).await.is_err() {
                    return;
                }
                told = last;
            }
        }
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = cancel.cancelled() => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks && last > told => {
                    if tx.send(enc.bookmark(last, false)).await.is_err() {
                        return;
                    }
                    told = last;
                }
                next = live.recv() => match next {
                    Ok(change) => {
                        if change.revision <= last || !change.key.starts_with(&prefix) {
                            continue;
                        }
                        last = change.revision;
                        if let Some(line) = encode_change(&mut enc, &filter, &change) {
                            if tx.send(line).await.is_err() {
                                return;
                            }
                            told = last;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // This watcher fell too far behind; it must relist, as after compaction.
                        let status = ApiError::expired(last, state.cache.revision()).to_status();
                        let _ = tx.send(enc.event("ERROR", &status)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    Ok(streaming(rx, ctx.encoding))
}

/// Wait (briefly) for the cache to reach a revision the client has seen; upstream answers
/// "Too large resource version" after 3 s.
async fn wait_not_older(state: &crate::state::ApiState, revision: i64) -> Result<(), ApiError> {
    if state.cache.revision() >= revision {
        return Ok(());
    }
    match tokio::time::timeout(Duration::from_secs(3), state.cache.wait_for(revision)).await {
        Ok(()) => Ok(()),
        Err(_) => {
            let mut e = ApiError::new(
                504,
                "Timeout",
                format!(
                    "Too large resource version: {revision}, current: {}",
                    state.cache.revision()
                ),
            );
            e.retry_after_seconds = Some(1);
            Err(e)
        }
    }
}

fn encode_change(
    enc: &mut Encoder,
    filter: &Filter,
    change: &crate::cache::Change,
) -> Option<Bytes> {
    let now = filter.matches(&change.object);
    let before = change.prev.as_ref().is_some_and(|p| filter.matches(p));
    let kind = match change.kind {
        ChangeKind::Added => now.then_some("ADDED"),
        ChangeKind::Deleted => now.then_some("DELETED"),
        ChangeKind::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }?;
    if enc.encoding == Encoding::Json {
        // Every plain-JSON watcher shares one encoding of the object.
        return Some(Encoder::line(kind, change.object_json()));
    }
    Some(enc.event(kind, &change.object))
}
