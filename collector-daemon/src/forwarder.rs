//! Delivery to storage: sealed batches go out over mutual TLS with the collector's
//! certificate, each patient's in chain order, at least once, with exponential backoff
//! while storage is unreachable. A batch and its readings leave the spool only after
//! storage's [`BatchReceipt`] for exactly that header; storage is idempotent on header
//! hashes, so a repeated delivery (after a crash between receipt and delete) is stored
//! once.
//!
//! The same client fetches the ward's device-to-patient assignments
//! (`GET /v1/wards/{ward}/assignments`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::Method;
use rustls::ClientConfig;
use tokio::sync::{Mutex, Notify};
use wardseal_core::exchange::{BatchReceipt, BatchSubmission, WardAssignments};
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::Timestamp;

use crate::client::{Connection, Endpoint};
use crate::error::{Error, ForwardError, SpoolError};
use crate::ingest::Replica;
use crate::metrics::Metrics;
use crate::spool::{self, Spool};

/// The collector's connection to storage, reopened when it breaks.
#[derive(Debug)]
pub struct StorageClient {
    endpoint: Endpoint,
    config: Arc<ClientConfig>,
    connection: Mutex<Option<Connection>>,
}

impl StorageClient {
    /// A client for `endpoint` with the collector's TLS client configuration.
    pub fn new(endpoint: Endpoint, config: Arc<ClientConfig>) -> Self {
        Self {
            endpoint,
            config,
            connection: Mutex::new(None),
        }
    }

    async fn connection(&self) -> Result<Connection, ForwardError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let connection = Connection::open(&self.endpoint, Arc::clone(&self.config)).await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<crate::client::Reply, ForwardError> {
        let connection = self.connection().await?;
        match connection.send(method, path, body).await {
            Ok(reply) => Ok(reply),
            Err(error) => {
                // The connection is suspect: open a new one next time.
                *self.connection.lock().await = None;
                Err(error)
            }
        }
    }

    /// Delivers one batch; returns storage's receipt, checked against the header.
    pub async fn submit(&self, submission: &BatchSubmission) -> Result<BatchReceipt, ForwardError> {
        let body = serde_json::to_vec(submission)
            .map_err(|e| ForwardError::BadReceipt(format!("cannot encode the batch: {e}")))?;
        let reply = self.request(Method::POST, "/v1/batches", body).await?;
        if !(200..300).contains(&reply.status) {
            return Err(ForwardError::Refused {
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            });
        }
        let receipt: BatchReceipt = serde_json::from_slice(&reply.body)
            .map_err(|e| ForwardError::BadReceipt(e.to_string()))?;
        if receipt.header_hash != submission.header.hash()
            || receipt.sequence != submission.header.sequence()
        {
            return Err(ForwardError::BadReceipt(format!(
                "receipt names batch {} of {}, not {} of {}",
                receipt.sequence,
                receipt.header_hash,
                submission.header.sequence(),
                submission.header.hash()
            )));
        }
        Ok(receipt)
    }

    /// The ward's current assignments.
    pub async fn assignments(&self, ward: &SubjectId) -> Result<WardAssignments, ForwardError> {
        let reply = self
            .request(
                Method::GET,
                &format!("/v1/wards/{ward}/assignments"),
                Vec::new(),
            )
            .await?;
        if reply.status != 200 {
            return Err(ForwardError::Refused {
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            });
        }
        serde_json::from_slice(&reply.body).map_err(|e| ForwardError::BadReceipt(e.to_string()))
    }
}

struct Queued {
    id: i64,
    patient: String,
    submission: String,
    oldest_received: i64,
}

/// Delivers sealed batches until `stop` is notified (then returns after the batch in
/// flight). `sealed` wakes it early when the batcher seals one.
pub async fn run(
    spool: Spool,
    storage: Arc<StorageClient>,
    metrics: Arc<Metrics>,
    sealed: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(100);
    // One warning when delivery starts failing and one when it works again: an outage of
    // hours must not write a line every few seconds (the failures are counted in metrics).
    let mut outage: Option<(std::time::Instant, u64)> = None;
    loop {
        let round = deliver_round(&spool, &storage, &metrics).await;
        if round.is_ok()
            && let Some((since, failures)) = outage.take()
        {
            eprintln!(
                "wardseal-collector: delivery to storage works again after {:.0?} and {failures} failed attempts",
                since.elapsed()
            );
        }
        match round {
            Ok(0) => {
                tokio::select! {
                    () = stop.notified() => return,
                    () = sealed.notified() => {}
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(error) => {
                metrics.forward_failures.fetch_add(1, Ordering::Relaxed);
                match &mut outage {
                    None => {
                        eprintln!(
                            "wardseal-collector: warning: {error}; readings stay in the spool, retrying with backoff up to 5 s (further failures counted in wardseal_collector_forward_failures_total)"
                        );
                        outage = Some((std::time::Instant::now(), 1));
                    }
                    Some((_, failures)) => *failures += 1,
                }
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Sends the oldest sealed batch of each patient (concurrently) and deletes the
/// acknowledged ones. Returns how many were delivered.
pub async fn deliver_round(
    spool: &Spool,
    storage: &Arc<StorageClient>,
    metrics: &Arc<Metrics>,
) -> Result<usize, Error> {
    let queued = spool
        .run(|connection| {
            // Only each patient's oldest batch (the chain must arrive in order), and only
            // its submission is read: a backlog of large batches is not loaded per round.
            let mut statement = connection.prepare_cached(
                "SELECT b.id, b.patient, b.submission,
                        COALESCE((SELECT MIN(received_us) FROM readings r WHERE r.batch = b.id), 0)
                 FROM batches b
                 WHERE b.id IN (SELECT MIN(id) FROM batches GROUP BY patient)
                 ORDER BY b.id LIMIT 512",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(Queued {
                    id: row.get(0)?,
                    patient: row.get(1)?,
                    submission: row.get(2)?,
                    oldest_received: row.get(3)?,
                })
            })?;
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                if seen.insert(row.patient.clone()) {
                    out.push(row);
                }
            }
            Ok(out)
        })
        .await?;
    if queued.is_empty() {
        return Ok(0);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for batch in queued {
        let storage = Arc::clone(storage);
        tasks.spawn(async move {
            let submission: BatchSubmission =
                serde_json::from_str(&batch.submission).map_err(|e| SpoolError::Corrupt {
                    row: batch.id,
                    reason: format!("stored batch does not parse: {e}"),
                })?;
            let receipt = storage.submit(&submission).await?;
            Ok::<_, Error>((batch.id, batch.oldest_received, receipt))
        });
    }
    let mut delivered = Vec::new();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(done)) => delivered.push(done),
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(join) => {
                first_error
                    .get_or_insert(Error::Forward(ForwardError::BadReceipt(join.to_string())));
            }
        }
    }
    let count = delivered.len();
    for (id, oldest, _receipt) in delivered {
        let removed = spool
            .run(move |connection| {
                let transaction = connection.transaction()?;
                let removed = transaction.execute("DELETE FROM readings WHERE batch = ?1", [id])?;
                transaction.execute("DELETE FROM batches WHERE id = ?1", [id])?;
                transaction.commit()?;
                Ok(removed)
            })
            .await?;
        spool.delivered(u64::try_from(removed).unwrap_or(0));
        metrics.batches_delivered.fetch_add(1, Ordering::Relaxed);
        if oldest > 0 {
            metrics.forward_lag_micros.store(
                Timestamp::now().unix_micros().saturating_sub(oldest),
                Ordering::Relaxed,
            );
        }
    }
    match first_error {
        Some(error) if count == 0 => Err(error),
        Some(error) => {
            eprintln!("wardseal-collector: {error}");
            Ok(count)
        }
        None => Ok(count),
    }
}

/// Applies a ward's assignments: updates the replica and binds waiting readings.
pub async fn apply_assignments(
    spool: &Spool,
    replica: &Replica,
    assignments: &WardAssignments,
) -> Result<usize, SpoolError> {
    let pairs = replica.set_assignments(assignments);
    spool
        .run(move |connection| {
            let mut bound = 0;
            for (device, patient) in &pairs {
                bound += spool::bind(connection, device, patient)?;
            }
            Ok(bound)
        })
        .await
}
