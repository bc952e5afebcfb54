//! Declared gaps in a patient's chain (`POST /v1/batches/gaps`, collector role).
//!
//! When storage refuses a batch for good, the collector quarantines it and declares the
//! hole with a [`GapRecord`](wardseal_core::gap::GapRecord) signed by the patient's current card (see
//! [`wardseal_core::gap`] and `docs/delivery.md`). Storage checks the record like a
//! header — the delivering collector is the one it names, the patient certificate is
//! valid now and is this patient's, the card's signature verifies, and the record takes
//! exactly the next place in the chain it holds — then keeps it in `batch_gaps`. The
//! chain tip ([`Store::tip`]) is the greater of the last batch and the last gap, so the
//! batch after the withheld one (which names the withheld header as its previous)
//! continues.
//!
//! The withheld batch itself may arrive later, after a fix (a device reactivated, a rule
//! relaxed, an assignment entered): [`crate::ingest`] accepts a batch whose header hash
//! is an open gap with every check but chain continuity, and the gap is marked filled.

use sqlx::Row as _;
use wardseal_core::batch::BatchError;
use wardseal_core::exchange::{GapReceipt, GapSubmission};
use wardseal_core::hash::Hash;
use wardseal_core::signature::VerifyingKey;
use wardseal_net::peer::PeerIdentity;
use wardseal_net::server::ServerTls;

use crate::error::{Error, Refusal};
use crate::store::{Store, now_micros};

/// A recorded gap, as [`gaps`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordedGap {
    /// The withheld header's hash.
    pub withheld: Hash,
    /// Its sequence.
    pub sequence: u64,
    /// The collector that declared it.
    pub collector: String,
    /// Why it was withheld (storage's refusal code).
    pub reason: String,
    /// When storage recorded the declaration, µs since the epoch.
    pub received_at: i64,
    /// When the withheld batch was accepted after all, if it was.
    pub filled_at: Option<i64>,
}

/// Verifies and records a gap declaration delivered by `collector` (already checked to be
/// a collector). A repeated declaration of a recorded gap is acknowledged again.
pub async fn declare(
    store: &Store,
    tls: &ServerTls,
    collector: &PeerIdentity,
    body: &[u8],
) -> Result<GapReceipt, Error> {
    let submission: GapSubmission = serde_json::from_slice(body)
        .map_err(|error| Refusal::Malformed(format!("not a gap submission: {error}")))?;
    let gap = &submission.gap;
    let withheld = gap.withheld();
    if let Some(sequence) = recorded(store, &withheld).await? {
        return Ok(GapReceipt {
            withheld,
            sequence,
            newly_recorded: false,
        });
    }
    let ward = collector
        .identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .unwrap_or_default();
    if gap.collector().as_str() != ward {
        return Err(Refusal::CollectorMismatch {
            named: gap.collector().as_str().to_owned(),
            delivering: ward,
        }
        .into());
    }
    crate::ingest::verify_patient_certificate(tls, gap.patient(), &submission.patient_certificate)?;
    let key = VerifyingKey::from_certificate_der(&submission.patient_certificate)
        .map_err(|error| Refusal::PatientCertificateInvalid(error.to_string()))?;
    gap.verify_signature(&key, &submission.signature)
        .map_err(|error| Refusal::BadSignature(error.to_string()))?;
    let patient = gap.patient().as_str();
    let tip = store.tip(patient).await?;
    gap.check_continues(tip.as_ref())
        .map_err(|error| match error {
            BatchError::Gap { expected, got } => Refusal::ChainGap { expected, got },
            BatchError::Fork { sequence, .. } => Refusal::ChainFork { sequence },
            BatchError::Replay { sequence, tip } => Refusal::Replay { sequence, tip },
            other => Refusal::Malformed(other.to_string()),
        })?;
    let parts = gap.parts();
    let inserted = sqlx::query(
        "INSERT INTO batch_gaps (withheld_hash, patient, sequence, previous_hash, collector, \
         reason, declared_at, record, signature, patient_certificate, received_at, filled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL) ON CONFLICT DO NOTHING",
    )
    .bind(withheld.as_bytes().to_vec())
    .bind(patient)
    .bind(i64::try_from(parts.sequence).unwrap_or(i64::MAX))
    .bind(parts.previous.as_bytes().to_vec())
    .bind(gap.collector().as_str())
    .bind(parts.reason.as_str())
    .bind(parts.declared_at.unix_micros())
    .bind(gap.canonical_bytes())
    .bind(submission.signature.clone())
    .bind(submission.patient_certificate.clone())
    .bind(now_micros())
    .execute(store.pool())
    .await
    .map_err(|error| Error::database("record the gap", error))?;
    if inserted.rows_affected() == 0 {
        // Declared meanwhile by a concurrent delivery (acknowledge), or its place taken.
        return match recorded(store, &withheld).await? {
            Some(sequence) => Ok(GapReceipt {
                withheld,
                sequence,
                newly_recorded: false,
            }),
            None => Err(Refusal::Replay {
                sequence: parts.sequence,
                tip: parts.sequence,
            }
            .into()),
        };
    }
    Ok(GapReceipt {
        withheld,
        sequence: parts.sequence,
        newly_recorded: true,
    })
}

/// The sequence of the recorded gap for `withheld`, if there is one.
async fn recorded(store: &Store, withheld: &Hash) -> Result<Option<u64>, Error> {
    let row = sqlx::query("SELECT sequence FROM batch_gaps WHERE withheld_hash = $1")
        .bind(withheld.as_bytes().to_vec())
        .fetch_optional(store.pool())
        .await
        .map_err(|error| Error::database("look the gap up", error))?;
    row.map(|row| {
        let sequence: i64 = row
            .try_get(0)
            .map_err(|error| Error::database("look the gap up", error))?;
        u64::try_from(sequence).map_err(|_| {
            Error::database("look the gap up", format!("negative sequence {sequence}"))
        })
    })
    .transpose()
}

/// Whether `header_hash` names a recorded gap not yet filled: its batch may be stored
/// outside chain order.
pub async fn is_open(store: &Store, header_hash: &Hash) -> Result<bool, Error> {
    let row = sqlx::query(
        "SELECT 1 FROM batch_gaps WHERE withheld_hash = $1 AND filled_at IS NULL LIMIT 1",
    )
    .bind(header_hash.as_bytes().to_vec())
    .fetch_optional(store.pool())
    .await
    .map_err(|error| Error::database("look the gap up", error))?;
    Ok(row.is_some())
}

/// Marks the gap of `header_hash` filled: its batch was stored.
pub async fn mark_filled(store: &Store, header_hash: &Hash) -> Result<(), Error> {
    sqlx::query(
        "UPDATE batch_gaps SET filled_at = $1 WHERE withheld_hash = $2 AND filled_at IS NULL",
    )
    .bind(now_micros())
    .bind(header_hash.as_bytes().to_vec())
    .execute(store.pool())
    .await
    .map_err(|error| Error::database("mark the gap filled", error))?;
    Ok(())
}

/// A patient's recorded gaps, in chain order.
pub async fn gaps(store: &Store, patient: &str) -> Result<Vec<RecordedGap>, Error> {
    let rows = sqlx::query(
        "SELECT withheld_hash, sequence, collector, reason, received_at, filled_at \
         FROM batch_gaps WHERE patient = $1 ORDER BY sequence",
    )
    .bind(patient)
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("read the gaps", error))?;
    rows.into_iter()
        .map(|row| {
            let decode = |error| Error::database("read the gaps", error);
            let withheld: Vec<u8> = row.try_get(0).map_err(decode)?;
            let sequence: i64 = row.try_get(1).map_err(decode)?;
            Ok(RecordedGap {
                withheld: Hash::from_slice(&withheld).map_err(|_| {
                    Error::database(
                        "read the gaps",
                        format!("a hash of {} bytes", withheld.len()),
                    )
                })?,
                sequence: u64::try_from(sequence).unwrap_or_default(),
                collector: row.try_get(2).map_err(decode)?,
                reason: row.try_get(3).map_err(decode)?,
                received_at: row.try_get(4).map_err(decode)?,
                filled_at: row.try_get(5).map_err(decode)?,
            })
        })
        .collect()
}
