//! The node's local API endpoint (in the spirit of OpenYurt's YurtHub): plain HTTP on the node's
//! loopback (`127.0.0.1:10261` by default) for workloads on the node that talk to the
//! Kubernetes API. Requests are forwarded to the server as the node — so they see what the node
//! may see (its Node, its pods, the ConfigMaps and Secrets those reference). While the server is
//! unreachable, reads of what the node store holds are answered from it (with a `Warning`
//! header saying so) and everything else gets a `503` `Status` saying the node is offline.
//!
//! Loopback only: anything that can reach the port acts with the node's rights, as a process on
//! the node could by reading the node's key.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ledge_api::ApiError;
use ledge_controller::Kind;
use ledge_controller::kinds::{CONFIG_MAP, RUNTIME_CLASS, SECRET};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::client::HttpClient;
use crate::node_store::{Link, NodeStore};
use crate::pod::spec::str_at;

/// The default port (YurtHub's).
pub const DEFAULT_PORT: u16 = 10261;
/// The largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Said on every answer served from the node store.
const OFFLINE_WARNING: &str =
    "299 - \"the server is unreachable: served from the node's offline copy\"";

type Body = BoxBody<Bytes, hyper::Error>;

/// What the endpoint needs.
pub struct LocalApi {
    /// The API, as the node.
    pub client: HttpClient,
    /// The node store (offline answers).
    pub store: Arc<NodeStore>,
    /// Whether the server is reachable.
    pub link: Arc<Link>,
}

/// Serve on `addr` until `cancel`. A port that cannot be bound is reported and the agent runs
/// on without the endpoint.
pub async fn run(api: Arc<LocalApi>, addr: SocketAddr, cancel: CancellationToken) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve the local API endpoint (another agent on this host?); pass --local-api-port 0 to turn it off, or another port");
            return;
        }
    };
    tracing::info!(%addr, "local API endpoint for the node's workloads");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let api = api.clone();
        let conn_cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(handle(&api, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                _ = conn_cancel.cancelled() => {}
            }
        });
    }
}

fn full(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn status(e: &ApiError) -> Response<Body> {
    full(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Bytes::from(e.to_status().to_string()),
    )
}

fn offline(what: &str) -> ApiError {
    ApiError::new(
        503,
        "ServiceUnavailable",
        format!(
            "the node is offline: {what} needs the server, which cannot be reached; retry when the link is back"
        ),
    )
}

async fn handle(api: &LocalApi, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return status(&ApiError::bad_request(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let read = method == Method::GET;
    let cached_read = || read.then(|| from_store(api, &path, &query)).flatten();
    // Known offline: answer at once rather than wait for a connection attempt to time out.
    if !api.link.is_up()
        && let Some(answer) = cached_read()
    {
        return answer;
    }
    let forwarded = api
        .client
        .send_with(
            method.clone(),
            &path_and_query,
            (!body.is_empty()).then_some(body),
            content_type.as_deref(),
        )
        .await;
    match forwarded {
        Ok(resp) => {
            api.link.set_up(true);
            let (parts, incoming) = resp.into_parts();
            Response::from_parts(parts, incoming.boxed())
        }
        Err(e) => {
            let e = ApiError::from(e);
            api.link.set_up(e.code != 503);
            if let Some(answer) = cached_read() {
                return answer;
            }
            let what = if read {
                "this read (only the node's own pods, ConfigMaps, Secrets and RuntimeClasses are kept offline)"
            } else {
                "a write"
            };
            status(&offline(what))
        }
    }
}

/// Answer a GET from the node store, if it holds the answer.
fn from_store(api: &LocalApi, path: &str, query: &str) -> Option<Response<Body>> {
    if query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
    {
        return None;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let value = match segments.as_slice() {
        ["api", "v1", "pods"] => pod_list(api, None),
        ["api", "v1", "namespaces", ns, "pods"] => pod_list(api, Some(ns)),
        ["api", "v1", "namespaces", ns, "pods", name] => api
            .store
            .pods()
            .into_iter()
            .find(|p| {
                str_at(p, "/metadata/namespace") == Some(ns)
                    && str_at(p, "/metadata/name") == Some(name)
            })
            .map(|p| typed("v1", "Pod", p))?,
        ["api", "v1", "namespaces", ns, "configmaps", name] => {
            object(api, &CONFIG_MAP, Some(ns), name)?
        }
        ["api", "v1", "namespaces", ns, "secrets", name] => object(api, &SECRET, Some(ns), name)?,
        ["apis", "node.k8s.io", "v1", "runtimeclasses", name] => {
            object(api, &RUNTIME_CLASS, None, name)?
        }
        _ => return None,
    };
    let mut r = full(StatusCode::OK, Bytes::from(value.to_string()));
    r.headers_mut()
        .insert(header::WARNING, HeaderValue::from_static(OFFLINE_WARNING));
    Some(r)
}

fn typed(api_version: &str, kind: &str, mut obj: Value) -> Value {
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    obj
}

fn object(api: &LocalApi, kind: &Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
    let obj = api.store.get(kind, namespace, name)?;
    Some(typed(&kind.api_version(), kind.kind, obj))
}

fn pod_list(api: &LocalApi, namespace: Option<&str>) -> Value {
    let items: Vec<Value> = api
        .store
        .pods()
        .into_iter()
        .filter(|p| namespace.is_none() || str_at(p, "/metadata/namespace") == namespace)
        .map(|p| typed("v1", "Pod", p))
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": ""}, "items": items})
}
