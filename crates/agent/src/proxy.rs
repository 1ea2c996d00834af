//! The node's service proxy: every `NodePort` Service is served on this node's `nodePort`
//! (TCP), each connection forwarded to a ready endpoint of the Service — endpoints on this node
//! first, then the others, round-robin. ledge pods share their node's network, so an endpoint is
//! the node address and the pod's port. Endpoints come from EndpointSlices; Services and slices
//! are followed with informers, and listeners open and close as Services come and go.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledge_api::Pointer as _;
use ledge_controller::kinds::{ENDPOINT_SLICE, SERVICE};
use ledge_controller::{Client, Informer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a backend connection may take before the next endpoint is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One Service port exposed on a node port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Exposed {
    namespace: String,
    service: String,
    /// The service port's name ("" when unnamed).
    port_name: String,
    /// `targetPort` when it is a number (used when slices carry no ports).
    target: Option<u16>,
}

/// Ready backends of one exposed port: (address, port, on this node).
type Backends = Vec<(String, u16, bool)>;

struct Table {
    node: String,
    /// nodePort → what it exposes.
    exposed: BTreeMap<u16, Exposed>,
    backends: HashMap<u16, Backends>,
}

/// Serve NodePort Services on this node until `cancel`.
pub async fn run(client: Arc<dyn Client>, node: String, cancel: CancellationToken) {
    let services = Informer::start_with_retry_cap(
        client.clone(),
        SERVICE,
        cancel.child_token(),
        crate::RECONNECT_CAP,
    );
    let slices = Informer::start_with_retry_cap(
        client,
        ENDPOINT_SLICE,
        cancel.child_token(),
        crate::RECONNECT_CAP,
    );
    let mut svc_changes = services.subscribe();
    let mut slice_changes = slices.subscribe();
    let table = Arc::new(RwLock::new(Table {
        node,
        exposed: BTreeMap::new(),
        backends: HashMap::new(),
    }));
    let mut listeners: HashMap<u16, JoinHandle<()>> = HashMap::new();
    loop {
        rebuild(&table, &services, &slices);
        let wanted: Vec<u16> = table
            .read()
            .map(|t| t.exposed.keys().copied().collect())
            .unwrap_or_default();
        listeners.retain(|port, task| {
            let keep = wanted.contains(port) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for port in wanted {
            listeners
                .entry(port)
                .or_insert_with(|| tokio::spawn(listen(port, table.clone(), cancel.child_token())));
        }
        tokio::select! {
            _ = svc_changes.recv() => {}
            _ = slice_changes.recv() => {}
            _ = cancel.cancelled() => break,
        }
        // Let a burst of changes settle into one rebuild.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while svc_changes.try_recv().is_ok() || slice_changes.try_recv().is_ok() {}
    }
    for (_, t) in listeners {
        t.abort();
    }
}

fn text<'a>(v: &'a Value, p: &str) -> &'a str {
    v.at(p).and_then(Value::as_str).unwrap_or("")
}

fn rebuild(table: &RwLock<Table>, services: &Informer, slices: &Informer) {
    let mut exposed = BTreeMap::new();
    for svc in services.store().list(None) {
        if text(&svc, "/spec/type") != "NodePort" && text(&svc, "/spec/type") != "LoadBalancer" {
            continue;
        }
        for p in svc
            .at("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let Some(node_port) = p
                .get("nodePort")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
            else {
                continue;
            };
            if proto != "TCP" {
                continue;
            }
            let target = p
                .get("targetPort")
                .and_then(Value::as_u64)
                .or_else(|| p.get("port").and_then(Value::as_u64))
                .and_then(|n| u16::try_from(n).ok());
            exposed.insert(
                node_port,
                Exposed {
                    namespace: text(&svc, "/metadata/namespace").to_string(),
                    service: text(&svc, "/metadata/name").to_string(),
                    port_name: p
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    target,
                },
            );
        }
    }
    let all_slices = slices.store().list(None);
    let Ok(mut t) = table.write() else { return };
    let mut backends = HashMap::new();
    for (node_port, e) in &exposed {
        let mut list: Backends = Vec::new();
        for s in &all_slices {
            if text(s, "/metadata/namespace") != e.namespace
                || text(s, "/metadata/labels/kubernetes.io~1service-name") != e.service
            {
                continue;
            }
            let port = s
                .at("/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == e.port_name)
                .and_then(|p| p.get("port").and_then(Value::as_u64))
                .and_then(|n| u16::try_from(n).ok())
                .or(e.target);
            let Some(port) = port else { continue };
            for ep in s
                .at("/endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if ep.at("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let local = text(ep, "/nodeName") == t.node;
                for addr in ep
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(a) = addr.as_str() {
                        list.push((a.to_string(), port, local));
                    }
                }
            }
        }
        // Local endpoints first; duplicates (pods sharing the node's address) collapse.
        list.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        list.dedup();
        backends.insert(*node_port, list);
    }
    t.exposed = exposed;
    t.backends = backends;
}

async fn listen(port: u16, table: Arc<RwLock<Table>>, cancel: CancellationToken) {
    let listener = match TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(port, error = %e, "cannot serve a NodePort on this node");
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (conn, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = cancel.cancelled() => return,
        };
        let backends = table
            .read()
            .ok()
            .and_then(|t| t.backends.get(&port).cloned())
            .unwrap_or_default();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(forward(conn, backends, start));
    }
}

/// Connect to a backend (local ones first, rotating among equals) and copy both ways.
async fn forward(mut conn: TcpStream, backends: Backends, start: usize) {
    let local: Vec<_> = backends.iter().filter(|b| b.2).collect();
    let remote: Vec<_> = backends.iter().filter(|b| !b.2).collect();
    let rotate = |v: &[&(String, u16, bool)]| -> Vec<(String, u16)> {
        (0..v.len())
            .map(|i| {
                let b = v[(start + i) % v.len()];
                (b.0.clone(), b.1)
            })
            .collect()
    };
    let order: Vec<(String, u16)> = rotate(&local).into_iter().chain(rotate(&remote)).collect();
    for (addr, port) in order {
        let dial =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((addr.as_str(), port))).await;
        if let Ok(Ok(mut upstream)) = dial {
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
            return;
        }
    }
    // No endpoint answered: close, as kube-proxy's REJECT does.
}
