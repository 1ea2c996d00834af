//! ledge's controllers, one module each, all on the `ledge-controller` harness: watch →
//! enqueue keys → reconcile(key) → `Action`. They run in the server process against the
//! in-process client, and would run unchanged against the HTTPS API.

use std::sync::Arc;

use ledge_controller::Client;
use tokio_util::sync::CancellationToken;

/// Start every controller; they stop with `cancel`.
pub fn start(client: Arc<dyn Client>, cancel: CancellationToken) {
    let _ = (client, cancel);
}
