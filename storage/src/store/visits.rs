//! Visits recorded by authorities (table `visits`, migration 0007), and the patient's
//! account their consent is looked up by.
//!
//! Visit numbers are taken inside the writing transaction under the database's write
//! lock (PostgreSQL: a table lock held to commit; SQLite: its one writer), like the
//! access log's, so two servers on one database never give two visits one number.

use super::{Store, column, now_micros};
use crate::error::Error;

/// A visit to record: who, for whom, what kind of encounter, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVisit {
    /// The patient's subject id.
    pub patient: String,
    /// The authority's organisation (from the registry).
    pub organisation: String,
    /// The subject id of the certificate that recorded it.
    pub subject: String,
    /// The organisation's kind (`laboratory`, `insurer`, `pharmacy`, `hospital`).
    pub kind: String,
    /// The v3 ActCode encounter class (`AMB`, `VR`, …).
    pub class: String,
    /// Start, µs since the epoch.
    pub started_at: i64,
    /// End, µs since the epoch, if over.
    pub ended_at: Option<i64>,
    /// Why, in the authority's words (free text; never shown to another patient).
    pub reason: Option<String>,
}

/// A recorded visit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VisitRecord {
    /// Its number, from 1 (FHIR `Encounter/visit-<n>`).
    pub visit: i64,
    /// The patient's subject id.
    pub patient: String,
    /// The authority's organisation.
    pub organisation: String,
    /// The subject id of the certificate that recorded it.
    pub subject: String,
    /// The organisation's kind.
    pub kind: String,
    /// The v3 ActCode encounter class.
    pub class: String,
    /// Start, µs since the epoch.
    pub started_at: i64,
    /// End, µs since the epoch, if over.
    pub ended_at: Option<i64>,
    /// Why.
    pub reason: Option<String>,
    /// When storage recorded it, µs since the epoch.
    pub recorded_at: i64,
}

const COLUMNS: &str = "visit, patient, organisation, subject, kind, class, started_at, \
                       ended_at, reason, recorded_at";

fn record(row: &sqlx::any::AnyRow) -> Result<VisitRecord, Error> {
    Ok(VisitRecord {
        visit: column(row, 0)?,
        patient: column(row, 1)?,
        organisation: column(row, 2)?,
        subject: column(row, 3)?,
        kind: column(row, 4)?,
        class: column(row, 5)?,
        started_at: column(row, 6)?,
        ended_at: column(row, 7)?,
        reason: column(row, 8)?,
        recorded_at: column(row, 9)?,
    })
}

impl Store {
    /// Records a visit and returns it with its number.
    pub async fn record_visit(&self, visit: &NewVisit) -> Result<VisitRecord, Error> {
        let (mut transaction, number) = self.begin_numbered("visits", "visit").await?;
        let stored = VisitRecord {
            visit: number,
            patient: visit.patient.clone(),
            organisation: visit.organisation.clone(),
            subject: visit.subject.clone(),
            kind: visit.kind.clone(),
            class: visit.class.clone(),
            started_at: visit.started_at,
            ended_at: visit.ended_at,
            reason: visit.reason.clone(),
            recorded_at: now_micros(),
        };
        sqlx::query(&format!(
            "INSERT INTO visits ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(stored.visit)
        .bind(stored.patient.clone())
        .bind(stored.organisation.clone())
        .bind(stored.subject.clone())
        .bind(stored.kind.clone())
        .bind(stored.class.clone())
        .bind(stored.started_at)
        .bind(stored.ended_at)
        .bind(stored.reason.clone())
        .bind(stored.recorded_at)
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("record the visit", error))?;
        transaction
            .commit()
            .await
            .map_err(|error| Error::database("commit the visit", error))?;
        Ok(stored)
    }

    /// A patient's visits, oldest first.
    pub async fn visits(&self, patient: &str) -> Result<Vec<VisitRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM visits WHERE patient = $1 ORDER BY started_at, visit"
        ))
        .bind(patient)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the visits", error))?;
        rows.iter().map(record).collect()
    }

    /// Visit number `visit`, if recorded.
    pub async fn visit(&self, visit: i64) -> Result<Option<VisitRecord>, Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM visits WHERE visit = $1"))
            .bind(visit)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("read the visit", error))?;
        row.as_ref().map(record).transpose()
    }

    /// The account the patient grants consent from, as recorded at their latest
    /// admission (a discharged patient keeps it: an authority may still need their
    /// records), if one was given.
    pub async fn patient_account(&self, patient: &str) -> Result<Option<[u8; 20]>, Error> {
        let row = sqlx::query("SELECT account FROM admissions WHERE patient = $1")
            .bind(patient)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("read the patient's account", error))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account: Option<Vec<u8>> = column(&row, 0)?;
        account
            .map(|bytes| {
                <[u8; 20]>::try_from(bytes.as_slice())
                    .map_err(|_| Error::corrupt_row(format!("an account of {} bytes", bytes.len())))
            })
            .transpose()
    }
}
