//! An HTTPS client for the Kubernetes API, small enough for an edge device: one HTTP/2
//! connection (rustls on ring), dialled lazily, reused by every request and watch, redialled when
//! it dies; HTTP/2 keep-alive pings notice a dead link. It knows several servers ([`servers`]):
//! a dial that cannot reach the current one moves on to the next, so requests, watches and the
//! heartbeat fail over together. It authenticates with a client
//! certificate or a bearer token. [`HttpClient`] implements `ledge_controller::Client` (JSON over
//! REST, in `api.rs`), so the agent's code and the server's controllers speak the same API.
//! `ledge token create` uses it too, with the admin certificate.

mod api;
pub mod servers;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ledge_api::ApiError;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use api::{error_from_status, retryable};
pub use servers::{Server, ServerSet, TunnelTarget, split_list};
pub use tls::Trust;

/// How long dialling one server (TCP + TLS + HTTP/2 handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TCP handshake alone may take. Short: on a link that just came back, a fresh
/// SYN gets through at once, while a connect attempt started during the outage would wait for
/// its next retransmission (1 s, 3 s, 7 s ... after the first).
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request (not a watch) may take, body included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 ping interval (after that long without hearing from the server) and the time a ping
/// may go unanswered before the link counts as dead. Every two minutes: on an idle node every
/// ping is bytes on a metered link, and the tunnel's liveness (the server pings it every three
/// lease intervals) and request timeouts notice a dead link sooner.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest response body read into memory.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Failures talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is unusable.
    #[error("invalid server URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The bearer token cannot be sent in a header.
    #[error("the bearer token holds characters an HTTP header cannot carry")]
    BadToken,
    /// The server could not be reached or the connection failed.
    #[error("cannot reach {server}: {reason}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{0}")]
    Api(ApiError),
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api(api) => api,
            // Unreachable is what 503 means to a caller: try again later.
            other => ApiError::new(503, "ServiceUnavailable", other.to_string()),
        }
    }
}

/// How requests authenticate.
pub enum Credentials {
    /// Anonymously (only `/cacerts`, `/version`, health).
    Anonymous,
    /// `Authorization: Bearer <token>` (bootstrap tokens).
    Bearer(String),
    /// A client certificate and its key, PEM.
    Certificate {
        /// Certificate.
        cert_pem: String,
        /// Private key.
        key_pem: String,
    },
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// The task driving the connection; aborting it closes the socket and fails every stream
    /// on it at once (a watch on a dead link would otherwise hang until keep-alive gives up).
    driver: tokio::task::AbortHandle,
    /// Tells connections apart, so a failure on an old one never closes its successor.
    id: u64,
    /// The server it goes to.
    server: Arc<Server>,
}

struct Inner {
    /// The servers and the current one; subscribers (the tunnels) hear of every change.
    servers: tokio::sync::watch::Sender<ServerSet>,
    tls: TlsConnector,
    /// The same TLS settings offering HTTP/1.1, for the tunnel's upgrade.
    tls_http1: TlsConnector,
    bearer: Option<HeaderValue>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    dials: AtomicU64,
    local_addr: Mutex<Option<SocketAddr>>,
}

/// A client for the API servers. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
    /// A field selector added to every list and watch (`spec.nodeName=<node>` for pods).
    field_selector: Option<Arc<str>>,
    /// How long a request (not a watch) may take before the link counts as dead.
    request_timeout: Duration,
}

impl HttpClient {
    /// A client for `url` (`https://host[:port]`), trusting the server as `trust` says.
    ///
    /// # Errors
    /// An unusable URL, TLS material or token.
    pub fn new(url: &str, trust: Trust<'_>, credentials: Credentials) -> Result<Self, ClientError> {
        Self::for_servers(&[url], trust, credentials)
    }

    /// A client for several servers sharing one CA (`https://host[:port]` each), the first
    /// one current; a dial that cannot reach one tries the next.
    ///
    /// # Errors
    /// No URL, an unusable URL, TLS material or token.
    pub fn for_servers(
        urls: &[impl AsRef<str>],
        trust: Trust<'_>,
        credentials: Credentials,
    ) -> Result<Self, ClientError> {
        let servers = ServerSet::new(urls)?;
        let (identity, bearer) = match &credentials {
            Credentials::Anonymous => (None, None),
            Credentials::Bearer(token) => {
                let value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ClientError::BadToken)?;
                (None, Some(value))
            }
            Credentials::Certificate { cert_pem, key_pem } => {
                (Some((cert_pem.as_str(), key_pem.as_str())), None)
            }
        };
        let config = tls::client_config(trust, identity)?;
        let mut http1 = config.clone();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            inner: Arc::new(Inner {
                servers: tokio::sync::watch::Sender::new(servers),
                tls: TlsConnector::from(Arc::new(config)),
                tls_http1: TlsConnector::from(Arc::new(http1)),
                bearer,
                conn: tokio::sync::Mutex::new(None),
                dials: AtomicU64::new(0),
                local_addr: Mutex::new(None),
            }),
            field_selector: None,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client (same connection) with `selector` added to its lists and watches, so
    /// an informer follows only what it needs: the node's own pods, not the cluster's.
    pub fn with_field_selector(&self, selector: &str) -> Self {
        Self {
            inner: self.inner.clone(),
            field_selector: Some(selector.into()),
            request_timeout: self.request_timeout,
        }
    }

    /// The same client (same connection) whose requests give up after `timeout`. A request that
    /// times out drops the connection (and the watches on it): on a link that went dead
    /// silently, that is how the agent notices, rather than waiting for TCP to give up.
    pub fn with_request_timeout(&self, timeout: Duration) -> Self {
        Self {
            request_timeout: timeout,
            ..self.clone()
        }
    }

    /// The current server's URL.
    pub fn url(&self) -> String {
        self.inner.servers.borrow().current().url().to_string()
    }

    /// The servers, following every change (learned servers, failover).
    pub fn servers(&self) -> tokio::sync::watch::Receiver<ServerSet> {
        self.inner.servers.subscribe()
    }

    /// Replace the servers learned from the cluster (the configured ones stay); whether the
    /// set changed.
    pub fn set_learned(&self, urls: &[impl AsRef<str>]) -> bool {
        self.inner.servers.send_if_modified(|s| s.set_learned(urls))
    }

    /// Start at the server `key` hashes to among the known ones ([`servers::ServerSet::spread`]).
    pub fn spread(&self, key: &str) {
        self.inner.servers.send_modify(|s| s.spread(key));
    }

    /// This side's address of the last connection to the server (the node's address on the
    /// route to the control plane).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self
            .inner
            .local_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            server: self.url(),
            reason: reason.to_string(),
        }
    }

    /// Connect to the current server or, failing that, the next one that answers (each tried
    /// once, within [`CONNECT_TIMEOUT`]); the one reached becomes current.
    async fn dial(&self) -> Result<Conn, ClientError> {
        let order = self.inner.servers.borrow().dial_order();
        let mut first_error = None;
        for server in &order {
            let attempt = tokio::time::timeout(CONNECT_TIMEOUT, self.dial_one(server))
                .await
                .unwrap_or_else(|_| Err(unreachable(server, "connection timed out")));
            match attempt {
                Ok((conn, peer)) => {
                    let mut switched_from = None;
                    self.inner.servers.send_if_modified(|s| {
                        let peer_changed = s.peer() != peer;
                        switched_from = s.connected(server, peer);
                        peer_changed || switched_from.is_some()
                    });
                    if let Some(from) = switched_from {
                        tracing::info!(from = %from, to = %server.url(), "switched to another server");
                    }
                    return Ok(conn);
                }
                Err(e) => {
                    if order.len() > 1 {
                        tracing::debug!(server = %server.url(), error = %e, "cannot reach the server; trying the next one");
                        if first_error.is_none() {
                            // Should this dial be cut short (a request timing out), the next
                            // one starts with another server.
                            self.inner.servers.send_if_modified(|s| {
                                s.suspect(server.url());
                                false
                            });
                        }
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        let error = first_error.unwrap_or_else(|| self.unreachable("no server to dial"));
        Err(match error {
            ClientError::Unreachable { server, reason } if order.len() > 1 => {
                ClientError::Unreachable {
                    server,
                    reason: match order.len() - 1 {
                        1 => format!("{reason} (nor can the other server)"),
                        n => format!("{reason} (nor can the {n} other servers)"),
                    },
                }
            }
            other => other,
        })
    }

    /// One server: TCP, TLS, HTTP/2. Returns the connection and the address reached.
    async fn dial_one(
        &self,
        server: &Arc<Server>,
    ) -> Result<(Conn, Option<SocketAddr>), ClientError> {
        let i = &self.inner;
        let tcp = tokio::time::timeout(
            TCP_CONNECT_TIMEOUT,
            TcpStream::connect((server.host.as_str(), server.port)),
        )
        .await
        .map_err(|_| unreachable(server, "connection timed out"))?
        .map_err(|e| unreachable(server, e))?;
        let _ = tcp.set_nodelay(true);
        if let Ok(local) = tcp.local_addr() {
            *i.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(local);
        }
        let peer = tcp.peer_addr().ok();
        let tls = i
            .tls
            .connect(server.server_name.clone(), tcp)
            .await
            .map_err(|e| unreachable(server, format!("tls handshake failed: {e}")))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(unreachable(server, "the server does not offer HTTP/2"));
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(server, format!("http/2 handshake failed: {e}")))?;
        let url = server.url().to_string();
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(server = %url, error = %e, "connection to the server ended");
            }
        })
        .abort_handle();
        let id = i.dials.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Conn {
            sender,
            driver,
            id,
            server: server.clone(),
        };
        Ok((conn, peer))
    }

    /// Open a reverse tunnel to `server`: a fresh HTTP/1.1 connection upgraded to `protocol`
    /// at `path`. The server then speaks HTTP/2 as the client over the returned connection.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the upgrade.
    pub async fn open_tunnel(
        &self,
        server: &Server,
        path: &str,
        protocol: &str,
    ) -> Result<(hyper::upgrade::Upgraded, http::HeaderMap), ClientError> {
        let i = &self.inner;
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((server.host.as_str(), server.port)),
        )
        .await
        .map_err(|_| unreachable(server, "connection timed out"))?
        .map_err(|e| unreachable(server, e))?;
        let _ = tcp.set_nodelay(true);
        let tls = i
            .tls_http1
            .connect(server.server_name.clone(), tcp)
            .await
            .map_err(|e| unreachable(server, format!("tls handshake failed: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(server, format!("http/1.1 handshake failed: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = Request::get(path)
            .header(http::header::HOST, server.authority.as_str())
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, protocol)
            .header(
                http::header::USER_AGENT,
                concat!("ledge-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| ClientError::Url {
                url: path.to_string(),
                reason: e.to_string(),
            })?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(server, e))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(unreachable(
                server,
                format!("the server refused the tunnel with {}", resp.status()),
            ));
        }
        let headers = resp.headers().clone();
        let io = hyper::upgrade::on(resp)
            .await
            .map_err(|e| unreachable(server, format!("tunnel upgrade failed: {e}")))?;
        Ok((io, headers))
    }

    /// The live connection, its id and server, dialled if there is none. One dial at a time:
    /// whoever needs the connection while it is being dialled waits for that dial.
    async fn sender(&self) -> Result<(SendRequest<Full<Bytes>>, u64, Arc<Server>), ClientError> {
        let mut conn = self.inner.conn.lock().await;
        if let Some(c) = conn.as_ref()
            && !c.sender.is_closed()
        {
            return Ok((c.sender.clone(), c.id, c.server.clone()));
        }
        *conn = None;
        let fresh = self.dial().await?;
        let sender = (fresh.sender.clone(), fresh.id, fresh.server.clone());
        *conn = Some(fresh);
        Ok(sender)
    }

    /// Close the connection if it goes to `server` and try that server last at the next dial
    /// (it is presumed dead: its tunnel stopped answering), so the next request fails over at
    /// once instead of timing out on a connection to a server that died silently.
    pub async fn forget_server(&self, server: &Server) {
        self.inner.servers.send_if_modified(|s| {
            s.suspect(server.url());
            false
        });
        let mut conn = self.inner.conn.lock().await;
        if conn
            .as_ref()
            .is_some_and(|c| c.server.url() == server.url())
            && let Some(old) = conn.take()
        {
            old.driver.abort();
        }
    }

    /// Close connection `id` (if it is still the live one) and every stream on it; the next
    /// request dials afresh.
    async fn forget_connection(&self, id: u64) {
        let mut conn = self.inner.conn.lock().await;
        if conn.as_ref().is_some_and(|c| c.id == id)
            && let Some(old) = conn.take()
        {
            old.driver.abort();
        }
    }

    fn build(
        &self,
        server: &Server,
        method: &Method,
        path_and_query: &str,
        body: &Option<Bytes>,
        content_type: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let uri = format!("https://{}{path_and_query}", server.authority);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("ledge-agent/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header(
                http::header::CONTENT_TYPE,
                content_type.unwrap_or("application/json"),
            );
        }
        if let Some(b) = &self.inner.bearer {
            req = req.header(http::header::AUTHORIZATION, b.clone());
        }
        req.body(Full::new(body.clone().unwrap_or_default()))
            .map_err(|e| ClientError::Url {
                url: path_and_query.to_string(),
                reason: e.to_string(),
            })
    }

    /// Send a request and return the response head with its streaming body. A connection
    /// that turns out to be dead is replaced once.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.send_on(method, path_and_query, body, None, &AtomicU64::new(0))
            .await
    }

    /// [`send`](Self::send) with the body's content type (JSON when `None`): a PATCH forwarded
    /// as it came (`application/merge-patch+json`, ...).
    pub async fn send_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let used = AtomicU64::new(0);
        let sent = self.send_on(method, path_and_query, body, content_type, &used);
        match tokio::time::timeout(self.request_timeout, sent).await {
            Ok(result) => result,
            Err(_) => {
                self.forget_connection(used.load(Ordering::Relaxed)).await;
                Err(self.unreachable("the request timed out"))
            }
        }
    }

    /// [`send`](Self::send), noting in `used` the id of the connection it went out on.
    async fn send_on(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
        used: &AtomicU64,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut retried = false;
        loop {
            let (mut sender, id, server) = self.sender().await?;
            used.store(id, Ordering::Relaxed);
            let req = self.build(&server, &method, path_and_query, &body, content_type)?;
            let attempt = async {
                sender.ready().await?;
                sender.send_request(req).await
            };
            match attempt.await {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    self.forget_connection(id).await;
                    // A request the dead connection never carried is safe to send again.
                    if !retried && (e.is_canceled() || e.is_closed()) {
                        retried = true;
                        continue;
                    }
                    return Err(self.unreachable(e));
                }
            }
        }
    }

    /// Send a request and read the whole answer, within the request timeout.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let used = AtomicU64::new(0);
        let exchange = async {
            let resp = self
                .send_on(method, path_and_query, body, None, &used)
                .await?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| self.unreachable(format!("reading the response failed: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                self.forget_connection(used.load(Ordering::Relaxed)).await;
                Err(self.unreachable("the request timed out"))
            }
        }
    }

    /// GET a path and return its body on 200, or the server's error.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ClientError> {
        let (status, body) = self.request(Method::GET, path, None).await?;
        if status == StatusCode::OK {
            Ok(body)
        } else {
            Err(ClientError::Api(error_from_status(status, &body)))
        }
    }
}

fn unreachable(server: &Server, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Unreachable {
        server: server.url().to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

    use super::*;

    /// An HTTPS (HTTP/2) server on 127.0.0.1 answering every request with `200 ok`, and the PEM
    /// of the CA its certificate comes from.
    async fn live_server() -> Result<(String, String), Box<dyn Error>> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.signed_by(&key, &issuer)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())?,
            )?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok((url, ca.pem()))
    }

    /// `n` distinct URLs nothing listens on (connections are refused at once). The ports are
    /// all bound before any is released, so no two are the same.
    async fn dead_servers(n: usize) -> Result<Vec<String>, Box<dyn Error>> {
        let mut listeners = Vec::with_capacity(n);
        for _ in 0..n {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
        }
        listeners
            .iter()
            .map(|l| Ok(format!("https://{}", l.local_addr()?)))
            .collect()
    }

    #[tokio::test]
    async fn a_dead_server_is_passed_over_for_the_next_one() -> Result<(), Box<dyn Error>> {
        let (live, ca) = live_server().await?;
        let dead = dead_servers(1).await?.remove(0);
        let client = HttpClient::for_servers(
            &[dead.clone(), live.clone()],
            Trust::Roots(&ca),
            Credentials::Anonymous,
        )?;
        let mut servers = client.servers();
        assert_eq!(client.url(), dead);
        assert_eq!(&client.get_bytes("/version").await?[..], b"ok");
        assert_eq!(client.url(), live, "the server reached is current");
        assert!(servers.has_changed()?, "the tunnels hear of the switch");
        let targets = servers.borrow_and_update().tunnel_targets();
        assert_eq!(
            targets
                .iter()
                .map(|t| (t.server.url(), t.renews))
                .collect::<Vec<_>>(),
            [(live.as_str(), true), (dead.as_str(), false)]
        );
        // Its tunnel died: the connection goes, and the next dial tries the others first (here
        // in vain) before coming back to it.
        let current = targets[0].server.clone();
        client.forget_server(&current).await;
        assert_eq!(&client.get_bytes("/version").await?[..], b"ok");
        assert_eq!(client.url(), live);
        Ok(())
    }

    #[tokio::test]
    async fn with_every_server_down_the_error_names_the_current_one() -> Result<(), Box<dyn Error>>
    {
        let mut dead = dead_servers(2).await?;
        let (b, a) = (dead.remove(1), dead.remove(0));
        let client =
            HttpClient::for_servers(&[a.clone(), b], Trust::Unverified, Credentials::Anonymous)?;
        let Err(ClientError::Unreachable { server, reason }) = client.get_bytes("/version").await
        else {
            return Err("reached a dead server".into());
        };
        assert_eq!(server, a);
        assert!(reason.ends_with("(nor can the other server)"), "{reason}");
        assert_eq!(client.url(), a, "no switch without a server to switch to");
        Ok(())
    }
}
