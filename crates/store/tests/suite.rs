//! The store test suite: one binary holding the backend-agnostic cases (`cases`), their
//! instantiation for each backend (`embedded`, and `etcd` on a real etcd per case), and each
//! backend's own tests, including a `kill -9` crash test (`crash`) and etcd quorum loss.
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
#[path = "suite/etcd.rs"]
mod etcd;
