//! Per-patient batches: an RFC 9162 Merkle tree over a patient's pending readings, a
//! header chained to the patient's previous one ([`ChainTip`]), signed once by the
//! patient's card.
//!
//! One signing task runs per patient at a time. While the card is busy (a real card
//! takes 80–300 ms a signature), new readings wait in the spool, and the next batch takes
//! all of them up to [`BatchLimits::max_readings`]: batch size follows the load, so a
//! card at 5 signatures a second keeps up with a whole ward. A reading whose patient has
//! no card present (or whose device has no assignment yet) waits in the spool.
//!
//! Sealing is one transaction: the batch (the complete [`BatchSubmission`] storage will
//! receive), the readings' batch id and the new chain tip. A crash before it leaves the
//! readings pending; after it, the forwarder delivers the sealed batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wardseal_card::Signer;
use wardseal_core::batch::{BatchHeader, ChainTip};
use wardseal_core::exchange::BatchSubmission;
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::Timestamp;

use crate::error::{Error, SpoolError};
use crate::metrics::Metrics;
use crate::spool::{SealingState, Spool, SpooledReading};

/// How many sealed, undelivered batches of a patient make the batcher seal only full
/// batches: one in flight to storage and one ready behind it keep delivery busy.
const QUEUED_BEFORE_FULL_ONLY: u64 = 2;

/// How big and how late a batch may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// The most readings in one batch.
    pub max_readings: usize,
    /// How long a pending reading may wait for more to join it before its batch is
    /// sealed (when the card is free).
    pub linger: Duration,
}

/// A patient's card as the collector holds it: a signer and the patient's certificate.
#[derive(Clone)]
pub struct Card {
    /// Signs batch headers.
    pub signer: Arc<dyn Signer>,
    /// The patient's certificate (DER), sent with every batch.
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("algorithm", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

/// The cards present now, by patient. Readings of patients without one wait.
#[derive(Debug, Default)]
pub struct CardSlots {
    cards: RwLock<HashMap<SubjectId, Card>>,
}

impl CardSlots {
    /// A card was inserted (or configured).
    pub fn insert(&self, patient: SubjectId, card: Card) {
        if let Ok(mut cards) = self.cards.write() {
            cards.insert(patient, card);
        }
    }

    /// A card was removed.
    pub fn remove(&self, patient: &SubjectId) {
        if let Ok(mut cards) = self.cards.write() {
            cards.remove(patient);
        }
    }

    /// How many cards are present.
    pub fn len(&self) -> usize {
        self.cards.read().map_or(0, |cards| cards.len())
    }

    /// Whether no card is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The card of `patient`, if present.
    pub fn card(&self, patient: &SubjectId) -> Option<Card> {
        self.cards.read().ok().and_then(|c| c.get(patient).cloned())
    }
}

/// Seals batches for every patient with pending readings and a card present.
#[derive(Debug)]
pub struct Batcher {
    spool: Spool,
    cards: Arc<CardSlots>,
    collector: SubjectId,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    busy: Mutex<HashSet<SubjectId>>,
    sealed: Arc<Notify>,
}

impl Batcher {
    /// A batcher; `sealed` is notified after each sealed batch (the forwarder waits on it).
    pub fn new(
        spool: Spool,
        cards: Arc<CardSlots>,
        collector: SubjectId,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
        sealed: Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(Self {
            spool,
            cards,
            collector,
            limits,
            metrics,
            busy: Mutex::default(),
            sealed,
        })
    }

    /// Runs until `stop` is notified: every `tick`, starts a signing task for each
    /// patient that has pending readings, a card and no task running.
    pub async fn run(self: Arc<Self>, tick: Duration, stop: Arc<Notify>) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.notified() => return,
                _ = interval.tick() => {}
            }
            let patients = match self.spool.patients_pending().await {
                Ok(patients) => patients,
                Err(error) => {
                    tracing::error!(%error, "the batcher cannot read the spool");
                    continue;
                }
            };
            for patient in patients {
                let Some(card) = self.cards.card(&patient) else {
                    continue;
                };
                let claimed = self
                    .busy
                    .lock()
                    .is_ok_and(|mut busy| busy.insert(patient.clone()));
                if !claimed {
                    continue;
                }
                let this = Arc::clone(&self);
                tokio::spawn(async move {
                    if let Err(error) = this.seal_pending(&patient, &card).await {
                        tracing::warn!(%patient, %error, "sealing a batch failed");
                    }
                    if let Ok(mut busy) = this.busy.lock() {
                        busy.remove(&patient);
                    }
                });
            }
        }
    }

    /// Seals `patient`'s pending readings into batches until none are left (or the
    /// remainder is younger than the linger time and smaller than a full batch).
    /// Returns the number of batches sealed.
    pub async fn seal_pending(&self, patient: &SubjectId, card: &Card) -> Result<usize, Error> {
        let mut sealed = 0;
        loop {
            let max = self.limits.max_readings;
            let SealingState {
                pending,
                tip,
                queued,
            } = self.spool.sealing_state(patient, max).await?;
            let Some(oldest) = pending.first() else {
                return Ok(sealed);
            };
            let waited = Timestamp::now()
                .unix_micros()
                .saturating_sub(oldest.received.unix_micros());
            let linger = i64::try_from(self.limits.linger.as_micros()).unwrap_or(i64::MAX);
            // A partial batch is sealed once its oldest reading has lingered, unless the
            // patient already has a batch in flight and another waiting behind it: a
            // batch sealed now could only join that queue, while waiting lets it grow
            // towards the maximum (fewer signatures, fewer trips to storage, each
            // carrying more readings). The readings are durable in the spool either way.
            if pending.len() < max && (waited < linger || queued >= QUEUED_BEFORE_FULL_ONLY) {
                return Ok(sealed);
            }
            self.seal(patient, card, pending, tip).await?;
            sealed += 1;
        }
    }

    async fn seal(
        &self,
        patient: &SubjectId,
        card: &Card,
        pending: Vec<SpooledReading>,
        tip: Option<ChainTip>,
    ) -> Result<(), Error> {
        let leaves: Vec<_> = pending.iter().map(|r| r.leaf).collect();
        let first = pending
            .iter()
            .map(|r| r.time)
            .min()
            .unwrap_or(Timestamp::MIN);
        let last = pending
            .iter()
            .map(|r| r.time)
            .max()
            .unwrap_or(Timestamp::MIN);
        let header = BatchHeader::for_leaves(
            patient.clone(),
            self.collector.clone(),
            tip.as_ref(),
            &leaves,
            (first, last),
            card.signer.algorithm(),
        )?;
        let message = header.canonical_bytes();
        let signer = Arc::clone(&card.signer);
        let started = Instant::now();
        let signature = tokio::task::spawn_blocking(move || signer.sign_message(&message))
            .await
            .map_err(|e| {
                wardseal_card::Error::Signing(format!("the signing task failed: {e}"))
            })??;
        self.metrics
            .signing_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(pending.len() as f64);
        let ids: Vec<i64> = pending.iter().map(|r| r.id).collect();
        let submission = BatchSubmission {
            header: header.clone(),
            signature,
            patient_certificate: card.certificate.clone(),
            readings: pending.into_iter().map(|r| r.canonical).collect(),
        };
        let text = serde_json::to_string(&submission).map_err(|e| SpoolError::Corrupt {
            row: 0,
            reason: format!("cannot encode the batch: {e}"),
        })?;
        self.spool
            .seal_batch(patient, header.tip(), text, ids)
            .await?;
        self.sealed.notify_one();
        Ok(())
    }
}
