//! What storage asks the chain: the device registry, the rules and the authority
//! registry with the patients' grants to authorities (kept as a native replica that
//! follows the ledger's events), consent, and the anchors of the access log and the batch
//! log.
//!
//! The replica is built from the ledger's state at start, then brought up to the chain's
//! head by an [`EventFollower`] before every use ([`Chain::sync`]): a rule change or a
//! device deactivation mined in a block counts for the next batch checked after that
//! block, without a periodic re-read of the whole registry. Applying an event is
//! idempotent (set, insert, deactivate), so the events of blocks the snapshot already saw
//! may be applied again without harm.

use std::collections::HashMap;

use alloy::primitives::{Address, B256};
use tokio::sync::{Mutex, RwLock, RwLockReadGuard};
use wardseal_contracts::{
    AnchorRecord, AnyBackend, AuthorityDecision, Device, EventFollower, Ledger, Organisation,
    Replica, RuleBook, TxOutcome,
};

use crate::error::Error;

/// The ledger with a rule and device replica that follows its events.
#[derive(Debug)]
pub struct Chain {
    ledger: Ledger<AnyBackend>,
    replica: RwLock<Replica>,
    follower: Mutex<EventFollower<AnyBackend>>,
    /// One anchoring at a time in this process (the timer and the admin route).
    anchoring: Mutex<()>,
}

impl Chain {
    /// Wraps a ledger: reads the rules and the registry, and follows the events of the
    /// blocks after the head seen before reading.
    pub async fn new(ledger: Ledger<AnyBackend>) -> Result<Self, Error> {
        // `Replica::bootstrap` reads the head first: anything mined while the snapshot is
        // read is applied again by the follower, which is harmless; anything mined before
        // is in the snapshot.
        let (replica, follower) = Replica::bootstrap(&ledger)
            .await
            .map_err(|error| Error::ledger("read the rules and the device registry", error))?;
        Ok(Self {
            ledger,
            replica: RwLock::new(replica),
            follower: Mutex::new(follower),
            anchoring: Mutex::new(()),
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger<AnyBackend> {
        &self.ledger
    }

    /// Brings the replica up to the chain's head: applies the events of every block mined
    /// since the last sync. One head query when nothing was mined.
    pub async fn sync(&self) -> Result<(), Error> {
        let mut follower = self.follower.lock().await;
        let events = follower
            .poll()
            .await
            .map_err(|error| Error::ledger("follow the ledger's events", error))?;
        if !events.is_empty() {
            let mut replica = self.replica.write().await;
            for event in &events {
                replica.apply(&event.event);
            }
        }
        Ok(())
    }

    /// The block the replica has followed up to (exclusive).
    pub async fn followed_to(&self) -> u64 {
        self.follower.lock().await.cursor().next_block
    }

    /// The rule replica, synced with the chain's head first.
    pub async fn rules(&self) -> Result<RwLockReadGuard<'_, RuleBook>, Error> {
        self.sync().await?;
        Ok(RwLockReadGuard::map(
            self.replica.read().await,
            Replica::rules,
        ))
    }

    /// The registry entries of several devices (`None`: not registered), synced with the
    /// chain's head first.
    pub async fn devices(
        &self,
        epcs: &[[u8; 12]],
    ) -> Result<HashMap<[u8; 12], Option<Device>>, Error> {
        self.sync().await?;
        let replica = self.replica.read().await;
        Ok(epcs
            .iter()
            .map(|epc| (*epc, replica.device(epc).cloned()))
            .collect())
    }

    /// What the authority registry and the patient's consent say about a read by the
    /// authority certificate with subject id `subject` of the records of the patient with
    /// account `patient`, synced with the chain's head first.
    pub async fn authority_decision(
        &self,
        subject: &str,
        patient: [u8; 20],
    ) -> Result<AuthorityDecision, Error> {
        self.sync().await?;
        Ok(self
            .replica
            .read()
            .await
            .authorities()
            .decide(subject, Address::from(patient)))
    }

    /// The organisation `subject` acts for in the authority registry, if bound, synced
    /// with the chain's head first.
    pub async fn authority_of(&self, subject: &str) -> Result<Option<Organisation>, Error> {
        self.sync().await?;
        Ok(self
            .replica
            .read()
            .await
            .authorities()
            .organisation_of(subject)
            .cloned())
    }

    /// The authorities the patient with account `patient` has granted access on chain
    /// (and not revoked), by id, synced with the chain's head first.
    pub async fn authority_grants(&self, patient: [u8; 20]) -> Result<Vec<Organisation>, Error> {
        self.sync().await?;
        Ok(self
            .replica
            .read()
            .await
            .authorities()
            .grants_of(Address::from(patient))
            .into_iter()
            .cloned()
            .collect())
    }

    /// Whether `patient` has granted `authority` access on chain.
    pub async fn consent(&self, patient: [u8; 20], authority: [u8; 20]) -> Result<bool, Error> {
        self.ledger
            .consent(Address::from(patient), Address::from(authority))
            .await
            .map_err(|error| Error::ledger("read consent", error))
    }

    /// Anchors a Merkle root of the access log.
    pub async fn anchor(
        &self,
        root: [u8; 32],
        count: u64,
        first: i64,
        last: i64,
    ) -> Result<(), Error> {
        self.anchor_log(access_log_id(), root, count, first, last)
            .await
            .map(drop)
    }

    /// Anchors a Merkle root of log `log_id` covering `count` entries written from
    /// `first` to `last` (µs since the epoch).
    pub async fn anchor_log(
        &self,
        log_id: B256,
        root: [u8; 32],
        count: u64,
        first: i64,
        last: i64,
    ) -> Result<TxOutcome, Error> {
        let anchor = wardseal_contracts::Anchor {
            log_id,
            root: B256::from(root),
            count,
            first_time: u64::try_from(first).unwrap_or_default(),
            last_time: u64::try_from(last).unwrap_or_default(),
        };
        self.ledger
            .anchor(&anchor)
            .await
            .map_err(|error| Error::ledger("anchor a log root", error))
    }

    /// Whether a root is anchored on chain.
    pub async fn anchored(&self, root: [u8; 32]) -> Result<bool, Error> {
        Ok(self.anchor_record(root).await?.is_some())
    }

    /// The chain's record of an anchored root.
    pub async fn anchor_record(&self, root: [u8; 32]) -> Result<Option<AnchorRecord>, Error> {
        self.ledger
            .anchored(B256::from(root))
            .await
            .map_err(|error| Error::ledger("look the anchor up", error))
    }

    /// Held while anchoring, so the timer and the admin route never anchor the same
    /// entries twice.
    pub(crate) async fn anchoring(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.anchoring.lock().await
    }
}

/// The log id of storage's access log: SHA-256 of "wardseal storage access log".
pub fn access_log_id() -> B256 {
    B256::from(*wardseal_core::hash::Hash::sha256(b"wardseal storage access log").as_bytes())
}

/// The log id of storage's batch log: SHA-256 of "wardseal storage batch log".
pub fn batch_log_id() -> B256 {
    B256::from(*wardseal_core::hash::Hash::sha256(b"wardseal storage batch log").as_bytes())
}
