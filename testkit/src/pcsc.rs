//! A real `pcscd` with vsmartcard's vpcd readers ("Virtual PCD 00 00" and "… 00 01"), and
//! wardseal-card's [`VirtualCard`] in the first, standing for a patient's card at the
//! bedside or not.
//!
//! pcscd's socket and vpcd's ports are machine-wide, so one pcscd at a time: a [`Pcscd`]
//! holds the lock file [`LOCK_FILE`] for its whole life (every wardseal test that runs
//! pcscd takes it, so such tests wait for each other across test binaries), refuses to
//! start when a pcscd it did not start is running, and stops its pcscd by PID (SIGTERM,
//! so pcscd removes its socket). A test that needs pcscd fails (never skips) when pcscd
//! or vpcd is missing.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wardseal_card::virtual_card::{VPCD_PORT, VirtualCard};
use wardseal_card::watcher::{CardWatcher, ReaderStatus};

use crate::Error;

/// The lock file every wardseal test that runs pcscd holds while it does.
pub const LOCK_FILE: &str = "/tmp/wardseal-pcsc-tests.lock";
/// vpcd's first reader, as pcscd names it (the one [`Pcscd`]'s card goes into).
pub const READER: &str = "Virtual PCD 00 00";
/// vpcd's second reader.
pub const SECOND_READER: &str = "Virtual PCD 00 01";
/// The kit's virtual card's answer-to-reset (any valid ATR: presence is all that counts).
pub const ATR: &[u8] = &[0x3b, 0x80, 0x80, 0x01, 0x01];
/// How long pcscd may take to show the reader, and a card change to show.
const LIMIT: Duration = Duration::from_secs(30);

/// The machine-wide PC/SC lock, a pcscd of this test's own with the vpcd readers, and a
/// virtual card for [`READER`].
#[derive(Debug)]
pub struct Pcscd {
    child: Option<Child>,
    card: VirtualCard,
    // Released last (fields drop in order): after pcscd has stopped.
    _lock: File,
}

impl Pcscd {
    /// Takes the lock (waiting for other PC/SC tests to finish) and checks that no pcscd
    /// runs; starts nothing, so a test can check what happens without a daemon before
    /// [`Pcscd::run`].
    pub fn lock() -> Result<Self, Error> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .map_err(Error::PcscLock)?;
        lock.lock().map_err(Error::PcscLock)?;
        if pcsc::Context::establish(pcsc::Scope::User).is_ok() {
            return Err(Error::PcscAlreadyRunning);
        }
        Ok(Self {
            child: None,
            card: VirtualCard::new(&format!("127.0.0.1:{VPCD_PORT}"), ATR),
            _lock: lock,
        })
    }

    /// Takes the lock (see [`Pcscd::lock`]) and starts pcscd ([`Pcscd::run`]). The
    /// card is out.
    pub fn start() -> Result<Self, Error> {
        let mut pcscd = Self::lock()?;
        pcscd.run()?;
        Ok(pcscd)
    }

    /// Starts `pcscd --foreground` and waits until it shows [`READER`].
    pub fn run(&mut self) -> Result<(), Error> {
        if self.child.is_some() {
            return Err(Error::PcscAlreadyRunning);
        }
        let child = Command::new("pcscd")
            .args(["--foreground", "--error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::io(
                    "start",
                    "pcscd (Debian packages `pcscd` and `vsmartcard-vpcd` are needed)",
                    e,
                )
            })?;
        self.child = Some(child);
        self.wait_for(&format!("pcscd showing {READER:?}"), |readers| {
            readers.iter().any(|r| r.reader == READER)
        })
    }

    /// Stops the pcscd this started (SIGTERM by PID, so it removes its socket) and
    /// waits for it; the lock stays held.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Puts the kit's card ([`ATR`]) in [`READER`] and waits until pcscd sees it.
    pub fn insert(&mut self) -> Result<(), Error> {
        self.card.insert()?;
        self.wait_for("the card showing in the reader", |readers| {
            readers
                .iter()
                .any(|r| r.reader == READER && r.atr.is_some())
        })
    }

    /// Takes the card out of [`READER`] and waits until pcscd sees it gone.
    pub fn remove(&mut self) -> Result<(), Error> {
        self.card.remove();
        self.wait_for("the card gone from the reader", |readers| {
            readers
                .iter()
                .any(|r| r.reader == READER && r.atr.is_none())
        })
    }

    fn wait_for(&self, what: &str, done: impl Fn(&[ReaderStatus]) -> bool) -> Result<(), Error> {
        crate::wait_until(what, LIMIT, || {
            CardWatcher::reader_status().is_ok_and(|readers| done(&readers))
        })
        .map_err(|_| Error::NotInTime {
            what: what.to_owned(),
            seconds: LIMIT.as_secs(),
            hint: "; is vsmartcard-vpcd installed?",
        })
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        self.card.remove();
        self.stop();
    }
}
