//! The collector's decision log: every ingest decision (accepted or refused, with the
//! reason, the device and the time) is a leaf; every interval the Merkle root of the
//! leaves not yet anchored goes on chain through [`Ledger::anchor`], so each rule check is
//! provable without one transaction per reading (the seed paper's design).
//!
//! A leaf is `SHA-256(0x00 ‖ record)` (RFC 9162), where the record is the fixed binary
//! form written by [`DecisionRecord::to_bytes`].

use alloy::primitives::B256;
use wardseal_contracts::{Anchor, AnyBackend, Ledger};
use wardseal_core::epc::Sgtin96;
use wardseal_core::hash::Hash;
use wardseal_core::merkle::{MerkleTree, leaf_hash};
use wardseal_core::reading::Timestamp;

use crate::error::{Error, SpoolError};
use crate::spool::Spool;

/// The version byte of [`DecisionRecord::to_bytes`].
pub const DECISION_RECORD_VERSION: u8 = 1;

/// One ingest decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// When the collector decided.
    pub time: Timestamp,
    /// SHA-256 of the client certificate (DER) that sent the reading.
    pub subject: Hash,
    /// The device's EPC, when the certificate names one.
    pub device: Option<Sgtin96>,
    /// The reading's sequence number, when it parsed.
    pub sequence: Option<u64>,
    /// `accepted` or the refusal's machine code.
    pub outcome: &'static str,
    /// The accepted reading's leaf hash.
    pub reading: Option<Hash>,
}

impl DecisionRecord {
    /// The record's bytes: version, time (i64 BE µs), subject (32), device (flag + 12),
    /// sequence (flag + u64 BE), outcome (length byte + ASCII), reading leaf (flag + 32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(128);
        bytes.push(DECISION_RECORD_VERSION);
        bytes.extend_from_slice(&self.time.unix_micros().to_be_bytes());
        bytes.extend_from_slice(self.subject.as_bytes());
        match &self.device {
            Some(device) => {
                bytes.push(1);
                bytes.extend_from_slice(&device.to_bytes());
            }
            None => bytes.push(0),
        }
        match self.sequence {
            Some(sequence) => {
                bytes.push(1);
                bytes.extend_from_slice(&sequence.to_be_bytes());
            }
            None => bytes.push(0),
        }
        let outcome = self.outcome.as_bytes();
        bytes.push(u8::try_from(outcome.len()).unwrap_or(u8::MAX));
        bytes.extend_from_slice(&outcome[..outcome.len().min(255)]);
        match &self.reading {
            Some(leaf) => {
                bytes.push(1);
                bytes.extend_from_slice(leaf.as_bytes());
            }
            None => bytes.push(0),
        }
        bytes
    }

    /// The record's leaf hash in the decision log.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.to_bytes())
    }
}

/// The log id of a collector's decision log on chain: SHA-256 of
/// `"wardseal decision log " ‖ collector subject id`.
pub fn log_id(collector: &str) -> B256 {
    let mut text = b"wardseal decision log ".to_vec();
    text.extend_from_slice(collector.as_bytes());
    B256::from(*Hash::sha256(&text).as_bytes())
}

/// What one anchoring round put on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorRound {
    /// The anchored root and its range.
    pub anchor: Anchor,
    /// The block it went into.
    pub block: u64,
}

/// Anchors up to `limit` unanchored decisions (oldest first) in one transaction.
/// Returns `None` when there was nothing to anchor.
pub async fn anchor_once(
    spool: &Spool,
    ledger: &Ledger<AnyBackend>,
    log: B256,
    limit: usize,
) -> Result<Option<AnchorRound>, Error> {
    let rows = spool.unanchored_decisions(limit).await?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let (first_id, last_id) = (first.id, last.id);
    let mut tree = MerkleTree::new();
    for row in &rows {
        tree.push(row.leaf);
    }
    let micros = |t: i64| u64::try_from(t).unwrap_or(0);
    let anchor = Anchor {
        log_id: log,
        root: B256::from(*tree.root().as_bytes()),
        count: tree.len(),
        first_time: rows.iter().map(|r| micros(r.time_us)).min().unwrap_or(0),
        last_time: rows.iter().map(|r| micros(r.time_us)).max().unwrap_or(0),
    };
    let outcome = ledger.anchor(&anchor).await?;
    spool.mark_anchored(first_id, last_id).await?;
    Ok(Some(AnchorRound {
        anchor,
        block: outcome.block,
    }))
}

/// Microseconds since the oldest decision still waiting to be anchored (0 when none).
pub async fn anchor_lag_micros(spool: &Spool) -> Result<i64, SpoolError> {
    let oldest = spool.oldest_unanchored_micros().await?;
    Ok(oldest.map_or(0, |oldest| {
        Timestamp::now().unix_micros().saturating_sub(oldest)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_differ_by_every_field() {
        let base = DecisionRecord {
            time: Timestamp::from_unix_micros(1).unwrap(),
            subject: Hash::ZERO,
            device: None,
            sequence: Some(1),
            outcome: "accepted",
            reading: None,
        };
        let variants = [
            DecisionRecord {
                time: Timestamp::from_unix_micros(2).unwrap(),
                ..base.clone()
            },
            DecisionRecord {
                sequence: Some(2),
                ..base.clone()
            },
            DecisionRecord {
                sequence: None,
                ..base.clone()
            },
            DecisionRecord {
                outcome: "replay",
                ..base.clone()
            },
            DecisionRecord {
                reading: Some(Hash::ZERO),
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.leaf_hash(), base.leaf_hash(), "{variant:?}");
        }
    }
}
