//! Learning the cluster's servers: every `ledge server` publishes its address in the
//! `default/kubernetes` Endpoints (as upstream's lease endpoint reconciler does), and the agent
//! follows that one object with a watch — no polling: an idle watch costs no bytes — adding
//! what it finds to its client's servers ([`crate::client::ServerSet`]), the `--server` URLs
//! staying as a fallback. The list is kept in `<data dir>/servers.json`, so an agent that
//! restarts while its `--server` is gone still finds the others.
//!
//! What is not here: choosing among the servers (the client does) and the tunnels to them
//! ([`crate::tunnel`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledge_controller::{Informer, ObjectKey, kinds};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::HttpClient;
use crate::files::{self, FileError};

/// The namespace and name of the Endpoints listing the servers.
pub const NAMESPACE: &str = "default";
/// See [`NAMESPACE`].
pub const NAME: &str = "kubernetes";
/// The port name servers publish their API under.
pub const PORT_NAME: &str = "https";

/// The server URLs an Endpoints object lists: `https://<ip>:<port>` for every ready address of
/// a subset and its `https` port (its only port when that is unnamed), sorted, without repeats.
/// Addresses that are not IPs are skipped.
pub fn endpoints_urls(endpoints: &Value) -> Vec<String> {
    let mut urls = Vec::new();
    let subsets = endpoints.get("subsets").and_then(Value::as_array);
    for subset in subsets.into_iter().flatten() {
        let ports: Vec<&Value> = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        let named = |p: &&&Value| p.get("name").and_then(Value::as_str) == Some(PORT_NAME);
        let port = match ports.iter().find(named) {
            Some(p) => Some(*p),
            None if ports.len() == 1
                && ports[0]
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty() =>
            {
                Some(ports[0])
            }
            None => None,
        };
        let Some(port) = port
            .and_then(|p| p.get("port"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        let addresses = subset.get("addresses").and_then(Value::as_array);
        for address in addresses.into_iter().flatten() {
            let Some(ip) = address
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            else {
                continue;
            };
            // `SocketAddr` puts an IPv6 address in brackets.
            urls.push(format!("https://{}", SocketAddr::new(ip, port)));
        }
    }
    urls.sort();
    urls.dedup();
    urls
}

/// Where the learned servers are kept.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("servers.json")
}

#[derive(Serialize, Deserialize)]
struct Stored {
    servers: Vec<String>,
}

/// The servers learned before, if any. A file that cannot be read as such is ignored with a
/// warning: the list is learned again from the first server reached.
///
/// # Errors
/// The file exists but cannot be read.
pub fn load(data_dir: &Path) -> Result<Vec<String>, FileError> {
    let path = path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError {
                action: "read",
                path,
                source,
            });
        }
    };
    match serde_json::from_slice::<Stored>(&bytes) {
        Ok(s) => Ok(s.servers),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the stored server list");
            Ok(Vec::new())
        }
    }
}

/// Keep `servers` as the learned list, atomically (temp file, fsync, rename).
///
/// # Errors
/// The data dir cannot be written.
pub fn store(data_dir: &Path, servers: &[String]) -> Result<(), FileError> {
    let body = serde_json::to_vec_pretty(&Stored {
        servers: servers.to_vec(),
    })
    .unwrap_or_default();
    files::write_private(&path(data_dir), &body)
}

/// Follow the `kubernetes` Endpoints until `cancel`, adding the servers it lists to `client`
/// and keeping them in `data_dir` whenever they change. An Endpoints object that is missing or
/// lists no server changes nothing: the servers known stay known.
///
/// # Cancel safety
/// Returns when `cancel` fires.
pub async fn run(client: HttpClient, data_dir: PathBuf, cancel: CancellationToken) {
    let selector = format!("metadata.namespace={NAMESPACE},metadata.name={NAME}");
    // Retried at the informer's usual pace (at most every 30 s), not the agent's 5 s: the
    // list rarely changes, and while the link is down every attempt costs connection attempts.
    let informer = Informer::start(
        Arc::new(client.with_field_selector(&selector)),
        kinds::ENDPOINTS,
        cancel.child_token(),
    );
    let mut changes = informer.subscribe();
    let key = ObjectKey {
        namespace: Some(NAMESPACE.into()),
        name: NAME.into(),
    };
    loop {
        if let Some(endpoints) = informer.store().get(&key) {
            let urls = endpoints_urls(&endpoints);
            if !urls.is_empty() && client.set_learned(&urls) {
                tracing::info!(servers = %urls.join(","), "learned the cluster's servers");
                let dir = data_dir.clone();
                let stored = tokio::task::spawn_blocking(move || store(&dir, &urls)).await;
                match stored {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot keep the server list"),
                    Err(e) => tracing::warn!(error = %e, "cannot keep the server list"),
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changed {
                return;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn endpoints_become_one_url_per_address_and_https_port() {
        let endpoints = json!({
            "subsets": [
                {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                // Two servers on one machine: one subset per port.
                {"addresses": [{"ip": "127.0.0.1"}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
                // Another port name, a host name, a subset without ports: skipped.
                {"addresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "metrics", "port": 9100}]},
                {"addresses": [{"ip": "server.example"}, {"ip": "10.0.0.1"}],
                 "ports": [{"port": 6443}]},
                {"addresses": [{"ip": "10.0.0.8"}]},
            ],
        });
        assert_eq!(
            endpoints_urls(&endpoints),
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://127.0.0.1:7443",
                "https://[fd00::1]:6443",
            ]
        );
        assert!(endpoints_urls(&json!({})).is_empty());
        assert!(
            endpoints_urls(
                &json!({"subsets": [{"ports": [{"name": "https", "port": 0}],
                                                    "addresses": [{"ip": "10.0.0.1"}]}]})
            )
            .is_empty()
        );
    }

    #[test]
    fn learned_urls_are_what_the_client_accepts() -> Result<(), Box<dyn std::error::Error>> {
        let endpoints = json!({"subsets": [{"addresses": [{"ip": "::1"}, {"ip": "10.0.0.1"}],
                                            "ports": [{"name": "https", "port": 6443}]}]});
        let mut set = crate::client::ServerSet::new(&["https://edge.example:6443"])?;
        assert!(set.set_learned(&endpoints_urls(&endpoints)));
        assert_eq!(
            set.learned(),
            ["https://10.0.0.1:6443", "https://[::1]:6443"]
        );
        Ok(())
    }

    #[test]
    fn the_server_list_survives_a_restart() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        assert!(load(dir.path())?.is_empty(), "nothing learned yet");
        let servers = vec![
            "https://10.0.0.1:6443".to_string(),
            "https://[fd00::1]:6443".to_string(),
        ];
        store(dir.path(), &servers)?;
        assert_eq!(load(dir.path())?, servers);
        store(dir.path(), &servers[..1])?;
        assert_eq!(load(dir.path())?, servers[..1]);
        assert!(!dir.path().join("servers.json.tmp").exists());
        std::fs::write(path(dir.path()), "{ not json")?;
        assert!(load(dir.path())?.is_empty(), "a damaged list is ignored");
        Ok(())
    }
}
