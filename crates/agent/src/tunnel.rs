//! The agent's end of the reverse tunnels: it dials a server (`GET /ledge/v1/tunnel`, upgraded),
//! then *serves* HTTP/2 on that connection, so the server can ask the node for container logs
//! or an exec without the node opening a port. A `kubectl logs` may reach any of several
//! servers, so (as K3s' remotedialer) the agent keeps one tunnel to every server it knows, each
//! redialled on its own with capped back-off, started and stopped as servers come and go.
//! Only the tunnel to the server the agent's API connection uses asks that server to renew the
//! node's Lease.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::client::{HttpClient, TunnelTarget};
use crate::exec::Targets;
use crate::logs::{LogError, Logs, Options};

/// What the server can ask of this node through the tunnel.
#[derive(Clone, Debug)]
pub struct Services {
    /// Container logs.
    pub logs: Arc<Logs>,
    /// Running containers, for exec.
    pub exec: Arc<Targets>,
}

pub use ledge_api::tunnel::{PATH, PROTOCOL};
use ledge_api::tunnel::{RENEW_HEADER, RENEW_PARAM};

type Body = BoxBody<Bytes, Infallible>;

/// The longest wait between two attempts to open a tunnel to a server the agent does not talk
/// to: it only serves `kubectl logs`/`exec` sent to that server, and a server that is down for
/// long should not cost a connection attempt every few seconds on a metered link.
pub const SPARE_RECONNECT_CAP: Duration = Duration::from_secs(30);

/// Which tunnel session has its server renewing the node's Lease (`None`: no server does, the
/// heartbeat renews it). A session clears only its own mark, so a tunnel that ends late never
/// unsets the renewal of its successor.
pub type RenewedBy = tokio::sync::watch::Sender<Option<u64>>;

/// Tells tunnel sessions apart.
static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// What every tunnel shares.
struct Shared {
    client: HttpClient,
    services: Services,
    lease_interval: Duration,
    renewed_by_server: RenewedBy,
    link: Arc<crate::node_store::Link>,
}

/// Keep a tunnel open to every server the client knows until `cancel`, following the client's
/// server set (learned servers, failover). The tunnel to the current server offers the server
/// to renew the node's Lease every `lease_interval` while it lives (`renewed_by_server` then
/// names it, and the heartbeat sends no renewals of its own), and the
/// [`Link`](crate::node_store::Link) follows it.
///
/// # Cancel safety
/// Returns once every tunnel has stopped after `cancel`.
pub async fn run(
    client: HttpClient,
    services: Services,
    lease_interval: Duration,
    renewed_by_server: RenewedBy,
    link: Arc<crate::node_store::Link>,
    cancel: CancellationToken,
) {
    let mut servers = client.servers();
    let shared = Arc::new(Shared {
        client,
        services,
        lease_interval,
        renewed_by_server,
        link,
    });
    type Running = (CancellationToken, tokio::task::JoinHandle<()>);
    let key = |t: &TunnelTarget| (t.server.url().to_string(), t.renews, t.failover);
    let mut open: HashMap<(String, bool, bool), Running> = HashMap::new();
    loop {
        let targets = servers.borrow_and_update().tunnel_targets();
        let wanted: HashSet<_> = targets.iter().map(key).collect();
        // A tunnel whose role changed (its server became, or stopped being, the current one;
        // a second server appeared or the last other one went) is reopened: the renewal is
        // asked for, and the pings are set, when the tunnel opens.
        open.retain(|key, (stop, _)| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::debug!(server = %key.0, renews = key.1, "closing the tunnel");
                stop.cancel();
            }
            keep
        });
        for t in targets {
            if !open.contains_key(&key(&t)) {
                let stop = cancel.child_token();
                let k = key(&t);
                let task = tokio::spawn(keep_open(shared.clone(), t, stop.clone()));
                open.insert(k, (stop, task));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = servers.changed() => if changed.is_err() {
                // The client is gone (it cannot be while `shared` holds it).
                cancel.cancelled().await;
                break;
            },
        }
    }
    for (_, (_, task)) in open {
        let _ = task.await;
    }
}

/// Keep one tunnel open until `cancel`, offering the Lease renewal if `target.renews`.
async fn keep_open(shared: Arc<Shared>, target: TunnelTarget, cancel: CancellationToken) {
    let TunnelTarget {
        server,
        renews,
        failover,
    } = target;
    let lease_interval = shared.lease_interval;
    let mut delay = Duration::from_millis(500);
    let (path, cap) = if renews {
        (
            format!("{PATH}?{RENEW_PARAM}={}", lease_interval.as_millis()),
            crate::RECONNECT_CAP,
        )
    } else {
        (PATH.to_string(), SPARE_RECONNECT_CAP)
    };
    loop {
        let opened = tokio::select! {
            r = shared.client.open_tunnel(&server, &path, PROTOCOL) => r,
            _ = cancel.cancelled() => return,
        };
        match opened {
            Ok((io, headers)) => {
                tracing::debug!(server = %server.url(), renews, "tunnel to the server open");
                delay = Duration::from_millis(500);
                let renewed = renews && headers.contains_key(RENEW_HEADER);
                let session = SESSIONS.fetch_add(1, Ordering::Relaxed);
                if renewed {
                    shared.renewed_by_server.send_replace(Some(session));
                }
                if renews {
                    shared.link.set_up(true);
                }
                // A renewing server pings every three lease intervals; this side pings only if it
                // has heard nothing for four (so, on a live link, never), and gives up after one
                // more. With another server to go to, this side pings after one and a half quiet
                // intervals instead (twice the pings, said in docs/operations.md): a server that
                // died silently is then noticed, and the Lease renewed elsewhere, before the node
                // turns Unknown (40 s). A tunnel without renewal gets no pings from the server:
                // this side pings after four quiet intervals. A server that cannot renew at all
                // (an older one) is pinged every 20 s.
                let ping_timeout = lease_interval.max(Duration::from_secs(1));
                let (ping_every, ping_timeout) = if renewed && failover {
                    (lease_interval * 3 / 2, ping_timeout)
                } else if renewed || !renews {
                    (lease_interval * 4, ping_timeout)
                } else {
                    (Duration::from_secs(20), Duration::from_secs(20))
                };
                let services = shared.services.clone();
                let service = hyper::service::service_fn(move |req| {
                    let services = services.clone();
                    async move { Ok::<_, Infallible>(handle(&services, req).await) }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(ping_every))
                    .keep_alive_timeout(ping_timeout)
                    .serve_connection(io, service);
                let cancelled = tokio::select! {
                    r = conn => {
                        if let Err(e) = r {
                            tracing::debug!(server = %server.url(), error = %e, "tunnel to the server ended");
                        }
                        false
                    },
                    _ = cancel.cancelled() => true,
                };
                if renews && !cancelled {
                    // Whatever ended it (a dead link, a server restart or crash), the server is
                    // not known to be reachable until something reaches it again. With other
                    // servers to go to, the API connection to this one is dropped too, so the
                    // heartbeat's next request fails over at once rather than timing out on a
                    // connection to a server that may have died silently.
                    shared.link.set_up(false);
                    if failover {
                        shared.client.forget_server(&server).await;
                    }
                }
                if renewed {
                    shared
                        .renewed_by_server
                        .send_if_modified(|by| clear_if(by, session));
                }
                if cancelled {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(server = %server.url(), error = %e, "cannot open the tunnel; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
        delay = (delay * 2).min(cap);
    }
}

/// Unset the renewal mark if `session` holds it; whether it did.
fn clear_if(by: &mut Option<u64>, session: u64) -> bool {
    if *by == Some(session) {
        *by = None;
        true
    } else {
        false
    }
}

fn plain(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: LogError) -> Response<Body> {
    plain(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST),
        e.status(),
    )
}

/// The query's parameters, decoded, in order (repeated keys such as `command` kept).
fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(services: &Services, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", namespace, pod, container] => {
            logs(&services.logs, &req, namespace, pod, container).await
        }
        ["exec", _, _, container] => exec(&services.exec, req, container),
        ["execCheck", _, _, container] => exec_check(&services.exec, &req, container),
        _ => error(LogError {
            code: 404,
            message: format!("the node serves no {path}"),
        }),
    }
}

fn stream_response(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(b))))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// `POST /execCheck/<ns>/<pod>/<container>?podUID`: whether a command could run beside the
/// container (200) or why not (400), without running one.
fn exec_check(targets: &Targets, req: &Request<Incoming>, container: &str) -> Response<Body> {
    let uid = query(req)
        .into_iter()
        .find_map(|(k, v)| (k == "podUID").then_some(v))
        .unwrap_or_default();
    match targets.find(&uid, container) {
        Ok(_) => plain(StatusCode::OK, serde_json::json!({})),
        Err(message) => error(LogError { code: 400, message }),
    }
}

/// `POST /exec/<ns>/<pod>/<container>?podUID&command...&stdin`: frames in, frames out.
fn exec(targets: &Targets, req: Request<Incoming>, container: &str) -> Response<Body> {
    let mut command = Vec::new();
    let mut uid = String::new();
    let mut with_stdin = false;
    for (k, v) in query(&req) {
        match k.as_str() {
            "command" => command.push(v),
            "podUID" => uid = v,
            "stdin" => with_stdin = v == "true",
            _ => {}
        }
    }
    if command.is_empty() {
        return error(LogError {
            code: 400,
            message: "you must specify at least 1 command".into(),
        });
    }
    let target = match targets.find(&uid, container) {
        Ok(t) => t,
        Err(message) => return error(LogError { code: 400, message }),
    };
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut body = req.into_body();
    tokio::spawn(async move {
        use ledge_api::stream;
        let mut decoder = stream::Decoder::default();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data);
            while let Ok(Some((channel, payload))) = decoder.next_frame() {
                let chunk = match channel {
                    stream::STDIN if !payload.is_empty() => Bytes::from(payload),
                    stream::CLOSE if payload.first() == Some(&stream::STDIN) => Bytes::new(),
                    _ => continue,
                };
                if in_tx.send(chunk).await.is_err() {
                    return;
                }
            }
        }
        // The client went away: close stdin.
        let _ = in_tx.send(Bytes::new()).await;
    });
    tokio::spawn(crate::exec::run(target, command, with_stdin, in_rx, out_tx));
    stream_response(out_rx, "application/octet-stream")
}

async fn logs(
    logs: &Arc<Logs>,
    req: &Request<Incoming>,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let q: HashMap<String, String> = query(req).into_iter().collect();
    let opts = match Options::parse(&q, chrono::Utc::now()) {
        Ok(o) => o,
        Err(message) => return error(LogError { code: 400, message }),
    };
    let uid = q.get("podUID").map(String::as_str).unwrap_or("");
    let file = match logs.file(namespace, pod, uid, container, opts.previous) {
        Ok(f) => f,
        Err(e) => return error(e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let logs = logs.clone();
    tokio::spawn(async move { logs.stream(file, opts, tx).await });
    stream_response(rx, "text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tunnel_that_ends_late_leaves_its_successors_renewal_alone() {
        let (renewed_by, watching) = tokio::sync::watch::channel(None);
        renewed_by.send_replace(Some(1));
        // The tunnel to the new current server opened before the old one noticed its end.
        renewed_by.send_replace(Some(2));
        assert!(!renewed_by.send_if_modified(|by| clear_if(by, 1)));
        assert_eq!(*watching.borrow(), Some(2));
        assert!(renewed_by.send_if_modified(|by| clear_if(by, 2)));
        assert_eq!(*watching.borrow(), None);
    }
}
