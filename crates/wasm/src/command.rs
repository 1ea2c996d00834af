//! Commands: a preview 1 module's `_start` or a preview 2 component's `wasi:cli/run`, run once
//! on a tokio task, like a container's main process.
//!
//! The instance is created before [`start`] returns, so a full instance pool is a start error
//! (`CreateContainerError`) while a guest that fails in its own code (a trap, the memory limit)
//! has started and then exited, as a process would.

use std::time::Duration;

use ledge_runtime::{BoxFuture, Container, Exit, Limits, RuntimeError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, InstancePre, Store, TypedFunc};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::{Command, CommandPre};

use crate::exit;
use crate::limits::{Limiter, configure_store};
use crate::wasi::{Guest, P1State, P2State};

/// The entry point of a command.
pub(crate) enum Entry {
    /// A preview 1 module.
    P1(InstancePre<P1State>),
    /// A `wasi:cli/command` component.
    P2(CommandPre<P2State>),
}

/// An instantiated guest, ready to run.
enum Ready {
    P1(Store<P1State>, TypedFunc<(), ()>),
    P2(Store<P2State>, Command),
}

/// Instantiate `entry` for `guest` and run it on a new task.
///
/// # Errors
/// [`RuntimeError::Create`] when the instance cannot be created (the pool is full, a mount is
/// gone).
pub(crate) async fn start(
    engine: &Engine,
    entry: &Entry,
    guest: Guest,
    limits: Limits,
    tick: Duration,
) -> Result<Box<dyn Container>, RuntimeError> {
    let kill = CancellationToken::new();
    let limiter = Limiter::new(limits.memory_bytes);
    let ready = match entry {
        Entry::P1(pre) => {
            let wasi = guest.builder()?.build_p1();
            let mut store = Store::new(engine, P1State { wasi, limiter });
            configure_store(&mut store, limits.cpu_millis, tick, kill.clone());
            instantiate_p1(pre, &mut store)
                .await
                .map(|start| Ready::P1(store, start))
        }
        Entry::P2(pre) => {
            let wasi = guest.builder()?.build();
            let mut store = Store::new(engine, P2State::new(wasi, limiter));
            configure_store(&mut store, limits.cpu_millis, tick, kill.clone());
            pre.instantiate_async(&mut store)
                .await
                .map(|command| Ready::P2(store, command))
        }
    };
    let (tx, rx) = watch::channel(None);
    let log = guest.log().clone();
    match ready {
        Ok(ready) => {
            let kill = kill.clone();
            tokio::spawn(async move {
                let exit = tokio::select! {
                    biased;
                    // A guest blocked in a host call (sleeping, reading) is dropped here; a
                    // spinning one traps at its next epoch deadline.
                    _ = kill.cancelled() => exit::stopped(),
                    exit = run(ready) => {
                        if kill.is_cancelled() && exit.reason == "Trap" {
                            exit::stopped()
                        } else {
                            exit
                        }
                    }
                };
                log.finish();
                let _ = tx.send(Some(exit));
            });
        }
        Err(e) => {
            let exit = exit::from_error(&e);
            if exit.reason != "OOMKilled" && exit.reason != "Trap" {
                return Err(RuntimeError::Create(format!(
                    "cannot instantiate: {}",
                    crate::image::first_line(&e)
                )));
            }
            log.finish();
            let _ = tx.send(Some(exit));
        }
    }
    Ok(Box::new(CommandContainer { exit: rx, kill }))
}

async fn instantiate_p1(
    pre: &InstancePre<P1State>,
    store: &mut Store<P1State>,
) -> wasmtime::Result<TypedFunc<(), ()>> {
    let instance = pre.instantiate_async(&mut *store).await?;
    instance.get_typed_func::<(), ()>(&mut *store, "_start")
}

async fn run(ready: Ready) -> Exit {
    let result = match ready {
        Ready::P1(mut store, start) => start.call_async(&mut store, ()).await,
        Ready::P2(mut store, command) => {
            match command.wasi_cli_run().call_run(&mut store).await {
                Ok(Ok(())) => Ok(()),
                // `run` returned `err`: a failed command without a specific code.
                Ok(Err(())) => Err(wasmtime::Error::new(I32Exit(1))),
                Err(e) => Err(e),
            }
        }
    };
    exit::from_result(result)
}

/// A running command.
struct CommandContainer {
    exit: watch::Receiver<Option<Exit>>,
    kill: CancellationToken,
}

/// Wait for the exit published on `rx`.
///
/// # Cancel safety
/// Cancel safe: it only reads a watch channel.
pub(crate) async fn wait_exit(rx: &watch::Receiver<Option<Exit>>) -> Exit {
    let mut rx = rx.clone();
    if let Ok(exit) = rx.wait_for(Option::is_some).await {
        return exit.clone().unwrap_or_else(lost);
    }
    // The sender is gone: whatever it published last (if anything) is the exit.
    let last = rx.borrow().clone();
    last.unwrap_or_else(lost)
}

fn lost() -> Exit {
    Exit::with_reason(
        1,
        "Error",
        "the task running the guest ended without an exit",
    )
}

impl Container for CommandContainer {
    fn wait(&self) -> BoxFuture<'_, Exit> {
        Box::pin(wait_exit(&self.exit))
    }

    /// A guest cannot handle SIGTERM, so stop ends it at once (at its next epoch tick or
    /// await point), well within any grace period.
    fn stop(&self, _grace: Duration) -> BoxFuture<'_, Exit> {
        self.kill.cancel();
        Box::pin(wait_exit(&self.exit))
    }
}

impl Drop for CommandContainer {
    /// A container dropped without `stop` (its worker gone) must not run on unseen.
    fn drop(&mut self) {
        self.kill.cancel();
    }
}
