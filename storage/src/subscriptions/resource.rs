//! The FHIR shapes of subscriptions (Subscriptions Backport IG for R4): the `Subscription`
//! a client posts, read as a [`Request`]; the `Subscription` served back; the
//! subscription-status `Parameters` and the notification `Bundle` (type `history`).
//!
//! A posted Subscription names its topic's canonical URL in `criteria`, its filters in
//! `_criteria` (`backport-filter-criteria` extensions, e.g.
//! `Observation?patient=Patient/patient-0042&code=http://loinc.org|8867-4`), its
//! channel in `channel.type` (`rest-hook` or `websocket`) with `channel.endpoint`, the
//! payload content in `channel._payload` (`backport-payload-content`: `empty`, `id-only`
//! or `full-resource`) and optionally a heartbeat period and a maximum number of events
//! per notification (`backport-heartbeat-period`, `backport-max-count`). Anything it asks
//! for that storage cannot honour is refused with a sentence saying what to change.

use serde_json::{Value, json};

use super::records::{Event, Subscription};
use super::topic::Topic;
use crate::error::Error;

/// The backport's Subscription profile.
pub const BACKPORT_SUBSCRIPTION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
/// The backport's R4 subscription-status profile (on `Parameters`).
pub const BACKPORT_STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
/// The backport's R4 notification bundle profile.
pub const BACKPORT_NOTIFICATION_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";
const FILTER_CRITERIA: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
const PAYLOAD_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
const HEARTBEAT_PERIOD: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
const MAX_COUNT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count";

/// Events per notification unless the subscription asks for fewer.
pub const DEFAULT_MAX_COUNT: u32 = 100;
/// The most events one notification carries.
pub const MAX_MAX_COUNT: u32 = 1000;

/// `Subscription.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created; the rest-hook handshake has not succeeded yet.
    Requested,
    /// Delivering.
    Active,
    /// The last delivery failed; storage keeps retrying with backoff.
    Error,
    /// Ended (past its `end`).
    Off,
}

impl Status {
    /// The FHIR code.
    pub const fn code(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Active => "active",
            Status::Error => "error",
            Status::Off => "off",
        }
    }

    /// The status with FHIR code `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        [
            Status::Requested,
            Status::Active,
            Status::Error,
            Status::Off,
        ]
        .into_iter()
        .find(|status| status.code() == code)
    }
}

/// `Subscription.channel.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// POST each notification to an https endpoint.
    RestHook,
    /// Send notifications to a bound websocket.
    Websocket,
}

impl ChannelKind {
    /// The FHIR code.
    pub const fn code(self) -> &'static str {
        match self {
            ChannelKind::RestHook => "rest-hook",
            ChannelKind::Websocket => "websocket",
        }
    }

    /// The channel with FHIR code `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        [ChannelKind::RestHook, ChannelKind::Websocket]
            .into_iter()
            .find(|kind| kind.code() == code)
    }
}

/// How much of the focus resource a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Only the status (event numbers and times).
    Empty,
    /// The focus resource's URL.
    IdOnly,
    /// The focus resource itself.
    FullResource,
}

impl Content {
    /// The backport code.
    pub const fn code(self) -> &'static str {
        match self {
            Content::Empty => "empty",
            Content::IdOnly => "id-only",
            Content::FullResource => "full-resource",
        }
    }

    /// The content with backport code `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        [Content::Empty, Content::IdOnly, Content::FullResource]
            .into_iter()
            .find(|content| content.code() == code)
    }
}

/// A `code` filter: `system|code`, or a code in any system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFilter {
    /// The code system, when named.
    pub system: Option<String>,
    /// The code.
    pub code: String,
}

impl CodeFilter {
    /// Reads `system|code` or `code`.
    pub fn parse(text: &str) -> Self {
        match text.split_once('|') {
            Some((system, code)) if !system.is_empty() => Self {
                system: Some(system.to_owned()),
                code: code.to_owned(),
            },
            Some((_, code)) => Self {
                system: None,
                code: code.to_owned(),
            },
            None => Self {
                system: None,
                code: text.to_owned(),
            },
        }
    }

    /// Whether a resource coded `(system, code)` among `codings` matches.
    pub fn matches<'a>(&self, mut codings: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        codings.any(|(system, code)| {
            code == self.code && self.system.as_deref().is_none_or(|wanted| wanted == system)
        })
    }
}

impl std::fmt::Display for CodeFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.system {
            Some(system) => write!(f, "{system}|{}", self.code),
            None => f.write_str(&self.code),
        }
    }
}

/// A subscription's filters (all must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only this patient's events (subject id).
    pub patient: Option<String>,
    /// Only Observations with this code.
    pub code: Option<CodeFilter>,
}

/// A subscription's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// rest-hook or websocket.
    pub kind: ChannelKind,
    /// The rest-hook's `https://` URL.
    pub endpoint: Option<String>,
    /// How much each notification carries.
    pub content: Content,
    /// Seconds between heartbeats while nothing else is sent.
    pub heartbeat_secs: Option<u32>,
    /// Most events per notification.
    pub max_count: u32,
}

/// What a client asked for in a posted Subscription.
#[derive(Debug, Clone)]
pub struct Request {
    /// The topic.
    pub topic: Topic,
    /// The filters.
    pub filters: Filters,
    /// The channel.
    pub channel: Channel,
    /// `Subscription.reason`.
    pub reason: String,
    /// `Subscription.end`, µs since the epoch.
    pub end_at: Option<i64>,
}

fn bad(message: impl Into<String>) -> Error {
    Error::BadRequest(message.into())
}

fn extensions<'a>(element: Option<&'a Value>, url: &'a str) -> impl Iterator<Item = &'a Value> {
    element
        .and_then(|element| element.get("extension"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |extension| extension.get("url").and_then(Value::as_str) == Some(url))
}

fn unsigned_extension(element: Option<&Value>, url: &str) -> Result<Option<u32>, Error> {
    match extensions(element, url).next() {
        None => Ok(None),
        Some(extension) => extension
            .get("valueUnsignedInt")
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
            .map(Some)
            .ok_or_else(|| bad(format!("extension {url} needs a valueUnsignedInt"))),
    }
}

/// Reads one `backport-filter-criteria` value (`Resource?name=value&…`) into `filters`.
fn read_filter(topic: Topic, text: &str, filters: &mut Filters) -> Result<(), Error> {
    let resource = topic.description().resource;
    let query = match text.split_once('?') {
        Some((named, query)) => {
            if named != resource {
                return Err(bad(format!(
                    "filter {text:?} is about {named}, but topic {} notifies {resource}",
                    topic.name()
                )));
            }
            query
        }
        None => text,
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !topic.description().filters.contains(&name.as_ref()) {
            return Err(bad(format!(
                "topic {} filters by {} only, not by {name:?}",
                topic.name(),
                topic.description().filters.join(" and ")
            )));
        }
        match name.as_ref() {
            "patient" => {
                // Form decoding reads `+` as a space; ids hold neither.
                let id = value.strip_prefix("Patient/").unwrap_or(&value);
                wardseal_core::identity::SubjectId::new(id).map_err(|error| {
                    bad(format!(
                        "filter patient={value:?} is not a patient id: {error}"
                    ))
                })?;
                filters.patient = Some(id.to_owned());
            }
            "code" => {
                if value.is_empty() {
                    return Err(bad("filter code= needs system|code or a code"));
                }
                filters.code = Some(CodeFilter::parse(&value));
            }
            _ => {}
        }
    }
    Ok(())
}

fn instant_micros(text: &str) -> Option<i64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos() / 1000).ok()
}

impl Request {
    /// Reads a posted Subscription (JSON).
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let resource: Value = serde_json::from_slice(body)
            .map_err(|error| bad(format!("the body is not JSON: {error}")))?;
        if resource.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
            return Err(bad("the body must be a Subscription resource"));
        }
        let criteria = resource
            .get("criteria")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Subscription.criteria must name a topic's canonical URL"))?;
        let topic = Topic::from_canonical(criteria).ok_or_else(|| {
            bad(format!(
                "criteria {criteria:?} is not a topic of this server; topics: {}",
                super::topic::TOPICS
                    .iter()
                    .map(|described| described.topic.canonical())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut filters = Filters::default();
        for extension in extensions(resource.get("_criteria"), FILTER_CRITERIA) {
            let text = extension
                .get("valueString")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("backport-filter-criteria needs a valueString"))?;
            read_filter(topic, text, &mut filters)?;
        }
        let channel = resource
            .get("channel")
            .ok_or_else(|| bad("Subscription.channel is required"))?;
        let kind = channel
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Subscription.channel.type is required"))?;
        let kind = ChannelKind::from_code(kind).ok_or_else(|| {
            bad(format!(
                "channel type {kind:?} is not served: use rest-hook or websocket"
            ))
        })?;
        if channel.get("header").is_some() {
            return Err(bad(
                "channel.header is not supported: rest-hook deliveries authenticate with \
                 storage's certificate over mutual TLS",
            ));
        }
        let endpoint = channel
            .get("endpoint")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if kind == ChannelKind::RestHook {
            let url = endpoint
                .as_deref()
                .ok_or_else(|| bad("a rest-hook channel needs channel.endpoint (https://…)"))?;
            url.parse::<wardseal_net::client::Endpoint>()
                .map_err(|error| bad(format!("channel.endpoint: {error}")))?;
        }
        if let Some(payload) = channel.get("payload").and_then(Value::as_str)
            && payload != "application/fhir+json"
            && payload != "application/json"
        {
            return Err(bad(format!(
                "channel.payload {payload:?} is not served: use application/fhir+json"
            )));
        }
        let content = match extensions(channel.get("_payload"), PAYLOAD_CONTENT).next() {
            None => Content::IdOnly,
            Some(extension) => {
                let code = extension
                    .get("valueCode")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Content::from_code(code).ok_or_else(|| {
                    bad(format!(
                        "payload content {code:?}: use empty, id-only or full-resource"
                    ))
                })?
            }
        };
        let heartbeat_secs = unsigned_extension(Some(channel), HEARTBEAT_PERIOD)?;
        if heartbeat_secs == Some(0) {
            return Err(bad("a heartbeat period is at least 1 second"));
        }
        let max_count = unsigned_extension(Some(channel), MAX_COUNT)?
            .unwrap_or(DEFAULT_MAX_COUNT)
            .clamp(1, MAX_MAX_COUNT);
        let reason = resource
            .get("reason")
            .and_then(Value::as_str)
            .filter(|reason| !reason.trim().is_empty())
            .unwrap_or("notifications")
            .to_owned();
        let end_at = match resource.get("end").and_then(Value::as_str) {
            None => None,
            Some(text) => Some(
                instant_micros(text)
                    .ok_or_else(|| bad(format!("Subscription.end {text:?} is not an instant")))?,
            ),
        };
        Ok(Self {
            topic,
            filters,
            channel: Channel {
                kind,
                endpoint: if kind == ChannelKind::RestHook {
                    endpoint
                } else {
                    None
                },
                content,
                heartbeat_secs,
                max_count,
            },
            reason,
            end_at,
        })
    }
}

/// An instant (µs since the epoch) as FHIR `instant` text.
pub fn instant(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The Subscription resource for `subscription` as stored.
pub fn subscription(subscription: &Subscription, now_us: i64) -> Value {
    let mut filter = Vec::new();
    if let Some(patient) = &subscription.filters.patient {
        filter.push(format!("patient=Patient/{patient}"));
    }
    if let Some(code) = &subscription.filters.code {
        filter.push(format!("code={code}"));
    }
    let mut resource = json!({
        "resourceType": "Subscription",
        "id": subscription.id,
        "meta": {"profile": [BACKPORT_SUBSCRIPTION_PROFILE]},
        "status": subscription.status_now(now_us).code(),
        "reason": subscription.reason,
        "criteria": subscription.topic.canonical(),
        "channel": {
            "type": subscription.channel.kind.code(),
            "payload": "application/fhir+json",
            "_payload": {"extension": [{
                "url": PAYLOAD_CONTENT,
                "valueCode": subscription.channel.content.code()
            }]},
            "extension": [{"url": MAX_COUNT, "valueUnsignedInt": subscription.channel.max_count}]
        }
    });
    if !filter.is_empty() {
        resource["_criteria"] = json!({"extension": [{
            "url": FILTER_CRITERIA,
            "valueString": format!("{}?{}", subscription.topic.description().resource, filter.join("&"))
        }]});
    }
    if let Some(endpoint) = &subscription.channel.endpoint {
        resource["channel"]["endpoint"] = json!(endpoint);
    }
    if let (Some(secs), Some(extensions)) = (
        subscription.channel.heartbeat_secs,
        resource["channel"]["extension"].as_array_mut(),
    ) {
        extensions.push(json!({"url": HEARTBEAT_PERIOD, "valueUnsignedInt": secs}));
    }
    if let Some(error) = &subscription.error {
        resource["error"] = json!(error);
    }
    if let Some(end) = subscription.end_at {
        resource["end"] = json!(instant(end));
    }
    resource
}

/// What a notification bundle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationType {
    /// The rest-hook handshake, or the first message on a bound websocket.
    Handshake,
    /// Nothing happened for a heartbeat period.
    Heartbeat,
    /// Events.
    EventNotification,
    /// The answer to `$status`.
    QueryStatus,
    /// The answer to `$events`.
    QueryEvent,
}

impl NotificationType {
    /// The backport code.
    pub const fn code(self) -> &'static str {
        match self {
            NotificationType::Handshake => "handshake",
            NotificationType::Heartbeat => "heartbeat",
            NotificationType::EventNotification => "event-notification",
            NotificationType::QueryStatus => "query-status",
            NotificationType::QueryEvent => "query-event",
        }
    }
}

/// A random UUID (version 4), as text.
pub fn uuid() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0_u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The subscription-status `Parameters` for `subscription`, of `kind`, listing `events`
/// (each with its focus unless the content is `empty`).
pub fn status(
    subscription: &Subscription,
    kind: NotificationType,
    events: &[Event],
    content: Content,
    now_us: i64,
) -> Value {
    let mut parameter = vec![
        json!({"name": "subscription", "valueReference": {
            "reference": format!("{}/Subscription/{}", subscription.base_url, subscription.id)
        }}),
        json!({"name": "topic", "valueCanonical": subscription.topic.canonical()}),
        json!({"name": "status", "valueCode": subscription.status_now(now_us).code()}),
        json!({"name": "type", "valueCode": kind.code()}),
        json!({"name": "events-since-subscription-start",
               "valueString": subscription.events.to_string()}),
    ];
    for event in events {
        let mut part = vec![
            json!({"name": "event-number", "valueString": event.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": instant(event.at)}),
        ];
        if content != Content::Empty {
            part.push(json!({"name": "focus", "valueReference": {
                "reference": format!("{}/{}/{}", subscription.base_url, event.focus_type, event.focus_id)
            }}));
        }
        parameter.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(error) = &subscription.error {
        parameter.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Parameters",
        "id": uuid(),
        "meta": {"profile": [BACKPORT_STATUS_PROFILE]},
        "parameter": parameter,
    })
}

/// A notification `Bundle` (type `history`): the status first, then each event's focus
/// (its URL, and the resource itself for `full-resource`).
pub fn notification(
    subscription: &Subscription,
    kind: NotificationType,
    events: &[Event],
    content: Content,
    now_us: i64,
) -> Value {
    let status_id = uuid();
    let mut entry = vec![json!({
        "fullUrl": format!("urn:uuid:{status_id}"),
        "resource": status(subscription, kind, events, content, now_us),
        "request": {"method": "GET", "url": format!("Subscription/{}/$status", subscription.id)},
        "response": {"status": "200"}
    })];
    if content != Content::Empty {
        for event in events {
            let (method, url, response) = if event.focus_type == "Observation" {
                ("POST", event.focus_type.clone(), "201")
            } else {
                (
                    "PUT",
                    format!("{}/{}", event.focus_type, event.focus_id),
                    "200",
                )
            };
            let mut item = json!({
                "fullUrl": format!("{}/{}/{}", subscription.base_url, event.focus_type, event.focus_id),
                "request": {"method": method, "url": url},
                "response": {"status": response}
            });
            if content == Content::FullResource
                && let Ok(resource) = serde_json::from_str::<Value>(&event.resource)
            {
                item["resource"] = resource;
            }
            entry.push(item);
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": uuid(),
        "meta": {"profile": [BACKPORT_NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": instant(now_us),
        "entry": entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(extra: Value) -> Value {
        let mut resource = json!({
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "ward round",
            "criteria": Topic::ObservationCreated.canonical(),
            "channel": {"type": "rest-hook", "endpoint": "https://127.0.0.1:9443/hook",
                        "payload": "application/fhir+json"}
        });
        if let (Some(target), Some(extra)) = (resource.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                target.insert(key.clone(), value.clone());
            }
        }
        resource
    }

    #[test]
    fn a_backport_subscription_is_read_with_its_filters_and_channel() {
        let mut resource = posted(json!({
            "_criteria": {"extension": [{"url": FILTER_CRITERIA,
                "valueString": "Observation?patient=Patient/patient-7&code=http://loinc.org|8867-4"}]}
        }));
        resource["channel"]["_payload"] = json!({"extension": [
            {"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]});
        resource["channel"]["extension"] = json!([
            {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 30},
            {"url": MAX_COUNT, "valueUnsignedInt": 5}]);
        let request = Request::parse(&serde_json::to_vec(&resource).unwrap()).unwrap();
        assert_eq!(request.topic, Topic::ObservationCreated);
        assert_eq!(request.filters.patient.as_deref(), Some("patient-7"));
        let code = request.filters.code.unwrap();
        assert!(code.matches([("http://loinc.org", "8867-4")].into_iter()));
        assert!(!code.matches([("urn:iso:std:iso:11073:10101", "8867-4")].into_iter()));
        assert_eq!(request.channel.content, Content::FullResource);
        assert_eq!(request.channel.heartbeat_secs, Some(30));
        assert_eq!(request.channel.max_count, 5);
        assert_eq!(request.reason, "ward round");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_with_a_reason() {
        let cases = [
            (
                json!({"criteria": "http://example.org/SubscriptionTopic/x"}),
                "not a topic",
            ),
            (
                json!({"_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": "Observation?device=x"}]}}),
                "filters by patient and code",
            ),
            (
                json!({"_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": "Flag?patient=p"}]}}),
                "is about Flag",
            ),
            (
                json!({"channel": {"type": "email", "endpoint": "mailto:a@b"}}),
                "rest-hook or websocket",
            ),
            (
                json!({"channel": {"type": "rest-hook", "endpoint": "http://plain:80/"}}),
                "https://",
            ),
            (
                json!({"channel": {"type": "rest-hook"}}),
                "channel.endpoint",
            ),
            (
                json!({"channel": {"type": "rest-hook", "endpoint": "https://h:1/", "header": ["Authorization: x"]}}),
                "mutual TLS",
            ),
        ];
        for (change, expected) in cases {
            let body = serde_json::to_vec(&posted(change)).unwrap();
            let error = Request::parse(&body).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} (expected {expected:?})");
        }
        assert!(Request::parse(b"{").is_err());
        assert!(Request::parse(br#"{"resourceType":"Patient"}"#).is_err());
    }

    fn stored() -> Subscription {
        Subscription {
            id: "abc".into(),
            owner: "nurse-1".into(),
            owner_role: "staff".into(),
            owner_certificate: Vec::new(),
            base_url: "https://storage:8443/fhir".into(),
            topic: Topic::ObservationCreated,
            filters: Filters {
                patient: Some("patient-7".into()),
                code: None,
            },
            channel: Channel {
                kind: ChannelKind::RestHook,
                endpoint: Some("https://127.0.0.1:9443/hook".into()),
                content: Content::FullResource,
                heartbeat_secs: Some(60),
                max_count: 10,
            },
            reason: "ward round".into(),
            end_at: None,
            status: Status::Active,
            error: None,
            created_at: 0,
            events: 7,
            delivered: 5,
            attempts: 0,
            next_attempt_at: 0,
        }
    }

    fn event(number: i64) -> Event {
        Event {
            number,
            at: 1_800_000_000_000_000,
            patient: "patient-7".into(),
            focus_type: "Observation".into(),
            focus_id: format!("leaf{number}"),
            resource: json!({"resourceType": "Observation", "id": format!("leaf{number}")})
                .to_string(),
        }
    }

    #[test]
    fn a_notification_is_a_history_bundle_with_the_status_first() {
        let subscription = stored();
        let events = [event(6), event(7)];
        let bundle = notification(
            &subscription,
            NotificationType::EventNotification,
            &events,
            Content::FullResource,
            1_800_000_000_000_000,
        );
        assert_eq!(bundle["type"], "history");
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        let status = &entries[0]["resource"];
        assert_eq!(status["resourceType"], "Parameters");
        let parameter = |name: &str| -> Vec<Value> {
            status["parameter"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == name)
                .cloned()
                .collect()
        };
        assert_eq!(parameter("type")[0]["valueCode"], "event-notification");
        assert_eq!(
            parameter("events-since-subscription-start")[0]["valueString"],
            "7"
        );
        assert_eq!(
            parameter("subscription")[0]["valueReference"]["reference"],
            "https://storage:8443/fhir/Subscription/abc"
        );
        let numbers: Vec<Value> = parameter("notification-event")
            .iter()
            .map(|event| event["part"][0]["valueString"].clone())
            .collect();
        assert_eq!(numbers, [json!("6"), json!("7")]);
        assert_eq!(
            entries[1]["fullUrl"],
            "https://storage:8443/fhir/Observation/leaf6"
        );
        assert_eq!(entries[1]["resource"]["id"], "leaf6");
        assert_eq!(entries[1]["request"]["method"], "POST");
        // id-only drops the resources, empty drops the entries and the focus too.
        let id_only = notification(
            &subscription,
            NotificationType::EventNotification,
            &events,
            Content::IdOnly,
            0,
        );
        assert!(id_only["entry"][1].get("resource").is_none());
        let empty = notification(
            &subscription,
            NotificationType::EventNotification,
            &events,
            Content::Empty,
            0,
        );
        assert_eq!(empty["entry"].as_array().unwrap().len(), 1);
        assert!(!empty.to_string().contains("\"focus\""));
    }

    #[test]
    fn a_stored_subscription_reads_back_as_a_backport_subscription() {
        let resource = subscription(&stored(), 0);
        assert_eq!(resource["criteria"], Topic::ObservationCreated.canonical());
        assert_eq!(
            resource["_criteria"]["extension"][0]["valueString"],
            "Observation?patient=Patient/patient-7"
        );
        assert_eq!(
            resource["channel"]["endpoint"],
            "https://127.0.0.1:9443/hook"
        );
        assert_eq!(resource["status"], "active");
        let reposted = Request::parse(&serde_json::to_vec(&resource).unwrap()).unwrap();
        assert_eq!(reposted.filters, stored().filters);
        assert_eq!(reposted.channel, stored().channel);
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(uuid(), id);
    }
}
