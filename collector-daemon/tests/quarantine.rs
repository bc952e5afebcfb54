//! Nothing stalls: a batch storage refuses for good is quarantined in the collector's
//! spool, the patient's chain continues past it with a card-signed gap record, the
//! patient's later readings are stored, and nothing acknowledged is lost (readings
//! answered 202 = readings stored + readings quarantined). A resubmission after a fix
//! fills the gap.
//!
//! Real components as in `storage_e2e.rs`: devices over mutual TLS to the collector, the
//! patient's card on a SoftHSM token, wardseal-storage on SQLite over mutual TLS, the
//! embedded chain for rules and registry. Every wait is a bounded poll.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails by panicking, with the message"
)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::storage::{PATIENT, StorageSetup, card_section, enroll_card, metric};
use common::{GROUP, RULE, Ward, epc, heart_rate, post};
use wardseal_card::SoftwareSigner;
use wardseal_collector::batcher::Card;
use wardseal_collector::client::Connection;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_collector::quarantine::QuarantineAdmin;
use wardseal_contracts::{Range, TypeRule, WideDecimal};
use wardseal_core::identity::Identity;
use wardseal_core::reading::Timestamp;
use wardseal_testkit::{eventually, free_port};

/// A hang detector, not a speed target (the forwarder's backoff reaches 5 s while
/// storage is down).
const LIMIT: Duration = Duration::from_secs(300);

/// What makes storage refuse a sealed batch for good, between the 202 and delivery.
#[derive(Clone, Copy, Debug)]
enum Cause {
    /// The heart-rate rule is tightened to 30–100 /min; the withheld readings are 150.
    RuleTightened,
    /// The device is deactivated in the on-chain registry.
    DeviceDeactivated,
    /// The patient certificate of the card that signed the batch is revoked; a new card
    /// (new certificate) takes its place and signs the gap record and later batches.
    CertificateRevoked,
}

impl Cause {
    fn code(self) -> &'static str {
        match self {
            Self::RuleTightened => "rule_violation",
            Self::DeviceDeactivated => "device_inactive",
            Self::CertificateRevoked => "patient_certificate_revoked",
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_rule_tightened_before_delivery_quarantines_the_batch_and_a_resubmission_fills_the_gap() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_rule_tightened_before_delivery_quarantines_the_batch_and_a_resubmission_fills_the_gap",
        |hsm| runtime().block_on(scenario(hsm, Cause::RuleTightened)),
    )
    .unwrap();
}

#[test]
fn a_patient_certificate_revoked_before_delivery_quarantines_the_batch_and_the_new_card_continues()
{
    wardseal_testkit::softhsm::run_isolated_test(
        "a_patient_certificate_revoked_before_delivery_quarantines_the_batch_and_the_new_card_continues",
        |hsm| runtime().block_on(scenario(hsm, Cause::CertificateRevoked)),
    )
    .unwrap();
}

/// A patient card as a software key with a certificate from the test CA; its serial.
async fn software_card(pki: &wardseal_testkit::TestPki) -> (Card, String) {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let files = pki
        .issue(Identity::patient(PATIENT.parse().unwrap()))
        .await
        .unwrap();
    let certificate = files.der().unwrap();
    let key = PrivatePkcs8KeyDer::from_pem_file(&files.key).unwrap();
    let signer = SoftwareSigner::from_pkcs8_der(key.secret_pkcs8_der())
        .unwrap()
        .with_certificate(certificate.clone());
    (
        Card {
            signer: Arc::new(signer),
            certificate,
        },
        files.serial,
    )
}

#[test]
fn a_device_deactivated_before_delivery_quarantines_the_batch_and_later_readings_flow() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_device_deactivated_before_delivery_quarantines_the_batch_and_later_readings_flow",
        |hsm| runtime().block_on(scenario(hsm, Cause::DeviceDeactivated)),
    )
    .unwrap();
}

/// (sealed batches waiting, readings waiting for a batch) in the spool.
fn spool_counts(spool: &Path) -> (i64, i64) {
    let connection =
        rusqlite::Connection::open_with_flags(spool, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    let batches = connection
        .query_row("SELECT COUNT(*) FROM batches", [], |row| row.get(0))
        .unwrap();
    let pending = connection
        .query_row(
            "SELECT COUNT(*) FROM readings WHERE batch IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    (batches, pending)
}

/// Posts heart rates `value` with sequences `sequences`; returns the leaves answered 202.
async fn send(
    connection: &Connection,
    value: &str,
    sequences: std::ops::RangeInclusive<u64>,
) -> Vec<String> {
    let mut leaves = Vec::new();
    for sequence in sequences {
        let (status, json) = post(connection, &heart_rate(value, sequence, Timestamp::now())).await;
        assert_eq!(status, 202, "{json}");
        leaves.push(json["results"][0]["leaf"].as_str().unwrap().to_owned());
    }
    leaves
}

fn heart_rate_rule(max: &str) -> TypeRule {
    let range = Range::new(
        WideDecimal::parse("30").unwrap(),
        WideDecimal::parse(max).unwrap(),
    )
    .unwrap();
    TypeRule::new(1, "/min", vec![range], 0).unwrap()
}

async fn scenario(hsm: &wardseal_testkit::softhsm::SoftHsm, cause: Cause) {
    let storage_port = free_port().unwrap();
    let ward = Ward::linked(&[(1, GROUP, true), (2, GROUP, true)], "", storage_port).await;
    let mut revoked_serial = None;
    if let Cause::CertificateRevoked = cause {
        // Software cards: the test swaps the card (a SoftHSM card is also possible, but
        // a second token for the same patient adds nothing to what is shown here).
    } else {
        let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
        let mut config_text = std::fs::read_to_string(&ward.config_path).unwrap();
        config_text.push_str(&card_section(PATIENT, &uri));
        std::fs::write(&ward.config_path, config_text).unwrap();
    }
    let setup = StorageSetup::new(&ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    storage.admit(&[1, 2]).await;
    let spool = ward.dir.path().join("spool.db");

    let config = ward.config();
    let cards = if let Cause::CertificateRevoked = cause {
        let (card, serial) = software_card(&ward.pki).await;
        revoked_serial = Some(serial);
        vec![(PATIENT.parse().unwrap(), card)]
    } else {
        open_cards(&config).unwrap()
    };
    let daemon = Daemon::start(&config, ward.ledger.clone(), cards)
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    let first = ward.connect(port, &ward.device(1, GROUP).await).await;
    let second = ward.connect(port, &ward.device(2, GROUP).await).await;

    // The chain starts normally: the assignments are known and batch 1 is stored.
    let mut acknowledged = send(&first, "72", 1..=1).await;
    let stored = eventually(LIMIT, || async {
        setup.stored_leaves().contains_key(&acknowledged[0])
    })
    .await;
    assert!(stored, "the first reading never reached storage");

    // Storage goes down; device 1's readings are acknowledged and sealed into a batch.
    storage.stop().await;
    let withheld_value = match cause {
        Cause::RuleTightened => "150",
        Cause::DeviceDeactivated | Cause::CertificateRevoked => "72",
    };
    let withheld = send(&first, withheld_value, 2..=4).await;
    acknowledged.extend(withheld.iter().cloned());
    let sealed = eventually(LIMIT, || async { spool_counts(&spool) == (1, 0) }).await;
    assert!(sealed, "device 1's readings were not sealed into one batch");

    // Between the 202 and delivery, something changes for good.
    match cause {
        Cause::RuleTightened => {
            ward.ledger
                .set_type_rule(RULE, &heart_rate_rule("100"))
                .await
                .unwrap();
        }
        Cause::DeviceDeactivated => {
            ward.ledger
                .deactivate_device(epc(1).to_bytes())
                .await
                .unwrap();
        }
        Cause::CertificateRevoked => {
            ward.pki
                .revoke(revoked_serial.as_deref().unwrap())
                .await
                .unwrap();
            let (card, _) = software_card(&ward.pki).await;
            daemon.cards().insert(PATIENT.parse().unwrap(), card);
        }
    }

    // The patient's later readings, from device 2, in a later batch of the same chain.
    let later = send(&second, "72", 1..=3).await;
    acknowledged.extend(later.iter().cloned());
    let sealed = eventually(LIMIT, || async { spool_counts(&spool) == (2, 0) }).await;
    assert!(
        sealed,
        "device 2's readings were not sealed into a second batch"
    );

    // Storage is back: the withheld batch is refused for good and quarantined, the gap is
    // declared, and the later readings are stored.
    let storage = setup.start(ward.ledger.clone()).await;
    let flowed = eventually(LIMIT, || async {
        let leaves = setup.stored_leaves();
        later.iter().all(|leaf| leaves.contains_key(leaf))
    })
    .await;
    assert!(
        flowed,
        "the patient's later readings stalled behind the refused batch"
    );

    let admin = QuarantineAdmin::open(&spool).unwrap();
    let quarantined = admin.list().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let batch = &quarantined[0];
    assert_eq!(batch.refusal.code, cause.code());
    assert_eq!(batch.refusal.status, 422);
    assert_eq!(batch.readings, 3);
    assert_eq!(batch.gap, "declared");
    assert_eq!(batch.state, "quarantined");
    assert_eq!(batch.patient, PATIENT);
    assert_eq!(batch.sequence, 2);

    // Nothing acknowledged is lost: every 202 is stored or in the quarantine, once.
    let detail = admin.show(batch.id).unwrap();
    let submission: wardseal_core::exchange::BatchSubmission =
        serde_json::from_value(detail.submission.clone()).unwrap();
    assert_eq!(submission.header.hash(), batch.header_hash);
    let in_quarantine: HashSet<String> = submission
        .readings
        .iter()
        .map(|bytes| wardseal_core::merkle::leaf_hash(bytes).to_string())
        .collect();
    let stored = setup.stored_leaves();
    for leaf in &acknowledged {
        let at_storage = stored.get(leaf).copied().unwrap_or(0);
        let held = usize::from(in_quarantine.contains(leaf));
        assert_eq!(
            usize::try_from(at_storage).unwrap() + held,
            1,
            "reading {leaf} is stored {at_storage} times and quarantined {held} times"
        );
    }
    assert_eq!(in_quarantine, withheld.iter().cloned().collect());
    assert_eq!(stored.len() + in_quarantine.len(), acknowledged.len());
    assert!(
        detail
            .log
            .iter()
            .any(|action| action.action == "quarantined")
    );
    assert!(
        detail
            .log
            .iter()
            .any(|action| action.action == "gap_declared")
    );

    // Storage holds the declared gap, signed, in the chain's place of the withheld batch.
    let gaps = wardseal_storage::gap::gaps(&storage.storage.store, PATIENT)
        .await
        .unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].sequence, 2);
    assert_eq!(gaps[0].withheld, batch.header_hash);
    assert_eq!(gaps[0].reason, cause.code());
    assert_eq!(gaps[0].filled_at, None);
    let alerted = metric(&first, "wardseal_collector_batches_quarantined_total").await;
    assert_eq!(alerted, 1.0);

    if let Cause::RuleTightened = cause {
        // The fix: the rule is relaxed again; an administrator resubmits the batch, storage
        // accepts it in its gap and the quarantine keeps the record.
        ward.ledger
            .set_type_rule(RULE, &heart_rate_rule("220"))
            .await
            .unwrap();
        let mut admin = QuarantineAdmin::open(&spool).unwrap();
        admin.resubmit(batch.id, "test-admin").unwrap();
        let filled = eventually(LIMIT, || async {
            let leaves = setup.stored_leaves();
            withheld.iter().all(|leaf| leaves.get(leaf) == Some(&1))
        })
        .await;
        assert!(filled, "the resubmitted batch never reached storage");
        let gaps = wardseal_storage::gap::gaps(&storage.storage.store, PATIENT)
            .await
            .unwrap();
        assert!(gaps[0].filled_at.is_some(), "the gap was not marked filled");
        let delivered = eventually(LIMIT, || async {
            QuarantineAdmin::open(&spool).unwrap().list().unwrap()[0].state == "delivered"
        })
        .await;
        assert!(delivered, "the quarantine did not record the delivery");
        let detail = QuarantineAdmin::open(&spool)
            .unwrap()
            .show(batch.id)
            .unwrap();
        assert!(
            detail
                .log
                .iter()
                .any(|action| action.action == "resubmit" && action.actor == "test-admin")
        );
        let stored = setup.stored_leaves();
        assert!(acknowledged.iter().all(|leaf| stored.get(leaf) == Some(&1)));
        // Later readings still continue the chain after the filled gap.
        let after = send(&second, "72", 4..=4).await;
        let flowed = eventually(LIMIT, || async {
            setup.stored_leaves().contains_key(&after[0])
        })
        .await;
        assert!(flowed, "the chain did not continue after the filled gap");
    }

    daemon.shutdown().await;
    storage.stop().await;
}

/// Readings measured before their device's assignment began belong to no one: they wait
/// in the spool (storage would refuse them `device_not_assigned` for good), a technical
/// alert says so after the bound, and the device's readings measured after the
/// assignment began are stored. Nothing acknowledged is lost: 202s = stored + waiting.
#[test]
fn readings_measured_before_an_assignment_wait_with_an_alert_and_later_ones_flow() {
    wardseal_testkit::softhsm::run_isolated_test(
        "readings_measured_before_an_assignment_wait_with_an_alert_and_later_ones_flow",
        |hsm| runtime().block_on(assigned_late(hsm)),
    )
    .unwrap();
}

async fn assigned_late(hsm: &wardseal_testkit::softhsm::SoftHsm) {
    let storage_port = free_port().unwrap();
    let ward = Ward::linked(&[(1, GROUP, true), (3, GROUP, true)], "", storage_port).await;
    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
    let config_text = std::fs::read_to_string(&ward.config_path).unwrap().replace(
        "assignments_refresh_secs = 1",
        "assignments_refresh_secs = 1\nunassigned_alert_secs = 1",
    );
    std::fs::write(
        &ward.config_path,
        config_text + &card_section(PATIENT, &uri),
    )
    .unwrap();
    let setup = StorageSetup::new(&ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    storage.admit(&[1]).await;
    let spool = ward.dir.path().join("spool.db");

    let config = ward.config();
    assert_eq!(config.storage.unassigned_alert_secs, 1);
    let cards = open_cards(&config).unwrap();
    let daemon = Daemon::start(&config, ward.ledger.clone(), cards)
        .await
        .unwrap();
    let port = daemon.local_addr().port();
    let late = ward.connect(port, &ward.device(3, GROUP).await).await;

    // Device 3 measures before anyone assigned it; then the admin enters the assignment
    // with `since` = now (storage's default), after those measurements.
    let early = send(&late, "72", 1..=2).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    storage
        .storage
        .store
        .assign_device(
            &epc(3).pure_identity_uri(),
            PATIENT,
            Timestamp::now().unix_micros(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let assigned = send(&late, "72", 3..=3).await;
    let flowed = eventually(LIMIT, || async {
        setup.stored_leaves().contains_key(&assigned[0])
    })
    .await;
    assert!(
        flowed,
        "the reading measured after the assignment began stalled"
    );

    // The early readings wait, are counted, and storage refused nothing.
    let alerted = eventually(LIMIT, || async {
        metric(&late, "wardseal_collector_readings_unassigned").await == 2.0
    })
    .await;
    assert!(
        alerted,
        "no technical alert for the readings without an assignment"
    );
    let stored = setup.stored_leaves();
    assert!(early.iter().all(|leaf| !stored.contains_key(leaf)));
    assert_eq!(
        storage.storage.store.rejections().await.unwrap().len(),
        0,
        "storage refused a batch: the early readings were bound to the late assignment"
    );
    let waiting: i64 =
        rusqlite::Connection::open_with_flags(&spool, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM readings WHERE patient IS NULL",
                [],
                |row| row.get(0),
            )
            .unwrap();
    assert_eq!(waiting, 2);
    assert_eq!(
        usize::try_from(waiting).unwrap() + stored.len(),
        early.len() + assigned.len()
    );
    assert!(
        QuarantineAdmin::open(&spool)
            .unwrap()
            .list()
            .unwrap()
            .is_empty()
    );

    daemon.shutdown().await;
    storage.stop().await;
}
