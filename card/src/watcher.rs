//! [`CardWatcher`]: which readers exist and which cards are in them, as a tokio stream.
//!
//! A blocking thread waits in `SCardGetStatusChange` on every reader plus the PnP
//! notification pseudo-reader (`\\?PnP?\Notification`), which pcsc-lite signals when a
//! reader is plugged in or removed. Each change becomes a [`CardEvent`] sent to the stream.
//! [`CardWatcher::cancel`] (or dropping the watcher) calls `SCardCancel` from the caller's
//! thread, which ends the wait at once; the thread then exits and the stream ends. (A
//! cancel that arrives just before a wait starts is seen within half a second.)
//!
//! The first events describe the present: a `ReaderAdded` for each reader, then a
//! `CardInserted` for each card already in a reader.

use std::collections::HashMap;
use std::ffi::CString;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;

use pcsc::{Context, ReaderState, Scope, State};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::Error;

/// A change in the readers or the cards in them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardEvent {
    /// A reader appeared (or was there when watching started).
    ReaderAdded {
        /// The reader's name, as PC/SC gives it.
        reader: String,
    },
    /// A reader went away.
    ReaderRemoved {
        /// The reader's name.
        reader: String,
    },
    /// A card was inserted (or was in the reader when watching started).
    CardInserted {
        /// The reader's name.
        reader: String,
        /// The card's answer-to-reset.
        atr: Vec<u8>,
    },
    /// A card was removed.
    CardRemoved {
        /// The reader's name.
        reader: String,
    },
}

/// Watches PC/SC readers and cards; a `Stream` of `Result<CardEvent, Error>`.
///
/// The stream ends after [`CardWatcher::cancel`], or after an error (pcscd stopped).
pub struct CardWatcher {
    events: UnboundedReceiver<Result<CardEvent, Error>>,
    context: Context,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CardWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardWatcher")
            .field("cancelled", &self.stop.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn establish() -> Result<Context, Error> {
    Context::establish(Scope::User).map_err(|error| pcsc_error("SCardEstablishContext", error))
}

fn pcsc_error(operation: &'static str, error: pcsc::Error) -> Error {
    match error {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::CommError => {
            Error::PcscUnavailable
        }
        other => Error::Pcsc {
            operation,
            detail: other.to_string(),
        },
    }
}

fn reader_names(context: &Context) -> Result<Vec<CString>, Error> {
    match context.list_readers_owned() {
        Ok(readers) => Ok(readers),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(error) => Err(pcsc_error("SCardListReaders", error)),
    }
}

/// A reader and the card in it, at one moment ([`CardWatcher::reader_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderStatus {
    /// The reader's name, as PC/SC gives it.
    pub reader: String,
    /// The card's answer-to-reset, when a card is present.
    pub atr: Option<Vec<u8>>,
}

impl CardWatcher {
    /// Each reader present now, with the ATR of the card in it, if any. Fails with
    /// [`Error::PcscUnavailable`] when pcscd is not running.
    pub fn reader_status() -> Result<Vec<ReaderStatus>, Error> {
        let context = establish()?;
        let mut states: Vec<ReaderState> = reader_names(&context)?
            .into_iter()
            .map(|name| ReaderState::new(name, State::UNAWARE))
            .collect();
        if states.is_empty() {
            return Ok(Vec::new());
        }
        // Against UNAWARE every reader's state counts as a change: this returns at once.
        match context.get_status_change(std::time::Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(error) => return Err(pcsc_error("SCardGetStatusChange", error)),
        }
        Ok(states
            .iter()
            .map(|state| ReaderStatus {
                reader: state.name().to_string_lossy().into_owned(),
                atr: state
                    .event_state()
                    .contains(State::PRESENT)
                    .then(|| state.atr().to_vec()),
            })
            .collect())
    }

    /// The readers present now.
    pub fn readers() -> Result<Vec<String>, Error> {
        let context = establish()?;
        Ok(reader_names(&context)?
            .into_iter()
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    /// Starts watching. Fails with [`Error::PcscUnavailable`] when pcscd is not running.
    pub fn start() -> Result<Self, Error> {
        let context = establish()?;
        // Fail now, not in the stream, if the daemon cannot list readers.
        reader_names(&context)?;
        let (sender, events) = unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let context = context.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("wardseal-card-watcher".to_owned())
                .spawn(move || watch(&context, &stop, &sender))
                .map_err(|error| Error::Pcsc {
                    operation: "spawn the watcher thread",
                    detail: error.to_string(),
                })?
        };
        Ok(Self {
            events,
            context,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching: the blocked wait returns at once and the stream ends.
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Fails only if no wait is in progress, and then the flag stops the next one.
        let _ = self.context.cancel();
    }
}

impl Drop for CardWatcher {
    fn drop(&mut self) {
        self.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl futures_core::Stream for CardWatcher {
    type Item = Result<CardEvent, Error>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        context: &mut TaskContext<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(context)
    }
}

/// Longest a wait lasts before the thread looks at the stop flag again.
const CANCEL_BACKSTOP: std::time::Duration = std::time::Duration::from_millis(500);

/// What the thread remembers about a reader between waits.
struct Tracked {
    present: bool,
    event_count: u32,
}

/// The watcher thread: waits for changes and sends events until stopped or pcscd goes away.
fn watch(context: &Context, stop: &AtomicBool, events: &UnboundedSender<Result<CardEvent, Error>>) {
    let send = |event: CardEvent| events.send(Ok(event)).is_ok();
    let mut states = vec![ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
    let mut tracked: HashMap<CString, Tracked> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        // Follow the reader list: PnP told us it changed, or this is the first round.
        let names = match reader_names(context) {
            Ok(names) => names,
            Err(error) => {
                let _ = events.send(Err(error));
                return;
            }
        };
        let mut gone = Vec::new();
        states.retain(|state| {
            let name = state.name();
            let keep =
                name == pcsc::PNP_NOTIFICATION() || names.iter().any(|n| n.as_c_str() == name);
            if !keep {
                gone.push(name.to_owned());
            }
            keep
        });
        for name in gone {
            let reader = name.to_string_lossy().into_owned();
            if tracked.remove(&name).is_some_and(|t| t.present)
                && !send(CardEvent::CardRemoved {
                    reader: reader.clone(),
                })
            {
                return;
            }
            if !send(CardEvent::ReaderRemoved { reader }) {
                return;
            }
        }
        for name in names {
            if !tracked.contains_key(&name) {
                tracked.insert(
                    name.clone(),
                    Tracked {
                        present: false,
                        event_count: 0,
                    },
                );
                if !send(CardEvent::ReaderAdded {
                    reader: name.to_string_lossy().into_owned(),
                }) {
                    return;
                }
                states.push(ReaderState::new(name, State::UNAWARE));
            }
        }
        for state in &mut states {
            state.sync_current_state();
        }
        // SCardCancel only ends a wait in progress: a cancel that lands between the flag
        // check above and the wait is caught by this bound, not lost.
        match context.get_status_change(CANCEL_BACKSTOP, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Cancelled) => return,
            Err(pcsc::Error::Timeout | pcsc::Error::UnknownReader) => continue,
            Err(error) => {
                let _ = events.send(Err(pcsc_error("SCardGetStatusChange", error)));
                return;
            }
        }
        for state in &states {
            if state.name() == pcsc::PNP_NOTIFICATION() {
                continue;
            }
            let Some(track) = tracked.get_mut(state.name()) else {
                continue;
            };
            let event_state = state.event_state();
            if !event_state.contains(State::CHANGED)
                || event_state.intersects(State::UNKNOWN | State::IGNORE)
            {
                continue;
            }
            let reader = state.name().to_string_lossy().into_owned();
            let present = event_state.contains(State::PRESENT);
            // The event counter moves on every insertion and removal: a card pulled and put
            // back between two waits shows as present → present with a new count.
            let swapped = track.present && present && state.event_count() != track.event_count;
            let mut out = Vec::new();
            if track.present && (!present || swapped) {
                out.push(CardEvent::CardRemoved {
                    reader: reader.clone(),
                });
            }
            if present && (!track.present || swapped) {
                out.push(CardEvent::CardInserted {
                    reader,
                    atr: state.atr().to_vec(),
                });
            }
            track.present = present;
            track.event_count = state.event_count();
            for event in out {
                if !send(event) {
                    return;
                }
            }
        }
    }
}
