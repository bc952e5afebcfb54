//! The batch log: every stored batch's header hash, numbered in the order stored, with
//! its Merkle roots anchored on chain (log id [`batch_log_id`]).
//!
//! A reading's proof ([`crate::proof`]) carries the anchor covering its batch and the
//! inclusion of the batch's header hash under the anchored root: whoever holds the proof
//! and can read the chain sees that the batch was stored by the block of the anchor, and
//! that storage cannot later swap it for another without the anchored root disagreeing.
//! Leaves are RFC 9162 leaf hashes of the 32 header-hash bytes.

use wardseal_core::hash::Hash;
use wardseal_core::merkle;

use crate::api::Storage;
pub use crate::chain::batch_log_id;
use crate::error::Error;
use crate::metrics::AnchoredLog;
use crate::store::BatchAnchor;

/// The most batch-log entries one anchor covers (the rest wait for the next anchor), so
/// one anchoring reads a bounded part of the log.
pub const MAX_ANCHOR_ENTRIES: usize = 100_000;

/// The Merkle leaf of a batch in the batch log: SHA-256(0x00 ‖ header hash).
pub fn leaf(header_hash: &Hash) -> Hash {
    merkle::leaf_hash(header_hash.as_bytes())
}

/// Anchors the batch-log entries not yet anchored (at most [`MAX_ANCHOR_ENTRIES`]);
/// returns the recorded anchor, or `None` when there was nothing new.
///
/// When the same root is already on chain with the same log id and count (this server
/// anchored it, then stopped before recording it), the chain's record is recorded
/// instead of anchoring twice.
pub async fn anchor(storage: &Storage) -> Result<Option<BatchAnchor>, Error> {
    let _anchoring = storage.chain.anchoring().await;
    let first = storage.store.first_unanchored_batch().await?;
    let entries = storage.store.batch_log(first, MAX_ANCHOR_ENTRIES).await?;
    let (Some(first_entry), Some(last_entry)) = (entries.first(), entries.last()) else {
        return Ok(None);
    };
    let leaves = entries
        .iter()
        .map(|entry| leaf(&entry.header_hash))
        .collect::<Vec<_>>();
    let root = merkle::root(&leaves);
    let count = u64::try_from(leaves.len()).unwrap_or(u64::MAX);
    let log_id = batch_log_id();
    let (block, tx_hash) = match storage.chain.anchor_record(*root.as_bytes()).await? {
        Some(record) if record.anchor.log_id == log_id && record.anchor.count == count => {
            (record.block, None)
        }
        _ => {
            let outcome = storage
                .chain
                .anchor_log(
                    log_id,
                    *root.as_bytes(),
                    count,
                    first_entry.stored_at,
                    last_entry.stored_at,
                )
                .await?;
            storage.metrics.anchored(AnchoredLog::Batch);
            (outcome.block, Some(outcome.tx_hash.0))
        }
    };
    let anchor = BatchAnchor {
        first_entry: first_entry.entry,
        last_entry: last_entry.entry,
        root,
        first_time: first_entry.stored_at,
        last_time: last_entry.stored_at,
        block,
        tx_hash,
    };
    storage.store.record_batch_anchor(&anchor).await?;
    Ok(Some(anchor))
}
