//! The access log: every decision on a read of patient data, numbered in commit order,
//! and the anchors of its Merkle roots.

use wardseal_core::hash::Hash;

use super::{Store, column, now_micros};
use crate::error::Error;

/// One access-log entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessEntry {
    /// Its number (from 1).
    pub entry: i64,
    /// When, µs since the epoch.
    pub at: i64,
    /// Who (subject id of the certificate).
    pub who: String,
    /// Their role.
    pub role: String,
    /// Which patient.
    pub patient: String,
    /// What was asked.
    pub what: String,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Why ("assigned", "consent", or the refusal).
    pub reason: String,
}

impl AccessEntry {
    /// The entry's Merkle leaf hash: SHA-256(0x00 ‖ JSON of the entry).
    pub fn leaf_hash(&self) -> Hash {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        wardseal_core::merkle::leaf_hash(&bytes)
    }
}

/// An entry from a row of (entry, at, who, role, patient, what, allowed, reason).
pub(super) fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<AccessEntry, Error> {
    Ok(AccessEntry {
        entry: column(row, 0)?,
        at: column(row, 1)?,
        who: column(row, 2)?,
        role: column(row, 3)?,
        patient: column(row, 4)?,
        what: column(row, 5)?,
        allowed: column::<i64>(row, 6)? != 0,
        reason: column(row, 7)?,
    })
}

impl Store {
    /// Appends an access-log entry and returns it. The entry is numbered inside a write
    /// transaction held until commit (PostgreSQL: a table lock; SQLite: its one writer),
    /// so numbers follow commit order even with several server processes on one database:
    /// an entry is never numbered below one an anchor already covers.
    pub async fn log_access(
        &self,
        who: &str,
        role: &str,
        patient: &str,
        what: &str,
        allowed: bool,
        reason: &str,
    ) -> Result<AccessEntry, Error> {
        // In this process, writers queue here rather than on the database lock.
        let _guard = self.access_lock.lock().await;
        let (mut transaction, number) = self.begin_numbered("access_log", "entry").await?;
        let entry = AccessEntry {
            entry: number,
            at: now_micros(),
            who: who.to_owned(),
            role: role.to_owned(),
            patient: patient.to_owned(),
            what: what.to_owned(),
            allowed,
            reason: reason.to_owned(),
        };
        sqlx::query(
            "INSERT INTO access_log (entry, at, who, role, patient, what, allowed, reason, leaf_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.entry)
        .bind(entry.at)
        .bind(entry.who.clone())
        .bind(entry.role.clone())
        .bind(entry.patient.clone())
        .bind(entry.what.clone())
        .bind(i64::from(entry.allowed))
        .bind(entry.reason.clone())
        .bind(entry.leaf_hash().as_bytes().to_vec())
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("write the access log", error))?;
        transaction
            .commit()
            .await
            .map_err(|error| Error::database("commit the access-log entry", error))?;
        Ok(entry)
    }

    /// Access-log entries about a patient, or all when `patient` is `None`, from `from`.
    pub async fn access_log(
        &self,
        patient: Option<&str>,
        from: i64,
    ) -> Result<Vec<AccessEntry>, Error> {
        let rows = sqlx::query(
            "SELECT entry, at, who, role, patient, what, allowed, reason FROM access_log \
             WHERE entry >= $1 AND ($2 = '' OR patient = $2) ORDER BY entry",
        )
        .bind(from)
        .bind(patient.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the access log", error))?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The first access-log entry not yet covered by an anchor.
    pub async fn first_unanchored(&self) -> Result<i64, Error> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_entry) FROM access_anchors")
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("read the anchors", error))?;
        Ok(last.unwrap_or(0) + 1)
    }

    /// Records that entries `first..=last` are anchored under `root`.
    pub async fn record_anchor(&self, first: i64, last: i64, root: &Hash) -> Result<(), Error> {
        sqlx::query("INSERT INTO access_anchors (first_entry, last_entry, root, anchored_at) VALUES ($1, $2, $3, $4)")
            .bind(first)
            .bind(last)
            .bind(root.as_bytes().to_vec())
            .bind(now_micros())
            .execute(&self.pool)
            .await
            .map_err(|error| Error::database("record the anchor", error))?;
        Ok(())
    }

    /// The anchors: (first entry, last entry, root).
    pub async fn anchors(&self) -> Result<Vec<(i64, i64, Vec<u8>)>, Error> {
        let rows = sqlx::query(
            "SELECT first_entry, last_entry, root FROM access_anchors ORDER BY first_entry",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the anchors", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok((column(&row, 0)?, column(&row, 1)?, column(&row, 2)?))
            })
            .collect()
    }
}
