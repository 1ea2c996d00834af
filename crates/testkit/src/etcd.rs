//! A real etcd cluster on loopback: Debian's `etcd` (3.4) with one process per member, each with
//! its own data directory and free client and peer ports, for the etcd store backend's suite and
//! the high-availability tests. Members can be killed and started again (same data, same ports)
//! to take away and give back quorum.
//!
//! On 127.0.0.1 only: the tests never reach beyond the machine. [`EtcdCluster::start_tls`]
//! serves the client port with TLS and requires client certificates (`--client-cert-auth`),
//! from a CA made for the test ([`EtcdTlsFiles`]).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ports::free_port;
use crate::process::{Proc, Spec};
use crate::wait::wait_for;

/// How long a member may take to report healthy after a start.
const START_PATIENCE: Duration = Duration::from_secs(60);

/// One member's process and addresses.
#[derive(Debug)]
pub struct Member {
    /// The member's name (`m0`, `m1`, ...).
    pub name: String,
    /// `host:port` of its client endpoint.
    pub client: String,
    /// `host:port` of its plain-HTTP metrics and health endpoint.
    metrics: String,
    proc: Proc,
}

/// TLS material of a [`EtcdCluster::start_tls`] cluster, PEM files: the CA that signed the
/// members' serving certificates, and a client certificate it accepts.
#[derive(Clone, Debug)]
pub struct EtcdTlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl EtcdTlsFiles {
    /// Make a CA, a serving certificate for 127.0.0.1 and a client certificate under `dir`.
    fn create(dir: &Path) -> Result<EtcdTlsFiles> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let setup = |e: rcgen::Error| Error::Setup(format!("cannot make test certificates: {e}"));
        let ca_key = KeyPair::generate().map_err(setup)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(setup)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(setup)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |san: Option<SanType>| -> Result<(String, String)> {
            let key = KeyPair::generate().map_err(setup)?;
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(setup)?;
            params.subject_alt_names.extend(san);
            let cert = params.signed_by(&key, &issuer).map_err(setup)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let server = leaf(Some(SanType::IpAddress([127, 0, 0, 1].into())))?;
        let client = leaf(None)?;
        let files = EtcdTlsFiles {
            ca: dir.join("etcd-ca.crt"),
            client_cert: dir.join("etcd-client.crt"),
            client_key: dir.join("etcd-client.key"),
            server_cert: dir.join("etcd-server.crt"),
            server_key: dir.join("etcd-server.key"),
        };
        for (path, text) in [
            (&files.ca, ca_cert.pem()),
            (&files.client_cert, client.0),
            (&files.client_key, client.1),
            (&files.server_cert, server.0),
            (&files.server_key, server.1),
        ] {
            std::fs::write(path, text).map_err(|source| Error::Io {
                what: "cannot write",
                path: path.clone(),
                source,
            })?;
        }
        Ok(files)
    }
}

/// A running etcd cluster; dropping it kills every member (the data directory goes with the
/// [`tempfile::TempDir`] it lives in, if the caller gave one).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Start `size` members under `dir` and wait until each reports healthy.
    ///
    /// # Errors
    /// [`Error::Setup`] if `etcd` is not installed, [`Error::Timeout`] if the cluster does not
    /// become healthy (the error carries the member's log tail).
    pub fn start(dir: &Path, size: usize) -> Result<EtcdCluster> {
        Self::launch(dir, size, None)
    }

    /// Like [`start`](Self::start), with TLS on the client port and client certificates
    /// required; returns the files a client needs.
    pub fn start_tls(dir: &Path, size: usize) -> Result<(EtcdCluster, EtcdTlsFiles)> {
        let tls = EtcdTlsFiles::create(dir)?;
        Ok((Self::launch(dir, size, Some(&tls))?, tls))
    }

    fn launch(dir: &Path, size: usize, tls: Option<&EtcdTlsFiles>) -> Result<EtcdCluster> {
        let bin = which("etcd").ok_or_else(|| {
            Error::Setup("etcd is not installed (Debian package etcd-server)".into())
        })?;
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<Result<_>>()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, _))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let token = format!("ledge-test-{}-{}", std::process::id(), ports[0].0);
        let mut members = Vec::with_capacity(size);
        for (i, (client, peer, metrics)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let client_url = format!("{scheme}://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let data = dir.join(format!("etcd-{name}"));
            let mut args: Vec<String> = vec![
                "--name".into(),
                name.clone(),
                "--data-dir".into(),
                data.display().to_string(),
                "--listen-client-urls".into(),
                client_url.clone(),
                "--advertise-client-urls".into(),
                client_url,
                "--listen-peer-urls".into(),
                peer_url.clone(),
                "--initial-advertise-peer-urls".into(),
                peer_url,
                "--initial-cluster".into(),
                initial.join(","),
                "--initial-cluster-token".into(),
                token.clone(),
                "--initial-cluster-state".into(),
                "new".into(),
                // Fast elections on loopback, as a test wants; etcd's defaults are 100/1000 ms.
                "--heartbeat-interval".into(),
                "50".into(),
                "--election-timeout".into(),
                "500".into(),
                "--log-level".into(),
                "warn".into(),
                // Health over plain HTTP, whatever the client port speaks.
                "--listen-metrics-urls".into(),
                format!("http://127.0.0.1:{metrics}"),
            ];
            if let Some(tls) = tls {
                for (flag, path) in [
                    ("--cert-file", &tls.server_cert),
                    ("--key-file", &tls.server_key),
                    ("--trusted-ca-file", &tls.ca),
                ] {
                    args.push(flag.into());
                    args.push(path.display().to_string());
                }
                args.push("--client-cert-auth".into());
            }
            let spec = Spec {
                program: bin.clone().into_os_string(),
                args: args.into_iter().map(Into::into).collect(),
                envs: vec![("ETCD_UNSUPPORTED_ARCH".into(), Some("".into()))],
                cwd: None,
                netns: None,
            };
            let proc = Proc::start(&name, dir.join(format!("etcd-{name}.log")), spec)?;
            members.push(Member {
                name,
                client: format!("127.0.0.1:{client}"),
                metrics: format!("127.0.0.1:{metrics}"),
                proc,
            });
        }
        let cluster = EtcdCluster { members };
        for i in 0..size {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    /// Every member's client address, `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// The `--datastore-endpoint` value naming every member.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Crash member `i` (SIGKILL).
    pub fn kill(&self, i: usize) -> Result<()> {
        self.member(i)?.proc.kill().map(drop)
    }

    /// Start a killed member `i` again on its data and ports, and wait until it is healthy.
    pub fn revive(&self, i: usize) -> Result<()> {
        self.member(i)?.proc.restart()?;
        self.wait_healthy(i)
    }

    fn member(&self, i: usize) -> Result<&Member> {
        self.members
            .get(i)
            .ok_or_else(|| Error::Setup(format!("no etcd member {i}")))
    }

    fn wait_healthy(&self, i: usize) -> Result<()> {
        let member = self.member(i)?;
        let waited = wait_for(
            &format!("etcd member {} to be healthy", member.name),
            START_PATIENCE,
            Duration::from_millis(100),
            || {
                if !member.proc.is_running() {
                    return Err(format!("exited: {}", member.proc.log_tail(20)));
                }
                Ok(healthy(&member.metrics).then_some(()))
            },
        );
        waited.map_err(|e| match e {
            Error::Timeout { what, secs, last } => Error::Timeout {
                what,
                secs,
                last: format!("{last}\n{}", member.proc.log_tail(20)),
            },
            other => other,
        })
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &self.members {
            let _ = member.proc.kill();
        }
    }
}

/// Whether etcd's `/health` on `addr` answers `"health":"true"` (it does only with a leader).
fn healthy(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
