//! The fault suite: a ward of real processes (anvil, storage on PostgreSQL or SQLite, the
//! collector, SoftHSM patient cards) under continuous device load; a fault is injected;
//! the ward recovers; then:
//!
//! - readings are acknowledged again after the fault (recovery), and the processes that
//!   were not touched are still running;
//! - every reading that got a 202 is stored in storage's database exactly once, nothing
//!   is stored twice, nothing is stored that no device sent;
//! - every decision in the collector's decision log, every entry of storage's access log
//!   and every stored batch (storage's batch log) is covered by an anchor on chain whose
//!   root is the Merkle root of those entries; the batch log numbers every stored batch
//!   once, and the batch anchors storage recorded are those roots;
//! - storage and the collector stop gracefully (exit 0).
//!
//! Each test runs in its own child process of this test binary (SoftHSM needs
//! `SOFTHSM2_CONF` set before it loads, see `wardseal_testkit::softhsm::run_isolated_test`).
//! Outages are a few seconds and the load is modest (8 reports a second per patient), so
//! the suite stays within a few minutes on two cores.
//!
//! Three faults need more than the ward's processes:
//! - the CRL server down: the collector fetches its CRL over HTTP from the real
//!   `wardseal-pki crl --serve` (a child process); a device revoked at the CA is refused
//!   after the next fetch while the others go on; with the server killed, the collector
//!   keeps the last good CRL (the fetch-failure metric rises); restarted, fetches resume;
//! - the patient card taken out of a bedside PC/SC reader and put back: a real pcscd with
//!   vsmartcard's vpcd reader and a virtual card (see [`wardseal_testkit::pcsc`] for why
//!   such a test holds a machine-wide lock while pcscd runs);
//! - the CRL file broken: both servers keep the last good CRL.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test helper fails the test by panicking"
)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use wardseal_collector::client::{Connection, Endpoint};
use wardseal_sim::ward::client_config;
use wardseal_testkit::TestPki;
use wardseal_testkit::pcsc::{self, Pcscd};
use wardseal_testkit::postgres::StopMode;
use wardseal_testkit::process::Signal;
use wardseal_tests::audit;
use wardseal_tests::load::{Load, LoadOptions};
use wardseal_tests::stack::{Database, Stack, StackOptions};

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
    /// Revoke the spare device at the CA (it is refused once the collector fetched the
    /// CRL), kill -9 the CRL server (the collector keeps the last good CRL), start it
    /// again (fetches resume). Needs [`Setup::crl_server`].
    CrlServerDown,
    /// Take the first patient's card out of the bedside reader, put it back. Needs
    /// [`Setup::bedside`].
    CardRemoved,
}

/// What a ward runs beyond the default.
#[derive(Debug, Clone, Copy, Default)]
struct Setup {
    /// The collector fetches its CRL from `wardseal-pki crl --serve`; the last device is
    /// left out of the load, to be revoked.
    crl_server: bool,
    /// pcscd with the vpcd reader; the first patient's card is in it at the start.
    bedside: bool,
}

impl Setup {
    fn stack_options(self) -> StackOptions {
        StackOptions {
            crl_server: self.crl_server,
            bedside_reader: self.bedside.then(|| pcsc::READER.to_owned()),
        }
    }
}

/// Runs `faults` one after the other on one ward, checking recovery after each and
/// delivery and anchoring at the end, in a child process with a SoftHSM store.
fn run(test: &str, database: Database, faults: &[Fault]) {
    run_with(test, database, Setup::default(), faults);
}

/// [`run`] on a ward with what `setup` adds.
fn run_with(test: &str, database: Database, setup: Setup, faults: &[Fault]) {
    wardseal_testkit::softhsm::run_isolated_test(test, |_| {
        // pcscd first (the collector's card watcher needs it at start), with the card in;
        // stopped after the ward (declared before the runtime, so dropped after it).
        let mut pcscd = setup.bedside.then(|| {
            let mut pcscd = Pcscd::start().unwrap();
            pcscd.insert().unwrap();
            pcscd
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        if let Err(error) =
            runtime.block_on(scenario(test, database, setup, pcscd.as_mut(), faults))
        {
            panic!("{test}: {error:#}");
        }
    })
    .unwrap();
}

async fn scenario(
    test: &str,
    database: Database,
    setup: Setup,
    mut pcscd: Option<&mut Pcscd>,
    faults: &[Fault],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("wardseal-faults-")
        .tempdir()?;
    let mut stack = Stack::start_with(dir.path(), database, &setup.stack_options())
        .await
        .context("start the ward")?;
    let ready = started.elapsed();
    let mut load_options = LoadOptions::default();
    if setup.crl_server {
        let spare = stack
            .files()
            .devices
            .last()
            .context("the ward has no device")?;
        load_options.except_devices.push(spare.name.clone());
    }
    let load = Load::start(stack.files(), &load_options)?;
    ensure!(
        load.wait_acknowledged(0, WARM_UP, WAIT).await,
        "readings were not acknowledged before any fault: {}",
        load.snapshot().summary()
    );
    stack.wait_first_anchors(WAIT).await?;
    let mut outages = Vec::new();
    for fault in faults {
        let fault_started = Instant::now();
        inject(*fault, &mut stack, &load, pcscd.as_deref_mut())
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

async fn inject(
    fault: Fault,
    stack: &mut Stack,
    load: &Load,
    pcscd: Option<&mut Pcscd>,
) -> anyhow::Result<()> {
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
        Fault::CrlServerDown => crl_server_down(stack, load).await?,
        Fault::CardRemoved => {
            card_removed(
                stack,
                load,
                pcscd.context("no bedside reader in this ward")?,
            )
            .await?;
        }
    }
    Ok(())
}

/// Revokes the spare device (not in the load) at the CA while the collector fetches
/// its CRL from the CA's server: refused after the next fetch, the load served all along.
/// Then kills the CRL server: fetches fail (the metric rises), the last good CRL stays
/// in force. Then starts it again: fetches resume, shown by a second revocation (the
/// other nurse) taking effect, and by the failure count standing still.
async fn crl_server_down(stack: &mut Stack, load: &Load) -> anyhow::Result<()> {
    let files = stack.files().clone();
    let port = files.collector_port;
    let spare = files.devices.last().context("the ward has no device")?;
    let spare_config = client_config(&files.ca_bundle, &spare.files)?;
    let nurse = client_config(&files.ca_bundle, &files.nurse.files)?;
    let other_nurse = client_config(&files.ca_bundle, &files.other_nurse.files)?;
    for (who, config) in [
        ("the spare device", &spare_config),
        ("the other nurse", &other_nurse),
    ] {
        ensure!(
            status(port, config, "/healthz").await == Some(200),
            "the collector does not serve {who} before any revocation"
        );
    }
    let pki = TestPki::open(&files.dir).await?;

    let (unanswered, acknowledged) = (load.unanswered(), load.acknowledged());
    let revoked = Instant::now();
    pki.revoke(&spare.files.serial).await?;
    ensure!(
        refused_within(port, &spare_config, WAIT).await,
        "the collector still serves the revoked device {}: {}",
        spare.name,
        stack.collector().log_tail(10)
    );
    let effective = revoked.elapsed();
    ensure!(
        load.unanswered() == unanswered && load.acknowledged() > acknowledged,
        "the other devices were not served while one was revoked: {}",
        load.snapshot().summary()
    );

    let failures = metric(port, &nurse, FETCH_FAILURES).await?;
    stack
        .crl_server()
        .context("the ward has no CRL server")?
        .process()
        .kill9()?;
    let (unanswered, acknowledged) = (load.unanswered(), load.acknowledged());
    let down = Instant::now();
    ensure!(
        wait_metric(port, &nurse, FETCH_FAILURES, |n| n > failures, WAIT).await?,
        "{FETCH_FAILURES} did not rise with the CRL server down"
    );
    // One more refresh period with the server down: still the last good CRL.
    tokio::time::sleep(CRL_REFRESH).await;
    ensure!(
        refused(port, &spare_config).await,
        "the revoked device is served once the CRL server is down"
    );
    ensure!(
        status(port, &other_nurse, "/healthz").await == Some(200),
        "the other nurse is refused once the CRL server is down"
    );
    ensure!(
        load.unanswered() == unanswered && load.acknowledged() > acknowledged,
        "devices were not served while the CRL server was down: {}",
        load.snapshot().summary()
    );
    let outage = down.elapsed();

    let server = stack.crl_server().context("the ward has no CRL server")?;
    server.start().await?;
    pki.revoke(&files.other_nurse.files.serial).await?;
    ensure!(
        refused_within(port, &other_nurse, WAIT).await,
        "the collector did not fetch the CRL again once its server was back"
    );
    let failures = metric(port, &nurse, FETCH_FAILURES).await?;
    tokio::time::sleep(CRL_REFRESH).await;
    let later = metric(port, &nurse, FETCH_FAILURES).await?;
    ensure!(
        later == failures,
        "CRL fetches still fail with the server back ({failures} then {later})"
    );
    ensure!(
        refused(port, &spare_config).await,
        "the revoked device is served after the CRL server came back"
    );
    eprintln!(
        "crl server: revocation effective after {:.1} s; server down {:.1} s; {later} failed fetches",
        effective.as_secs_f32(),
        outage.as_secs_f32()
    );
    Ok(())
}

/// Takes the first patient's card out of the bedside reader while devices send: the
/// collector keeps acknowledging that patient's readings (durable in its spool) but seals
/// none of them; the other patient's readings keep reaching storage. Then puts it back:
/// that patient's readings are signed and stored again (the final audit checks that all
/// of them are, once).
async fn card_removed(stack: &mut Stack, load: &Load, pcscd: &mut Pcscd) -> anyhow::Result<()> {
    let files = stack.files().clone();
    let port = files.collector_port;
    let nurse = client_config(&files.ca_bundle, &files.nurse.files)?;
    let (absent, present) = (&files.patients[0].id, &files.patients[1].id);
    ensure!(
        wait_metric(port, &nurse, CARDS_PRESENT, |n| n == 2.0, WAIT).await?,
        "the collector does not hold both cards before the card is taken out"
    );
    tokio::task::block_in_place(|| pcscd.remove())?;
    ensure!(
        wait_metric(port, &nurse, CARDS_PRESENT, |n| n == 1.0, WAIT).await?,
        "the collector did not notice the card taken out"
    );
    // A batch sealed just before the card went out may still be on its way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = audit::stored_per_patient(&files.database_url).await?;
    let acknowledged = load.acknowledged();
    tokio::time::sleep(OUTAGE).await;
    let during = audit::stored_per_patient(&files.database_url).await?;
    ensure!(
        load.acknowledged() > acknowledged,
        "devices were not served while the card was out"
    );
    ensure!(
        during.get(absent) == before.get(absent),
        "readings of {absent} were stored while the card was out"
    );
    ensure!(
        during.get(present) > before.get(present),
        "readings of {present} stopped flowing while another patient's card was out"
    );
    tokio::task::block_in_place(|| pcscd.insert())?;
    ensure!(
        wait_metric(port, &nurse, CARDS_PRESENT, |n| n == 2.0, WAIT).await?,
        "the collector did not notice the card put back"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let now = audit::stored_per_patient(&files.database_url).await?;
        if now.get(absent) > during.get(absent) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "readings of {absent} were not stored after the card was put back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The collector's count of failed CRL fetches.
const FETCH_FAILURES: &str = "wardseal_collector_crl_fetch_failures_total";
/// The collector's count of patient cards present.
const CARDS_PRESENT: &str = "wardseal_collector_cards_present";
/// A little more than the collector's CRL refresh period in the ward's configuration.
const CRL_REFRESH: Duration = Duration::from_secs(6);

/// The status of `GET path` on the server at `port` as `config`'s holder; `None` when the
/// connection or the request failed.
async fn status(
    port: u16,
    config: &std::sync::Arc<rustls::ClientConfig>,
    path: &str,
) -> Option<u16> {
    get(port, config, path).await.map(|(status, _)| status)
}

async fn get(
    port: u16,
    config: &std::sync::Arc<rustls::ClientConfig>,
    path: &str,
) -> Option<(u16, Vec<u8>)> {
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };
    let connection = Connection::open(&endpoint, std::sync::Arc::clone(config))
        .await
        .ok()?;
    let reply = connection
        .send(hyper::Method::GET, path, Vec::new())
        .await
        .ok()?;
    Some((reply.status, reply.body.to_vec()))
}

/// The value of the collector's metric `name` (from `GET /metrics`).
async fn metric(
    port: u16,
    config: &std::sync::Arc<rustls::ClientConfig>,
    name: &str,
) -> anyhow::Result<f64> {
    let (status, body) = get(port, config, "/metrics")
        .await
        .context("GET /metrics failed")?;
    ensure!(status == 200, "GET /metrics answered {status}");
    let text = String::from_utf8_lossy(&body);
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("the collector's metrics have no {name}"))?;
    Ok(value.trim().parse()?)
}

/// Waits (at most `timeout`) until metric `name` satisfies `done`.
async fn wait_metric(
    port: u16,
    config: &std::sync::Arc<rustls::ClientConfig>,
    name: &str,
    done: impl Fn(f64) -> bool,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if done(metric(port, config, name).await?) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Revokes the other nurse's certificate and has both servers load that CRL; then
/// replaces the CRL file by garbage, then removes it, each time making both servers
/// reload (SIGHUP and the collector's own refresh): the revoked nurse stays refused and
/// the devices (which reconnect, so handshake, every few seconds) stay served.
async fn break_crl(stack: &mut Stack, load: &Load) -> anyhow::Result<()> {
    let files = stack.files().clone();
    let pki = TestPki::open(&files.dir).await?;
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
fn crl_server_down_postgres() {
    run_with(
        "crl_server_down_postgres",
        Database::Postgres,
        Setup {
            crl_server: true,
            ..Setup::default()
        },
        &[Fault::CrlServerDown],
    );
}

#[test]
fn patient_card_removed_and_reinserted_sqlite() {
    run_with(
        "patient_card_removed_and_reinserted_sqlite",
        Database::Sqlite,
        Setup {
            bedside: true,
            ..Setup::default()
        },
        &[Fault::CardRemoved],
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
