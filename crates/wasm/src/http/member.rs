//! One pod serving behind a shared listener: per-request instances, in-flight tracking, drain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use ledge_runtime::log::Stream;
use ledge_runtime::{Exit, Limits};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::exit;
use crate::image::first_line;
use crate::limits::{Limiter, configure_store};
use crate::wasi::{Guest, P2State};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A pod joined to one or more listeners.
pub(crate) struct Member {
    id: u64,
    /// `namespace/name`, for the error a conflicting pod gets.
    pod: String,
    engine: Engine,
    pre: ProxyPre<P2State>,
    guest: Guest,
    limits: Limits,
    tick: Duration,
    /// Requests routed to this pod and still running (their instance may outlive the response
    /// head while it streams the body).
    in_flight: TaskTracker,
    /// Cancels every in-flight request (stop after the grace period).
    kill: CancellationToken,
    exit: watch::Sender<Option<Exit>>,
}

impl Member {
    pub(crate) fn new(
        pod: String,
        engine: Engine,
        pre: ProxyPre<P2State>,
        guest: Guest,
        limits: Limits,
        tick: Duration,
        exit: watch::Sender<Option<Exit>>,
    ) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pod,
            engine,
            pre,
            guest,
            limits,
            tick,
            in_flight: TaskTracker::new(),
            kill: CancellationToken::new(),
            exit,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn pod(&self) -> &str {
        &self.pod
    }

    /// Count a request as in flight from the moment it is routed here.
    pub(crate) fn admit(&self) -> TaskTrackerToken {
        self.in_flight.token()
    }

    /// Let in-flight requests finish within `grace`, cancel what is left, and publish the exit:
    /// `Completed` when everything finished, 137 (as a SIGKILL after the grace period) when
    /// requests had to be cancelled. Call after the member left every listener.
    pub(crate) async fn drain(&self, grace: Duration) {
        self.in_flight.close();
        let drained = tokio::time::timeout(grace, self.in_flight.wait())
            .await
            .is_ok();
        if !drained {
            self.kill.cancel();
            self.in_flight.wait().await;
        }
        let exit = if drained {
            Exit::code(0)
        } else {
            Exit {
                code: 137,
                signal: Some(9),
                reason: "Error".into(),
                message: Some("in-flight requests were cancelled after the grace period".into()),
            }
        };
        self.finish(exit);
    }

    /// Publish `exit` unless one was published already.
    pub(crate) fn finish(&self, exit: Exit) {
        self.exit.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            self.guest.log().finish();
            *slot = Some(exit);
            true
        });
    }

    /// Serve one request in a fresh instance. A failure (a trap, the memory limit, no
    /// response) answers 500 and is written to the pod's stderr log, where `kubectl logs`
    /// shows it, as `wasmtime serve` prints it to its stderr.
    pub(crate) async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        admitted: TaskTrackerToken,
    ) -> hyper::Response<HyperOutgoingBody> {
        match self.try_handle(req, admitted).await {
            Ok(resp) => resp,
            Err(e) => {
                let exit = exit::from_error(&e);
                let why = exit.message.unwrap_or_else(|| first_line(&e));
                self.guest.log().write(
                    Stream::Stderr,
                    format!("request failed: {why}\n").as_bytes(),
                );
                plain_response(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error\n",
                )
            }
        }
    }

    async fn try_handle(
        &self,
        req: hyper::Request<Incoming>,
        admitted: TaskTrackerToken,
    ) -> wasmtime::Result<hyper::Response<HyperOutgoingBody>> {
        let wasi = self.guest.builder().map_err(wasmtime::Error::new)?.build();
        let limiter = Limiter::new(self.limits.memory_bytes);
        let mut store = Store::new(&self.engine, P2State::new(wasi, limiter));
        configure_store(
            &mut store,
            self.limits.cpu_millis,
            self.tick,
            self.kill.clone(),
        );
        let (tx, rx) = oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(tx)?;
        let (pre, kill) = (self.pre.clone(), self.kill.clone());
        // The instance runs on its own task: after `response-outparam.set` it may go on
        // writing the body, which hyper streams meanwhile.
        let task = self.in_flight.spawn(async move {
            let _admitted = admitted;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            tokio::select! {
                _ = kill.cancelled() => Err(wasmtime::format_err!("cancelled: the pod was stopped")),
                r = run => r,
            }
        });
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(wasmtime::format_err!(
                "the component answered with error {code:?}"
            )),
            // The outparam was dropped unset: the task's result says why.
            Err(_) => match task.await {
                Ok(Ok(())) => Err(wasmtime::format_err!(
                    "the component returned without setting a response"
                )),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(wasmtime::Error::new(e)),
            },
        }
    }
}

/// A short text response from the host (errors, no pod to route to).
pub(crate) fn plain_response(
    status: hyper::StatusCode,
    text: &'static str,
) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
