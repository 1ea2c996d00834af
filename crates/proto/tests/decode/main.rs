//! Decoding tests for ledge-proto, one binary: bodies captured from real
//! kubectl (`fixtures`), hand-built bodies for kinds kubectl does not send
//! (`handmade`) and malformed input (`robustness`).

mod fixtures;
mod handmade;
mod pb;
mod robustness;
