//! A minimal Kubernetes API client for the benchmark: the admin kubeconfig's client
//! certificate over TLS (rustls on ring), HTTP/2, and a fixed set of connections that many
//! concurrent callers share — the way client-go multiplexes a process's requests over one or a
//! few HTTP/2 connections. No retries, no discovery: requests go exactly where they are sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::task::JoinHandle;

/// What the benchmark needs from an admin kubeconfig.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// `https://host:port` of the API server.
    pub server: String,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl KubeConfig {
    /// Parse a kubeconfig (first cluster, first user, base64 `*-data` fields).
    pub fn parse(yaml: &str) -> anyhow::Result<Self> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(yaml).context("kubeconfig is not YAML")?;
        let cluster = &doc["clusters"][0]["cluster"];
        let user = &doc["users"][0]["user"];
        let field = |v: &serde_yaml::Value, name: &str| -> anyhow::Result<Vec<u8>> {
            let text = v[name]
                .as_str()
                .with_context(|| format!("kubeconfig has no {name}"))?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .with_context(|| format!("kubeconfig {name} is not base64"))
        };
        Ok(Self {
            server: cluster["server"]
                .as_str()
                .context("kubeconfig has no server")?
                .trim_end_matches('/')
                .to_string(),
            ca_pem: field(cluster, "certificate-authority-data")?,
            cert_pem: field(user, "client-certificate-data")?,
            key_pem: field(user, "client-key-data")?,
        })
    }

    fn tls(&self) -> anyhow::Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(ca?)?;
        }
        let certs =
            CertificateDer::pem_slice_iter(&self.cert_pem).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A fixed pool of HTTP/2 connections to one API server; requests are spread round-robin.
/// Dropping the pool closes the connections.
pub struct Kube {
    server: String,
    conns: Vec<SendRequest<Full<Bytes>>>,
    tasks: Vec<JoinHandle<()>>,
    next: AtomicUsize,
}

impl Kube {
    /// Open `connections` HTTP/2 connections (each its own TCP + TLS session).
    pub async fn connect(config: &KubeConfig, connections: usize) -> anyhow::Result<Self> {
        let uri: Uri = config
            .server
            .parse()
            .context("kubeconfig server is not a URL")?;
        let host = uri.host().context("server URL has no host")?.to_string();
        let port = uri.port_u16().unwrap_or(443);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config.tls()?));
        let mut conns = Vec::with_capacity(connections);
        let mut tasks = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .with_context(|| format!("connect to {}", config.server))?;
            tcp.set_nodelay(true)?;
            let stream = tls
                .connect(name.clone(), tcp)
                .await
                .context("TLS handshake")?;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                bail!("server did not negotiate HTTP/2");
            }
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(stream))
                .await
                .context("HTTP/2 handshake")?;
            tasks.push(tokio::spawn(async move {
                let _ = conn.await;
            }));
            conns.push(send);
        }
        Ok(Self {
            server: config.server.clone(),
            conns,
            tasks,
            next: AtomicUsize::new(0),
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        Ok(req.body(Full::new(body.unwrap_or_default()))?)
    }

    async fn send_on(
        &self,
        conn: usize,
        req: Request<Full<Bytes>>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let mut send = self.conns[conn % self.conns.len()].clone();
        send.ready().await.context("connection closed")?;
        Ok(send.send_request(req).await?)
    }

    /// Send one request and read the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .send_on(conn, self.request(method, path, body)?)
            .await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Send one request and fail unless it answers `want`; returns the body.
    pub async fn expect(
        &self,
        want: StatusCode,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.call(method.clone(), path, body).await?;
        if status != want {
            return Err(anyhow!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        Ok(bytes)
    }

    /// Start a streaming GET (a watch) on connection `conn`; returns once the headers arrived.
    pub async fn stream(&self, conn: usize, path: &str) -> anyhow::Result<Incoming> {
        let resp = self
            .send_on(conn, self.request(Method::GET, path, None)?)
            .await?;
        if resp.status() != StatusCode::OK {
            bail!("GET {path}: {}", resp.status());
        }
        Ok(resp.into_body())
    }
}

impl Drop for Kube {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_admin_kubeconfig_shape() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ledge\n  cluster:\n    server: https://127.0.0.1:6443/\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64("CA"),
            b64("CERT"),
            b64("KEY")
        );
        let cfg = KubeConfig::parse(&yaml).unwrap();
        assert_eq!(cfg.server, "https://127.0.0.1:6443");
        assert_eq!(cfg.ca_pem, b"CA");
        assert_eq!(cfg.key_pem, b"KEY");
        assert!(KubeConfig::parse("clusters: []").is_err());
    }
}
