//! Readiness, liveness and startup probes, as kubelet runs them: `httpGet` (2xx/3xx passes;
//! HTTPS without checking the certificate), `tcpSocket` (a connection passes) and `exec` (exit 0
//! passes; run beside the container as `kubectl exec` is, so only where the runtime has
//! processes), every `periodSeconds` after `initialDelaySeconds`, with `timeoutSeconds`,
//! `successThreshold` and `failureThreshold`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spec::{Container, Probe};
use crate::exec::Target;

/// How much of an exec probe's output is kept, as kubelet (10 KiB).
const MAX_EXEC_OUTPUT: usize = 10 << 10;

/// A probe with its defaults applied and its port resolved.
#[derive(Clone, Debug)]
pub struct Prober {
    action: Action,
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds`.
    pub period: Duration,
    timeout: Duration,
    /// `successThreshold`.
    pub success_threshold: u32,
    /// `failureThreshold`.
    pub failure_threshold: u32,
}

#[derive(Clone, Debug)]
enum Action {
    Http {
        /// `scheme: HTTPS`: TLS without verifying the certificate, as kubelet.
        tls: bool,
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Exec {
        command: Vec<String>,
        target: Target,
    },
}

/// The outcome of one probe.
pub type Outcome = Result<(), String>;

fn secs(v: Option<i64>, default: i64) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// Resolve a probe's port: a number, or the name of one of the container's ports.
fn port(container: &Container, v: &Value) -> Result<u16, String> {
    if let Some(n) = v.as_u64() {
        return u16::try_from(n).map_err(|_| format!("port {n} is out of range"));
    }
    let name = v.as_str().unwrap_or("");
    if let Ok(n) = name.parse::<u16>() {
        return Ok(n);
    }
    container
        .ports
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| {
            format!(
                "port {name:?} is not a port of container {}",
                container.name
            )
        })
}

impl Prober {
    /// Prepare `probe` of `container`, whose running process (for exec probes) is `target`.
    ///
    /// # Errors
    /// A probe with no action, an unknown named port, or an exec probe where the runtime
    /// cannot run commands.
    pub fn new(probe: &Probe, container: &Container, target: &Target) -> Result<Self, String> {
        let host = |h: &Option<String>| {
            h.clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into())
        };
        let action = if let Some(h) = &probe.http_get {
            let tls = match h.scheme.as_deref().unwrap_or("HTTP") {
                s if s.eq_ignore_ascii_case("http") => false,
                s if s.eq_ignore_ascii_case("https") => true,
                s => return Err(format!("unsupported httpGet scheme {s:?}: HTTP or HTTPS")),
            };
            Action::Http {
                tls,
                host: host(&h.host),
                port: port(container, &h.port)?,
                path: h
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
                headers: h
                    .http_headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(t) = &probe.tcp_socket {
            Action::Tcp {
                host: host(&t.host),
                port: port(container, &t.port)?,
            }
        } else if let Some(e) = &probe.exec {
            // Fails now, not at every period, where the runtime has no process to run beside.
            target.command(&e.command)?;
            Action::Exec {
                command: e.command.clone(),
                target: target.clone(),
            }
        } else {
            return Err("the probe has no handler (httpGet, tcpSocket or exec)".into());
        };
        Ok(Self {
            action,
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }

    /// Run the probe once.
    pub async fn run(&self) -> Outcome {
        match tokio::time::timeout(self.timeout, self.attempt()).await {
            Ok(r) => r,
            Err(_) => Err(format!("timeout after {}s", self.timeout.as_secs())),
        }
    }

    async fn attempt(&self) -> Outcome {
        match &self.action {
            Action::Tcp { host, port } => TcpStream::connect((host.as_str(), *port))
                .await
                .map(|_| ())
                .map_err(|e| format!("dial tcp {host}:{port}: {e}")),
            Action::Http {
                tls,
                host,
                port,
                path,
                headers,
            } => {
                let scheme = if *tls { "https" } else { "http" };
                let url = format!("{scheme}://{host}:{port}{path}");
                let fail = |e: &dyn std::fmt::Display| format!("Get \"{url}\": {e}");
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| fail(&format!("dial tcp {host}:{port}: {e}")))?;
                let mut req = format!(
                    "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
                );
                for (k, v) in headers {
                    req.push_str(&format!("{k}: {v}\r\n"));
                }
                req.push_str("\r\n");
                let code = if *tls {
                    let name = rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| fail(&e))?;
                    let stream = tokio_rustls::TlsConnector::from(insecure_tls()?)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| fail(&e))?;
                    status_code(stream, &req).await
                } else {
                    status_code(tcp, &req).await
                }
                .map_err(|e| fail(&e))?;
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            }
            Action::Exec { command, target } => exec(target, command).await,
        }
    }
}

/// Run an exec probe: exit 0 passes; otherwise its combined stdout and stderr, as kubelet
/// reports them, or the exit code where it printed nothing.
async fn exec(target: &Target, command: &[String]) -> Outcome {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("exec: {e}"))?;
    let mut cmd = target.command(command)?;
    let clone = writer.try_clone().map_err(|e| format!("exec: {e}"))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(clone)
        .stderr(writer);
    let spawned = cmd.spawn();
    // The command holds the pipe's write end until dropped; reading ends when the child's
    // copies close.
    drop(cmd);
    let mut child = spawned.map_err(|e| format!("exec {:?}: {e}", command[0]))?;
    let mut output = Vec::new();
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())
        .map_err(|e| format!("exec: {e}"))?;
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(output.len());
                output.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    let status = child.wait().await.map_err(|e| format!("exec: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output);
    if text.trim().is_empty() {
        Err(format!(
            "command {command:?} exited with {}",
            status.code().unwrap_or(-1)
        ))
    } else {
        Err(text.trim_end().to_string())
    }
}

/// Send `request` and read the status code of the answer.
async fn status_code(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    request: &str,
) -> Result<u16, String> {
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| "malformed HTTP response".to_string())
}

/// The TLS setup of HTTPS probes: kubelet does not verify the container's certificate.
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config =
                crate::client::tls::client_config(crate::client::Trust::Unverified, None)
                    .map_err(|e| e.to_string())?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn target() -> Target {
        Target {
            name: "main".into(),
            pid: None,
            env: Vec::new(),
            working_dir: None,
            runtime: "wasm",
        }
    }

    fn prober(probe: serde_json::Value) -> Result<Prober, String> {
        let container: Container =
            serde_json::from_value(serde_json::json!({"name": "main"})).expect("container");
        let probe: Probe = serde_json::from_value(probe).expect("probe");
        Prober::new(&probe, &container, &target())
    }

    /// An HTTPS server with a self-signed certificate answering every request with `status`.
    async fn https_server(status: u16) -> u16 {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
            .expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn https_probes_pass_on_success_whatever_the_certificate() {
        let ok = https_server(200).await;
        let p = prober(serde_json::json!({"httpGet": {"scheme": "HTTPS", "port": ok}}))
            .expect("prober");
        assert_eq!(p.run().await, Ok(()));
        let bad = https_server(503).await;
        let p = prober(serde_json::json!({"httpGet": {"scheme": "HTTPS", "port": bad}}))
            .expect("prober");
        assert_eq!(
            p.run().await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        // Plain HTTP to a TLS port is no success.
        let p = prober(serde_json::json!({"httpGet": {"port": ok}})).expect("prober");
        assert!(p.run().await.is_err());
    }

    #[test]
    fn exec_probes_need_a_runtime_with_processes_and_schemes_are_checked() {
        let e = prober(serde_json::json!({"exec": {"command": ["true"]}})).unwrap_err();
        assert!(e.starts_with("the wasm runtime cannot run commands"), "{e}");
        let e = prober(serde_json::json!({"httpGet": {"scheme": "FTP", "port": 1}})).unwrap_err();
        assert!(e.contains("HTTP or HTTPS"), "{e}");
    }
}
