//! Notification latency under load: a ward on this machine (hospital CA, embedded chain,
//! collector and wardseal-storage over real mutual TLS, storage on SQLite, the patient's
//! card on a SoftHSM token) and a FHIR rest-hook subscriber (an https server on loopback
//! that requires storage's client certificate). Keep-alive devices send heart rates as
//! background load (default 20,000 readings/s, paced); one more device sends an SpO2
//! reading every 200 ms. The responsible nurse subscribes (`POST /fhir/Subscription`,
//! topic observation-created, filtered to the patient and LOINC 2708-6). For each SpO2
//! reading, the time from the device starting its POST to the collector until the
//! rest-hook receiving the notification naming it is measured; prints p50 and p99 beside
//! the target (p99 ≤ 500 ms), the background rate reached and the load average. Prints,
//! never asserts.
//!
//! `cargo bench -p wardseal-collector --bench notify` (environment:
//! `WARDSEAL_NOTIFY_RATE`, background readings/s, default 20000;
//! `WARDSEAL_NOTIFY_SECONDS`, default 10).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark prints its figures and fails loudly"
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod figures;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::storage::{PATIENT, StorageSetup, card_section, enroll_on_token, nurse};
use common::{GROUP, RULE, Ward, heart_rate};
use figures::{bench, environment, percentile};
use serde_json::{Value, json};
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_contracts::{Range, TypeRule, WideDecimal};
use wardseal_core::hash::Hash;
use wardseal_core::identity::Identity;
use wardseal_core::reading::Timestamp;
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};

/// Background devices (keep-alive connections).
const BACKGROUND_DEVICES: u64 = 16;
/// Readings per background POST.
const PER_POST: u64 = 100;
/// The device whose readings are subscribed to.
const MEASURED_DEVICE: u64 = 100;
/// The target the issue sets for p99, in ms.
const TARGET_P99_MS: f64 = 500.0;

fn main() {
    wardseal_testkit::softhsm::run_isolated("notify", &["--bench"], |hsm| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(hsm));
    })
    .unwrap();
}

fn spo2(value: &str, sequence: u64, time: Timestamp) -> String {
    format!(r#"{{"type":"spo2","value":{value},"unit":"%","time":"{time}","seq":{sequence}}}"#)
}

/// The focus ids (leaf hashes) of a notification Bundle's events.
fn focus_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|parameter| parameter["name"] == "notification-event")
        .filter_map(|event| {
            event["part"]
                .as_array()?
                .iter()
                .find(|part| part["name"] == "focus")?["valueReference"]["reference"]
                .as_str()?
                .rsplit('/')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

/// A rest-hook subscriber on loopback: records when each focus id first arrived.
async fn subscriber(
    ward: &Ward,
) -> (
    u16,
    Arc<Mutex<HashMap<String, Instant>>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let certificate = ward.pki.issue(Identity::storage(None, None)).await.unwrap();
    let tls = Arc::new(
        ServerTls::load(ServerTlsSettings::new(
            &certificate.certificate,
            &certificate.key,
            ward.pki.ca_bundle(),
        ))
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrived = Arc::new(Mutex::new(HashMap::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let seen = Arc::clone(&arrived);
    tokio::spawn(serve(
        listener,
        tls,
        ServeOptions::default(),
        move |request: hyper::Request<hyper::body::Incoming>, _peer| {
            let seen = Arc::clone(&seen);
            async move {
                let body = wardseal_net::wire::read_body(request.into_body(), 1 << 24)
                    .await
                    .unwrap_or_default();
                let now = Instant::now();
                if let Ok(bundle) = serde_json::from_slice::<Value>(&body) {
                    let mut seen = seen.lock().unwrap();
                    for id in focus_ids(&bundle) {
                        seen.entry(id).or_insert(now);
                    }
                }
                wardseal_net::wire::json_response(hyper::StatusCode::OK, &json!({}))
            }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (port, arrived, stop)
}

async fn run(hsm: &wardseal_testkit::softhsm::SoftHsm) {
    let rate = environment("WARDSEAL_NOTIFY_RATE", 20_000);
    let seconds = environment("WARDSEAL_NOTIFY_SECONDS", 10);
    let storage_port = wardseal_testkit::free_port().unwrap();
    let mut devices: Vec<(u64, u32, bool)> =
        (1..=BACKGROUND_DEVICES).map(|s| (s, GROUP, true)).collect();
    devices.push((MEASURED_DEVICE, GROUP, true));
    let ward = Ward::linked(
        &devices,
        "[batch]\nmax_readings = 5000\nlinger_ms = 20\n[ingest]\nskew_past_secs = 86400\n",
        storage_port,
    )
    .await;
    // The ward's rule also allows SpO2 (0–100 %), the subscribed data type.
    let range = Range::new(
        WideDecimal::parse("0").unwrap(),
        WideDecimal::parse("100").unwrap(),
    )
    .unwrap();
    ward.ledger
        .set_type_rule(RULE, &TypeRule::new(2, "%", vec![range], 0).unwrap())
        .await
        .unwrap();
    hsm.init_token(&wardseal_testkit::softhsm::TokenSpec::new(PATIENT))
        .unwrap();
    let uri = enroll_on_token(&ward.pki, hsm, PATIENT).await;
    let text = std::fs::read_to_string(&ward.config_path).unwrap();
    std::fs::write(
        &ward.config_path,
        text + "\n" + &card_section(PATIENT, &uri),
    )
    .unwrap();
    let setup = StorageSetup::new(&ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    storage
        .admit(&devices.iter().map(|d| d.0).collect::<Vec<_>>())
        .await;
    let nurse = nurse(&ward.pki).await;
    let to_storage = wardseal_collector::client::Connection::open(
        &common::endpoint(storage_port),
        ward.client_config(&nurse),
    )
    .await
    .unwrap();
    let (hook_port, arrived, stop_hook) = subscriber(&ward).await;
    let subscription = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "notification latency benchmark",
        "criteria": wardseal_storage::subscriptions::topic::Topic::ObservationCreated.canonical(),
        "_criteria": {"extension": [{
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
            "valueString": format!("Observation?patient=Patient/{PATIENT}&code=http://loinc.org|2708-6")
        }]},
        "channel": {
            "type": "rest-hook",
            "endpoint": format!("https://127.0.0.1:{hook_port}/notify"),
            "payload": "application/fhir+json",
            "_payload": {"extension": [{
                "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                "valueCode": "id-only"
            }]}
        }
    });
    let reply = to_storage
        .send(
            hyper::Method::POST,
            "/fhir/Subscription",
            serde_json::to_vec(&subscription).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{:?}", reply.body);

    let config = ward.config();
    let daemon = Daemon::start(&config, ward.ledger.clone(), open_cards(&config).unwrap())
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    // The collector fetches storage's assignments every second: let it bind them first.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Background load, paced per device.
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let mut background = tokio::task::JoinSet::new();
    let per_device = (rate / BACKGROUND_DEVICES).max(1);
    for serial in 1..=BACKGROUND_DEVICES {
        let connection = ward.connect(port, &ward.device(serial, GROUP).await).await;
        let running = Arc::clone(&running);
        let sent = Arc::clone(&sent);
        background.spawn(async move {
            let mut sequence = 0;
            let every = Duration::from_secs_f64(PER_POST as f64 / per_device as f64);
            let mut next = tokio::time::Instant::now();
            while running.load(Ordering::Relaxed) {
                let now = Timestamp::now();
                let body: Vec<String> = (0..PER_POST)
                    .map(|_| {
                        sequence += 1;
                        heart_rate("72", sequence, now)
                    })
                    .collect();
                let (status, _) = common::post(&connection, &format!("[{}]", body.join(","))).await;
                if status == 202 {
                    sent.fetch_add(PER_POST, Ordering::Relaxed);
                }
                next += every;
                tokio::time::sleep_until(next).await;
            }
        });
    }

    // A subscribed reading every 200 ms.
    let measured = ward
        .connect(port, &ward.device(MEASURED_DEVICE, GROUP).await)
        .await;
    let started = Instant::now();
    let mut posted: Vec<(String, Instant)> = Vec::new();
    let mut sequence = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        sequence += 1;
        let at = Instant::now();
        let (status, json) = common::post(&measured, &spo2("97", sequence, Timestamp::now())).await;
        if status == 202
            && let Ok(leaf) = serde_json::from_value::<Hash>(json["results"][0]["leaf"].clone())
        {
            posted.push((leaf.to_string(), at));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    while background.join_next().await.is_some() {}
    let background_rate = sent.load(Ordering::Relaxed) as f64 / elapsed;
    // Let the last notifications arrive (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let all = {
            let seen = arrived.lock().unwrap();
            posted.iter().all(|(leaf, _)| seen.contains_key(leaf))
        };
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = arrived.lock().unwrap().clone();
    let mut latencies: Vec<f64> = posted
        .iter()
        .filter_map(|(leaf, at)| {
            seen.get(leaf)
                .map(|arrival| arrival.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "notify: {} subscribed readings posted, {} notified on the rest-hook; background {background_rate:.0} readings/s (asked {rate}); load average {}",
        posted.len(),
        latencies.len(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "notification_latency_p50_ms={p50:.1} notification_latency_p99_ms={p99:.1} (target p99 ≤ {TARGET_P99_MS:.0})"
    );
    bench("notification_latency_p50_ms", p50, "ms");
    bench("notification_latency_p99_ms", p99, "ms");
    bench(
        "notification_background_readings_per_s",
        background_rate,
        "readings/s",
    );
    let _ = stop_hook.send(());
    daemon.shutdown().await;
    storage.stop().await;
}
