//! The checks a fault suite ends with, read from where the data really is:
//!
//! - **delivery**: storage's database (SQLite file or PostgreSQL, read with sqlx as
//!   storage reads it) holds every acknowledged reading exactly once, and no reading that
//!   was not sent ([`stored_leaf_counts`], [`check_delivery`]);
//! - **anchoring**: every leaf of a log (the collector's decision log in its spool,
//!   storage's access log in its database) is covered by an anchor on chain whose root is
//!   the RFC 9162 Merkle root of a contiguous run of that log's leaves ([`coverage`]);
//! - **the batch log**: every stored batch is numbered once, 1 to n without a gap, in
//!   storage's batch log, and every anchor storage recorded for it (`batch_anchors`) is
//!   the root of the entries it claims ([`batch_log`]); its leaves are then checked
//!   against the chain like the other logs.
//!
//! An anchor may cover leaves an earlier anchor already covered: a process killed between
//! its anchoring transaction and recording that it anchored anchors the same leaves again
//! (with more) after its restart. That is allowed; a leaf covered by nothing, or an anchor
//! that matches no run of leaves, is not.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::Row as _;
use wardseal_contracts::{Anchor, AnyBackend, Backend as _, Ledger};
use wardseal_core::Hash;
use wardseal_core::merkle;

use crate::load::Tally;

/// What a check found, or why it could not look.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage's database could not be read.
    #[error("cannot {what} in storage's database: {source}")]
    Database {
        /// What was being read.
        what: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The collector's spool could not be read.
    #[error("cannot read the decision log in the spool {path}: {source}")]
    Spool {
        /// The spool file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored hash is not 32 bytes.
    #[error("{what} holds a hash that is not 32 bytes")]
    Corrupt {
        /// Where.
        what: &'static str,
    },
    /// The chain could not be read.
    #[error("cannot read the anchors on chain: {0}")]
    Ledger(String),
    /// Acknowledged readings are missing from storage.
    #[error("{count} acknowledged readings are not stored (first: {first})")]
    NotStored {
        /// How many.
        count: usize,
        /// The first one's leaf hash.
        first: Hash,
    },
    /// Readings are stored more than once.
    #[error("{count} readings are stored more than once (first: {first}, {times} times)")]
    Duplicated {
        /// How many distinct readings.
        count: usize,
        /// One of them.
        first: Hash,
        /// How often that one is stored.
        times: u64,
    },
    /// Storage holds readings nobody sent.
    #[error("{count} stored readings were never sent (first: {first})")]
    NotSent {
        /// How many.
        count: usize,
        /// The first one's leaf hash.
        first: Hash,
    },
    /// The collector acknowledged readings that were not sent (the suite computes the
    /// leaves differently from the collector, or the collector answered wrongly).
    #[error("{count} acknowledged leaves were not among the leaves sent (first: {first})")]
    AcknowledgedNotSent {
        /// How many.
        count: usize,
        /// The first one.
        first: Hash,
    },
    /// An anchor's root is not the root of any run of the log's leaves where a run can
    /// start.
    #[error(
        "the anchor of {count} leaves with root {root} (anchor {index} of {log}) is the root \
         of no run of the log's leaves"
    )]
    UnmatchedAnchor {
        /// Which log.
        log: String,
        /// Its position among the log's anchors on chain.
        index: usize,
        /// Its leaf count.
        count: u64,
        /// Its root (hex).
        root: String,
    },
    /// The batch log does not number every stored batch exactly once, 1 to n.
    #[error("the batch log does not number the stored batches once each from 1: {0}")]
    BatchLog(String),
    /// An anchor storage recorded for the batch log is not the root of its entries, or is
    /// not on chain.
    #[error("storage's batch anchor of entries {first}..={last} {problem} (root {root})")]
    BatchAnchor {
        /// Its first entry.
        first: i64,
        /// Its last entry.
        last: i64,
        /// What is wrong.
        problem: &'static str,
        /// The recorded root (hex).
        root: String,
    },
    /// Leaves of a log are covered by no anchor.
    #[error(
        "{uncovered} of the {total} leaves of {log} are covered by no anchor on chain (first: leaf {first})"
    )]
    Unanchored {
        /// Which log.
        log: String,
        /// How many leaves are not covered.
        uncovered: usize,
        /// How many leaves the log has.
        total: usize,
        /// The first uncovered leaf's position.
        first: usize,
    },
}

/// How many times each leaf hash is stored in storage's `readings` table.
pub async fn stored_leaf_counts(database_url: &str) -> Result<HashMap<Hash, u64>, Error> {
    let rows = query(
        database_url,
        "SELECT leaf_hash, COUNT(*) FROM readings GROUP BY leaf_hash",
        "count readings by leaf hash",
    )
    .await?;
    let mut counts = HashMap::with_capacity(rows.len());
    for row in rows {
        let leaf: Vec<u8> = row
            .try_get(0)
            .map_err(database_failed("read a leaf hash"))?;
        let count: i64 = row.try_get(1).map_err(database_failed("read a count"))?;
        let leaf = Hash::from_slice(&leaf).map_err(|_| Error::Corrupt {
            what: "readings.leaf_hash",
        })?;
        counts.insert(leaf, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}

/// How many readings storage holds per patient.
pub async fn stored_per_patient(database_url: &str) -> Result<HashMap<String, u64>, Error> {
    let rows = query(
        database_url,
        "SELECT patient, COUNT(*) FROM readings GROUP BY patient",
        "count readings by patient",
    )
    .await?;
    let mut counts = HashMap::with_capacity(rows.len());
    for row in rows {
        let patient: String = row.try_get(0).map_err(database_failed("read a patient"))?;
        let count: i64 = row.try_get(1).map_err(database_failed("read a count"))?;
        counts.insert(patient, u64::try_from(count).unwrap_or(0));
    }
    Ok(counts)
}

/// Storage's access-log leaves, in entry order.
pub async fn access_log_leaves(database_url: &str) -> Result<Vec<Hash>, Error> {
    let rows = query(
        database_url,
        "SELECT leaf_hash FROM access_log ORDER BY entry",
        "read the access log",
    )
    .await?;
    rows.iter()
        .map(|row| {
            let leaf: Vec<u8> = row
                .try_get(0)
                .map_err(database_failed("read an access-log leaf"))?;
            Hash::from_slice(&leaf).map_err(|_| Error::Corrupt {
                what: "access_log.leaf_hash",
            })
        })
        .collect()
}

/// Storage's batch log, checked against its `batches` table and its own anchor records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLog {
    /// The log's leaves (RFC 9162 leaves of the header hashes), in entry order.
    pub leaves: Vec<Hash>,
    /// The anchors storage recorded (`batch_anchors`): entries `first..=last` and root.
    pub recorded: Vec<(i64, i64, Hash)>,
}

/// Reads storage's batch log and checks it: every row of `batches` has exactly one
/// entry, the entries are numbered 1 to n, and every anchor recorded in
/// `batch_anchors` is the Merkle root of the entries it names. Whether those roots are
/// on chain is [`check_batch_anchors_on_chain`]'s and [`coverage`]'s business.
pub async fn batch_log(database_url: &str) -> Result<BatchLog, Error> {
    let stored = query(
        database_url,
        "SELECT header_hash FROM batches",
        "read the stored batches",
    )
    .await?;
    let entries = query(
        database_url,
        "SELECT entry, header_hash FROM batch_log ORDER BY entry",
        "read the batch log",
    )
    .await?;
    let anchors = query(
        database_url,
        "SELECT first_entry, last_entry, root FROM batch_anchors ORDER BY first_entry",
        "read the batch anchors",
    )
    .await?;
    let hash = |row: &sqlx::any::AnyRow, index: usize, what: &'static str| {
        let bytes: Vec<u8> = row.try_get(index).map_err(database_failed("read a hash"))?;
        Hash::from_slice(&bytes).map_err(|_| Error::Corrupt { what })
    };
    let number = |row: &sqlx::any::AnyRow, index: usize| {
        row.try_get::<i64, _>(index)
            .map_err(database_failed("read an entry number"))
    };
    let mut batches = std::collections::HashSet::with_capacity(stored.len());
    for row in &stored {
        batches.insert(hash(row, 0, "batches.header_hash")?);
    }
    let mut header_hashes = Vec::with_capacity(entries.len());
    for (position, row) in entries.iter().enumerate() {
        let entry = number(row, 0)?;
        if usize::try_from(entry).ok() != Some(position + 1) {
            return Err(Error::BatchLog(format!(
                "entry {entry} is in position {}",
                position + 1
            )));
        }
        let header = hash(row, 1, "batch_log.header_hash")?;
        if !batches.contains(&header) {
            return Err(Error::BatchLog(format!(
                "entry {entry} names batch {header}, which is not stored"
            )));
        }
        header_hashes.push(header);
    }
    if header_hashes.len() != batches.len() {
        return Err(Error::BatchLog(format!(
            "{} batches are stored but the log has {} entries",
            batches.len(),
            header_hashes.len()
        )));
    }
    let leaves: Vec<Hash> = header_hashes
        .iter()
        .map(|header| merkle::leaf_hash(header.as_bytes()))
        .collect();
    let mut recorded = Vec::with_capacity(anchors.len());
    for row in &anchors {
        let (first, last) = (number(row, 0)?, number(row, 1)?);
        let root = hash(row, 2, "batch_anchors.root")?;
        let run = usize::try_from(first)
            .ok()
            .zip(usize::try_from(last).ok())
            .and_then(|(first, last)| leaves.get(first.checked_sub(1)?..last));
        if !run.is_some_and(|run| !run.is_empty() && merkle::root(run) == root) {
            return Err(Error::BatchAnchor {
                first,
                last,
                problem: "is not the Merkle root of those entries",
                root: hex::encode(root.as_bytes()),
            });
        }
        recorded.push((first, last, root));
    }
    Ok(BatchLog { leaves, recorded })
}

/// Checks that every anchor storage recorded for its batch log is on chain (`anchors`:
/// the batch log's anchors on chain) with the same root and count.
pub fn check_batch_anchors_on_chain(log: &BatchLog, anchors: &[Anchor]) -> Result<(), Error> {
    for (first, last, root) in &log.recorded {
        let count = u64::try_from(last - first + 1).unwrap_or(0);
        if !anchors
            .iter()
            .any(|anchor| &anchor.root.0 == root.as_bytes() && anchor.count == count)
        {
            return Err(Error::BatchAnchor {
                first: *first,
                last: *last,
                problem: "is not on chain",
                root: hex::encode(root.as_bytes()),
            });
        }
    }
    Ok(())
}

/// Wraps a driver error with what was being read.
fn database_failed(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database { what, source }
}

async fn query(
    database_url: &str,
    sql: &'static str,
    what: &'static str,
) -> Result<Vec<sqlx::any::AnyRow>, Error> {
    sqlx::any::install_default_drivers();
    // Read-only for SQLite: the file belongs to the storage process.
    let url = match database_url.strip_prefix("sqlite://") {
        Some(path) => format!("sqlite://{path}?mode=ro"),
        None => database_url.to_owned(),
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .map_err(database_failed("connect"))?;
    let rows = sqlx::query(sql)
        .fetch_all(&pool)
        .await
        .map_err(database_failed(what));
    pool.close().await;
    rows
}

/// The collector's decision log from its spool: each decision's leaf, and whether the
/// collector recorded it as anchored, in decision order. Reads while the collector runs
/// (the spool is in WAL mode).
pub fn decision_log(spool: &Path) -> Result<Vec<(Hash, bool)>, Error> {
    let fail = |source| Error::Spool {
        path: spool.to_owned(),
        source,
    };
    let connection =
        rusqlite::Connection::open_with_flags(spool, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(fail)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(fail)?;
    let mut statement = connection
        .prepare("SELECT leaf, anchored FROM decisions ORDER BY id")
        .map_err(fail)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)? != 0))
        })
        .map_err(fail)?;
    let mut out = Vec::new();
    for row in rows {
        let (leaf, anchored) = row.map_err(fail)?;
        let leaf = Hash::from_slice(&leaf).map_err(|_| Error::Corrupt {
            what: "the spool's decisions.leaf",
        })?;
        out.push((leaf, anchored));
    }
    Ok(out)
}

/// The anchors of log `log_id` on chain, oldest first.
pub async fn chain_anchors(
    ledger: &Ledger<AnyBackend>,
    log_id: [u8; 32],
) -> Result<Vec<Anchor>, Error> {
    let head = ledger
        .backend()
        .head()
        .await
        .map_err(|e| Error::Ledger(e.to_string()))?;
    let records = ledger
        .anchors(0, head)
        .await
        .map_err(|e| Error::Ledger(e.to_string()))?;
    Ok(records
        .into_iter()
        .map(|record| record.anchor)
        .filter(|anchor| anchor.log_id.0 == log_id)
        .collect())
}

/// How a log's leaves are covered by its anchors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// The log's leaves.
    pub leaves: usize,
    /// Its anchors on chain.
    pub anchors: usize,
    /// Anchors that covered leaves an earlier anchor had covered (a re-anchoring after
    /// a crash between the transaction and its record).
    pub overlapping: usize,
}

/// Checks that `anchors` (in chain order) cover every one of `leaves` (in log order):
/// each anchor's root is the Merkle root of a run of `count` leaves starting where a
/// run can start (the log's beginning, or the start or end of an earlier anchor's run),
/// and together the runs cover all leaves. `log` names the log in errors.
pub fn coverage(log: &str, leaves: &[Hash], anchors: &[Anchor]) -> Result<Coverage, Error> {
    let mut starts = vec![0usize];
    let mut covered = vec![false; leaves.len()];
    let mut overlapping = 0;
    for (index, anchor) in anchors.iter().enumerate() {
        let count = usize::try_from(anchor.count).unwrap_or(usize::MAX);
        // Latest boundaries first: anchors normally continue where the last one ended.
        let found = starts.iter().rev().copied().find(|&start| {
            start
                .checked_add(count)
                .and_then(|end| leaves.get(start..end))
                .is_some_and(|run| merkle::root(run).as_bytes() == &anchor.root.0)
        });
        let Some(start) = found else {
            return Err(Error::UnmatchedAnchor {
                log: log.to_owned(),
                index,
                count: anchor.count,
                root: hex::encode(anchor.root.0),
            });
        };
        let end = start + count;
        if covered[start..end].iter().any(|&c| c) {
            overlapping += 1;
        }
        covered[start..end].iter_mut().for_each(|c| *c = true);
        for boundary in [start, end] {
            if !starts.contains(&boundary) {
                starts.push(boundary);
            }
        }
    }
    let uncovered: Vec<usize> = covered
        .iter()
        .enumerate()
        .filter(|(_, c)| !**c)
        .map(|(i, _)| i)
        .collect();
    if let Some(&first) = uncovered.first() {
        return Err(Error::Unanchored {
            log: log.to_owned(),
            uncovered: uncovered.len(),
            total: leaves.len(),
            first,
        });
    }
    Ok(Coverage {
        leaves: leaves.len(),
        anchors: anchors.len(),
        overlapping,
    })
}

/// What [`check_delivery`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Readings acknowledged (each stored exactly once).
    pub acknowledged: usize,
    /// Readings stored.
    pub stored: usize,
    /// Readings stored that were sent but never acknowledged (their answer was lost).
    pub stored_unacknowledged: usize,
}

/// Checks the load's `tally` against storage's `stored` leaf counts: every acknowledged
/// reading stored exactly once, nothing stored twice, nothing stored that was not sent.
pub fn check_delivery(tally: &Tally, stored: &HashMap<Hash, u64>) -> Result<Delivery, Error> {
    let not_sent: Vec<&Hash> = tally
        .acknowledged
        .iter()
        .filter(|leaf| !tally.sent.contains(leaf))
        .collect();
    if let Some(first) = not_sent.first() {
        return Err(Error::AcknowledgedNotSent {
            count: not_sent.len(),
            first: **first,
        });
    }
    let missing: Vec<&Hash> = tally
        .acknowledged
        .iter()
        .filter(|leaf| !stored.contains_key(leaf))
        .collect();
    if let Some(first) = missing.first() {
        return Err(Error::NotStored {
            count: missing.len(),
            first: **first,
        });
    }
    let duplicated: Vec<(&Hash, &u64)> = stored.iter().filter(|(_, n)| **n != 1).collect();
    if let Some((first, times)) = duplicated.first() {
        return Err(Error::Duplicated {
            count: duplicated.len(),
            first: **first,
            times: **times,
        });
    }
    let strangers: Vec<&Hash> = stored
        .keys()
        .filter(|leaf| !tally.sent.contains(leaf))
        .collect();
    if let Some(first) = strangers.first() {
        return Err(Error::NotSent {
            count: strangers.len(),
            first: **first,
        });
    }
    let acknowledged: std::collections::HashSet<&Hash> = tally.acknowledged.iter().collect();
    Ok(Delivery {
        acknowledged: acknowledged.len(),
        stored: stored.len(),
        stored_unacknowledged: stored.keys().filter(|l| !acknowledged.contains(l)).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardseal_core::merkle::leaf_hash;

    fn anchor(leaves: &[Hash]) -> Anchor {
        let root = merkle::root(leaves);
        Anchor {
            log_id: Default::default(),
            root: (*root.as_bytes()).into(),
            count: leaves.len() as u64,
            first_time: 0,
            last_time: 0,
        }
    }

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i])).collect()
    }

    #[test]
    fn consecutive_anchors_cover_the_log() {
        let log = leaves(10);
        let anchors = [anchor(&log[..4]), anchor(&log[4..9]), anchor(&log[9..])];
        let found = coverage("log", &log, &anchors).unwrap();
        assert_eq!((found.anchors, found.overlapping), (3, 0));
    }

    #[test]
    fn a_reanchoring_after_a_crash_overlaps_and_still_covers() {
        let log = leaves(10);
        // Anchored 0..4, crashed before recording it, anchored 0..7 again, then 7..10.
        let anchors = [anchor(&log[..4]), anchor(&log[..7]), anchor(&log[7..])];
        assert_eq!(coverage("log", &log, &anchors).unwrap().overlapping, 1);
    }

    #[test]
    fn an_unanchored_tail_is_found() {
        let log = leaves(10);
        let error = coverage("log", &log, &[anchor(&log[..6])]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Unanchored {
                    uncovered: 4,
                    first: 6,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn an_anchor_of_other_leaves_is_found() {
        let log = leaves(10);
        let other = leaves(20);
        let error =
            coverage("log", &log, &[anchor(&log[..5]), anchor(&other[12..15])]).unwrap_err();
        assert!(
            matches!(error, Error::UnmatchedAnchor { index: 1, .. }),
            "{error}"
        );
        // A run that starts mid-way (not at a boundary) does not count either.
        let error = coverage("log", &log, &[anchor(&log[2..5])]).unwrap_err();
        assert!(
            matches!(error, Error::UnmatchedAnchor { index: 0, .. }),
            "{error}"
        );
    }

    #[test]
    fn delivery_finds_missing_duplicated_and_foreign_readings() {
        let sent = leaves(6);
        let tally = Tally {
            sent: sent.iter().copied().collect(),
            acknowledged: sent[..4].to_vec(),
            ..Tally::default()
        };
        let mut stored: HashMap<Hash, u64> = sent[..5].iter().map(|l| (*l, 1)).collect();
        let found = check_delivery(&tally, &stored).unwrap();
        assert_eq!(
            (
                found.acknowledged,
                found.stored,
                found.stored_unacknowledged
            ),
            (4, 5, 1)
        );
        stored.insert(sent[1], 2);
        assert!(matches!(
            check_delivery(&tally, &stored),
            Err(Error::Duplicated { count: 1, .. })
        ));
        stored.insert(sent[1], 1);
        stored.remove(&sent[3]);
        assert!(matches!(
            check_delivery(&tally, &stored),
            Err(Error::NotStored { count: 1, .. })
        ));
        stored.insert(sent[3], 1);
        stored.insert(leaf_hash(b"forged"), 1);
        assert!(matches!(
            check_delivery(&tally, &stored),
            Err(Error::NotSent { count: 1, .. })
        ));
    }
}
