//! Test fixtures: the same suite on the embedded chain and on a real anvil.

#![allow(dead_code, reason = "each test file uses a different part")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test fixtures: a failure here is a failing test"
)]

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use wardseal_contracts::{EmbeddedBackend, EmbeddedChain, Ledger, RpcBackend};
use wardseal_testkit::anvil::{AnvilOptions, dev_signer};

/// The admin (anvil dev account 0) and three more accounts (1 to 3), funded on anvil.
pub(crate) fn signer(index: usize) -> PrivateKeySigner {
    dev_signer(index).expect("anvil dev key")
}

pub(crate) fn address(index: usize) -> Address {
    signer(index).address()
}

/// An embedded chain in a temporary directory, with a freshly deployed suite.
pub(crate) struct Embedded {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ledger: Ledger<EmbeddedBackend>,
}

pub(crate) async fn embedded() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let chain = EmbeddedChain::open(dir.path()).unwrap();
    let ledger = Ledger::deploy(chain.backend(address(0))).await.unwrap();
    Embedded { dir, ledger }
}

/// anvil on a free loopback port, with a freshly deployed suite. Fails (does not skip)
/// when anvil is missing: run contracts/setup.sh.
pub(crate) struct Anvil {
    pub(crate) node: wardseal_testkit::Anvil,
    pub(crate) ledger: Ledger<RpcBackend>,
    pub(crate) state_dir: tempfile::TempDir,
}

pub(crate) async fn anvil() -> Anvil {
    anvil_with(None).await
}

pub(crate) async fn anvil_with(block_time: Option<u64>) -> Anvil {
    let state_dir = tempfile::tempdir().unwrap();
    let node = wardseal_testkit::Anvil::start(AnvilOptions {
        block_time,
        state: Some(state_dir.path().join("anvil-state.json")),
        log: None,
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let backend = RpcBackend::connect(&node.url(), signer(0)).unwrap();
    let ledger = Ledger::deploy(backend).await.unwrap();
    Anvil {
        node,
        ledger,
        state_dir,
    }
}

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
