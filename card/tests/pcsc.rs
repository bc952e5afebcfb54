//! The card watcher against a real pcscd with vsmartcard's vpcd readers and our own
//! virtual card.
//!
//! pcscd and vpcd's ports are machine-wide: every test here holds the test kit's PC/SC
//! lock ([`Pcscd`]) for its whole run, has it start `pcscd -f` and stop it by PID. The tests fail (never skip)
//! when pcscd or vpcd is missing, or when another pcscd is already running.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use futures_core::Stream;
use wardseal_card::Error;
use wardseal_card::virtual_card::{VPCD_PORT, VirtualCard};
use wardseal_card::watcher::{CardEvent, CardWatcher};
use wardseal_testkit::pcsc::{Pcscd, READER, SECOND_READER};

/// A PIV-like ATR (YubiKey 5 NFC).
const ATR: &[u8] = &[
    0x3b, 0xfd, 0x13, 0x00, 0x00, 0x81, 0x31, 0xfe, 0x15, 0x80, 0x73, 0xc0, 0x21, 0xc0, 0x57, 0x59,
    0x75, 0x62, 0x69, 0x4b, 0x65, 0x79, 0x40,
];
/// How long to wait for something before calling the test hung (not a speed assertion:
/// latencies are printed, and measured by the report, not asserted).
const HANG: Duration = Duration::from_secs(20);

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
    // The machine-wide lock, and no pcscd running yet.
    let mut pcscd = Pcscd::lock().unwrap();

    // No daemon: a clear error, from both entry points.
    assert!(matches!(CardWatcher::start(), Err(Error::PcscUnavailable)));
    let error = CardWatcher::readers().unwrap_err();
    assert!(matches!(error, Error::PcscUnavailable), "{error:?}");
    assert!(error.to_string().contains("pcscd"), "{error}");

    pcscd.run().unwrap();
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
    assert_eq!(readers, [READER, SECOND_READER]);

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
