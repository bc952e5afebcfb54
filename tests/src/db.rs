//! Storage's database read directly, independently of storage's own code paths: what the
//! end-to-end suites use to prove what was stored and what was refused.
//!
//! The queries go through sqlx's `Any` driver, so the same code reads the SQLite file
//! and a PostgreSQL database (storage's migrations write both with the same column
//! types: BIGINT, TEXT, BYTEA).

use sqlx::AnyPool;
use sqlx::Row as _;
use sqlx::any::AnyPoolOptions;
use wardseal_core::hash::Hash;

/// Why the database could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database could not be opened.
    #[error("cannot open storage's database {url}: {source}")]
    Open {
        /// The URL (`sqlite://…`, `postgres://…`).
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("cannot {action} in storage's database: {source}")]
    Query {
        /// What was being read.
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// A rejection row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionRow {
    /// The refusal's machine code.
    pub code: String,
    /// The refused header's hash, when the header was readable.
    pub header_hash: Option<Hash>,
}

/// A read-only view of storage's tables.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
}

/// Wraps a driver error with what was being read.
fn query_failed(action: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Query { action, source }
}

impl Database {
    /// Opens the database storage uses (`WardFiles::database_url`).
    pub async fn open(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .map_err(|source| DbError::Open {
                url: url.to_owned(),
                source,
            })?;
        Ok(Self { pool })
    }

    /// How many readings and batches are stored.
    pub async fn counts(&self) -> Result<(i64, i64), DbError> {
        let readings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&self.pool)
            .await
            .map_err(query_failed("count readings"))?;
        let batches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batches")
            .fetch_one(&self.pool)
            .await
            .map_err(query_failed("count batches"))?;
        Ok((readings, batches))
    }

    /// Up to `limit` leaf hashes of stored readings.
    pub async fn some_leaves(&self, limit: i64) -> Result<Vec<Hash>, DbError> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT leaf_hash FROM readings LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list readings"))?;
        Ok(rows
            .iter()
            .filter_map(|bytes| Hash::from_slice(bytes).ok())
            .collect())
    }

    /// Those of `leaves` that are stored as readings.
    pub async fn stored_leaves(&self, leaves: &[Hash]) -> Result<Vec<Hash>, DbError> {
        self.stored(
            "SELECT COUNT(*) FROM readings WHERE leaf_hash = $1",
            "look a reading up",
            leaves,
        )
        .await
    }

    /// Those of `headers` that are stored as batches.
    pub async fn stored_headers(&self, headers: &[Hash]) -> Result<Vec<Hash>, DbError> {
        self.stored(
            "SELECT COUNT(*) FROM batches WHERE header_hash = $1",
            "look a batch up",
            headers,
        )
        .await
    }

    /// Those of `hashes` for which `count` (a `COUNT(*)` with the hash as `$1`) is not 0.
    async fn stored(
        &self,
        count: &'static str,
        action: &'static str,
        hashes: &[Hash],
    ) -> Result<Vec<Hash>, DbError> {
        let mut stored = Vec::new();
        for hash in hashes {
            let found: i64 = sqlx::query_scalar(count)
                .bind(hash.as_bytes().to_vec())
                .fetch_one(&self.pool)
                .await
                .map_err(query_failed(action))?;
            if found > 0 {
                stored.push(*hash);
            }
        }
        Ok(stored)
    }

    /// Every recorded rejection, oldest first.
    pub async fn rejections(&self) -> Result<Vec<RejectionRow>, DbError> {
        let rows = sqlx::query("SELECT code, header_hash FROM rejections ORDER BY received_at")
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list rejections"))?;
        rows.iter()
            .map(|row| {
                let code: String = row.try_get(0).map_err(query_failed("decode a rejection"))?;
                let hash: Option<Vec<u8>> =
                    row.try_get(1).map_err(query_failed("decode a rejection"))?;
                Ok(RejectionRow {
                    code,
                    header_hash: hash.and_then(|bytes: Vec<u8>| Hash::from_slice(&bytes).ok()),
                })
            })
            .collect()
    }

    /// How many access-log entries record `who` refused access to `patient`'s data.
    pub async fn refused_accesses(&self, who: &str, patient: &str) -> Result<i64, DbError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM access_log WHERE who = $1 AND patient = $2 AND allowed = 0",
        )
        .bind(who)
        .bind(patient)
        .fetch_one(&self.pool)
        .await
        .map_err(query_failed("count refused accesses"))
    }

    /// Closes the connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
