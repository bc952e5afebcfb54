//! Where the contracts run: the [`Backend`] trait and its two implementations.
//!
//! - [`EmbeddedBackend`]: revm in this process, running the same bytecode, with the
//!   blocks, receipts and event logs kept by this crate and persisted to disk. The default
//!   for a single machine.
//! - [`RpcBackend`]: any Ethereum JSON-RPC node (Hyperledger Besu QBFT in a hospital
//!   consortium, anvil in tests) through an alloy provider and a local signer.
//!
//! The trait is deliberately small (send, call, logs, head): everything that knows the
//! contracts is written once, in [`crate::Ledger`], over any backend. [`AnyBackend`]
//! picks one at run time.

use std::future::Future;

use alloy::primitives::{Address, B256, Bytes};
use alloy::signers::local::PrivateKeySigner;

use crate::error::Error;
use crate::model::TxOutcome;

pub mod any;
pub mod embedded;
pub mod rpc;

pub use any::AnyBackend;
pub use embedded::{EmbeddedBackend, EmbeddedChain};
pub use rpc::RpcBackend;

/// One event log with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The block it is in.
    pub block: u64,
    /// Its index in the block.
    pub log_index: u64,
    /// The transaction that emitted it.
    pub tx_hash: B256,
    /// The emitting contract.
    pub address: Address,
    /// Its topics (the first is the event's signature hash).
    pub topics: Vec<B256>,
    /// Its data.
    pub data: Bytes,
}

/// A mined, successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTx {
    /// Hash, block and gas.
    pub outcome: TxOutcome,
    /// The created contract, for a deployment.
    pub created: Option<Address>,
    /// The logs it emitted.
    pub logs: Vec<LogEntry>,
}

/// A transaction to send: to a contract, or a deployment when `to` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRequest {
    /// The contract called; `None` deploys `input` as creation code.
    pub to: Option<Address>,
    /// The calldata (or creation code with constructor arguments).
    pub input: Bytes,
}

/// A chain the ledger can use. A reverted transaction or call comes back as
/// [`Error::Contract`] with [`crate::ContractError::Other`] holding the revert data,
/// which the ledger decodes; a reverted transaction is not mined.
pub trait Backend: Clone + Send + Sync + 'static {
    /// The account transactions are sent from.
    fn account(&self) -> Address;

    /// The same chain, sending from `signer`'s account.
    fn with_signer(&self, signer: PrivateKeySigner) -> Self;

    /// Sends a transaction and waits until it is mined.
    fn send(&self, tx: TxRequest) -> impl Future<Output = Result<SentTx, Error>> + Send;

    /// Sends transactions back to back without waiting for each to be mined, then waits
    /// for all (one block can hold many). Stops at the first refused one.
    fn send_many(
        &self,
        txs: Vec<TxRequest>,
    ) -> impl Future<Output = Result<Vec<SentTx>, Error>> + Send;

    /// Runs a read-only call against the latest block.
    fn call(&self, to: Address, input: Bytes) -> impl Future<Output = Result<Bytes, Error>> + Send;

    /// The latest block number.
    fn head(&self) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The logs of `addresses` in blocks `from..=to`, ordered by block and log index.
    fn logs(
        &self,
        addresses: &[Address],
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<LogEntry>, Error>> + Send;
}
