//! A bedside PC/SC reader for the fault suite: a real `pcscd` with vsmartcard's vpcd
//! reader ("Virtual PCD 00 00") and wardseal-card's [`VirtualCard`] in it, standing for
//! the patient's card being at the bedside or not.
//!
//! pcscd's socket and vpcd's port are machine-wide, so one pcscd at a time: [`Pcscd`]
//! holds the lock file the card crate's and the collector's PC/SC tests hold
//! ([`LOCK_FILE`]) for its whole life, refuses to start when a pcscd it did not start is
//! running, and stops its pcscd by PID (SIGTERM, so pcscd removes its socket). A test
//! that needs pcscd fails (never skips) when pcscd or vpcd is missing.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wardseal_card::virtual_card::{VPCD_PORT, VirtualCard};
use wardseal_card::watcher::CardWatcher;

/// The lock file every wardseal test that runs pcscd holds while it does.
pub const LOCK_FILE: &str = "/tmp/wardseal-pcsc-tests.lock";
/// vpcd's first reader, as pcscd names it.
pub const READER: &str = "Virtual PCD 00 00";
/// The virtual card's answer-to-reset (any valid ATR: presence is all that counts).
const ATR: &[u8] = &[0x3b, 0x80, 0x80, 0x01, 0x01];
/// How long pcscd may take to show the reader, and a card change to show.
const LIMIT: Duration = Duration::from_secs(30);

/// What went wrong with pcscd or the virtual card.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lock file could not be taken.
    #[error("cannot take the PC/SC test lock {LOCK_FILE}: {0}")]
    Lock(#[source] std::io::Error),
    /// Another pcscd runs (a system one, or another test's that ignores the lock).
    #[error("a pcscd that this test did not start is running; stop it first")]
    AlreadyRunning,
    /// pcscd could not be started.
    #[error("cannot start pcscd (Debian packages `pcscd` and `vsmartcard-vpcd` are needed): {0}")]
    Start(#[source] std::io::Error),
    /// The reader or a card change did not show in time.
    #[error("{0} did not happen within {LIMIT:?}; is vsmartcard-vpcd installed?")]
    Timeout(String),
    /// The virtual card could not talk to vpcd.
    #[error("the virtual card: {0}")]
    Card(#[from] wardseal_card::Error),
}

/// A pcscd of this test's own with the vpcd reader, and a virtual card for it.
#[derive(Debug)]
pub struct Pcscd {
    child: Child,
    card: VirtualCard,
    // Released last (fields drop in order): after pcscd has stopped.
    _lock: File,
}

impl Pcscd {
    /// Takes the lock (waiting for other PC/SC tests to finish), starts `pcscd
    /// --foreground` and waits until it shows [`READER`]. The card is out.
    pub fn start() -> Result<Self, Error> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .map_err(Error::Lock)?;
        lock.lock().map_err(Error::Lock)?;
        if CardWatcher::readers().is_ok() {
            return Err(Error::AlreadyRunning);
        }
        let child = Command::new("pcscd")
            .args(["--foreground", "--error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(Error::Start)?;
        let pcscd = Self {
            child,
            card: VirtualCard::new(&format!("127.0.0.1:{VPCD_PORT}"), ATR),
            _lock: lock,
        };
        pcscd.wait_for(&format!("pcscd showing {READER:?}"), |readers| {
            readers.iter().any(|r| r.reader == READER)
        })?;
        Ok(pcscd)
    }

    /// Puts the card in the reader and waits until pcscd sees it.
    pub fn insert(&mut self) -> Result<(), Error> {
        self.card.insert()?;
        self.wait_for("the card showing in the reader", |readers| {
            readers
                .iter()
                .any(|r| r.reader == READER && r.atr.is_some())
        })
    }

    /// Takes the card out of the reader and waits until pcscd sees it gone.
    pub fn remove(&mut self) -> Result<(), Error> {
        self.card.remove();
        self.wait_for("the card gone from the reader", |readers| {
            readers
                .iter()
                .any(|r| r.reader == READER && r.atr.is_none())
        })
    }

    fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[wardseal_card::watcher::ReaderStatus]) -> bool,
    ) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if CardWatcher::reader_status().is_ok_and(|readers| done(&readers)) {
                return Ok(());
            }
            if started.elapsed() >= LIMIT {
                return Err(Error::Timeout(what.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.card.remove();
        // SIGTERM by PID, so pcscd removes its socket.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
