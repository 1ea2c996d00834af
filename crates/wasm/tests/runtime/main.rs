//! ledge-wasm against real guests: WAT modules (the `wat` crate), C programs built with Debian's
//! clang + wasi-libc, and components wrapped with wasmtime's adapters (fixtures/build.sh, run
//! on first use).

mod command;
mod common;
mod http;
mod image;

/// This package's directory, as the test runner says at run time: a test binary built in a
/// checkout elsewhere that shares the target directory must read this checkout's files.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}
