//! Turns what storage did into numbered events of the subscriptions it concerns.
//!
//! Readings: the matcher reads the batch log (entries are numbered in commit order) from
//! its cursor, finds the subscriptions each batch's patient concerns, renders each
//! matching reading once as an Observation, and records the events and the new cursor in
//! one transaction: a batch is turned into events exactly once, even across a crash.
//!
//! Alerts: each `raised` or `acknowledged` event from the hub is recorded under a key
//! (`raised:<id>`, `acknowledged:<id>`) that makes recording it again a no-op; at start
//! and whenever the hub says events were missed, the alerts of the last
//! [`ALERT_RESCAN`] are looked at again, so an alert stored just before a crash is not
//! lost either.
//!
//! The hub only wakes the matcher; a timer does too, so a missed wake-up delays events
//! by at most [`POLL`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;
use tokio::sync::broadcast;
use wardseal_core::alert::{Alert, AlertEvent, AlertId, AlertState};
use wardseal_core::hash::Hash;
use wardseal_core::identity::Role;
use wardseal_core::reading::DataType;

use super::records::{self, BATCH_CURSOR, NewEvent, Subscription};
use super::render;
use super::topic::Topic;
use crate::api::Storage;
use crate::error::Error;
use crate::events::{StoredEvent, StoredReadings};
use crate::store::now_micros;

/// The longest a recorded batch waits for the matcher when no wake-up arrives.
pub const POLL: Duration = Duration::from_secs(1);
/// How far back alerts are looked at again after a start or a missed hub event.
pub const ALERT_RESCAN: Duration = Duration::from_secs(15 * 60);
/// Batch-log entries matched per transaction.
const BATCHES_PER_ROUND: i64 = 256;
/// The longest the matcher's batch-log position goes unwritten.
const CURSOR_WRITE: Duration = Duration::from_secs(1);
/// Announced batches whose readings the matcher keeps at most.
const RECENT_BATCHES: usize = 4096;

/// Matches until the task is aborted.
pub(crate) async fn run(storage: Arc<Storage>, mut hub: broadcast::Receiver<StoredEvent>) {
    let mut memory = Memory::default();
    let rescan_from = now_micros() - micros(ALERT_RESCAN);
    report(rescan_alerts(&storage, rescan_from).await, "rescan alerts");
    report(
        match_batches(&storage, &mut memory).await,
        "match stored batches",
    );
    let mut poll = tokio::time::interval(POLL);
    loop {
        let mut batches = false;
        let mut alerts = Vec::new();
        let mut missed = false;
        tokio::select! {
            _ = poll.tick() => batches = true,
            received = hub.recv() => {
                sort(received, &mut batches, &mut alerts, &mut missed, &mut memory);
                // Take whatever else is waiting, so a burst is matched in one round.
                loop {
                    match hub.try_recv() {
                        Err(broadcast::error::TryRecvError::Empty) => break,
                        received => sort(
                            received.map_err(|error| match error {
                                broadcast::error::TryRecvError::Lagged(n) => {
                                    broadcast::error::RecvError::Lagged(n)
                                }
                                _ => broadcast::error::RecvError::Closed,
                            }),
                            &mut batches,
                            &mut alerts,
                            &mut missed,
                            &mut memory,
                        ),
                    }
                }
            }
        }
        if missed {
            tracing::warn!("the subscription matcher fell behind the event hub; rescanning");
            let from = now_micros() - micros(ALERT_RESCAN);
            report(rescan_alerts(&storage, from).await, "rescan alerts");
            batches = true;
        }
        // An alert event that could not be recorded is tried again each round.
        memory.alerts.extend(alerts);
        let pending = std::mem::take(&mut memory.alerts);
        for event in pending {
            if let Err(error) = match_alert(&storage, &event).await {
                tracing::warn!(%error, "subscriptions: recording an alert event failed; retrying");
                memory.alerts.push(event);
            }
        }
        if !memory.alerts.is_empty() {
            batches = true;
        }
        if batches {
            report(
                match_batches(&storage, &mut memory).await,
                "match stored batches",
            );
        }
    }
}

/// What the matcher keeps between rounds.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// The batch-log position reached. Written to the database with the events of a
    /// round that records some, and at least every [`CURSOR_WRITE`] otherwise: after a
    /// crash the batches since the written position are looked at again, and those gave
    /// no event (a batch that gave events moved the written position in the same
    /// transaction).
    cursor: Option<i64>,
    /// When the position was last written.
    written: Option<Instant>,
    /// The readings of batches the hub announced and the matcher has not reached yet
    /// (saves reading them back from the database).
    recent: HashMap<Hash, Arc<StoredReadings>>,
    /// Alert events not recorded yet (the database failed): tried again each round.
    alerts: Vec<Arc<AlertEvent>>,
}

fn sort(
    received: Result<StoredEvent, broadcast::error::RecvError>,
    batches: &mut bool,
    alerts: &mut Vec<Arc<AlertEvent>>,
    missed: &mut bool,
    memory: &mut Memory,
) {
    match received {
        Ok(StoredEvent::Readings(stored)) => {
            *batches = true;
            if memory.recent.len() < RECENT_BATCHES {
                memory.recent.insert(stored.header_hash, stored);
            }
        }
        Ok(StoredEvent::Alert(event)) => alerts.push(event),
        Err(broadcast::error::RecvError::Lagged(_)) => *missed = true,
        // The hub outlives the matcher; if it is gone, the timer still polls.
        Err(broadcast::error::RecvError::Closed) => *batches = true,
    }
}

fn report<T>(result: Result<T, Error>, what: &str) {
    if let Err(error) = result {
        tracing::warn!(%error, "subscriptions: {what} failed; retrying");
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Whether the owner of `subscription` may read `patient`'s data now, by the read rules
/// (this check writes no access-log entry: deliveries do, see
/// [`super::delivery::readable`]).
pub(crate) async fn may_read(
    storage: &Storage,
    subscription: &Subscription,
    patient: &str,
) -> Result<bool, Error> {
    if subscription.owner_role == Role::Patient.name() {
        return Ok(subscription.owner == patient);
    }
    if subscription.owner_role == Role::Authority.name() {
        let Some(account) = storage.store.patient_account(patient).await? else {
            return Ok(false);
        };
        return Ok(matches!(
            storage
                .chain
                .authority_decision(&subscription.owner, account)
                .await?,
            wardseal_contracts::AuthorityDecision::Allowed { .. }
        ));
    }
    if storage
        .store
        .staff_assigned(&subscription.owner, patient)
        .await?
    {
        return Ok(true);
    }
    crate::access::consented(storage, &subscription.owner, patient).await
}

/// Whether `subscription` wants an event of `patient` that happened at `at_us`.
fn concerns(subscription: &Subscription, patient: &str, at_us: i64) -> bool {
    subscription
        .filters
        .patient
        .as_deref()
        .is_none_or(|wanted| wanted == patient)
        && at_us >= subscription.created_at
        && subscription.end_at.is_none_or(|end| at_us < end)
}

/// The subscriptions among `candidates` that concern `patient` at `at_us` and whose
/// owner may read the patient (answers remembered in `entitled` for this round).
async fn interested<'a>(
    storage: &Storage,
    candidates: &'a [Subscription],
    patient: &str,
    at_us: i64,
    entitled: &mut HashMap<(String, String), bool>,
) -> Result<Vec<&'a Subscription>, Error> {
    let mut found = Vec::new();
    for subscription in candidates {
        if !concerns(subscription, patient, at_us) {
            continue;
        }
        let key = (subscription.id.clone(), patient.to_owned());
        let allowed = match entitled.get(&key) {
            Some(allowed) => *allowed,
            None => {
                let allowed = may_read(storage, subscription, patient).await?;
                entitled.insert(key, allowed);
                allowed
            }
        };
        if allowed {
            found.push(subscription);
        }
    }
    Ok(found)
}

/// The data types a subscription's `code` filter lets through (`None`: all).
fn wanted_types(subscription: &Subscription) -> Option<HashSet<u16>> {
    let filter = subscription.filters.code.as_ref()?;
    Some(
        DataType::ALL
            .iter()
            .map(|data_type| data_type.code())
            .filter(|code| {
                let codings = render::codings(*code);
                filter.matches(
                    codings
                        .iter()
                        .map(|(system, code)| (*system, code.as_str())),
                )
            })
            .collect(),
    )
}

/// Records the events of every batch stored since the cursor; returns how many.
pub(crate) async fn match_batches(storage: &Storage, memory: &mut Memory) -> Result<usize, Error> {
    let mut recorded = 0;
    loop {
        let written = records::cursor(&storage.store, BATCH_CURSOR).await?;
        let cursor = memory.cursor.unwrap_or(written).max(written);
        let batches = sqlx::query(
            "SELECT l.entry, l.header_hash, b.patient, l.stored_at FROM batch_log l \
             JOIN batches b ON b.header_hash = l.header_hash \
             WHERE l.entry > $1 ORDER BY l.entry LIMIT $2",
        )
        .bind(cursor)
        .bind(BATCHES_PER_ROUND)
        .fetch_all(storage.store.pool())
        .await
        .map_err(|error| Error::database("read the batch log for subscriptions", error))?;
        let Some(last) = batches.last() else {
            if memory.cursor.is_some_and(|cursor| cursor > written)
                && memory.written.is_none_or(|at| at.elapsed() >= CURSOR_WRITE)
            {
                let mut transaction = storage
                    .store
                    .pool()
                    .begin()
                    .await
                    .map_err(|error| Error::database("begin", error))?;
                records::set_cursor(&mut transaction, BATCH_CURSOR, cursor).await?;
                transaction
                    .commit()
                    .await
                    .map_err(|error| Error::database("commit the subscription cursor", error))?;
                memory.written = Some(Instant::now());
            }
            return Ok(recorded);
        };
        let read = |error| Error::database("read the batch log for subscriptions", error);
        let mut last: i64 = last.try_get(0).map_err(read)?;
        // Read before the subscriptions: a subscription created after this reads only
        // batches stored after it, which come after `newest`.
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(entry) FROM batch_log")
            .fetch_one(storage.store.pool())
            .await
            .map_err(read)?;
        let subscriptions = records::on_topic(&storage.store, Topic::ObservationCreated).await?;
        if subscriptions.is_empty() {
            // Nobody listens: skip the whole log at once.
            last = newest.unwrap_or(last).max(last);
            memory.recent.clear();
        }
        // This round's announced batches (the rest stay for a later round).
        let mut announced: HashMap<Hash, Arc<StoredReadings>> = HashMap::new();
        for batch in &batches {
            let header_hash: Vec<u8> = batch.try_get(1).map_err(read)?;
            let hash = crate::store::hash_from(&header_hash);
            if let Some(stored) = memory.recent.remove(&hash) {
                announced.insert(hash, stored);
            }
        }
        let mut events: HashMap<String, Vec<NewEvent>> = HashMap::new();
        let mut entitled = HashMap::new();
        let now = now_micros();
        if !subscriptions.is_empty() {
            for batch in &batches {
                let header_hash: Vec<u8> = batch.try_get(1).map_err(read)?;
                let patient: String = batch.try_get(2).map_err(read)?;
                let stored_at: i64 = batch.try_get(3).map_err(read)?;
                let targets =
                    interested(storage, &subscriptions, &patient, stored_at, &mut entitled).await?;
                if targets.is_empty() {
                    continue;
                }
                let filters: Vec<Option<HashSet<u16>>> =
                    targets.iter().map(|s| wanted_types(s)).collect();
                // When every target filters by code, only their data types are read.
                let union: Option<HashSet<u16>> = if filters.iter().all(Option::is_some) {
                    Some(filters.iter().flatten().flatten().copied().collect())
                } else {
                    None
                };
                let only = match &union {
                    Some(codes) if codes.is_empty() => continue,
                    Some(codes) => {
                        let mut list: Vec<String> = codes.iter().map(u16::to_string).collect();
                        list.sort_unstable();
                        format!(" AND data_type IN ({})", list.join(", "))
                    }
                    None => String::new(),
                };
                let hash = crate::store::hash_from(&header_hash);
                let readings: Vec<(Hash, u16, Vec<u8>)> = match announced.get(&hash) {
                    Some(stored) => stored
                        .readings
                        .iter()
                        .filter(|row| {
                            union
                                .as_ref()
                                .is_none_or(|codes| codes.contains(&row.data_type))
                        })
                        .map(|row| (row.leaf_hash, row.data_type, row.canonical.clone()))
                        .collect(),
                    None => sqlx::query(&format!(
                        "SELECT leaf_hash, data_type, canonical FROM readings \
                         WHERE batch_hash = $1{only} ORDER BY position"
                    ))
                    .bind(header_hash)
                    .fetch_all(storage.store.pool())
                    .await
                    .map_err(|error| Error::database("read a batch's readings", error))?
                    .iter()
                    .map(|row| {
                        let leaf: Vec<u8> = row.try_get(0).map_err(read)?;
                        let data_type: i64 = row.try_get(1).map_err(read)?;
                        Ok((
                            crate::store::hash_from(&leaf),
                            u16::try_from(data_type).unwrap_or(u16::MAX),
                            row.try_get(2).map_err(read)?,
                        ))
                    })
                    .collect::<Result<_, Error>>()?,
                };
                for (leaf, data_type, canonical) in readings {
                    let wanted: Vec<&Subscription> = targets
                        .iter()
                        .zip(&filters)
                        .filter(|(_, types)| {
                            types
                                .as_ref()
                                .is_none_or(|types| types.contains(&data_type))
                        })
                        .map(|(subscription, _)| *subscription)
                        .collect();
                    if wanted.is_empty() {
                        continue;
                    }
                    let leaf_hex = leaf.to_string();
                    let Some(observation) = render::observation(&patient, &canonical, &leaf_hex)
                    else {
                        tracing::error!(leaf = leaf_hex, "a stored reading does not decode");
                        continue;
                    };
                    for subscription in wanted {
                        events
                            .entry(subscription.id.clone())
                            .or_default()
                            .push(NewEvent {
                                key: format!("obs:{leaf_hex}"),
                                at: now,
                                patient: patient.clone(),
                                focus_type: "Observation",
                                focus_id: leaf_hex.clone(),
                                resource: observation.clone(),
                            });
                    }
                }
            }
        }
        if events.is_empty() && memory.written.is_some_and(|at| at.elapsed() < CURSOR_WRITE) {
            memory.cursor = Some(last);
            continue;
        }
        let mut transaction = storage
            .store
            .pool()
            .begin()
            .await
            .map_err(|error| Error::database("begin", error))?;
        for (id, list) in &events {
            recorded += records::record(&mut transaction, id, list).await?;
        }
        records::set_cursor(&mut transaction, BATCH_CURSOR, last).await?;
        transaction
            .commit()
            .await
            .map_err(|error| Error::database("commit the subscription events", error))?;
        memory.cursor = Some(last);
        memory.written = Some(Instant::now());
        if !events.is_empty() {
            storage.subscriptions.wake();
        }
    }
}

/// The topic an alert event belongs to, and when it happened.
fn alert_topic(state: AlertState, alert: &Alert) -> Option<(Topic, &'static str, i64)> {
    match state {
        AlertState::Raised => Some((Topic::AlertRaised, "raised", alert.raised_at_us)),
        AlertState::Acknowledged => Some((
            Topic::AlertAcknowledged,
            "acknowledged",
            alert.acknowledged_at_us.unwrap_or(alert.raised_at_us),
        )),
        _ => None,
    }
}

/// Records the events of one alert event; returns how many.
pub(crate) async fn match_alert(storage: &Storage, event: &AlertEvent) -> Result<usize, Error> {
    let Some((topic, verb, at)) = alert_topic(event.event, &event.alert) else {
        return Ok(0);
    };
    // Alerts about no patient (a ward's technical alerts) concern no subscription.
    let Some(patient) = event.alert.patient.as_ref().map(|p| p.as_str().to_owned()) else {
        return Ok(0);
    };
    let subscriptions = records::on_topic(&storage.store, topic).await?;
    let mut entitled = HashMap::new();
    let targets = interested(storage, &subscriptions, &patient, at, &mut entitled).await?;
    if targets.is_empty() {
        return Ok(0);
    }
    let new = NewEvent {
        key: format!("{verb}:{}", event.alert.id),
        at,
        patient,
        focus_type: "Flag",
        focus_id: event.alert.id.to_string(),
        resource: render::flag(&event.alert),
    };
    let mut transaction = storage
        .store
        .pool()
        .begin()
        .await
        .map_err(|error| Error::database("begin", error))?;
    let mut recorded = 0;
    for subscription in targets {
        recorded += records::record(
            &mut transaction,
            &subscription.id,
            std::slice::from_ref(&new),
        )
        .await?;
    }
    transaction
        .commit()
        .await
        .map_err(|error| Error::database("commit the subscription events", error))?;
    if recorded > 0 {
        storage.subscriptions.wake();
    }
    Ok(recorded)
}

/// Looks again at the alerts raised or acknowledged since `since_us`.
pub(crate) async fn rescan_alerts(storage: &Storage, since_us: i64) -> Result<usize, Error> {
    let ids: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT id FROM alerts WHERE raised_at >= $1 OR acknowledged_at >= $1 ORDER BY raised_at",
    )
    .bind(since_us)
    .fetch_all(storage.store.pool())
    .await
    .map_err(|error| Error::database("read recent alerts", error))?;
    let mut recorded = 0;
    for id in ids {
        let Ok(id) = Hash::from_slice(&id).map(AlertId) else {
            continue;
        };
        let Some(alert) = crate::alerts::load(&storage.store, &id).await? else {
            continue;
        };
        let mut states = vec![AlertState::Raised];
        if alert.acknowledged_at_us.is_some() {
            states.push(AlertState::Acknowledged);
        }
        for state in states {
            recorded += match_alert(
                storage,
                &AlertEvent {
                    event: state,
                    alert: alert.clone(),
                },
            )
            .await?;
        }
    }
    Ok(recorded)
}
