//! Nothing stalls: a batch storage refuses for good is quarantined in the collector's
//! spool, the patient's chain continues past it with a card-signed gap record, the
//! patient's later readings are stored, nothing acknowledged is lost (readings answered
//! 202 = readings stored + readings quarantined), and a technical alert reaches storage.
//! A resubmission after a fix fills the gap and resolves the alert. One test per cause of
//! a permanent refusal between the 202 and delivery: a rule tightened, a device
//! deactivated, the patient certificate revoked, the patient certificate expired, a
//! device that sent before storage's record of its assignment began. And across a
//! `kill -9` of the collector process while it quarantines.
//!
//! Real components as in `storage_e2e.rs`: devices over mutual TLS to the collector, the
//! patient's card on a SoftHSM token (software keys from the test CA where a card must be
//! swapped; `openssl ca` re-certifies one for seconds), wardseal-storage on SQLite or
//! PostgreSQL over mutual TLS, the embedded chain for rules and registry. Every wait is a
//! bounded poll.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails by panicking, with the message"
)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::storage::{
    Database, PATIENT, StorageSetup, card_section, enroll_card, metric, storage_setup,
};
use common::{GROUP, RULE, Ward, epc, heart_rate, post};
use wardseal_card::SoftwareSigner;
use wardseal_collector::batcher::Card;
use wardseal_collector::client::Connection;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_collector::quarantine::QuarantineAdmin;
use wardseal_contracts::{Range, TypeRule, WideDecimal};
use wardseal_core::alert::{AlertCode, AlertState};
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
    /// The patient certificate of the card that signed the batch expires before storage
    /// sees the batch; a new card takes its place.
    CertificateExpired,
    /// Device 1 sends before storage's record of its assignment begins: the ward's
    /// assignments file (what the collector binds by) says the device measures the patient,
    /// storage has no assignment of it at the readings' time.
    AssignedLate,
}

impl Cause {
    fn code(self) -> &'static str {
        match self {
            Self::RuleTightened => "rule_violation",
            Self::DeviceDeactivated => "device_inactive",
            Self::CertificateRevoked => "patient_certificate_revoked",
            Self::CertificateExpired => "patient_certificate_invalid",
            Self::AssignedLate => "device_not_assigned",
        }
    }

    /// Whether the patient's cards are software keys the test swaps.
    fn swaps_cards(self) -> bool {
        matches!(self, Self::CertificateRevoked | Self::CertificateExpired)
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
        |hsm| runtime().block_on(scenario(hsm, Cause::RuleTightened, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn a_rule_tightened_before_delivery_to_postgres_quarantines_the_batch_and_a_resubmission_fills_the_gap()
 {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_rule_tightened_before_delivery_to_postgres_quarantines_the_batch_and_a_resubmission_fills_the_gap",
        |hsm| runtime().block_on(scenario(hsm, Cause::RuleTightened, Database::Postgres)),
    )
    .unwrap();
}

#[test]
fn a_patient_certificate_revoked_before_delivery_quarantines_the_batch_and_the_new_card_continues()
{
    wardseal_testkit::softhsm::run_isolated_test(
        "a_patient_certificate_revoked_before_delivery_quarantines_the_batch_and_the_new_card_continues",
        |hsm| runtime().block_on(scenario(hsm, Cause::CertificateRevoked, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn a_patient_certificate_expired_before_delivery_quarantines_the_batch_and_the_new_card_continues()
{
    wardseal_testkit::softhsm::run_isolated_test(
        "a_patient_certificate_expired_before_delivery_quarantines_the_batch_and_the_new_card_continues",
        |hsm| runtime().block_on(scenario(hsm, Cause::CertificateExpired, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn a_patient_certificate_expired_before_delivery_to_postgres_quarantines_the_batch() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_patient_certificate_expired_before_delivery_to_postgres_quarantines_the_batch",
        |hsm| runtime().block_on(scenario(hsm, Cause::CertificateExpired, Database::Postgres)),
    )
    .unwrap();
}

#[test]
fn a_device_sending_before_its_assignment_at_storage_quarantines_the_batch_and_later_readings_flow()
{
    wardseal_testkit::softhsm::run_isolated_test(
        "a_device_sending_before_its_assignment_at_storage_quarantines_the_batch_and_later_readings_flow",
        |hsm| runtime().block_on(scenario(hsm, Cause::AssignedLate, Database::Sqlite)),
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
        |hsm| runtime().block_on(scenario(hsm, Cause::DeviceDeactivated, Database::Sqlite)),
    )
    .unwrap();
}

/// A patient card whose certificate expires `seconds` from now: a patient key and
/// certificate from the test CA, re-certified by the CA's issuing key with `openssl ca`
/// (the CA's own profile has whole days only; `openssl ca -enddate` takes seconds), the
/// extensions copied as issued.
async fn expiring_card(pki: &wardseal_testkit::TestPki, seconds: i64) -> Card {
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let files = pki
        .issue(Identity::patient(PATIENT.parse().unwrap()))
        .await
        .unwrap();
    let dir = tempfile::tempdir_in(pki.dir()).unwrap();
    let path = |name: &str| dir.path().join(name);
    let issuing =
        wardseal_pki::ca::pem("CERTIFICATE", &pki.ca().settings().issuing_certificate).unwrap();
    std::fs::write(path("issuing.pem"), issuing).unwrap();
    std::fs::write(path("index.txt"), "").unwrap();
    std::fs::write(path("serial"), "01\n").unwrap();
    std::fs::write(
        path("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = short\n[short]\ndatabase = {index}\nserial = {serial}\n\
             new_certs_dir = {dir}\ndefault_md = sha256\npolicy = any\n\
             copy_extensions = copyall\nunique_subject = no\n\
             [any]\norganizationName = optional\ncommonName = optional\n",
            index = path("index.txt").display(),
            serial = path("serial").display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .map_err(|error| format!("openssl (Debian `openssl`) must be installed: {error}"))
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let request = path("request.pem");
    openssl(&[
        "x509".as_ref(),
        "-x509toreq".as_ref(),
        "-in".as_ref(),
        files.certificate.as_os_str(),
        "-key".as_ref(),
        files.key.as_os_str(),
        "-copy_extensions".as_ref(),
        "copyall".as_ref(),
        "-out".as_ref(),
        request.as_os_str(),
    ]);
    let at = |offset: i64| {
        let time = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset);
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            time.year(),
            u8::from(time.month()),
            time.day(),
            time.hour(),
            time.minute(),
            time.second()
        )
    };
    let (start, end) = (at(-60), at(seconds));
    let certificate = path("expiring.pem");
    let passphrase = format!(
        "file:{}",
        wardseal_testkit::TestPki::passphrase_file(pki.dir()).display()
    );
    let key = wardseal_testkit::TestPki::ca_dir(pki.dir()).join(wardseal_pki::ca::ISSUING_KEY_FILE);
    openssl(&[
        "ca".as_ref(),
        "-batch".as_ref(),
        "-config".as_ref(),
        path("ca.cnf").as_os_str(),
        "-cert".as_ref(),
        path("issuing.pem").as_os_str(),
        "-keyfile".as_ref(),
        key.as_os_str(),
        "-passin".as_ref(),
        passphrase.as_ref(),
        "-in".as_ref(),
        request.as_os_str(),
        "-startdate".as_ref(),
        start.as_ref(),
        "-enddate".as_ref(),
        end.as_ref(),
        "-rand_serial".as_ref(),
        "-notext".as_ref(),
        "-preserveDN".as_ref(),
        "-out".as_ref(),
        certificate.as_os_str(),
    ]);
    let certificate = rustls::pki_types::CertificateDer::from_pem_file(&certificate)
        .unwrap()
        .to_vec();
    let key = PrivatePkcs8KeyDer::from_pem_file(&files.key).unwrap();
    let signer = SoftwareSigner::from_pkcs8_der(key.secret_pkcs8_der())
        .unwrap()
        .with_certificate(certificate.clone());
    Card {
        signer: Arc::new(signer),
        certificate,
    }
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

/// The software cards of a run that swaps them: the first, and the revoked one's serial.
async fn first_card(pki: &wardseal_testkit::TestPki, cause: Cause) -> (Card, Option<String>) {
    let (card, serial) = software_card(pki).await;
    match cause {
        Cause::CertificateRevoked => (card, Some(serial)),
        _ => (card, None),
    }
}

async fn scenario(hsm: &wardseal_testkit::softhsm::SoftHsm, cause: Cause, database: Database) {
    let storage_port = free_port().unwrap();
    let ward = Ward::linked(&[(1, GROUP, true), (2, GROUP, true)], "", storage_port).await;
    if !cause.swaps_cards() {
        let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
        let mut config_text = std::fs::read_to_string(&ward.config_path).unwrap();
        config_text.push_str(&card_section(PATIENT, &uri));
        std::fs::write(&ward.config_path, config_text).unwrap();
    }
    if let Cause::AssignedLate = cause {
        // The collector binds by the ward's assignments file, which says both devices
        // measure the patient since January; storage knows only device 2's assignment.
        let config_text = std::fs::read_to_string(&ward.config_path).unwrap().replace(
            "assignments_refresh_secs = 1",
            &format!(
                "assignments_refresh_secs = 1\nassignments_file = \"{}\"",
                ward.dir.path().join("assignments.json").display()
            ),
        );
        std::fs::write(&ward.config_path, config_text).unwrap();
        ward.assign(&[(1, PATIENT), (2, PATIENT)]);
    }
    let (setup, _cluster) = storage_setup(database, &ward.pki, ward.dir.path(), storage_port).await;
    let storage = setup.start(ward.ledger.clone()).await;
    match cause {
        Cause::AssignedLate => storage.admit(&[2]).await,
        _ => storage.admit(&[1, 2]).await,
    }
    let spool = ward.dir.path().join("spool.db");

    let config = ward.config();
    let mut revoked_serial = None;
    let cards = if cause.swaps_cards() {
        let (card, serial) = first_card(&ward.pki, cause).await;
        revoked_serial = serial;
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

    // The chain starts normally: the assignments are known and batch 1 is stored (from
    // device 2 when storage does not know device 1's assignment yet).
    let opener = match cause {
        Cause::AssignedLate => &second,
        _ => &first,
    };
    let mut acknowledged = send(opener, "72", 1..=1).await;
    let stored = eventually(LIMIT, || async {
        setup.stored_leaves().contains_key(&acknowledged[0])
    })
    .await;
    assert!(stored, "the first reading never reached storage");
    // ... and its receipt reached the collector (the batch left the spool).
    let received = eventually(LIMIT, || async { spool_counts(&spool) == (0, 0) }).await;
    assert!(
        received,
        "the first batch's receipt never reached the collector"
    );

    // Storage goes down; device 1's readings are acknowledged and sealed into a batch.
    storage.stop().await;
    let mut expires = None;
    if let Cause::CertificateExpired = cause {
        // The card that seals the withheld batch has a certificate valid for 8 s more.
        daemon
            .cards()
            .insert(PATIENT.parse().unwrap(), expiring_card(&ward.pki, 8).await);
        expires = Some(std::time::Instant::now() + Duration::from_secs(8));
    }
    let withheld_value = match cause {
        Cause::RuleTightened => "150",
        _ => "72",
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
        Cause::CertificateExpired => {
            // Bounded: the certificate's end is 8 s after it was issued.
            if let Some(expires) = expires {
                tokio::time::sleep(expires.saturating_duration_since(std::time::Instant::now()))
                    .await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (card, _) = software_card(&ward.pki).await;
            daemon.cards().insert(PATIENT.parse().unwrap(), card);
        }
        // Nothing changes: storage never had device 1's assignment at that time.
        Cause::AssignedLate => {}
    }

    // The patient's later readings, from device 2, in a later batch of the same chain.
    let later = send(&second, "72", 11..=13).await;
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
    assert_eq!(batch.refusal.code, cause.code(), "{batch:?}");
    assert_eq!(batch.refusal.status, 422);
    assert_eq!(batch.readings, 3);
    assert_eq!(batch.gap, "declared");
    assert_eq!(batch.state, "quarantined");
    assert_eq!(batch.patient, PATIENT);
    assert_eq!(batch.sequence, 2);

    // Nothing acknowledged is lost: every 202 is stored or in the quarantine, once.
    let detail = admin.show(batch.id).unwrap();
    let in_quarantine = quarantined_leaves(&detail, batch);
    assert_exactly_once(&acknowledged, &setup.stored_leaves(), &in_quarantine);
    assert_eq!(in_quarantine, withheld.iter().cloned().collect());
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

    // The technical alert reached storage: one batch-quarantined alert of the patient.
    let alert = quarantine_alert(&storage).await;
    assert_eq!(alert.state, AlertState::Raised, "{alert:?}");
    assert!(alert.message.contains(cause.code()), "{alert:?}");

    if let Cause::AssignedLate = cause {
        // Storage's record of device 1's assignment begins now: its later readings flow.
        storage
            .storage
            .store
            .assign_device(
                &epc(1).pure_identity_uri(),
                PATIENT,
                Timestamp::now().unix_micros(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = send(&first, "72", 10..=10).await;
        let flowed = eventually(LIMIT, || async {
            setup.stored_leaves().contains_key(&after[0])
        })
        .await;
        assert!(flowed, "device 1's readings after its assignment stalled");
    }

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
        // The condition cleared: the collector resolved the technical alert.
        let resolved = eventually(LIMIT, || async {
            quarantine_alert(&storage).await.state == AlertState::Resolved
        })
        .await;
        assert!(resolved, "the batch-quarantined alert was not resolved");
        let alert = quarantine_alert(&storage).await;
        assert_eq!(alert.resolved_by.as_deref(), Some(common::WARD));
        // Later readings still continue the chain after the filled gap.
        let after = send(&second, "72", 14..=14).await;
        let flowed = eventually(LIMIT, || async {
            setup.stored_leaves().contains_key(&after[0])
        })
        .await;
        assert!(flowed, "the chain did not continue after the filled gap");
    }

    daemon.shutdown().await;
    storage.stop().await;
}

/// The leaves of a quarantined batch's readings.
fn quarantined_leaves(
    detail: &wardseal_collector::quarantine::QuarantineDetail,
    batch: &wardseal_collector::quarantine::QuarantinedBatch,
) -> HashSet<String> {
    let submission: wardseal_core::exchange::BatchSubmission =
        serde_json::from_value(detail.submission.clone()).unwrap();
    assert_eq!(submission.header.hash(), batch.header_hash);
    submission
        .readings
        .iter()
        .map(|bytes| wardseal_core::merkle::leaf_hash(bytes).to_string())
        .collect()
}

/// Every acknowledged reading is stored once or quarantined once, never both, and
/// nothing else is stored: 202s = stored + quarantined.
fn assert_exactly_once(
    acknowledged: &[String],
    stored: &std::collections::HashMap<String, i64>,
    in_quarantine: &HashSet<String>,
) {
    for leaf in acknowledged {
        let at_storage = stored.get(leaf).copied().unwrap_or(0);
        let held = usize::from(in_quarantine.contains(leaf));
        assert_eq!(
            usize::try_from(at_storage).unwrap() + held,
            1,
            "reading {leaf} is stored {at_storage} times and quarantined {held} times"
        );
    }
    assert_eq!(stored.len() + in_quarantine.len(), acknowledged.len());
}

/// The one batch-quarantined alert of the patient at storage (waits for its push).
async fn quarantine_alert(storage: &common::storage::StorageServer) -> wardseal_core::alert::Alert {
    let store = &storage.storage.store;
    let found = eventually(LIMIT, || async {
        wardseal_storage::alerts::list(store, None, None)
            .await
            .unwrap()
            .iter()
            .any(|alert| alert.code == AlertCode::BatchQuarantined)
    })
    .await;
    assert!(found, "no batch-quarantined alert reached storage");
    let alerts: Vec<_> = wardseal_storage::alerts::list(store, None, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|alert| alert.code == AlertCode::BatchQuarantined)
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = alerts.into_iter().next().unwrap();
    assert_eq!(
        alert.patient.as_ref().map(|p| p.as_str()),
        Some(PATIENT),
        "{alert:?}"
    );
    alert
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

/// `kill -9` of the collector process right after it quarantined a batch (its gap
/// declaration may or may not have reached storage), then a restart: the quarantine is
/// still listed, the gap is declared at storage exactly once, the batch-quarantined
/// alert reaches storage once, the patient's later readings are stored, and nothing
/// acknowledged is lost.
#[test]
fn a_collector_killed_while_quarantining_loses_nothing_and_declares_the_gap_once() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_collector_killed_while_quarantining_loses_nothing_and_declares_the_gap_once",
        |hsm| runtime().block_on(kill_9_while_quarantining(hsm, Database::Sqlite)),
    )
    .unwrap();
}

#[test]
fn a_collector_killed_while_quarantining_for_postgres_loses_nothing_and_declares_the_gap_once() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_collector_killed_while_quarantining_for_postgres_loses_nothing_and_declares_the_gap_once",
        |hsm| runtime().block_on(kill_9_while_quarantining(hsm, Database::Postgres)),
    )
    .unwrap();
}

/// The collector binary as a child process on `port`, logging to `log`.
fn start_collector(config: &Path, port: u16, log: &Path) -> std::process::Child {
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

/// Rows of the quarantine, read from the spool file beside the collector process:
/// (count, gaps still pending).
fn quarantine_rows(spool: &Path) -> (i64, i64) {
    let Ok(connection) =
        rusqlite::Connection::open_with_flags(spool, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    connection.busy_timeout(Duration::from_secs(10)).unwrap();
    connection
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(gap = 'pending'), 0) FROM quarantine",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap_or((0, 0))
}

async fn kill_9_while_quarantining(hsm: &wardseal_testkit::softhsm::SoftHsm, database: Database) {
    let storage_port = free_port().unwrap();
    let collector_port = free_port().unwrap();
    let ward = Ward::linked(&[(1, GROUP, true), (2, GROUP, true)], "", storage_port).await;
    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
    let config_text = std::fs::read_to_string(&ward.config_path).unwrap();
    std::fs::write(
        &ward.config_path,
        config_text + &card_section(PATIENT, &uri),
    )
    .unwrap();
    let first_device = ward.client_config(&ward.device(1, GROUP).await);
    let second_device = ward.client_config(&ward.device(2, GROUP).await);
    // The collector process opens the embedded chain itself; storage follows a copy of
    // the same transaction log, on which the rule administrator then tightens the rule
    // (what storage re-checks between the 202 and delivery).
    let copy = ward.dir.path().join("storage-chain");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(
        ward.dir.path().join("chain/chain.log"),
        copy.join("chain.log"),
    )
    .unwrap();
    let chain_copy = wardseal_contracts::EmbeddedChain::open(&copy).unwrap();
    let storage_ledger = wardseal_contracts::Ledger::new(
        chain_copy
            .backend(alloy::primitives::Address::repeat_byte(0x11))
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
    let spool = dir.path().join("spool.db");

    let (setup, _cluster) = storage_setup(database, &pki, dir.path(), storage_port).await;
    let storage = setup.start(storage_ledger.clone()).await;
    storage.admit(&[1, 2]).await;
    let mut child = start_collector(
        &config_path,
        collector_port,
        &dir.path().join("collector-1.log"),
    );
    assert!(
        wardseal_testkit::wait_listening(collector_port, LIMIT)
            .await
            .is_ok(),
        "the collector never listened"
    );
    let endpoint = common::endpoint(collector_port);
    let first = Connection::open(&endpoint, Arc::clone(&first_device))
        .await
        .unwrap();
    let mut acknowledged = send(&first, "72", 1..=1).await;
    let stored = eventually(LIMIT, || async {
        setup.stored_leaves().contains_key(&acknowledged[0])
    })
    .await;
    assert!(stored, "the first reading never reached storage");

    // Storage's rule is tightened; the collector (its own replica) still accepts 150.
    storage_ledger
        .set_type_rule(RULE, &heart_rate_rule("100"))
        .await
        .unwrap();
    let withheld = send(&first, "150", 2..=4).await;
    acknowledged.extend(withheld.iter().cloned());

    // Kill -9 as soon as the batch is in the quarantine (polled every 2 ms).
    let quarantined = eventually(LIMIT, || async {
        if quarantine_rows(&spool).0 > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        false
    })
    .await;
    assert!(quarantined, "the refused batch was never quarantined");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (_, pending_at_kill) = quarantine_rows(&spool);
    let gaps_at_kill = wardseal_storage::gap::gaps(&storage.storage.store, PATIENT)
        .await
        .unwrap()
        .len();
    eprintln!(
        "killed with the gap {} at the collector and {gaps_at_kill} gap records at storage",
        if pending_at_kill > 0 {
            "pending"
        } else {
            "declared"
        }
    );

    // Restart: the patient's later readings flow past the quarantined batch.
    let mut child = start_collector(
        &config_path,
        collector_port,
        &dir.path().join("collector-2.log"),
    );
    assert!(
        wardseal_testkit::wait_listening(collector_port, LIMIT)
            .await
            .is_ok(),
        "the collector never listened after the restart"
    );
    let second = Connection::open(&endpoint, Arc::clone(&second_device))
        .await
        .unwrap();
    let later = send(&second, "72", 1..=3).await;
    acknowledged.extend(later.iter().cloned());
    let flowed = eventually(LIMIT, || async {
        let leaves = setup.stored_leaves();
        later.iter().all(|leaf| leaves.contains_key(leaf))
    })
    .await;
    assert!(
        flowed,
        "the patient's later readings stalled after the restart; collector log: {}",
        dir.path().join("collector-2.log").display()
    );

    // The quarantine is still listed, its gap declared; storage holds one gap record.
    let admin = QuarantineAdmin::open(&spool).unwrap();
    let listed = admin.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let batch = &listed[0];
    assert_eq!(batch.state, "quarantined");
    assert_eq!(batch.gap, "declared");
    assert_eq!(batch.refusal.code, "rule_violation");
    assert_eq!(batch.sequence, 2);
    let gaps = wardseal_storage::gap::gaps(&storage.storage.store, PATIENT)
        .await
        .unwrap();
    assert_eq!(
        gaps.len(),
        1,
        "the gap was declared {} times: {gaps:?}",
        gaps.len()
    );
    assert_eq!(gaps[0].withheld, batch.header_hash);
    let detail = admin.show(batch.id).unwrap();
    assert_eq!(
        detail
            .log
            .iter()
            .filter(|action| action.action == "gap_declared")
            .count(),
        1,
        "{:?}",
        detail.log
    );

    // Nothing acknowledged is lost; the alert reached storage once.
    let in_quarantine = quarantined_leaves(&detail, batch);
    assert_eq!(in_quarantine, withheld.iter().cloned().collect());
    assert_exactly_once(&acknowledged, &setup.stored_leaves(), &in_quarantine);
    let alert = quarantine_alert(&storage).await;
    assert!(alert.message.contains("rule_violation"), "{alert:?}");

    child.kill().unwrap();
    child.wait().unwrap();
    storage.stop().await;
    drop((pki, dir, chain_copy));
}
