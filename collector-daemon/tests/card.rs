//! A patient's SoftHSM token signs the patient's batch: readings from an assigned device
//! over mutual TLS, sealed into one Merkle batch whose header the token signs.

mod common;

use std::time::Duration;

use common::{GROUP, Ward, heart_rate, post};
use wardseal_card::Signer as _;
use wardseal_collector::batcher::Card;
use wardseal_collector::daemon::Daemon;
use wardseal_core::exchange::BatchSubmission;
use wardseal_core::merkle;
use wardseal_core::reading::{Reading, Timestamp};
use wardseal_core::signature::VerifyingKey;
use wardseal_softhsm::TokenSpec;

#[test]
fn a_softhsm_patient_token_signs_the_batch() {
    wardseal_softhsm::run_isolated_test("a_softhsm_patient_token_signs_the_batch", |hsm| {
        let token = hsm.init_token(&TokenSpec::new("P-000123")).unwrap();
        hsm.generate_ec_p256(&token, "patient", &[0x01]).unwrap();
        let pin = hsm.token_dir().join("pin");
        std::fs::write(&pin, TokenSpec::DEFAULT_USER_PIN).unwrap();
        let uri = format!(
            "pkcs11:token=P-000123;object=patient?module-path={}&pin-source=file:{}",
            hsm.module_path().display(),
            pin.display()
        );
        let signer = wardseal_card::Pkcs11Signer::open(
            &wardseal_card::Pkcs11Config::from_uri(&uri).unwrap(),
        )
        .unwrap();
        let public_key = signer.public_key_der().to_vec();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let ward = Ward::new(&[(1, GROUP, true)], "[batch]\nlinger_ms = 10\n").await;
            ward.assign(&[(1, "P-000123")]);
            let card = Card {
                signer: std::sync::Arc::new(signer),
                certificate: Vec::new(),
            };
            let daemon = Daemon::start(
                &ward.config(),
                ward.ledger.clone(),
                vec![("P-000123".parse().unwrap(), card)],
            )
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
            let key = VerifyingKey::from_spki_der(&public_key).unwrap();
            header
                .verify_signature(&key, &submission.signature)
                .unwrap();
            let mut forged = submission.signature.clone();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            assert!(header.verify_signature(&key, &forged).is_err());
            daemon.shutdown().await;
        });
    })
    .unwrap();
}
