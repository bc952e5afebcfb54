//! The batch log: stored batches' header hashes in commit order, and its anchors.

use wardseal_core::hash::Hash;

use super::{Store, column, now_micros, stored_hash, unsigned};
use crate::error::Error;

/// One batch-log entry: a stored batch's header hash and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLogEntry {
    /// Its number (from 1, in the order batches were stored).
    pub entry: i64,
    /// The batch's header hash.
    pub header_hash: Hash,
    /// When the batch was stored, µs since the epoch.
    pub stored_at: i64,
}

/// An anchor of the batch log, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAnchor {
    /// The first entry it covers.
    pub first_entry: i64,
    /// The last entry it covers.
    pub last_entry: i64,
    /// The RFC 9162 root over the entries' header hashes.
    pub root: Hash,
    /// When the first covered batch was stored, µs since the epoch.
    pub first_time: i64,
    /// When the last covered batch was stored, µs since the epoch.
    pub last_time: i64,
    /// The block the anchor is in.
    pub block: u64,
    /// The anchoring transaction, when this server sent it (unknown when the anchor was
    /// found on chain after a crash between sending and recording).
    pub tx_hash: Option<[u8; 32]>,
}

impl Store {
    /// Batch-log entries from `first` on, at most `limit`, in order.
    pub async fn batch_log(&self, first: i64, limit: usize) -> Result<Vec<BatchLogEntry>, Error> {
        let rows = sqlx::query(
            "SELECT entry, header_hash, stored_at FROM batch_log WHERE entry >= $1 \
             ORDER BY entry LIMIT $2",
        )
        .bind(first)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch log", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok(BatchLogEntry {
                    entry: column(&row, 0)?,
                    header_hash: stored_hash(&column::<Vec<u8>>(&row, 1)?)?,
                    stored_at: column(&row, 2)?,
                })
            })
            .collect()
    }

    /// The batch-log entry of a stored batch.
    pub async fn batch_log_entry(&self, header_hash: &[u8]) -> Result<Option<i64>, Error> {
        sqlx::query_scalar("SELECT entry FROM batch_log WHERE header_hash = $1")
            .bind(header_hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("find the batch-log entry", error))
    }

    /// The first batch-log entry not yet covered by an anchor.
    pub async fn first_unanchored_batch(&self) -> Result<i64, Error> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_entry) FROM batch_anchors")
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("read the batch anchors", error))?;
        Ok(last.unwrap_or(0) + 1)
    }

    /// Records an anchor of the batch log. Fails when an anchor already covers its first
    /// entry (another anchoring got there first).
    pub async fn record_batch_anchor(&self, anchor: &BatchAnchor) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO batch_anchors (first_entry, last_entry, root, first_time, last_time, \
             block, tx_hash, anchored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(anchor.first_entry)
        .bind(anchor.last_entry)
        .bind(anchor.root.as_bytes().to_vec())
        .bind(anchor.first_time)
        .bind(anchor.last_time)
        .bind(i64::try_from(anchor.block).unwrap_or(i64::MAX))
        .bind(anchor.tx_hash.map(|hash| hash.to_vec()))
        .bind(now_micros())
        .execute(&self.pool)
        .await
        .map_err(|error| Error::database("record the batch anchor", error))?;
        Ok(())
    }

    /// The anchor covering batch-log entry `entry`, if anchored.
    pub async fn batch_anchor_covering(&self, entry: i64) -> Result<Option<BatchAnchor>, Error> {
        let row = sqlx::query(
            "SELECT first_entry, last_entry, root, first_time, last_time, block, tx_hash \
             FROM batch_anchors WHERE first_entry <= $1 AND last_entry >= $1",
        )
        .bind(entry)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch anchor", error))?;
        row.map(|row| -> Result<_, Error> {
            let tx_hash: Option<Vec<u8>> = column(&row, 6)?;
            Ok(BatchAnchor {
                first_entry: column(&row, 0)?,
                last_entry: column(&row, 1)?,
                root: stored_hash(&column::<Vec<u8>>(&row, 2)?)?,
                first_time: column(&row, 3)?,
                last_time: column(&row, 4)?,
                block: unsigned(column(&row, 5)?)?,
                tx_hash: tx_hash
                    .map(|bytes| {
                        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                            Error::corrupt_row(format!(
                                "a transaction hash of {} bytes",
                                bytes.len()
                            ))
                        })
                    })
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// The header hashes of batch-log entries `first..=last`, in order.
    pub async fn batch_log_hashes(&self, first: i64, last: i64) -> Result<Vec<Hash>, Error> {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT header_hash FROM batch_log WHERE entry >= $1 AND entry <= $2 ORDER BY entry",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch log", error))?;
        hashes.iter().map(|hash| stored_hash(hash)).collect()
    }
}
