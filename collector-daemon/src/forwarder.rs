//! Delivery to storage: sealed batches go out over mutual TLS with the collector's
//! certificate, each patient's in chain order, at least once, with exponential backoff
//! while storage is unreachable. A batch and its readings leave the spool only after
//! storage's [`BatchReceipt`] for exactly that header; storage is idempotent on header
//! hashes, so a repeated delivery (after a crash between receipt and delete) is stored
//! once.
//!
//! The same client fetches the ward's device-to-patient assignments
//! (`GET /v1/wards/{ward}/assignments`).

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
    submission: String,
    oldest_received: i64,
}

/// How many patients' chains are delivered at once. Each patient's batches still go one
/// after another (storage accepts a chain only in order); different patients' chains are
/// independent, and over HTTP/2 their batches share the one connection to storage.
pub const PATIENTS_AT_ONCE: usize = 8;

/// How many batches one patient may deliver back to back in one round: enough to drain a
/// backlog without waiting for the next round, few enough that other patients beyond
/// [`PATIENTS_AT_ONCE`] and a shutdown request get their turn.
pub const BATCHES_PER_ROUND: usize = 32;

/// Delivers sealed batches until `stop` is notified (then returns after the batches in
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

/// The patients with sealed batches waiting, oldest batch first.
async fn patients_queued(spool: &Spool) -> Result<Vec<String>, SpoolError> {
    spool
        .run(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT patient FROM batches GROUP BY patient ORDER BY MIN(id) LIMIT 512",
            )?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?);
            }
            Ok(out)
        })
        .await
}

/// `patient`'s oldest sealed batch after batch `after` (its chain order is the id order:
/// the batcher seals one patient's batches one at a time).
async fn next_batch(
    spool: &Spool,
    patient: &str,
    after: i64,
) -> Result<Option<Queued>, SpoolError> {
    let patient = patient.to_owned();
    spool
        .run(move |connection| {
            // Only its submission is read, and the oldest arrival through the partial
            // index on sealed readings: a backlog of large batches is not loaded at once.
            let mut statement = connection.prepare_cached(
                "SELECT b.id, b.submission,
                        COALESCE((SELECT MIN(received_us) FROM readings r WHERE r.batch = b.id), 0)
                 FROM batches b
                 WHERE b.patient = ?1 AND b.id > ?2
                 ORDER BY b.id LIMIT 1",
            )?;
            let mut rows = statement.query_map(rusqlite::params![patient, after], |row| {
                Ok(Queued {
                    id: row.get(0)?,
                    submission: row.get(1)?,
                    oldest_received: row.get(2)?,
                })
            })?;
            Ok(rows.next().transpose()?)
        })
        .await
}

/// Deletes an acknowledged batch and its readings (only ever called with storage's
/// matching receipt in hand).
async fn forget(spool: &Spool, metrics: &Metrics, id: i64, oldest: i64) -> Result<(), SpoolError> {
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
    Ok(())
}

async fn submit_queued(storage: &StorageClient, batch: &Queued) -> Result<BatchReceipt, Error> {
    let submission: BatchSubmission =
        serde_json::from_str(&batch.submission).map_err(|e| SpoolError::Corrupt {
            row: batch.id,
            reason: format!("stored batch does not parse: {e}"),
        })?;
    Ok(storage.submit(&submission).await?)
}

/// Delivers `patient`'s sealed batches in chain order, back to back, up to
/// [`BATCHES_PER_ROUND`]. Each batch is deleted from the spool only after storage's
/// receipt for it; that delete and the read of the next batch overlap the next batch's
/// trip to storage (the spool's writer thread and storage work at the same time).
/// Returns how many batches were delivered and deleted, and the error that stopped it.
async fn deliver_patient(
    spool: Spool,
    storage: Arc<StorageClient>,
    metrics: Arc<Metrics>,
    patient: String,
) -> (usize, Option<Error>) {
    let mut delivered = 0;
    let mut current = match next_batch(&spool, &patient, 0).await {
        Ok(batch) => batch,
        Err(error) => return (0, Some(error.into())),
    };
    // The batch whose receipt arrived and whose delete is still to be done.
    let mut acknowledged: Option<(i64, i64)> = None;
    let mut sent = 0;
    let mut failure = None;
    while let Some(batch) = current.take() {
        if sent == BATCHES_PER_ROUND {
            break;
        }
        sent += 1;
        let delete = async {
            match acknowledged.take() {
                Some((id, oldest)) => forget(&spool, &metrics, id, oldest).await.map(|()| 1),
                None => Ok(0),
            }
        };
        let (receipt, following, deleted) = tokio::join!(
            submit_queued(&storage, &batch),
            next_batch(&spool, &patient, batch.id),
            delete
        );
        match deleted {
            Ok(count) => delivered += count,
            Err(error) => {
                failure = Some(error.into());
            }
        }
        match receipt {
            // `submit` checked the receipt names exactly this header.
            Ok(_receipt) => acknowledged = Some((batch.id, batch.oldest_received)),
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
        if failure.is_some() {
            break;
        }
        match following {
            Ok(next) => current = next,
            Err(error) => {
                failure = Some(error.into());
                break;
            }
        }
    }
    if let Some((id, oldest)) = acknowledged {
        match forget(&spool, &metrics, id, oldest).await {
            Ok(()) => delivered += 1,
            Err(error) => {
                failure.get_or_insert(error.into());
            }
        }
    }
    (delivered, failure)
}

/// Delivers each waiting patient's sealed batches (up to [`PATIENTS_AT_ONCE`] patients at
/// a time, each patient's in chain order) and deletes the acknowledged ones. Returns how
/// many were delivered.
pub async fn deliver_round(
    spool: &Spool,
    storage: &Arc<StorageClient>,
    metrics: &Arc<Metrics>,
) -> Result<usize, Error> {
    let mut patients = patients_queued(spool).await?.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    let mut count = 0;
    let mut first_error = None;
    loop {
        while tasks.len() < PATIENTS_AT_ONCE
            && let Some(patient) = patients.next()
        {
            tasks.spawn(deliver_patient(
                spool.clone(),
                Arc::clone(storage),
                Arc::clone(metrics),
                patient,
            ));
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((delivered, error)) => {
                count += delivered;
                if let Some(error) = error {
                    first_error.get_or_insert(error);
                }
            }
            Err(join) => {
                first_error
                    .get_or_insert(Error::Forward(ForwardError::BadReceipt(join.to_string())));
            }
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
