//! ledge's `wasm` runtime: runs a pod's container as a WebAssembly guest on wasmtime, the only
//! crate of the workspace that depends on it.
//!
//! What it runs, told apart by the binary's header and, for a component, by its exports:
//!
//! - a WASI preview 1 core module (`_start`), as a command;
//! - a preview 2 component exporting `wasi:cli/run` (the `wasi:cli/command` world), as a command;
//! - a component exporting `wasi:http/incoming-handler` (the `wasi:http/proxy` world), served on
//!   the container's TCP ports with one fresh instance per request. Pods of this runtime share
//!   the node's network, so replicas of one image on one node share one listener per port
//!   (see `src/http/mod.rs`, and `docs/design.md`).
//!
//! One [`wasmtime::Engine`] serves every pod of the agent, made by the first Wasm pod (an agent
//! that runs none does not pay for it): epoch interruption (a ticker thread) gives stop and CPU
//! limits, a pooling allocator sized to the device bounds concurrent instances, and compiled
//! code is cached on disk and in memory by the artifact's sha256 (`cache.rs`, `image.rs`).
//! [`WasmRuntime::precompile`] fills the disk cache ahead of time (`ledge image import`, and
//! the agent at start for stored images), with a compile-only engine when none runs yet.
//!
//! What does not live here: pod state machines, image stores, log reading (`ledge-agent`), the
//! runtime interface itself (`ledge-runtime`).

mod cache;
mod command;
mod config;
mod engine;
mod exit;
mod http;
mod image;
mod limits;
mod runtime;
mod wasi;

pub use config::{MAX_INSTANCES_ENV, WasmConfig, derive_max_instances};
pub use ledge_runtime::Prepared;
pub use runtime::{InitError, WasmRuntime};
