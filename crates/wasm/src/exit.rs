//! How a guest's end becomes an [`Exit`], in the terms `kubectl get pods` shows for a process.

use ledge_runtime::Exit;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use crate::image::first_line;
use crate::limits::MemoryLimitExceeded;

/// A trap ends the guest like `abort()` ends a process: 128 + SIGABRT, as `wasmtime run`
/// reports it.
pub(crate) const TRAP_CODE: i32 = 134;
/// Upstream's exit code for an OOM kill: 128 + SIGKILL.
pub(crate) const OOM_CODE: i32 = 137;

/// The exit of a guest whose entry point returned `result`.
pub(crate) fn from_result(result: wasmtime::Result<()>) -> Exit {
    match result {
        Ok(()) => Exit::code(0),
        Err(e) => from_error(&e),
    }
}

/// The exit of a guest that failed with `e`: `proc_exit`/`wasi:cli/exit` codes, an
/// `OOMKilled` for the memory limit, a `Trap` for any other trap, `Error` otherwise.
pub(crate) fn from_error(e: &wasmtime::Error) -> Exit {
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return Exit::code(*code);
    }
    if let Some(oom) = e.downcast_ref::<MemoryLimitExceeded>() {
        return Exit::with_reason(OOM_CODE, "OOMKilled", oom.to_string());
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return Exit::with_reason(TRAP_CODE, "Trap", format!("wasm trap: {trap}"));
    }
    Exit::with_reason(1, "Error", first_line(e))
}

/// The exit of a guest ended by `stop`: it cannot handle SIGTERM, so it ends as a process
/// without a handler would (128 + SIGTERM).
pub(crate) fn stopped() -> Exit {
    Exit {
        code: 143,
        signal: Some(15),
        reason: "Error".into(),
        message: Some("stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_exit_codes_and_traps_are_told_apart() {
        assert_eq!(from_result(Ok(())), Exit::code(0));
        assert_eq!(from_error(&wasmtime::Error::new(I32Exit(3))), Exit::code(3));
        let trap = from_error(&wasmtime::Error::new(Trap::UnreachableCodeReached));
        assert_eq!((trap.code, trap.reason.as_str()), (TRAP_CODE, "Trap"));
        assert!(trap.message.unwrap().contains("unreachable"));
        let oom = from_error(
            &wasmtime::Error::new(MemoryLimitExceeded {
                limit: 1,
                requested: 2,
            })
            .context("while growing"),
        );
        assert_eq!((oom.code, oom.reason.as_str()), (OOM_CODE, "OOMKilled"));
        let other = from_error(&wasmtime::format_err!("host went away\nmore"));
        assert_eq!(other.message.as_deref(), Some("host went away"));
    }
}
