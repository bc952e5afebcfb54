//! Replay: a reading with a sequence number already accepted, a reading measured two
//! hours ago, and a stored batch re-sent (as captured, and re-sealed at its old place).

use std::sync::Arc;

use hyper::Method;
use wardseal_core::batch::{BatchHeader, BatchHeaderParts};
use wardseal_core::exchange::{BatchReceipt, BatchSubmission};
use wardseal_core::reading::Timestamp;

use super::outcome::Observed;
use super::wire::{error_code, send};
use super::{Attacker, Findings, now, quantity};
use crate::error::Error;

/// How old the replayed reading of [`Scenario::OldTimestamp`](super::Scenario::OldTimestamp)
/// is: twice the collector's default skew window (one hour).
const OLD_READING_AGE_MICROS: i64 = 2 * 3_600_000_000;

impl Attacker<'_> {
    pub(super) async fn replayed_sequence(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let sequence = device.next_sequence();
        let original = quantity("body_temperature", "36.6", "Cel", now(), sequence);
        let connection = self.base.ward.connect_collector(&device.files).await?;
        let reply = send(
            &connection,
            Method::POST,
            "/v1/readings",
            original.into_bytes(),
        )
        .await?;
        if reply.status == 202 {
            findings
                .notes
                .push(format!("sequence {sequence} accepted once (HTTP 202)"));
        } else {
            findings.problems.push(format!(
                "the original reading with sequence {sequence} was refused: HTTP {} {}",
                reply.status,
                error_code(&reply).unwrap_or_default()
            ));
        }
        // The replay carries another value, so its leaf differs from the original's.
        let replay = quantity("body_temperature", "39.5", "Cel", now(), sequence);
        self.send_forged(device, &device.files, &replay, findings)
            .await
    }

    /// A reading measured two hours ago, sent now.
    pub(super) async fn old_timestamp(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let time = Timestamp::from_unix_micros(now().unix_micros() - OLD_READING_AGE_MICROS)
            .map_err(wardseal_core::Error::from)?;
        let body = quantity(
            "body_temperature",
            "36.8",
            "Cel",
            time,
            device.next_sequence(),
        );
        self.send_forged(device, &device.files, &body, findings)
            .await
    }

    pub(super) async fn replayed_batch(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let store = &self.base.ward.storage().store;
        let tip = self
            .quiet_tip()
            .await?
            .ok_or_else(|| Error::Options("the patient has no stored batch to replay".into()))?;
        let (batch, leaves) = store
            .batch(tip.hash.as_bytes())
            .await?
            .ok_or_else(|| Error::Options("the patient's chain tip is not stored".into()))?;
        let mut readings = Vec::with_capacity(leaves.len());
        for leaf in &leaves {
            let stored = store.reading_by_leaf(leaf).await?.ok_or_else(|| {
                Error::Options(format!("reading {leaf} of the stored batch is missing"))
            })?;
            readings.push(stored.canonical);
        }
        let header =
            BatchHeader::from_canonical_bytes(&batch.header).map_err(wardseal_core::Error::from)?;
        // 1. Byte-identical: a repeated delivery, acknowledged again and stored once.
        let captured = BatchSubmission {
            header: header.clone(),
            signature: batch.signature,
            patient_certificate: batch.patient_certificate,
            readings: readings.clone(),
        };
        let (readings_before, batches_before) = store.counts().await?;
        let reply = self.post_batch(&captured).await?;
        let (readings_after, batches_after) = store.counts().await?;
        let receipt: Option<BatchReceipt> = serde_json::from_slice(&reply.body).ok();
        match receipt {
            Some(receipt) if reply.status == 200 && !receipt.newly_stored => findings.notes.push(
                format!("batch {} re-sent as captured: acknowledged again (200, newly_stored false), not stored twice", tip.sequence),
            ),
            _ => findings.problems.push(format!(
                "the byte-identical replay of batch {} got HTTP {} {}",
                tip.sequence,
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )),
        }
        if (readings_before, batches_before) != (readings_after, batches_after) {
            findings.problems.push(format!(
                "the byte-identical replay changed the counts: readings {readings_before} → {readings_after}, batches {batches_before} → {batches_after}"
            ));
        }
        // 2. Re-sealed by the card at the same place with a wider time range, so its
        // header hash differs from the stored one: a replay of an old chain place.
        let mut parts: BatchHeaderParts = header.parts().clone();
        let widened = parts.first_time.unix_micros().saturating_sub(1);
        parts.first_time =
            Timestamp::from_unix_micros(widened).map_err(wardseal_core::Error::from)?;
        let resealed = BatchHeader::new(parts).map_err(wardseal_core::Error::from)?;
        let submission = self
            .sign(
                resealed,
                readings,
                Arc::clone(&card.signer),
                card.certificate.clone(),
                findings,
            )
            .await?;
        self.deliver(&submission).await
    }
}
