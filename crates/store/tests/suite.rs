//! The store test suite: one binary holding the backend-agnostic cases (`cases`), their
//! instantiation for each backend (`embedded`; etcd joins with one more `store_suite!` line), and
//! the embedded backend's own tests, including a `kill -9` crash test (`crash`).
//!
//! The modules live in `tests/suite/`, which cargo does not treat as separate test binaries.

#[path = "suite/harness.rs"]
mod harness;

#[path = "suite/cases.rs"]
mod cases;
#[path = "suite/crash.rs"]
mod crash;
#[path = "suite/embedded.rs"]
mod embedded;
