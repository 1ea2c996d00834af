//! The agent's end of the reverse tunnel: it dials the server (`GET /ledge/v1/tunnel`, upgraded),
//! then *serves* HTTP/2 on that connection, so the server can ask the node for container logs
//! without the node opening a port. A broken tunnel is redialled with capped back-off.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::client::HttpClient;
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

/// Keep a tunnel open until `cancel` (the [`Link`](crate::node_store::Link) follows it),
/// offering the server to renew the node's Lease every
/// `lease_interval` while it lives. `renewed_by_server` is true while the server does so (the
/// heartbeat then sends no renewals of its own).
pub async fn run(
    client: HttpClient,
    services: Services,
    lease_interval: Duration,
    renewed_by_server: tokio::sync::watch::Sender<bool>,
    link: Arc<crate::node_store::Link>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    let path = format!("{PATH}?{RENEW_PARAM}={}", lease_interval.as_millis());
    loop {
        let opened = tokio::select! {
            r = client.open_tunnel(&path, PROTOCOL) => r,
            _ = cancel.cancelled() => return,
        };
        match opened {
            Ok((io, headers)) => {
                tracing::debug!("tunnel to the server open");
                delay = Duration::from_millis(500);
                let renews = headers.contains_key(RENEW_HEADER);
                renewed_by_server.send_replace(renews);
                link.set_up(true);
                // The server pings every three lease intervals; this side pings only if it has
                // heard nothing for four (so, on a live link, never), and gives up after one more.
                let (ping_every, ping_timeout) = if renews {
                    (
                        lease_interval * 4,
                        lease_interval.max(Duration::from_secs(1)),
                    )
                } else {
                    (Duration::from_secs(20), Duration::from_secs(20))
                };
                let services = services.clone();
                let service = hyper::service::service_fn(move |req| {
                    let services = services.clone();
                    async move { Ok::<_, Infallible>(handle(&services, req).await) }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(ping_every))
                    .keep_alive_timeout(ping_timeout)
                    .serve_connection(io, service);
                tokio::select! {
                    r = conn => if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel to the server ended");
                    },
                    _ = cancel.cancelled() => return,
                }
                renewed_by_server.send_replace(false);
                // Whatever ended it (a dead link, a server restart), the server is not known
                // to be reachable until something reaches it again.
                link.set_up(false);
            }
            Err(e) => tracing::debug!(error = %e, "cannot open the tunnel; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
        delay = (delay * 2).min(crate::RECONNECT_CAP);
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
