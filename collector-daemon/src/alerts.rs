//! Alerts raised by the collector (the model is `wardseal_core::alert`).
//!
//! - **Clinical** alerts are raised at ingest, before batching (seconds matter): when an
//!   accepted reading crossed an alarm limit, [`Ingest`](crate::ingest::Ingest) puts the
//!   alert in the spool's outbox in the same transaction as the reading, before the
//!   device's 202, so no alert is lost across a crash and none waits for a commit of its
//!   own; then it is handed to the sender in memory ([`Alerts::hand_off`]).
//! - **Technical** alerts come from [`watch`]: a device silent longer than its expected
//!   period, a patient's readings waiting for an absent card, the spool filling. Any
//!   other part of the collector raises one with [`Alerts::raise_technical`] (a batch
//!   quarantined, readings waiting for an assignment).
//! - A technical alert is resolved by the collector when its condition clears (the device
//!   is heard again, the card is back, the spool drains, the quarantined batch is
//!   delivered or resolved, the readings are bound): [`Alerts::resolve_technical`] queues
//!   the alert in state `resolved` in the same outbox. Clinical alerts are resolved by a
//!   clinician at storage.
//! - [`send`] pushes the outbox to storage (`POST /v1/alerts`) at once over the pooled
//!   mutual-TLS client, retrying with backoff until storage acknowledges; only then is the
//!   alert removed from the outbox. Storage is idempotent on the alert id.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use tokio::sync::{Notify, mpsc};
use wardseal_core::alert::{Alert, AlertCode, AlertState, Priority, TechnicalAlert};
use wardseal_core::hash::Hash;
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::Timestamp;

use crate::batcher::CardSlots;
use crate::client::Connection as Client;
use crate::config::AlertsSection;
use crate::error::SpoolError;
use crate::spool::{QueuedAlert, Spool};

/// How many outbox alerts are sent at once.
const SEND_AT_ONCE: usize = 64;

/// Alerts handed to the sender as they are raised (beyond this many waiting, the sender
/// finds them in the outbox instead).
const HANDOFF: usize = 1024;

/// The handle every part of the collector raises alerts through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerts {
    spool: Spool,
    ward: SubjectId,
    fresh: mpsc::Sender<QueuedAlert>,
}

/// The sender's end of [`Alerts`]: the alerts raised since, handed over in memory so the
/// push to storage does not wait for a read of the outbox.
#[derive(Debug)]
pub struct Raised(mpsc::Receiver<QueuedAlert>);

impl Alerts {
    /// Alerts of `ward`, queued in `spool`'s outbox; the other half goes to [`send`].
    pub fn new(spool: Spool, ward: SubjectId) -> (Self, Raised) {
        let (fresh, raised) = mpsc::channel(HANDOFF);
        let alerts = Self { spool, ward, fresh };
        (alerts, Raised(raised))
    }

    /// The ward the alerts come from.
    pub fn ward(&self) -> &SubjectId {
        &self.ward
    }

    /// Makes `alerts` durable in the outbox and hands them to the sender.
    pub async fn raise_all(&self, alerts: Vec<Alert>) -> Result<(), SpoolError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(alerts.len());
        for alert in &alerts {
            let queued = outbox_entry(alert)?;
            rows.push((queued.id, queued.alert, alert.raised_at_us));
        }
        self.spool.queue_alerts(rows).await?;
        self.hand_off(alerts);
        Ok(())
    }

    /// Hands `alerts`, already durable in the outbox, to the sender (never waits: a full
    /// hand-off leaves an alert to the outbox scan) and logs each.
    pub fn hand_off(&self, alerts: Vec<Alert>) {
        for alert in alerts {
            match alert.state {
                AlertState::Resolved => tracing::info!(
                    id = %alert.id,
                    code = alert.code.name(),
                    patient = alert.patient.as_ref().map(SubjectId::as_str),
                    "technical alert resolved: its condition cleared"
                ),
                _ => tracing::warn!(
                    id = %alert.id,
                    code = alert.code.name(),
                    priority = alert.priority.name(),
                    patient = alert.patient.as_ref().map(SubjectId::as_str),
                    message = alert.message,
                    "alert raised"
                ),
            }
            if let Ok(queued) = outbox_entry(&alert) {
                let _ = self.fresh.try_send(queued);
            }
        }
    }

    /// Resolves the technical alert `facts` describe (the same facts it was raised with:
    /// they make its id), because its condition cleared. Failures are logged, like
    /// [`Alerts::raise_technical`]'s.
    pub async fn resolve_technical(&self, facts: TechnicalAlert) {
        let code = facts.code;
        let subject = facts.subject.clone();
        let alert = Alert::technical(self.ward.clone(), facts)
            .resolved_by_ward(Timestamp::now().unix_micros());
        if let Err(error) = self.raise_all(vec![alert]).await {
            tracing::error!(%error, code = code.name(), subject, "a technical alert's resolution could not be stored");
        }
    }

    /// Makes `alert` durable in the outbox and hands them to the sender.
    pub async fn raise(&self, alert: Alert) -> Result<(), SpoolError> {
        self.raise_all(vec![alert]).await
    }

    /// Raises the technical alert `facts` describe (any part of the collector may: a
    /// quarantined batch, readings waiting for an assignment, …). Failures are logged: a
    /// technical alert must never stop the work that noticed the condition.
    pub async fn raise_technical(&self, facts: TechnicalAlert) {
        let code = facts.code;
        let subject = facts.subject.clone();
        if let Err(error) = self.raise(Alert::technical(self.ward.clone(), facts)).await {
            tracing::error!(%error, code = code.name(), subject, "a technical alert could not be stored");
        }
    }
}

/// The outbox row of `alert`: keyed by its id when raised, and by a key derived from the
/// id when resolved (both may wait in the outbox together while storage is away).
pub fn outbox_entry(alert: &Alert) -> Result<QueuedAlert, SpoolError> {
    let json = serde_json::to_string(alert).map_err(|e| SpoolError::Corrupt {
        row: 0,
        reason: format!("an alert does not serialise: {e}"),
    })?;
    let id = match alert.state {
        AlertState::Resolved => {
            let mut bytes = b"wardseal/alert/resolution/v1\0".to_vec();
            bytes.extend_from_slice(alert.id.0.as_bytes());
            Hash::sha256(&bytes)
        }
        _ => alert.id.0,
    };
    Ok(QueuedAlert { id, alert: json })
}

/// When each device last sent an accepted reading (collector clock), for the silence
/// alert.
#[derive(Debug, Default)]
pub struct Activity {
    devices: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Clone)]
struct Seen {
    at_us: i64,
    patient: Option<SubjectId>,
    data_types: Vec<String>,
    /// The last-seen time the silence alert was raised for (its `since`), while raised.
    alerted: Option<i64>,
}

/// A device's silence, as its alert names it.
#[derive(Debug, Clone)]
struct Silence {
    device: String,
    patient: Option<SubjectId>,
    last_us: i64,
    bound_secs: u64,
}

impl Silence {
    fn facts(&self) -> TechnicalAlert {
        let last = self.last_us;
        TechnicalAlert {
            code: AlertCode::DeviceSilent,
            subject: self.device.clone(),
            since_us: last,
            patient: self.patient.clone(),
            device: Some(self.device.clone()),
            priority: Priority::Medium,
            message: format!(
                "device {} has sent nothing since {} (expected at least every {} s)",
                self.device,
                Timestamp::from_unix_micros(last)
                    .map_or_else(|_| last.to_string(), |t| t.to_string()),
                self.bound_secs
            ),
        }
    }
}

impl Activity {
    /// `device` (pure-identity URI) sent accepted readings of `data_type` at `at_us`.
    pub fn seen(&self, device: String, patient: Option<SubjectId>, data_type: &str, at_us: i64) {
        if let Ok(mut devices) = self.devices.lock() {
            let seen = devices.entry(device).or_insert_with(|| Seen {
                at_us,
                patient: None,
                data_types: Vec::new(),
                alerted: None,
            });
            seen.at_us = seen.at_us.max(at_us);
            if patient.is_some() {
                seen.patient = patient;
            }
            if !seen.data_types.iter().any(|t| t == data_type) {
                seen.data_types.push(data_type.to_owned());
            }
        }
    }

    fn bound(config: &AlertsSection, seen: &Seen) -> u64 {
        // A device sending several types is expected as often as its most frequent one.
        seen.data_types
            .iter()
            .filter_map(|t| config.silent_after_secs_by_type.get(t).copied())
            .min()
            .unwrap_or(config.silent_after_secs)
    }

    /// Devices silent past their bound at `now_us` and not yet alerted (marked alerted),
    /// and devices alerted as silent that were heard since (unmarked).
    fn silences(&self, config: &AlertsSection, now_us: i64) -> (Vec<Silence>, Vec<Silence>) {
        let Ok(mut devices) = self.devices.lock() else {
            return (Vec::new(), Vec::new());
        };
        let mut silent = Vec::new();
        let mut heard = Vec::new();
        for (device, seen) in devices.iter_mut() {
            let bound = Self::bound(config, seen);
            let bound_us = i64::try_from(bound.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
            match seen.alerted {
                Some(last) if seen.at_us > last => {
                    seen.alerted = None;
                    heard.push(Silence {
                        device: device.clone(),
                        patient: seen.patient.clone(),
                        last_us: last,
                        bound_secs: bound,
                    });
                }
                Some(_) => {}
                None if now_us.saturating_sub(seen.at_us) > bound_us => {
                    seen.alerted = Some(seen.at_us);
                    silent.push(Silence {
                        device: device.clone(),
                        patient: seen.patient.clone(),
                        last_us: seen.at_us,
                        bound_secs: bound,
                    });
                }
                None => {}
            }
        }
        (silent, heard)
    }
}

/// Checks the technical conditions every `config.check_interval_ms` until `stop`.
pub async fn watch(
    alerts: Alerts,
    activity: Arc<Activity>,
    cards: Arc<CardSlots>,
    spool_max_bytes: Option<u64>,
    config: AlertsSection,
    stop: Arc<Notify>,
) {
    let every = Duration::from_millis(config.check_interval_ms.max(10));
    // Patients whose readings wait for a card: since when (µs), and whether alerted.
    let mut waiting: HashMap<SubjectId, (i64, bool)> = HashMap::new();
    let mut filling_since: Option<i64> = None;
    loop {
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = Timestamp::now().unix_micros();
        let (silent, heard) = activity.silences(&config, now);
        for silence in silent {
            alerts.raise_technical(silence.facts()).await;
        }
        for silence in heard {
            alerts.resolve_technical(silence.facts()).await;
        }
        watch_cards(&alerts, &cards, &config, &mut waiting, now).await;
        if let Some(max) = spool_max_bytes.filter(|&max| max > 0) {
            let used = alerts.spool.size_bytes().await.unwrap_or(0);
            #[expect(clippy::cast_precision_loss, reason = "a fraction of the spool")]
            let fraction = used as f64 / max as f64;
            let filling = |since: i64, message: String| TechnicalAlert {
                code: AlertCode::SpoolFilling,
                subject: "spool".into(),
                since_us: since,
                patient: None,
                device: None,
                priority: Priority::High,
                message,
            };
            if fraction > config.spool_filling_fraction {
                if filling_since.is_none() {
                    filling_since = Some(now);
                    alerts
                        .raise_technical(filling(
                            now,
                            format!(
                                "the spool holds {used} of its {max} bytes ({:.0} %): storage is not taking batches fast enough",
                                fraction * 100.0
                            ),
                        ))
                        .await;
                }
            } else if let Some(since) = filling_since.take() {
                alerts
                    .resolve_technical(filling(
                        since,
                        format!("the spool drained to {used} of its {max} bytes"),
                    ))
                    .await;
            }
        }
    }
}

/// Raises `card_absent` for patients whose readings have waited longer than the bound
/// for a card that is not present.
async fn watch_cards(
    alerts: &Alerts,
    cards: &CardSlots,
    config: &AlertsSection,
    waiting: &mut HashMap<SubjectId, (i64, bool)>,
    now: i64,
) {
    let Ok(pending) = alerts.spool.patients_pending().await else {
        return;
    };
    let without: HashSet<SubjectId> = pending
        .into_iter()
        .filter(|patient| cards.card(patient).is_none())
        .collect();
    let card_absent = |patient: &SubjectId, since: i64| TechnicalAlert {
        code: AlertCode::CardAbsent,
        subject: patient.as_str().to_owned(),
        since_us: since,
        patient: Some(patient.clone()),
        device: None,
        priority: Priority::Medium,
        message: format!("readings of patient {patient} wait: their card is not in its reader"),
    };
    // A patient whose readings no longer wait for a card (it is back, or nothing waits).
    let cleared: Vec<(SubjectId, i64)> = waiting
        .iter()
        .filter(|(patient, (_, alerted))| *alerted && !without.contains(*patient))
        .map(|(patient, (since, _))| (patient.clone(), *since))
        .collect();
    waiting.retain(|patient, _| without.contains(patient));
    for (patient, since) in cleared {
        alerts.resolve_technical(card_absent(&patient, since)).await;
    }
    let bound =
        i64::try_from(config.card_absent_after_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    for patient in without {
        let (since, alerted) = waiting.entry(patient.clone()).or_insert((now, false));
        if !*alerted && now.saturating_sub(*since) >= bound {
            *alerted = true;
            alerts.raise_technical(card_absent(&patient, *since)).await;
        }
    }
}

/// Sends alerts to storage until `stop`: each one at once as it is raised (handed over
/// in `raised`), and whatever the outbox holds (left by a crash, a full hand-off or a
/// failed push) every second, or with backoff (100 ms doubling to 5 s) while storage
/// does not acknowledge. An alert leaves the outbox only on storage's 2xx.
///
/// Each push is a task of its own (at most 64 in flight): an alert never
/// waits for the answer to an earlier one (storage answers after writing the alert and
/// its access-log entry) nor for the outbox delete that follows an answer.
pub async fn send(alerts: Alerts, client: Client, mut raised: Raised, stop: Arc<Notify>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(SEND_AT_ONCE));
    let in_flight: Arc<Mutex<HashSet<Hash>>> = Arc::default();
    let (done, mut answers) = mpsc::unbounded_channel::<Option<String>>();
    let mut pushes = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    // The outbox is read at start (alerts of a previous run), then every second, or with
    // backoff after a failure.
    let mut next_scan = tokio::time::Instant::now();
    loop {
        // Finished pushes are reaped as they come (their answers arrive on `answers`).
        while pushes.try_join_next().is_some() {}
        let fresh = tokio::select! {
            () = stop.notified() => return,
            fresh = raised.0.recv() => fresh,
            answer = answers.recv() => {
                match answer.flatten() {
                    None if failing => {
                        tracing::info!("alerts reach storage again");
                        failing = false;
                        backoff = Duration::from_millis(100);
                        next_scan = tokio::time::Instant::now();
                    }
                    None => {}
                    Some(error) => {
                        if !failing {
                            tracing::warn!(
                                error,
                                "sending alerts to storage failed; they stay in the outbox, retrying with backoff up to 5 s"
                            );
                        }
                        failing = true;
                        next_scan = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                continue;
            }
            () = tokio::time::sleep_until(next_scan) => None,
        };
        let batch = match fresh {
            Some(first) => {
                let mut batch = vec![first];
                while batch.len() < SEND_AT_ONCE {
                    match raised.0.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                batch
            }
            None => {
                next_scan = tokio::time::Instant::now()
                    + if failing {
                        backoff
                    } else {
                        Duration::from_secs(1)
                    };
                match alerts.spool.queued_alerts(SEND_AT_ONCE).await {
                    Ok(queued) => queued,
                    Err(error) => {
                        tracing::error!(%error, "reading the alert outbox failed");
                        Vec::new()
                    }
                }
            }
        };
        for queued in batch {
            if let Ok(mut flying) = in_flight.lock()
                && !flying.insert(queued.id)
            {
                continue;
            }
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let alerts = alerts.clone();
            let client = client.clone();
            let in_flight = Arc::clone(&in_flight);
            let done = done.clone();
            pushes.spawn(async move {
                let id = queued.id;
                let answer = push(&alerts, &client, queued).await;
                if let Ok(mut flying) = in_flight.lock() {
                    flying.remove(&id);
                }
                drop(permit);
                let _ = done.send(answer);
            });
        }
    }
}

/// Pushes one alert to storage; removes it from the outbox once storage acknowledged it.
/// Returns the failure, if any.
async fn push(alerts: &Alerts, client: &Client, queued: QueuedAlert) -> Option<String> {
    let reply = client
        .send(Method::POST, "/v1/alerts", Bytes::from(queued.alert))
        .await;
    match reply {
        Ok(reply) if (200..300).contains(&reply.status) => {
            if let Err(error) = alerts.spool.forget_alert(queued.id).await {
                tracing::error!(%error, "removing a delivered alert from the outbox failed");
            }
            None
        }
        Ok(reply) => Some(format!(
            "storage answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )),
        Err(error) => Some(error.to_string()),
    }
}
