//! Card presence from a PC/SC bedside reader: a real pcscd with vsmartcard's vpcd reader
//! and wardseal-card's virtual card for presence, the patient's SoftHSM token (enrolled by
//! the CA) for signing — the virtual card answers PC/SC only, it cannot sign. While the
//! card is out, readings are accepted (202) and wait in the spool; once it is back they
//! are signed and delivered to storage.
//!
//! pcscd and vpcd's port are machine-wide: the test kit's [`Pcscd`] holds the PC/SC lock
//! file for the whole run, starts `pcscd -f` itself and stops it by PID. It fails (never
//! skips) when pcscd or vpcd is missing, or when another pcscd is running.

mod common;

use std::time::Duration;

use common::storage::{PATIENT, StorageSetup, enroll_card};
use common::{GROUP, Ward, heart_rate, post};
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_core::reading::Timestamp;
use wardseal_testkit::pcsc::{Pcscd, READER};
use wardseal_testkit::{eventually, free_port};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn readings_wait_while_the_card_is_out_of_the_bedside_reader_and_are_delivered_once_it_is_back() {
    wardseal_testkit::softhsm::run_isolated_test(
        "readings_wait_while_the_card_is_out_of_the_bedside_reader_and_are_delivered_once_it_is_back",
        |hsm| {
            let mut pcscd = Pcscd::start().unwrap();
            wardseal_testkit::runtime().unwrap()
                .block_on(async {
                    let storage_port = free_port().unwrap();
                    let ward = Ward::linked(&[(1, GROUP, true)], "", storage_port).await;
                    let uri = enroll_card(&ward.pki, hsm, PATIENT).await;
                    let mut text = std::fs::read_to_string(&ward.config_path).unwrap();
                    text.push_str(&format!(
                        "\n[[cards]]\npatient = \"{PATIENT}\"\npkcs11_uri = \"{uri}\"\nreader = \"{READER}\"\n"
                    ));
                    std::fs::write(&ward.config_path, text).unwrap();
                    let setup = StorageSetup::new(&ward.pki, ward.dir.path(), storage_port).await;
                    let storage = setup.start(ward.ledger.clone()).await;
                    storage.admit(&[1]).await;
                    let config = ward.config();
                    let daemon = Daemon::start(&config, ward.ledger.clone(), open_cards(&config).unwrap())
                        .await
                        .unwrap();
                    let device = ward.connect(daemon.local_addr().port(), &ward.device(1, GROUP).await).await;

                    for sequence in 1..=2 {
                        // Card out: accepted, durable, not signed, not delivered.
                        let (status, json) =
                            post(&device, &heart_rate("72", sequence, Timestamp::now())).await;
                        assert_eq!(status, 202, "{json}");
                        let leaf = json["results"][0]["leaf"].as_str().unwrap().to_owned();
                        // Long enough for assignments (1 s) and several batching rounds.
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        assert!(
                            !setup.stored_leaves().contains_key(&leaf),
                            "a reading was delivered while the card was out"
                        );
                        assert_eq!(daemon.spool().depth(), 1);
                        assert_eq!(daemon.cards().len(), 0);

                        // Card in: signed by the token and delivered, once.
                        // The kit's card into the reader (pcscd sees it before this returns).
                        tokio::task::block_in_place(|| pcscd.insert()).unwrap();
                        let stored = eventually(LIMIT, || async {
                            setup.stored_leaves().contains_key(&leaf)
                        })
                        .await;
                        assert!(stored, "reading {sequence} never reached storage after the card came back");
                        assert_eq!(setup.stored_leaves().get(&leaf), Some(&1));
                        let drained = eventually(LIMIT, || async { daemon.spool().depth() == 0 }).await;
                        assert!(drained);
                        tokio::task::block_in_place(|| pcscd.remove()).unwrap();
                        let cards = std::sync::Arc::clone(daemon.cards());
                        let out = eventually(LIMIT, || {
                            let cards = std::sync::Arc::clone(&cards);
                            async move { cards.is_empty() }
                        })
                        .await;
                        assert!(out, "the collector did not see the card leave the reader");
                    }
                    daemon.shutdown().await;
                    storage.stop().await;
                });
            drop(pcscd);
        },
    )
    .unwrap();
}
