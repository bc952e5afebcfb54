//! The quarantine: batches storage refused for good, kept whole in the spool, so that a
//! patient's later batches keep flowing and nothing acknowledged to a device is lost.
//!
//! When storage answers a batch with a refusal marked `"permanent": true` (a device
//! deactivated between the 202 and delivery, a rule tightened, a patient certificate
//! revoked, a device assigned only after its readings were measured, …), the forwarder
//! moves the batch from `batches` into `quarantine` in one transaction: the submission
//! exactly as sealed, its readings (which keep their rows, still pointing at the batch),
//! storage's status, code and message, and when. Then it declares the gap to storage: a
//! [`GapRecord`](wardseal_core::gap::GapRecord) naming the withheld header, signed by
//! the patient's card present now (the card that signed the batch may be the revoked
//! one). Storage moves the patient's chain tip past the withheld batch and the next batch
//! continues. With no card present, the declaration waits in the spool, as readings do.
//!
//! An administrator works on the spool file with the daemon running (SQLite WAL; each
//! change is one short transaction) through `wardseal-collector quarantine`:
//! [`QuarantineAdmin::list`], [`QuarantineAdmin::show`], [`QuarantineAdmin::resubmit`]
//! (after a fix: the forwarder sends the batch again; storage accepts it in the gap it
//! declared) and [`QuarantineAdmin::resolve`] (the data stays, with who and why). Every
//! action, the forwarder's too, is a row in `quarantine_log` and a log line. Nothing is
//! ever deleted from the quarantine: a resubmitted batch's readings leave the spool only
//! with storage's receipt, like any delivered batch's, and its row stays as the record.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use wardseal_core::hash::Hash;
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::Timestamp;

use crate::error::SpoolError;
use crate::spool::{Spool, from_sql_u64};

/// The quarantine's tables; created with the spool's.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS quarantine (
    -- The batch's row id in `batches`; its readings keep `readings.batch = id`.
    id INTEGER PRIMARY KEY,
    patient TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    header_hash BLOB NOT NULL,
    previous BLOB NOT NULL,
    submission TEXT NOT NULL,
    readings INTEGER NOT NULL,
    status INTEGER NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    quarantined_us INTEGER NOT NULL,
    -- 'pending' until storage recorded the gap record, then 'declared'.
    gap TEXT NOT NULL DEFAULT 'pending',
    -- 'quarantined', 'resubmit' (the forwarder sends it again), 'delivered', 'resolved'.
    state TEXT NOT NULL DEFAULT 'quarantined',
    resolved_by TEXT,
    resolution TEXT,
    updated_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_gaps ON quarantine (patient, gap, sequence);
CREATE TABLE IF NOT EXISTS quarantine_log (
    id INTEGER PRIMARY KEY,
    quarantine INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    time_us INTEGER NOT NULL
);
";

/// Storage's refusal of a batch, as the forwarder received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageRefusal {
    /// The HTTP status.
    pub status: u16,
    /// Storage's machine code.
    pub code: String,
    /// Storage's sentence.
    pub message: String,
}

/// A quarantined batch as listed (without its submission).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedBatch {
    /// Its id (the batch's spool row id).
    pub id: i64,
    /// The patient.
    pub patient: String,
    /// Its place in the patient's chain.
    pub sequence: u64,
    /// Its header hash.
    pub header_hash: Hash,
    /// The previous header's hash it names.
    pub previous: Hash,
    /// How many readings it holds.
    pub readings: u64,
    /// Storage's refusal.
    pub refusal: StorageRefusal,
    /// When it was quarantined (µs since the epoch).
    pub quarantined_us: i64,
    /// `pending` until storage recorded the gap, then `declared`.
    pub gap: String,
    /// `quarantined`, `resubmit`, `delivered` or `resolved`.
    pub state: String,
    /// Who resolved it, if resolved.
    pub resolved_by: Option<String>,
    /// Why, if resolved.
    pub resolution: Option<String>,
}

/// One action on a quarantined batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineAction {
    /// What was done.
    pub action: String,
    /// By whom (`forwarder` for the daemon).
    pub actor: String,
    /// Details.
    pub detail: String,
    /// When (µs since the epoch).
    pub time_us: i64,
}

/// A quarantined batch in full: what [`QuarantineAdmin::show`] prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineDetail {
    /// The batch.
    pub batch: QuarantinedBatch,
    /// The submission exactly as sealed (JSON: header, signature, certificate, readings).
    pub submission: serde_json::Value,
    /// Every action on it, oldest first.
    pub log: Vec<QuarantineAction>,
}

/// A batch the forwarder sends again or declares a gap for.
#[derive(Debug, Clone)]
pub(crate) struct Withheld {
    pub(crate) id: i64,
    pub(crate) patient: SubjectId,
    pub(crate) sequence: u64,
    pub(crate) header_hash: Hash,
    pub(crate) previous: Hash,
    pub(crate) code: String,
    pub(crate) submission: String,
}

fn log_action(
    connection: &Connection,
    id: i64,
    action: &str,
    actor: &str,
    detail: &str,
) -> Result<(), SpoolError> {
    connection.execute(
        "INSERT INTO quarantine_log (quarantine, action, actor, detail, time_us) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, action, actor, detail, Timestamp::now().unix_micros()],
    )?;
    Ok(())
}

fn hash_column(id: i64, bytes: &[u8]) -> Result<Hash, SpoolError> {
    Hash::from_slice(bytes).map_err(|_| SpoolError::Corrupt {
        row: id,
        reason: "a quarantined batch's hash is not 32 bytes".into(),
    })
}

const COLUMNS: &str = "id, patient, sequence, header_hash, previous, readings, status, code, message, \
                       quarantined_us, gap, state, resolved_by, resolution";

fn quarantined_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(QuarantinedBatch, Vec<u8>, Vec<u8>)> {
    let id: i64 = row.get(0)?;
    Ok((
        QuarantinedBatch {
            id,
            patient: row.get(1)?,
            sequence: from_sql_u64(row.get(2)?),
            header_hash: Hash::ZERO,
            previous: Hash::ZERO,
            readings: from_sql_u64(row.get(5)?),
            refusal: StorageRefusal {
                status: row.get(6)?,
                code: row.get(7)?,
                message: row.get(8)?,
            },
            quarantined_us: row.get(9)?,
            gap: row.get(10)?,
            state: row.get(11)?,
            resolved_by: row.get(12)?,
            resolution: row.get(13)?,
        },
        row.get(3)?,
        row.get(4)?,
    ))
}

fn finish_row(
    (mut batch, header_hash, previous): (QuarantinedBatch, Vec<u8>, Vec<u8>),
) -> Result<QuarantinedBatch, SpoolError> {
    batch.header_hash = hash_column(batch.id, &header_hash)?;
    batch.previous = hash_column(batch.id, &previous)?;
    Ok(batch)
}

fn withheld_rows(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> Result<Vec<Withheld>, SpoolError> {
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(parameters, |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, Vec<u8>>(3)?,
            row.get::<_, Vec<u8>>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, patient, sequence, header_hash, previous, code, submission) = row?;
        out.push(Withheld {
            id,
            patient: SubjectId::new(patient).map_err(|error| SpoolError::Corrupt {
                row: id,
                reason: format!("a quarantined batch names no valid patient: {error}"),
            })?,
            sequence: from_sql_u64(sequence),
            header_hash: hash_column(id, &header_hash)?,
            previous: hash_column(id, &previous)?,
            code,
            submission,
        });
    }
    Ok(out)
}

const WITHHELD: &str =
    "SELECT id, patient, sequence, header_hash, previous, code, submission FROM quarantine";

/// The forwarder's side of the quarantine; each runs on the spool's writer connection.
impl Spool {
    /// Moves sealed batch `id` (header `header_hash`, naming `previous`) into the
    /// quarantine with storage's `refusal`, in one transaction; its readings stay.
    /// `now_us` is the time recorded; `alert`, the batch-quarantined alert (naming the
    /// same time), goes into the alert outbox in the same transaction, so a crash cannot
    /// keep the one without the other.
    pub(crate) async fn quarantine_batch(
        &self,
        id: i64,
        header_hash: Hash,
        previous: Hash,
        refusal: StorageRefusal,
        now_us: i64,
        alert: crate::spool::QueuedAlert,
    ) -> Result<(), SpoolError> {
        self.run(move |connection| {
            let transaction = connection.transaction()?;
            let now = now_us;
            transaction.execute(
                "INSERT OR IGNORE INTO alert_outbox (id, alert, raised_us) VALUES (?1, ?2, ?3)",
                params![alert.id.as_bytes(), alert.alert, now],
            )?;
            let moved = transaction.execute(
                "INSERT INTO quarantine (id, patient, sequence, header_hash, previous, submission, readings,
                     status, code, message, quarantined_us, updated_us)
                 SELECT b.id, b.patient, b.sequence, ?2, ?3, b.submission,
                     (SELECT COUNT(*) FROM readings r WHERE r.batch = b.id), ?4, ?5, ?6, ?7, ?7
                 FROM batches b WHERE b.id = ?1",
                params![
                    id,
                    header_hash.as_bytes(),
                    previous.as_bytes(),
                    refusal.status,
                    refusal.code,
                    refusal.message,
                    now
                ],
            )?;
            if moved == 0 {
                return Err(SpoolError::Corrupt {
                    row: id,
                    reason: "the batch to quarantine is not in the spool".into(),
                });
            }
            transaction.execute("DELETE FROM batches WHERE id = ?1", [id])?;
            log_action(
                &transaction,
                id,
                "quarantined",
                "forwarder",
                &format!("storage refused it for good: HTTP {} {}: {}", refusal.status, refusal.code, refusal.message),
            )?;
            transaction.commit().map_err(SpoolError::from_sqlite)?;
            Ok(())
        })
        .await
    }

    /// `patient`'s quarantined batches whose gap storage has not recorded, in chain order.
    pub(crate) async fn undeclared_gaps(
        &self,
        patient: &SubjectId,
    ) -> Result<Vec<Withheld>, SpoolError> {
        let patient = patient.as_str().to_owned();
        self.run(move |connection| {
            withheld_rows(
                connection,
                &format!("{WITHHELD} WHERE patient = ?1 AND gap = 'pending' ORDER BY sequence"),
                [patient],
            )
        })
        .await
    }

    /// Patients with a gap to declare.
    pub(crate) async fn patients_with_undeclared_gaps(&self) -> Result<Vec<SubjectId>, SpoolError> {
        self.run(|connection| {
            let mut statement = connection
                .prepare_cached("SELECT DISTINCT patient FROM quarantine WHERE gap = 'pending'")?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                if let Ok(patient) = SubjectId::new(row?) {
                    out.push(patient);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Storage recorded the gap of quarantined batch `id`.
    pub(crate) async fn gap_declared(&self, id: i64) -> Result<(), SpoolError> {
        self.run(move |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "UPDATE quarantine SET gap = 'declared', updated_us = ?2 WHERE id = ?1",
                params![id, Timestamp::now().unix_micros()],
            )?;
            log_action(
                &transaction,
                id,
                "gap_declared",
                "forwarder",
                "storage recorded the card-signed gap record",
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }

    /// Quarantined batches an administrator asked to send again, whose gap is declared.
    pub(crate) async fn resubmissions(&self) -> Result<Vec<Withheld>, SpoolError> {
        self.run(|connection| {
            withheld_rows(
                connection,
                &format!("{WITHHELD} WHERE state = 'resubmit' AND gap = 'declared' ORDER BY id"),
                [],
            )
        })
        .await
    }

    /// Storage accepted resubmitted batch `id`: its readings leave the spool, its row
    /// stays as the record. Returns how many readings left.
    pub(crate) async fn resubmission_delivered(&self, id: i64) -> Result<u64, SpoolError> {
        let removed = self
            .run(move |connection| {
                let transaction = connection.transaction()?;
                let removed = transaction.execute("DELETE FROM readings WHERE batch = ?1", [id])?;
                transaction.execute(
                    "UPDATE quarantine SET state = 'delivered', updated_us = ?2 WHERE id = ?1",
                    params![id, Timestamp::now().unix_micros()],
                )?;
                log_action(
                    &transaction,
                    id,
                    "delivered",
                    "forwarder",
                    "storage accepted the resubmitted batch and filled its gap",
                )?;
                transaction.commit()?;
                Ok(removed)
            })
            .await?;
        let removed = u64::try_from(removed).unwrap_or(0);
        self.delivered(removed);
        Ok(removed)
    }

    /// Quarantined batches delivered or resolved whose technical alert is not resolved
    /// yet: (id, patient, header hash, when quarantined µs).
    pub(crate) async fn quarantine_alerts_to_resolve(
        &self,
    ) -> Result<Vec<(i64, SubjectId, Hash, i64)>, SpoolError> {
        self.run(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT q.id, q.patient, q.header_hash, q.quarantined_us FROM quarantine q
                 WHERE q.state IN ('delivered', 'resolved') AND NOT EXISTS
                     (SELECT 1 FROM quarantine_log l WHERE l.quarantine = q.id AND l.action = 'alert_resolved')
                 ORDER BY q.id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, patient, header_hash, quarantined) = row?;
                let patient = SubjectId::new(patient).map_err(|error| SpoolError::Corrupt {
                    row: id,
                    reason: format!("a quarantined batch names no valid patient: {error}"),
                })?;
                out.push((id, patient, hash_column(id, &header_hash)?, quarantined));
            }
            Ok(out)
        })
        .await
    }

    /// The technical alert of quarantined batch `id` is resolved (queued for storage).
    pub(crate) async fn quarantine_alert_resolved(&self, id: i64) -> Result<(), SpoolError> {
        self.run(move |connection| {
            log_action(
                connection,
                id,
                "alert_resolved",
                "forwarder",
                "the batch-quarantined alert is resolved",
            )
        })
        .await
    }

    /// Storage refused resubmitted batch `id` for good again.
    pub(crate) async fn resubmission_refused(
        &self,
        id: i64,
        refusal: StorageRefusal,
    ) -> Result<(), SpoolError> {
        self.run(move |connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "UPDATE quarantine SET state = 'quarantined', status = ?2, code = ?3, message = ?4, updated_us = ?5 WHERE id = ?1",
                params![id, refusal.status, refusal.code, refusal.message, Timestamp::now().unix_micros()],
            )?;
            log_action(
                &transaction,
                id,
                "resubmission_refused",
                "forwarder",
                &format!("HTTP {} {}: {}", refusal.status, refusal.code, refusal.message),
            )?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }
}

/// Why an administrator's quarantine command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuarantineError {
    /// The spool could not be read or written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// No quarantined batch has this id.
    #[error("no quarantined batch {0}; `wardseal-collector quarantine list` shows them")]
    NotFound(i64),
    /// The batch is not in a state the action applies to.
    #[error("quarantined batch {id} is {state}; {hint}")]
    WrongState {
        /// The batch.
        id: i64,
        /// Its state.
        state: String,
        /// What to do instead.
        hint: &'static str,
    },
}

/// The administrator's view of a spool's quarantine, on its own connection to the spool
/// file (the daemon may be running: SQLite WAL, short transactions, a busy timeout).
#[derive(Debug)]
pub struct QuarantineAdmin {
    connection: Connection,
}

impl QuarantineAdmin {
    /// Opens the spool file at `path` (it must exist).
    pub fn open(path: &Path) -> Result<Self, QuarantineError> {
        let connection = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(SpoolError::from)?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(SpoolError::from)?;
        connection
            .execute_batch(SCHEMA)
            .map_err(SpoolError::from_sqlite)?;
        Ok(Self { connection })
    }

    /// Every quarantined batch, oldest first.
    pub fn list(&self) -> Result<Vec<QuarantinedBatch>, QuarantineError> {
        let mut statement = self
            .connection
            .prepare(&format!("SELECT {COLUMNS} FROM quarantine ORDER BY id"))
            .map_err(SpoolError::from)?;
        let rows = statement
            .query_map([], quarantined_row)
            .map_err(SpoolError::from)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(finish_row(row.map_err(SpoolError::from)?)?);
        }
        Ok(out)
    }

    /// One quarantined batch with its submission and its action log.
    pub fn show(&self, id: i64) -> Result<QuarantineDetail, QuarantineError> {
        let batch = self.batch(id)?;
        let submission: String = self
            .connection
            .query_row(
                "SELECT submission FROM quarantine WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .map_err(SpoolError::from)?;
        let submission =
            serde_json::from_str(&submission).map_err(|error| SpoolError::Corrupt {
                row: id,
                reason: format!("the quarantined submission does not parse: {error}"),
            })?;
        let mut statement = self
            .connection
            .prepare("SELECT action, actor, detail, time_us FROM quarantine_log WHERE quarantine = ?1 ORDER BY id")
            .map_err(SpoolError::from)?;
        let rows = statement
            .query_map([id], |row| {
                Ok(QuarantineAction {
                    action: row.get(0)?,
                    actor: row.get(1)?,
                    detail: row.get(2)?,
                    time_us: row.get(3)?,
                })
            })
            .map_err(SpoolError::from)?;
        let mut log = Vec::new();
        for row in rows {
            log.push(row.map_err(SpoolError::from)?);
        }
        Ok(QuarantineDetail {
            batch,
            submission,
            log,
        })
    }

    /// Marks batch `id` for the daemon's forwarder to send again (after a fix); `actor`
    /// is who asked.
    pub fn resubmit(&mut self, id: i64, actor: &str) -> Result<(), QuarantineError> {
        let batch = self.batch(id)?;
        if batch.state != "quarantined" {
            return Err(QuarantineError::WrongState {
                id,
                state: batch.state,
                hint: "only a quarantined batch can be resubmitted",
            });
        }
        self.change(
            id,
            "resubmit",
            actor,
            "resubmit",
            "the forwarder sends it again once its gap is declared",
            None,
        )?;
        tracing::warn!(
            id,
            patient = batch.patient,
            sequence = batch.sequence,
            actor,
            "quarantined batch marked for resubmission"
        );
        Ok(())
    }

    /// Resolves batch `id` without delivering it: the data stays in the spool, with who
    /// resolved it and why.
    pub fn resolve(&mut self, id: i64, actor: &str, reason: &str) -> Result<(), QuarantineError> {
        let batch = self.batch(id)?;
        if batch.state == "delivered" || batch.state == "resolved" {
            return Err(QuarantineError::WrongState {
                id,
                state: batch.state,
                hint: "it needs no resolution",
            });
        }
        self.change(id, "resolved", actor, "resolve", reason, Some(reason))?;
        tracing::warn!(
            id,
            patient = batch.patient,
            sequence = batch.sequence,
            actor,
            reason,
            "quarantined batch resolved"
        );
        Ok(())
    }

    fn change(
        &mut self,
        id: i64,
        state: &str,
        actor: &str,
        action: &str,
        detail: &str,
        resolution: Option<&str>,
    ) -> Result<(), QuarantineError> {
        let transaction = self.connection.transaction().map_err(SpoolError::from)?;
        let resolved_by = resolution.map(|_| actor);
        transaction
            .execute(
                "UPDATE quarantine SET state = ?2, resolved_by = COALESCE(?3, resolved_by),
                     resolution = COALESCE(?4, resolution), updated_us = ?5 WHERE id = ?1",
                params![
                    id,
                    state,
                    resolved_by,
                    resolution,
                    Timestamp::now().unix_micros()
                ],
            )
            .map_err(SpoolError::from)?;
        log_action(&transaction, id, action, actor, detail)?;
        transaction.commit().map_err(SpoolError::from_sqlite)?;
        Ok(())
    }

    fn batch(&self, id: i64) -> Result<QuarantinedBatch, QuarantineError> {
        let row = self
            .connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM quarantine WHERE id = ?1"),
                [id],
                quarantined_row,
            )
            .optional()
            .map_err(SpoolError::from)?
            .ok_or(QuarantineError::NotFound(id))?;
        Ok(finish_row(row)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_applies_twice() {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        connection.execute_batch(SCHEMA).unwrap();
    }
}
