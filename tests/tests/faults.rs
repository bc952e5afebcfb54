//! The fault suite: a ward of real processes (anvil, storage on PostgreSQL or SQLite, the
//! collector, SoftHSM patient cards) under continuous device load; a fault is injected;
//! the ward recovers; then:
//!
//! - readings are acknowledged again after the fault (recovery), and the processes that
//!   were not touched are still running;
//! - every reading that got a 202 is stored in storage's database exactly once, nothing
//!   is stored twice, nothing is stored that no device sent;
//! - every decision in the collector's decision log and every entry of storage's access
//!   log is covered by an anchor on chain whose root is the Merkle root of those entries;
//! - storage and the collector stop gracefully (exit 0).
//!
//! Each test runs in its own child process of this test binary (SoftHSM needs
//! `SOFTHSM2_CONF` set before it loads, see `wardseal_softhsm::run_isolated_test`).
//! Outages are a few seconds and the load is modest (8 reports a second per patient), so
//! the suite stays within a few minutes on two cores.
//!
//! Not covered yet (the features are not on this branch):
//! - TODO(crl-url): the CRL server down (`crls = ["http://…"]` in the collector): the
//!   collector keeps the last CRL it fetched. Covered meanwhile: the CRL file replaced by
//!   garbage or removed, both servers keep the last good CRL.
//! - TODO(card-presence): the patient card removed and re-inserted through the PC/SC
//!   virtual card (pcscd + vpcd): the collector does not watch card presence yet.
//!   Covered meanwhile in-process (`patient_card_removed_and_reinserted_in_process`): the
//!   collector's card slot emptied and refilled the way the watcher will do it.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test helper fails the test by panicking"
)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use wardseal_collector::client::{Connection, Endpoint};
use wardseal_core::identity::SubjectId;
use wardseal_sim::kinds::DeviceKind;
use wardseal_sim::pki::WardPki;
use wardseal_sim::ward::{
    CardBackend, DatabaseChoice, LedgerChoice, RunningWard, WardFiles, WardOptions, client_config,
};
use wardseal_tests::anvil::Anvil;
use wardseal_tests::audit;
use wardseal_tests::load::{Load, LoadOptions};
use wardseal_tests::postgres::{PostgresCluster, StopMode};
use wardseal_tests::procs::Signal;
use wardseal_tests::stack::{self, Database, Stack};

/// How long a killed or stopped part stays down.
const OUTAGE: Duration = Duration::from_secs(3);
/// Readings acknowledged before the first fault (about 5 s of load: the collector and
/// storage have sealed, delivered and anchored by then).
const WARM_UP: usize = 150;
/// Readings acknowledged after each recovery.
const PROGRESS: usize = 100;
/// Bound on waiting for progress, storage and anchors.
const WAIT: Duration = Duration::from_secs(90);

/// One fault.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// kill -9 the collector, start it again.
    KillCollector,
    /// kill -9 storage, start it again.
    KillStorage,
    /// kill -9 anvil (once its state is dumped), start it again from its state.
    KillAnvil,
    /// Stop storage gracefully (SIGINT), start it again.
    RestartStorage,
    /// Restart PostgreSQL under storage.
    RestartPostgres(StopMode),
    /// Replace the CRL file by garbage, then remove it: both servers keep the last good
    /// CRL (a revoked certificate stays refused, everyone else is served).
    BreakCrl,
}

/// Runs `faults` one after the other on one ward, checking recovery after each and
/// delivery and anchoring at the end, in a child process with a SoftHSM store.
fn run(test: &str, database: Database, faults: &[Fault]) {
    wardseal_softhsm::run_isolated_test(test, |_| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        if let Err(error) = runtime.block_on(scenario(test, database, faults)) {
            panic!("{test}: {error:#}");
        }
    })
    .unwrap();
}

async fn scenario(test: &str, database: Database, faults: &[Fault]) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("wardseal-faults-")
        .tempdir()?;
    let mut stack = Stack::start(dir.path(), database)
        .await
        .context("start the ward")?;
    let ready = started.elapsed();
    let load = Load::start(stack.files(), &LoadOptions::default())?;
    ensure!(
        load.wait_acknowledged(0, WARM_UP, WAIT).await,
        "readings were not acknowledged before any fault: {}",
        load.snapshot().summary()
    );
    stack.wait_first_anchors(WAIT).await?;
    let mut outages = Vec::new();
    for fault in faults {
        let fault_started = Instant::now();
        inject(*fault, &mut stack, &load)
            .await
            .with_context(|| format!("{fault:?}"))?;
        let after = load.acknowledged();
        ensure!(
            load.wait_acknowledged(after, PROGRESS, WAIT).await,
            "no recovery after {fault:?}: {}",
            load.snapshot().summary()
        );
        stack.ensure_running()?;
        outages.push((fault, fault_started.elapsed()));
    }
    let tally = load.stop().await;
    // None of these faults is a reason to refuse a reading (a `replay` would mean a
    // restarted collector forgot a high-water mark it had acknowledged).
    ensure!(
        tally.refused.is_empty(),
        "readings were refused: {}",
        tally.summary()
    );
    // Only a collector outage is visible to the devices; storage, ledger and database
    // outages are absorbed by the collector's spool and replica.
    if !faults.iter().any(|f| matches!(f, Fault::KillCollector)) {
        ensure!(
            tally.unanswered == 0,
            "devices went unanswered although the collector stayed up: {}",
            tally.summary()
        );
    }
    let stored = stack.wait_stored(&tally.acknowledged, WAIT).await?;
    let delivery = audit::check_delivery(&tally, &stored)?;
    ensure!(
        tally.malformed_acknowledgements == 0,
        "{} acknowledgements had no leaf hash",
        tally.malformed_acknowledgements
    );
    let anchored = stack.wait_anchored(WAIT).await?;
    ensure!(
        anchored.decisions.leaves >= tally.acknowledged.len(),
        "the decision log has {} entries for {} acknowledged readings",
        anchored.decisions.leaves,
        tally.acknowledged.len()
    );
    ensure!(
        anchored.access_log.leaves as u64 >= tally.reads_ok,
        "the access log has {} entries for {} answered reads",
        anchored.access_log.leaves,
        tally.reads_ok
    );
    let (collector, storage) = stack.shutdown().await?;
    ensure!(
        collector.success() && storage.success(),
        "graceful stop: collector {collector}, storage {storage}"
    );
    eprintln!(
        "{test}: ready in {:.1} s; faults {:?}; {}; delivery {delivery:?}; anchors {anchored:?}; total {:.1} s",
        ready.as_secs_f32(),
        outages
            .iter()
            .map(|(f, d)| format!("{f:?} {:.1} s", d.as_secs_f32()))
            .collect::<Vec<_>>(),
        tally.summary(),
        started.elapsed().as_secs_f32()
    );
    Ok(())
}

async fn inject(fault: Fault, stack: &mut Stack, load: &Load) -> anyhow::Result<()> {
    match fault {
        Fault::KillCollector => {
            stack.collector().kill9()?;
            tokio::time::sleep(OUTAGE).await;
            stack.start_collector().await?;
        }
        Fault::KillStorage => {
            stack.storage().kill9()?;
            let before = load.acknowledged();
            tokio::time::sleep(OUTAGE).await;
            // The collector keeps acknowledging: readings wait in its spool.
            ensure!(
                load.acknowledged() > before,
                "no reading was acknowledged while storage was down"
            );
            stack.start_storage().await?;
        }
        Fault::KillAnvil => {
            stack.anvil().kill9_when_quiet(WAIT).await?;
            let before = load.acknowledged();
            tokio::time::sleep(OUTAGE).await;
            // Ingest checks against the collector's replica of the rules, not the node.
            ensure!(
                load.acknowledged() > before,
                "no reading was acknowledged while the ledger node was down"
            );
            stack.anvil().start_again().await?;
        }
        Fault::RestartStorage => {
            let status = stack.storage().stop(Signal::Int, WAIT).await?;
            ensure!(status.success(), "storage stopped with {status}");
            tokio::time::sleep(OUTAGE).await;
            stack.start_storage().await?;
        }
        Fault::RestartPostgres(mode) => {
            let before = load.acknowledged();
            let cluster = stack.postgres().context("storage is not on PostgreSQL")?;
            tokio::task::block_in_place(|| cluster.restart(mode))?;
            ensure!(
                load.acknowledged() > before || load.wait_acknowledged(before, 1, WAIT).await,
                "no reading acknowledged across the PostgreSQL restart"
            );
        }
        Fault::BreakCrl => break_crl(stack, load).await?,
    }
    Ok(())
}

/// Revokes the other nurse's certificate and has both servers load that CRL; then
/// replaces the CRL file by garbage, then removes it, each time making both servers
/// reload (SIGHUP and the collector's own refresh): the revoked nurse stays refused and
/// the devices (which reconnect, so handshake, every few seconds) stay served.
async fn break_crl(stack: &mut Stack, load: &Load) -> anyhow::Result<()> {
    let files = stack.files().clone();
    let pki = WardPki::open(&files.dir).await?;
    pki.revoke(&files.other_nurse.files.serial).await?;
    let good = std::fs::read(&files.crl)?;
    reload_crls(stack)?;
    let other_nurse = client_config(&files.ca_bundle, &files.other_nurse.files)?;
    let servers = [
        ("storage", files.storage_port),
        ("collector", files.collector_port),
    ];
    for (name, port) in servers {
        ensure!(
            refused_within(port, &other_nurse, WAIT).await,
            "{name} still serves the revoked nurse after the CRL reload"
        );
    }
    for broken in [Some(b"not a CRL at all\n".as_slice()), None] {
        match broken {
            Some(garbage) => std::fs::write(&files.crl, garbage)?,
            None => std::fs::remove_file(&files.crl)?,
        }
        let unanswered = load.unanswered();
        let acknowledged = load.acknowledged();
        reload_crls(stack)?;
        // Past the collector's own refresh (5 s) and several device reconnections.
        tokio::time::sleep(Duration::from_secs(6)).await;
        for (name, port) in servers {
            ensure!(
                refused(port, &other_nurse).await,
                "{name} serves the revoked nurse once its CRL file is {}",
                if broken.is_some() { "garbage" } else { "gone" }
            );
        }
        ensure!(
            load.unanswered() == unanswered && load.acknowledged() > acknowledged,
            "devices were not served while the CRL file was broken: {}",
            load.snapshot().summary()
        );
    }
    for name in ["storage", "collector"] {
        let log = match name {
            "storage" => stack.storage().log_text(),
            _ => stack.collector().log_text(),
        };
        ensure!(
            log.contains("keeping the previous"),
            "{name} did not report that it kept its previous CRLs"
        );
    }
    std::fs::write(&files.crl, good)?;
    reload_crls(stack)?;
    Ok(())
}

fn reload_crls(stack: &mut Stack) -> anyhow::Result<()> {
    stack.storage().signal(Signal::Hup)?;
    stack.collector().signal(Signal::Hup)?;
    Ok(())
}

/// Whether a request as `config`'s holder to the server on `port` is refused (handshake
/// failure, or 403 `certificate_revoked`).
async fn refused(port: u16, config: &std::sync::Arc<rustls::ClientConfig>) -> bool {
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let Ok(connection) = Connection::open(&endpoint, std::sync::Arc::clone(config)).await else {
        return true;
    };
    match connection
        .send(hyper::Method::GET, "/healthz", Vec::new())
        .await
    {
        Err(_) => true,
        Ok(reply) => {
            reply.status == 403
                && serde_json::from_slice::<serde_json::Value>(&reply.body)
                    .is_ok_and(|body| body["code"] == "certificate_revoked")
        }
    }
}

async fn refused_within(
    port: u16,
    config: &std::sync::Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if refused(port, config).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn collector_killed_postgres() {
    run(
        "collector_killed_postgres",
        Database::Postgres,
        &[Fault::KillCollector],
    );
}

#[test]
fn storage_killed_postgres() {
    run(
        "storage_killed_postgres",
        Database::Postgres,
        &[Fault::KillStorage],
    );
}

#[test]
fn ledger_node_killed_postgres() {
    run(
        "ledger_node_killed_postgres",
        Database::Postgres,
        &[Fault::KillAnvil],
    );
}

#[test]
fn storage_restarted_postgres() {
    run(
        "storage_restarted_postgres",
        Database::Postgres,
        &[Fault::RestartStorage],
    );
}

#[test]
fn postgres_restarted_fast_and_immediate() {
    run(
        "postgres_restarted_fast_and_immediate",
        Database::Postgres,
        &[
            Fault::RestartPostgres(StopMode::Fast),
            Fault::RestartPostgres(StopMode::Immediate),
        ],
    );
}

#[test]
fn crl_file_broken_postgres() {
    run(
        "crl_file_broken_postgres",
        Database::Postgres,
        &[Fault::BreakCrl],
    );
}

#[test]
fn collector_storage_and_ledger_node_killed_sqlite() {
    run(
        "collector_storage_and_ledger_node_killed_sqlite",
        Database::Sqlite,
        &[
            Fault::KillCollector,
            Fault::KillStorage,
            Fault::KillAnvil,
            Fault::RestartStorage,
        ],
    );
}

/// The patient card taken out and put back while devices send: the collector keeps
/// acknowledging that patient's readings (durable in its spool) but seals none of them
/// while the card is out; the other patient's readings keep flowing to storage; once the
/// card is back, everything is delivered exactly once and anchored. Storage on
/// PostgreSQL, the ledger on anvil, the ward in this process (software cards).
///
/// TODO(card-presence): drive this through the PC/SC virtual card once the collector
/// watches card presence; here the card slot is emptied and refilled in-process, as the
/// watcher will do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_card_removed_and_reinserted_in_process() {
    let dir = tempfile::Builder::new()
        .prefix("wardseal-faults-card-")
        .tempdir()
        .unwrap();
    let anvil = Anvil::start(dir.path()).await.unwrap();
    let postgres = PostgresCluster::start().unwrap();
    let key_file = dir.path().join("anvil-dev.key");
    Anvil::write_dev_key(0, &key_file).unwrap();
    let mut options = WardOptions::new(dir.path().join("ward"));
    options.kinds = vec![DeviceKind::PulseOximeter, DeviceKind::Ecg];
    options.cards = CardBackend::Software;
    options.ledger = LedgerChoice::Rpc {
        url: anvil.url(),
        key_file,
    };
    options.database = DatabaseChoice::Postgres(postgres.url());
    let files = WardFiles::prepare(&options).await.unwrap();
    let ward = RunningWard::start(&files).await.unwrap();
    let load = Load::start(&files, &LoadOptions::default()).unwrap();
    assert!(
        load.wait_acknowledged(0, WARM_UP, WAIT).await,
        "{}",
        load.snapshot().summary()
    );

    let (absent, present) = (&files.patients[0].id, &files.patients[1].id);
    let patient = SubjectId::new(absent.as_str()).unwrap();
    let cards = ward.collector().cards();
    let card = cards.card(&patient).unwrap();
    cards.remove(&patient);
    // A batch sealed just before the card went out may still be on its way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = audit::stored_per_patient(&files.database_url)
        .await
        .unwrap();
    let acknowledged = load.acknowledged();
    tokio::time::sleep(OUTAGE).await;
    let during = audit::stored_per_patient(&files.database_url)
        .await
        .unwrap();
    assert!(
        load.acknowledged() > acknowledged,
        "devices were not served while the card was out"
    );
    assert_eq!(
        during.get(absent),
        before.get(absent),
        "readings of {absent} were stored while the card was out"
    );
    assert!(
        during.get(present) > before.get(present),
        "readings of {present} stopped flowing while another patient's card was out"
    );
    cards.insert(patient, card);

    let after = load.acknowledged();
    assert!(load.wait_acknowledged(after, PROGRESS, WAIT).await);
    let tally = load.stop().await;
    assert!(tally.refused.is_empty(), "{}", tally.summary());
    assert_eq!(tally.unanswered, 0, "{}", tally.summary());
    let stored = stack::wait_stored(&files.database_url, &tally.acknowledged, WAIT)
        .await
        .unwrap();
    let delivery = audit::check_delivery(&tally, &stored).unwrap();
    // Storage in this process has no anchoring timer (the binary's --anchor-every): anchor
    // its access log now, as the admin route does. The collector anchors on its own.
    ward.anchor_access_log().await.unwrap();
    let anchored = stack::wait_anchored(&files, &files.dir.join("spool.db"), ward.ledger(), WAIT)
        .await
        .unwrap();
    let finally = audit::stored_per_patient(&files.database_url)
        .await
        .unwrap();
    assert!(finally.get(absent) > during.get(absent));
    eprintln!(
        "card removed and re-inserted: {}; delivery {delivery:?}; anchors {anchored:?}",
        tally.summary()
    );
    ward.shutdown().await;
}
