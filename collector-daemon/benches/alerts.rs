//! Alert latency under load: a ward on this machine (hospital CA, embedded chain,
//! collector and wardseal-storage over real mutual TLS, storage on SQLite, the patient's
//! card on a SoftHSM token). Keep-alive devices send normal heart rates as background load
//! (default 20,000 readings/s, paced); one more device sends a critical heart rate (25 /min,
//! a high-priority LL alarm) every 200 ms. For each, the time from the device starting its
//! POST to the alert arriving on the responsible nurse's live stream
//! (`GET /v1/alerts/stream` on storage) is measured; prints p50 and p99 beside the target
//! (p99 ≤ 250 ms), the background rate reached and the load average, and where the time
//! goes: POST to the collector's 202 (checks, the group commit that makes the reading and
//! its alert durable) and the alert's raise at ingest to its arrival on the stream (push
//! to storage, fan-out). Prints, never asserts.
//!
//! `cargo bench -p wardseal-collector --bench alerts` (environment:
//! `WARDSEAL_ALERT_RATE`, background readings/s, default 20000; `WARDSEAL_ALERT_SECONDS`,
//! default 10).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark prints its figures and fails loudly"
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod figures;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::alerts::{EventStream, set_alarm_rule};
use common::storage::{PATIENT, StorageSetup, card_section, enroll_on_token, nurse};
use common::{GROUP, Ward, heart_rate};
use figures::{bench, environment, percentile};
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_core::hash::Hash;
use wardseal_core::reading::Timestamp;

/// Background devices (keep-alive connections).
const BACKGROUND_DEVICES: u64 = 16;
/// Readings per background POST.
const PER_POST: u64 = 100;
/// The device that sends the critical readings.
const ALARM_DEVICE: u64 = 100;

fn main() {
    wardseal_testkit::softhsm::run_isolated("alerts", &["--bench"], |hsm| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(hsm));
    })
    .unwrap();
}

async fn run(hsm: &wardseal_testkit::softhsm::SoftHsm) {
    let rate = environment("WARDSEAL_ALERT_RATE", 20_000);
    let seconds = environment("WARDSEAL_ALERT_SECONDS", 10);
    let storage_port = wardseal_testkit::free_port().unwrap();
    let mut devices: Vec<(u64, u32, bool)> =
        (1..=BACKGROUND_DEVICES).map(|s| (s, GROUP, true)).collect();
    devices.push((ALARM_DEVICE, GROUP, true));
    let ward = Ward::linked(
        &devices,
        "[batch]\nmax_readings = 5000\nlinger_ms = 20\n[ingest]\nskew_past_secs = 86400\n",
        storage_port,
    )
    .await;
    set_alarm_rule(&ward.ledger).await;
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
    let mut stream = EventStream::open(&to_storage).await;

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

    // Critical readings every 200 ms, and their alerts on the nurse's stream.
    let alarm = ward
        .connect(port, &ward.device(ALARM_DEVICE, GROUP).await)
        .await;
    // Each alert's arrival, and its time from the raise at ingest (collector clock, the
    // same machine) to the arrival, ms.
    let arrivals = tokio::spawn(async move {
        let mut arrived: HashMap<Hash, (Instant, f64)> = HashMap::new();
        while let Some(event) = stream.next(Duration::from_secs(5)).await {
            if let Some(leaf) = event.alert.reading {
                let now = Timestamp::now().unix_micros();
                #[expect(clippy::cast_precision_loss, reason = "milliseconds for a person")]
                let since_raise = (now - event.alert.raised_at_us) as f64 / 1000.0;
                arrived
                    .entry(leaf)
                    .or_insert_with(|| (Instant::now(), since_raise));
            }
        }
        arrived
    });
    let started = Instant::now();
    let mut posted: Vec<(Hash, Instant)> = Vec::new();
    let mut acknowledged: Vec<f64> = Vec::new();
    let mut sequence = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        sequence += 1;
        let at = Instant::now();
        let (status, json) =
            common::post(&alarm, &heart_rate("25", sequence, Timestamp::now())).await;
        acknowledged.push(at.elapsed().as_secs_f64() * 1000.0);
        if status == 202
            && let Ok(leaf) = serde_json::from_value::<Hash>(json["results"][0]["leaf"].clone())
        {
            posted.push((leaf, at));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    while background.join_next().await.is_some() {}
    let background_rate = sent.load(Ordering::Relaxed) as f64 / elapsed;
    // Let the last alerts arrive; the reader stops 5 s after the last event.
    let arrived = arrivals.await.unwrap();
    let mut latencies: Vec<f64> = posted
        .iter()
        .filter_map(|(leaf, at)| {
            arrived
                .get(leaf)
                .map(|(arrival, _)| arrival.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut after_raise: Vec<f64> = posted
        .iter()
        .filter_map(|(leaf, _)| arrived.get(leaf).map(|(_, since)| *since))
        .collect();
    after_raise.sort_by(f64::total_cmp);
    acknowledged.sort_by(f64::total_cmp);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "alerts: {} critical readings posted, {} alerts arrived on the stream; background {background_rate:.0} readings/s (asked {rate}); load average {}",
        posted.len(),
        latencies.len(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "device POST to the alert on the nurse's stream: p50 {:.1} ms, p99 {:.1} ms (target p99 ≤ 250 ms)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "  of which POST to the collector's 202: p50 {:.1} ms, p99 {:.1} ms; raise at ingest to the stream: p50 {:.1} ms, p99 {:.1} ms",
        percentile(&acknowledged, 0.5),
        percentile(&acknowledged, 0.99),
        percentile(&after_raise, 0.5),
        percentile(&after_raise, 0.99)
    );
    bench("alert_latency_p50_ms", percentile(&latencies, 0.5), "ms");
    bench("alert_latency_p99_ms", percentile(&latencies, 0.99), "ms");
    bench("alert_latency_p99_target_ms", 250.0, "ms");
    bench(
        "alert_post_to_202_p99_ms",
        percentile(&acknowledged, 0.99),
        "ms",
    );
    bench(
        "alert_raise_to_stream_p99_ms",
        percentile(&after_raise, 0.99),
        "ms",
    );
    bench(
        "alert_background_readings_per_s",
        background_rate,
        "readings/s",
    );
    daemon.shutdown().await;
    storage.stop().await;
}
