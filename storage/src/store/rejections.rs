//! Refused batches: what and why, never their readings.

use wardseal_core::hash::Hash;

use super::{Store, column, now_micros};
use crate::error::Error;

impl Store {
    /// Records a refused batch (what and why, not its readings).
    pub async fn record_rejection(
        &self,
        collector: &str,
        patient: Option<&str>,
        sequence: Option<u64>,
        header_hash: Option<&Hash>,
        code: &str,
        message: &str,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO rejections (received_at, collector, patient, sequence, header_hash, code, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now_micros())
        .bind(collector)
        .bind(patient.map(str::to_owned))
        .bind(sequence.map(|sequence| i64::try_from(sequence).unwrap_or(i64::MAX)))
        .bind(header_hash.map(|hash| hash.as_bytes().to_vec()))
        .bind(code)
        .bind(message)
        .execute(&self.pool)
        .await
        .map_err(|error| Error::database("record the rejection", error))?;
        Ok(())
    }

    /// Rejections, newest first: (received_at, collector, patient, code, message).
    pub async fn rejections(&self) -> Result<Vec<Rejection>, Error> {
        let rows = sqlx::query(
            "SELECT received_at, collector, patient, code, message FROM rejections ORDER BY received_at DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("list rejections", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok(Rejection {
                    received_at: column(&row, 0)?,
                    collector: column(&row, 1)?,
                    patient: column(&row, 2)?,
                    code: column(&row, 3)?,
                    message: column(&row, 4)?,
                })
            })
            .collect()
    }
}

/// A refused batch as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// When, µs since the epoch.
    pub received_at: i64,
    /// The delivering collector (ward).
    pub collector: String,
    /// The header's patient, when the header was readable.
    pub patient: Option<String>,
    /// The refusal code.
    pub code: String,
    /// The refusal sentence.
    pub message: String,
}
