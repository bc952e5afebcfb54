//! The JSON-RPC backend: any Ethereum node through an alloy HTTP provider with a local
//! signer (Hyperledger Besu QBFT in production, anvil in tests).
//!
//! HTTP keeps no session: after the node restarts, the next request simply connects
//! again, so "reconnecting" is retrying. A request that fails to reach the node comes
//! back as [`BackendError::Unreachable`]; [`crate::follow::EventFollower`] retries those
//! and resumes from the last event it delivered. QBFT blocks are final when mined
//! (no reorgs), so a log seen once stays.

use std::time::Duration;

use alloy::network::{EthereumWallet, ReceiptResponse, TransactionBuilder};
use alloy::primitives::{Address, Bytes};
use alloy::providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use alloy::transports::{RpcError, TransportErrorKind};

use super::{Backend, LogEntry, SentTx, TxRequest};
use crate::error::{BackendError, ContractError, Error};
use crate::model::TxOutcome;

/// How long to wait for a transaction to be mined (QBFT and anvil mine in seconds).
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// A [`Backend`] on a JSON-RPC node.
#[derive(Clone)]
pub struct RpcBackend {
    url: Url,
    provider: DynProvider,
    account: Address,
}

impl std::fmt::Debug for RpcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcBackend")
            .field("url", &self.url.as_str())
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl RpcBackend {
    /// A backend on the node at `url` (e.g. `http://127.0.0.1:8545`), signing with
    /// `signer`. Nothing is sent until the first request.
    pub fn connect(url: &str, signer: PrivateKeySigner) -> Result<Self, Error> {
        Ok(Self::with_url(parse_url(url)?, signer))
    }

    /// A backend on the node at an already parsed `url`, signing with `signer`.
    pub fn with_url(url: Url, signer: PrivateKeySigner) -> Self {
        let account = signer.address();
        // The nonce is asked of the node for every transaction (pending count): a cached
        // nonce would be consumed by a transaction that estimation refused (a revert
        // never sent), leaving a gap that stalls every later transaction.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_simple_nonce_management()
            .with_gas_estimation()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_http(url.clone())
            .erased();
        Self {
            url,
            provider,
            account,
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn submit(
        &self,
        tx: TxRequest,
    ) -> Result<PendingTransactionBuilder<alloy::network::Ethereum>, Error> {
        let request = TransactionRequest::default().with_from(self.account);
        let request = match tx.to {
            Some(to) => request.with_to(to).with_input(tx.input),
            None => request.with_deploy_code(tx.input),
        };
        self.provider
            .send_transaction(request)
            .await
            .map_err(rpc_error)
    }

    async fn wait(
        &self,
        pending: PendingTransactionBuilder<alloy::network::Ethereum>,
    ) -> Result<SentTx, Error> {
        let hash = *pending.tx_hash();
        let receipt = pending
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await
            .map_err(|e| BackendError::Unreachable(format!("waiting for {hash}: {e}")))?;
        if !receipt.status() {
            return Err(BackendError::Failed(hash).into());
        }
        let block = receipt.block_number().ok_or(Error::UnexpectedAnswer {
            what: "a receipt without a block",
        })?;
        let logs = receipt
            .inner
            .logs()
            .iter()
            .map(convert_log)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SentTx {
            outcome: TxOutcome {
                tx_hash: hash,
                block,
                gas_used: receipt.gas_used(),
            },
            created: receipt.contract_address(),
            logs,
        })
    }
}

fn convert_log(log: &alloy::rpc::types::Log) -> Result<LogEntry, Error> {
    let missing = Error::UnexpectedAnswer {
        what: "a log without its block, index or transaction",
    };
    Ok(LogEntry {
        block: log.block_number.ok_or(missing)?,
        log_index: log.log_index.ok_or(Error::UnexpectedAnswer {
            what: "a log without its index",
        })?,
        tx_hash: log.transaction_hash.ok_or(Error::UnexpectedAnswer {
            what: "a log without its transaction",
        })?,
        address: log.address(),
        topics: log.topics().to_vec(),
        data: log.data().data.clone(),
    })
}

/// Sorts an alloy RPC error into a revert (decoded by the ledger), an unreachable node
/// or another refusal.
fn rpc_error(error: RpcError<TransportErrorKind>) -> Error {
    match &error {
        RpcError::ErrorResp(payload) => match payload.as_revert_data() {
            Some(data) => ContractError::Other(data).into(),
            None => BackendError::Node(payload.to_string()).into(),
        },
        RpcError::Transport(_) | RpcError::NullResp => {
            BackendError::Unreachable(error.to_string()).into()
        }
        _ => BackendError::Node(error.to_string()).into(),
    }
}

/// Parses a node URL; a bad one is reported as the node being unreachable, since no
/// request could ever reach it.
pub(crate) fn parse_url(url: &str) -> Result<Url, Error> {
    url.parse()
        .map_err(|e| BackendError::Unreachable(format!("`{url}` is not a URL: {e}")).into())
}

impl Backend for RpcBackend {
    fn account(&self) -> Address {
        self.account
    }

    fn with_signer(&self, signer: PrivateKeySigner) -> Self {
        Self::with_url(self.url.clone(), signer)
    }

    async fn send(&self, tx: TxRequest) -> Result<SentTx, Error> {
        let pending = self.submit(tx).await?;
        self.wait(pending).await
    }

    async fn send_many(&self, txs: Vec<TxRequest>) -> Result<Vec<SentTx>, Error> {
        let mut pending = Vec::with_capacity(txs.len());
        for tx in txs {
            pending.push(self.submit(tx).await?);
        }
        let mut sent = Vec::with_capacity(pending.len());
        for p in pending {
            sent.push(self.wait(p).await?);
        }
        Ok(sent)
    }

    async fn call(&self, to: Address, input: Bytes) -> Result<Bytes, Error> {
        let request = TransactionRequest::default()
            .with_from(self.account)
            .with_to(to)
            .with_input(input);
        self.provider.call(request).await.map_err(rpc_error)
    }

    async fn head(&self) -> Result<u64, Error> {
        self.provider.get_block_number().await.map_err(rpc_error)
    }

    async fn logs(
        &self,
        addresses: &[Address],
        from: u64,
        to: u64,
    ) -> Result<Vec<LogEntry>, Error> {
        let filter = Filter::new()
            .address(addresses.to_vec())
            .from_block(from)
            .to_block(to);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc_error)?;
        let mut entries = logs
            .iter()
            .map(convert_log)
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|l| (l.block, l.log_index));
        Ok(entries)
    }
}
