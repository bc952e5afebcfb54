//! anvil (Foundry's local node, from the pinned npm package `@foundry-rs/anvil-linux-amd64`)
//! as a child [`Process`] on a free loopback port: for the JSON-RPC variant of every
//! suite, the benchmarks on 5 s blocks, and the fault suite, which kills it.
//!
//! The binary is found at `$WARDSEAL_ANVIL`, else where `contracts/setup.sh` installs it
//! (`contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`). A missing binary is
//! an error naming `contracts/setup.sh`, never a silent skip.
//!
//! With a state file (`--state FILE --state-interval 1`) a restart, after SIGKILL too,
//! loads the chain anvil had dumped, up to a second before it died. That second matters:
//! a transaction anvil mined and answered in the last second before a SIGKILL is gone
//! after the restart, although its sender saw a receipt. A real node has the same window
//! between answering and persisting (smaller, not zero), and nothing in wardseal re-checks
//! an anchor after the node answered. [`Anvil::kill9_when_quiet`] therefore kills anvil
//! only after no block was mined for longer than the dump interval, so a test exercises
//! "the node died and came back with what it had persisted", not "the node lost
//! acknowledged blocks".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::signers::local::PrivateKeySigner;
use wardseal_contracts::Backend as _;
use wardseal_contracts::{AnyBackend, RpcBackend};

use crate::Error;
use crate::process::{Process, Signal};

/// The environment variable that names the anvil binary.
pub const ANVIL_ENV: &str = "WARDSEAL_ANVIL";
/// The chain id anvil runs with.
pub const CHAIN_ID: u64 = 31337;
/// How long anvil may take to listen, or to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// anvil dumps its state this often (seconds) when it has a state file.
const STATE_INTERVAL_SECS: u64 = 1;

/// The private keys of anvil's first four funded development accounts (from its
/// published default mnemonic `test test … junk`). Public knowledge: never use them on
/// a real network.
const DEV_KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// Where anvil is: `$WARDSEAL_ANVIL`, else the npm package under `contracts/`.
pub fn anvil_path() -> PathBuf {
    match std::env::var_os(ANVIL_ENV) {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
    }
}

/// The signer of anvil development account `index` (0 to 3), funded at start.
pub fn dev_signer(index: usize) -> Option<PrivateKeySigner> {
    DEV_KEYS.get(index)?.parse().ok()
}

/// How to start anvil.
#[derive(Debug, Clone, Default)]
pub struct AnvilOptions {
    /// Mine a block every this many seconds; `None`: a block per transaction.
    pub block_time: Option<u64>,
    /// Load the chain from this file at start and dump it there every second and on
    /// exit (`--state`).
    pub state: Option<PathBuf>,
    /// Where anvil's output goes (appended across restarts); `None`: a file in a
    /// temporary directory the [`Anvil`] owns.
    pub log: Option<PathBuf>,
}

/// A running anvil on a loopback port; killed (by PID) when dropped.
#[derive(Debug)]
pub struct Anvil {
    process: Process,
    port: u16,
    state: Option<PathBuf>,
    // Holds the log when the options named none; dropped after the process.
    _log_dir: Option<tempfile::TempDir>,
}

impl Anvil {
    /// Starts anvil on a free loopback port and waits until it listens.
    pub async fn start(options: AnvilOptions) -> Result<Self, Error> {
        let binary = anvil_path();
        if !binary.is_file() {
            return Err(Error::Missing {
                what: "anvil",
                path: binary,
                fix: format!("run contracts/setup.sh or set {ANVIL_ENV} to an anvil binary"),
            });
        }
        let (log, log_dir) = match options.log {
            Some(log) => (log, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("wardseal-anvil-")
                    .tempdir()
                    .map_err(|e| Error::io("create", "a temporary directory for anvil", e))?;
                (dir.path().join("anvil.log"), Some(dir))
            }
        };
        let port = crate::free_port()?;
        let mut args = vec![
            "--host".to_owned(),
            "127.0.0.1".to_owned(),
            "--port".to_owned(),
            port.to_string(),
            "--chain-id".to_owned(),
            CHAIN_ID.to_string(),
            "--accounts".to_owned(),
            "4".to_owned(),
        ];
        if let Some(seconds) = options.block_time {
            args.extend(["--block-time".to_owned(), seconds.to_string()]);
        }
        if let Some(state) = &options.state {
            args.extend([
                "--state".to_owned(),
                state.display().to_string(),
                "--state-interval".to_owned(),
                STATE_INTERVAL_SECS.to_string(),
            ]);
        }
        let mut anvil = Self {
            process: Process::new("anvil", binary, log).args(args),
            port,
            state: options.state,
            _log_dir: log_dir,
        };
        anvil.start_again().await?;
        Ok(anvil)
    }

    /// Starts anvil with its state in `dir/anvil-state.json` and its log in
    /// `dir/anvil.log` (what the fault suite kills and restarts).
    pub async fn start_in(dir: &Path) -> Result<Self, Error> {
        Self::start(AnvilOptions {
            block_time: None,
            state: Some(dir.join("anvil-state.json")),
            log: Some(dir.join("anvil.log")),
        })
        .await
    }

    /// The JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The state file, when it has one.
    pub fn state_file(&self) -> Option<&Path> {
        self.state.as_deref()
    }

    /// The process (log, PID).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// A JSON-RPC backend on this node as development account `index` (0 to 3).
    pub fn backend(&self, index: usize) -> Result<RpcBackend, Error> {
        let signer = dev_signer(index).ok_or_else(|| Error::Failed {
            what: format!("take anvil development account {index}"),
            reason: "there are four (0 to 3)".into(),
        })?;
        RpcBackend::connect(&self.url(), signer).map_err(|e| Error::Failed {
            what: format!("connect to {}", self.url()),
            reason: e.to_string(),
        })
    }

    /// Writes the hex private key of development account `index` (funded at start) to
    /// `path` (0600), for a ledger opened from a key file.
    pub fn write_dev_key(index: usize, path: &Path) -> Result<(), Error> {
        let signer = dev_signer(index).ok_or_else(|| Error::Failed {
            what: format!("take anvil development account {index}"),
            reason: "there are four (0 to 3)".into(),
        })?;
        wardseal_pki::key::write_private_file(path, hex::encode(signer.to_bytes()).as_bytes())?;
        Ok(())
    }

    /// Starts anvil again (same port and options, loading the state file) and waits
    /// until it listens.
    pub async fn start_again(&mut self) -> Result<(), Error> {
        self.process.start()?;
        self.process.wait_listening(self.port, START_TIMEOUT).await
    }

    /// Stops anvil the way an operator does (SIGTERM), so the state file is written,
    /// and waits for it to exit.
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.process.stop(Signal::Term, START_TIMEOUT).await?;
        Ok(())
    }

    /// [`Anvil::stop`] (when it runs), then [`Anvil::start_again`].
    pub async fn restart(&mut self) -> Result<(), Error> {
        if self.process.is_running() {
            self.stop().await?;
        }
        self.start_again().await
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
        // Development account 3 sends nothing: a read-only view.
        let backend: AnyBackend = self.backend(3)?.into();
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
}
