//! Batches and their readings: stored in one transaction with their batch-log entry.

use sqlx::Row as _;
use wardseal_core::batch::{BatchHeader, ChainTip};
use wardseal_core::hash::Hash;

use super::{
    INSERT_CHUNK_POSTGRES, INSERT_CHUNK_SQLITE, Store, column, hash_from, now_micros, unsigned,
};
use crate::error::Error;

/// A reading row about to be stored.
#[derive(Debug, Clone)]
pub struct ReadingRow {
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The device's EPC (pure identity URI).
    pub device: String,
    /// The data type code.
    pub data_type: u16,
    /// When it was measured, µs since the epoch.
    pub measured_at: i64,
    /// Its canonical bytes.
    pub canonical: Vec<u8>,
}

/// A batch that passed every check of ingest, ready to be stored.
#[derive(Debug, Clone)]
pub struct VerifiedBatch<'a> {
    /// The header the patient's card signed (patient, sequence, collector).
    pub header: &'a BatchHeader,
    /// The header's hash.
    pub header_hash: Hash,
    /// The card's signature over the header.
    pub signature: &'a [u8],
    /// The patient's certificate (DER).
    pub patient_certificate: &'a [u8],
    /// The readings, in the order of the Merkle tree's leaves.
    pub readings: Vec<ReadingRow>,
}

/// A stored batch, as needed for proofs.
#[derive(Debug, Clone)]
pub struct StoredBatch {
    /// The canonical header bytes.
    pub header: Vec<u8>,
    /// The card's signature.
    pub signature: Vec<u8>,
    /// The patient certificate (DER).
    pub patient_certificate: Vec<u8>,
}

/// A stored reading.
#[derive(Debug, Clone)]
pub struct StoredReading {
    /// The batch's header hash.
    pub batch_hash: Vec<u8>,
    /// Its position in the batch.
    pub position: u64,
    /// Its leaf hash.
    pub leaf_hash: Vec<u8>,
    /// Its canonical bytes.
    pub canonical: Vec<u8>,
}

impl Store {
    /// The patient's chain tip.
    pub async fn tip(&self, patient: &str) -> Result<Option<ChainTip>, Error> {
        let row = sqlx::query(
            // A declared gap (crate::gap) takes its withheld batch's place in the chain.
            // Each side reads one row through its (patient, sequence) index.
            "SELECT sequence, h FROM (SELECT sequence, header_hash AS h FROM batches \
             WHERE patient = $1 ORDER BY sequence DESC LIMIT 1) AS b \
             UNION ALL SELECT sequence, h FROM (SELECT sequence, withheld_hash AS h \
             FROM batch_gaps WHERE patient = $1 ORDER BY sequence DESC LIMIT 1) AS g \
             ORDER BY 1 DESC LIMIT 1",
        )
        .bind(patient)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the chain tip", error))?;
        row.map(|row| {
            let sequence: i64 = row
                .try_get(0)
                .map_err(|e| Error::database("read the chain tip", e))?;
            let hash: Vec<u8> = row
                .try_get(1)
                .map_err(|e| Error::database("read the chain tip", e))?;
            Ok(ChainTip {
                sequence: unsigned(sequence)?,
                hash: hash_from(&hash),
            })
        })
        .transpose()
    }

    /// The sequence and count of a stored batch, if stored.
    pub async fn batch_stored(&self, header_hash: &Hash) -> Result<Option<(u64, u64)>, Error> {
        let row = sqlx::query("SELECT sequence, reading_count FROM batches WHERE header_hash = $1")
            .bind(header_hash.as_bytes().to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("look the batch up", error))?;
        row.map(|row| -> Result<_, Error> {
            let sequence: i64 = column(&row, 0)?;
            let count: i64 = column(&row, 1)?;
            Ok((unsigned(sequence)?, unsigned(count)?))
        })
        .transpose()
    }

    /// Stores a verified batch and its readings in one transaction. Returns `false` when
    /// the same header hash or the same (patient, sequence) was stored meanwhile.
    pub async fn insert_batch(&self, batch: &VerifiedBatch<'_>) -> Result<bool, Error> {
        let VerifiedBatch {
            header,
            header_hash,
            signature,
            patient_certificate,
            readings,
        } = batch;
        let patient = header.patient().as_str();
        let readings = readings.as_slice();
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|error| Error::database("begin a transaction", error))?;
        let hash = header_hash.as_bytes().to_vec();
        let inserted = sqlx::query(
            "INSERT INTO batches (header_hash, patient, sequence, collector, header, signature, \
             patient_certificate, reading_count, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
        )
        .bind(hash.clone())
        .bind(patient)
        .bind(i64::try_from(header.sequence()).unwrap_or(i64::MAX))
        .bind(header.collector().as_str())
        .bind(header.canonical_bytes())
        .bind(signature.to_vec())
        .bind(patient_certificate.to_vec())
        .bind(i64::try_from(readings.len()).unwrap_or(i64::MAX))
        .bind(now_micros())
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("store the batch", error))?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        let chunk_rows = if self.postgres {
            INSERT_CHUNK_POSTGRES
        } else {
            INSERT_CHUNK_SQLITE
        };
        for (chunk_index, chunk) in readings.chunks(chunk_rows).enumerate() {
            let mut sql = String::from(
                "INSERT INTO readings (batch_hash, position, leaf_hash, patient, device, data_type, measured_at, canonical) VALUES ",
            );
            for row in 0..chunk.len() {
                if row > 0 {
                    sql.push(',');
                }
                if self.postgres {
                    let base = row * 8;
                    sql.push_str(&format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        base + 1,
                        base + 2,
                        base + 3,
                        base + 4,
                        base + 5,
                        base + 6,
                        base + 7,
                        base + 8
                    ));
                } else {
                    // Bound in order (see INSERT_CHUNK_SQLITE for why not numbered).
                    sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?)");
                }
            }
            let mut query = sqlx::query(&sql);
            for (offset, reading) in chunk.iter().enumerate() {
                let position = chunk_index * chunk_rows + offset;
                query = query
                    .bind(hash.clone())
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(reading.leaf_hash.as_bytes().to_vec())
                    .bind(patient)
                    .bind(reading.device.clone())
                    .bind(i64::from(reading.data_type))
                    .bind(reading.measured_at)
                    .bind(reading.canonical.clone());
            }
            query
                .execute(&mut *transaction)
                .await
                .map_err(|error| Error::database("store the readings", error))?;
        }
        // The batch-log entry last, under a lock held until commit: entries are numbered in
        // commit order, so an entry is never numbered below one an anchor already covers,
        // whatever the number of writers (SQLite serialises writers by itself; PostgreSQL
        // needs the table lock, which also makes numbering safe across server processes).
        if self.postgres {
            sqlx::query("LOCK TABLE batch_log IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *transaction)
                .await
                .map_err(|error| Error::database("lock the batch log", error))?;
        }
        sqlx::query(
            "INSERT INTO batch_log (entry, header_hash, stored_at) \
             SELECT COALESCE(MAX(entry), 0) + 1, $1, $2 FROM batch_log",
        )
        .bind(hash)
        .bind(now_micros())
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("append to the batch log", error))?;
        transaction
            .commit()
            .await
            .map_err(|error| Error::database("commit the batch", error))?;
        Ok(true)
    }

    /// Number of stored readings and batches.
    pub async fn counts(&self) -> Result<(i64, i64), Error> {
        let readings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("count readings", error))?;
        let batches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batches")
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("count batches", error))?;
        Ok((readings, batches))
    }

    /// Measurement times of a device's readings of a type in `[from, to]`.
    pub async fn reading_times(
        &self,
        device: &str,
        data_type: u16,
        from: i64,
        to: i64,
    ) -> Result<Vec<i64>, Error> {
        sqlx::query_scalar(
            "SELECT measured_at FROM readings WHERE device = $1 AND data_type = $2 \
             AND measured_at >= $3 AND measured_at <= $4",
        )
        .bind(device)
        .bind(i64::from(data_type))
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("count recent readings", error))
    }

    /// A patient's readings in a time window, optionally of one data type, in time order.
    pub async fn readings(
        &self,
        patient: &str,
        data_type: Option<u16>,
        since: i64,
        until: i64,
    ) -> Result<Vec<StoredReading>, Error> {
        let rows = sqlx::query(
            "SELECT batch_hash, position, leaf_hash, canonical FROM readings WHERE patient = $1 \
             AND measured_at >= $2 AND measured_at <= $3 AND ($4 < 0 OR data_type = $4) \
             ORDER BY measured_at, position LIMIT 10000",
        )
        .bind(patient)
        .bind(since)
        .bind(until)
        .bind(data_type.map_or(-1, i64::from))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the readings", error))?;
        rows.into_iter().map(stored_reading).collect()
    }

    /// A reading by leaf hash (the first stored, if several batches hold it).
    pub async fn reading_by_leaf(&self, leaf: &Hash) -> Result<Option<StoredReading>, Error> {
        let row = sqlx::query(
            "SELECT batch_hash, position, leaf_hash, canonical FROM readings WHERE leaf_hash = $1 LIMIT 1",
        )
        .bind(leaf.as_bytes().to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("find the reading", error))?;
        row.map(stored_reading).transpose()
    }

    /// A batch's header, signature, certificate, and its leaf hashes in order.
    pub async fn batch(
        &self,
        header_hash: &[u8],
    ) -> Result<Option<(StoredBatch, Vec<Hash>)>, Error> {
        let Some(row) = sqlx::query(
            "SELECT header, signature, patient_certificate FROM batches WHERE header_hash = $1",
        )
        .bind(header_hash.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch", error))?
        else {
            return Ok(None);
        };
        let batch = StoredBatch {
            header: column(&row, 0)?,
            signature: column(&row, 1)?,
            patient_certificate: column(&row, 2)?,
        };
        let leaves: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT leaf_hash FROM readings WHERE batch_hash = $1 ORDER BY position",
        )
        .bind(header_hash.to_vec())
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch's leaves", error))?;
        Ok(Some((
            batch,
            leaves.iter().map(|leaf| hash_from(leaf)).collect(),
        )))
    }
}

fn stored_reading(row: sqlx::any::AnyRow) -> Result<StoredReading, Error> {
    Ok(StoredReading {
        batch_hash: column(&row, 0)?,
        position: unsigned(column::<i64>(&row, 1)?)?,
        leaf_hash: column(&row, 2)?,
        canonical: column(&row, 3)?,
    })
}
