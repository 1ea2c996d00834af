//! The reverse tunnel: agents dial out, the server calls in. An agent opens
//! `GET /ledge/v1/tunnel` with `Upgrade: ledge-tunnel` using its node certificate; after the
//! `101` the server speaks HTTP/2 as the *client* on that connection and the agent serves it.
//! `kubectl logs` (and later exec and port-forward) reach a node this way, so an edge device
//! never needs an inbound port.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ledge_api::ApiError;
use ledge_api::Pointer as _;

use crate::auth::User;
use crate::http::body::Body;

pub use ledge_api::tunnel::{PATH, PROTOCOL, RENEW_HEADER, RENEW_PARAM};
const NODE_PREFIX: &str = "system:node:";

/// The body of a request sent to an agent.
pub type TunnelBody = BoxBody<Bytes, std::convert::Infallible>;

struct Entry {
    id: u64,
    sender: SendRequest<TunnelBody>,
}

/// The connected nodes.
#[derive(Default)]
pub struct Tunnels {
    nodes: Mutex<HashMap<String, Entry>>,
    next: AtomicU64,
}

impl Tunnels {
    fn insert(&self, node: &str, sender: SendRequest<TunnelBody>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_string(), Entry { id, sender });
        id
    }

    fn remove(&self, node: &str, id: u64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes.get(node).is_some_and(|e| e.id == id) {
            nodes.remove(node);
        }
    }

    /// Whether `node` has a tunnel open.
    pub fn connected(&self, node: &str) -> bool {
        self.nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .is_some_and(|e| !e.sender.is_closed())
    }

    /// GET `path_and_query` on `node`'s agent; the response body streams.
    ///
    /// # Errors
    /// 503 when the node has no tunnel or it broke.
    pub async fn get(
        &self,
        node: &str,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, ApiError> {
        self.send(
            node,
            http::Method::GET,
            path_and_query,
            Empty::new().boxed(),
        )
        .await
    }

    /// Send a request with a streamed body to `node`'s agent.
    ///
    /// # Errors
    /// 503 when the node has no tunnel or it broke.
    pub async fn send(
        &self,
        node: &str,
        method: http::Method,
        path_and_query: &str,
        body: TunnelBody,
    ) -> Result<Response<Incoming>, ApiError> {
        let unavailable = |why: String| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("node {node:?} cannot be reached: {why}"),
            )
        };
        let sender = {
            let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
            nodes.get(node).map(|e| e.sender.clone())
        };
        let Some(mut sender) = sender else {
            return Err(unavailable(
                "its agent is not connected (is `ledge agent` running there?)".into(),
            ));
        };
        sender
            .ready()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let req = Request::builder()
            .method(method)
            .uri(format!("http://agent{path_and_query}"))
            .body(body)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| unavailable(e.to_string()))
    }
}

/// The error an agent answered with (a `Status` body), as an [`ApiError`].
pub async fn agent_error(resp: Response<Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    match code {
        404 => ApiError::new(404, "NotFound", message),
        400..=499 => ApiError::bad_request(message),
        _ => ApiError::internal(message),
    }
}

/// The node a user is, if it is a node.
pub fn node_of(user: &User) -> Option<&str> {
    user.name
        .strip_prefix(NODE_PREFIX)
        .filter(|_| user.groups.iter().any(|g| g == "system:nodes"))
}

/// The lease interval an agent offered, if sane (0.5 s – 5 min).
fn renew_interval(query: Option<&str>) -> Option<Duration> {
    let ms: u64 = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(RENEW_PARAM)?.strip_prefix('='))?
        .parse()
        .ok()?;
    (500..=300_000)
        .contains(&ms)
        .then(|| Duration::from_millis(ms))
}

/// Accept an agent's tunnel: answer `101`, then run an HTTP/2 client over the connection.
///
/// Heartbeat economy (a ledge extension): an agent that offers its lease interval in
/// [`RENEW_PARAM`] has its Lease renewed by the server at that interval for as long as the
/// tunnel is alive, and sends no renewals of its own meanwhile. The tunnel's liveness is an
/// HTTP/2 ping from the server every three intervals, unanswered within one: an idle node then
/// costs one ping round trip every 30 s instead of a Lease write and its answer every 10 s.
/// A dead tunnel stops the renewals, so the node turns Unknown as upstream, one ping period
/// later at most.
///
/// # Errors
/// 403 for anyone but a node, 400 without the upgrade headers.
pub fn accept(
    state: Arc<crate::state::ApiState>,
    user: &User,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let tunnels = state.tunnels.clone();
    let Some(node) = node_of(user).map(str::to_string) else {
        return Err(ApiError::forbidden(format!(
            "User {:?} cannot open a node tunnel: only node certificates can",
            user.name
        )));
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !upgrade.eq_ignore_ascii_case(PROTOCOL) {
        return Err(ApiError::bad_request(format!(
            "the tunnel needs `Upgrade: {PROTOCOL}`"
        )));
    }
    let renew = renew_interval(req.uri().query());
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(node, error = %e, "tunnel upgrade failed");
                return;
            }
        };
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        if let Some(every) = renew {
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(every * 3)
                .keep_alive_timeout(every)
                .keep_alive_while_idle(true);
        }
        let (sender, conn) = match builder.handshake(upgraded).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(node, error = %e, "tunnel handshake failed");
                return;
            }
        };
        let id = tunnels.insert(&node, sender);
        tracing::debug!(node, "node tunnel open");
        let renewer =
            renew.map(|every| tokio::spawn(renew_lease(state.clone(), node.clone(), every)));
        if let Err(e) = conn.await {
            tracing::debug!(node, error = %e, "node tunnel ended");
        }
        if let Some(r) = renewer {
            r.abort();
        }
        tunnels.remove(&node, id);
    });
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, PROTOCOL);
    if let Some(every) = renew {
        resp = resp.header(RENEW_HEADER, every.as_millis().to_string());
    }
    resp.body(Body::default())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Renew `node`'s Lease every `every` until aborted (the tunnel closed). A missing Lease is left
/// to the agent, which creates it when it registers.
async fn renew_lease(state: Arc<crate::state::ApiState>, node: String, every: Duration) {
    use ledge_controller::Client as _;
    use ledge_controller::kinds::LEASE;
    let client = crate::client::LocalClient::new(state);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(Some(mut lease)) = client
            .get(&LEASE, Some(crate::auth::node::LEASE_NAMESPACE), &node)
            .await
        else {
            continue;
        };
        if lease
            .at("/spec/holderIdentity")
            .and_then(serde_json::Value::as_str)
            != Some(node.as_str())
        {
            continue;
        }
        lease["spec"]["renewTime"] =
            serde_json::Value::String(ledge_api::time::format_micro_time(chrono::Utc::now()));
        if let Err(e) = client
            .update(&LEASE, Some(crate::auth::node::LEASE_NAMESPACE), lease)
            .await
        {
            tracing::debug!(node, error = %e, "cannot renew the node's lease");
        }
    }
}

/// Forward an agent's streamed response to the client: same status and content type, the
/// body passed on frame by frame until either side goes away.
pub fn relay(resp: Response<Incoming>) -> Response<Body> {
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let mut incoming = resp.into_body();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                break;
            }
        }
    });
    let mut out = Response::new(channel_body(rx));
    *out.status_mut() = status;
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    out
}

/// A body streaming whatever is sent on the channel, ending when the sender is dropped.
pub fn channel_body(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> TunnelBody {
    StreamBody::new(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))))
    }))
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_offer_a_sane_lease_interval_or_none() {
        assert_eq!(
            renew_interval(Some("renewMillis=10000")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            renew_interval(Some("a=1&renewMillis=2000")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(renew_interval(None), None);
        assert_eq!(renew_interval(Some("renewMillis=10")), None);
        assert_eq!(renew_interval(Some("renewMillis=soon")), None);
        assert_eq!(renew_interval(Some("renewMillisX=2000")), None);
    }
}
