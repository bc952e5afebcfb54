//! FHIR subscriptions after the R4 Subscriptions Backport IG (topic-based): a clinician,
//! a patient or an authority subscribes to a topic ([`topic`]) and receives notifications
//! on a rest-hook (an https endpoint storage POSTs to over mutual TLS) or a websocket (on
//! storage's own mTLS door), durably and in order.
//!
//! # Why it is built this way
//!
//! - **Nothing is lost.** Events are recorded in the database (migration 0008) before any
//!   delivery is tried, numbered 1, 2, 3… per subscription. The [`matcher`] reads the
//!   batch log from a cursor that moves in the same transaction as the events it records,
//!   so a crash or restart between a batch being stored and its events being recorded
//!   only delays them; alert events carry a key that makes re-recording them a no-op, and
//!   recent alerts are rescanned at start. The in-process event hub
//!   ([`crate::events`]) only wakes the matcher: the store, not the hub, is the record.
//! - **In order, at least once.** The rest-hook worker ([`delivery`]) sends one
//!   subscription's events in number order, at most one notification in flight per
//!   subscription, and moves the subscription's `delivered` mark only after a 2xx. A
//!   failure puts the subscription in `error` with its reason and retries with exponential
//!   backoff (capped); a subscriber that comes back gets everything it missed, in order.
//!   A notification may arrive twice (storage stopped after sending, before recording);
//!   its event numbers tell the subscriber so. `$events` returns any range again.
//! - **Only what the subscriber may read.** A subscription keeps its owner's certificate.
//!   Events are recorded only for patients the owner may read, and every delivery (and
//!   `$events`) checks again, with the same rules and the same anchored access log as a
//!   read ([`crate::access::authorize`]), and refuses a revoked certificate. An event the
//!   owner may no longer read is withheld: its number is skipped in what is sent.
//! - **Same door.** The websocket channel is an HTTP/1.1 upgrade on storage's mTLS port;
//!   the socket binds to a subscription with a short-lived token from
//!   `$get-ws-binding-token`, asked for by the same identity.
//!
//! Routes (all under storage's FHIR base, `application/fhir+json`, errors as
//! `OperationOutcome`): `POST/GET /fhir/Subscription`, `GET/DELETE
//! /fhir/Subscription/{id}`, `GET /fhir/Subscription/{id}/$status`, `GET
//! /fhir/Subscription/{id}/$events`, `GET|POST
//! /fhir/Subscription/{id}/$get-ws-binding-token`, and the websocket at
//! `/fhir/websocket`. `docs/subscriptions.md` walks through them.

pub mod delivery;
pub mod matcher;
pub mod records;
pub mod render;
pub mod resource;
pub mod topic;
pub mod websocket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wardseal_core::identity::Role;
use wardseal_net::peer::PeerIdentity;
use wardseal_net::wire::{bytes_response, read_body};

use crate::api::Storage;
use crate::error::{AccessRefusal, Error};
use crate::store::now_micros;
use records::Subscription;
use resource::{ChannelKind, Content, NotificationType, Status};

/// The FHIR media type.
pub use crate::fhir::FHIR_JSON;
/// Who may subscribe: whoever may read patient data through `/fhir`.
pub const SUBSCRIBERS: &[Role] = &[Role::Staff, Role::Patient, Role::Authority];
/// The largest Subscription body accepted.
const BODY_LIMIT: usize = 64 * 1024;
/// The most events one `$events` answer returns.
pub const EVENTS_PAGE: i64 = 1000;

/// How deliveries are retried and how long tokens live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// The wait after a first failed delivery; it doubles with each failure after it.
    pub retry_first: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How long one rest-hook POST may take (connection, handshake, answer).
    pub request_timeout: Duration,
    /// How long a websocket binding token is valid.
    pub token_lifetime: Duration,
    /// Heartbeat period of websockets whose subscription names none.
    pub websocket_heartbeat: Duration,
}

impl Default for SubscriptionOptions {
    /// Retries after 1 s, 2 s, 4 s… up to 30 s; 10 s per POST; tokens for 5 minutes;
    /// websocket heartbeats every 30 s.
    fn default() -> Self {
        Self {
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            token_lifetime: Duration::from_secs(300),
            websocket_heartbeat: Duration::from_secs(30),
        }
    }
}

/// The subscriptions' shared state, part of [`Storage`].
#[derive(Debug)]
pub struct Subscriptions {
    /// Retries, timeouts, token lifetime.
    pub options: SubscriptionOptions,
    /// Bumped whenever events are recorded: wakes the rest-hook worker and websockets.
    recorded: watch::Sender<u64>,
    /// Websocket binding tokens not used yet.
    tokens: Mutex<HashMap<String, websocket::Binding>>,
    /// The server the websockets serve from (set by [`start`]).
    storage: OnceLock<Weak<Storage>>,
}

impl Subscriptions {
    /// The state for a server with `options`.
    pub fn new(options: SubscriptionOptions) -> Self {
        let (recorded, _) = watch::channel(0);
        Self {
            options,
            recorded,
            tokens: Mutex::new(HashMap::new()),
            storage: OnceLock::new(),
        }
    }

    /// Tells the delivery side that events were recorded.
    pub(crate) fn wake(&self) {
        self.recorded.send_modify(|generation| *generation += 1);
    }

    /// A receiver woken by [`Subscriptions::wake`].
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.recorded.subscribe()
    }

    fn storage(&self) -> Option<Arc<Storage>> {
        self.storage.get().and_then(Weak::upgrade)
    }
}

impl Default for Subscriptions {
    fn default() -> Self {
        Self::new(SubscriptionOptions::default())
    }
}

/// The background tasks: the matcher and the rest-hook worker.
#[derive(Debug)]
pub struct Workers {
    matcher: JoinHandle<()>,
    delivery: JoinHandle<()>,
}

impl Workers {
    /// Stops both (their work is in the database: the next start resumes it).
    pub fn stop(&self) {
        self.matcher.abort();
        self.delivery.abort();
    }
}

/// Starts matching and delivering for `storage` (once per server).
pub fn start(storage: &Arc<Storage>) -> Workers {
    let _ = storage.subscriptions.storage.set(Arc::downgrade(storage));
    let events = storage.events.subscribe();
    Workers {
        matcher: tokio::spawn(matcher::run(Arc::clone(storage), events)),
        delivery: tokio::spawn(delivery::run(Arc::clone(storage))),
    }
}

/// Answers `/fhir/Subscription…` and `/fhir/websocket`; every error as an
/// OperationOutcome.
pub async fn respond(
    storage: &Storage,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Response<Full<Bytes>> {
    match route(storage, request, peer).await {
        Ok(response) => response,
        Err(error) => outcome(&error),
    }
}

/// An error as an `OperationOutcome`, as the rest of `/fhir` answers it.
pub fn outcome(error: &Error) -> Response<Full<Bytes>> {
    crate::fhir::outcome::response(error)
}

/// The guard of `mutex`, also after a panic elsewhere (the maps it guards stay usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn fhir_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    bytes_response(status, FHIR_JSON, body.to_string().into_bytes())
}

/// A path segment with `%24` read as `$` (clients encode the operation prefix or not).
fn operation(segment: &str) -> String {
    segment.replace("%24", "$")
}

async fn route(
    storage: &Storage,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Result<Response<Full<Bytes>>, Error> {
    let path = request.uri().path().to_owned();
    let segments: Vec<String> = path.trim_matches('/').split('/').map(operation).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    match (method, segments.as_slice()) {
        (_, ["fhir", "websocket"]) => websocket::upgrade(storage, request, peer),
        (Method::POST, ["fhir", "Subscription"]) => create(storage, request, peer).await,
        (Method::GET, ["fhir", "Subscription"]) => {
            let owner = owner(peer)?;
            let now = now_micros();
            let entries: Vec<Value> = records::owned_by(&storage.store, &owner)
                .await?
                .iter()
                .filter(|subscription| subscription.owner_role == peer.role().name())
                .map(|subscription| {
                    json!({
                        "fullUrl": format!("{}/Subscription/{}", subscription.base_url, subscription.id),
                        "resource": resource::subscription(subscription, now),
                        "search": {"mode": "match"}
                    })
                })
                .collect();
            Ok(fhir_response(
                StatusCode::OK,
                &json!({"resourceType": "Bundle", "type": "searchset",
                        "total": entries.len(), "entry": entries}),
            ))
        }
        (Method::GET, ["fhir", "Subscription", id]) => {
            let subscription = owned(storage, id, peer).await?;
            Ok(fhir_response(
                StatusCode::OK,
                &resource::subscription(&subscription, now_micros()),
            ))
        }
        (Method::DELETE, ["fhir", "Subscription", id]) => {
            let subscription = owned(storage, id, peer).await?;
            records::delete(&storage.store, &subscription.id).await?;
            tracing::info!(
                id = subscription.id,
                owner = subscription.owner,
                "subscription deleted"
            );
            Ok(bytes_response(
                StatusCode::NO_CONTENT,
                FHIR_JSON,
                Bytes::new(),
            ))
        }
        (Method::GET, ["fhir", "Subscription", id, "$status"]) => {
            let subscription = owned(storage, id, peer).await?;
            let status = resource::status(
                &subscription,
                NotificationType::QueryStatus,
                &[],
                Content::Empty,
                now_micros(),
            );
            Ok(fhir_response(
                StatusCode::OK,
                &json!({"resourceType": "Bundle", "type": "searchset", "total": 1,
                        "entry": [{"fullUrl": format!("urn:uuid:{}", resource::uuid()),
                                   "resource": status, "search": {"mode": "match"}}]}),
            ))
        }
        (Method::GET, ["fhir", "Subscription", id, "$events"]) => {
            let subscription = owned(storage, id, peer).await?;
            events(storage, &request, &subscription).await
        }
        (Method::GET | Method::POST, ["fhir", "Subscription", id, "$get-ws-binding-token"]) => {
            let subscription = owned(storage, id, peer).await?;
            websocket::binding_token(storage, &request, &subscription)
        }
        (method, _) => Err(Error::NotFound(format!("route {method} {path}"))),
    }
}

/// The subject id of the caller, who must be one of the [`SUBSCRIBERS`].
fn owner(peer: &PeerIdentity) -> Result<String, Error> {
    peer.require_any_role(SUBSCRIBERS)
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))?;
    peer.identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))
}

/// The subscription `id` if `peer` owns it (another's is "not found": its existence is
/// not the caller's business).
async fn owned(storage: &Storage, id: &str, peer: &PeerIdentity) -> Result<Subscription, Error> {
    let owner = owner(peer)?;
    match records::load(&storage.store, id).await? {
        Some(subscription)
            if subscription.owner == owner && subscription.owner_role == peer.role().name() =>
        {
            Ok(subscription)
        }
        _ => Err(Error::NotFound(format!("Subscription/{id}"))),
    }
}

/// The FHIR base the client reached (`https://host:port/fhir`), for references.
fn base_url(request: &Request<Incoming>) -> String {
    crate::fhir::base_url(request)
}

fn random_id() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0_u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

async fn create(
    storage: &Storage,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Result<Response<Full<Bytes>>, Error> {
    let owner = owner(peer)?;
    let base_url = base_url(&request);
    let body = read_body(request.into_body(), BODY_LIMIT).await?;
    let mut asked = resource::Request::parse(&body)?;
    match (peer.role(), asked.filters.patient.clone()) {
        // A patient subscribes to their own records only.
        (Role::Patient, None) => asked.filters.patient = Some(owner.clone()),
        (Role::Patient, Some(patient)) if patient != owner => {
            return Err(Error::Access(AccessRefusal::NotResponsible {
                staff: owner,
                patient,
            }));
        }
        (Role::Patient, Some(_)) => {}
        // The same check (and access-log entry) as a read of the patient's data.
        (_, Some(patient)) => {
            crate::access::authorize(
                storage,
                peer,
                &patient,
                &format!("subscribe {}", asked.topic.name()),
            )
            .await?;
        }
        // Every patient the clinician (or authority) may read, decided per event.
        (_, None) => {}
    }
    let now = now_micros();
    // A rest-hook is active once its handshake succeeds; a websocket at once.
    let status = match asked.channel.kind {
        ChannelKind::RestHook => Status::Requested,
        ChannelKind::Websocket => Status::Active,
    };
    let subscription = Subscription {
        id: random_id(),
        owner,
        owner_role: peer.role().name().to_owned(),
        owner_certificate: peer.certificate_der.as_ref().as_ref().to_vec(),
        base_url,
        topic: asked.topic,
        filters: asked.filters,
        channel: asked.channel,
        reason: asked.reason,
        end_at: asked.end_at,
        status,
        error: None,
        created_at: now,
        events: 0,
        delivered: 0,
        attempts: 0,
        next_attempt_at: 0,
    };
    records::insert(&storage.store, &subscription).await?;
    tracing::info!(
        id = subscription.id,
        owner = subscription.owner,
        topic = subscription.topic.name(),
        channel = subscription.channel.kind.code(),
        "subscription created"
    );
    storage.subscriptions.wake();
    let mut response = fhir_response(
        StatusCode::CREATED,
        &resource::subscription(&subscription, now),
    );
    if let Ok(location) = hyper::header::HeaderValue::from_str(&format!(
        "{}/Subscription/{}",
        subscription.base_url, subscription.id
    )) {
        response
            .headers_mut()
            .insert(hyper::header::LOCATION, location);
    }
    Ok(response)
}

/// `$events`: the events `eventsSinceNumber..=eventsUntilNumber` (at most
/// [`EVENTS_PAGE`]) that the owner may still read, as a `history` Bundle.
async fn events(
    storage: &Storage,
    request: &Request<Incoming>,
    subscription: &Subscription,
) -> Result<Response<Full<Bytes>>, Error> {
    let parameter = |name: &str| -> Result<Option<i64>, Error> {
        let Some(query) = request.uri().query() else {
            return Ok(None);
        };
        match url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name) {
            None => Ok(None),
            Some((_, value)) => value.parse::<i64>().map(Some).map_err(|_| {
                Error::BadRequest(format!("{name} must be an event number, not {value:?}"))
            }),
        }
    };
    let since = parameter("eventsSinceNumber")?.unwrap_or(1).max(1);
    let until = parameter("eventsUntilNumber")?.unwrap_or(subscription.events);
    let content = match request.uri().query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "content")
            .map(|(_, value)| value.into_owned())
    }) {
        None => subscription.channel.content,
        Some(code) => Content::from_code(&code).ok_or_else(|| {
            Error::BadRequest(format!(
                "content {code:?}: use empty, id-only or full-resource"
            ))
        })?,
    };
    let found =
        records::events(&storage.store, &subscription.id, since, until, EVENTS_PAGE).await?;
    let visible = delivery::readable(storage, subscription, found, "events").await?;
    Ok(fhir_response(
        StatusCode::OK,
        &resource::notification(
            subscription,
            NotificationType::QueryEvent,
            &visible,
            content,
            now_micros(),
        ),
    ))
}
