//! The accept loop and the request router.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ledge_api::ApiError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::body::{self, Body, bytes_response, error_response, json_response};
use super::query::Query;
use super::request::{Route, route};
use crate::auth::{self, User};
use crate::state::ApiState;
use crate::{discovery, handlers, openapi};

/// Largest request body accepted (upstream limits bodies to 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Errors setting up the listener.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS material was unusable.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// Binding the port failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Build the rustls server config: our serving certificate, client certificates from the
/// cluster CA accepted but not required (anonymous requests reach only public endpoints).
pub fn tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| ServeError::Tls(e.to_string()))?;
        roots.add(ca).map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Bind the listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Accept connections until `cancel`; each connection is served on its own task.
///
/// # Cancel safety
/// Returns when `cancel` fires; in-flight connections finish on their own tasks (watches end
/// through the same token).
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    state: Arc<ApiState>,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "tls handshake failed");
                    return;
                }
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| auth::user_from_cert(c.as_ref()));
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let user = user.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, user, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// The `/version` document (integers for major/minor, as conformance requires).
pub fn version_info() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": format!("v1.32.0-ledge.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

async fn handle(
    state: Arc<ApiState>,
    user: Option<User>,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let degraded = state.store.degraded();
    let mut resp = match route_request(state, user, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    // Reads are answered from the watch cache while the datastore is down; say that they may
    // be stale (writes fail with 503 on their own).
    if let Some(why) = degraded
        && method == Method::GET
        && resp.status().is_success()
    {
        let text = format!(
            "299 - \"the datastore is unavailable ({}); this answer comes from the server's cache and may be stale\"",
            why.replace('"', "'")
        );
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, value);
        }
    }
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

async fn route_request(
    state: Arc<ApiState>,
    cert_user: Option<User>,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => {
            return Ok(bytes_response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"ok"),
            ));
        }
        "/version" | "/version/" => return Ok(json_response(StatusCode::OK, &version_info())),
        // The cluster CA, public as in K3s: a joining agent fetches it without trusting the
        // connection and checks it against the CA hash pinned in its join token.
        "/cacerts" if req.method() == Method::GET => {
            return Ok(bytes_response(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                Bytes::from(state.ca_pem.clone()),
            ));
        }
        _ => {}
    }
    let Some(user) = auth::authenticate(&state, cert_user, req.headers()).await? else {
        return Err(ApiError::unauthorized());
    };
    if path == crate::tunnel::PATH && req.method() == Method::GET {
        return crate::tunnel::accept(state.clone(), &user, req);
    }
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let routed = route(&method, &path, query.flag("watch"));
    auth::authorize::check(&user, &method, &path, &routed)?;
    let reg = &state.registry;
    if path == "/openapi/v3" || path == "/openapi/v3/" {
        return Ok(json_response(
            StatusCode::OK,
            &openapi::index(reg, Some(&state.cache)),
        ));
    }
    if path == "/openapi/v2" || path == "/swagger-2.0.0.pb-v1" {
        let wants_proto = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("protobuf"));
        if !wants_proto {
            return Err(ApiError::not_acceptable(
                "application/json (only the protobuf form of /openapi/v2 is served)",
            ));
        }
        return Ok(bytes_response(
            StatusCode::OK,
            openapi::v2::PROTOBUF,
            Bytes::from(openapi::v2::document(reg)),
        ));
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return openapi::group_version(reg, Some(&state.cache), gv)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::path_not_found);
    }
    match routed {
        Route::CoreVersions | Route::Groups => {
            let core = matches!(route(&method, &path, false), Route::CoreVersions);
            if let Some(version) = discovery::wants_aggregated(req.headers()) {
                let doc = discovery::aggregated(reg, core, version);
                let media = discovery::aggregated_media_type(version);
                return Ok(bytes_response(
                    StatusCode::OK,
                    &media,
                    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
                ));
            }
            let doc = if core {
                discovery::core_versions()
            } else {
                discovery::group_list(reg)
            };
            Ok(json_response(StatusCode::OK, &doc))
        }
        Route::Group(g) => discovery::group(reg, &g)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::path_not_found),
        Route::GroupVersion(g, v) => discovery::resource_list(reg, &g, &v)
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::path_not_found),
        Route::Resource(info)
            if info.group.is_empty()
                && info.resource == "pods"
                && info.subresource.as_deref() == Some("exec") =>
        {
            // Exec upgrades the connection: the request must reach the handler whole.
            auth::authorize::check_node(&state, &user, &info, &query, req.headers(), &Bytes::new())
                .await?;
            let Some(res) = reg.get(&info.group, &info.version, &info.resource) else {
                return Err(ApiError::path_not_found());
            };
            let ctx = handlers::Ctx {
                state,
                res,
                info,
                query,
                headers: req.headers().clone(),
                encoding: body::Encoding::Json,
            };
            handlers::exec::serve(ctx, req).await
        }
        Route::Resource(info) => {
            let mut headers = req.headers().clone();
            let mut body = read_body(req).await?;
            // A node's request is decided here, where the cache and the body are at hand.
            auth::authorize::check_node(&state, &user, &info, &query, &headers, &body).await?;
            let Some(res) = reg.get(&info.group, &info.version, &info.resource) else {
                return Err(ApiError::path_not_found());
            };
            let encoding = body::negotiate(&headers)?;
            if auth::requester::is_csr_create(&info) {
                body = auth::requester::stamp_csr(&user, &mut headers, body);
            }
            let ctx = handlers::Ctx {
                state,
                res,
                info,
                query,
                headers,
                encoding,
            };
            handlers::dispatch(ctx, body).await
        }
        Route::Other if method == Method::GET => Err(ApiError::path_not_found()),
        Route::Other => Err(ApiError::path_not_found()),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(MAX_BODY)),
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to read the request body: {e}"
        ))),
    }
}

/// A one-line response for a finished request, used by tests.
pub fn ok_text() -> Response<Body> {
    bytes_response(StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
}
