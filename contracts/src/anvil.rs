//! Running anvil (Foundry's local node, from the pinned npm package
//! `@foundry-rs/anvil-linux-amd64`) for tests, benchmarks and demos.
//!
//! The binary is found at `$WARDSEAL_ANVIL`, else where `contracts/setup.sh` installs it
//! (`contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil`). A missing binary is
//! an error naming `contracts/setup.sh`, never a silent skip.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;

use crate::error::BackendError;

/// The environment variable that names the anvil binary.
pub const ANVIL_ENV: &str = "WARDSEAL_ANVIL";

/// The private keys of anvil's first four funded development accounts (from its
/// published default mnemonic `test test … junk`). Public knowledge: never use them on
/// a real network.
const DEV_KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/// How long anvil may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where anvil is: `$WARDSEAL_ANVIL`, else the npm package under `contracts/`.
pub fn anvil_path() -> PathBuf {
    match std::env::var_os(ANVIL_ENV) {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
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
    /// Load the chain from this file at start and write it back on exit (`--state`).
    pub state: Option<PathBuf>,
}

/// A running anvil on a loopback port; stopped when dropped.
#[derive(Debug)]
pub struct AnvilNode {
    binary: PathBuf,
    options: AnvilOptions,
    port: u16,
    child: Option<Child>,
}

impl AnvilNode {
    /// Starts anvil on a free loopback port.
    pub fn spawn(options: AnvilOptions) -> Result<Self, BackendError> {
        let binary = anvil_path();
        if !binary.is_file() {
            return Err(BackendError::AnvilMissing(binary));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| BackendError::AnvilStart(format!("no free loopback port: {e}")))?
            .port();
        let mut node = Self {
            binary,
            options,
            port,
            child: None,
        };
        node.start()?;
        Ok(node)
    }

    fn start(&mut self) -> Result<(), BackendError> {
        let mut command = Command::new(&self.binary);
        command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--chain-id", "31337", "--accounts", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(seconds) = self.options.block_time {
            command.args(["--block-time", &seconds.to_string()]);
        }
        if let Some(state) = &self.options.state {
            command.arg("--state").arg(state);
            command.args(["--state-interval", "1"]);
        }
        let mut child = command
            .spawn()
            .map_err(|e| BackendError::AnvilStart(format!("{}: {e}", self.binary.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BackendError::AnvilStart("no stdout".into()))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && line.contains("Listening on") {
                    sent = ready_tx.send(()).is_ok();
                }
            }
        });
        self.child = Some(child);
        ready_rx.recv_timeout(START_TIMEOUT).map_err(|_| {
            BackendError::AnvilStart(format!("not listening on port {} within 30 s", self.port))
        })
    }

    /// The node's JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops anvil the way an operator does (SIGTERM), so `--state` is written, and waits.
    pub fn stop(&mut self) -> Result<(), BackendError> {
        if let Some(mut child) = self.child.take() {
            let stopped = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .map_err(|e| BackendError::AnvilStart(format!("cannot run kill: {e}")))?;
            if !stopped.success() {
                let _ = child.kill();
            }
            child
                .wait()
                .map_err(|e| BackendError::AnvilStart(format!("waiting for anvil: {e}")))?;
        }
        Ok(())
    }

    /// Starts anvil again on the same port with the same options (and state file).
    pub fn restart(&mut self) -> Result<(), BackendError> {
        self.stop()?;
        self.start()
    }
}

impl Drop for AnvilNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
