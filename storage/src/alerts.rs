//! Alerts: storage keeps the durable record and serves the live stream.
//!
//! - `POST /v1/alerts` (collector): an alert the collector raised at ingest; idempotent by
//!   id. When the batch holding the reading arrives, [`ingest`](crate::ingest) re-checks
//!   the rules, stores each alarmed reading's FHIR interpretation and upserts the same
//!   alert (its id is derived from the reading and the limit), so the record exists even
//!   if the collector's push was lost.
//! - `GET /v1/alerts?state=…` (staff: the alerts of the patients they are responsible
//!   for; admin: all).
//! - `POST /v1/alerts/{id}/acknowledge` (staff responsible for the alert's patient,
//!   checked and logged in the anchored access log by [`access::authorize`]).
//! - `POST /v1/alerts/{id}/resolve` (staff responsible for the alert's patient, or an
//!   administrator; logged in the anchored access log like an acknowledgement). A
//!   collector resolves its own ward's technical alerts when their condition clears, by
//!   pushing the alert again in state `resolved` to `POST /v1/alerts`.
//! - `GET /v1/alerts/stream` (staff, admin): server-sent events of alerts raised,
//!   acknowledged, escalated and resolved, of the patients the caller is responsible for
//!   and nothing of others. Each client has its own bounded buffer; a client that does
//!   not keep up is dropped (publishing never waits for a client); a comment line every
//!   heartbeat keeps idle connections open.
//! - `GET /v1/events/stream` (staff, patients, admin): the same stream with the readings
//!   as they are stored, each a FHIR Observation (`event: observation`), for the ward
//!   screen. Staff see the alerts and readings of the patients they are responsible for,
//!   a patient their own, an administrator the alerts only (no patient data); the first
//!   reading of each patient a connection carries is written to the access log.
//!   Both streams are fed by the server's [`EventHub`].
//! - [`run_escalation`]: an alert still raised after its priority's time
//!   ([`EscalationPolicy`]) becomes escalated (an event on the stream, a log warning).
//!
//! Raising an alert is an entry of the anchored access log too (who raised it: the
//! ward's collector), written once per alert however often it is pushed.
//!
//! Latency (seconds matter at the bedside): an alert a collector pushes is on the stream
//! before storage writes it, since the collector already holds it durably in its outbox
//! until storage's 2xx, and a failed write is answered 503 and pushed again. The stream
//! may therefore carry a `raised` event twice (after a failed write or a restart of
//! storage); clients keep alerts by id. Which staff may see which patient's events is
//! held in memory and reloaded every second, so fanning an event out asks the database
//! nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use sqlx::Row;
use tokio::sync::{broadcast, mpsc};
use wardseal_core::alert::{
    Alert, AlertEvent, AlertId, AlertKind, AlertState, Interpretation, Priority,
};
use wardseal_core::identity::Role;
use wardseal_net::peer::PeerIdentity;
use wardseal_net::wire::{json_response, read_body};

use crate::access;
use crate::api::{Storage, to_wire};
use crate::error::{AccessRefusal, Error};
use crate::events::{EventHub, StoredEvent};
use crate::store::{Store, now_micros};

/// How long an alert of each priority may stay unacknowledged before it escalates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationPolicy {
    /// Low priority.
    pub low: Duration,
    /// Medium priority.
    pub medium: Duration,
    /// High priority.
    pub high: Duration,
}

impl EscalationPolicy {
    /// A policy from seconds per priority (the storage CLI's `--escalate-*-secs`); each
    /// must be at least 1 s.
    pub fn from_secs(low: u64, medium: u64, high: u64) -> Result<Self, Error> {
        for (name, secs) in [("low", low), ("medium", medium), ("high", high)] {
            if secs == 0 {
                return Err(Error::Setting(format!(
                    "the {name}-priority escalation time is 0 s: give at least 1 s (--escalate-{name}-secs)"
                )));
            }
        }
        Ok(Self {
            low: Duration::from_secs(low),
            medium: Duration::from_secs(medium),
            high: Duration::from_secs(high),
        })
    }

    fn after(&self, priority: Priority) -> Duration {
        match priority {
            Priority::Low => self.low,
            Priority::Medium => self.medium,
            Priority::High => self.high,
        }
    }
}

impl Default for EscalationPolicy {
    /// High: 2 minutes; medium: 10 minutes; low: 30 minutes.
    fn default() -> Self {
        Self {
            low: Duration::from_secs(30 * 60),
            medium: Duration::from_secs(10 * 60),
            high: Duration::from_secs(2 * 60),
        }
    }
}

/// Events published to the live stream; how it is configured.
#[derive(Debug)]
pub struct AlertHub {
    /// Every alert event goes to the server's event hub, which feeds the streams.
    hub: EventHub,
    /// Escalation times.
    pub policy: EscalationPolicy,
    /// How often an idle stream gets a comment line.
    pub heartbeat: Duration,
    /// Events buffered per client before it counts as too slow and is dropped.
    pub client_buffer: usize,
    /// Ids of alerts published as raised lately (so a repeated push, or the batch's
    /// re-check after the push, is not a new event).
    recent: Mutex<RecentIds>,
    /// Who is responsible for whom now: patient → staff (`None` until first loaded).
    responsible: RwLock<Option<Arc<Responsibility>>>,
    /// Whether the task reloading [`AlertHub::responsible`] runs.
    reloading: AtomicBool,
}

/// Patient → the staff assigned to them now (admitted patients only).
type Responsibility = HashMap<String, HashSet<String>>;

/// How many alert ids [`AlertHub`] remembers as published.
const RECENT_IDS: usize = 65_536;

/// A bounded set of ids, oldest forgotten first.
#[derive(Debug, Default)]
struct RecentIds {
    set: HashSet<AlertId>,
    order: VecDeque<AlertId>,
}

impl RecentIds {
    /// Remembers `id`; whether it was new.
    fn insert(&mut self, id: AlertId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

impl AlertHub {
    /// A hub with `policy`, 15 s heartbeats and 256 events of buffer per client, which
    /// also tells `hub` each event.
    pub fn new(policy: EscalationPolicy, hub: EventHub) -> Self {
        Self {
            hub,
            policy,
            heartbeat: Duration::from_secs(15),
            client_buffer: 256,
            recent: Mutex::new(RecentIds::default()),
            responsible: RwLock::new(None),
            reloading: AtomicBool::new(false),
        }
    }

    /// Publishes `event` to the connected clients (never waits for one). A `raised` event
    /// for an alert already published as raised is not published again.
    pub fn publish(&self, event: AlertState, alert: Alert) {
        if event == AlertState::Raised && !self.first_sight(&alert.id) {
            return;
        }
        self.hub
            .publish(StoredEvent::Alert(Arc::new(AlertEvent { event, alert })));
    }
}

impl AlertHub {
    /// Whether `id` is published as raised for the first time (remembered from now on).
    fn first_sight(&self, id: &AlertId) -> bool {
        self.recent
            .lock()
            .map_or(true, |mut recent| recent.insert(*id))
    }

    /// Whether `staff` is responsible for `patient`, from memory; `None` before the first
    /// load.
    fn responsible_for(&self, staff: &str, patient: &str) -> Option<bool> {
        let snapshot = self.responsible.read().ok()?.clone()?;
        Some(
            snapshot
                .get(patient)
                .is_some_and(|staff_of| staff_of.contains(staff)),
        )
    }
}

impl Default for AlertHub {
    fn default() -> Self {
        Self::new(EscalationPolicy::default(), EventHub::new())
    }
}

/// A response body: whole, or a stream of server-sent events.
#[derive(Debug)]
pub enum Body {
    /// A whole response.
    Whole(Full<Bytes>),
    /// Server-sent event frames as they come; the stream ends when the sender goes.
    Events(mpsc::Receiver<Bytes>),
}

impl From<Full<Bytes>> for Body {
    fn from(full: Full<Bytes>) -> Self {
        Body::Whole(full)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Whole(full) => Pin::new(full).poll_frame(cx),
            Body::Events(events) => events
                .poll_recv(cx)
                .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Whole(full) => full.is_end_stream(),
            Body::Events(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Whole(full) => full.size_hint(),
            Body::Events(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// The largest alert body accepted.
const ALERT_BODY_LIMIT: usize = 64 * 1024;

/// How often who-is-responsible-for-whom is reloaded for the streams (assignments change
/// rarely; the database is not asked once per event).
const RESPONSIBILITY_RELOAD: Duration = Duration::from_secs(1);

/// Before the first reload, how long a stream remembers one answer about a patient.
const RESPONSIBILITY_CACHE: Duration = Duration::from_secs(2);

/// The largest body of a resolution.
const RESOLUTION_BODY_LIMIT: usize = 4 * 1024;

/// What a clinician or administrator may say when resolving an alert.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolution {
    /// Why (free text, kept with the alert).
    #[serde(default)]
    reason: Option<String>,
}

impl Storage {
    /// Answers one request: the alert routes here, every other through
    /// [`Storage::handle`]. Servers that offer the alert stream serve this.
    pub async fn respond(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Arc<PeerIdentity>,
    ) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let answer = match (request.method().clone(), segments.as_slice()) {
            (Method::POST, ["v1", "alerts"]) => self.receive_alert(request, &peer).await,
            (Method::GET, ["v1", "alerts"]) => self.list_alerts(&request, &peer).await,
            (Method::GET, ["v1", "alerts", "stream"]) => {
                return self.stream(&peer, StreamContent::Alerts);
            }
            (Method::GET, ["v1", "events", "stream"]) => {
                return self.stream(&peer, StreamContent::AlertsAndReadings);
            }
            (Method::POST, ["v1", "alerts", id, "acknowledge"]) => {
                self.acknowledge(id, &peer).await
            }
            (Method::POST, ["v1", "alerts", id, "resolve"]) => {
                self.resolve(id, request, &peer).await
            }
            _ => return self.handle(request, peer).await.map(Body::from),
        };
        answer.unwrap_or_else(|error| to_wire(&error).into_response().map(Body::from))
    }

    async fn receive_alert(
        &self,
        request: Request<Incoming>,
        peer: &PeerIdentity,
    ) -> Result<Response<Body>, Error> {
        require(peer, &[Role::Collector])?;
        let body = read_body(request.into_body(), ALERT_BODY_LIMIT).await?;
        let mut alert: Alert = serde_json::from_slice(&body)
            .map_err(|error| Error::BadRequest(format!("not an alert: {error}")))?;
        let ward = subject(peer)?;
        if alert.ward.as_str() != ward {
            return Err(Error::Access(AccessRefusal::NotResponsible {
                staff: ward,
                patient: format!("alerts of ward {}", alert.ward),
            }));
        }
        if !alert.id_is_derived() {
            return Err(Error::BadRequest(
                "a clinical alert's id must be derived from its reading and limit".into(),
            ));
        }
        if alert.state == AlertState::Resolved {
            return self.resolved_by_collector(alert, &ward).await;
        }
        // The rest of the life cycle is storage's: a collector raises, and resolves only
        // technical conditions it saw clear.
        alert.state = AlertState::Raised;
        alert.acknowledged_by = None;
        alert.acknowledged_at_us = None;
        alert.escalated_at_us = None;
        alert.resolved_by = None;
        alert.resolved_at_us = None;
        // On the stream first: the collector holds the alert until this answers 2xx.
        self.alerts.publish(AlertState::Raised, alert.clone());
        let new = upsert(&self.store, &alert).await?;
        log_raise(&self.store, &alert).await?;
        let status = if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            &serde_json::json!({"id": alert.id, "newly_stored": new}),
        )
        .map(Body::from))
    }

    /// A collector's resolution of one of its ward's technical alerts (the condition
    /// cleared): stored if the raise never arrived, then resolved, logged and published.
    async fn resolved_by_collector(
        &self,
        alert: Alert,
        ward: &str,
    ) -> Result<Response<Body>, Error> {
        if alert.kind != AlertKind::Technical {
            return Err(Error::BadRequest(
                "a collector resolves only technical alerts; a clinician resolves clinical ones"
                    .into(),
            ));
        }
        let at = alert.resolved_at_us.unwrap_or_else(now_micros);
        let raised = Alert {
            state: AlertState::Raised,
            resolved_by: None,
            resolved_at_us: None,
            ..alert.clone()
        };
        // A stream sees it raised before it sees it resolved (once).
        self.alerts.publish(AlertState::Raised, raised.clone());
        let new = upsert(&self.store, &raised).await?;
        log_raise(&self.store, &raised).await?;
        let resolved = settle(
            self,
            &alert.id,
            Settled {
                who: ward,
                role: "collector",
                at,
                reason: "the condition cleared",
                access_reason: "condition_cleared",
            },
        )
        .await?;
        Ok(json_response(
            if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &serde_json::json!({"id": alert.id, "newly_stored": new, "state": resolved.state}),
        )
        .map(Body::from))
    }

    async fn list_alerts(
        &self,
        request: &Request<Incoming>,
        peer: &PeerIdentity,
    ) -> Result<Response<Body>, Error> {
        require(peer, &[Role::Staff, Role::Admin])?;
        let state = match request.uri().query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "state")
                .map(|(_, value)| value.into_owned())
        }) {
            None => None,
            Some(name) => Some(AlertState::from_name(&name).ok_or_else(|| {
                Error::BadRequest(format!(
                    "unknown state {name:?}: raised, escalated, acknowledged or resolved"
                ))
            })?),
        };
        let staff = match peer.role() {
            Role::Admin => None,
            _ => Some(subject(peer)?),
        };
        let alerts = list(&self.store, staff.as_deref(), state).await?;
        Ok(json_response(StatusCode::OK, &alerts).map(Body::from))
    }

    async fn acknowledge(&self, id: &str, peer: &PeerIdentity) -> Result<Response<Body>, Error> {
        let alert = self.acknowledge_alert(id, peer).await?;
        Ok(json_response(StatusCode::OK, &alert).map(Body::from))
    }

    /// Acknowledges alert `id` (64 hex digits) as `peer`, a staff member responsible for
    /// its patient (checked and logged in the access log), and returns it as it now is.
    /// Acknowledging an acknowledged or resolved alert changes nothing. `/v1` and FHIR's
    /// `Flag/{id}/$acknowledge` both come here.
    pub async fn acknowledge_alert(&self, id: &str, peer: &PeerIdentity) -> Result<Alert, Error> {
        require(peer, &[Role::Staff])?;
        let id = AlertId::from_hex(id)
            .ok_or_else(|| Error::BadRequest("an alert id is 64 hex digits".into()))?;
        let alert = load(&self.store, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("alert {id}")))?;
        let Some(patient) = alert.patient.clone() else {
            return Err(Error::BadRequest(
                "this alert concerns no patient: an administrator resolves it".into(),
            ));
        };
        // Checks responsibility and writes the access-log entry (allowed or refused).
        access::authorize(
            self,
            peer,
            patient.as_str(),
            &format!("acknowledge alert {id}"),
        )
        .await?;
        let staff = subject(peer)?;
        let now = now_micros();
        let changed = sqlx::query(
            "UPDATE alerts SET state = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2 \
             WHERE id = $3 AND state IN ('raised', 'escalated')",
        )
        .bind(staff.clone())
        .bind(now)
        .bind(id.0.as_bytes().to_vec())
        .execute(self.store.pool())
        .await
        .map_err(|error| Error::database("acknowledge the alert", error))?
        .rows_affected();
        let alert = load(&self.store, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("alert {id}")))?;
        if changed > 0 {
            tracing::info!(%id, staff, "alert acknowledged");
            self.alerts.publish(AlertState::Acknowledged, alert.clone());
        }
        Ok(alert)
    }

    async fn resolve(
        &self,
        id: &str,
        request: Request<Incoming>,
        peer: &PeerIdentity,
    ) -> Result<Response<Body>, Error> {
        require(peer, &[Role::Staff, Role::Admin])?;
        let id = AlertId::from_hex(id)
            .ok_or_else(|| Error::BadRequest("an alert id is 64 hex digits".into()))?;
        let body = read_body(request.into_body(), RESOLUTION_BODY_LIMIT).await?;
        let resolution: Resolution = if body.is_empty() {
            Resolution::default()
        } else {
            serde_json::from_slice(&body).map_err(|error| {
                Error::BadRequest(format!(
                    "a resolution is {{\"reason\": \"…\"}} or nothing: {error}"
                ))
            })?
        };
        let alert = load(&self.store, &id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("alert {id}")))?;
        let who = match (subject(peer), peer.role()) {
            (Ok(who), _) => who,
            // An administrator's certificate may name no subject: its serial names it.
            (Err(_), Role::Admin) => format!("admin certificate {}", hex::encode(&peer.serial)),
            (Err(error), _) => return Err(error),
        };
        let what = format!("resolve alert {id}");
        let access_reason = match (peer.role(), &alert.patient) {
            (Role::Admin, patient) => {
                let patient = patient.as_ref().map_or("", |p| p.as_str());
                self.store
                    .log_access(&who, Role::Admin.name(), patient, &what, true, "admin")
                    .await?;
                "admin"
            }
            (_, Some(patient)) => {
                // Checks responsibility and writes the access-log entry (allowed or refused).
                access::authorize(self, peer, patient.as_str(), &what).await?;
                "responsible"
            }
            (_, None) => {
                return Err(Error::BadRequest(
                    "this alert concerns no patient: an administrator resolves it".into(),
                ));
            }
        };
        let reason = resolution
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|reason| !reason.is_empty())
            .unwrap_or("resolved by a clinician");
        let role = peer.role().name();
        let alert = settle(
            self,
            &id,
            Settled {
                who: &who,
                role,
                at: now_micros(),
                reason,
                access_reason,
            },
        )
        .await?;
        Ok(json_response(StatusCode::OK, &alert).map(Body::from))
    }

    fn stream(self: Arc<Self>, peer: &PeerIdentity, content: StreamContent) -> Response<Body> {
        let roles: &[Role] = match content {
            StreamContent::Alerts => &[Role::Staff, Role::Admin],
            StreamContent::AlertsAndReadings => &[Role::Staff, Role::Admin, Role::Patient],
        };
        if let Err(error) = require(peer, roles) {
            return to_wire(&error).into_response().map(Body::from);
        }
        let viewer = match peer.role() {
            Role::Admin => Viewer::Admin,
            role => match subject(peer) {
                Ok(subject) if role == Role::Patient => Viewer::Patient(subject),
                Ok(subject) => Viewer::Staff(subject),
                Err(error) => return to_wire(&error).into_response().map(Body::from),
            },
        };
        if !self.alerts.reloading.swap(true, Ordering::SeqCst) {
            tokio::spawn(reload_responsibility(Arc::downgrade(&self)));
        }
        let events = self.events.subscribe();
        let (frames, body) = mpsc::channel(self.alerts.client_buffer.max(1));
        // The first frame opens the stream at once (a client sees it is connected).
        let _ = frames.try_send(Bytes::from_static(b": connected\n\n"));
        tokio::spawn(feed(self, viewer, content, events, frames));
        let mut response = Response::new(Body::Events(body));
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        response
    }
}

/// What a live stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamContent {
    /// Alert events only (`GET /v1/alerts/stream`).
    Alerts,
    /// Alert events and stored readings as FHIR Observations (`GET /v1/events/stream`).
    AlertsAndReadings,
}

/// Who a stream is for, which decides what it may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Viewer {
    /// Every alert, no reading.
    Admin,
    /// What concerns the patients this staff member is responsible for.
    Staff(String),
    /// What concerns this patient.
    Patient(String),
}

/// Whether `viewer` may see what concerns `patient`; for staff, from the hub's
/// responsibility map (or, before its first load, asked of the store at most every
/// [`RESPONSIBILITY_CACHE`] per patient).
async fn may_see(
    storage: &Storage,
    viewer: &Viewer,
    patient: &str,
    responsible: &mut HashMap<String, (bool, Instant)>,
) -> bool {
    match viewer {
        Viewer::Admin => true,
        Viewer::Patient(own) => own == patient,
        Viewer::Staff(staff) => {
            // Held in memory, reloaded every second: fanning out asks the database nothing.
            if let Some(yes) = storage.alerts.responsible_for(staff, patient) {
                return yes;
            }
            // Not loaded yet (the first stream just opened): ask, at most every
            // RESPONSIBILITY_CACHE per patient.
            let cached = responsible
                .get(patient)
                .filter(|(_, at)| at.elapsed() < RESPONSIBILITY_CACHE)
                .map(|(yes, _)| *yes);
            match cached {
                Some(yes) => yes,
                None => {
                    let yes = storage
                        .store
                        .staff_assigned(staff, patient)
                        .await
                        .unwrap_or(false);
                    responsible.insert(patient.to_owned(), (yes, Instant::now()));
                    yes
                }
            }
        }
    }
}

/// The frames of one stored event that `viewer` may see.
async fn frames_of(
    storage: &Storage,
    viewer: &Viewer,
    content: StreamContent,
    event: &StoredEvent,
    responsible: &mut HashMap<String, (bool, Instant)>,
    logged: &mut std::collections::HashSet<String>,
) -> Vec<Bytes> {
    match event {
        StoredEvent::Alert(event) => {
            let visible = match (viewer, &event.alert.patient) {
                (Viewer::Admin, _) => true,
                (_, None) => false,
                (viewer, Some(patient)) => {
                    may_see(storage, viewer, patient.as_str(), responsible).await
                }
            };
            if !visible {
                return Vec::new();
            }
            let Ok(json) = serde_json::to_string(event.as_ref()) else {
                return Vec::new();
            };
            vec![Bytes::from(format!(
                "event: {}\nid: {}\ndata: {json}\n\n",
                event.event.name(),
                event.alert.id
            ))]
        }
        StoredEvent::Readings(stored) => {
            let visible = content == StreamContent::AlertsAndReadings
                && viewer != &Viewer::Admin
                && may_see(storage, viewer, &stored.patient, responsible).await;
            if !visible {
                return Vec::new();
            }
            if !logged.contains(&stored.patient) {
                let (who, role, reason) = match viewer {
                    Viewer::Staff(staff) => (staff.as_str(), Role::Staff, "assigned"),
                    Viewer::Patient(own) => (own.as_str(), Role::Patient, "own record"),
                    Viewer::Admin => return Vec::new(),
                };
                if let Err(error) = storage
                    .store
                    .log_access(
                        who,
                        role.name(),
                        &stored.patient,
                        "live stream of readings",
                        true,
                        reason,
                    )
                    .await
                {
                    // Nothing leaves unlogged: without the entry, the readings wait for
                    // the next batch (and its own attempt to log).
                    tracing::warn!(%error, "the access log refused a live-stream entry");
                    return Vec::new();
                }
                logged.insert(stored.patient.clone());
            }
            stored
                .readings
                .iter()
                .filter_map(|row| {
                    let reading =
                        wardseal_core::reading::Reading::from_canonical_bytes(&row.canonical)
                            .ok()?;
                    let leaf = row.leaf_hash.to_string();
                    let observation = crate::fhir::observation(&stored.patient, &reading, &leaf);
                    let json = serde_json::to_string(&observation).ok()?;
                    Some(Bytes::from(format!(
                        "event: observation\nid: {leaf}\ndata: {json}\n\n"
                    )))
                })
                .collect()
        }
    }
}

/// Moves the hub's events that `viewer` may see into one client's buffer, with
/// heartbeats, until the client goes or falls behind.
async fn feed(
    storage: Arc<Storage>,
    viewer: Viewer,
    content: StreamContent,
    mut events: broadcast::Receiver<StoredEvent>,
    frames: mpsc::Sender<Bytes>,
) {
    let mut heartbeat = tokio::time::interval(storage.alerts.heartbeat);
    heartbeat.tick().await;
    let mut responsible: HashMap<String, (bool, Instant)> = HashMap::new();
    let mut logged = std::collections::HashSet::new();
    loop {
        let event = tokio::select! {
            () = frames.closed() => return,
            _ = heartbeat.tick() => {
                if frames.try_send(Bytes::from_static(b": heartbeat\n\n")).is_err() {
                    return;
                }
                continue;
            }
            event = events.recv() => match event {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(?viewer, missed, "a live stream client fell behind; dropped");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        for frame in frames_of(
            &storage,
            &viewer,
            content,
            &event,
            &mut responsible,
            &mut logged,
        )
        .await
        {
            if frames.try_send(frame).is_err() {
                tracing::warn!(?viewer, "a live stream client's buffer is full; dropped");
                return;
            }
        }
    }
}

/// Reloads who is responsible for whom every [`RESPONSIBILITY_RELOAD`], for as long as
/// the server runs (the first stream starts it).
async fn reload_responsibility(storage: Weak<Storage>) {
    let mut failing = false;
    loop {
        let Some(storage) = storage.upgrade() else {
            return;
        };
        match responsibility(&storage.store).await {
            Ok(map) => {
                failing = false;
                if let Ok(mut slot) = storage.alerts.responsible.write() {
                    *slot = Some(Arc::new(map));
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "reloading staff assignments for the alert streams failed; retrying");
                }
                failing = true;
            }
        }
        drop(storage);
        tokio::time::sleep(RESPONSIBILITY_RELOAD).await;
    }
}

/// Patient → staff assigned to them now, of admitted patients.
async fn responsibility(store: &Store) -> Result<Responsibility, Error> {
    let rows = sqlx::query(
        "SELECT s.patient, s.staff FROM staff_assignments s JOIN admissions a ON a.patient = s.patient \
         WHERE s.until IS NULL AND a.discharged_at IS NULL",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("read the staff assignments", error))?;
    let mut map: Responsibility = HashMap::new();
    for row in rows {
        let read = |error| Error::database("read a staff assignment", error);
        let patient: String = row.try_get(0).map_err(read)?;
        let staff: String = row.try_get(1).map_err(read)?;
        map.entry(patient).or_default().insert(staff);
    }
    Ok(map)
}

/// Who ends an alert's life cycle, and why.
struct Settled<'a> {
    /// Subject id (a clinician, an administrator, or the ward of the collector).
    who: &'a str,
    /// Their role's name.
    role: &'a str,
    /// When (µs since the epoch).
    at: i64,
    /// The reason kept with the alert.
    reason: &'a str,
    /// The reason in the access log (the resolution by a clinician or administrator was
    /// logged by the caller, with its allow/refuse decision).
    access_reason: &'a str,
}

/// Resolves alert `id` unless it is resolved already; a collector's resolution is logged
/// here, a person's by the caller. Publishes the change; returns the alert as it is now.
async fn settle(storage: &Storage, id: &AlertId, settled: Settled<'_>) -> Result<Alert, Error> {
    let changed = sqlx::query(
        "UPDATE alerts SET state = 'resolved', resolved_by = $1, resolved_at = $2, resolution = $3 \
         WHERE id = $4 AND state <> 'resolved'",
    )
    .bind(settled.who.to_owned())
    .bind(settled.at)
    .bind(settled.reason.to_owned())
    .bind(id.0.as_bytes().to_vec())
    .execute(storage.store.pool())
    .await
    .map_err(|error| Error::database("resolve the alert", error))?
    .rows_affected();
    let alert = load(&storage.store, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("alert {id}")))?;
    if changed > 0 {
        if settled.role == Role::Collector.name() {
            let patient = alert.patient.as_ref().map_or("", |p| p.as_str());
            storage
                .store
                .log_access(
                    settled.who,
                    settled.role,
                    patient,
                    &format!("resolve alert {id}"),
                    true,
                    settled.access_reason,
                )
                .await?;
        }
        tracing::info!(%id, by = settled.who, reason = settled.reason, "alert resolved");
        storage.alerts.publish(AlertState::Resolved, alert.clone());
    }
    Ok(alert)
}

/// Writes the raise of `alert` to the anchored access log (who: the ward's collector),
/// once per alert however often it is pushed.
pub async fn log_raise(store: &Store, alert: &Alert) -> Result<(), Error> {
    let logged: Option<Option<i64>> =
        sqlx::query_scalar("SELECT raise_logged_at FROM alerts WHERE id = $1")
            .bind(alert.id.0.as_bytes().to_vec())
            .fetch_optional(store.pool())
            .await
            .map_err(|error| Error::database("read the alert", error))?;
    if !matches!(logged, Some(None)) {
        return Ok(());
    }
    let patient = alert.patient.as_ref().map_or("", |p| p.as_str());
    store
        .log_access(
            alert.ward.as_str(),
            Role::Collector.name(),
            patient,
            &format!(
                "raise alert {} ({}, {})",
                alert.id,
                alert.code.name(),
                alert.priority.name()
            ),
            true,
            "raised",
        )
        .await?;
    sqlx::query("UPDATE alerts SET raise_logged_at = $1 WHERE id = $2")
        .bind(now_micros())
        .bind(alert.id.0.as_bytes().to_vec())
        .execute(store.pool())
        .await
        .map_err(|error| Error::database("record the alert's log entry", error))?;
    Ok(())
}

fn require(peer: &PeerIdentity, roles: &[Role]) -> Result<(), Error> {
    peer.require_any_role(roles)
        .map(drop)
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))
}

fn subject(peer: &PeerIdentity) -> Result<String, Error> {
    peer.identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))
}

/// Stores `alert` unless its id is there; returns whether it is new. A stored alert
/// that names no patient (raised before the device's assignment was known) gets this
/// one's.
pub async fn upsert(store: &Store, alert: &Alert) -> Result<bool, Error> {
    let body = serde_json::to_string(alert)
        .map_err(|error| Error::BadRequest(format!("the alert does not serialise: {error}")))?;
    let inserted = sqlx::query(
        "INSERT INTO alerts (id, kind, code, ward, patient, priority, state, raised_at, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    )
    .bind(alert.id.0.as_bytes().to_vec())
    .bind(kind_name(alert))
    .bind(alert.code.name())
    .bind(alert.ward.as_str().to_owned())
    .bind(alert.patient.as_ref().map(|p| p.as_str().to_owned()))
    .bind(alert.priority.name())
    .bind(AlertState::Raised.name())
    .bind(alert.raised_at_us)
    .bind(body)
    .execute(store.pool())
    .await
    .map_err(|error| Error::database("store the alert", error))?
    .rows_affected();
    if inserted == 0
        && let Some(patient) = &alert.patient
    {
        sqlx::query("UPDATE alerts SET patient = $1 WHERE id = $2 AND patient IS NULL")
            .bind(patient.as_str().to_owned())
            .bind(alert.id.0.as_bytes().to_vec())
            .execute(store.pool())
            .await
            .map_err(|error| Error::database("complete the alert", error))?;
    }
    Ok(inserted > 0)
}

fn kind_name(alert: &Alert) -> &'static str {
    match alert.kind {
        wardseal_core::alert::AlertKind::Clinical => "clinical",
        wardseal_core::alert::AlertKind::Technical => "technical",
    }
}

/// Records a stored batch's alarmed readings: each one's interpretation, and its alert
/// (upserted); returns the alerts that were new.
pub async fn record_batch(store: &Store, alerts: &[Alert]) -> Result<Vec<Alert>, Error> {
    let mut new = Vec::new();
    for alert in alerts {
        let (Some(leaf), Some(interpretation)) = (alert.reading, alert.interpretation) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO reading_interpretations (leaf_hash, interpretation, priority, alert_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (leaf_hash) DO NOTHING",
        )
        .bind(leaf.as_bytes().to_vec())
        .bind(interpretation.code())
        .bind(alert.priority.name())
        .bind(alert.id.0.as_bytes().to_vec())
        .execute(store.pool())
        .await
        .map_err(|error| Error::database("store the reading's interpretation", error))?;
        if upsert(store, alert).await? {
            new.push(alert.clone());
        }
        log_raise(store, alert).await?;
    }
    Ok(new)
}

/// The FHIR interpretation stored for the reading with leaf hash `leaf`, if it crossed
/// an alarm limit.
pub async fn interpretation(
    store: &Store,
    leaf: &wardseal_core::hash::Hash,
) -> Result<Option<Interpretation>, Error> {
    let code: Option<String> = sqlx::query_scalar(
        "SELECT interpretation FROM reading_interpretations WHERE leaf_hash = $1",
    )
    .bind(leaf.as_bytes().to_vec())
    .fetch_optional(store.pool())
    .await
    .map_err(|error| Error::database("read the reading's interpretation", error))?;
    Ok(code.as_deref().and_then(Interpretation::from_code))
}

/// The columns [`from_row`] reads, in its order.
pub(crate) const COLUMNS: &str = "body, patient, state, acknowledged_by, acknowledged_at, escalated_at, resolved_by, resolved_at";

/// An alert from a row of [`COLUMNS`].
pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<Alert, Error> {
    let body: String = row
        .try_get(0)
        .map_err(|error| Error::database("read an alert", error))?;
    let mut alert: Alert = serde_json::from_str(&body)
        .map_err(|error| Error::BadRequest(format!("a stored alert does not parse: {error}")))?;
    let read = |error| Error::database("read an alert", error);
    let patient: Option<String> = row.try_get(1).map_err(read)?;
    let state: String = row.try_get(2).map_err(read)?;
    alert.patient = patient.and_then(|p| p.parse().ok());
    alert.state = AlertState::from_name(&state).unwrap_or(AlertState::Raised);
    alert.acknowledged_by = row.try_get(3).map_err(read)?;
    alert.acknowledged_at_us = row.try_get(4).map_err(read)?;
    alert.escalated_at_us = row.try_get(5).map_err(read)?;
    alert.resolved_by = row.try_get(6).map_err(read)?;
    alert.resolved_at_us = row.try_get(7).map_err(read)?;
    Ok(alert)
}

/// The alert with id `id`.
pub async fn load(store: &Store, id: &AlertId) -> Result<Option<Alert>, Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
        .bind(id.0.as_bytes().to_vec())
        .fetch_optional(store.pool())
        .await
        .map_err(|error| Error::database("read the alert", error))?;
    row.as_ref().map(from_row).transpose()
}

/// Alerts in `state` (any when `None`), newest first: of the patients `staff` is assigned
/// to now, or all when `staff` is `None`.
pub async fn list(
    store: &Store,
    staff: Option<&str>,
    state: Option<AlertState>,
) -> Result<Vec<Alert>, Error> {
    let state_clause = if state.is_some() {
        if staff.is_some() {
            " AND state = $2"
        } else {
            " AND state = $1"
        }
    } else {
        ""
    };
    let sql = match staff {
        Some(_) => format!(
            "SELECT {COLUMNS} FROM alerts WHERE patient IN \
             (SELECT s.patient FROM staff_assignments s JOIN admissions a ON a.patient = s.patient \
              WHERE s.staff = $1 AND s.until IS NULL AND a.discharged_at IS NULL)\
             {state_clause} ORDER BY raised_at DESC LIMIT 1000"
        ),
        None => format!(
            "SELECT {COLUMNS} FROM alerts WHERE 1 = 1{state_clause} ORDER BY raised_at DESC LIMIT 1000"
        ),
    };
    let mut query = sqlx::query(&sql);
    if let Some(staff) = staff {
        query = query.bind(staff.to_owned());
    }
    if let Some(state) = state {
        query = query.bind(state.name());
    }
    let rows = query
        .fetch_all(store.pool())
        .await
        .map_err(|error| Error::database("list the alerts", error))?;
    rows.iter().map(from_row).collect()
}

/// Escalates every alert still raised past its priority's time at `now_us`; returns them.
pub async fn escalate_due(storage: &Storage, now_us: i64) -> Result<Vec<Alert>, Error> {
    let mut escalated = Vec::new();
    for priority in [Priority::High, Priority::Medium, Priority::Low] {
        let after =
            i64::try_from(storage.alerts.policy.after(priority).as_micros()).unwrap_or(i64::MAX);
        let due: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE state = 'raised' AND priority = $1 AND raised_at <= $2",
        )
        .bind(priority.name())
        .bind(now_us.saturating_sub(after))
        .fetch_all(storage.store.pool())
        .await
        .map_err(|error| Error::database("find alerts to escalate", error))?;
        for id in due {
            let changed = sqlx::query(
                "UPDATE alerts SET state = 'escalated', escalated_at = $1 WHERE id = $2 AND state = 'raised'",
            )
            .bind(now_us)
            .bind(id.clone())
            .execute(storage.store.pool())
            .await
            .map_err(|error| Error::database("escalate the alert", error))?
            .rows_affected();
            let Ok(id) = wardseal_core::hash::Hash::from_slice(&id).map(AlertId) else {
                continue;
            };
            if changed > 0
                && let Some(alert) = load(&storage.store, &id).await?
            {
                tracing::warn!(
                    %id,
                    priority = priority.name(),
                    patient = alert.patient.as_ref().map(|p| p.as_str()),
                    "alert not acknowledged in time: escalated"
                );
                storage.alerts.publish(AlertState::Escalated, alert.clone());
                escalated.push(alert);
            }
        }
    }
    Ok(escalated)
}

/// Escalates due alerts every `every`, for as long as the task runs (abort it to stop).
pub async fn run_escalation(storage: Arc<Storage>, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        match escalate_due(&storage, now_micros()).await {
            Ok(_) => failing = false,
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "escalating alerts failed; retrying");
                }
                failing = true;
            }
        }
    }
}
