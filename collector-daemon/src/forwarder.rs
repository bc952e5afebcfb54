//! Delivery to storage: sealed batches go out over mutual TLS with the collector's
//! certificate, each patient's in chain order, at least once, with exponential backoff
//! while storage is unreachable. A batch and its readings leave the spool only after
//! storage's [`BatchReceipt`] for exactly that header; storage is idempotent on header
//! hashes, so a repeated delivery (after a crash between receipt and delete) is stored
//! once.
//!
//! Storage classes its refusals: a refusal marked `"permanent": true` (a deactivated
//! device, a tightened rule, a revoked certificate, …) will come again however often the
//! batch is sent, so the batch goes to the [`quarantine`](crate::quarantine), whole, and
//! the patient's chain continues past it with a gap record signed by the patient's
//! current card (`POST /v1/batches/gaps`). Everything else (no connection, 5xx, 429, a
//! body without the field, a chain gap) is transient and retried with backoff as before.
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
use wardseal_core::exchange::{BatchReceipt, GapReceipt, GapSubmission, WardAssignments};
use wardseal_core::gap::{GapRecord, GapRecordParts};
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::Timestamp;
use wardseal_net::wire::ErrorBody;

use crate::batcher::CardSlots;
use crate::client::{ClientOptions, Connection as Client, Endpoint};
use crate::error::{Error, ForwardError, SpoolError};
use crate::ingest::Replica;
use crate::metrics::Metrics;
use crate::quarantine::{StorageRefusal, Withheld};
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
            return Err(refusal(reply.status, &reply.body));
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

    /// Declares a gap in a patient's chain; returns storage's receipt, checked against
    /// the record.
    pub async fn declare_gap(
        &self,
        submission: &GapSubmission,
    ) -> Result<GapReceipt, ForwardError> {
        let body = serde_json::to_vec(submission)
            .map_err(|e| ForwardError::BadReceipt(format!("cannot encode the gap record: {e}")))?;
        let reply = self
            .client
            .send(Method::POST, "/v1/batches/gaps", Bytes::from(body))
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(refusal(reply.status, &reply.body));
        }
        let receipt: GapReceipt = serde_json::from_slice(&reply.body)
            .map_err(|e| ForwardError::BadReceipt(e.to_string()))?;
        if receipt.withheld != submission.gap.withheld()
            || receipt.sequence != submission.gap.sequence()
        {
            return Err(ForwardError::BadReceipt(format!(
                "gap receipt names batch {} of {}, not {} of {}",
                receipt.sequence,
                receipt.withheld,
                submission.gap.sequence(),
                submission.gap.withheld()
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

/// Storage's refusal as an error: permanent only when storage says so in its body and
/// the status is not a server error or a rate limit (those pass).
fn refusal(status: u16, body: &[u8]) -> ForwardError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) if error.permanent && status < 500 && status != 429 => ForwardError::Permanent {
            status,
            code: error.code,
            message: error.message,
        },
        _ => ForwardError::Refused {
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// What delivery works with: the spool, storage, the metrics, the cards present (a gap
/// record is signed by the patient's current card) and the collector's id.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The spool.
    pub spool: Spool,
    /// Storage.
    pub storage: Arc<StorageClient>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The cards present now.
    pub cards: Arc<CardSlots>,
    /// The collector's subject id (the ward), named in gap records.
    pub collector: SubjectId,
    /// Where the quarantine's technical alert is raised.
    pub alerts: crate::alerts::Alerts,
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
pub async fn run(delivery: Delivery, sealed: Arc<Notify>, stop: Arc<Notify>) {
    let metrics = Arc::clone(&delivery.metrics);
    let mut backoff = Duration::from_millis(100);
    // One warning when delivery starts failing and one when it works again: an outage of
    // hours must not write a line every few seconds (the failures are counted in metrics).
    let mut outage: Option<(std::time::Instant, u64)> = None;
    loop {
        let round = deliver_round(&delivery).await;
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
    id: i64,
    submission: &str,
) -> Result<BatchReceipt, Error> {
    let header = stored_header(id, submission)?;
    Ok(storage
        .submit(&header, Bytes::from(submission.to_owned()))
        .await?)
}

fn stored_header(id: i64, submission: &str) -> Result<BatchHeader, SpoolError> {
    let stored: StoredHeader =
        serde_json::from_str(submission).map_err(|e| SpoolError::Corrupt {
            row: id,
            reason: format!("stored batch does not parse: {e}"),
        })?;
    Ok(stored.header)
}

/// Why a patient's delivery stopped.
enum Stopped {
    /// Nothing left (or the round's share delivered).
    Done,
    /// A batch was quarantined: its gap is declared next, then delivery goes on.
    Quarantined,
    /// A failure (retried next round).
    Failed(Error),
}

/// Delivers `patient`'s sealed batches in chain order; a batch refused for good is
/// quarantined and its gap declared (signed by the patient's current card) before the
/// next. Returns how many batches were delivered and the error that stopped it.
async fn deliver_patient(delivery: Delivery, patient: SubjectId) -> (usize, Option<Error>) {
    let mut delivered = 0;
    loop {
        match declare_gaps(&delivery, &patient).await {
            Ok(true) => {}
            Ok(false) => return (delivered, None),
            Err(error) => return (delivered, Some(error)),
        }
        let (count, stopped) = deliver_batches(&delivery, &patient).await;
        delivered += count;
        match stopped {
            Stopped::Done => return (delivered, None),
            Stopped::Quarantined => {}
            Stopped::Failed(error) => return (delivered, Some(error)),
        }
    }
}

/// Declares `patient`'s undeclared gaps in chain order, each signed by the patient's
/// card present now. Returns `false` when there is a gap to declare and no card: the
/// declaration and the patient's later batches wait, as readings wait for a card.
async fn declare_gaps(delivery: &Delivery, patient: &SubjectId) -> Result<bool, Error> {
    let pending = delivery.spool.undeclared_gaps(patient).await?;
    if pending.is_empty() {
        return Ok(true);
    }
    let Some(card) = delivery.cards.card(patient) else {
        tracing::debug!(%patient, gaps = pending.len(), "a gap declaration waits for the patient's card");
        return Ok(false);
    };
    for withheld in pending {
        let reason =
            if GapRecord::new(gap_parts(delivery, &withheld, &withheld.code, &card)).is_ok() {
                withheld.code.clone()
            } else {
                // Storage's codes are snake_case; anything else is recorded as a plain refusal
                // (the full message stays in the quarantine).
                "refused".to_owned()
            };
        let gap = GapRecord::new(gap_parts(delivery, &withheld, &reason, &card))?;
        let message = gap.canonical_bytes();
        let signer = Arc::clone(&card.signer);
        let signature = tokio::task::spawn_blocking(move || signer.sign_message(&message))
            .await
            .map_err(|e| {
                wardseal_card::Error::Signing(format!("the signing task failed: {e}"))
            })??;
        let submission = GapSubmission {
            gap,
            signature,
            patient_certificate: card.certificate.clone(),
        };
        delivery.storage.declare_gap(&submission).await?;
        delivery.spool.gap_declared(withheld.id).await?;
        tracing::warn!(
            %patient,
            sequence = withheld.sequence,
            withheld = %withheld.header_hash,
            reason = %reason,
            "declared a gap in the patient's chain for a quarantined batch; later batches continue"
        );
    }
    Ok(true)
}

fn gap_parts(
    delivery: &Delivery,
    withheld: &Withheld,
    reason: &str,
    card: &crate::batcher::Card,
) -> GapRecordParts {
    GapRecordParts {
        patient: withheld.patient.clone(),
        collector: delivery.collector.clone(),
        sequence: withheld.sequence,
        previous: withheld.previous,
        withheld: withheld.header_hash,
        reason: reason.to_owned(),
        declared_at: Timestamp::now(),
        algorithm: card.signer.algorithm(),
    }
}

/// Moves a batch storage refused for good to the quarantine and raises the technical
/// alert (a warning with the batch's fields and `wardseal_collector_batches_quarantined`).
async fn quarantine(
    delivery: &Delivery,
    patient: &SubjectId,
    batch: &QueuedBatch,
    refusal: StorageRefusal,
) -> Result<(), Error> {
    let header = stored_header(batch.id, &batch.submission)?;
    let now = Timestamp::now().unix_micros();
    let alert = wardseal_core::alert::Alert::technical(
        delivery.alerts.ward().clone(),
        quarantine_alert(
            patient,
            header.hash(),
            now,
            format!(
                "batch {} of {patient} ({} readings) was refused by storage for good ({}: {}); it is quarantined in the spool, later readings keep flowing",
                header.sequence(),
                header.count(),
                refusal.code,
                refusal.message
            ),
        ),
    );
    let queued = crate::alerts::outbox_entry(&alert)?;
    delivery
        .spool
        .quarantine_batch(
            batch.id,
            header.hash(),
            header.previous(),
            refusal.clone(),
            now,
            queued,
        )
        .await?;
    delivery.metrics.batches_quarantined.inc();
    tracing::warn!(
        alert = "batch_quarantined",
        %patient,
        quarantine_id = batch.id,
        sequence = header.sequence(),
        header_hash = %header.hash(),
        readings = header.count(),
        status = refusal.status,
        code = %refusal.code,
        message = %refusal.message,
        "storage refused a batch for good; it is quarantined in the spool and the patient's later batches continue (`wardseal-collector quarantine list`)"
    );
    delivery.alerts.hand_off(vec![alert]);
    Ok(())
}

/// The batch-quarantined alert of the batch with header `header_hash`, quarantined at
/// `since_us` (the subject and time make its id, for raising and resolving alike).
fn quarantine_alert(
    patient: &SubjectId,
    header_hash: wardseal_core::hash::Hash,
    since_us: i64,
    message: String,
) -> wardseal_core::alert::TechnicalAlert {
    wardseal_core::alert::TechnicalAlert {
        code: wardseal_core::alert::AlertCode::BatchQuarantined,
        subject: header_hash.to_string(),
        since_us,
        patient: Some(patient.clone()),
        device: None,
        priority: wardseal_core::alert::Priority::Medium,
        message,
    }
}

/// Resolves the alerts of quarantined batches that were delivered after a resubmission
/// or resolved by an administrator (`wardseal-collector quarantine resolve`, maybe from
/// another process): each once, recorded in the batch's action log.
async fn resolve_quarantine_alerts(delivery: &Delivery) -> Result<(), Error> {
    for (id, patient, header_hash, since) in delivery.spool.quarantine_alerts_to_resolve().await? {
        delivery
            .alerts
            .resolve_technical(quarantine_alert(
                &patient,
                header_hash,
                since,
                format!("quarantined batch {id} of {patient} was delivered or resolved"),
            ))
            .await;
        delivery.spool.quarantine_alert_resolved(id).await?;
    }
    Ok(())
}

/// Sends `patient`'s sealed batches in chain order, back to back, up to
/// [`BATCHES_PER_ROUND`]; stops at a batch refused for good, after quarantining it. Each batch is deleted from the spool only after storage's
/// receipt for it; that delete and the read of the next batch overlap the next batch's
/// trip to storage (the spool's writer thread and storage work at the same time).
/// Returns how many batches were delivered and deleted, and why it stopped.
async fn deliver_batches(delivery: &Delivery, patient: &SubjectId) -> (usize, Stopped) {
    let Delivery {
        spool,
        storage,
        metrics,
        ..
    } = delivery;
    let mut delivered = 0;
    let mut current = match spool.next_batch(patient, 0).await {
        Ok(batch) => batch,
        Err(error) => return (0, Stopped::Failed(error.into())),
    };
    let mut quarantined = false;
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
                Some((id, oldest)) => forget(spool, metrics, id, oldest).await.map(|()| 1),
                None => Ok(0),
            }
        };
        let (receipt, following, deleted) = tokio::join!(
            submit_queued(storage, batch.id, &batch.submission),
            spool.next_batch(patient, batch.id),
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
            Err(Error::Forward(ForwardError::Permanent {
                status,
                code,
                message,
            })) if failure.is_none() => {
                let refusal = StorageRefusal {
                    status,
                    code,
                    message,
                };
                match quarantine(delivery, patient, &batch, refusal).await {
                    Ok(()) => quarantined = true,
                    Err(error) => failure = Some(error),
                }
                break;
            }
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
        match forget(spool, metrics, id, oldest).await {
            Ok(()) => delivered += 1,
            Err(error) => {
                failure.get_or_insert(error.into());
            }
        }
    }
    let stopped = match failure {
        Some(error) => Stopped::Failed(error),
        None if quarantined => Stopped::Quarantined,
        None => Stopped::Done,
    };
    (delivered, stopped)
}

/// Sends the batches an administrator marked for resubmission (their gaps declared):
/// storage accepts each in its gap after a fix; one refused for good again goes back to
/// the quarantine. Returns how many were delivered.
async fn resubmit(delivery: &Delivery) -> Result<usize, Error> {
    let mut delivered = 0;
    for withheld in delivery.spool.resubmissions().await? {
        match submit_queued(&delivery.storage, withheld.id, &withheld.submission).await {
            Ok(_receipt) => {
                delivery.spool.resubmission_delivered(withheld.id).await?;
                delivery.metrics.batches_delivered.inc();
                delivered += 1;
                tracing::info!(
                    patient = %withheld.patient,
                    sequence = withheld.sequence,
                    quarantine_id = withheld.id,
                    "storage accepted a resubmitted batch; its gap is filled"
                );
            }
            Err(Error::Forward(ForwardError::Permanent {
                status,
                code,
                message,
            })) => {
                tracing::warn!(
                    patient = %withheld.patient,
                    sequence = withheld.sequence,
                    quarantine_id = withheld.id,
                    status,
                    code = %code,
                    message = %message,
                    "storage refused a resubmitted batch for good again; it stays quarantined"
                );
                delivery
                    .spool
                    .resubmission_refused(
                        withheld.id,
                        StorageRefusal {
                            status,
                            code,
                            message,
                        },
                    )
                    .await?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(delivered)
}

/// Delivers each waiting patient's sealed batches (up to [`PATIENTS_AT_ONCE`] patients at
/// a time, each patient's in chain order; gaps of quarantined batches declared first) and
/// deletes the acknowledged ones, then the batches marked for resubmission. Returns how
/// many were delivered.
pub async fn deliver_round(delivery: &Delivery) -> Result<usize, Error> {
    let mut queued = delivery.spool.patients_queued().await?;
    for patient in delivery.spool.patients_with_undeclared_gaps().await? {
        if !queued.contains(&patient) {
            queued.push(patient);
        }
    }
    let mut patients = queued.into_iter();
    let mut tasks = tokio::task::JoinSet::new();
    let mut count = 0;
    let mut first_error = None;
    loop {
        while tasks.len() < PATIENTS_AT_ONCE
            && let Some(patient) = patients.next()
        {
            tasks.spawn(deliver_patient(delivery.clone(), patient));
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
    match resubmit(delivery).await {
        Ok(delivered) => count += delivered,
        Err(error) => {
            first_error.get_or_insert(error);
        }
    }
    if let Err(error) = resolve_quarantine_alerts(delivery).await {
        first_error.get_or_insert(error);
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

/// Applies a ward's assignments: updates the replica and binds each waiting reading to
/// the assignment valid at its measurement time.
pub async fn apply_assignments(
    spool: &Spool,
    replica: &Replica,
    assignments: &WardAssignments,
) -> Result<usize, SpoolError> {
    let assignments = replica.set_assignments(assignments);
    spool.bind_assignments(assignments).await
}

/// Raises the technical alert for readings that wait longer than `bound` for an
/// assignment valid at their measurement time: `unassigned_readings` (pushed to storage
/// like every alert), a warning with the count and the oldest wait, and
/// `wardseal_collector_readings_unassigned`. `alerted` holds when the alerted wait began;
/// when no reading waits past the bound any more, the alert is resolved and the gauge is
/// 0 again.
pub async fn check_unassigned(
    spool: &Spool,
    metrics: &Metrics,
    bound: Duration,
    alerts: &crate::alerts::Alerts,
    alerted: &mut Option<i64>,
) -> Result<u64, SpoolError> {
    let (count, oldest) = spool.unbound().await?;
    let waited = oldest.map_or(0, |oldest| {
        Timestamp::now().unix_micros().saturating_sub(oldest)
    });
    let bound_micros = i64::try_from(bound.as_micros()).unwrap_or(i64::MAX);
    let late = if count > 0 && waited >= bound_micros {
        count
    } else {
        0
    };
    metrics
        .readings_unassigned
        .set(i64::try_from(late).unwrap_or(i64::MAX));
    let facts = |since: i64, message: String| wardseal_core::alert::TechnicalAlert {
        code: wardseal_core::alert::AlertCode::UnassignedReadings,
        subject: "unassigned".into(),
        since_us: since,
        patient: None,
        device: None,
        priority: wardseal_core::alert::Priority::Medium,
        message,
    };
    if late > 0 {
        tracing::warn!(
            alert = "readings_unassigned",
            readings = count,
            oldest_waiting = ?Duration::from_micros(u64::try_from(waited).unwrap_or(0)),
            "readings wait for a device assignment valid at their measurement time; enter the assignment (with the right `since`) at storage"
        );
        if alerted.is_none() {
            let since = oldest.unwrap_or_else(|| Timestamp::now().unix_micros());
            *alerted = Some(since);
            alerts
                .raise_technical(facts(
                    since,
                    format!(
                        "{count} readings wait for a device assignment valid at their measurement time; enter the assignment (with the right start) at storage"
                    ),
                ))
                .await;
        }
    } else if let Some(since) = alerted.take() {
        alerts
            .resolve_technical(facts(
                since,
                "no reading waits for an assignment any more".into(),
            ))
            .await;
    }
    Ok(late)
}
