//! The subscription tables (migration 0008): subscriptions, their numbered events and the
//! matcher's cursor over the batch log.
//!
//! Event numbers are taken inside the transaction that stores the events
//! (`UPDATE … SET events = events + n … RETURNING events` locks the subscription's row),
//! so a subscription's events are numbered 1, 2, 3… without gaps or repeats, whatever the
//! database.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::resource::{Channel, ChannelKind, Content, Filters, Status};
use super::topic::Topic;
use crate::error::Error;
use crate::store::Store;

/// The name of the matcher's position in the batch log.
pub(crate) const BATCH_CURSOR: &str = "batch_log";

/// A stored subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// The owner's subject id.
    pub owner: String,
    /// The owner's role name.
    pub owner_role: String,
    /// The owner's certificate (DER): every delivery re-checks what it may read.
    pub owner_certificate: Vec<u8>,
    /// The FHIR base it was created at (`https://host:port/fhir`).
    pub base_url: String,
    /// Its topic.
    pub topic: Topic,
    /// Its filters.
    pub filters: Filters,
    /// Its channel.
    pub channel: Channel,
    /// Why it exists (`Subscription.reason`).
    pub reason: String,
    /// When it ends, µs since the epoch.
    pub end_at: Option<i64>,
    /// Its status.
    pub status: Status,
    /// The last delivery error, while deliveries fail.
    pub error: Option<String>,
    /// When it was created, µs since the epoch.
    pub created_at: i64,
    /// The number of the last event recorded (events since the subscription started).
    pub events: i64,
    /// The number of the last event delivered.
    pub delivered: i64,
    /// Failed delivery attempts in a row.
    pub attempts: i64,
    /// No delivery before this time, µs since the epoch (backoff).
    pub next_attempt_at: i64,
}

impl Subscription {
    /// The status a client sees: `off` once past its end.
    pub fn status_now(&self, now_us: i64) -> Status {
        match self.end_at {
            Some(end) if end <= now_us => Status::Off,
            _ => self.status,
        }
    }
}

/// One notification event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its number in its subscription.
    pub number: i64,
    /// When it happened, µs since the epoch.
    pub at: i64,
    /// The patient it concerns.
    pub patient: String,
    /// The focus resource's type (`Observation`, `Flag`).
    pub focus_type: String,
    /// The focus resource's id.
    pub focus_id: String,
    /// The focus resource (JSON) as rendered when the event happened.
    pub resource: String,
}

/// An event before it has a number.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened, unique per subscription (`obs:<leaf>`, `raised:<alert>`…).
    pub key: String,
    /// When, µs since the epoch.
    pub at: i64,
    /// The patient.
    pub patient: String,
    /// The focus resource's type.
    pub focus_type: &'static str,
    /// The focus resource's id.
    pub focus_id: String,
    /// The focus resource (JSON).
    pub resource: String,
}

const COLUMNS: &str = "id, owner, owner_role, owner_certificate, base_url, topic, patient, code, \
     channel, endpoint, content, heartbeat_secs, max_count, reason, end_at, status, error, \
     created_at, events, delivered, attempts, next_attempt_at";

fn read<T>(row: &AnyRow, index: usize) -> Result<T, Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(index)
        .map_err(|error| Error::database("read a subscription", error))
}

fn from_row(row: &AnyRow) -> Result<Subscription, Error> {
    let topic: String = read(row, 5)?;
    let topic = Topic::from_canonical(&topic)
        .ok_or_else(|| Error::corrupt_row(format!("unknown subscription topic {topic}")))?;
    let patient: Option<String> = read(row, 6)?;
    let code: Option<String> = read(row, 7)?;
    let channel: String = read(row, 8)?;
    let content: String = read(row, 10)?;
    let status: String = read(row, 15)?;
    let heartbeat: Option<i64> = read(row, 11)?;
    let max_count: i64 = read(row, 12)?;
    Ok(Subscription {
        id: read(row, 0)?,
        owner: read(row, 1)?,
        owner_role: read(row, 2)?,
        owner_certificate: read(row, 3)?,
        base_url: read(row, 4)?,
        topic,
        filters: Filters {
            patient,
            code: code.as_deref().map(super::resource::CodeFilter::parse),
        },
        channel: Channel {
            kind: ChannelKind::from_code(&channel)
                .ok_or_else(|| Error::corrupt_row(format!("unknown channel {channel}")))?,
            endpoint: read(row, 9)?,
            content: Content::from_code(&content)
                .ok_or_else(|| Error::corrupt_row(format!("unknown content {content}")))?,
            heartbeat_secs: heartbeat.and_then(|secs| u32::try_from(secs).ok()),
            max_count: u32::try_from(max_count).unwrap_or(1).max(1),
        },
        reason: read(row, 13)?,
        end_at: read(row, 14)?,
        status: Status::from_code(&status)
            .ok_or_else(|| Error::corrupt_row(format!("unknown status {status}")))?,
        error: read(row, 16)?,
        created_at: read(row, 17)?,
        events: read(row, 18)?,
        delivered: read(row, 19)?,
        attempts: read(row, 20)?,
        next_attempt_at: read(row, 21)?,
    })
}

/// Stores a new subscription.
pub async fn insert(store: &Store, subscription: &Subscription) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO subscriptions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
    ))
    .bind(subscription.id.clone())
    .bind(subscription.owner.clone())
    .bind(subscription.owner_role.clone())
    .bind(subscription.owner_certificate.clone())
    .bind(subscription.base_url.clone())
    .bind(subscription.topic.canonical())
    .bind(subscription.filters.patient.clone())
    .bind(subscription.filters.code.as_ref().map(ToString::to_string))
    .bind(subscription.channel.kind.code())
    .bind(subscription.channel.endpoint.clone())
    .bind(subscription.channel.content.code())
    .bind(subscription.channel.heartbeat_secs.map(i64::from))
    .bind(i64::from(subscription.channel.max_count))
    .bind(subscription.reason.clone())
    .bind(subscription.end_at)
    .bind(subscription.status.code())
    .bind(subscription.error.clone())
    .bind(subscription.created_at)
    .bind(subscription.events)
    .bind(subscription.delivered)
    .bind(subscription.attempts)
    .bind(subscription.next_attempt_at)
    .execute(store.pool())
    .await
    .map_err(|error| Error::database("store the subscription", error))?;
    Ok(())
}

/// The subscription with id `id`.
pub async fn load(store: &Store, id: &str) -> Result<Option<Subscription>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
    ))
    .bind(id.to_owned())
    .fetch_optional(store.pool())
    .await
    .map_err(|error| Error::database("read the subscription", error))?;
    row.as_ref().map(from_row).transpose()
}

/// The subscriptions `owner` created.
pub async fn owned_by(store: &Store, owner: &str) -> Result<Vec<Subscription>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE owner = $1 ORDER BY created_at, id"
    ))
    .bind(owner.to_owned())
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("list the subscriptions", error))?;
    rows.iter().map(from_row).collect()
}

/// The subscriptions to `topic` that are not off.
pub async fn on_topic(store: &Store, topic: Topic) -> Result<Vec<Subscription>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE topic = $1 AND status <> 'off'"
    ))
    .bind(topic.canonical())
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("list the subscriptions of a topic", error))?;
    rows.iter().map(from_row).collect()
}

/// The rest-hook subscriptions that are not off.
pub async fn rest_hooks(store: &Store) -> Result<Vec<Subscription>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE channel = 'rest-hook' AND status <> 'off'"
    ))
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("list the rest-hook subscriptions", error))?;
    rows.iter().map(from_row).collect()
}

/// Deletes a subscription and its events.
pub async fn delete(store: &Store, id: &str) -> Result<bool, Error> {
    let mut transaction = store
        .pool()
        .begin()
        .await
        .map_err(|error| Error::database("begin", error))?;
    sqlx::query("DELETE FROM subscription_events WHERE subscription = $1")
        .bind(id.to_owned())
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("delete the subscription's events", error))?;
    let deleted = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
        .bind(id.to_owned())
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("delete the subscription", error))?
        .rows_affected();
    transaction
        .commit()
        .await
        .map_err(|error| Error::database("commit", error))?;
    Ok(deleted > 0)
}

/// Events `since..=until` of subscription `id`, in order, at most `limit`.
pub async fn events(
    store: &Store,
    id: &str,
    since: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<Event>, Error> {
    let rows = sqlx::query(
        "SELECT number, at, patient, focus_type, focus_id, resource FROM subscription_events \
         WHERE subscription = $1 AND number >= $2 AND number <= $3 ORDER BY number LIMIT $4",
    )
    .bind(id.to_owned())
    .bind(since)
    .bind(until)
    .bind(limit)
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("read the subscription's events", error))?;
    rows.iter()
        .map(|row| {
            let get = |error| Error::database("read a subscription event", error);
            Ok(Event {
                number: row.try_get(0).map_err(get)?,
                at: row.try_get(1).map_err(get)?,
                patient: row.try_get(2).map_err(get)?,
                focus_type: row.try_get(3).map_err(get)?,
                focus_id: row.try_get(4).map_err(get)?,
                resource: row.try_get(5).map_err(get)?,
            })
        })
        .collect()
}

/// Records `events` for subscription `id` (numbered after its last), skipping any whose
/// key it already has; in `transaction`.
pub(crate) async fn record(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    events: &[NewEvent],
) -> Result<usize, Error> {
    // A write first: SQLite takes its write lock here (waiting for it as configured),
    // before this transaction has read anything a concurrent writer could make stale;
    // PostgreSQL locks the subscription's row, so event numbers are taken one at a time.
    sqlx::query("UPDATE subscriptions SET events = events WHERE id = $1")
        .bind(id.to_owned())
        .execute(&mut **transaction)
        .await
        .map_err(|error| Error::database("lock the subscription's events", error))?;
    let mut fresh = Vec::with_capacity(events.len());
    for event in events {
        let seen: Option<i64> = sqlx::query_scalar(
            "SELECT number FROM subscription_events WHERE subscription = $1 AND event_key = $2",
        )
        .bind(id.to_owned())
        .bind(event.key.clone())
        .fetch_optional(&mut **transaction)
        .await
        .map_err(|error| Error::database("look for a recorded event", error))?;
        if seen.is_none() && !fresh.iter().any(|f: &&NewEvent| f.key == event.key) {
            fresh.push(event);
        }
    }
    if fresh.is_empty() {
        return Ok(0);
    }
    let count = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query_scalar(
        "UPDATE subscriptions SET events = events + $1 WHERE id = $2 RETURNING events",
    )
    .bind(count)
    .bind(id.to_owned())
    .fetch_one(&mut **transaction)
    .await
    .map_err(|error| Error::database("number the subscription's events", error))?;
    let mut number = last - count;
    for event in fresh {
        number += 1;
        sqlx::query(
            "INSERT INTO subscription_events (subscription, number, event_key, at, patient, \
             focus_type, focus_id, resource) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_owned())
        .bind(number)
        .bind(event.key.clone())
        .bind(event.at)
        .bind(event.patient.clone())
        .bind(event.focus_type)
        .bind(event.focus_id.clone())
        .bind(event.resource.clone())
        .execute(&mut **transaction)
        .await
        .map_err(|error| Error::database("store a subscription event", error))?;
    }
    Ok(usize::try_from(count).unwrap_or_default())
}

/// The matcher's position `name`, 0 before the first.
pub(crate) async fn cursor(store: &Store, name: &str) -> Result<i64, Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM subscription_cursor WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(store.pool())
            .await
            .map_err(|error| Error::database("read the subscription cursor", error))?;
    Ok(position.unwrap_or(0))
}

/// Moves the matcher's position `name` to `position`, in `transaction`.
pub(crate) async fn set_cursor(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    position: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO subscription_cursor (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(name.to_owned())
    .bind(position)
    .execute(&mut **transaction)
    .await
    .map_err(|error| Error::database("move the subscription cursor", error))?;
    Ok(())
}

/// Records a successful delivery up to event `delivered` (the subscription is active).
pub async fn delivered(store: &Store, id: &str, delivered: i64) -> Result<(), Error> {
    sqlx::query(
        "UPDATE subscriptions SET delivered = CASE WHEN delivered < $1 THEN $1 ELSE delivered END, \
         attempts = 0, next_attempt_at = 0, status = 'active', error = NULL \
         WHERE id = $2 AND status <> 'off'",
    )
    .bind(delivered)
    .bind(id.to_owned())
    .execute(store.pool())
    .await
    .map_err(|error| Error::database("record a delivery", error))?;
    Ok(())
}

/// Records a failed delivery: the subscription is in error and waits until `retry_at`.
pub async fn failed(store: &Store, id: &str, error: &str, retry_at: i64) -> Result<(), Error> {
    sqlx::query(
        "UPDATE subscriptions SET attempts = attempts + 1, next_attempt_at = $1, \
         status = 'error', error = $2 WHERE id = $3 AND status <> 'off'",
    )
    .bind(retry_at)
    .bind(error.to_owned())
    .bind(id.to_owned())
    .execute(store.pool())
    .await
    .map_err(|error| Error::database("record a failed delivery", error))?;
    Ok(())
}
