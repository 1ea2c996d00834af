//! What an agent tells the Wasm runtime at construction, and how the instance pool is sized to
//! the device when it does not say.

use std::path::PathBuf;
use std::time::Duration;

/// The environment variable that overrides the derived pool size (see
/// [`WasmConfig::max_instances`]).
pub const MAX_INSTANCES_ENV: &str = "LEDGE_WASM_MAX_INSTANCES";

/// Configuration of a [`WasmRuntime`](crate::WasmRuntime).
#[derive(Clone, Debug)]
pub struct WasmConfig {
    /// Where compiled modules and components are kept, by artifact digest (created if missing;
    /// safe to delete while the agent is stopped).
    pub cache_dir: PathBuf,
    /// How many Wasm instances may exist at once on this node (running commands plus in-flight
    /// HTTP requests). `None`: `$LEDGE_WASM_MAX_INSTANCES`, else one per 32 MiB of the device's
    /// memory, between 16 and 1000 ([`derive_max_instances`]).
    pub max_instances: Option<u32>,
    /// How often the engine's epoch advances: the granularity of stop and of CPU limits.
    pub epoch_tick: Duration,
}

impl WasmConfig {
    /// The defaults, with compiled code cached under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            max_instances: None,
            epoch_tick: Duration::from_millis(10),
        }
    }

    /// The pool size to use: the configured one, the environment's, or one derived from memory.
    pub(crate) fn resolved_max_instances(&self) -> u32 {
        if let Some(n) = self.max_instances {
            return n.max(1);
        }
        if let Some(n) = std::env::var(MAX_INSTANCES_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            return n.max(1);
        }
        derive_max_instances(mem_total_bytes())
    }
}

/// One instance slot per 32 MiB of memory, between 16 and 1000 (wasmtime's own default).
///
/// Why: a slot is cheap while empty (address space, not memory), but every live instance holds
/// at least its linear memory (a C or Rust guest: 1–2 MiB; a Python one: ~30 MiB) and a 2 MiB
/// async stack. 32 MiB per slot lets a 1 GiB board run 32 guests at once — more than its memory
/// could back for typical guests — while a 64-bit server keeps wasmtime's default of 1000.
/// Each linear-memory slot reserves 4 GiB + guard of *address space*; 1000 slots stay far below
/// the 128 TiB of x86-64 and the 256 TiB of 48-bit arm64 (a 39-bit arm64 kernel, 512 GiB, is
/// served by the lower count of a small board or by the fallback to on-demand allocation).
pub fn derive_max_instances(mem_total: Option<u64>) -> u32 {
    const PER_SLOT: u64 = 32 << 20;
    match mem_total {
        Some(bytes) => (bytes / PER_SLOT).clamp(16, 1000) as u32,
        None => 100,
    }
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_size_follows_memory_within_bounds() {
        assert_eq!(derive_max_instances(Some(256 << 20)), 16);
        assert_eq!(derive_max_instances(Some(1 << 30)), 32);
        assert_eq!(derive_max_instances(Some(8 << 30)), 256);
        assert_eq!(derive_max_instances(Some(64 << 30)), 1000);
        assert_eq!(derive_max_instances(None), 100);
    }

    #[test]
    fn configured_size_wins() {
        let mut c = WasmConfig::new("/tmp/x");
        c.max_instances = Some(7);
        assert_eq!(c.resolved_max_instances(), 7);
    }
}
