//! `wasi:http/proxy` components: served on the container's TCP ports, one fresh instance per
//! request (pre-instantiated once per component, [`ProxyPre`]).
//!
//! # Shared listeners
//!
//! Pods of the `wasm` runtime share the node's network: there are no per-pod network
//! namespaces, so two replicas of one Deployment on one node cannot each bind `:8080`. Instead
//! the runtime keeps one listener per (host IP, port) ([`registry`]):
//!
//! - the first pod binds the port;
//! - a pod of the **same namespace** joins it, and requests are spread round-robin over the
//!   joined pods (each request runs in the chosen pod's own component, with its env, mounts and
//!   limits, and its output goes to that pod's log). Images may differ: during a rolling update
//!   old and new versions serve side by side, as behind a Service;
//! - a pod of another namespace asking for that port fails to start with
//!   `port 8080 is already served by pod <ns>/<name>` (`CreateContainerError`), as a second
//!   `hostPort` user would upstream;
//! - stop takes a pod out of the rotation, lets its in-flight requests finish within the grace
//!   period (then cancels them), and the last pod to leave closes the listener.
//!
//! A container of an HTTP component never exits on its own: [`Container::wait`] resolves after
//! `stop`, or if its listener fails.

mod member;
mod registry;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ledge_runtime::{BoxFuture, Container, ContainerSpec, Exit, Protocol, RuntimeError};
use tokio::sync::watch;
use wasmtime::Engine;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::command::wait_exit;
use crate::wasi::{Guest, P2State};

pub(crate) use member::Member;
pub(crate) use registry::{Listener, Registry};

/// Serve `pre` on the TCP ports of `spec`.
///
/// # Errors
/// [`RuntimeError::Config`] without a TCP port or with an unparsable `hostIP`;
/// [`RuntimeError::Create`] when a port is held by another image or cannot be bound.
pub(crate) async fn start(
    registry: &Arc<Registry>,
    engine: &Engine,
    pre: ProxyPre<P2State>,
    digest: &str,
    spec: &ContainerSpec,
    guest: Guest,
    tick: Duration,
) -> Result<Box<dyn Container>, RuntimeError> {
    let mut addrs = Vec::new();
    for port in spec.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
        let ip = match port.host_ip.as_deref() {
            None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(ip) => ip.parse().map_err(|_| {
                RuntimeError::Config(format!(
                    "port {}: hostIP {ip:?} is not an IP address",
                    port.container_port
                ))
            })?,
        };
        let addr = SocketAddr::new(ip, port.container_port);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(RuntimeError::Config(format!(
            "container {} is a wasi:http component: it needs a TCP containerPort to serve",
            spec.name
        )));
    }
    let (exit_tx, exit_rx) = watch::channel(None);
    let member = Arc::new(Member::new(
        format!("{}/{}", spec.namespace, spec.pod_name),
        engine.clone(),
        pre,
        guest,
        spec.limits,
        tick,
        exit_tx,
    ));
    let mut listeners: Vec<Arc<Listener>> = Vec::new();
    for addr in addrs {
        match registry
            .join(addr, digest, &spec.namespace, member.clone())
            .await
        {
            Ok(l) => listeners.push(l),
            Err(e) => {
                for l in &listeners {
                    registry.leave(l, member.id()).await;
                }
                return Err(e);
            }
        }
    }
    Ok(Box::new(HttpContainer {
        registry: registry.clone(),
        listeners,
        member,
        exit: exit_rx,
    }))
}

/// A pod's membership in the listeners of its ports.
struct HttpContainer {
    registry: Arc<Registry>,
    listeners: Vec<Arc<Listener>>,
    member: Arc<Member>,
    exit: watch::Receiver<Option<Exit>>,
}

impl HttpContainer {
    async fn stop_inner(&self, grace: Duration) -> Exit {
        for l in &self.listeners {
            self.registry.leave(l, self.member.id()).await;
        }
        self.member.drain(grace).await;
        wait_exit(&self.exit).await
    }
}

impl Container for HttpContainer {
    fn wait(&self) -> BoxFuture<'_, Exit> {
        Box::pin(wait_exit(&self.exit))
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, Exit> {
        Box::pin(self.stop_inner(grace))
    }
}

impl Drop for HttpContainer {
    /// A container dropped without `stop` (its worker gone) must not keep serving.
    fn drop(&mut self) {
        if self.exit.borrow().is_none() {
            let (registry, listeners, member) = (
                self.registry.clone(),
                self.listeners.clone(),
                self.member.clone(),
            );
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    for l in &listeners {
                        registry.leave(l, member.id()).await;
                    }
                    member.drain(Duration::ZERO).await;
                });
            }
        }
    }
}
