//! The collector's load generator: a whole ward on this machine (hospital CA, embedded
//! chain, collector and wardseal-storage over real mutual TLS, storage on SQLite, patient
//! cards enrolled on SoftHSM tokens) driven by simulated devices. Prints a table and, for
//! each figure, one machine-readable line `BENCH <name> <value> <unit>`:
//!
//! 1. N = 10, 100, 1000 simultaneous devices, each opening a fresh mTLS connection (full
//!    handshake with its client certificate, no resumption) and sending one reading: time
//!    until all are acknowledged (202 = durable in the spool), and until all are stored
//!    at storage (counted in storage's database), beside the seed paper's figures;
//! 2. sustained readings/s over keep-alive connections, acknowledged and stored end to end,
//!    for one patient (one card, one chain) and for a ward of 8 patients (8 cards);
//! 3. one patient card throttled to 5 signatures/s: readings/s it gets stored and the
//!    latency from the device sending a reading to its batch arriving at storage (p50, p99).
//!
//! `cargo bench -p wardseal-collector --bench load` (environment: `WARDSEAL_LOAD_N`,
//! e.g. `10,100`; `WARDSEAL_LOAD_SECONDS`, default 5; `WARDSEAL_LOAD_BACKLOG`, the
//! collector's listen backlog, default the configuration's 4096; `WARDSEAL_LOAD_N=` (empty)
//! skips part 1 and `WARDSEAL_LOAD_CARD=0` part 3).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark prints its figures and fails loudly"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::storage::{PATIENT, StorageSetup, card_section, enroll_on_token};
use common::{GROUP, RULE, WARD, Ward, epc, heart_rate};
use wardseal_card::Signer;
use wardseal_collector::batcher::Card;
use wardseal_collector::client::Connection;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_core::hash::Hash;
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_core::reading::Timestamp;
use wardseal_pki::ca::SubjectKey;
use wardseal_pki::key::KeyAlgorithm;
use wardseal_pki::profile::Request;

const PAPER: [(usize, f64); 3] = [(10, 5.72), (100, 10.81), (1000, 30.25)];
const CARD_PATIENT: &str = "P-bench";
const CARD_DEVICES: u64 = 8;
const CARD_BASE: u64 = 5000;
const KEEPALIVE_BASE: u64 = 6000;
const KEEPALIVE_CONNECTIONS: u64 = 16;
/// The ward of the sustained measurement: patients, each with its own card, and keep-alive
/// devices per patient (`WARD_PATIENTS` × `WARD_DEVICES_PER_PATIENT` connections, as many
/// as the one-patient run).
const WARD_PATIENTS: u64 = 8;
const WARD_DEVICES_PER_PATIENT: u64 = 2;
const WARD_BASE: u64 = 7000;
/// Longest any wait of the benchmark may take before it gives up.
const LIMIT: Duration = Duration::from_secs(300);

/// A patient card as slow as a real one: 200 ms per signature (5/s), around a real
/// SoftHSM token so storage accepts what it signs.
struct Throttled(Arc<dyn Signer>);

impl Signer for Throttled {
    fn algorithm(&self) -> wardseal_card::SignatureAlgorithm {
        self.0.algorithm()
    }
    fn certificate_der(&self) -> Option<&[u8]> {
        self.0.certificate_der()
    }
    fn public_key_der(&self) -> &[u8] {
        self.0.public_key_der()
    }
    fn sign_digest(&self, digest: &Hash) -> Result<Vec<u8>, wardseal_card::Error> {
        std::thread::sleep(Duration::from_millis(200));
        self.0.sign_digest(digest)
    }
}

/// One figure: printed for people by the caller, and here for the report generator.
fn bench(name: &str, value: f64, unit: &str) {
    let value = if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    };
    println!("BENCH {name} {value} {unit}");
}

fn main() {
    wardseal_testkit::softhsm::run_isolated("load", &["--bench"], |hsm| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(hsm));
    })
    .unwrap();
}

/// Readings stored at storage (its SQLite database, read-only), summed over the stored
/// batches' counts: `COUNT(*)` over the readings table would scan hundreds of thousands of
/// rows on every poll and slow down the storage it measures.
fn stored_count(database: &Path) -> i64 {
    let connection =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    connection
        .query_row(
            "SELECT COALESCE(SUM(reading_count), 0) FROM batches",
            [],
            |row| row.get(0),
        )
        .unwrap()
}

/// Seconds from `start` until storage holds `target` readings (polled every 10 ms).
async fn until_stored(database: &Path, target: i64, start: Instant) -> f64 {
    loop {
        if stored_count(database) >= target {
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < LIMIT,
            "storage holds {} of {target} readings after {LIMIT:?}",
            stored_count(database)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run(hsm: &wardseal_testkit::softhsm::SoftHsm) {
    // An empty list skips the simultaneous-devices part (to measure only the rest).
    let sizes: Vec<usize> = std::env::var("WARDSEAL_LOAD_N")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.trim().parse().unwrap())
        .collect();
    // `WARDSEAL_LOAD_CARD=0` skips the throttled-card part.
    let card_part = std::env::var("WARDSEAL_LOAD_CARD").map_or(true, |v| v != "0");
    let seconds: u64 = std::env::var("WARDSEAL_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let backlog = std::env::var("WARDSEAL_LOAD_BACKLOG")
        .map(|b| {
            format!(
                "[collector]\nward = \"{WARD}\"\nlisten = \"127.0.0.1:0\"\ndrain_secs = 5\nlisten_backlog = {b}\n"
            )
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let fresh = sizes.iter().copied().max().unwrap_or(0) as u64;
    let mut devices: Vec<(u64, u32, bool)> = (1..=fresh).map(|s| (s, GROUP, true)).collect();
    devices.extend((CARD_BASE..CARD_BASE + CARD_DEVICES).map(|s| (s, GROUP, true)));
    devices
        .extend((KEEPALIVE_BASE..KEEPALIVE_BASE + KEEPALIVE_CONNECTIONS).map(|s| (s, GROUP, true)));
    let ward_devices = WARD_PATIENTS * WARD_DEVICES_PER_PATIENT;
    devices.extend((WARD_BASE..WARD_BASE + ward_devices).map(|s| (s, GROUP, true)));
    let ward_patients: Vec<String> = (1..=WARD_PATIENTS).map(|p| format!("P-ward-{p}")).collect();
    let mut patients = vec![PATIENT.to_owned(), CARD_PATIENT.to_owned()];
    patients.extend(ward_patients.iter().cloned());
    let started = Instant::now();
    let storage_port = wardseal_testkit::free_port().unwrap();
    let ward = Ward::linked(
        &devices,
        &format!("{backlog}[batch]\nmax_readings = 5000\nlinger_ms = 20\n[ingest]\nskew_past_secs = 86400\n"),
        storage_port,
    )
    .await;
    // Patient cards on SoftHSM tokens enrolled by the CA: one for the fresh and one-patient
    // keep-alive devices, one (throttled) for the card measurement, one per ward patient.
    for patient in &patients {
        hsm.init_token(&wardseal_testkit::softhsm::TokenSpec::new(patient))
            .unwrap();
    }
    for patient in &patients {
        let uri = enroll_on_token(&ward.pki, hsm, patient).await;
        let mut text = std::fs::read_to_string(&ward.config_path).unwrap();
        text.push('\n');
        text.push_str(&card_section(patient, &uri));
        std::fs::write(&ward.config_path, text).unwrap();
    }
    let setup = StorageSetup::new(&ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    let card_devices: Vec<u64> = (CARD_BASE..CARD_BASE + CARD_DEVICES).collect();
    storage
        .admit(
            &devices
                .iter()
                .map(|d| d.0)
                .filter(|s| !card_devices.contains(s) && *s < WARD_BASE)
                .collect::<Vec<_>>(),
        )
        .await;
    let store = &storage.storage.store;
    store
        .admit(
            &SubjectId::new(CARD_PATIENT).unwrap(),
            WARD,
            "13",
            "A",
            None,
        )
        .await
        .unwrap();
    let since = Timestamp::now().unix_micros() - 3_600_000_000;
    for &serial in &card_devices {
        store
            .assign_device(&epc(serial).pure_identity_uri(), CARD_PATIENT, since)
            .await
            .unwrap();
    }
    for (index, patient) in ward_patients.iter().enumerate() {
        let bed = format!("{}", 20 + index);
        store
            .admit(
                &SubjectId::new(patient.as_str()).unwrap(),
                WARD,
                &bed,
                "A",
                None,
            )
            .await
            .unwrap();
        let first = WARD_BASE + index as u64 * WARD_DEVICES_PER_PATIENT;
        for serial in first..first + WARD_DEVICES_PER_PATIENT {
            store
                .assign_device(&epc(serial).pure_identity_uri(), patient, since)
                .await
                .unwrap();
        }
    }

    // Device certificates and client configurations, all made before any timing.
    let signing = ward.pki.ca().unlock(ward.pki.secrets()).unwrap();
    let mut configs = std::collections::HashMap::new();
    for &(serial, _, _) in &devices {
        let key = ward.dir.path().join(format!("device-{serial}.key"));
        let mut request = Request::new(Identity::device(epc(serial), GroupId(GROUP), RuleId(RULE)));
        request.ward = Some(WARD.into());
        let issued = signing
            .issue(
                &request,
                &SubjectKey::Generate {
                    algorithm: KeyAlgorithm::EcdsaP256,
                    path: key.clone(),
                },
                "bench",
            )
            .await
            .unwrap();
        let certificate = ward.dir.path().join(format!("device-{serial}.pem"));
        std::fs::write(&certificate, &issued.pem).unwrap();
        let config =
            wardseal_net::client::ClientTlsSettings::new(ward.pki.ca_bundle(), &certificate, &key)
                .client_config(&[b"http/1.1"])
                .unwrap();
        configs.insert(serial, config);
    }
    println!(
        "setup: {} devices registered and certified, {} cards enrolled, in {:.1} s",
        devices.len(),
        patients.len(),
        started.elapsed().as_secs_f64()
    );
    let config = ward.config();
    let cards = open_cards(&config)
        .unwrap()
        .into_iter()
        .map(|(patient, card)| {
            if patient.as_str() == CARD_PATIENT {
                let signer: Arc<dyn Signer> = Arc::new(Throttled(card.signer));
                (
                    patient,
                    Card {
                        signer,
                        certificate: card.certificate,
                    },
                )
            } else {
                (patient, card)
            }
        })
        .collect();
    let daemon = Daemon::start(&config, ward.ledger.clone(), cards)
        .await
        .unwrap();
    let endpoint = common::endpoint(daemon.local_addr().port());
    // The collector fetches storage's assignments every second: let it bind them first.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    println!(
        "\n1. simultaneous devices, each a fresh mTLS connection (full TLS 1.3 handshake, client certificate) and one reading"
    );
    println!(
        "   {:>5}  {:>16}  {:>16}  {:>18}  {:>6}",
        "N", "all acknowledged", "all stored", "paper (5 s blocks)", "202s"
    );
    let mut figures = Vec::new();
    for (round, &n) in sizes.iter().enumerate() {
        let sequence = round as u64 + 1;
        let before = stored_count(&setup.database);
        let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
        let mut tasks = tokio::task::JoinSet::new();
        for serial in 1..=n as u64 {
            let config = Arc::clone(&configs[&serial]);
            let endpoint = endpoint.clone();
            let barrier = Arc::clone(&barrier);
            tasks.spawn(async move {
                barrier.wait().await;
                let connection = Connection::open(&endpoint, config).await.unwrap();
                let reply = connection
                    .send(
                        hyper::Method::POST,
                        "/v1/readings",
                        heart_rate("72", sequence, Timestamp::now()).into_bytes(),
                    )
                    .await
                    .unwrap();
                reply.status
            });
        }
        barrier.wait().await;
        let start = Instant::now();
        let mut accepted = 0;
        while let Some(status) = tasks.join_next().await {
            if status.unwrap() == 202 {
                accepted += 1;
            }
        }
        let acknowledged = start.elapsed().as_secs_f64();
        let stored = until_stored(&setup.database, before + accepted, start).await;
        let paper = PAPER
            .iter()
            .find(|(size, _)| *size == n)
            .map_or("-".into(), |(_, s)| format!("{s:.2} s"));
        println!("   {n:>5}  {acknowledged:>14.3} s  {stored:>14.3} s  {paper:>18}  {accepted:>6}");
        figures.push((format!("load_{n}_acknowledged_s"), acknowledged, "s"));
        figures.push((format!("load_{n}_stored_s"), stored, "s"));
        figures.push((format!("load_{n}_accepted"), accepted as f64, "readings"));
    }

    let mut next_sequence = 1u64;
    let one_patient: Vec<u64> = (KEEPALIVE_BASE..KEEPALIVE_BASE + KEEPALIVE_CONNECTIONS).collect();
    let ward_serials: Vec<u64> = (WARD_BASE..WARD_BASE + ward_devices).collect();
    for (title, serials, suffix) in [
        (
            format!(
                "2a. sustained, one patient (one card, one chain: batches strictly in order), {KEEPALIVE_CONNECTIONS} keep-alive HTTP/1.1 connections, {seconds} s of sending each"
            ),
            &one_patient,
            "_one_patient",
        ),
        (
            format!(
                "2b. sustained, a ward of {WARD_PATIENTS} patients (own card and chain each), {WARD_DEVICES_PER_PATIENT} keep-alive devices each = {ward_devices} connections, {seconds} s of sending each"
            ),
            &ward_serials,
            "",
        ),
    ] {
        println!("\n{title}");
        for per_request in [1usize, 20] {
            let before = stored_count(&setup.database);
            let accepted = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = tokio::task::JoinSet::new();
            let base = next_sequence;
            for serial in serials {
                let config = Arc::clone(&configs[serial]);
                let endpoint = endpoint.clone();
                let accepted = Arc::clone(&accepted);
                tasks.spawn(async move {
                    let connection = Connection::open(&endpoint, config).await.unwrap();
                    let mut sequence = base;
                    while Instant::now() < deadline {
                        let time = Timestamp::now();
                        let readings: Vec<String> = (0..per_request)
                            .map(|i| heart_rate("72", sequence + i as u64, time))
                            .collect();
                        sequence += per_request as u64;
                        let reply = connection
                            .send(
                                hyper::Method::POST,
                                "/v1/readings",
                                format!("[{}]", readings.join(",")).into_bytes(),
                            )
                            .await
                            .unwrap();
                        if reply.status == 202 {
                            accepted.fetch_add(per_request as u64, Ordering::Relaxed);
                        }
                    }
                    sequence
                });
            }
            let start = Instant::now();
            while let Some(last) = tasks.join_next().await {
                next_sequence = next_sequence.max(last.unwrap());
            }
            let sending = start.elapsed().as_secs_f64();
            let total = accepted.load(Ordering::Relaxed);
            let stored = until_stored(&setup.database, before + total as i64, start).await;
            let acknowledged_rate = total as f64 / sending;
            let stored_rate = total as f64 / stored;
            println!(
                "   {per_request:>2} reading(s)/request: {total} acknowledged in {sending:.1} s = {acknowledged_rate:.0}/s; all stored at storage after {stored:.1} s = {stored_rate:.0} readings/s end to end"
            );
            let name = if per_request == 1 {
                "sustained_1_per_request"
            } else {
                "sustained"
            };
            figures.push((
                format!("{name}_acknowledged{suffix}_readings_per_s"),
                acknowledged_rate,
                "readings/s",
            ));
            figures.push((
                format!("{name}_e2e{suffix}_readings_per_s"),
                stored_rate,
                "readings/s",
            ));
        }
    }

    if card_part {
        println!(
            "\n3. one patient card throttled to 5 signatures/s (SoftHSM token + 200 ms), {CARD_DEVICES} devices sending for {seconds} s"
        );
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = tokio::task::JoinSet::new();
        for serial in CARD_BASE..CARD_BASE + CARD_DEVICES {
            let config = Arc::clone(&configs[&serial]);
            let endpoint = endpoint.clone();
            tasks.spawn(async move {
                let connection = Connection::open(&endpoint, config).await.unwrap();
                let mut sequence = 1u64;
                let mut accepted = 0i64;
                while Instant::now() < deadline {
                    let readings: Vec<String> = (0..10)
                        .map(|i| heart_rate("72", sequence + i, Timestamp::now()))
                        .collect();
                    sequence += 10;
                    let reply = connection
                        .send(
                            hyper::Method::POST,
                            "/v1/readings",
                            format!("[{}]", readings.join(",")).into_bytes(),
                        )
                        .await
                        .unwrap();
                    if reply.status == 202 {
                        accepted += 10;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                accepted
            });
        }
        let mut sent = 0i64;
        while let Some(count) = tasks.join_next().await {
            sent += count.unwrap();
        }
        // Everything the devices sent reaches storage through the throttled card; latency is
        // from the reading's device time (set when sent) to its batch's arrival at storage.
        let database = || {
            let connection = rusqlite::Connection::open_with_flags(
                &setup.database,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            connection.busy_timeout(Duration::from_secs(10)).unwrap();
            connection
        };
        let stored_for_card = || -> i64 {
            database()
                .query_row(
                    "SELECT COALESCE(SUM(reading_count), 0) FROM batches WHERE patient = ?1",
                    [CARD_PATIENT],
                    |row| row.get(0),
                )
                .unwrap()
        };
        let waited = Instant::now();
        while stored_for_card() < sent {
            assert!(
                waited.elapsed() < LIMIT,
                "the throttled card's readings never all reached storage"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rows: Vec<(i64, i64)> = {
            let connection = database();
            let mut statement = connection
                .prepare(
                    "SELECT r.measured_at, b.received_at FROM readings r JOIN batches b ON r.batch_hash = b.header_hash
                     WHERE r.patient = ?1",
                )
                .unwrap();
            statement
                .query_map([CARD_PATIENT], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let batches: i64 = database()
            .query_row(
                "SELECT COUNT(*) FROM batches WHERE patient = ?1",
                [CARD_PATIENT],
                |row| row.get(0),
            )
            .unwrap();
        let mut latencies: Vec<i64> = rows.iter().map(|(r, b)| b - r).collect();
        latencies.sort_unstable();
        let first = rows.iter().map(|r| r.0).min().unwrap_or(0);
        let last = rows.iter().map(|r| r.1).max().unwrap_or(0);
        let count = latencies.len();
        let p = |q: f64| {
            latencies
                .get(((count as f64 * q) as usize).min(count.saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1e3
        };
        let span = (last - first) as f64 / 1e6;
        let rate = count as f64 / span;
        println!(
            "   {count} readings in {batches} card-signed batches, stored over {span:.1} s = {rate:.0} readings/s for one card; sent→stored at storage p50 {:.0} ms, p99 {:.0} ms",
            p(0.5),
            p(0.99)
        );
        figures.push(("card_throttled_readings_per_s".into(), rate, "readings/s"));
        figures.push(("card_throttled_p50_ms".into(), p(0.5), "ms"));
        figures.push(("card_throttled_p99_ms".into(), p(0.99), "ms"));
    }
    figures.push((
        "load_average_1m".into(),
        load.split_whitespace()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0.0),
        "load",
    ));
    println!();
    for (name, value, unit) in figures {
        bench(&name, value, unit);
    }
    daemon.shutdown().await;
    storage.stop().await;
}
