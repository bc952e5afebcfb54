//! What storage asks the chain: the device registry, the rules (kept as a native
//! [`RuleBook`] replica, refreshed from the ledger), consent, and access-log anchors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use tokio::sync::RwLock;
use wardseal_contracts::{AnyBackend, Device, Ledger, RuleBook};

use crate::error::Error;

/// How long a rule replica is used before it is rebuilt from the ledger.
const RULES_MAX_AGE: Duration = Duration::from_secs(30);

/// The ledger with a rule replica.
#[derive(Debug)]
pub struct Chain {
    ledger: Ledger<AnyBackend>,
    rules: RwLock<(RuleBook, Instant)>,
}

impl Chain {
    /// Wraps a ledger and builds the rule replica.
    pub async fn new(ledger: Ledger<AnyBackend>) -> Result<Self, Error> {
        let book = load_rules(&ledger).await?;
        Ok(Self {
            ledger,
            rules: RwLock::new((book, Instant::now())),
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger<AnyBackend> {
        &self.ledger
    }

    /// Rebuilds the rule replica now.
    pub async fn refresh_rules(&self) -> Result<(), Error> {
        let book = load_rules(&self.ledger).await?;
        *self.rules.write().await = (book, Instant::now());
        Ok(())
    }

    /// The rule replica, rebuilt first when older than 30 s.
    pub async fn rules(
        &self,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, (RuleBook, Instant)>, Error> {
        if self.rules.read().await.1.elapsed() > RULES_MAX_AGE {
            self.refresh_rules().await?;
        }
        Ok(self.rules.read().await)
    }

    /// The registry entries of several devices.
    pub async fn devices(
        &self,
        epcs: &[[u8; 12]],
    ) -> Result<HashMap<[u8; 12], Option<Device>>, Error> {
        let mut found = HashMap::new();
        for epc in epcs {
            if !found.contains_key(epc) {
                let device = self
                    .ledger
                    .device(*epc)
                    .await
                    .map_err(|error| Error::ledger("read the device registry", error))?;
                found.insert(*epc, device);
            }
        }
        Ok(found)
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
        let anchor = wardseal_contracts::Anchor {
            log_id: access_log_id(),
            root: B256::from(root),
            count,
            first_time: u64::try_from(first).unwrap_or_default(),
            last_time: u64::try_from(last).unwrap_or_default(),
        };
        self.ledger
            .anchor(&anchor)
            .await
            .map_err(|error| Error::ledger("anchor the access log", error))?;
        Ok(())
    }

    /// Whether a root is anchored on chain.
    pub async fn anchored(&self, root: [u8; 32]) -> Result<bool, Error> {
        Ok(self
            .ledger
            .anchored(B256::from(root))
            .await
            .map_err(|error| Error::ledger("look the anchor up", error))?
            .is_some())
    }
}

/// The log id of storage's access log: SHA-256 of "wardseal storage access log".
pub fn access_log_id() -> B256 {
    B256::from(*wardseal_core::hash::Hash::sha256(b"wardseal storage access log").as_bytes())
}

async fn load_rules(ledger: &Ledger<AnyBackend>) -> Result<RuleBook, Error> {
    let rules = ledger
        .rules()
        .await
        .map_err(|error| Error::ledger("read the rules", error))?;
    let groups = ledger
        .group_rules()
        .await
        .map_err(|error| Error::ledger("read the group rules", error))?;
    Ok(RuleBook::from_parts(&rules, &groups))
}
