//! ledge-wasm against real guests: WAT modules (the `wat` crate), C programs built with Debian's
//! clang + wasi-libc, and components wrapped with wasmtime's adapters (fixtures/build.sh, run
//! on first use).

mod command;
mod common;
mod http;
mod image;
