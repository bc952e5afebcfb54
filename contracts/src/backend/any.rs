//! [`AnyBackend`]: either backend, chosen at run time (from a configuration file or a
//! command line), so `Ledger<AnyBackend>` is one concrete type for the whole program.

use alloy::primitives::{Address, Bytes};
use alloy::signers::local::PrivateKeySigner;

use super::{Backend, EmbeddedBackend, LogEntry, RpcBackend, SentTx, TxRequest};
use crate::error::Error;

/// The embedded chain or a JSON-RPC node.
#[derive(Debug, Clone)]
pub enum AnyBackend {
    /// revm in this process.
    Embedded(EmbeddedBackend),
    /// A JSON-RPC node.
    Rpc(RpcBackend),
}

impl From<EmbeddedBackend> for AnyBackend {
    fn from(backend: EmbeddedBackend) -> Self {
        AnyBackend::Embedded(backend)
    }
}

impl From<RpcBackend> for AnyBackend {
    fn from(backend: RpcBackend) -> Self {
        AnyBackend::Rpc(backend)
    }
}

impl Backend for AnyBackend {
    fn account(&self) -> Address {
        match self {
            AnyBackend::Embedded(b) => b.account(),
            AnyBackend::Rpc(b) => b.account(),
        }
    }

    fn with_signer(&self, signer: PrivateKeySigner) -> Self {
        match self {
            AnyBackend::Embedded(b) => AnyBackend::Embedded(b.with_signer(signer)),
            AnyBackend::Rpc(b) => AnyBackend::Rpc(b.with_signer(signer)),
        }
    }

    async fn send(&self, tx: TxRequest) -> Result<SentTx, Error> {
        match self {
            AnyBackend::Embedded(b) => b.send(tx).await,
            AnyBackend::Rpc(b) => b.send(tx).await,
        }
    }

    async fn send_many(&self, txs: Vec<TxRequest>) -> Result<Vec<SentTx>, Error> {
        match self {
            AnyBackend::Embedded(b) => b.send_many(txs).await,
            AnyBackend::Rpc(b) => b.send_many(txs).await,
        }
    }

    async fn call(&self, to: Address, input: Bytes) -> Result<Bytes, Error> {
        match self {
            AnyBackend::Embedded(b) => b.call(to, input).await,
            AnyBackend::Rpc(b) => b.call(to, input).await,
        }
    }

    async fn head(&self) -> Result<u64, Error> {
        match self {
            AnyBackend::Embedded(b) => b.head().await,
            AnyBackend::Rpc(b) => b.head().await,
        }
    }

    async fn logs(
        &self,
        addresses: &[Address],
        from: u64,
        to: u64,
    ) -> Result<Vec<LogEntry>, Error> {
        match self {
            AnyBackend::Embedded(b) => b.logs(addresses, from, to).await,
            AnyBackend::Rpc(b) => b.logs(addresses, from, to).await,
        }
    }
}
