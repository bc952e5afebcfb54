//! A patient's SoftHSM token signs the patient's batch: readings from an assigned device
//! over mutual TLS, sealed into one Merkle batch whose header the token signs. The card is
//! enrolled by the hospital CA (key generated on the token, patient certificate issued and
//! written back), opened from the collector configuration as in production, and the batch
//! carries that certificate.

mod common;

use std::time::Duration;

use common::storage::{card_section, enroll_card};
use common::{GROUP, Ward, heart_rate, post};
use wardseal_collector::daemon::{Daemon, open_cards, tls_settings};
use wardseal_core::exchange::BatchSubmission;
use wardseal_core::merkle;
use wardseal_core::reading::{Reading, Timestamp};
use wardseal_core::signature::VerifyingKey;
use wardseal_net::server::ServerTls;

#[test]
fn a_softhsm_patient_token_signs_the_batch() {
    wardseal_testkit::softhsm::run_isolated_test(
        "a_softhsm_patient_token_signs_the_batch",
        |hsm| {
            let runtime = wardseal_testkit::runtime().unwrap();
            runtime.block_on(async move {
                let ward = Ward::new(&[(1, GROUP, true)], "[batch]\nlinger_ms = 10\n").await;
                ward.assign(&[(1, "P-000123")]);
                let uri = enroll_card(&ward.pki, hsm, "P-000123").await;
                let mut text = std::fs::read_to_string(&ward.config_path).unwrap();
                text.push('\n');
                text.push_str(&card_section("P-000123", &uri));
                std::fs::write(&ward.config_path, text).unwrap();
                let config = ward.config();
                let cards = open_cards(&config).unwrap();
                let daemon = Daemon::start(&config, ward.ledger.clone(), cards)
                    .await
                    .unwrap();
                let device = ward.device(1, GROUP).await;
                let connection = ward.connect(daemon.local_addr().port(), &device).await;
                let now = Timestamp::now();
                let body = format!(
                    "[{},{},{}]",
                    heart_rate("70", 1, now),
                    heart_rate("71", 2, now),
                    heart_rate("72", 3, now)
                );
                let (status, json) = post(&connection, &body).await;
                assert_eq!(status, 202, "{json}");
                let leaves: Vec<String> = (0..3)
                    .map(|i| json["results"][i]["leaf"].as_str().unwrap().to_owned())
                    .collect();

                // Wait (bounded) for the batcher to seal the patient's batch.
                let database = rusqlite::Connection::open(daemon.spool().path()).unwrap();
                let mut submission = None;
                for _ in 0..200 {
                    let text: Option<String> = database
                        .query_row("SELECT submission FROM batches", [], |row| row.get(0))
                        .ok();
                    if let Some(text) = text {
                        submission = Some(serde_json::from_str::<BatchSubmission>(&text).unwrap());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let submission = submission.expect("the batch was never sealed");
                let header = &submission.header;
                assert_eq!(header.patient().as_str(), "P-000123");
                assert_eq!(header.collector().as_str(), "ward-7");
                assert_eq!((header.sequence(), header.count()), (1, 3));
                let recomputed: Vec<_> = submission
                    .readings
                    .iter()
                    .map(|bytes| Reading::from_canonical_bytes(bytes).unwrap().leaf_hash())
                    .collect();
                let listed: Vec<String> = recomputed.iter().map(ToString::to_string).collect();
                assert_eq!(listed, leaves);
                assert_eq!(header.root(), merkle::root(&recomputed));
                // The batch carries the patient certificate the CA issued for the token; it
                // verifies against the hospital CA for the patient-data-signing usage, names
                // the patient, and its key verifies the header signature.
                static USAGE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
                    wardseal_core::identity::PATIENT_DATA_SIGNING_OID
                        .as_bytes()
                        .to_vec()
                });
                let tls = ServerTls::load(tls_settings(&config).unwrap()).unwrap();
                let patient = tls
                    .verify_certificate(
                        &submission.patient_certificate,
                        USAGE.as_slice(),
                        std::time::SystemTime::now(),
                    )
                    .unwrap();
                assert_eq!(
                    patient.identity.role(),
                    wardseal_core::identity::Role::Patient
                );
                assert_eq!(
                    patient.identity.subject_id().map(|s| s.as_str()),
                    Some("P-000123")
                );
                let (_, certificate) =
                    x509_parser::parse_x509_certificate(&submission.patient_certificate).unwrap();
                let key = VerifyingKey::from_spki_der(certificate.public_key().raw).unwrap();
                header
                    .verify_signature(&key, &submission.signature)
                    .unwrap();
                let mut forged = submission.signature.clone();
                let last = forged.len() - 1;
                forged[last] ^= 1;
                assert!(header.verify_signature(&key, &forged).is_err());
                daemon.shutdown().await;
            });
        },
    )
    .unwrap();
}
