//! The queries behind the FHIR API ([`crate::fhir`]): keyset pages of a patient's
//! readings, the patients a staff member is responsible for, admissions, devices,
//! alerts, stored batches and access-log pages.
//!
//! Reading pages are ordered by (measured_at, batch_hash, position), a unique key, and
//! continue from a row's key with a row-value comparison, which both SQLite and
//! PostgreSQL evaluate on the index of migration 0006
//! (patient, data_type, measured_at, batch_hash, position).

use sqlx::any::AnyRow;
use wardseal_core::alert::{Alert, AlertState};

use super::{AccessEntry, Store, column};
use crate::error::Error;

/// A search of one patient's readings.
#[derive(Debug, Clone, Default)]
pub struct ReadingSearch {
    /// The patient.
    pub patient: String,
    /// The data type codes wanted; `None`: any.
    pub data_types: Option<Vec<u16>>,
    /// The device (EPC pure identity URI), if one.
    pub device: Option<String>,
    /// Measured at or after (µs).
    pub measured_from: Option<i64>,
    /// Measured at or before (µs).
    pub measured_to: Option<i64>,
    /// Stored at or after (µs).
    pub stored_from: Option<i64>,
    /// Stored at or before (µs).
    pub stored_to: Option<i64>,
}

/// The unique sort key of a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadingKey {
    /// When it was measured (µs).
    pub measured_at: i64,
    /// Its batch's header hash.
    pub batch_hash: Vec<u8>,
    /// Its position in the batch.
    pub position: i64,
}

/// Which rows of a search one page reads.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Key order of the rows read: ascending or descending.
    pub ascending: bool,
    /// Only rows beyond this key in that order (exclusive).
    pub beyond: Option<ReadingKey>,
    /// At most this many rows.
    pub limit: usize,
}

/// One reading as the FHIR API serves it.
#[derive(Debug, Clone)]
pub struct ReadingRecord {
    /// The patient.
    pub patient: String,
    /// Its sort key.
    pub key: ReadingKey,
    /// Its leaf hash.
    pub leaf_hash: Vec<u8>,
    /// Its canonical bytes.
    pub canonical: Vec<u8>,
    /// When its batch was stored (µs): the Observation's `meta.lastUpdated`.
    pub stored_at: i64,
    /// Its FHIR interpretation code, when it crossed an alarm limit.
    pub interpretation: Option<String>,
}

/// One admission (a patient's current or last stay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRecord {
    /// The patient.
    pub patient: String,
    /// Ward.
    pub ward: String,
    /// Room.
    pub room: String,
    /// Bed.
    pub bed: String,
    /// Admitted at (µs).
    pub admitted_at: i64,
    /// Discharged at (µs), if discharged.
    pub discharged_at: Option<i64>,
}

/// A stored batch as its Provenance shows it.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    /// The header hash.
    pub header_hash: Vec<u8>,
    /// The patient.
    pub patient: String,
    /// The collector that delivered it.
    pub collector: String,
    /// Its sequence in the patient's chain.
    pub sequence: i64,
    /// The canonical header bytes.
    pub header: Vec<u8>,
    /// The card's signature over the header.
    pub signature: Vec<u8>,
    /// The patient certificate (DER).
    pub patient_certificate: Vec<u8>,
    /// When storage stored it (µs).
    pub received_at: i64,
    /// Its readings' leaf hashes, in order.
    pub leaves: Vec<Vec<u8>>,
}

const READING_COLUMNS: &str = "r.patient, r.measured_at, r.batch_hash, r.position, r.leaf_hash, \
     r.canonical, b.received_at, i.interpretation";
const READING_FROM: &str = "readings r JOIN batches b ON b.header_hash = r.batch_hash \
     LEFT JOIN reading_interpretations i ON i.leaf_hash = r.leaf_hash";

/// A query under construction: SQL with `$n` placeholders and the values, in order.
#[derive(Default)]
struct Sql {
    text: String,
    values: Vec<Value>,
}

enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Sql {
    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    fn bind(&mut self, value: Value) -> &mut Self {
        self.values.push(value);
        self.text.push_str(&format!("${}", self.values.len()));
        self
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for value in &self.values {
            query = match value {
                Value::Int(int) => query.bind(*int),
                Value::Text(text) => query.bind(text.clone()),
                Value::Bytes(bytes) => query.bind(bytes.clone()),
            };
        }
        query
    }
}

fn filters(sql: &mut Sql, search: &ReadingSearch) {
    sql.push(" WHERE r.patient = ")
        .bind(Value::Text(search.patient.clone()));
    if let Some(types) = &search.data_types {
        if types.is_empty() {
            sql.push(" AND 1 = 0");
        } else {
            sql.push(" AND r.data_type IN (");
            for (index, data_type) in types.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.bind(Value::Int(i64::from(*data_type)));
            }
            sql.push(")");
        }
    }
    if let Some(device) = &search.device {
        sql.push(" AND r.device = ")
            .bind(Value::Text(device.clone()));
    }
    for (column, bound, operator) in [
        ("r.measured_at", search.measured_from, ">="),
        ("r.measured_at", search.measured_to, "<="),
        ("b.received_at", search.stored_from, ">="),
        ("b.received_at", search.stored_to, "<="),
    ] {
        if let Some(bound) = bound {
            sql.push(&format!(" AND {column} {operator} "))
                .bind(Value::Int(bound));
        }
    }
}

fn reading_record(row: &AnyRow) -> Result<ReadingRecord, Error> {
    Ok(ReadingRecord {
        patient: column(row, 0)?,
        key: ReadingKey {
            measured_at: column(row, 1)?,
            batch_hash: column(row, 2)?,
            position: column(row, 3)?,
        },
        leaf_hash: column(row, 4)?,
        canonical: column(row, 5)?,
        stored_at: column(row, 6)?,
        interpretation: column(row, 7)?,
    })
}

fn admission_record(row: &AnyRow) -> Result<AdmissionRecord, Error> {
    Ok(AdmissionRecord {
        patient: column(row, 0)?,
        ward: column(row, 1)?,
        room: column(row, 2)?,
        bed: column(row, 3)?,
        admitted_at: column(row, 4)?,
        discharged_at: column(row, 5)?,
    })
}

const ADMISSION_COLUMNS: &str = "patient, ward, room, bed, admitted_at, discharged_at";

impl Store {
    /// One page of a reading search, in key order (`page.ascending`), starting beyond
    /// `page.beyond`.
    pub async fn reading_page(
        &self,
        search: &ReadingSearch,
        page: &PageRequest,
    ) -> Result<Vec<ReadingRecord>, Error> {
        let mut sql = Sql::default();
        sql.push(&format!("SELECT {READING_COLUMNS} FROM {READING_FROM}"));
        filters(&mut sql, search);
        let (comparison, order) = if page.ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some(key) = &page.beyond {
            sql.push(&format!(
                " AND (r.measured_at, r.batch_hash, r.position) {comparison} ("
            ))
            .bind(Value::Int(key.measured_at))
            .push(", ")
            .bind(Value::Bytes(key.batch_hash.clone()))
            .push(", ")
            .bind(Value::Int(key.position))
            .push(")");
        }
        sql.push(&format!(
            " ORDER BY r.measured_at {order}, r.batch_hash {order}, r.position {order} LIMIT "
        ))
        .bind(Value::Int(i64::try_from(page.limit).unwrap_or(i64::MAX)));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(|error| Error::database("search the readings", error))?;
        rows.iter().map(reading_record).collect()
    }

    /// How many readings a search matches.
    pub async fn reading_count(&self, search: &ReadingSearch) -> Result<u64, Error> {
        let mut sql = Sql::default();
        sql.push(&format!("SELECT COUNT(*) FROM {READING_FROM}"));
        filters(&mut sql, search);
        let row = sql
            .query()
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("count the readings", error))?;
        super::unsigned(column(&row, 0)?)
    }

    /// The reading with leaf hash `leaf` (the first stored, if several batches hold it).
    pub async fn reading_record(&self, leaf: &[u8]) -> Result<Option<ReadingRecord>, Error> {
        let row = sqlx::query(&format!(
            "SELECT {READING_COLUMNS} FROM {READING_FROM} WHERE r.leaf_hash = $1 \
             ORDER BY b.received_at LIMIT 1"
        ))
        .bind(leaf.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the reading", error))?;
        row.as_ref().map(reading_record).transpose()
    }

    /// The patients `staff` is assigned to now (admitted, assignment not ended).
    pub async fn responsible_patients(&self, staff: &str) -> Result<Vec<String>, Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT s.patient FROM staff_assignments s \
             JOIN admissions a ON a.patient = s.patient \
             WHERE s.staff = $1 AND s.until IS NULL AND a.discharged_at IS NULL \
             ORDER BY s.patient",
        )
        .bind(staff)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("list the patients of a staff member", error))
    }

    /// Whether storage knows `patient` at all (admitted once, or holds their batches).
    pub async fn patient_known(&self, patient: &str) -> Result<bool, Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM admissions WHERE patient = $1 \
             UNION ALL SELECT 1 FROM (SELECT 1 FROM batches WHERE patient = $1 LIMIT 1) AS b \
             LIMIT 1",
        )
        .bind(patient)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("look the patient up", error))?;
        Ok(found.is_some())
    }

    /// The admission of `patient` (current, or the last one if discharged).
    pub async fn admission_record(&self, patient: &str) -> Result<Option<AdmissionRecord>, Error> {
        let row = sqlx::query(&format!(
            "SELECT {ADMISSION_COLUMNS} FROM admissions WHERE patient = $1"
        ))
        .bind(patient)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the admission", error))?;
        row.as_ref().map(admission_record).transpose()
    }

    /// The admissions that started at `admitted_at` (µs; an Encounter's number).
    pub async fn admissions_at(&self, admitted_at: i64) -> Result<Vec<AdmissionRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {ADMISSION_COLUMNS} FROM admissions WHERE admitted_at = $1 ORDER BY patient"
        ))
        .bind(admitted_at)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the admission", error))?;
        rows.iter().map(admission_record).collect()
    }

    /// The latest assignment of `device`: (patient, since, until).
    pub async fn device_holder(
        &self,
        device: &str,
    ) -> Result<Option<(String, i64, Option<i64>)>, Error> {
        let row = sqlx::query(
            "SELECT patient, since, until FROM device_assignments WHERE device = $1 \
             ORDER BY since DESC LIMIT 1",
        )
        .bind(device)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the device's assignment", error))?;
        row.map(|row| -> Result<_, Error> {
            Ok((column(&row, 0)?, column(&row, 1)?, column(&row, 2)?))
        })
        .transpose()
    }

    /// When `device` last measured something stored (µs), if ever. One index lookup per
    /// data type on (device, data_type, measured_at).
    pub async fn device_last_heard(&self, device: &str) -> Result<Option<i64>, Error> {
        let mut last: Option<i64> = None;
        for data_type in wardseal_core::reading::DataType::ALL {
            let time: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(measured_at) FROM readings WHERE device = $1 AND data_type = $2",
            )
            .bind(device)
            .bind(i64::from(data_type.code()))
            .fetch_one(&self.pool)
            .await
            .map_err(|error| Error::database("read when the device was last heard", error))?;
            last = last.max(time);
        }
        Ok(last)
    }

    /// `patient`'s alerts in one of `states` (any when empty), newest first.
    pub async fn patient_alerts(
        &self,
        patient: &str,
        states: &[AlertState],
    ) -> Result<Vec<Alert>, Error> {
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {} FROM alerts WHERE patient = ",
            crate::alerts::COLUMNS
        ))
        .bind(Value::Text(patient.to_owned()));
        if !states.is_empty() {
            sql.push(" AND state IN (");
            for (index, state) in states.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.bind(Value::Text(state.name().to_owned()));
            }
            sql.push(")");
        }
        sql.push(" ORDER BY raised_at DESC LIMIT 1000");
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(|error| Error::database("list the patient's alerts", error))?;
        rows.iter().map(crate::alerts::from_row).collect()
    }

    /// A stored batch with its leaves.
    pub async fn batch_record(&self, header_hash: &[u8]) -> Result<Option<BatchRecord>, Error> {
        let Some(row) = sqlx::query(
            "SELECT header_hash, patient, collector, sequence, header, signature, \
             patient_certificate, received_at FROM batches WHERE header_hash = $1",
        )
        .bind(header_hash.to_vec())
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch", error))?
        else {
            return Ok(None);
        };
        let leaves: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT leaf_hash FROM readings WHERE batch_hash = $1 ORDER BY position",
        )
        .bind(header_hash.to_vec())
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the batch's leaves", error))?;
        Ok(Some(BatchRecord {
            header_hash: column(&row, 0)?,
            patient: column(&row, 1)?,
            collector: column(&row, 2)?,
            sequence: column(&row, 3)?,
            header: column(&row, 4)?,
            signature: column(&row, 5)?,
            patient_certificate: column(&row, 6)?,
            received_at: column(&row, 7)?,
            leaves,
        }))
    }

    /// A patient's batches' header hashes, newest first, at most `limit`.
    pub async fn patient_batches(
        &self,
        patient: &str,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, Error> {
        sqlx::query_scalar(
            "SELECT header_hash FROM batches WHERE patient = $1 ORDER BY sequence DESC LIMIT $2",
        )
        .bind(patient)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("list the patient's batches", error))
    }

    /// Access-log entries about `patient`, newest first, below entry `before` if given,
    /// at most `limit`.
    pub async fn access_page(
        &self,
        patient: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AccessEntry>, Error> {
        let rows = sqlx::query(
            "SELECT entry, at, who, role, patient, what, allowed, reason FROM access_log \
             WHERE patient = $1 AND entry < $2 ORDER BY entry DESC LIMIT $3",
        )
        .bind(patient)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the access log", error))?;
        rows.iter().map(super::access_log::entry_from_row).collect()
    }

    /// Access-log entry number `entry`.
    pub async fn access_entry(&self, entry: i64) -> Result<Option<AccessEntry>, Error> {
        let row = sqlx::query(
            "SELECT entry, at, who, role, patient, what, allowed, reason FROM access_log \
             WHERE entry = $1",
        )
        .bind(entry)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the access log", error))?;
        row.as_ref()
            .map(super::access_log::entry_from_row)
            .transpose()
    }

    /// Every recorded staff or authority account: (subject, 20-byte account).
    pub async fn staff_accounts(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let rows = sqlx::query("SELECT staff, account FROM staff_accounts ORDER BY staff")
            .fetch_all(&self.pool)
            .await
            .map_err(|error| Error::database("list the staff accounts", error))?;
        rows.iter()
            .map(|row| -> Result<_, Error> { Ok((column(row, 0)?, column(row, 1)?)) })
            .collect()
    }
}
