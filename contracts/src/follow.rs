//! Following the suite's events: rules, devices, consent and anchors, each delivered once.
//!
//! An [`EventFollower`] delivers events block by block: a poll returns every suite event
//! of the blocks from its cursor up to the chain's head, then moves the cursor past that
//! head. On a PoA chain (QBFT, the embedded chain, anvil) a mined block is final, so a
//! block once delivered never changes. The caller stores [`EventFollower::cursor`] with
//! what it did with the events (in one database transaction) and resumes from it after a
//! restart of itself or of the node: no event is missed, none is delivered twice. A poll
//! that cannot reach the node fails without moving the cursor; poll again later.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::Error;
use crate::ledger::Ledger;
use crate::model::PositionedEvent;

/// The most blocks asked for in one `eth_getLogs` (nodes cap the range).
const MAX_BLOCK_RANGE: u64 = 5_000;

/// Where a follower stands: every event in blocks below `next_block` was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The first block not yet delivered.
    pub next_block: u64,
}

/// Follows a suite's events from a cursor.
#[derive(Debug, Clone)]
pub struct EventFollower<B> {
    ledger: Ledger<B>,
    cursor: Cursor,
}

impl<B: Backend> EventFollower<B> {
    /// A follower starting at `cursor` (a new one: `Cursor { next_block:
    /// suite.deployed_at }`).
    pub fn new(ledger: Ledger<B>, cursor: Cursor) -> Self {
        Self { ledger, cursor }
    }

    /// A follower starting with the suite's first block.
    pub fn from_deployment(ledger: Ledger<B>) -> Self {
        let cursor = Cursor {
            next_block: ledger.suite().deployed_at,
        };
        Self::new(ledger, cursor)
    }

    /// Where the follower stands now.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The events of every block from the cursor to the head, in chain order; the cursor
    /// moves past the head only when all of them were read.
    pub async fn poll(&mut self) -> Result<Vec<PositionedEvent>, Error> {
        let head = self.ledger.head().await?;
        let mut events = Vec::new();
        let mut from = self.cursor.next_block;
        while from <= head {
            let to = head.min(from.saturating_add(MAX_BLOCK_RANGE - 1));
            events.extend(self.ledger.events(from, to).await?);
            from = to + 1;
        }
        self.cursor.next_block = self.cursor.next_block.max(head + 1);
        Ok(events)
    }
}
