//! The audit log: every CA operation, who did it and when, in a hash chain.
//!
//! Each entry's hash covers the previous entry's hash and the entry's own fields, so
//! editing a row changes its hash and deleting or inserting one breaks the next link;
//! [`verify`] finds both. Removing entries from the end leaves a shorter valid chain: the
//! head hash [`verify`] returns is what to record elsewhere (the on-chain audit anchor) to
//! catch that too. Entries are appended in the same transaction as the operation they
//! record, so there is never an operation without its entry.

use std::fmt;

use sha2::{Digest, Sha256};
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::{AuditError, Error};
use crate::inventory::{Inventory, WriteTransaction, format_time};

/// The previous-hash of the first entry.
const GENESIS: [u8; 32] = [0; 32];

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Position in the log.
    pub id: i64,
    /// When (Unix seconds, UTC).
    pub at: i64,
    /// Who (the operating-system user unless given).
    pub actor: String,
    /// What ("init", "issue", "revoke", "crl", "renew", "batch").
    pub operation: String,
    /// Details as JSON (serials, identities, reasons).
    pub detail: String,
    /// The previous entry's hash (hex).
    pub previous_hash: String,
    /// This entry's hash (hex).
    pub hash: String,
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's hash (hex): record it elsewhere to detect truncation.
    pub head: String,
}

/// `audit log intact: N entries, head HASH`.
impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit log intact: {} entries, head {}",
            self.entries, self.head
        )
    }
}

/// The audit log as text: one line an entry (id, time, actor, operation, detail).
#[derive(Debug, Clone, Copy)]
pub struct AuditLog<'a>(pub &'a [AuditEntry]);

impl fmt::Display for AuditLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in self.0 {
            let at = OffsetDateTime::from_unix_timestamp(entry.at)
                .map(format_time)
                .unwrap_or_default();
            writeln!(
                f,
                "{:>6} {at} {:<10} {:<8} {}",
                entry.id, entry.actor, entry.operation, entry.detail
            )?;
        }
        Ok(())
    }
}

fn entry_hash(
    previous: &[u8],
    id: i64,
    at: i64,
    actor: &str,
    operation: &str,
    detail: &str,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(id.to_be_bytes());
    hasher.update(at.to_be_bytes());
    for field in [actor, operation, detail] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// Appends entries inside `transaction` (which holds the write lock, so the chain's head
/// cannot move under it).
pub(crate) async fn append_many(
    inventory: &Inventory,
    transaction: &mut WriteTransaction,
    actor: &str,
    entries: impl IntoIterator<Item = (&str, serde_json::Value)>,
) -> Result<(), Error> {
    let read = |error| inventory.error("read the audit log", error);
    let last = sqlx::query("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut **transaction)
        .await
        .map_err(read)?;
    let (mut id, mut previous_hash) = match last {
        Some(row) => (
            row.try_get::<i64, _>("id").map_err(read)?,
            row.try_get::<Vec<u8>, _>("hash").map_err(read)?,
        ),
        None => (0, GENESIS.to_vec()),
    };
    let at = OffsetDateTime::now_utc().unix_timestamp();
    for (operation, detail) in entries {
        // Ids are consecutive from 1; a row deleted from the end is then re-used by the
        // next entry with a different previous hash, which `verify` does not notice, so
        // the head hash must be anchored elsewhere (see the module docs).
        id += 1;
        let detail = detail.to_string();
        let hash = entry_hash(&previous_hash, id, at, actor, operation, &detail);
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, operation, detail, previous_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(at)
        .bind(actor)
        .bind(operation)
        .bind(detail)
        .bind(&previous_hash)
        .bind(hash.to_vec())
        .execute(&mut **transaction)
        .await
        .map_err(|error| inventory.error("append to the audit log", error))?;
        previous_hash = hash.to_vec();
    }
    Ok(())
}

/// Appends one entry inside `transaction`.
pub(crate) async fn append(
    inventory: &Inventory,
    transaction: &mut WriteTransaction,
    actor: &str,
    operation: &str,
    detail: &serde_json::Value,
) -> Result<(), Error> {
    append_many(inventory, transaction, actor, [(operation, detail.clone())]).await
}

/// All entries, oldest first.
pub async fn entries(inventory: &Inventory) -> Result<Vec<AuditEntry>, Error> {
    let rows = sqlx::query("SELECT * FROM audit_log ORDER BY id")
        .fetch_all(inventory.pool())
        .await
        .map_err(|error| inventory.error("read the audit log", error))?;
    rows.iter()
        .map(|row| {
            let get = |error| inventory.error("decode the audit log", error);
            Ok(AuditEntry {
                id: row.try_get("id").map_err(get)?,
                at: row.try_get("at").map_err(get)?,
                actor: row.try_get("actor").map_err(get)?,
                operation: row.try_get("operation").map_err(get)?,
                detail: row.try_get("detail").map_err(get)?,
                previous_hash: hex::encode(
                    row.try_get::<Vec<u8>, _>("previous_hash").map_err(get)?,
                ),
                hash: hex::encode(row.try_get::<Vec<u8>, _>("hash").map_err(get)?),
            })
        })
        .collect()
}

/// Checks every entry's hash and every link, and that ids have no gaps.
pub async fn verify(inventory: &Inventory) -> Result<AuditReport, Error> {
    let mut previous = hex::encode(GENESIS);
    let mut expected_id = 1;
    let mut count = 0;
    for entry in entries(inventory).await? {
        if entry.previous_hash != previous || entry.id != expected_id {
            return Err(AuditError::Broken { id: entry.id }.into());
        }
        let previous_bytes = hex::decode(&entry.previous_hash).unwrap_or_default();
        let hash = entry_hash(
            &previous_bytes,
            entry.id,
            entry.at,
            &entry.actor,
            &entry.operation,
            &entry.detail,
        );
        if hex::encode(hash) != entry.hash {
            return Err(AuditError::Altered { id: entry.id }.into());
        }
        previous = entry.hash;
        expected_id = entry.id + 1;
        count += 1;
    }
    Ok(AuditReport {
        entries: count,
        head: previous,
    })
}
