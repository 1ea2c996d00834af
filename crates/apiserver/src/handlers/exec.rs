//! `pods/exec` over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io` — what kubectl 1.30+
//! speaks): the request is checked here (pod, node, container, command), the session is opened
//! on the pod's node through its agent's tunnel, and only then is the client's connection
//! upgraded. WebSocket messages (`[channel][data]`) and the tunnel's frames are translated both
//! ways until the command ends and its status has been sent on channel 3.
//!
//! SPDY (kubectl before 1.30, and its fallback) is refused with a message saying so — after
//! asking the node whether the container could run a command at all, since the fallback's
//! answer is the one kubectl shows.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ledge_api::Pointer as _;
use ledge_api::{ApiError, stream};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Ctx;
use super::subresource::pick_container;
use crate::http::body::Body;
use crate::http::websocket::{self, Message};
use crate::tunnel::agent_error;

/// Subprotocols served, preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Serve `GET|POST pods/<name>/exec`.
///
/// # Errors
/// Upstream's errors for a bad request, a pod without a node, an unreachable node; 400 for a
/// non-WebSocket (SPDY) upgrade.
pub async fn serve(ctx: Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let pod = ctx.current().await?;
    let name = ctx.name().to_string();
    let text = |p: &str| pod.at(p).and_then(Value::as_str).unwrap_or("").to_string();
    let node = text("/spec/nodeName");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let container = pick_container(&pod, ctx.query.get("container"), false)?;
    let command = ctx.query.all("command");
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let target = format!(
        "{}/{name}/{container}?podUID={}",
        text("/metadata/namespace"),
        text("/metadata/uid")
    );
    if !header("upgrade").eq_ignore_ascii_case("websocket") {
        // kubectl falls back to SPDY whenever the WebSocket upgrade is refused, so this is
        // where it reads why: a container that cannot run commands says so first.
        let (_, rx) = mpsc::channel::<Bytes>(1);
        let check = format!("/execCheck/{target}");
        let body = crate::tunnel::channel_body(rx);
        let resp = ctx
            .state
            .tunnels
            .send(&node, http::Method::POST, &check, body)
            .await?;
        if resp.status() == StatusCode::BAD_REQUEST {
            return Err(agent_error(resp).await);
        }
        return Err(ApiError::bad_request(
            "ledge serves exec over WebSocket only (kubectl 1.30 or newer); SPDY upgrades are not supported",
        ));
    }
    let offered = header("sec-websocket-protocol");
    let Some(protocol) = PROTOCOLS
        .iter()
        .find(|p| offered.split(',').any(|o| o.trim() == **p))
        .copied()
    else {
        return Err(ApiError::bad_request(format!(
            "no supported streaming protocol in {offered:?}: use one of {}",
            PROTOCOLS.join(", ")
        )));
    };
    let accept = websocket::accept_key(&header("sec-websocket-key"));
    let mut path = format!("/exec/{target}");
    for c in command {
        path.push_str(&format!("&command={}", crate::http::query::encode(c)));
    }
    for flag in ["stdin", "tty"] {
        if ctx.query.flag(flag) {
            path.push_str(&format!("&{flag}=true"));
        }
    }
    let (to_agent, rx) = mpsc::channel::<Bytes>(16);
    let body = crate::tunnel::channel_body(rx);
    let resp = ctx
        .state
        .tunnels
        .send(&node, http::Method::POST, &path, body)
        .await?;
    if !resp.status().is_success() {
        return Err(agent_error(resp).await);
    }
    let v5 = protocol.starts_with("v5");
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let (mut reader, writer) = tokio::io::split(TokioIo::new(upgraded));
        let writer = std::sync::Arc::new(tokio::sync::Mutex::new(writer));
        let pong_writer = writer.clone();
        let inbound = tokio::spawn(async move {
            while let Ok(Some(msg)) = websocket::read(&mut reader).await {
                match msg {
                    Message::Data(data) => {
                        let Some((&channel, rest)) = data.split_first() else {
                            continue;
                        };
                        if channel == stream::CLOSE && !v5 {
                            continue;
                        }
                        if to_agent
                            .send(Bytes::from(stream::encode(channel, rest)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Message::Ping(p) => {
                        let mut w = pong_writer.lock().await;
                        let _ = websocket::write(&mut *w, websocket::PONG, &p).await;
                    }
                    Message::Close => return,
                }
            }
        });
        let mut from_agent = resp.into_body();
        let mut decoder = stream::Decoder::default();
        'outer: while let Some(Ok(frame)) = from_agent.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            decoder.push(&data);
            while let Ok(Some((channel, payload))) = decoder.next_frame() {
                let mut msg = Vec::with_capacity(payload.len() + 1);
                msg.push(channel);
                msg.extend_from_slice(&payload);
                let mut w = writer.lock().await;
                if websocket::write(&mut *w, websocket::BINARY, &msg)
                    .await
                    .is_err()
                {
                    break 'outer;
                }
            }
        }
        let mut w = writer.lock().await;
        let _ = websocket::write(&mut *w, websocket::CLOSE, &[0x03, 0xe8]).await;
        drop(w);
        inbound.abort();
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("Sec-WebSocket-Accept", accept)
        .header("Sec-WebSocket-Protocol", protocol)
        .body(Body::default())
        .map_err(|e| ApiError::internal(e.to_string()))
}
