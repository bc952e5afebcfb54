//! Card presence from a PC/SC bedside reader: a real pcscd with vsmartcard's vpcd reader
//! and wardseal-card's virtual card for presence, the patient's SoftHSM token (enrolled by
//! the CA) for signing — the virtual card answers PC/SC only, it cannot sign. While the
//! card is out, readings are accepted (202) and wait in the spool; once it is back they
//! are signed and delivered to storage.
//!
//! pcscd and vpcd's port are machine-wide: the test holds the card crate's lock file for
//! its whole run, starts `pcscd -f` itself and stops it by PID. It fails (never skips)
//! when pcscd or vpcd is missing, or when another pcscd is running.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking, with the message"
)]

mod common;

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::storage::{PATIENT, StorageSetup, enroll_card, eventually, free_port};
use common::{GROUP, Ward, heart_rate, post};
use wardseal_card::virtual_card::{VPCD_PORT, VirtualCard};
use wardseal_card::watcher::CardWatcher;
use wardseal_collector::daemon::{Daemon, open_cards};
use wardseal_core::reading::Timestamp;

/// The card crate's tests take the same lock: one pcscd on the machine at a time.
const LOCK_FILE: &str = "/tmp/wardseal-pcsc-tests.lock";
const READER: &str = "Virtual PCD 00 00";
const ATR: &[u8] = &[0x3b, 0x80, 0x80, 0x01, 0x01];
const LIMIT: Duration = Duration::from_secs(60);

struct Pcscd {
    child: Child,
    _lock: File,
}

impl Pcscd {
    fn start() -> Self {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .unwrap();
        lock.lock().unwrap();
        assert!(
            pcsc::Context::establish(pcsc::Scope::User).is_err(),
            "a pcscd that this test did not start is running; stop it first"
        );
        let child = Command::new("pcscd")
            .args(["--foreground", "--error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("pcscd must be installed (Debian packages `pcscd` and `vsmartcard-vpcd`)");
        let started = Instant::now();
        while !CardWatcher::readers().is_ok_and(|readers| readers.iter().any(|r| r == READER)) {
            assert!(
                started.elapsed() < LIMIT,
                "pcscd did not show {READER:?}; is vsmartcard-vpcd installed?"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, _lock: lock }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        // SIGTERM by PID, so pcscd removes its socket.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn readings_wait_while_the_card_is_out_of_the_bedside_reader_and_are_delivered_once_it_is_back() {
    wardseal_softhsm::run_isolated_test(
        "readings_wait_while_the_card_is_out_of_the_bedside_reader_and_are_delivered_once_it_is_back",
        |hsm| {
            let pcscd = Pcscd::start();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let storage_port = free_port();
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
                    let mut card = VirtualCard::new(&format!("127.0.0.1:{VPCD_PORT}"), ATR);

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
                        card.insert().unwrap();
                        let stored = eventually(LIMIT, || async {
                            setup.stored_leaves().contains_key(&leaf)
                        })
                        .await;
                        assert!(stored, "reading {sequence} never reached storage after the card came back");
                        assert_eq!(setup.stored_leaves().get(&leaf), Some(&1));
                        let drained = eventually(LIMIT, || async { daemon.spool().depth() == 0 }).await;
                        assert!(drained);
                        card.remove();
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
