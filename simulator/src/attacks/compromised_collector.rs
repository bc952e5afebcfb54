//! A compromised collector (or the path to storage): the attacker holds the patient's real
//! card and the collector's real certificate, seals batches of its own and delivers them to
//! storage. The sealing and delivery here serve the replay and sinkhole scenarios too.

use std::sync::Arc;
use std::time::Instant;

use hyper::Method;
use wardseal_card::{KeyKind, Signer, SoftwareSigner};
use wardseal_collector::batcher::Card;
use wardseal_collector::client::Reply;
use wardseal_core::batch::{BatchHeader, ChainTip};
use wardseal_core::decimal::Decimal;
use wardseal_core::epc::Sgtin96;
use wardseal_core::exchange::BatchSubmission;
use wardseal_core::hash::Hash;
use wardseal_core::identity::SubjectId;
use wardseal_core::reading::{DataType, Measurement, Reading, Timestamp, Unit, Value};

use super::outcome::{Observed, Server};
use super::wire::{answer, send};
use super::{Attacker, Findings, POLL, PROPAGATION_TIMEOUT, now, timeout};
use crate::error::Error;
use crate::ward::RunningWard;

impl Attacker<'_> {
    /// The patient's card as the collector holds it.
    pub(super) fn card(&self) -> Result<Card, Error> {
        self.base
            .ward
            .collector()
            .cards()
            .card(&self.base.patient)
            .ok_or_else(|| {
                Error::Options(format!(
                    "the collector holds no card for patient {}",
                    self.base.patient.as_str()
                ))
            })
    }

    /// The patient's chain tip once the real collector has delivered everything it
    /// accepted (so no genuine batch takes the place a forged one aims at meanwhile).
    pub(super) async fn quiet_tip(&self) -> Result<Option<ChainTip>, Error> {
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        while self.base.ward.collector().spool().depth() > 0 {
            if Instant::now() >= deadline {
                return Err(timeout("the collector to deliver its spool to storage"));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(self
            .base
            .ward
            .storage()
            .store
            .tip(self.base.patient.as_str())
            .await?)
    }

    /// Body-temperature readings from the attacker's thermometer, measured now, in
    /// canonical form. Their leaves go to the evidence: none of them was ever accepted.
    pub(super) fn forged_readings(
        &self,
        values: &[&str],
        findings: &mut Findings,
    ) -> Result<Vec<Vec<u8>>, Error> {
        let start = now().unix_micros();
        let mut readings = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            let time = Timestamp::from_unix_micros(start + i64::try_from(index).unwrap_or(0))
                .map_err(wardseal_core::Error::from)?;
            let reading = body_temperature(
                &self.thermometer.epc,
                value,
                time,
                self.thermometer.next_sequence(),
            )?;
            findings.evidence.leaves.push(reading.leaf_hash());
            readings.push(reading.canonical_bytes());
        }
        Ok(readings)
    }

    /// The header for `readings` after `tip`, signed by `signer`; its hash goes to the
    /// evidence.
    pub(super) async fn seal(
        &self,
        tip: Option<&ChainTip>,
        readings: &[Vec<u8>],
        signer: Arc<dyn Signer>,
        certificate: Vec<u8>,
        findings: &mut Findings,
    ) -> Result<BatchSubmission, Error> {
        let leaves: Vec<Hash> = readings
            .iter()
            .map(|bytes| wardseal_core::merkle::leaf_hash(bytes))
            .collect();
        let mut times = Vec::with_capacity(readings.len());
        for bytes in readings {
            times.push(
                Reading::from_canonical_bytes(bytes)
                    .map_err(wardseal_core::Error::from)?
                    .measurement()
                    .time(),
            );
        }
        let first = times.iter().copied().min().unwrap_or(Timestamp::MIN);
        let last = times.iter().copied().max().unwrap_or(Timestamp::MIN);
        let header = BatchHeader::for_leaves(
            self.base.patient.clone(),
            collector_id(self.base.ward)?,
            tip,
            &leaves,
            (first, last),
            signer.algorithm(),
        )
        .map_err(wardseal_core::Error::from)?;
        self.sign(header, readings.to_vec(), signer, certificate, findings)
            .await
    }

    /// [`Attacker::seal`] with the patient's real card.
    pub(super) async fn seal_by_card(
        &self,
        card: &Card,
        tip: Option<&ChainTip>,
        readings: &[Vec<u8>],
        findings: &mut Findings,
    ) -> Result<BatchSubmission, Error> {
        self.seal(
            tip,
            readings,
            Arc::clone(&card.signer),
            card.certificate.clone(),
            findings,
        )
        .await
    }

    /// Signs `header` with `signer`; its hash goes to the evidence.
    pub(super) async fn sign(
        &self,
        header: BatchHeader,
        readings: Vec<Vec<u8>>,
        signer: Arc<dyn Signer>,
        certificate: Vec<u8>,
        findings: &mut Findings,
    ) -> Result<BatchSubmission, Error> {
        findings.evidence.headers.push(header.hash());
        let message = header.canonical_bytes();
        let signature = tokio::task::spawn_blocking(move || signer.sign_message(&message))
            .await
            .map_err(|e| {
                Error::Card(wardseal_card::Error::Signing(format!(
                    "the signing task failed: {e}"
                )))
            })??;
        Ok(BatchSubmission {
            header,
            signature,
            patient_certificate: certificate,
            readings,
        })
    }

    /// Delivers `submission` to storage as the collector, and what storage answered.
    pub(super) async fn deliver(&self, submission: &BatchSubmission) -> Result<Observed, Error> {
        Ok(answer(Server::Storage, &self.post_batch(submission).await?))
    }

    /// Posts `submission` to storage's `/v1/batches` with the collector's certificate.
    pub(super) async fn post_batch(&self, submission: &BatchSubmission) -> Result<Reply, Error> {
        let body = serde_json::to_vec(submission).map_err(|e| Error::Request {
            target: "storage's /v1/batches".into(),
            reason: format!("cannot encode the batch: {e}"),
        })?;
        let connection = self
            .base
            .ward
            .connect_storage(&self.base.ward.files().collector)
            .await?;
        send(&connection, Method::POST, "/v1/batches", body).await
    }

    pub(super) async fn tampered_reading(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        let readings = self.forged_readings(&["36.7", "36.8"], findings)?;
        let mut submission = self
            .seal_by_card(&card, tip.as_ref(), &readings, findings)
            .await?;
        // The second reading, 36.8 °C as signed, arrives as 38.8 °C.
        let signed = Reading::from_canonical_bytes(readings.get(1).map_or(&[][..], Vec::as_slice))
            .map_err(wardseal_core::Error::from)?;
        let altered = body_temperature(
            signed.device(),
            "38.8",
            signed.measurement().time(),
            signed.measurement().sequence(),
        )?;
        findings.evidence.leaves.push(altered.leaf_hash());
        if let Some(slot) = submission.readings.get_mut(1) {
            *slot = altered.canonical_bytes();
        }
        self.deliver(&submission).await
    }

    pub(super) async fn forged_signature(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let card = self.card()?;
        let forger = SoftwareSigner::generate(KeyKind::EcdsaP256)?;
        let tip = self.quiet_tip().await?;
        let readings = self.forged_readings(&["36.9"], findings)?;
        let submission = self
            .seal(
                tip.as_ref(),
                &readings,
                Arc::new(forger),
                card.certificate.clone(),
                findings,
            )
            .await?;
        self.deliver(&submission).await
    }
}

fn collector_id(ward: &RunningWard) -> Result<SubjectId, Error> {
    Ok(SubjectId::new(ward.files().ward.as_str()).map_err(wardseal_core::Error::from)?)
}

/// A body-temperature reading of `device`.
fn body_temperature(
    device: &Sgtin96,
    value: &str,
    time: Timestamp,
    sequence: u64,
) -> Result<Reading, Error> {
    let value = Decimal::parse(value)
        .map_err(|source| wardseal_core::reading::ReadingError::Decimal {
            field: "value",
            source,
        })
        .map_err(wardseal_core::Error::from)?;
    let measurement = Measurement::new(
        DataType::BodyTemperature,
        Unit::of(DataType::BodyTemperature),
        Value::Quantity(value),
        time,
        sequence,
    )
    .map_err(wardseal_core::Error::from)?;
    Ok(Reading::new(device.clone(), measurement))
}
