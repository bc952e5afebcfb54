//! The database: SQLite (one file, WAL, created 0600) or PostgreSQL, through sqlx's `Any`
//! driver with one set of migrations (`migrations/`, written in the SQL both accept).
//!
//! Queries use `$1`-style placeholders, which both SQLite and PostgreSQL read. Entry
//! numbers of the access log and the batch log are taken inside the writing transaction
//! under the database's write lock (PostgreSQL: a table lock held to commit), so they
//! follow commit order even with several server processes on one database.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};
use tokio::sync::Mutex;
use wardseal_core::batch::ChainTip;
use wardseal_core::hash::Hash;

use crate::error::Error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Rows per multi-row INSERT on PostgreSQL (8 values each stays under its 65,535 bind
/// limit).
const INSERT_CHUNK_POSTGRES: usize = 256;
/// Rows per multi-row INSERT on SQLite. Its statements use anonymous `?` parameters:
/// sqlx asks SQLite for each parameter's name, which for numbered (`$N`) parameters is a
/// linear search of the statement's name list, so binding them costs time quadratic in
/// their number (1024-row `$N` statements ran 4x slower per reading than 64-row ones).
/// Anonymous parameters have no names to search, and bigger statements mean fewer
/// round trips to the database worker (8 × 512 parameters stay far under SQLite's
/// 32,766).
const INSERT_CHUNK_SQLITE: usize = 512;

/// The database behind the server.
#[derive(Debug)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    access_lock: Mutex<()>,
}

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

/// One batch-log entry: a stored batch's header hash and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLogEntry {
    /// Its number (from 1, in the order batches were stored).
    pub entry: i64,
    /// The batch's header hash.
    pub header_hash: Hash,
    /// When the batch was stored, µs since the epoch.
    pub stored_at: i64,
}

/// An anchor of the batch log, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAnchor {
    /// The first entry it covers.
    pub first_entry: i64,
    /// The last entry it covers.
    pub last_entry: i64,
    /// The RFC 9162 root over the entries' header hashes.
    pub root: Hash,
    /// When the first covered batch was stored, µs since the epoch.
    pub first_time: i64,
    /// When the last covered batch was stored, µs since the epoch.
    pub last_time: i64,
    /// The block the anchor is in.
    pub block: u64,
    /// The anchoring transaction, when this server sent it (unknown when the anchor was
    /// found on chain after a crash between sending and recording).
    pub tx_hash: Option<[u8; 32]>,
}

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

impl Store {
    /// The connection pool (the alert tables' queries live in `alerts`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Opens (creating if needed) the database at `url`: `sqlite://PATH` or
    /// `postgres://…`, and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            create_private(Path::new(path))?;
            format!("sqlite://{path}?mode=rwc")
        } else if postgres {
            url.to_owned()
        } else {
            return Err(Error::Config(format!(
                "database URL {url:?} is neither sqlite://PATH nor postgres://…"
            )));
        };
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|error| Error::database("parse the database URL", error))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 8 } else { 4 })
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if !postgres {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|error| Error::database("connect to the database", error))?;
        MIGRATOR.run(&pool).await.map_err(|error| Error::Database {
            action: "run the migrations",
            reason: error.to_string(),
        })?;
        Ok(Self {
            pool,
            postgres,
            access_lock: Mutex::new(()),
        })
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// The patient's chain tip.
    pub async fn tip(&self, patient: &str) -> Result<Option<ChainTip>, Error> {
        let row = sqlx::query(
            "SELECT sequence, header_hash FROM batches WHERE patient = $1 ORDER BY sequence DESC LIMIT 1",
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
    #[expect(clippy::too_many_arguments, reason = "one row of the batches table")]
    pub async fn insert_batch(
        &self,
        header_hash: &Hash,
        patient: &str,
        sequence: u64,
        collector: &str,
        header: &[u8],
        signature: &[u8],
        patient_certificate: &[u8],
        readings: &[ReadingRow],
    ) -> Result<bool, Error> {
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
        .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
        .bind(collector)
        .bind(header.to_vec())
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

    /// Batch-log entries from `first` on, at most `limit`, in order.
    pub async fn batch_log(&self, first: i64, limit: usize) -> Result<Vec<BatchLogEntry>, Error> {
        let rows = sqlx::query(
            "SELECT entry, header_hash, stored_at FROM batch_log WHERE entry >= $1 \
             ORDER BY entry LIMIT $2",
        )
        .bind(first)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch log", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok(BatchLogEntry {
                    entry: column(&row, 0)?,
                    header_hash: stored_hash(&column::<Vec<u8>>(&row, 1)?)?,
                    stored_at: column(&row, 2)?,
                })
            })
            .collect()
    }

    /// The batch-log entry of a stored batch.
    pub async fn batch_log_entry(&self, header_hash: &[u8]) -> Result<Option<i64>, Error> {
        sqlx::query_scalar("SELECT entry FROM batch_log WHERE header_hash = $1")
            .bind(header_hash.to_vec())
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("find the batch-log entry", error))
    }

    /// The first batch-log entry not yet covered by an anchor.
    pub async fn first_unanchored_batch(&self) -> Result<i64, Error> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_entry) FROM batch_anchors")
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("read the batch anchors", error))?;
        Ok(last.unwrap_or(0) + 1)
    }

    /// Records an anchor of the batch log. Fails when an anchor already covers its first
    /// entry (another anchoring got there first).
    pub async fn record_batch_anchor(&self, anchor: &BatchAnchor) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO batch_anchors (first_entry, last_entry, root, first_time, last_time, \
             block, tx_hash, anchored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(anchor.first_entry)
        .bind(anchor.last_entry)
        .bind(anchor.root.as_bytes().to_vec())
        .bind(anchor.first_time)
        .bind(anchor.last_time)
        .bind(i64::try_from(anchor.block).unwrap_or(i64::MAX))
        .bind(anchor.tx_hash.map(|hash| hash.to_vec()))
        .bind(now_micros())
        .execute(&self.pool)
        .await
        .map_err(|error| Error::database("record the batch anchor", error))?;
        Ok(())
    }

    /// The anchor covering batch-log entry `entry`, if anchored.
    pub async fn batch_anchor_covering(&self, entry: i64) -> Result<Option<BatchAnchor>, Error> {
        let row = sqlx::query(
            "SELECT first_entry, last_entry, root, first_time, last_time, block, tx_hash \
             FROM batch_anchors WHERE first_entry <= $1 AND last_entry >= $1",
        )
        .bind(entry)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch anchor", error))?;
        row.map(|row| -> Result<_, Error> {
            let tx_hash: Option<Vec<u8>> = column(&row, 6)?;
            Ok(BatchAnchor {
                first_entry: column(&row, 0)?,
                last_entry: column(&row, 1)?,
                root: stored_hash(&column::<Vec<u8>>(&row, 2)?)?,
                first_time: column(&row, 3)?,
                last_time: column(&row, 4)?,
                block: unsigned(column(&row, 5)?)?,
                tx_hash: tx_hash
                    .map(|bytes| {
                        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| Error::Database {
                            action: "decode a stored row",
                            reason: format!("a transaction hash of {} bytes", bytes.len()),
                        })
                    })
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// The header hashes of batch-log entries `first..=last`, in order.
    pub async fn batch_log_hashes(&self, first: i64, last: i64) -> Result<Vec<Hash>, Error> {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT header_hash FROM batch_log WHERE entry >= $1 AND entry <= $2 ORDER BY entry",
        )
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch log", error))?;
        hashes.iter().map(|hash| stored_hash(hash)).collect()
    }

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

    /// The device assignments of a patient: (device, since, until).
    pub async fn patient_devices(
        &self,
        patient: &str,
    ) -> Result<Vec<(String, i64, Option<i64>)>, Error> {
        let rows =
            sqlx::query("SELECT device, since, until FROM device_assignments WHERE patient = $1")
                .bind(patient)
                .fetch_all(&self.pool)
                .await
                .map_err(|error| Error::database("read device assignments", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok((column(&row, 0)?, column(&row, 1)?, column(&row, 2)?))
            })
            .collect()
    }

    /// Admits a patient to a ward.
    pub async fn admit(
        &self,
        patient: &str,
        ward: &str,
        room: &str,
        bed: &str,
        account: Option<[u8; 20]>,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO admissions (patient, ward, room, bed, account, admitted_at, discharged_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (patient) DO UPDATE SET ward = $2, room = $3, bed = $4, account = $5, \
             admitted_at = $6, discharged_at = NULL",
        )
        .bind(patient)
        .bind(ward)
        .bind(room)
        .bind(bed)
        .bind(account.map(|account| account.to_vec()))
        .bind(now_micros())
        .execute(&self.pool)
        .await
        .map_err(|error| Error::database("admit the patient", error))?;
        Ok(())
    }

    /// The ward of an admitted (not discharged) patient.
    pub async fn admission(
        &self,
        patient: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, Error> {
        let row = sqlx::query(
            "SELECT ward, account FROM admissions WHERE patient = $1 AND discharged_at IS NULL",
        )
        .bind(patient)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the admission", error))?;
        row.map(|row| -> Result<_, Error> { Ok((column(&row, 0)?, column(&row, 1)?)) })
            .transpose()
    }

    /// Assigns a device to an admitted patient from `since` (µs), ending its other
    /// assignments.
    pub async fn assign_device(
        &self,
        device: &str,
        patient: &str,
        since: i64,
    ) -> Result<(), Error> {
        let Some((ward, _)) = self.admission(patient).await? else {
            return Err(Error::NotFound(format!("admitted patient {patient}")));
        };
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| Error::database("begin", e))?;
        sqlx::query("UPDATE device_assignments SET until = $1 WHERE device = $2 AND until IS NULL")
            .bind(since)
            .bind(device)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("end the device's assignment", error))?;
        sqlx::query("INSERT INTO device_assignments (device, patient, ward, since, until) VALUES ($1, $2, $3, $4, NULL)")
            .bind(device)
            .bind(patient)
            .bind(ward)
            .bind(since)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("assign the device", error))?;
        transaction
            .commit()
            .await
            .map_err(|e| Error::database("commit", e))?;
        Ok(())
    }

    /// Assigns a staff member (doctor, nurse) to an admitted patient.
    pub async fn assign_staff(&self, staff: &str, patient: &str, duty: &str) -> Result<(), Error> {
        if self.admission(patient).await?.is_none() {
            return Err(Error::NotFound(format!("admitted patient {patient}")));
        }
        sqlx::query("INSERT INTO staff_assignments (staff, patient, duty, since, until) VALUES ($1, $2, $3, $4, NULL)")
            .bind(staff)
            .bind(patient)
            .bind(duty)
            .bind(now_micros())
            .execute(&self.pool)
            .await
            .map_err(|error| Error::database("assign the staff member", error))?;
        Ok(())
    }

    /// Records the Ethereum account a staff member or lab holds consent under.
    pub async fn set_staff_account(&self, staff: &str, account: [u8; 20]) -> Result<(), Error> {
        sqlx::query("INSERT INTO staff_accounts (staff, account) VALUES ($1, $2) ON CONFLICT (staff) DO UPDATE SET account = $2")
            .bind(staff)
            .bind(account.to_vec())
            .execute(&self.pool)
            .await
            .map_err(|error| Error::database("record the staff account", error))?;
        Ok(())
    }

    /// The account of a staff member, if recorded.
    pub async fn staff_account(&self, staff: &str) -> Result<Option<Vec<u8>>, Error> {
        sqlx::query_scalar("SELECT account FROM staff_accounts WHERE staff = $1")
            .bind(staff)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("read the staff account", error))
    }

    /// Whether a staff member is currently assigned to a patient.
    pub async fn staff_assigned(&self, staff: &str, patient: &str) -> Result<bool, Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM staff_assignments s JOIN admissions a ON a.patient = s.patient \
             WHERE s.staff = $1 AND s.patient = $2 AND s.until IS NULL AND a.discharged_at IS NULL",
        )
        .bind(staff)
        .bind(patient)
        .fetch_one(&self.pool)
        .await
        .map_err(|error| Error::database("check the staff assignment", error))?;
        Ok(count > 0)
    }

    /// Discharges a patient: ends the admission and every assignment.
    pub async fn discharge(&self, patient: &str) -> Result<(), Error> {
        let now = now_micros();
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| Error::database("begin", e))?;
        let done = sqlx::query(
            "UPDATE admissions SET discharged_at = $1 WHERE patient = $2 AND discharged_at IS NULL",
        )
        .bind(now)
        .bind(patient)
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("discharge", error))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("admitted patient {patient}")));
        }
        for table in ["device_assignments", "staff_assignments"] {
            sqlx::query(&format!(
                "UPDATE {table} SET until = $1 WHERE patient = $2 AND until IS NULL"
            ))
            .bind(now)
            .bind(patient)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("end assignments", error))?;
        }
        transaction
            .commit()
            .await
            .map_err(|e| Error::database("commit", e))?;
        Ok(())
    }

    /// A ward's current device assignments: (device, patient, since).
    pub async fn ward_devices(&self, ward: &str) -> Result<Vec<(String, String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT device, patient, since FROM device_assignments WHERE ward = $1 AND until IS NULL ORDER BY device",
        )
        .bind(ward)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the ward's assignments", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok((column(&row, 0)?, column(&row, 1)?, column(&row, 2)?))
            })
            .collect()
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
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|error| Error::database("begin a transaction", error))?;
        let lock = if self.postgres {
            "LOCK TABLE access_log IN SHARE ROW EXCLUSIVE MODE"
        } else {
            // A write first makes SQLite take its write lock now, before the read of the
            // last number (a deferred transaction would read, then fail to upgrade).
            "UPDATE access_log SET entry = entry WHERE entry < 0"
        };
        sqlx::query(lock)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("lock the access log", error))?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(entry) FROM access_log")
            .fetch_one(&mut *transaction)
            .await
            .map_err(|error| Error::database("number the access-log entry", error))?;
        let entry = AccessEntry {
            entry: last.unwrap_or(0) + 1,
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
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok(AccessEntry {
                    entry: column(&row, 0)?,
                    at: column(&row, 1)?,
                    who: column(&row, 2)?,
                    role: column(&row, 3)?,
                    patient: column(&row, 4)?,
                    what: column(&row, 5)?,
                    allowed: column::<i64>(&row, 6)? != 0,
                    reason: column(&row, 7)?,
                })
            })
            .collect()
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

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
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

/// Column `index` of `row`. A value the column cannot give (wrong type, NULL where the
/// schema forbids it) is an error, never a default that would pass for data.
fn column<'r, T>(row: &'r sqlx::any::AnyRow, index: usize) -> Result<T, Error>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(index)
        .map_err(|error| Error::database("decode a stored row", error))
}

/// A count or sequence number stored as a signed 64-bit integer.
fn unsigned(value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Database {
        action: "decode a stored row",
        reason: format!("negative count or sequence number {value}"),
    })
}

fn stored_reading(row: sqlx::any::AnyRow) -> Result<StoredReading, Error> {
    Ok(StoredReading {
        batch_hash: column(&row, 0)?,
        position: unsigned(column::<i64>(&row, 1)?)?,
        leaf_hash: column(&row, 2)?,
        canonical: column(&row, 3)?,
    })
}

/// A 32-byte hash from a column the schema fills with hashes; anything else is an error.
fn stored_hash(bytes: &[u8]) -> Result<Hash, Error> {
    Hash::from_slice(bytes).map_err(|_| Error::Database {
        action: "decode a stored row",
        reason: format!("a hash of {} bytes", bytes.len()),
    })
}

/// A 32-byte hash from a column (zero if the column is not 32 bytes, which the schema
/// never writes).
pub(crate) fn hash_from(bytes: &[u8]) -> Hash {
    let mut array = [0_u8; 32];
    if bytes.len() == 32 {
        array.copy_from_slice(bytes);
    }
    Hash::from_slice(&array).unwrap_or(Hash::ZERO)
}

/// Now, µs since the Unix epoch.
pub fn now_micros() -> i64 {
    wardseal_core::reading::Timestamp::now().unix_micros()
}

/// Creates the SQLite file 0600 if it does not exist (SQLite would create it with the
/// process umask).
fn create_private(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|error| {
            Error::Config(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|error| {
            Error::Config(format!(
                "cannot create database {}: {error}",
                path.display()
            ))
        })
}
