//! The runtimes this agent offers, by RuntimeClass handler. The `process` runtime lives here;
//! `wasm` is in `ledge-wasm` (the one crate that builds wasmtime) and is handed in by
//! `ledge-app`.

pub mod cgroup;
pub mod process;

use std::collections::BTreeMap;
use std::sync::Arc;

use ledge_runtime::Runtime;

/// Runtimes by handler name.
#[derive(Clone, Default)]
pub struct Runtimes {
    by_name: BTreeMap<&'static str, Arc<dyn Runtime>>,
}

impl Runtimes {
    /// The runtimes built into the agent (`process`).
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.add(Arc::new(process::ProcessRuntime));
        r
    }

    /// Offer one more runtime.
    pub fn add(&mut self, runtime: Arc<dyn Runtime>) {
        self.by_name.insert(runtime.name(), runtime);
    }

    /// The runtime serving `handler`.
    pub fn get(&self, handler: &str) -> Option<&Arc<dyn Runtime>> {
        self.by_name.get(handler)
    }

    /// Every handler, for the node's `node.ledge.dev/runtime.<name>` labels.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}
