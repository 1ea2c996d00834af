//! Decoding tests for ledge-proto, one binary: bodies captured from real
//! kubectl (`fixtures`), hand-built bodies for kinds kubectl does not send
//! (`handmade`) and malformed input (`robustness`).

mod fixtures;
mod handmade;
mod pb;
mod robustness;

/// This package's directory, as the test runner says at run time: a test binary built in a
/// checkout elsewhere that shares the target directory must read this checkout's files.
pub fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}
