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
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use rustls::ClientConfig;
use tokio::sync::Notify;
use wardseal_core::batch::BatchHeader;
use wardseal_core::exchange::{BatchReceipt, WardAssignments};
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::Timestamp;

use crate::client::{ClientOptions, Connection as Client, Endpoint};
use crate::error::{Error, ForwardError, SpoolError};
use crate::ingest::Replica;
use crate::metrics::Metrics;
use crate::spool::{QueuedBatch, Spool};

/// How long one exchange with storage may take before it is counted as failed and
/// retried (storage is idempotent on header hashes, so a late answer costs nothing).
pub const STORAGE_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The collector's client for storage: `wardseal-net`'s pooled mutual-TLS client (over
/// HTTP/2 every patient's deliveries share one connection; a broken one is replaced on
/// the next request).
#[derive(Debug, Clone)]
pub struct StorageClient {
    client: Client,
}

impl StorageClient {
    /// A client for `endpoint` with the collector's TLS client configuration.
    pub fn new(endpoint: Endpoint, config: Arc<ClientConfig>) -> Self {
        let options = ClientOptions {
            request_timeout: Some(STORAGE_REQUEST_TIMEOUT),
            ..ClientOptions::default()
        };
        Self {
            client: Client::new(&endpoint, config, options),
        }
    }

    /// Delivers one sealed batch as the spool stores it (`submission`: its JSON, sent
    /// byte for byte); returns storage's receipt, checked against `header`.
    pub async fn submit(
        &self,
        header: &BatchHeader,
        submission: Bytes,
    ) -> Result<BatchReceipt, ForwardError> {
        let reply = self
            .client
            .send(Method::POST, "/v1/batches", submission)
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(ForwardError::Refused {
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
            });
        }
        let receipt: BatchReceipt = serde_json::from_slice(&reply.body)
            .map_err(|e| ForwardError::BadReceipt(e.to_string()))?;
        if receipt.header_hash != header.hash() || receipt.sequence != header.sequence() {
            return Err(ForwardError::BadReceipt(format!(
                "receipt names batch {} of {}, not {} of {}",
                receipt.sequence,
                receipt.header_hash,
                header.sequence(),
                header.hash()
            )));
        }
        Ok(receipt)
    }

    /// The ward's current assignments.
    pub async fn assignments(&self, ward: &SubjectId) -> Result<WardAssignments, ForwardError> {
        let reply = self
            .client
            .send(
                Method::GET,
                &format!("/v1/wards/{ward}/assignments"),
                Bytes::new(),
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
            tracing::info!(
                after = ?since.elapsed(),
                failed_attempts = failures,
                "delivery to storage works again"
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
                metrics.forward_failures.inc();
                match &mut outage {
                    None => {
                        tracing::warn!(
                            %error,
                            "delivery to storage failed; readings stay in the spool, retrying with backoff up to 5 s (further failures counted in wardseal_collector_forward_failures_total)"
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

/// Deletes an acknowledged batch and its readings (only ever called with storage's
/// matching receipt in hand) and counts the delivery.
async fn forget(spool: &Spool, metrics: &Metrics, id: i64, oldest: i64) -> Result<(), SpoolError> {
    spool.forget_batch(id).await?;
    metrics.batches_delivered.inc();
    if oldest > 0 {
        metrics.set_forward_lag_micros(Timestamp::now().unix_micros().saturating_sub(oldest));
    }
    Ok(())
}

/// The part of a stored submission the receipt is checked against.
#[derive(serde::Deserialize)]
struct StoredHeader {
    header: BatchHeader,
}

/// Sends a sealed batch as the spool holds it; only its header is read back, to check
/// storage's receipt.
async fn submit_queued(
    storage: &StorageClient,
    batch: &QueuedBatch,
) -> Result<BatchReceipt, Error> {
    let stored: StoredHeader =
        serde_json::from_str(&batch.submission).map_err(|e| SpoolError::Corrupt {
            row: batch.id,
            reason: format!("stored batch does not parse: {e}"),
        })?;
    Ok(storage
        .submit(&stored.header, Bytes::from(batch.submission.clone()))
        .await?)
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
    patient: SubjectId,
) -> (usize, Option<Error>) {
    let mut delivered = 0;
    let mut current = match spool.next_batch(&patient, 0).await {
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
            spool.next_batch(&patient, batch.id),
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
    let mut patients = spool.patients_queued().await?.into_iter();
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
            tracing::warn!(%error, delivered = count, "a delivery round stopped early");
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
    spool.bind_assignments(pairs).await
}
