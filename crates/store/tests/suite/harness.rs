//! What a backend provides to the shared cases, the macro that instantiates every case for one
//! backend, and small helpers the cases share.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt;
use ledge_store::{Event, Store, WatchStream};

/// A store backend under test, as the shared cases see it.
pub trait Backend: Sized {
    /// A fresh backend whose keys under [`Backend::prefix`] are empty.
    async fn start() -> anyhow::Result<Self>;

    /// A handle on the store; handles taken before a restart stop working after it.
    fn store(&self) -> Arc<dyn Store>;

    /// The prefix every key of a case lives under, so backends may share a server.
    fn prefix(&self) -> &str;

    /// Close the store and open the same data again, as after a process restart.
    async fn restart(&mut self) -> anyhow::Result<()>;
}

/// Declare one `#[tokio::test]` per shared case for `$backend`.
#[macro_export]
macro_rules! store_suite {
    ($backend:ty) => {
        $crate::store_suite!(@cases $backend;
            create_then_get_and_duplicate_create,
            update_is_compare_and_swap,
            delete_with_and_without_precondition,
            range_reads_prefix_in_key_order_at_one_revision,
            revisions_strictly_increase_and_survive_restart,
            watch_replays_exactly_the_events_after_its_start,
            watch_sees_puts_and_deletes_with_prev,
            watch_from_current_revision_sees_only_new_writes,
            watchers_agree_on_order_under_concurrent_writers,
            watch_before_compacted_revision_is_refused,
            concurrent_writers_are_all_acknowledged_with_distinct_revisions,
            concurrent_compare_and_swap_loses_no_increment,
        );
    };
    (@cases $backend:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> anyhow::Result<()> {
                let mut backend = <$backend as $crate::harness::Backend>::start().await?;
                $crate::cases::$case(&mut backend).await
            }
        )*
    };
}

/// How long a case waits for an event before failing instead of hanging; not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// The next event of `stream`, failing on an error item, the end of the stream, or a hang.
pub async fn next_event(stream: &mut WatchStream) -> anyhow::Result<Event> {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .context("no watch event arrived")?
        .ok_or_else(|| anyhow!("watch stream ended"))?
        .context("watch stream failed")
}

/// The next `n` events of `stream`.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await?);
    }
    Ok(events)
}
