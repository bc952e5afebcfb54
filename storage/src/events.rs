//! What storage has just done, told to whoever listens inside the process: the live alert
//! stream, the ward screen, FHIR subscriptions.
//!
//! The hub is a broadcast channel: publishing never waits, and a listener that falls more
//! than [`EVENT_BUFFER`] events behind loses the oldest ones (it sees
//! `RecvError::Lagged`). Listeners that must not lose anything (durable notifications)
//! persist what they receive at once, and on a lag re-read what they missed from the
//! store; the store, not the hub, is the record.

use std::sync::Arc;

use tokio::sync::broadcast;
use wardseal_core::alert::AlertEvent;
use wardseal_core::hash::Hash;

use crate::store::ReadingRow;

/// Events kept for a listener that has not caught up yet.
pub const EVENT_BUFFER: usize = 4096;

/// One thing storage did.
#[derive(Debug, Clone)]
pub enum StoredEvent {
    /// A batch was stored: its readings are now in the store.
    Readings(Arc<StoredReadings>),
    /// An alert was raised, escalated, acknowledged or resolved.
    Alert(Arc<AlertEvent>),
}

/// A batch's readings, as stored.
#[derive(Debug, Clone)]
pub struct StoredReadings {
    /// The patient (pseudonymous subject id).
    pub patient: String,
    /// The batch's header hash.
    pub header_hash: Hash,
    /// The batch's sequence number in the patient's chain.
    pub sequence: u64,
    /// When storage stored it, µs since the epoch.
    pub stored_at_us: i64,
    /// The readings, in batch order.
    pub readings: Vec<ReadingRow>,
}

/// The publishing side, shared by the server's parts (cloning shares the channel).
#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<StoredEvent>,
}

impl EventHub {
    /// A hub with no listener yet.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        Self { sender }
    }

    /// Tells every listener (never waits; with no listener the event goes nowhere).
    pub fn publish(&self, event: StoredEvent) {
        let _ = self.sender.send(event);
    }

    /// A new listener, which sees every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.sender.subscribe()
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_sees_what_is_published_after_it_subscribed() {
        let hub = EventHub::new();
        hub.publish(StoredEvent::Readings(Arc::new(StoredReadings {
            patient: "before".into(),
            header_hash: Hash::from_slice(&[0; 32]).expect("32 bytes"),
            sequence: 0,
            stored_at_us: 0,
            readings: Vec::new(),
        })));
        let mut first = hub.subscribe();
        let mut second = hub.subscribe();
        hub.publish(StoredEvent::Readings(Arc::new(StoredReadings {
            patient: "after".into(),
            header_hash: Hash::from_slice(&[1; 32]).expect("32 bytes"),
            sequence: 1,
            stored_at_us: 1,
            readings: Vec::new(),
        })));
        for listener in [&mut first, &mut second] {
            match listener.recv().await.expect("an event") {
                StoredEvent::Readings(readings) => assert_eq!(readings.patient, "after"),
                StoredEvent::Alert(_) => panic!("no alert was published"),
            }
        }
        assert!(
            first.try_recv().is_err(),
            "only one event after subscribing"
        );
    }
}
