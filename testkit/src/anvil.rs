//! anvil as a ledger node that can be killed: a child [`Process`] on a fixed loopback
//! port with `--state FILE --state-interval 1`, so a restart (after SIGKILL too) loads
//! the chain it had dumped, up to a second before it died.
//!
//! That second matters: a transaction anvil mined and answered in the last second before
//! a SIGKILL is gone after the restart, although its sender saw a receipt. A real node
//! has the same window between answering and persisting (smaller, not zero), and nothing
//! in wardseal re-checks an anchor after the node answered. [`Anvil::kill9_when_quiet`]
//! therefore kills anvil only after no block was mined for longer than the dump interval,
//! so the test exercises "the node died and came back with what it had persisted", not
//! "the node lost acknowledged blocks" (which would fail the anchoring check by design).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wardseal_contracts::Backend as _;
use wardseal_contracts::{AnyBackend, RpcBackend};

use crate::procs::{Error, Process};

/// How long anvil may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// anvil dumps its state this often (seconds).
const STATE_INTERVAL_SECS: u64 = 1;

/// A running anvil with a state file.
#[derive(Debug)]
pub struct Anvil {
    process: Process,
    port: u16,
    state: PathBuf,
}

impl Anvil {
    /// Starts anvil (from `$WARDSEAL_ANVIL` or `contracts/setup.sh`'s install) on a free
    /// loopback port, its state in `dir/anvil-state.json` and its log in
    /// `dir/anvil.log`.
    pub async fn start(dir: &Path) -> Result<Self, Error> {
        let binary = wardseal_contracts::anvil::anvil_path();
        if !binary.is_file() {
            return Err(Error::Io {
                action: "find anvil at",
                what: binary.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "run contracts/setup.sh or set {}",
                        wardseal_contracts::anvil::ANVIL_ENV
                    ),
                ),
            });
        }
        let port = wardseal_sim::ward::free_port().map_err(|e| Error::Failed {
            what: "find a free port for anvil".into(),
            reason: e.to_string(),
        })?;
        let state = dir.join("anvil-state.json");
        let process = Process::new("anvil", binary, dir.join("anvil.log")).args([
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--chain-id".to_owned(),
            "31337".to_owned(),
            "--accounts".to_owned(),
            "4".to_owned(),
            "--state".to_owned(),
            state.display().to_string(),
            "--state-interval".to_owned(),
            STATE_INTERVAL_SECS.to_string(),
        ]);
        let mut anvil = Self {
            process,
            port,
            state,
        };
        anvil.start_again().await?;
        Ok(anvil)
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The state file.
    pub fn state_file(&self) -> &Path {
        &self.state
    }

    /// The process (log, PID).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Writes the hex private key of development account `index` (funded at start) to
    /// `path` (0600), for `LedgerChoice::Rpc`.
    pub fn write_dev_key(index: usize, path: &Path) -> Result<(), Error> {
        let signer = wardseal_contracts::anvil::dev_signer(index).ok_or_else(|| Error::Failed {
            what: format!("take anvil development account {index}"),
            reason: "there are four (0 to 3)".into(),
        })?;
        wardseal_pki::key::write_private_file(path, hex::encode(signer.to_bytes()).as_bytes())
            .map_err(|e| Error::Failed {
                what: format!("write {}", path.display()),
                reason: e.to_string(),
            })
    }

    /// Starts anvil again (same port, loading the state file) and waits until it listens.
    pub async fn start_again(&mut self) -> Result<(), Error> {
        self.process.start()?;
        self.process.wait_listening(self.port, START_TIMEOUT).await
    }

    /// Kills anvil with SIGKILL.
    pub fn kill9(&mut self) -> Result<(), Error> {
        self.process.kill9()
    }

    /// Waits (at most `timeout`) until no block was mined for more than twice the state
    /// dump interval, then kills anvil with SIGKILL at once; returns the last block it
    /// had. See the module documentation for why.
    pub async fn kill9_when_quiet(&mut self, timeout: Duration) -> Result<u64, Error> {
        let quiet = Duration::from_secs(2 * STATE_INTERVAL_SECS) + Duration::from_millis(300);
        let backend = self.observer()?;
        let deadline = Instant::now() + timeout;
        let mut last = (u64::MAX, Instant::now());
        loop {
            let head = backend.head().await.map_err(|e| Error::Failed {
                what: "read anvil's head block".into(),
                reason: e.to_string(),
            })?;
            if head != last.0 {
                last = (head, Instant::now());
            } else if last.1.elapsed() >= quiet {
                self.process.kill9()?;
                return Ok(head);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    name: "anvil".into(),
                    what: format!("{} s without a new block", quiet.as_secs_f32()),
                    seconds: timeout.as_secs(),
                    log: self.process.log().to_owned(),
                    tail: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A read-only view of the node (development account 3, which sends nothing).
    fn observer(&self) -> Result<AnyBackend, Error> {
        let signer = wardseal_contracts::anvil::dev_signer(3).ok_or_else(|| Error::Failed {
            what: "take anvil development account 3".into(),
            reason: "no such account".into(),
        })?;
        let backend = RpcBackend::connect(&self.url(), signer).map_err(|e| Error::Failed {
            what: format!("connect to {}", self.url()),
            reason: e.to_string(),
        })?;
        Ok(backend.into())
    }
}
