//! The card watcher against a real pcscd with vsmartcard's vpcd readers and our own
//! virtual card.
//!
//! pcscd and vpcd's ports are machine-wide: every test here holds one file lock for its
//! whole run, starts `pcscd -f` itself and stops it by PID. The tests fail (never skip)
//! when pcscd or vpcd is missing, or when another pcscd is already running.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_core::Stream;
use wardseal_card::Error;
use wardseal_card::virtual_card::{VPCD_PORT, VirtualCard};
use wardseal_card::watcher::{CardEvent, CardWatcher};

const LOCK_FILE: &str = "/tmp/wardseal-pcsc-tests.lock";
const READER: &str = "Virtual PCD 00 00";
/// A PIV-like ATR (YubiKey 5 NFC).
const ATR: &[u8] = &[
    0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40,
];
/// How long to wait for something before calling the test hung (not a speed assertion:
/// latencies are printed, and measured by the report, not asserted).
const HANG: Duration = Duration::from_secs(20);

/// Holds the machine-wide lock; owns the pcscd it started.
struct Pcscd {
    child: Option<Child>,
    _lock: File,
}

impl Pcscd {
    /// Takes the lock; checks no pcscd is running (so "not running" can be tested).
    fn lock() -> Self {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .unwrap();
        lock.lock().unwrap();
        assert!(
            pcsc::Context::establish(pcsc::Scope::User).is_err(),
            "a pcscd that these tests did not start is running; stop it first"
        );
        Self {
            child: None,
            _lock: lock,
        }
    }

    /// Starts `pcscd -f` and waits until it lists the vpcd reader.
    fn start(&mut self) {
        let child = Command::new("pcscd")
            .args(["--foreground", "--error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("pcscd must be installed (Debian packages `pcscd` and `vsmartcard-vpcd`)");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(readers) = CardWatcher::readers()
                && readers.iter().any(|r| r == READER)
            {
                return;
            }
            assert!(
                started.elapsed() < HANG,
                "pcscd did not show {READER:?}; is vsmartcard-vpcd installed?"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops our pcscd (SIGTERM by PID, so it removes its socket) and waits for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn next(watcher: &mut CardWatcher) -> Option<Result<CardEvent, Error>> {
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *watcher).poll_next(cx));
    tokio::time::timeout(HANG, next)
        .await
        .expect("the watcher reported nothing (hung)")
}

/// The next event about `READER`, skipping events about the other vpcd reader.
async fn next_for_reader(watcher: &mut CardWatcher) -> (CardEvent, Duration) {
    let started = Instant::now();
    loop {
        let event = next(watcher).await.expect("stream ended").unwrap();
        let reader = match &event {
            CardEvent::CardInserted { reader, .. }
            | CardEvent::CardRemoved { reader }
            | CardEvent::ReaderAdded { reader }
            | CardEvent::ReaderRemoved { reader } => reader.clone(),
            other => panic!("unexpected {other:?}"),
        };
        if reader == READER {
            return (event, started.elapsed());
        }
    }
}

#[tokio::test]
async fn watcher_reports_insert_remove_and_reinsert_with_the_atr() {
    let mut pcscd = Pcscd::lock();

    // No daemon: a clear error, from both entry points.
    assert!(matches!(CardWatcher::start(), Err(Error::PcscUnavailable)));
    let error = CardWatcher::readers().unwrap_err();
    assert!(matches!(error, Error::PcscUnavailable), "{error:?}");
    assert!(error.to_string().contains("pcscd"), "{error}");

    pcscd.start();
    let mut watcher = CardWatcher::start().unwrap();
    // First the readers that are there.
    let mut readers = Vec::new();
    while readers.len() < 2 {
        match next(&mut watcher).await.unwrap().unwrap() {
            CardEvent::ReaderAdded { reader } => readers.push(reader),
            other => panic!("expected the readers first, got {other:?}"),
        }
    }
    readers.sort();
    assert_eq!(readers, ["Virtual PCD 00 00", "Virtual PCD 00 01"]);

    let mut card = VirtualCard::new(&format!("127.0.0.1:{VPCD_PORT}"), ATR);
    for round in ["insert", "re-insert"] {
        card.insert().unwrap();
        let (event, latency) = next_for_reader(&mut watcher).await;
        eprintln!("{round}: reported after {latency:?}");
        assert_eq!(
            event,
            CardEvent::CardInserted {
                reader: READER.into(),
                atr: ATR.to_vec()
            }
        );

        card.remove();
        let (event, latency) = next_for_reader(&mut watcher).await;
        eprintln!("remove after {round}: reported after {latency:?}");
        assert_eq!(
            event,
            CardEvent::CardRemoved {
                reader: READER.into()
            }
        );
    }

    // A card already in the reader when watching starts is reported as inserted.
    card.insert().unwrap();
    let (event, _) = next_for_reader(&mut watcher).await;
    assert!(matches!(event, CardEvent::CardInserted { .. }));
    let mut second = CardWatcher::start().unwrap();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, CardEvent::CardInserted { .. }))
    {
        seen.push(next(&mut second).await.unwrap().unwrap());
    }
    assert!(
        seen.contains(&CardEvent::CardInserted {
            reader: READER.into(),
            atr: ATR.to_vec()
        }),
        "{seen:?}"
    );

    // Cancel ends the stream cleanly, at once, while the thread is blocked in the wait.
    second.cancel();
    assert!(next(&mut second).await.is_none());
    drop(second);

    // pcscd going away ends the stream with the clear error.
    pcscd.stop();
    match next(&mut watcher).await {
        Some(Err(Error::PcscUnavailable)) => {}
        other => panic!("expected PcscUnavailable, got {other:?}"),
    }
    assert!(next(&mut watcher).await.is_none());
}
