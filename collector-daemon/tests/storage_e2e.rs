//! Collector and storage end to end: devices over real mutual TLS to the collector, batches
//! signed by the patient's card on a SoftHSM token (enrolled by the test CA), delivered
//! over mutual TLS to wardseal-storage on SQLite, which verifies and stores them.
//!
//! Every wait is a bounded poll; nothing asserts on elapsed time.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails by panicking, with the message"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::storage::{Database, PATIENT, card_section, enroll_card, metric, nurse, storage_setup};
use common::{GROUP, Ward, heart_rate, post};
use wardseal_collector::client::Connection;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_core::reading::Timestamp;
use wardseal_storage::proof::{self, ProofDocument};
use wardseal_testkit::{eventually, free_port};

/// How long anything may take to reach storage before the test gives up (a hang
/// detector, not a speed target: on a loaded 2-core machine a debug build delivering
/// 10,000 readings to PostgreSQL in one patient's chain of batches takes minutes).
const DELIVERY_LIMIT: Duration = Duration::from_secs(600);

fn runtime() -> tokio::runtime::Runtime {
    wardseal_testkit::runtime().unwrap()
}

#[test]
fn an_accepted_reading_reaches_storage_and_its_proof_verifies() {
    wardseal_testkit::softhsm::run_isolated_test(
        "an_accepted_reading_reaches_storage_and_its_proof_verifies",
        |hsm| runtime().block_on(accepted_run(hsm, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn an_accepted_reading_reaches_storage_on_postgres_and_its_proof_verifies() {
    wardseal_testkit::softhsm::run_isolated_test(
        "an_accepted_reading_reaches_storage_on_postgres_and_its_proof_verifies",
        |hsm| runtime().block_on(accepted_run(hsm, Database::Postgres)),
    )
    .unwrap();
}

async fn accepted_run(hsm: &wardseal_testkit::softhsm::SoftHsm, database: Database) {
    let storage_port = free_port().unwrap();
    let ward = Ward::linked(&[(1, GROUP, true)], "", storage_port).await;
    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
    append(&ward.config_path, &card_section(PATIENT, &uri));
    let (setup, _cluster) = storage_setup(database, &ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    storage.admit(&[1]).await;

    let config = ward.config();
    let cards = open_cards(&config).unwrap();
    let card_certificate = cards[0].1.certificate.clone();
    let daemon = Daemon::start(&config, ward.ledger.clone(), cards)
        .await
        .unwrap();
    let device = ward.device(1, GROUP).await;
    let connection = ward.connect(daemon.local_addr().port(), &device).await;
    let (status, json) = post(&connection, &heart_rate("72", 1, Timestamp::now())).await;
    assert_eq!(status, 202, "{json}");
    let leaf = json["results"][0]["leaf"].as_str().unwrap().to_owned();

    // Storage has it once, and the collector's spool is empty again.
    let stored = eventually(DELIVERY_LIMIT, || async {
        setup.stored_leaves().contains_key(&leaf)
    })
    .await;
    assert!(stored, "reading {leaf} never reached storage");
    assert_eq!(setup.stored_leaves().get(&leaf), Some(&1));
    let drained = eventually(DELIVERY_LIMIT, || async {
        metric(&connection, "wardseal_collector_spool_depth").await == 0.0
    })
    .await;
    assert!(drained, "the spool kept the delivered reading");
    assert_eq!(
        storage.storage.store.rejections().await.unwrap().len(),
        0,
        "storage refused a batch"
    );

    // The nurse fetches the reading's proof from storage's API; it verifies
    // against the signed header, trusting only the CA's root certificate.
    let nurse = nurse(&ward.pki).await;
    let to_storage = Connection::open(&common::endpoint(storage_port), ward.client_config(&nurse))
        .await
        .unwrap();
    let reply = to_storage
        .send(
            hyper::Method::GET,
            &format!("/v1/readings/{leaf}/proof"),
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let document: ProofDocument = serde_json::from_slice(&reply.body).unwrap();
    let verified = proof::verify(&document, ward.pki.root_der()).unwrap();
    assert_eq!(verified.leaf_hash.to_string(), leaf);
    assert_eq!(verified.header.patient().as_str(), PATIENT);
    assert_eq!(verified.header.collector().as_str(), common::WARD);
    assert_eq!(verified.header.sequence(), 1);
    assert_eq!(
        hex::decode(&document.patient_certificate).unwrap(),
        card_certificate,
        "storage kept another certificate than the card's"
    );
    // The proof is checked, not just parsed: a changed reading fails.
    let mut forged = document.clone();
    let mut bytes = hex::decode(&document.reading).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    forged.reading = hex::encode(bytes);
    assert!(proof::verify(&forged, ward.pki.root_der()).is_err());

    daemon.shutdown().await;
    storage.stop().await;
}

/// What the devices of a run were told.
#[derive(Default)]
struct Tally {
    /// Leaf hashes answered 202.
    acknowledged: Vec<String>,
    /// Readings re-sent after a lost answer and told `replay`: made durable before the
    /// crash, their 202 lost with the connection.
    replayed: usize,
    /// Anything else (the test fails on it).
    unexpected: Vec<String>,
}

/// One device sending `count` readings, one per request over a keep-alive connection; on a
/// broken connection it reconnects and sends the same reading again (bounded).
async fn device_sends(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    count: u64,
    tally: Arc<Mutex<Tally>>,
) {
    let deadline = tokio::time::Instant::now() + DELIVERY_LIMIT;
    let mut connection: Option<Connection> = None;
    for sequence in 1..=count {
        let body = heart_rate("72", sequence, Timestamp::now());
        loop {
            if tokio::time::Instant::now() >= deadline {
                tally
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("gave up at sequence {sequence}"));
                return;
            }
            let open = match connection.take() {
                Some(open) => open,
                None => {
                    match Connection::open(&common::endpoint(port), Arc::clone(&config)).await {
                        Ok(open) => open,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
            };
            match open
                .send(
                    hyper::Method::POST,
                    "/v1/readings",
                    body.clone().into_bytes(),
                )
                .await
            {
                Ok(reply) => {
                    let json: serde_json::Value =
                        serde_json::from_slice(&reply.body).unwrap_or_default();
                    let mut tally = tally.lock().unwrap();
                    match reply.status {
                        202 => tally
                            .acknowledged
                            .push(json["results"][0]["leaf"].as_str().unwrap().to_owned()),
                        409 if common::code(&json) == "replay" => tally.replayed += 1,
                        other => tally.unexpected.push(format!("{other} {json}")),
                    }
                    connection = Some(open);
                    break;
                }
                // The collector went away mid-request: reconnect and send it again.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

fn start_collector(
    config: &std::path::Path,
    port: u16,
    log: &std::path::Path,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_wardseal-collector"))
        .args(["run", "--config"])
        .arg(config)
        .env(
            "WARDSEAL_COLLECTOR__COLLECTOR__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Readings of the kill -9 run: 4 devices × 2,500.
const CRASH_DEVICES: u64 = 4;
const CRASH_PER_DEVICE: u64 = 2_500;

#[test]
fn after_kill_9_every_acknowledged_reading_is_stored_exactly_once() {
    wardseal_testkit::softhsm::run_isolated_test(
        "after_kill_9_every_acknowledged_reading_is_stored_exactly_once",
        |hsm| runtime().block_on(kill_9_run(hsm, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn after_kill_9_every_acknowledged_reading_is_stored_exactly_once_on_postgres() {
    wardseal_testkit::softhsm::run_isolated_test(
        "after_kill_9_every_acknowledged_reading_is_stored_exactly_once_on_postgres",
        |hsm| runtime().block_on(kill_9_run(hsm, Database::Postgres)),
    )
    .unwrap();
}

async fn kill_9_run(hsm: &wardseal_testkit::softhsm::SoftHsm, database: Database) {
    let storage_port = free_port().unwrap();
    let collector_port = free_port().unwrap();
    let devices: Vec<_> = (1..=CRASH_DEVICES).map(|s| (s, GROUP, true)).collect();
    let ward = Ward::linked(&devices, "", storage_port).await;
    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
    append(&ward.config_path, &card_section(PATIENT, &uri));
    let mut client_configs = Vec::new();
    for serial in 1..=CRASH_DEVICES {
        client_configs.push(ward.client_config(&ward.device(serial, GROUP).await));
    }
    // The collector process opens the embedded chain itself (one process per chain
    // directory), so storage reads a replica rebuilt from a copy of the same transaction
    // log: the same registry and rules. Nothing changes on chain during the run.
    let replica_dir = ward.dir.path().join("storage-chain");
    std::fs::create_dir_all(&replica_dir).unwrap();
    std::fs::copy(
        ward.dir.path().join("chain/chain.log"),
        replica_dir.join("chain.log"),
    )
    .unwrap();
    let replica = wardseal_contracts::EmbeddedChain::open(&replica_dir).unwrap();
    let storage_ledger = wardseal_contracts::Ledger::new(
        replica
            .backend(alloy::primitives::Address::repeat_byte(0x51))
            .into(),
        *ward.ledger.suite(),
    );
    let Ward {
        ledger,
        pki,
        dir,
        config_path,
        ..
    } = ward;
    drop(ledger);

    let (setup, _cluster) = storage_setup(database, &pki, dir.path(), storage_port).await;
    let storage = setup.start(storage_ledger).await;
    storage
        .admit(&(1..=CRASH_DEVICES).collect::<Vec<_>>())
        .await;

    let mut child = start_collector(
        &config_path,
        collector_port,
        &dir.path().join("collector-1.log"),
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut senders = tokio::task::JoinSet::new();
    for config in &client_configs {
        senders.spawn(device_sends(
            collector_port,
            Arc::clone(config),
            CRASH_PER_DEVICE,
            Arc::clone(&tally),
        ));
    }
    // Kill -9 in the middle of the run.
    let midway = eventually(DELIVERY_LIMIT, || async {
        tally.lock().unwrap().acknowledged.len() >= 3_000
    })
    .await;
    assert!(midway, "the devices never got 3,000 answers");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = tally.lock().unwrap().acknowledged.len();
    let mut child = start_collector(
        &config_path,
        collector_port,
        &dir.path().join("collector-2.log"),
    );
    while let Some(joined) = senders.join_next().await {
        joined.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    assert!(tally.unexpected.is_empty(), "{:?}", tally.unexpected);
    eprintln!(
        "{} acknowledged ({at_kill} before the kill), {} re-sent and told replay",
        tally.acknowledged.len(),
        tally.replayed
    );
    let total = usize::try_from(CRASH_DEVICES * CRASH_PER_DEVICE).unwrap();
    assert_eq!(tally.acknowledged.len() + tally.replayed, total);
    assert!(
        tally.acknowledged.len() > at_kill,
        "nothing was accepted after the restart"
    );

    // Everything reaches storage and leaves the spool.
    let watcher = Connection::open(
        &common::endpoint(collector_port),
        Arc::clone(&client_configs[0]),
    )
    .await
    .unwrap();
    let delivered = eventually(DELIVERY_LIMIT, || async {
        setup.stored_leaves().len() >= total
            && metric(&watcher, "wardseal_collector_spool_depth").await == 0.0
    })
    .await;
    let stored = setup.stored_leaves();
    assert!(
        delivered,
        "{} of {total} readings stored; collector log: {}",
        stored.len(),
        dir.path().join("collector-2.log").display()
    );
    assert_exactly_once(&tally.acknowledged, &stored);
    // The readings whose 202 was lost in the crash were durable: they are stored too.
    assert_eq!(stored.len(), total);
    assert!(storage.storage.store.rejections().await.unwrap().is_empty());

    child.kill().unwrap();
    child.wait().unwrap();
    storage.stop().await;
    drop((pki, dir, replica));
}

/// Every acknowledged leaf is stored exactly once, and no leaf at all is stored twice.
fn assert_exactly_once(acknowledged: &[String], stored: &HashMap<String, i64>) {
    for leaf in acknowledged {
        assert_eq!(
            stored.get(leaf).copied().unwrap_or(0),
            1,
            "acknowledged reading {leaf} is not stored exactly once"
        );
    }
    let twice: Vec<_> = stored.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
}

fn append(path: &std::path::Path, text: &str) {
    let mut config = std::fs::read_to_string(path).unwrap();
    config.push('\n');
    config.push_str(text);
    std::fs::write(path, config).unwrap();
}

/// Each device sends reading `sequence`; every one must be accepted.
async fn send_round(devices: &[Connection], sequence: u64, acknowledged: &mut Vec<String>) {
    for device in devices {
        let (status, json) = post(device, &heart_rate("72", sequence, Timestamp::now())).await;
        assert_eq!(status, 202, "{json}");
        acknowledged.push(json["results"][0]["leaf"].as_str().unwrap().to_owned());
    }
}

/// How long storage stays down. The forwarder's backoff doubles from 100 ms to its 5 s
/// cap, so this is about ten failed delivery rounds.
const OUTAGE: Duration = Duration::from_secs(30);

#[test]
fn while_storage_is_down_the_spool_grows_then_drains_exactly_once() {
    wardseal_testkit::softhsm::run_isolated_test(
        "while_storage_is_down_the_spool_grows_then_drains_exactly_once",
        |hsm| runtime().block_on(outage_run(hsm, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn while_storage_on_postgres_is_down_the_spool_grows_then_drains_exactly_once() {
    wardseal_testkit::softhsm::run_isolated_test(
        "while_storage_on_postgres_is_down_the_spool_grows_then_drains_exactly_once",
        |hsm| runtime().block_on(outage_run(hsm, Database::Postgres)),
    )
    .unwrap();
}

async fn outage_run(hsm: &wardseal_testkit::softhsm::SoftHsm, database: Database) {
    let storage_port = free_port().unwrap();
    let ward = Ward::linked(&[(1, GROUP, true), (2, GROUP, true)], "", storage_port).await;
    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
    append(&ward.config_path, &card_section(PATIENT, &uri));
    let (setup, _cluster) = storage_setup(database, &ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    storage.admit(&[1, 2]).await;
    let config = ward.config();
    let daemon = Daemon::start(&config, ward.ledger.clone(), open_cards(&config).unwrap())
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    let mut devices = Vec::new();
    for serial in [1, 2] {
        devices.push(ward.connect(port, &ward.device(serial, GROUP).await).await);
    }
    let mut acknowledged = Vec::new();
    let mut sequence = 0;

    // Delivery works before the outage.
    sequence += 1;
    send_round(&devices, sequence, &mut acknowledged).await;
    let first = acknowledged.clone();
    assert!(
        eventually(DELIVERY_LIMIT, || async {
            let stored = setup.stored_leaves();
            first.iter().all(|leaf| stored.contains_key(leaf))
        })
        .await,
        "the first readings never reached storage"
    );

    // Storage goes down; devices keep sending and keep getting 202s; the spool grows.
    storage.stop().await;
    let watcher = &devices[0];
    let failures_before = metric(watcher, "wardseal_collector_forward_failures_total").await;
    let depth_before = metric(watcher, "wardseal_collector_spool_depth").await;
    let before_outage = acknowledged.len();
    let mut depths = Vec::new();
    let outage_ends = tokio::time::Instant::now() + OUTAGE;
    while tokio::time::Instant::now() < outage_ends {
        sequence += 1;
        send_round(&devices, sequence, &mut acknowledged).await;
        depths.push(metric(watcher, "wardseal_collector_spool_depth").await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sent_during_outage = acknowledged.len() - before_outage;
    assert!(
        depths.windows(2).all(|pair| pair[0] <= pair[1]),
        "the spool shrank while storage was down: {depths:?}"
    );
    assert!(
        depths.last().copied().unwrap_or_default() >= depth_before + sent_during_outage as f64,
        "the spool holds fewer readings than were accepted during the outage: {depths:?}"
    );
    let retries =
        metric(watcher, "wardseal_collector_forward_failures_total").await - failures_before;
    assert!(
        retries >= 5.0,
        "only {retries} failed delivery rounds during the outage"
    );
    assert!(
        !setup
            .stored_leaves()
            .contains_key(&acknowledged[before_outage]),
        "a reading sent during the outage is in storage"
    );

    // Storage comes back on the same port and database; the spool drains.
    let storage = setup.start(ward.ledger.clone()).await;
    let drained = eventually(DELIVERY_LIMIT, || async {
        metric(watcher, "wardseal_collector_spool_depth").await == 0.0
    })
    .await;
    assert!(drained, "the spool never drained after storage came back");
    let stored = setup.stored_leaves();
    assert_exactly_once(&acknowledged, &stored);
    assert_eq!(stored.len(), acknowledged.len());
    assert!(storage.storage.store.rejections().await.unwrap().is_empty());

    daemon.shutdown().await;
    storage.stop().await;
}
