//! The native replica of the chain's device registry and rules that the collector and
//! storage check readings against, and the rate window the rules count in.
//!
//! A [`Replica`] is bootstrapped by one query of the ledger's state
//! ([`Replica::bootstrap`], which also returns the [`EventFollower`] to keep it current)
//! and then follows the suite's events ([`Replica::apply`]). The head is read *before*
//! the snapshot: whatever is mined while the snapshot is read is delivered again by the
//! follower, and applying an event is idempotent (set, insert, deactivate), so nothing
//! is missed and nothing is counted twice.
//!
//! The rules limit readings of one data type from one device per minute. Both checkers
//! count in the same [`RATE_WINDOW_MICROS`]-long window ending with the reading: the
//! collector at arrival with a [`RateWindow`] per device and type, storage over the
//! measurement times of a batch and of what it stored before with [`readings_in_window`].

use std::collections::{HashMap, VecDeque};

use crate::authority::AuthorityBook;
use crate::backend::Backend;
use crate::error::Error;
use crate::evaluator::RuleBook;
use crate::follow::{Cursor, EventFollower};
use crate::ledger::Ledger;
use crate::model::{Device, LedgerEvent};

/// The length of the rules' rate window: readings per minute.
pub const RATE_WINDOW_MICROS: i64 = 60_000_000;

/// The registry's devices (by 12-byte EPC), the rules and the authority registry, as of
/// a follower's cursor.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    rules: RuleBook,
    devices: HashMap<[u8; 12], Device>,
    authorities: AuthorityBook,
}

impl Replica {
    /// A replica holding `devices` and `rules`.
    pub fn new(devices: Vec<Device>, rules: RuleBook) -> Self {
        Self {
            rules,
            devices: devices
                .into_iter()
                .map(|device| (device.epc, device))
                .collect(),
            authorities: AuthorityBook::default(),
        }
    }

    /// The same replica holding `authorities`.
    pub fn with_authorities(mut self, authorities: AuthorityBook) -> Self {
        self.authorities = authorities;
        self
    }

    /// Reads the chain's head, then the rules, the group rules, the device registry and
    /// (by replaying its events up to that head) the authority registry; returns the
    /// replica and a follower starting with the block after that head.
    pub async fn bootstrap<B: Backend + Clone>(
        ledger: &Ledger<B>,
    ) -> Result<(Self, EventFollower<B>), Error> {
        let head = ledger.head().await?;
        let rules = ledger.rule_book().await?;
        let replica = Self::new(ledger.devices().await?, rules)
            .with_authorities(ledger.authority_book_until(head).await?);
        let follower = EventFollower::new(
            ledger.clone(),
            Cursor {
                next_block: head.saturating_add(1),
            },
        );
        Ok((replica, follower))
    }

    /// Applies a followed event: registrations, deactivations, rule changes and the
    /// authority registry's changes (other events leave the replica as it is).
    pub fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::DeviceRegistered(device) => {
                self.devices.insert(device.epc, device.clone());
            }
            LedgerEvent::DeviceDeactivated { epc } => {
                if let Some(device) = self.devices.get_mut(epc) {
                    device.active = false;
                }
            }
            LedgerEvent::OrganisationRegistered { .. }
            | LedgerEvent::OrganisationActiveSet { .. }
            | LedgerEvent::SubjectBound { .. }
            | LedgerEvent::SubjectUnbound { .. }
            | LedgerEvent::AccessGranted { .. }
            | LedgerEvent::AccessRevoked { .. } => self.authorities.apply(event),
            other => self.rules.apply(other),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &RuleBook {
        &self.rules
    }

    /// The authority registry and the patients' consent to authorities.
    pub fn authorities(&self) -> &AuthorityBook {
        &self.authorities
    }

    /// The registry entry of `epc`, if registered.
    pub fn device(&self, epc: &[u8; 12]) -> Option<&Device> {
        self.devices.get(epc)
    }
}

/// Arrival times of one device's readings of one data type in the last
/// [`RATE_WINDOW_MICROS`], for a checker that sees readings as they arrive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow {
    times: VecDeque<i64>,
}

impl RateWindow {
    /// The count a reading arriving at `now_us` makes (the readings still in the window
    /// plus itself), after dropping the ones that left the window. The reading is not
    /// recorded: call [`RateWindow::record`] once it is accepted.
    pub fn count_with(&mut self, now_us: i64) -> u32 {
        while self
            .times
            .front()
            .is_some_and(|&time| time <= now_us - RATE_WINDOW_MICROS)
        {
            self.times.pop_front();
        }
        u32::try_from(self.times.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Records an accepted reading that arrived at `now_us`.
    pub fn record(&mut self, now_us: i64) {
        self.times.push_back(now_us);
    }
}

/// How many of `sorted_times` (ascending, microseconds) fall in the window ending with
/// `time`: later than `time - RATE_WINDOW_MICROS`, not later than `time`.
pub fn readings_in_window(sorted_times: &[i64], time: i64) -> usize {
    let start = sorted_times.partition_point(|&t| t <= time - RATE_WINDOW_MICROS);
    let end = sorted_times.partition_point(|&t| t <= time);
    end.saturating_sub(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_sixty_seconds_ending_with_the_reading() {
        let mut window = RateWindow::default();
        assert_eq!(window.count_with(0), 1);
        window.record(0);
        window.record(30_000_000);
        assert_eq!(window.count_with(59_999_999), 3);
        // A reading exactly 60 s old has left the window.
        assert_eq!(window.count_with(60_000_000), 2);
        assert_eq!(window.count_with(90_000_000), 1);
    }

    #[test]
    fn a_batch_counts_the_same_window() {
        let times = [0, 30_000_000, 60_000_000, 61_000_000];
        assert_eq!(readings_in_window(&times, 30_000_000), 2);
        assert_eq!(readings_in_window(&times, 60_000_000), 2);
        assert_eq!(readings_in_window(&times, 61_000_000), 3);
    }
}
