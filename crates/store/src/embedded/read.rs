//! Point and prefix reads of the embedded store, each in one redb read transaction. These are
//! blocking calls; the store runs them on tokio's blocking pool, never on a runtime worker.

use redb::{Database, ReadableDatabase};

use super::backend;
use super::codec::{KV, META, REVISION_KEY, decode_row};
use crate::{KeyValue, RangeResult, Result};

/// Read one key as of the newest commit.
pub(super) fn get(db: &Database, key: &str) -> Result<Option<KeyValue>> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(KV).map_err(backend)?;
    let Some(row) = table.get(key).map_err(backend)? else {
        return Ok(None);
    };
    decode_row(key, row.value()).map(Some).map_err(backend)
}

/// Read every key under `prefix`, in key order, and the revision of the same snapshot.
pub(super) fn range(db: &Database, prefix: &str) -> Result<RangeResult> {
    let txn = db.begin_read().map_err(backend)?;
    let revision = txn
        .open_table(META)
        .map_err(backend)?
        .get(REVISION_KEY)
        .map_err(backend)?
        .map(|guard| guard.value())
        .unwrap_or(0);
    let table = txn.open_table(KV).map_err(backend)?;
    let mut kvs = Vec::new();
    for entry in table.range(prefix..).map_err(backend)? {
        let (key, row) = entry.map_err(backend)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        kvs.push(decode_row(key, row.value()).map_err(backend)?);
    }
    Ok(RangeResult { revision, kvs })
}
