//! The node's shared HTTP listeners, one per (host IP, port), and their accept loops.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use ledge_runtime::{Exit, RuntimeError};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::member::{Member, plain_response};

/// Every listener of one runtime.
#[derive(Default)]
pub(crate) struct Registry {
    /// Held across a bind and across the close of a listener's socket, so a pod that takes over
    /// a port just released finds it free.
    listeners: tokio::sync::Mutex<HashMap<SocketAddr, Arc<Listener>>>,
}

/// One bound port and the pods behind it.
pub(crate) struct Listener {
    addr: SocketAddr,
    namespace: String,
    members: Mutex<Vec<Arc<Member>>>,
    next: AtomicUsize,
    shutdown: CancellationToken,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Registry {
    /// Join `member` to the listener of `addr`, binding it if nobody serves it.
    ///
    /// # Errors
    /// [`RuntimeError::Create`] when another namespace serves the port (also through a
    /// wildcard address) or it cannot be bound.
    pub(crate) async fn join(
        self: &Arc<Self>,
        addr: SocketAddr,
        digest: &str,
        namespace: &str,
        member: Arc<Member>,
    ) -> Result<Arc<Listener>, RuntimeError> {
        let mut map = self.listeners.lock().await;
        // Pods of one namespace share the port whatever their image, so a rolling update
        // from one version to the next serves from both while it runs (as a Service would).
        if let Some(l) = map.get(&addr)
            && l.namespace == namespace
        {
            let mut members = lock(&l.members);
            if !members.is_empty() {
                members.push(member);
                return Ok(l.clone());
            }
        }
        let overlapping = map.values().find(|l| {
            l.addr.port() == addr.port()
                && (l.addr.ip() == addr.ip()
                    || l.addr.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some(l) = overlapping {
            let holder = lock(&l.members)
                .first()
                .map(|m| m.pod().to_owned())
                .unwrap_or_else(|| "(stopping)".into());
            return Err(RuntimeError::Create(format!(
                "port {} is already served by pod {holder}",
                addr.port()
            )));
        }
        let tcp = bind(addr)
            .map_err(|e| RuntimeError::Create(format!("cannot listen on {addr}: {e}")))?;
        let listener = Arc::new(Listener {
            addr,
            namespace: namespace.to_owned(),
            members: Mutex::new(vec![member]),
            next: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            accept: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(self.clone(), listener.clone(), tcp));
        *lock(&listener.accept) = Some(task);
        map.insert(addr, listener.clone());
        tracing::info!(%addr, digest, "wasm http listener bound");
        Ok(listener)
    }

    /// Take member `id` out of `listener`; the last one out closes it (and returns once its
    /// socket is closed).
    pub(crate) async fn leave(&self, listener: &Arc<Listener>, id: u64) {
        let mut map = self.listeners.lock().await;
        let empty = {
            let mut members = lock(&listener.members);
            members.retain(|m| m.id() != id);
            members.is_empty()
        };
        if !empty {
            return;
        }
        listener.shutdown.cancel();
        if map
            .get(&listener.addr)
            .is_some_and(|l| Arc::ptr_eq(l, listener))
        {
            map.remove(&listener.addr);
        }
        let task = lock(&listener.accept).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        tracing::info!(addr = %listener.addr, "wasm http listener closed");
    }

    /// A listener whose socket failed: every pod behind it exits with the error.
    async fn fail(&self, listener: &Arc<Listener>, error: &std::io::Error) {
        let mut map = self.listeners.lock().await;
        if map
            .get(&listener.addr)
            .is_some_and(|l| Arc::ptr_eq(l, listener))
        {
            map.remove(&listener.addr);
        }
        listener.shutdown.cancel();
        let members = std::mem::take(&mut *lock(&listener.members));
        for m in members {
            m.finish(Exit::with_reason(
                1,
                "Error",
                format!("listener on {} failed: {error}", listener.addr),
            ));
        }
    }
}

impl Listener {
    /// The next pod in the rotation, counted in flight from now on, or `None` when the listener
    /// is being closed.
    fn route(
        &self,
    ) -> Option<(
        Arc<Member>,
        tokio_util::task::task_tracker::TaskTrackerToken,
    )> {
        let members = lock(&self.members);
        if members.is_empty() {
            return None;
        }
        let m = members[self.next.fetch_add(1, Ordering::Relaxed) % members.len()].clone();
        let token = m.admit();
        Some((m, token))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As every server: a restarted pod can bind again while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Errors of `accept` that concern one connection or a passing shortage (fds, buffers), after
/// which the listener goes on.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105)) // ENFILE EMFILE ENOMEM ENOBUFS
}

async fn accept_loop(registry: Arc<Registry>, listener: Arc<Listener>, tcp: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = listener.shutdown.cancelled() => return,
            r = tcp.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(listener.clone(), stream));
            }
            Err(e) if transient(&e) => {
                tracing::warn!(addr = %listener.addr, error = %e, "accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::error!(addr = %listener.addr, error = %e, "wasm http listener failed");
                drop(tcp);
                registry.fail(&listener, &e).await;
                return;
            }
        }
    }
}

async fn serve_connection(listener: Arc<Listener>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let routing = listener.clone();
    let service = hyper::service::service_fn(move |req| {
        let routing = routing.clone();
        async move {
            Ok::<_, Infallible>(match routing.route() {
                Some((member, admitted)) => member.handle(req, admitted).await,
                None => plain_response(
                    hyper::StatusCode::SERVICE_UNAVAILABLE,
                    "no pod is serving this port\n",
                ),
            })
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(addr = %listener.addr, error = %e, "http connection ended");
            }
        }
        _ = listener.shutdown.cancelled() => {
            // The port is closing: finish the request in progress, then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
