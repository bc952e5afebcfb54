//! Every attack of `wardseal-sim`'s attack mode against a whole running ward, once on the
//! embedded defaults (embedded ledger, SQLite) and once on PostgreSQL and anvil: each is
//! refused with its specific status and code (or TLS alert), nothing any attack sent is
//! in storage's database afterwards (read directly, not through storage), storage
//! recorded each batch it refused, the collector counted each reading it refused, and
//! the ward still accepts a legitimate reading.
//!
//! Both need their components: PostgreSQL 15 (a throwaway cluster, or `DATABASE_URL`)
//! and anvil (`contracts/setup.sh`, or `WARDSEAL_ANVIL`). A missing one fails the test.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "the suite's shared body fails the test by panicking and prints each outcome"
)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use wardseal_core::hash::Hash;
use wardseal_sim::attacks::{self, Expected, Outcome, Scenario, Server};
use wardseal_sim::ward::{
    CardBackend, DatabaseChoice, LedgerChoice, RunningWard, WardFiles, WardOptions,
};
use wardseal_testkit::{Anvil, AnvilOptions, Postgres};
use wardseal_tests::db::Database;

/// The default ward (two patients, every kind of device). The patients' cards are
/// software keys, or SoftHSM tokens when the test process was started with
/// `SOFTHSM2_CONF` naming a private store (SoftHSM reads it once, at load).
fn options(dir: &std::path::Path) -> WardOptions {
    let mut options = WardOptions::new(dir.join("ward"));
    options.cards = CardBackend::Auto;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_on_the_embedded_ledger_and_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    attack_suite(options(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_on_anvil_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = Postgres::start().unwrap();
    let anvil = Anvil::start(AnvilOptions::default()).await.unwrap();
    let key_file = dir.path().join("anvil-account.key");
    Anvil::write_dev_key(0, &key_file).unwrap();
    let mut options = options(dir.path());
    options.ledger = LedgerChoice::Rpc {
        url: anvil.url(),
        key_file,
    };
    options.database = DatabaseChoice::Postgres(postgres.url().to_owned());
    attack_suite(options).await;
    drop(anvil);
    drop(postgres);
}

async fn attack_suite(options: WardOptions) {
    let files = WardFiles::prepare(&options).await.unwrap();
    let ward = RunningWard::start(&files).await.unwrap();
    let database = Database::open(&files.database_url).await.unwrap();
    let rejections_before = database.rejections().await.unwrap().len();

    let outcomes = attacks::run_all(&ward).await.unwrap();
    for outcome in &outcomes {
        println!("{outcome}");
        for note in &outcome.notes {
            println!("    {note}");
        }
    }
    let ran: Vec<Scenario> = outcomes.iter().map(|o| o.scenario).collect();
    assert_eq!(
        ran,
        Scenario::ALL.to_vec(),
        "every scenario runs once, in order"
    );
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.refused_as_expected)
        .map(Outcome::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "attacks not refused as expected:\n{}",
        failed.join("\n")
    );

    // Everything legitimate the attacker sent has reached storage, so what is not there
    // now was refused, not merely late.
    wait_for_empty_spool(&ward).await;

    // Nothing any attack sent is stored.
    let leaves: Vec<Hash> = outcomes
        .iter()
        .flat_map(|o| o.evidence.leaves.iter().copied())
        .collect();
    let headers: Vec<Hash> = outcomes
        .iter()
        .flat_map(|o| o.evidence.headers.iter().copied())
        .collect();
    for scenario in [
        Scenario::SelfSignedDevice,
        Scenario::TypeNotAllowed,
        Scenario::ImplausibleRate,
        Scenario::ReplayedSequence,
        Scenario::TamperedReadingAtStorage,
        Scenario::SinkholeAlter,
        Scenario::RevokedDevice,
    ] {
        let outcome = outcomes.iter().find(|o| o.scenario == scenario).unwrap();
        assert!(
            !outcome.evidence.leaves.is_empty(),
            "{scenario} records the readings it sent"
        );
    }
    assert_eq!(
        database.stored_leaves(&leaves).await.unwrap(),
        Vec::<Hash>::new(),
        "readings sent by attacks are stored"
    );
    assert_eq!(
        database.stored_headers(&headers).await.unwrap(),
        Vec::<Hash>::new(),
        "batches sent by attacks are stored"
    );
    // The check above is only as good as its ability to see stored data: the ward's
    // own legitimate batches are there.
    let (readings, batches) = database.counts().await.unwrap();
    assert!(
        readings > 0 && batches > 0,
        "storage holds the legitimate readings"
    );
    let legitimate = database.some_leaves(3).await.unwrap();
    assert!(!legitimate.is_empty());
    assert_eq!(
        database.stored_leaves(&legitimate).await.unwrap(),
        legitimate,
        "the lookup finds stored readings"
    );

    // Storage recorded each batch it refused, under the scenario's code, naming one of
    // the scenario's headers.
    let rejections = database.rejections().await.unwrap();
    assert!(rejections.len() > rejections_before);
    for outcome in &outcomes {
        let Expected::Refusal {
            server: Server::Storage,
            code,
            ..
        } = outcome.expected
        else {
            continue;
        };
        if outcome.evidence.headers.is_empty() {
            continue; // the clinician read: an access refusal, in the access log
        }
        let sent: HashSet<Hash> = outcome.evidence.headers.iter().copied().collect();
        assert!(
            rejections
                .iter()
                .any(|r| r.code == code && r.header_hash.is_some_and(|h| sent.contains(&h))),
            "{}: no rejection recorded with code {code} for its batch",
            outcome.scenario
        );
    }
    // The refused read is in the access log (whose roots are anchored on chain).
    assert!(
        database
            .refused_accesses(&files.other_nurse.id, &files.patients[0].id)
            .await
            .unwrap()
            >= 1,
        "the unauthorised read is not in the access log as refused"
    );

    // The same records through the admin API.
    let admin = ward.connect_storage(&files.admin.files).await.unwrap();
    let reply = admin
        .send(hyper::Method::GET, "/v1/admin/rejections", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let listed: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let listed_codes: HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    for code in [
        "root_mismatch",
        "bad_signature",
        "replayed_batch",
        "chain_gap",
        "rule_violation",
    ] {
        assert!(
            listed_codes.contains(code),
            "/v1/admin/rejections lacks {code}"
        );
    }

    // The collector counted every reading refusal it answered.
    let metrics = ward.collector().metrics();
    for outcome in &outcomes {
        if let Expected::Refusal {
            server: Server::Collector,
            code,
            ..
        } = outcome.expected
        {
            assert!(
                metrics.rejected_total(code) >= 1,
                "{}: the collector's metrics count no {code}",
                outcome.scenario
            );
        }
    }

    // After all that, a ward device is still served.
    let device = files
        .devices
        .iter()
        .find(|d| d.kind == wardseal_sim::kinds::DeviceKind::Thermometer)
        .unwrap();
    let connection = ward.connect_collector(&device.files).await.unwrap();
    let body = format!(
        r#"{{"type":"body_temperature","value":36.9,"unit":"Cel","time":"{}","seq":1}}"#,
        wardseal_core::reading::Timestamp::now()
    );
    let reply = connection
        .send(hyper::Method::POST, "/v1/readings", body.into_bytes())
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    database.close().await;
    ward.shutdown().await;
}

async fn wait_for_empty_spool(ward: &RunningWard) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ward.collector().spool().depth() > 0 {
        assert!(
            Instant::now() < deadline,
            "the collector did not deliver its spool within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
