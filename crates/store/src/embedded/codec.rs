//! The on-disk layout of the embedded store: its two redb tables and the encoding of one key's
//! row. Nothing here does IO; the writer and the read path use these definitions.
//!
//! A row is `[format: u8][create_revision: i64 BE][mod_revision: i64 BE][value bytes]`. The
//! format byte lets a later layout coexist with this one; an unknown format, a short row or
//! impossible revisions decode to [`CorruptRow`] instead of a panic.

use bytes::Bytes;
use redb::TableDefinition;

use crate::{KeyValue, Revision};

/// Every live key and its row.
pub(super) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");

/// Store-wide values; today only [`REVISION_KEY`].
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// The meta entry holding the revision of the newest write (absent means 0).
pub(super) const REVISION_KEY: &str = "revision";

const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 8;

/// A stored row that cannot be decoded; surfaced as [`crate::StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("corrupt row for key {key}: {reason}")]
pub(super) struct CorruptRow {
    key: String,
    reason: &'static str,
}

/// Encode a key's revisions and value into one row.
pub(super) fn encode_row(
    create_revision: Revision,
    mod_revision: Revision,
    value: &[u8],
) -> Vec<u8> {
    let mut row = Vec::with_capacity(HEADER_LEN + value.len());
    row.push(FORMAT_V1);
    row.extend_from_slice(&create_revision.to_be_bytes());
    row.extend_from_slice(&mod_revision.to_be_bytes());
    row.extend_from_slice(value);
    row
}

/// Decode the row stored under `key`.
pub(super) fn decode_row(key: &str, row: &[u8]) -> Result<KeyValue, CorruptRow> {
    let corrupt = |reason| CorruptRow {
        key: key.to_owned(),
        reason,
    };
    let (format, rest) = row.split_first().ok_or_else(|| corrupt("empty row"))?;
    if *format != FORMAT_V1 {
        return Err(corrupt("unknown row format"));
    }
    let short = || corrupt("row shorter than its header");
    let (create, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    let (modified, value) = rest.split_first_chunk::<8>().ok_or_else(short)?;
    let create_revision = Revision::from_be_bytes(*create);
    let mod_revision = Revision::from_be_bytes(*modified);
    if create_revision < 1 || mod_revision < create_revision {
        return Err(corrupt("impossible revisions"));
    }
    Ok(KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision,
        mod_revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_revisions_and_value() {
        let row = encode_row(3, 7, b"{\"a\":1}");
        let kv = decode_row("/k", &row).expect("valid row");
        assert_eq!(kv.key, "/k");
        assert_eq!(kv.create_revision, 3);
        assert_eq!(kv.mod_revision, 7);
        assert_eq!(&kv.value[..], b"{\"a\":1}");
    }

    #[test]
    fn empty_value_round_trips() {
        let kv = decode_row("/k", &encode_row(1, 1, b"")).expect("valid row");
        assert!(kv.value.is_empty());
    }

    #[test]
    fn short_row_is_corrupt_not_a_panic() {
        for len in 0..HEADER_LEN {
            let row = &encode_row(1, 1, b"")[..len];
            assert!(decode_row("/k", row).is_err(), "length {len} accepted");
        }
    }

    #[test]
    fn unknown_format_is_corrupt() {
        let mut row = encode_row(1, 1, b"v");
        row[0] = 9;
        let err = decode_row("/k", &row).expect_err("format 9 accepted");
        assert!(err.to_string().contains("unknown row format"), "{err}");
    }

    #[test]
    fn impossible_revisions_are_corrupt() {
        assert!(decode_row("/k", &encode_row(0, 0, b"")).is_err());
        assert!(decode_row("/k", &encode_row(5, 4, b"")).is_err());
        assert!(decode_row("/k", &encode_row(-1, 2, b"")).is_err());
    }
}
