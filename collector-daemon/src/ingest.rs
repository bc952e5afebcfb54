//! The ingest checks, in the order the wire reports them:
//!
//! 1. the body parses (one reading or an array; each reading on its own);
//! 2. the client certificate's role is *device* (identity from the certificate's
//!    extension only, never from the body);
//! 3. the EPC is registered and active in the registry replica, with the certificate's
//!    group;
//! 4. the group's rule allows the data type; 5. the unit and value range; 6. the rate
//!    (readings of this type from this device in the last 60 s, counted at arrival);
//! 7. the device time is within the skew window;
//! 8. the sequence number is above the device's high-water mark (decided by the spool's
//!    writer, in the transaction that makes the reading durable).
//!
//! Every decision becomes a leaf of the decision log. [`Ingest::submit`] returns the
//! status and JSON body the device receives; [`Rejection::status`] and
//! [`Rejection::code`] are the one map from refusal to wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use wardseal_contracts::{
    Alarm, CheckInput, Device, LedgerEvent, PatientKey, RateWindow, Replica as ChainReplica,
    RuleBook, Verdict,
};
use wardseal_core::epc::Sgtin96;
use wardseal_core::exchange::{DeviceAssignment, WardAssignments};
use wardseal_core::hash::Hash;
use wardseal_core::identity::{Identity, Role, SubjectId};
use wardseal_core::reading::{Measurement, Reading, Timestamp, json};

use crate::alerts::{Activity, Alerts};
use crate::decision_log::DecisionRecord;
use crate::error::Rejection;
use crate::metrics::Metrics;
use crate::spool::{Entry, Outcome, Spool};

/// The collector's replica of the chain's registry and rules (`wardseal-contracts`'
/// [`ChainReplica`], shared between the ledger follower and the ingest checks), and of
/// storage's device-to-patient assignments.
#[derive(Debug, Default)]
pub struct Replica {
    chain: RwLock<ChainReplica>,
    /// By the device's pure identity: storage keeps assignments without the tag's filter
    /// value (its `WardAssignments` carry filter 0), while a certificate's EPC has one.
    /// Each device's assignments with their intervals (current and recently ended).
    assignments: RwLock<HashMap<String, Vec<DeviceAssignment>>>,
}

impl Replica {
    /// A replica holding `devices` and `rules`.
    pub fn new(devices: Vec<Device>, rules: RuleBook) -> Self {
        Self::from_chain(ChainReplica::new(devices, rules))
    }

    /// A replica of the chain's state `chain` (as [`ChainReplica::bootstrap`] reads it),
    /// with no assignments yet.
    pub fn from_chain(chain: ChainReplica) -> Self {
        Self {
            chain: RwLock::new(chain),
            assignments: RwLock::default(),
        }
    }

    /// Applies a followed ledger event (rule changes, registrations, deactivations).
    pub fn apply(&self, event: &LedgerEvent) {
        if let Ok(mut chain) = self.chain.write() {
            chain.apply(event);
        }
    }

    /// Replaces the assignments; returns them for binding waiting readings.
    pub fn set_assignments(&self, ward: &WardAssignments) -> Vec<DeviceAssignment> {
        let mut by_device: HashMap<String, Vec<DeviceAssignment>> = HashMap::new();
        for assignment in &ward.assignments {
            by_device
                .entry(assignment.device.pure_identity_uri())
                .or_default()
                .push(assignment.clone());
        }
        if let Ok(mut assignments) = self.assignments.write() {
            *assignments = by_device;
        }
        ward.assignments.clone()
    }

    /// The patient `device` measures now (its assignment without an end), if any.
    pub fn patient(&self, device: &Sgtin96) -> Option<SubjectId> {
        self.assignments.read().ok().and_then(|a| {
            a.get(&device.pure_identity_uri())?
                .iter()
                .find(|assignment| assignment.until.is_none())
                .map(|assignment| assignment.patient.clone())
        })
    }

    /// The patient `device` measured at `time`: the assignment valid then, the rule
    /// storage checks. `None` leaves the reading waiting for one.
    pub fn patient_at(&self, device: &Sgtin96, time: Timestamp) -> Option<SubjectId> {
        self.assignments.read().ok().and_then(|a| {
            a.get(&device.pure_identity_uri())?
                .iter()
                .find(|assignment| assignment.holds_at(time))
                .map(|assignment| assignment.patient.clone())
        })
    }

    fn device(&self, epc: &[u8; 12]) -> Option<Device> {
        self.chain
            .read()
            .ok()
            .and_then(|chain| chain.device(epc).cloned())
    }

    fn check(&self, input: &CheckInput) -> Option<(wardseal_contracts::Decision, u32)> {
        let chain = self.chain.read().ok()?;
        let rules = chain.rules();
        let max = rules
            .group_rule(input.group)
            .and_then(|rule| rules.type_rule(rule, input.data_type))
            .map_or(0, |t| t.max_per_minute);
        Some((rules.check(input), max))
    }
}

/// How far a reading's device time may be from the collector's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewWindow {
    /// How old a reading may be (devices buffer while offline), seconds.
    pub past_secs: u64,
    /// How far in the future, seconds.
    pub future_secs: u64,
}

/// One reading's result in the response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReadingResult {
    /// Durable; will be signed by the patient's card and delivered.
    Accepted {
        /// The reading's leaf hash (RFC 9162, over its canonical bytes).
        leaf: Hash,
        /// The alarm limit the value crossed, if any: accepted, and flagged.
        #[serde(skip_serializing_if = "Option::is_none")]
        alarm: Option<AlarmFlag>,
    },
    /// Refused.
    Rejected {
        /// The machine code.
        code: &'static str,
        /// The sentence.
        message: String,
    },
}

/// A reading past a clinical alarm limit, as its ingest result says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlarmFlag {
    /// The FHIR ObservationInterpretation code: L, H, LL or HH.
    pub interpretation: &'static str,
    /// The IEC 60601-1-8 priority: low, medium or high.
    pub priority: &'static str,
}

impl From<&Alarm> for AlarmFlag {
    fn from(alarm: &Alarm) -> Self {
        Self {
            interpretation: alarm.interpretation().code(),
            priority: alarm.priority().name(),
        }
    }
}

/// What a device receives for a `POST /v1/readings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The HTTP status: 202 when every reading was accepted, otherwise the first refusal's.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl Response {
    fn whole(rejection: &Rejection) -> Self {
        Self {
            status: rejection.status(),
            body: serde_json::json!({"code": rejection.code(), "message": rejection.to_string()}),
        }
    }

    fn per_reading(results: Vec<(ReadingResult, Option<Rejection>)>) -> Self {
        let first = results.iter().find_map(|(_, r)| r.clone());
        let list: Vec<ReadingResult> = results.into_iter().map(|(r, _)| r).collect();
        match first {
            None => Self {
                status: 202,
                body: serde_json::json!({"results": list}),
            },
            Some(rejection) => Self {
                status: rejection.status(),
                body: serde_json::json!({
                    "code": rejection.code(),
                    "message": rejection.to_string(),
                    "results": list,
                }),
            },
        }
    }
}

type RateKey = ([u8; 12], u16);

/// The ingest engine: checks, spool, decision log, metrics.
#[derive(Debug)]
pub struct Ingest {
    replica: Arc<Replica>,
    spool: Spool,
    metrics: Arc<Metrics>,
    skew: SkewWindow,
    rate: Mutex<HashMap<RateKey, RateWindow>>,
    alerts: Option<(Alerts, Arc<Activity>)>,
}

impl Ingest {
    /// An engine over `replica` and `spool`.
    pub fn new(
        replica: Arc<Replica>,
        spool: Spool,
        metrics: Arc<Metrics>,
        skew: SkewWindow,
    ) -> Self {
        Self {
            replica,
            spool,
            metrics,
            skew,
            rate: Mutex::default(),
            alerts: None,
        }
    }

    /// Raises a clinical alert through `alerts` for every accepted reading past an alarm
    /// limit (durable before the device's 202), and records each device's activity in
    /// `activity` for the silence alert.
    #[must_use]
    pub fn with_alerts(mut self, alerts: Alerts, activity: Arc<Activity>) -> Self {
        self.alerts = Some((alerts, activity));
        self
    }

    /// The replica the checks read.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// Checks and spools the readings in `body` from the peer whose verified certificate
    /// is `certificate_der` with `identity`.
    pub async fn submit(
        &self,
        identity: &Identity,
        certificate_der: &[u8],
        body: &[u8],
    ) -> Response {
        let subject = Hash::sha256(certificate_der);
        let now = Timestamp::now();
        let refuse_all = |rejection: Rejection, device: Option<Sgtin96>| {
            self.log_refusal(now, subject, device, None, &rejection);
            Response::whole(&rejection)
        };
        let parsed = match json::parse_body(body) {
            Ok(parsed) => parsed,
            Err(error) => {
                return refuse_all(
                    Rejection::MalformedBody(error.to_string()),
                    identity.device_id().cloned(),
                );
            }
        };
        if identity.role() != Role::Device {
            return refuse_all(
                Rejection::NotADevice {
                    role: identity.role().name().to_owned(),
                },
                None,
            );
        }
        let (Some(device), Some(group)) = (identity.device_id(), identity.group_id()) else {
            return refuse_all(
                Rejection::NotADevice {
                    role: "device without an EPC and group".into(),
                },
                None,
            );
        };
        let epc = device.to_bytes();
        match self.replica.device(&epc) {
            None => {
                return refuse_all(
                    Rejection::UnknownDevice(device.clone()),
                    Some(device.clone()),
                );
            }
            Some(registered) if !registered.active => {
                return refuse_all(
                    Rejection::InactiveDevice(device.clone()),
                    Some(device.clone()),
                );
            }
            Some(registered) if registered.group != group.0 => {
                return refuse_all(
                    Rejection::GroupMismatch {
                        device: device.clone(),
                        certificate: group.0,
                        registry: registered.group,
                    },
                    Some(device.clone()),
                );
            }
            Some(_) => {}
        }
        let patient = self.replica.patient(device);
        let mut results: Vec<Option<(ReadingResult, Option<Rejection>)>> = Vec::new();
        let mut entries = Vec::new();
        let mut slots = Vec::new();
        let mut alarms = Vec::new();
        let patient_key = patient
            .as_ref()
            .map(|p| PatientKey::for_subject(p.as_str()));
        for (index, measurement) in parsed.into_iter().enumerate() {
            let checked = measurement
                .map_err(|e| Rejection::MalformedReading(e.to_string()))
                .and_then(|m| self.check(group.0, &epc, patient_key, m, now));
            match checked {
                Ok((measurement, alarm)) => {
                    // Bound to the assignment valid when it was measured, or none yet.
                    let bound = self.replica.patient_at(device, measurement.time());
                    let reading = Reading::new(device.clone(), measurement);
                    // A clinical alert goes into the outbox in the reading's own
                    // transaction: durable with it, and no second commit before the 202.
                    let clinical = match (&alarm, &self.alerts) {
                        (Some(alarm), Some((alerts, _))) => {
                            let alert = wardseal_core::alert::Alert::clinical(
                                alerts.ward().clone(),
                                bound.clone(),
                                &reading,
                                reading.leaf_hash(),
                                alarm.facts(),
                                now.unix_micros(),
                            );
                            crate::alerts::outbox_entry(&alert)
                                .ok()
                                .map(|queued| (alert, queued))
                        }
                        _ => None,
                    };
                    alarms.push(
                        alarm.map(|alarm| (alarm, clinical.as_ref().map(|(a, _)| a.clone()))),
                    );
                    entries.push(Entry {
                        reading,
                        patient: bound,
                        subject,
                        alert: clinical.map(|(_, queued)| queued),
                    });
                    slots.push(index);
                    results.push(None);
                }
                Err(rejection) => {
                    self.log_refusal(now, subject, Some(device.clone()), None, &rejection);
                    results.push(Some(rejected(rejection)));
                }
            }
        }
        let mut raised = Vec::new();
        let mut data_types: Vec<&'static str> = entries
            .iter()
            .map(|entry| entry.reading.measurement().data_type().name())
            .collect();
        data_types.sort_unstable();
        data_types.dedup();
        if !entries.is_empty() {
            match self.spool.append(entries).await {
                Ok(outcomes) => {
                    for ((slot, outcome), alarm) in slots.into_iter().zip(outcomes).zip(alarms) {
                        let result = match outcome {
                            Outcome::Accepted(leaf) => {
                                self.metrics.accepted(1);
                                let flag = alarm.as_ref().map(|(alarm, _)| AlarmFlag::from(alarm));
                                if let Some((_, Some(alert))) = alarm {
                                    raised.push(alert);
                                }
                                (ReadingResult::Accepted { leaf, alarm: flag }, None)
                            }
                            Outcome::Replay {
                                sequence,
                                high_water,
                            } => {
                                let rejection = Rejection::Replay {
                                    sequence,
                                    high_water,
                                };
                                self.metrics.rejected(&rejection);
                                rejected(rejection)
                            }
                        };
                        if let Some(place) = results.get_mut(slot) {
                            *place = Some(result);
                        }
                    }
                }
                Err(rejection) => {
                    for slot in slots {
                        self.metrics.rejected(&rejection);
                        if let Some(place) = results.get_mut(slot) {
                            *place = Some(rejected(rejection.clone()));
                        }
                    }
                }
            }
        }
        let results: Vec<_> = results.into_iter().flatten().collect();
        if let Some((alerts, activity)) = &self.alerts {
            if results
                .iter()
                .any(|(result, _)| matches!(result, ReadingResult::Accepted { .. }))
            {
                for data_type in data_types {
                    activity.seen(
                        device.pure_identity_uri(),
                        patient.clone(),
                        data_type,
                        now.unix_micros(),
                    );
                }
            }
            // Committed with the readings, before the 202: an accepted alarm reading's
            // alert survives a crash. Now on its way to storage at once.
            alerts.hand_off(raised);
        }
        if let [(_, Some(rejection))] = results.as_slice() {
            return Response::whole(rejection);
        }
        Response::per_reading(results)
    }

    /// Checks 4 to 7 for one reading; an accepted reading past an alarm limit (the
    /// patient's own, if set) comes back with its flag.
    fn check(
        &self,
        group: u32,
        epc: &[u8; 12],
        patient: Option<PatientKey>,
        measurement: Measurement,
        now: Timestamp,
    ) -> Result<(Measurement, Option<Alarm>), Rejection> {
        let data_type = measurement.data_type();
        let key = (*epc, data_type.code());
        let now_us = now.unix_micros();
        let per_minute = self.rate.lock().map_or(1, |mut windows| {
            windows.entry(key).or_default().count_with(now_us)
        });
        let mut input =
            CheckInput::for_measurement(group, &measurement, per_minute).map_err(|_| {
                Rejection::OutOfRange {
                    component: 0,
                    what: "outside the representable values",
                }
            })?;
        input.patient = patient;
        let Some((decision, max)) = self.replica.check(&input) else {
            return Err(Rejection::Unavailable);
        };
        let name = || data_type.name().to_owned();
        match decision.verdict() {
            Verdict::Allowed => {}
            Verdict::NoRuleForGroup => return Err(Rejection::NoRuleForGroup(group)),
            Verdict::DataTypeNotAllowed => {
                return Err(Rejection::DataTypeNotAllowed {
                    group,
                    data_type: name(),
                });
            }
            Verdict::WrongUnit => {
                return Err(Rejection::WrongUnit {
                    data_type: name(),
                    unit: measurement.unit().as_str().to_owned(),
                });
            }
            Verdict::WrongComponentCount => {
                return Err(Rejection::OutOfRange {
                    component: 0,
                    what: "not of the shape",
                });
            }
            Verdict::InvalidScale => {
                return Err(Rejection::OutOfRange {
                    component: decision.component(),
                    what: "more precise than the limit",
                });
            }
            Verdict::BelowMinimum => {
                return Err(Rejection::OutOfRange {
                    component: decision.component(),
                    what: "below the minimum",
                });
            }
            Verdict::AboveMaximum => {
                return Err(Rejection::OutOfRange {
                    component: decision.component(),
                    what: "above the maximum",
                });
            }
            Verdict::RateExceeded => {
                return Err(Rejection::RateExceeded {
                    data_type: name(),
                    max,
                });
            }
        }
        let time = measurement.time().unix_micros();
        let past = i64::try_from(self.skew.past_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let future =
            i64::try_from(self.skew.future_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        if time < now_us.saturating_sub(past) || time > now_us.saturating_add(future) {
            return Err(Rejection::Skew {
                time: measurement.time(),
                past_secs: self.skew.past_secs,
                future_secs: self.skew.future_secs,
            });
        }
        if let Ok(mut windows) = self.rate.lock() {
            windows.entry(key).or_default().record(now_us);
        }
        Ok((measurement, decision.alarm().copied()))
    }

    fn log_refusal(
        &self,
        time: Timestamp,
        subject: Hash,
        device: Option<Sgtin96>,
        sequence: Option<u64>,
        rejection: &Rejection,
    ) {
        self.metrics.rejected(rejection);
        let record = DecisionRecord {
            time,
            subject,
            device,
            sequence,
            outcome: rejection.code(),
            reading: None,
        };
        self.spool.record_decisions(vec![record.leaf_hash()]);
    }
}

fn rejected(rejection: Rejection) -> (ReadingResult, Option<Rejection>) {
    (
        ReadingResult::Rejected {
            code: rejection.code(),
            message: rejection.to_string(),
        },
        Some(rejection),
    )
}
