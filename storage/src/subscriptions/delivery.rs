//! The rest-hook worker: delivers each subscription's events in number order to its https
//! endpoint, with storage's own certificate (the endpoint's server certificate is checked
//! against the hospital CA, as every wardseal connection is), through wardseal-net's one
//! HTTP client.
//!
//! Per subscription: a handshake first (once per server start), then notifications of at
//! most `max_count` events each, one at a time; the `delivered` mark moves only after a
//! 2xx. A failure records the reason (status `error`) and the next attempt waits
//! [`backoff`]: the first retry after `retry_first`, doubling to `retry_max`. With a
//! heartbeat period, an idle subscription gets a `heartbeat` notification each period.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rustls::pki_types::CertificateDer;
use wardseal_net::client::{Client, ClientOptions, ClientTlsSettings, Endpoint};
use wardseal_net::peer::PeerIdentity;

use super::records::{self, Event, Subscription};
use super::resource::{self, ChannelKind, NotificationType, Status};
use super::{FHIR_JSON, SubscriptionOptions, lock};
use crate::api::Storage;
use crate::error::Error;
use crate::store::now_micros;

/// The wait before attempt `attempts + 1` after `attempts` failures in a row.
pub fn backoff(options: &SubscriptionOptions, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    options
        .retry_first
        .saturating_mul(2_u32.saturating_pow(doublings))
        .min(options.retry_max)
}

/// The events among `events` whose patient the subscription's owner may read now; each
/// patient's check is a read by the read rules, written to the access log
/// ([`crate::access::authorize`]). A revoked owner certificate may read nothing.
pub(crate) async fn readable(
    storage: &Storage,
    subscription: &Subscription,
    events: Vec<Event>,
    what: &str,
) -> Result<Vec<Event>, Error> {
    let patients: HashSet<&str> = events.iter().map(|event| event.patient.as_str()).collect();
    if patients.is_empty() {
        return Ok(events);
    }
    let peer = PeerIdentity::from_certificate(&CertificateDer::from(
        subscription.owner_certificate.clone(),
    ))
    .map_err(|error| Error::corrupt_row(format!("a subscription owner's certificate: {error}")))?;
    let revoked = storage.tls.check_not_revoked(&peer).is_err();
    let mut allowed = HashSet::new();
    for patient in patients {
        let description = format!(
            "{what} Subscription/{} ({})",
            subscription.id,
            subscription.topic.name()
        );
        let yes = if revoked {
            storage
                .store
                .log_access(
                    &subscription.owner,
                    &subscription.owner_role,
                    patient,
                    &description,
                    false,
                    "certificate_revoked",
                )
                .await?;
            false
        } else {
            match crate::access::authorize(storage, &peer, patient, &description).await {
                Ok(()) => true,
                Err(Error::Access(_)) => false,
                Err(error) => return Err(error),
            }
        };
        if yes {
            allowed.insert(patient.to_owned());
        }
    }
    Ok(events
        .into_iter()
        .filter(|event| allowed.contains(&event.patient))
        .collect())
}

/// The worker's memory: what is in flight, which endpoints had their handshake, when each
/// subscription last heard from storage, the clients.
#[derive(Debug, Default)]
struct State {
    in_flight: Mutex<HashSet<String>>,
    handshaken: Mutex<HashSet<String>>,
    last_sent: Mutex<HashMap<String, Instant>>,
    clients: Mutex<HashMap<String, Client>>,
}

/// Delivers until the task is aborted.
pub(crate) async fn run(storage: Arc<Storage>) {
    let state = Arc::new(State::default());
    let mut recorded = storage.subscriptions.watch();
    let started = Instant::now();
    loop {
        if let Err(error) = dispatch(&storage, &state, started).await {
            tracing::warn!(%error, "subscriptions: looking for due deliveries failed; retrying");
        }
        tokio::select! {
            _ = recorded.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Starts a delivery for each rest-hook subscription that has something due.
async fn dispatch(
    storage: &Arc<Storage>,
    state: &Arc<State>,
    started: Instant,
) -> Result<(), Error> {
    let now = now_micros();
    for subscription in records::rest_hooks(&storage.store).await? {
        if subscription.status_now(now) == Status::Off || subscription.next_attempt_at > now {
            continue;
        }
        let heartbeat_due = subscription.channel.heartbeat_secs.is_some_and(|secs| {
            let last = lock(&state.last_sent)
                .get(&subscription.id)
                .copied()
                .unwrap_or(started);
            last.elapsed() >= Duration::from_secs(u64::from(secs))
        });
        let handshake_due = !lock(&state.handshaken).contains(&subscription.id);
        if !(handshake_due || heartbeat_due || subscription.events > subscription.delivered) {
            continue;
        }
        if !lock(&state.in_flight).insert(subscription.id.clone()) {
            continue;
        }
        let storage = Arc::clone(storage);
        let state = Arc::clone(state);
        tokio::spawn(async move {
            let id = subscription.id.clone();
            let attempts = subscription.attempts;
            if let Err(reason) = deliver(&storage, &state, subscription, heartbeat_due).await {
                let wait = backoff(&storage.subscriptions.options, attempts + 1);
                tracing::warn!(id, reason, retry_in = ?wait, "rest-hook delivery failed");
                let retry_at = now_micros() + i64::try_from(wait.as_micros()).unwrap_or(0);
                if let Err(error) = records::failed(&storage.store, &id, &reason, retry_at).await {
                    tracing::warn!(%error, id, "recording a failed delivery failed");
                }
            }
            lock(&state.in_flight).remove(&id);
            // Whatever arrived meanwhile is looked at now, not at the next tick.
            storage.subscriptions.wake();
        });
    }
    Ok(())
}

/// One subscription's due work: handshake, then its pending events, then a heartbeat if
/// nothing was sent. `Err` holds the reason the subscriber sees in `$status`.
async fn deliver(
    storage: &Storage,
    state: &State,
    mut subscription: Subscription,
    heartbeat_due: bool,
) -> Result<(), String> {
    if subscription.channel.kind != ChannelKind::RestHook {
        return Ok(());
    }
    let endpoint_url = subscription
        .channel
        .endpoint
        .clone()
        .ok_or_else(|| "the subscription has no endpoint".to_owned())?;
    let (client, path) = client(storage, state, &endpoint_url)?;
    let content = subscription.channel.content;
    if !lock(&state.handshaken).contains(&subscription.id) {
        let bundle = resource::notification(
            &subscription,
            NotificationType::Handshake,
            &[],
            content,
            now_micros(),
        );
        post(&client, &path, &bundle).await?;
        lock(&state.handshaken).insert(subscription.id.clone());
        records::delivered(&storage.store, &subscription.id, subscription.delivered)
            .await
            .map_err(|error| error.to_string())?;
        subscription.status = Status::Active;
        subscription.error = None;
        sent(state, &subscription.id);
    }
    let mut sent_any = false;
    loop {
        let pending = records::events(
            &storage.store,
            &subscription.id,
            subscription.delivered + 1,
            i64::MAX,
            i64::from(subscription.channel.max_count),
        )
        .await
        .map_err(|error| error.to_string())?;
        let Some(last) = pending.last().map(|event| event.number) else {
            break;
        };
        let visible = readable(storage, &subscription, pending, "notify")
            .await
            .map_err(|error| error.to_string())?;
        if !visible.is_empty() {
            // The status counts every event recorded so far.
            if let Ok(Some(fresh)) = records::load(&storage.store, &subscription.id).await {
                subscription.events = fresh.events;
            }
            subscription.status = Status::Active;
            subscription.error = None;
            let bundle = resource::notification(
                &subscription,
                NotificationType::EventNotification,
                &visible,
                content,
                now_micros(),
            );
            post(&client, &path, &bundle).await?;
            sent_any = true;
            sent(state, &subscription.id);
        }
        records::delivered(&storage.store, &subscription.id, last)
            .await
            .map_err(|error| error.to_string())?;
        subscription.delivered = last;
    }
    if heartbeat_due && !sent_any {
        let bundle = resource::notification(
            &subscription,
            NotificationType::Heartbeat,
            &[],
            content,
            now_micros(),
        );
        post(&client, &path, &bundle).await?;
        sent(state, &subscription.id);
    }
    Ok(())
}

fn sent(state: &State, id: &str) {
    lock(&state.last_sent).insert(id.to_owned(), Instant::now());
}

/// The client for the server of `endpoint_url` (one pooled client per server), and the
/// path (with query) to POST to.
fn client(
    storage: &Storage,
    state: &State,
    endpoint_url: &str,
) -> Result<(Client, String), String> {
    let endpoint: Endpoint = endpoint_url.parse().map_err(|error| format!("{error}"))?;
    let url = url::Url::parse(endpoint_url).map_err(|error| error.to_string())?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let key = endpoint.to_string();
    if let Some(client) = lock(&state.clients).get(&key) {
        return Ok((client.clone(), path));
    }
    let settings = storage.tls.settings();
    let tls = ClientTlsSettings::new(&settings.ca_bundle, &settings.certificate, &settings.key)
        .client_config(&wardseal_net::server::ALPN_PROTOCOLS)
        .map_err(|error| format!("storage's client certificate cannot be used: {error}"))?;
    let options = ClientOptions {
        connect_timeout: storage.subscriptions.options.request_timeout,
        request_timeout: Some(storage.subscriptions.options.request_timeout),
        max_idle_per_host: 4,
        idle_timeout: Some(Duration::from_secs(60)),
        max_body: 1024 * 1024,
    };
    let client = Client::new(&endpoint, tls, options);
    lock(&state.clients).insert(key, client.clone());
    Ok((client, path))
}

async fn post(client: &Client, path: &str, bundle: &serde_json::Value) -> Result<(), String> {
    let body = Bytes::from(bundle.to_string());
    let reply = client
        .send_as(Method::POST, path, FHIR_JSON, body)
        .await
        .map_err(|error| error.to_string())?;
    if (200..300).contains(&reply.status) {
        Ok(())
    } else {
        Err(format!(
            "the subscriber at {} answered {}",
            client.endpoint(),
            reply.status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let options = SubscriptionOptions {
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            ..SubscriptionOptions::default()
        };
        let waits: Vec<u64> = (1..=8)
            .map(|attempts| backoff(&options, attempts).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(&options, i64::MAX), Duration::from_secs(30));
        assert_eq!(backoff(&options, 0), Duration::from_secs(1));
    }
}
