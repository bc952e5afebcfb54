//! The embedded chain: revm in this process, one transaction per block, persisted as an
//! append-only transaction log.
//!
//! revm executes transactions against a state; it has no blocks, receipts, log indexes
//! or filters, so this module keeps them. Durability is by event sourcing: every
//! successful transaction is appended to `chain.log` and `fsync`ed *before* its state is
//! committed and its receipt returned; on open, the log is replayed through the same EVM
//! (execution is deterministic: the block number and timestamp are in the record), which
//! rebuilds the state, the blocks and the event logs exactly. A process killed with
//! `kill -9` loses at most the transaction it had not yet acknowledged; a torn last
//! record (length or checksum wrong at the end of the file) is cut off on open. Damage
//! anywhere else is reported, never repaired silently.
//!
//! Record framing: `u32` little-endian payload length, keccak-256 of the payload, payload
//! = timestamp (`u64` BE) ‖ caller (20 bytes) ‖ 0 or 1 + callee (20 bytes) ‖ input.
//!
//! Reverted transactions are refused before they are written (as `eth_estimateGas`
//! refuses them on a node), so they leave no trace. Gas is priced at zero: there is no
//! ether in an embedded chain, only accounts.
//!
//! Replay time grows with the log (revm runs a wardseal transaction in tens of
//! microseconds, so a million anchors replay in well under a minute); a state snapshot
//! beside the log is the next step when that matters.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use revm::context::{BlockEnv, CfgEnv, Context, TxEnv};
use revm::context_interface::result::ExecutionResult;
use revm::database::{CacheDB, EmptyDB};
use revm::handler::{MainBuilder, MainContext, MainnetEvm};
use revm::{DatabaseCommit, ExecuteEvm, Journal};

use super::{Backend, LogEntry, SentTx, TxRequest};
use crate::error::{BackendError, ContractError, Error};
use crate::model::TxOutcome;

/// The chain id of an embedded chain (anvil's default, so signed data does not differ).
pub const CHAIN_ID: u64 = 31_337;
/// The gas limit of one embedded block (= one transaction).
const BLOCK_GAS_LIMIT: u64 = 30_000_000;
/// A transaction's gas limit (EIP-7825's cap, which revm enforces).
const TX_GAS_LIMIT: u64 = 1 << 24;
/// The largest record accepted when reading the log back.
const MAX_RECORD: u32 = 4 << 20;
const LOG_FILE: &str = "chain.log";
const LOCK_FILE: &str = "lock";

type Db = CacheDB<EmptyDB>;
/// revm's EVM is not `Send`, so one is built per transaction over the shared state.
type Evm<'a> = MainnetEvm<Context<BlockEnv, TxEnv, CfgEnv, &'a mut Db, Journal<&'a mut Db>, ()>>;

/// One transaction as the log keeps it.
#[derive(Debug, Clone)]
struct Record {
    timestamp: u64,
    caller: Address,
    to: Option<Address>,
    input: Bytes,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 20 + 21 + self.input.len());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(self.caller.as_slice());
        match self.to {
            Some(to) => {
                out.push(1);
                out.extend_from_slice(to.as_slice());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.input);
        out
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        let timestamp = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
        let caller = Address::from_slice(payload.get(8..28)?);
        let (to, rest) = match payload.get(28)? {
            0 => (None, payload.get(29..)?),
            1 => (
                Some(Address::from_slice(payload.get(29..49)?)),
                payload.get(49..)?,
            ),
            _ => return None,
        };
        Some(Self {
            timestamp,
            caller,
            to,
            input: Bytes::copy_from_slice(rest),
        })
    }
}

struct State {
    db: Db,
    /// Timestamp of each block; index 0 is the genesis block.
    block_times: Vec<u64>,
    /// Every log, ordered by block and log index.
    logs: Vec<LogEntry>,
    file: File,
    path: PathBuf,
    /// Held for the life of the chain: the OS releases it when the process dies.
    _lock: File,
}

/// An embedded chain kept in a directory. Cheap to clone; clones share the chain.
#[derive(Clone)]
pub struct EmbeddedChain {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for EmbeddedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedChain").finish_non_exhaustive()
    }
}

fn storage(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| {
        Error::Backend(BackendError::Storage {
            path: path.to_owned(),
            source,
        })
    }
}

fn new_evm(db: &mut Db) -> Evm<'_> {
    Context::mainnet()
        .with_db(db)
        .modify_cfg_chained(|cfg| {
            cfg.chain_id = CHAIN_ID;
            // Nonces are the chain's own business here: there are no signed transactions
            // to replay, and CREATE addresses still follow the caller's nonce in state.
            cfg.disable_nonce_check = true;
        })
        .build_mainnet()
}

impl EmbeddedChain {
    /// Opens the chain in `dir` (created if missing), replaying its log. Fails if another
    /// process has it open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(storage(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(storage(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BackendError::Locked(dir.to_owned()).into());
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(storage(&lock_path)(e)),
        }
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(storage(&path))?;
        let records = read_log(&mut file, &path)?;
        let mut state = State {
            db: Db::default(),
            block_times: vec![0],
            logs: Vec::new(),
            file,
            path,
            _lock: lock,
        };
        for (index, (offset, record)) in records.into_iter().enumerate() {
            let block = index as u64 + 1;
            let executed = execute(&mut state.db, block, &record, true);
            match executed {
                Ok(Executed::Success { logs, .. }) => {
                    state.block_times.push(record.timestamp);
                    push_logs(&mut state.logs, block, tx_hash(block, &record), logs);
                }
                _ => {
                    return Err(BackendError::Corrupt {
                        path: state.path.clone(),
                        offset,
                        reason: format!("transaction of block {block} no longer succeeds"),
                    }
                    .into());
                }
            }
        }
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied transaction (state is
        // committed after the log write, in one call), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest block number (0 before the first transaction).
    pub fn head(&self) -> u64 {
        self.lock().block_times.len() as u64 - 1
    }

    /// A backend sending from `account`.
    pub fn backend(&self, account: Address) -> EmbeddedBackend {
        EmbeddedBackend {
            chain: self.clone(),
            account,
        }
    }

    fn send(&self, caller: Address, tx: TxRequest) -> Result<SentTx, Error> {
        let mut state = self.lock();
        let block = state.block_times.len() as u64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let previous = state.block_times.last().copied().unwrap_or(0);
        let record = Record {
            timestamp: now.max(previous),
            caller,
            to: tx.to,
            input: tx.input,
        };
        let result = execute(&mut state.db, block, &record, false)?;
        let (gas_used, logs, created, changes) = match result {
            Executed::Success {
                gas_used,
                logs,
                created,
                changes,
            } => (gas_used, logs, created, changes),
            Executed::Reverted(data) => return Err(ContractError::Other(data).into()),
        };
        // Durable first, then visible.
        let payload = record.encode();
        let mut frame = Vec::with_capacity(36 + payload.len());
        let length = u32::try_from(payload.len()).map_err(|_| {
            Error::Backend(BackendError::Evm("transaction larger than 4 GiB".into()))
        })?;
        frame.extend_from_slice(&length.to_le_bytes());
        frame.extend_from_slice(keccak256(&payload).as_slice());
        frame.extend_from_slice(&payload);
        let path = state.path.clone();
        state.file.write_all(&frame).map_err(storage(&path))?;
        state.file.sync_data().map_err(storage(&path))?;
        if let Some(changes) = changes {
            state.db.commit(changes);
        }
        state.block_times.push(record.timestamp);
        let hash = tx_hash(block, &record);
        let first = state.logs.len();
        push_logs(&mut state.logs, block, hash, logs);
        Ok(SentTx {
            outcome: TxOutcome {
                tx_hash: hash,
                block,
                gas_used,
            },
            created,
            logs: state
                .logs
                .get(first..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        })
    }

    fn call(&self, caller: Address, to: Address, input: Bytes) -> Result<Bytes, Error> {
        let mut state = self.lock();
        let block = state.block_times.len() as u64;
        let timestamp = state.block_times.last().copied().unwrap_or(0);
        let record = Record {
            timestamp,
            caller,
            to: Some(to),
            input,
        };
        match execute_view(&mut state.db, block, &record)? {
            Ok(output) => Ok(output),
            Err(data) => Err(ContractError::Other(data).into()),
        }
    }

    fn logs(&self, addresses: &[Address], from: u64, to: u64) -> Vec<LogEntry> {
        let state = self.lock();
        let start = state.logs.partition_point(|l| l.block < from);
        state.logs[start..]
            .iter()
            .take_while(|l| l.block <= to)
            .filter(|l| addresses.contains(&l.address))
            .cloned()
            .collect()
    }
}

fn tx_hash(block: u64, record: &Record) -> B256 {
    let mut bytes = block.to_be_bytes().to_vec();
    bytes.extend_from_slice(&record.encode());
    keccak256(bytes)
}

fn push_logs(
    into: &mut Vec<LogEntry>,
    block: u64,
    tx_hash: B256,
    logs: Vec<alloy::primitives::Log>,
) {
    // One transaction per block: log indexes start at 0 in every block.
    for (index, log) in logs.into_iter().enumerate() {
        into.push(LogEntry {
            block,
            log_index: index as u64,
            tx_hash,
            address: log.address,
            topics: log.data.topics().to_vec(),
            data: log.data.data.clone(),
        });
    }
}

enum Executed {
    Success {
        gas_used: u64,
        logs: Vec<alloy::primitives::Log>,
        created: Option<Address>,
        changes: Option<revm::state::EvmState>,
    },
    Reverted(Bytes),
}

fn block_env(block: u64, timestamp: u64) -> BlockEnv {
    BlockEnv {
        number: U256::from(block),
        timestamp: U256::from(timestamp),
        gas_limit: BLOCK_GAS_LIMIT,
        basefee: 0,
        prevrandao: Some(B256::ZERO),
        ..BlockEnv::default()
    }
}

fn tx_env(record: &Record) -> Result<TxEnv, Error> {
    TxEnv::builder()
        .caller(record.caller)
        .kind(match record.to {
            Some(to) => TxKind::Call(to),
            None => TxKind::Create,
        })
        .data(record.input.clone())
        .gas_limit(TX_GAS_LIMIT)
        .gas_price(0)
        .chain_id(Some(CHAIN_ID))
        .build()
        .map_err(|e| Error::Backend(BackendError::Evm(format!("{e:?}"))))
}

/// Runs `record` in block `block`. With `commit`, a success is committed at once (replay);
/// otherwise the changes come back for the caller to commit after the log write.
fn execute(db: &mut Db, block: u64, record: &Record, commit: bool) -> Result<Executed, Error> {
    let mut evm = new_evm(db);
    evm.set_block(block_env(block, record.timestamp));
    let tx = tx_env(record)?;
    let outcome = evm
        .transact(tx)
        .map_err(|e| Error::Backend(BackendError::Evm(e.to_string())))?;
    let gas_used = outcome.result.tx_gas_used();
    match outcome.result {
        ExecutionResult::Success { logs, output, .. } => {
            let created = match output {
                revm::context_interface::result::Output::Create(_, address) => address,
                revm::context_interface::result::Output::Call(_) => None,
            };
            let changes = if commit {
                drop(evm);
                db.commit(outcome.state);
                None
            } else {
                Some(outcome.state)
            };
            Ok(Executed::Success {
                gas_used,
                logs,
                created,
                changes,
            })
        }
        ExecutionResult::Revert { output, .. } => Ok(Executed::Reverted(output)),
        ExecutionResult::Halt { reason, .. } => Err(Error::Backend(BackendError::Evm(format!(
            "halted: {reason:?}"
        )))),
    }
}

/// Runs a read-only call; `Err(data)` inside is a revert.
fn execute_view(db: &mut Db, block: u64, record: &Record) -> Result<Result<Bytes, Bytes>, Error> {
    let mut evm = new_evm(db);
    evm.set_block(block_env(block, record.timestamp));
    let tx = tx_env(record)?;
    let outcome = evm
        .transact(tx)
        .map_err(|e| Error::Backend(BackendError::Evm(e.to_string())))?;
    match outcome.result {
        ExecutionResult::Success { output, .. } => Ok(Ok(output.into_data())),
        ExecutionResult::Revert { output, .. } => Ok(Err(output)),
        ExecutionResult::Halt { reason, .. } => Err(Error::Backend(BackendError::Evm(format!(
            "halted: {reason:?}"
        )))),
    }
}

/// Reads every intact record with its offset; cuts off a torn last record.
fn read_log(file: &mut File, path: &Path) -> Result<Vec<(u64, Record)>, Error> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(storage(path))?;
    file.read_to_end(&mut bytes).map_err(storage(path))?;
    let mut records = Vec::new();
    let mut offset = 0usize;
    let corrupt = |offset: usize, reason: &str| {
        Error::Backend(BackendError::Corrupt {
            path: path.to_owned(),
            offset: offset as u64,
            reason: reason.to_owned(),
        })
    };
    while offset < bytes.len() {
        let Some(header) = bytes.get(offset..offset + 36) else {
            break; // torn header at the end
        };
        let mut length = [0u8; 4];
        length.copy_from_slice(&header[..4]);
        let length = u32::from_le_bytes(length);
        if length > MAX_RECORD {
            return Err(corrupt(offset, "record length out of range"));
        }
        let end = offset + 36 + length as usize;
        let Some(payload) = bytes.get(offset + 36..end) else {
            break; // torn payload at the end
        };
        if keccak256(payload).as_slice() != &header[4..36] {
            if end == bytes.len() {
                break; // torn (partly written) last record
            }
            return Err(corrupt(
                offset,
                "checksum mismatch before the end of the log",
            ));
        }
        let record =
            Record::decode(payload).ok_or_else(|| corrupt(offset, "undecodable record"))?;
        records.push((offset as u64, record));
        offset = end;
    }
    if offset < bytes.len() {
        file.set_len(offset as u64).map_err(storage(path))?;
        file.sync_data().map_err(storage(path))?;
    }
    file.seek(SeekFrom::End(0)).map_err(storage(path))?;
    Ok(records)
}

/// Runs a transaction (which ends in an `fsync`) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        Error::Backend(BackendError::Evm(format!(
            "embedded chain task failed: {e}"
        )))
    })?
}

/// A [`Backend`] on an [`EmbeddedChain`], sending from one account.
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    chain: EmbeddedChain,
    account: Address,
}

impl EmbeddedBackend {
    /// The chain this backend uses.
    pub fn chain(&self) -> &EmbeddedChain {
        &self.chain
    }
}

impl Backend for EmbeddedBackend {
    fn account(&self) -> Address {
        self.account
    }

    fn with_signer(&self, signer: PrivateKeySigner) -> Self {
        self.chain.backend(signer.address())
    }

    async fn send(&self, tx: TxRequest) -> Result<SentTx, Error> {
        let (chain, account) = (self.chain.clone(), self.account);
        blocking(move || chain.send(account, tx)).await
    }

    async fn send_many(&self, txs: Vec<TxRequest>) -> Result<Vec<SentTx>, Error> {
        let (chain, account) = (self.chain.clone(), self.account);
        blocking(move || txs.into_iter().map(|tx| chain.send(account, tx)).collect()).await
    }

    async fn call(&self, to: Address, input: Bytes) -> Result<Bytes, Error> {
        self.chain.call(self.account, to, input)
    }

    async fn head(&self) -> Result<u64, Error> {
        Ok(self.chain.head())
    }

    async fn logs(
        &self,
        addresses: &[Address],
        from: u64,
        to: u64,
    ) -> Result<Vec<LogEntry>, Error> {
        Ok(self.chain.logs(addresses, from, to))
    }
}
