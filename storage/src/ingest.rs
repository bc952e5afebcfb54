//! `POST /v1/batches`: everything a batch must pass before a byte of it is stored.
//!
//! Order of checks (the first failure is the refusal, recorded with its code):
//! the header names the delivering collector; the patient certificate chains to the
//! hospital CA, is not revoked, carries the patient-data-signing usage and is the header's
//! patient's; the card's signature over the header; the count; each reading decodes; the
//! Merkle root recomputed from the readings is the signed root; each reading lies in the
//! signed time range; the header continues the patient's chain (gap, fork, replay); each
//! device is registered, active and assigned to the patient when it measured; each reading
//! passes its device's rule again (a compromised collector cannot push forbidden data).
//! A batch whose header hash is already stored is acknowledged again, not stored twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use wardseal_contracts::replica::{RATE_WINDOW_MICROS, readings_in_window};
use wardseal_contracts::{Alarm, CheckInput, PatientKey};
use wardseal_core::alert::Alert;
use wardseal_core::batch::{BatchError, BatchHeader};
use wardseal_core::exchange::{BatchReceipt, BatchSubmission};
use wardseal_core::hash::Hash;
use wardseal_core::identity::{PATIENT_DATA_SIGNING_OID, Role, SubjectId};
use wardseal_core::merkle;
use wardseal_core::reading::Reading;
use wardseal_core::signature::VerifyingKey;
use wardseal_net::CertificateError;
use wardseal_net::peer::PeerIdentity;
use wardseal_net::server::ServerTls;

use crate::chain::Chain;
use crate::error::{Error, Refusal};
use crate::events::StoredReadings;
use crate::store::{ReadingRow, Store, VerifiedBatch};

/// The registry entries of a batch's devices.
type Registry = HashMap<[u8; 12], Option<wardseal_contracts::Device>>;

/// What ingest needs.
#[derive(Debug, Clone, Copy)]
pub struct Ingest<'a> {
    /// The database.
    pub store: &'a Store,
    /// The chain (registry and rules).
    pub chain: &'a Chain,
    /// The CA bundle and CRLs (shared with the TLS front door).
    pub tls: &'a ServerTls,
}

fn patient_signing_usage() -> &'static [u8] {
    static USAGE: OnceLock<Vec<u8>> = OnceLock::new();
    USAGE.get_or_init(|| PATIENT_DATA_SIGNING_OID.as_bytes().to_vec())
}

/// A batch storage holds: newly or already.
#[derive(Debug)]
pub struct Accepted {
    /// What the collector is told.
    pub receipt: BatchReceipt,
    /// The alerts the batch's alarmed readings raised that were not stored yet.
    pub raised: Vec<Alert>,
    /// The readings, when this submission stored them (`None` for a batch already held).
    pub stored: Option<Arc<StoredReadings>>,
}

impl Accepted {
    /// A batch that was already stored: nothing new raised or stored.
    fn again(receipt: BatchReceipt) -> Self {
        Self {
            receipt,
            raised: Vec::new(),
            stored: None,
        }
    }
}

impl Ingest<'_> {
    /// Verifies and stores a submission delivered by `collector` (already checked to be a
    /// collector). Refusals are recorded, without the readings.
    pub async fn submit(
        &self,
        collector: &PeerIdentity,
        body: &[u8],
    ) -> Result<BatchReceipt, Error> {
        self.submit_with_alerts(collector, body)
            .await
            .map(|accepted| accepted.receipt)
    }

    /// [`Ingest::submit`], and the alerts the batch's alarmed readings raised that were
    /// not stored yet (each reading's interpretation and alert are recorded with
    /// [`crate::alerts::record_batch`]).
    pub async fn submit_with_alerts(
        &self,
        collector: &PeerIdentity,
        body: &[u8],
    ) -> Result<Accepted, Error> {
        let ward = collector
            .identity
            .subject_id()
            .map(|subject| subject.as_str().to_owned())
            .unwrap_or_default();
        let submission: BatchSubmission = match serde_json::from_slice(body) {
            Ok(submission) => submission,
            Err(error) => {
                let refusal = Refusal::Malformed(error.to_string());
                self.store
                    .record_rejection(
                        &ward,
                        None,
                        None,
                        None,
                        refusal.code(),
                        &refusal.to_string(),
                    )
                    .await?;
                return Err(refusal.into());
            }
        };
        let header = &submission.header;
        let header_hash = header.hash();
        if let Some((sequence, count)) = self.store.batch_stored(&header_hash).await? {
            return Ok(Accepted::again(BatchReceipt {
                header_hash,
                sequence,
                count,
                newly_stored: false,
            }));
        }
        // A batch a collector withheld and declared as a gap, now sent after a fix: it
        // is checked like any other but for chain continuity (the gap holds its place).
        let filling = crate::gap::is_open(self.store, &header_hash).await?;
        let (rows, alerts) = match self.verify(&ward, &submission, filling).await {
            Ok(rows) => rows,
            Err(Error::Refused(refusal)) => {
                return Err(self.reject(&ward, header, &header_hash, refusal).await);
            }
            Err(other) => return Err(other),
        };
        let verified = VerifiedBatch {
            header,
            header_hash,
            signature: &submission.signature,
            patient_certificate: &submission.patient_certificate,
            readings: rows,
        };
        let stored = self.store.insert_batch(&verified).await?;
        if !stored {
            // Stored meanwhile by a concurrent delivery: either this very batch (acknowledge)
            // or another batch took the place (a replay of it).
            if let Some((sequence, count)) = self.store.batch_stored(&header_hash).await? {
                return Ok(Accepted::again(BatchReceipt {
                    header_hash,
                    sequence,
                    count,
                    newly_stored: false,
                }));
            }
            let refusal = Refusal::Replay {
                sequence: header.sequence(),
                tip: header.sequence(),
            };
            return Err(self.reject(&ward, header, &header_hash, refusal).await);
        }
        if filling {
            crate::gap::mark_filled(self.store, &header_hash).await?;
        }
        // The batch is stored: a failure here must not refuse it (the collector's own
        // push of each alert is the other path to the record).
        let raised = crate::alerts::record_batch(self.store, &alerts)
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "recording a batch's alarmed readings failed");
                Vec::new()
            });
        Ok(Accepted {
            receipt: BatchReceipt {
                header_hash,
                sequence: header.sequence(),
                count: header.count(),
                newly_stored: true,
            },
            raised,
            stored: Some(Arc::new(StoredReadings {
                patient: header.patient().as_str().to_owned(),
                header_hash,
                sequence: header.sequence(),
                stored_at_us: crate::store::now_micros(),
                readings: verified.readings,
            })),
        })
    }

    /// Records a refused batch (not its readings) and turns the refusal into the error the
    /// collector receives; a failure to record is reported instead.
    async fn reject(
        &self,
        ward: &str,
        header: &BatchHeader,
        header_hash: &Hash,
        refusal: Refusal,
    ) -> Error {
        let recorded = self
            .store
            .record_rejection(
                ward,
                Some(header.patient().as_str()),
                Some(header.sequence()),
                Some(header_hash),
                refusal.code(),
                &refusal.to_string(),
            )
            .await;
        match recorded {
            Ok(()) => refusal.into(),
            Err(error) => error,
        }
    }

    async fn verify(
        &self,
        ward: &str,
        submission: &BatchSubmission,
        filling_gap: bool,
    ) -> Result<(Vec<ReadingRow>, Vec<Alert>), Error> {
        let header = &submission.header;
        let patient = header.patient().as_str();
        if header.collector().as_str() != ward {
            return Err(Refusal::CollectorMismatch {
                named: header.collector().as_str().to_owned(),
                delivering: ward.to_owned(),
            }
            .into());
        }
        verify_patient_certificate(self.tls, header.patient(), &submission.patient_certificate)?;
        let key = VerifyingKey::from_certificate_der(&submission.patient_certificate)
            .map_err(|error| Refusal::PatientCertificateInvalid(error.to_string()))?;
        header
            .verify_signature(&key, &submission.signature)
            .map_err(|error| Refusal::BadSignature(error.to_string()))?;
        let sent = u64::try_from(submission.readings.len()).unwrap_or(u64::MAX);
        if sent != header.count() {
            return Err(Refusal::CountMismatch {
                header: header.count(),
                sent,
            }
            .into());
        }
        let mut readings = Vec::with_capacity(submission.readings.len());
        let mut leaves = Vec::with_capacity(submission.readings.len());
        for (index, bytes) in submission.readings.iter().enumerate() {
            let reading = Reading::from_canonical_bytes(bytes).map_err(|error| {
                Refusal::MalformedReading {
                    index,
                    reason: error.to_string(),
                }
            })?;
            leaves.push(merkle::leaf_hash(bytes));
            readings.push(reading);
        }
        let computed = merkle::root(&leaves);
        if computed != header.root() {
            return Err(Refusal::RootMismatch {
                computed,
                signed: header.root(),
            }
            .into());
        }
        let parts = header.parts();
        for (index, reading) in readings.iter().enumerate() {
            let time = reading.measurement().time();
            if time < parts.first_time || time > parts.last_time {
                return Err(Refusal::OutsideTimeRange { index }.into());
            }
        }
        if !filling_gap {
            let tip = self.store.tip(patient).await?;
            header
                .check_continues(tip.as_ref())
                .map_err(|error| match error {
                    BatchError::Gap { expected, got } => Refusal::ChainGap { expected, got },
                    BatchError::Fork { sequence, .. } => Refusal::ChainFork { sequence },
                    BatchError::Replay { sequence, tip } => Refusal::Replay { sequence, tip },
                    other => Refusal::Malformed(other.to_string()),
                })?;
        }
        let registry = self.check_devices(patient, &readings).await?;
        let alarms = self.check_rules(patient, &readings, &registry).await?;
        let now = crate::store::now_micros();
        let alerts = match SubjectId::new(ward) {
            Ok(ward) => readings
                .iter()
                .zip(&leaves)
                .zip(alarms)
                .filter_map(|((reading, leaf), alarm)| {
                    Some(Alert::clinical(
                        ward.clone(),
                        Some(header.patient().clone()),
                        reading,
                        *leaf,
                        alarm?.facts(),
                        now,
                    ))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let rows = readings
            .iter()
            .zip(leaves)
            .zip(&submission.readings)
            .map(|((reading, leaf_hash), bytes)| ReadingRow {
                leaf_hash,
                device: reading.device().pure_identity_uri(),
                data_type: reading.measurement().data_type().code(),
                measured_at: reading.measurement().time().unix_micros(),
                canonical: bytes.clone(),
            })
            .collect();
        Ok((rows, alerts))
    }

    async fn check_devices(&self, patient: &str, readings: &[Reading]) -> Result<Registry, Error> {
        let epcs = readings
            .iter()
            .map(|reading| reading.device().to_bytes())
            .collect::<Vec<_>>();
        let registry = self.chain.devices(&epcs).await?;
        let assignments = self.store.patient_devices(patient).await?;
        for reading in readings {
            let device = reading.device().pure_identity_uri();
            match registry.get(&reading.device().to_bytes()) {
                Some(Some(entry)) if entry.active => {}
                Some(Some(_)) => return Err(Refusal::DeviceInactive { device }.into()),
                _ => return Err(Refusal::DeviceNotRegistered { device }.into()),
            }
            let time = reading.measurement().time().unix_micros();
            let assigned = assignments.iter().any(|(assigned, since, until)| {
                *assigned == device && *since <= time && until.is_none_or(|until| time < until)
            });
            if !assigned {
                return Err(Refusal::DeviceNotAssigned {
                    device,
                    patient: patient.to_owned(),
                }
                .into());
            }
        }
        Ok(registry)
    }

    /// Re-checks each reading's rule (with `patient`'s own alarm limits); returns each
    /// reading's alarm, if it crossed an alarm limit.
    async fn check_rules(
        &self,
        patient: &str,
        readings: &[Reading],
        groups: &Registry,
    ) -> Result<Vec<Option<Alarm>>, Error> {
        let patient_key = PatientKey::for_subject(patient);
        let mut alarms = Vec::with_capacity(readings.len());
        let group_of = |reading: &Reading| {
            groups
                .get(&reading.device().to_bytes())
                .and_then(|entry| entry.as_ref())
                .map(|entry| entry.group)
                .unwrap_or_default()
        };
        // Rate: readings of a type from a device in the 60 s ending with each reading,
        // counting stored readings and this batch's. The count only matters where the
        // device's rule limits the rate: for an unlimited type, reading a minute of the
        // device's stored readings back (tens of thousands at a high rate) for every batch
        // would change no decision, so only rate-limited (device, type) pairs are read.
        let mut times: HashMap<(String, u16), (u32, Vec<i64>)> = HashMap::new();
        for reading in readings {
            let key = (
                reading.device().pure_identity_uri(),
                reading.measurement().data_type().code(),
            );
            times
                .entry(key)
                .or_insert_with(|| (group_of(reading), Vec::new()))
                .1
                .push(reading.measurement().time().unix_micros());
        }
        let mut counted: HashSet<(String, u16)> = HashSet::new();
        // The rule book may change while stored readings are read (the chain moves on):
        // the decisions are made under the guard that found nothing left to read, so a
        // rate limit that appeared meanwhile is counted too. Each pass reads at least one
        // more pair, so this ends.
        let rules = loop {
            let rules = self.chain.rules().await?;
            let needed: Vec<(String, u16)> = times
                .iter()
                .filter(|(key, (group, _))| {
                    !counted.contains(*key)
                        && rules
                            .group_rule(*group)
                            .and_then(|rule| rules.type_rule(rule, key.1))
                            .is_some_and(|rule| rule.max_per_minute != 0)
                })
                .map(|(key, _)| key.clone())
                .collect();
            if needed.is_empty() {
                break rules;
            }
            drop(rules);
            for key in needed {
                let Some((_, batch_times)) = times.get_mut(&key) else {
                    continue;
                };
                let first = batch_times.iter().copied().min().unwrap_or_default();
                let last = batch_times.iter().copied().max().unwrap_or_default();
                let stored = self
                    .store
                    .reading_times(&key.0, key.1, first - RATE_WINDOW_MICROS, last)
                    .await?;
                batch_times.extend(stored);
                counted.insert(key);
            }
        };
        for (_, batch_times) in times.values_mut() {
            batch_times.sort_unstable();
        }
        for (index, reading) in readings.iter().enumerate() {
            let measurement = reading.measurement();
            let time = measurement.time().unix_micros();
            let key = (
                reading.device().pure_identity_uri(),
                measurement.data_type().code(),
            );
            let window = times
                .get(&key)
                .map_or(1, |(_, all)| readings_in_window(all, time));
            let mut input = CheckInput::for_measurement(
                group_of(reading),
                measurement,
                u32::try_from(window).unwrap_or(u32::MAX),
            )
            .map_err(|error| Refusal::RuleViolation {
                index,
                verdict: error.to_string(),
            })?;
            input.patient = Some(patient_key);
            let decision = rules.check(&input);
            if !decision.is_allowed() {
                return Err(Refusal::RuleViolation {
                    index,
                    verdict: format!("{:?}", decision.verdict()),
                }
                .into());
            }
            alarms.push(decision.alarm().copied());
        }
        Ok(alarms)
    }
}

/// The patient certificate must chain to the CA, be valid and unrevoked now, carry the
/// patient-data-signing usage and name `patient` (a batch header's or a gap record's).
pub(crate) fn verify_patient_certificate(
    tls: &ServerTls,
    patient: &SubjectId,
    der: &[u8],
) -> Result<(), Refusal> {
    let identity = tls
        .verify_certificate(der, patient_signing_usage(), std::time::SystemTime::now())
        .map_err(|error| match error {
            CertificateError::Revoked => Refusal::PatientCertificateRevoked,
            other => Refusal::PatientCertificateInvalid(other.to_string()),
        })?;
    let subject = identity
        .identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned());
    if identity.role() != Role::Patient || subject.as_deref() != Some(patient.as_str()) {
        return Err(Refusal::PatientMismatch {
            certificate: format!("{} {}", identity.role(), subject.unwrap_or_default()),
            patient: patient.as_str().to_owned(),
        });
    }
    Ok(())
}

/// The header hash of a submission, for clients.
pub fn header_hash(submission: &BatchSubmission) -> Hash {
    submission.header.hash()
}
