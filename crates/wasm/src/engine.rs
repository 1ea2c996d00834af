//! The one [`Engine`] of an agent and the thread that advances its epoch, and the compile-only
//! engine that fills the compiled-code cache ahead of time.
//!
//! Epoch interruption is wasmtime's cheap preemption: compiled code checks a counter at loop
//! heads and function entries, and the ticker increments it every `epoch_tick`. Every store
//! ([`limits::configure_store`](crate::limits::configure_store)) turns reaching its deadline into
//! a yield to tokio, so a spinning guest neither starves other pods nor ignores a stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Build the engine: cranelift, async, epochs, and a pooling allocator for `max_instances`
/// concurrent instances (falling back to on-demand allocation when the pool's address space
/// cannot be reserved, e.g. under a small `ulimit -v`).
pub(crate) fn build(max_instances: u32) -> wasmtime::Result<Engine> {
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(max_instances)));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!(error = %e, max_instances, "cannot reserve the wasm instance pool; allocating on demand");
            Engine::new(&base_config())
        }
    }
}

/// An engine that only compiles: the running engine's code settings without its instance pool,
/// so precompiling (at `ledge image import`, or when the agent starts) reserves no pool. What it
/// writes loads into the running engine: the allocation strategy is not part of wasmtime's
/// compatibility check (`precompile_compatibility_hash`, and the same checks again at load).
pub(crate) fn compiler() -> wasmtime::Result<Engine> {
    Engine::new(&base_config())
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

/// Bytes of a reused memory, table or stack slot reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 128 << 10;

/// A component instance holds several core instances (the guest, the WASI adapter, shims) and
/// usually two linear memories; the totals leave room for that.
fn pool(max_instances: u32) -> PoolingAllocationConfig {
    let n = max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(4))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n);
    // Resetting a slot for reuse with madvise costs a TLB shootdown on every core per
    // instance; zeroing the first 128 KiB in place instead (a small guest's whole memory) raised
    // hello-http from ~5,000 to ~7,500 requests/s on 2 cores (bench/wasm_http.sh). What stays
    // resident is bounded by the warm slots kept: at most n/4 (≤ 100), ~0.5 MiB each.
    pool.linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT)
        .max_unused_warm_slots((n / 4).clamp(1, 100));
    pool
}

/// Advances the engine's epoch every tick until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    /// Start the ticker thread.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        // A weak handle: the thread must not keep the engine (and its pool) alive.
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("ledge-wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::compatibility_hash;

    #[test]
    fn the_compiler_writes_what_the_running_engine_loads() {
        let running = build(4).unwrap();
        let compiler = compiler().unwrap();
        assert_eq!(compatibility_hash(&running), compatibility_hash(&compiler));
        let module = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        let bytes = compiler.precompile_module(&module).unwrap();
        // SAFETY: the bytes are `precompile_module` output, just produced above.
        #[allow(unsafe_code)]
        let loaded = unsafe { wasmtime::Module::deserialize(&running, &bytes) };
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }
}
