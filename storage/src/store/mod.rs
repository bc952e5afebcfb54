//! The database: SQLite (one file, WAL, created 0600) or PostgreSQL, through sqlx's `Any`
//! driver with one set of migrations (`migrations/`, written in the SQL both accept).
//!
//! Queries use `$1`-style placeholders, which both SQLite and PostgreSQL read. Entry
//! numbers of the access log and the batch log are taken inside the writing transaction
//! under the database's write lock (PostgreSQL: a table lock held to commit), so they
//! follow commit order even with several server processes on one database.
//!
//! One module per table family: `batches` (batches and their readings), `batch_log`,
//! `admissions` (admissions, device and staff assignments), `access_log`,
//! `rejections`, and `fhir` (the FHIR API's searches).

mod access_log;
mod admissions;
mod batch_log;
mod batches;
mod fhir;
mod rejections;
mod visits;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};
use tokio::sync::Mutex;
use wardseal_core::hash::Hash;

pub use access_log::AccessEntry;
pub use batch_log::{BatchAnchor, BatchLogEntry};
pub use batches::{ReadingRow, StoredBatch, StoredReading, VerifiedBatch};
pub use fhir::{
    AdmissionRecord, BatchRecord, PageRequest, ReadingKey, ReadingRecord, ReadingSearch,
};
pub use rejections::Rejection;
pub use visits::{NewVisit, VisitRecord};

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

impl Store {
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
            return Err(Error::DatabaseUrl(url.to_owned()));
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
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|error| Error::database("run the migrations", error))?;
        Ok(Self {
            pool,
            postgres,
            access_lock: Mutex::new(()),
        })
    }

    /// The connection pool, for the modules that keep their own tables (crate::gap).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Column `index` of `row`. A value the column cannot give (wrong type, NULL where the
/// schema forbids it) is an error, never a default that would pass for data.
impl Store {
    /// Begins a transaction that appends to `table`, numbered by its `column`, and returns
    /// it with the next number: the table is locked first (PostgreSQL: `SHARE ROW
    /// EXCLUSIVE`; SQLite: a no-op write takes the write lock now, since a deferred
    /// transaction would read the last number, then fail to upgrade), so no two writers
    /// take one number.
    pub(crate) async fn begin_numbered(
        &self,
        table: &'static str,
        column: &'static str,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, i64), Error> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|error| Error::database("begin a transaction", error))?;
        let lock = if self.postgres {
            format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        } else {
            format!("UPDATE {table} SET {column} = {column} WHERE {column} < 0")
        };
        sqlx::query(&lock)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("lock the table to number a row", error))?;
        let last: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX({column}) FROM {table}"))
            .fetch_one(&mut *transaction)
            .await
            .map_err(|error| Error::database("read the last number", error))?;
        Ok((transaction, last.unwrap_or(0) + 1))
    }
}

fn column<'r, T>(row: &'r sqlx::any::AnyRow, index: usize) -> Result<T, Error>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(index)
        .map_err(|error| Error::database("decode a stored row", error))
}

/// A count or sequence number stored as a signed 64-bit integer.
fn unsigned(value: i64) -> Result<u64, Error> {
    u64::try_from(value)
        .map_err(|_| Error::corrupt_row(format!("negative count or sequence number {value}")))
}

/// A 32-byte hash from a column the schema fills with hashes; anything else is an error.
fn stored_hash(bytes: &[u8]) -> Result<Hash, Error> {
    Hash::from_slice(bytes)
        .map_err(|_| Error::corrupt_row(format!("a hash of {} bytes", bytes.len())))
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
        std::fs::create_dir_all(parent).map_err(|source| Error::DatabaseFile {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| Error::DatabaseFile {
            path: path.to_owned(),
            source,
        })
}
