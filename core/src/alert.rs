//! Alerts: what the collector and storage raise when a reading crosses a clinical alarm
//! limit (clinical) or when the data path itself needs a person (technical).
//!
//! One [`Alert`] record is shared by both sides. A clinical alert's id is derived from
//! the reading's leaf hash and the limit it crossed ([`AlertId::clinical`]), so the alert
//! the collector raises at ingest and the one storage raises when the batch arrives are
//! the same record: storing it twice changes nothing.
//!
//! Life cycle: [`AlertState::Raised`] → [`AlertState::Acknowledged`] (by whom, when) →
//! [`AlertState::Resolved`]; a raised alert not acknowledged in the time its priority
//! allows becomes [`AlertState::Escalated`] (and can still be acknowledged).

use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::identity::SubjectId;
use crate::reading::{Reading, Value};

/// The domain tag of clinical alert ids (so no other SHA-256 in wardseal collides).
const CLINICAL_TAG: &[u8] = b"wardseal/alert/clinical/v1\0";
/// The domain tag of technical alert ids.
const TECHNICAL_TAG: &[u8] = b"wardseal/alert/technical/v1\0";

/// An alert's id: SHA-256 over a domain tag and what makes the alert the one it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(pub Hash);

impl AlertId {
    /// The id of the clinical alert for the reading with leaf hash `leaf` crossing the
    /// limit written `limit` (the rule engine's canonical form, e.g. `0:<=40:high`).
    pub fn clinical(leaf: &Hash, limit: &str) -> Self {
        let mut bytes = Vec::with_capacity(CLINICAL_TAG.len() + 32 + limit.len());
        bytes.extend_from_slice(CLINICAL_TAG);
        bytes.extend_from_slice(leaf.as_bytes());
        bytes.extend_from_slice(limit.as_bytes());
        Self(Hash::sha256(&bytes))
    }

    /// The id of a technical alert: `code` about `subject` (a device EPC, a patient, the
    /// spool, a batch) in `ward`, for the condition that started at `since_us` (µs since
    /// the epoch). The same condition raised again (after a restart) has the same id.
    pub fn technical(ward: &SubjectId, code: AlertCode, subject: &str, since_us: i64) -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(TECHNICAL_TAG);
        for part in [ward.as_str(), code.name(), subject] {
            bytes.extend_from_slice(part.as_bytes());
            bytes.push(0);
        }
        bytes.extend_from_slice(&since_us.to_be_bytes());
        Self(Hash::sha256(&bytes))
    }

    /// Parses the 64 hex digits of an id.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Hash::from_slice(&bytes).ok().map(Self)
    }
}

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Clinical (a limit crossed) or technical (the data path needs a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A reading crossed a clinical alarm limit.
    Clinical,
    /// A device, card, spool or batch needs attention.
    Technical,
}

/// What the alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCode {
    /// A reading crossed an alarm limit (clinical).
    LimitCrossed,
    /// A device sent nothing for longer than its expected period allows.
    DeviceSilent,
    /// A patient's readings wait because their card is out of its reader.
    CardAbsent,
    /// The collector's spool is filling up.
    SpoolFilling,
    /// Storage refused a batch for good; it waits in quarantine.
    BatchQuarantined,
    /// Readings wait because their device has no assignment valid at their time.
    UnassignedReadings,
}

impl AlertCode {
    /// The name on the wire and in the database.
    pub fn name(self) -> &'static str {
        match self {
            AlertCode::LimitCrossed => "limit_crossed",
            AlertCode::DeviceSilent => "device_silent",
            AlertCode::CardAbsent => "card_absent",
            AlertCode::SpoolFilling => "spool_filling",
            AlertCode::BatchQuarantined => "batch_quarantined",
            AlertCode::UnassignedReadings => "unassigned_readings",
        }
    }

    /// The kind of alert this code raises.
    pub fn kind(self) -> AlertKind {
        match self {
            AlertCode::LimitCrossed => AlertKind::Clinical,
            _ => AlertKind::Technical,
        }
    }
}

/// An alarm priority, in IEC 60601-1-8's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Awareness is required.
    Low,
    /// Prompt response is required.
    Medium,
    /// Immediate response is required.
    High,
}

impl Priority {
    /// `low`, `medium` or `high`.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// The priority named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "low" => Priority::Low,
            "medium" => Priority::Medium,
            "high" => Priority::High,
            _ => return None,
        })
    }
}

/// A FHIR R4 ObservationInterpretation code for a reading past an alarm limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interpretation {
    /// Low.
    L,
    /// High.
    H,
    /// Critical low.
    LL,
    /// Critical high.
    HH,
}

impl Interpretation {
    /// The code: `L`, `H`, `LL`, `HH`.
    pub fn code(self) -> &'static str {
        match self {
            Interpretation::L => "L",
            Interpretation::H => "H",
            Interpretation::LL => "LL",
            Interpretation::HH => "HH",
        }
    }

    /// The interpretation with code `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "L" => Interpretation::L,
            "H" => Interpretation::H,
            "LL" => Interpretation::LL,
            "HH" => Interpretation::HH,
            _ => return None,
        })
    }
}

/// Where an alert is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Raised, nobody has acknowledged it yet.
    Raised,
    /// Not acknowledged in the time its priority allows.
    Escalated,
    /// A responsible clinician has seen it.
    Acknowledged,
    /// The condition is over.
    Resolved,
}

impl AlertState {
    /// The name on the wire and in the database.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Raised => "raised",
            AlertState::Escalated => "escalated",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    /// The state named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "raised" => AlertState::Raised,
            "escalated" => AlertState::Escalated,
            "acknowledged" => AlertState::Acknowledged,
            "resolved" => AlertState::Resolved,
            _ => return None,
        })
    }
}

/// The alarm limit a clinical alert's reading crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossedLimit {
    /// The limit in the rule engine's canonical form (`component:trigger bound:priority`,
    /// e.g. `0:<=40:high`); part of the alert id.
    pub canonical: String,
    /// The value component it watches (0 for a quantity; 0 systolic, 1 diastolic).
    pub component: u8,
    /// `<`, `<=`, `>` or `>=`.
    pub trigger: String,
    /// The bound, as a decimal.
    pub bound: String,
}

/// What a technical alert says (see [`Alert::technical`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TechnicalAlert {
    /// What it is about.
    pub code: AlertCode,
    /// The device EPC, patient, `spool` or batch concerned: with `code` and `since_us`
    /// it makes the id, so the same condition raised again is the same alert.
    pub subject: String,
    /// When the condition started, µs since the epoch.
    pub since_us: i64,
    /// The patient, when one is concerned.
    pub patient: Option<SubjectId>,
    /// The device (EPC pure-identity URI), when one is concerned.
    pub device: Option<String>,
    /// Its priority.
    pub priority: Priority,
    /// A sentence for the person who reads it.
    pub message: String,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its id (derived: see [`AlertId`]).
    pub id: AlertId,
    /// Clinical or technical.
    pub kind: AlertKind,
    /// What it is about.
    pub code: AlertCode,
    /// The ward (the collector's subject) it comes from.
    pub ward: SubjectId,
    /// The patient, when known.
    pub patient: Option<SubjectId>,
    /// The device (EPC pure-identity URI), when one is concerned.
    pub device: Option<String>,
    /// The reading's leaf hash (clinical alerts).
    pub reading: Option<Hash>,
    /// The reading's data type name (clinical alerts).
    pub data_type: Option<String>,
    /// The reading's value as text (clinical alerts).
    pub value: Option<String>,
    /// The limit crossed (clinical alerts).
    pub limit: Option<CrossedLimit>,
    /// Its priority.
    pub priority: Priority,
    /// The FHIR interpretation (clinical alerts).
    pub interpretation: Option<Interpretation>,
    /// When it was raised, µs since the epoch.
    pub raised_at_us: i64,
    /// A sentence for the person who reads it.
    pub message: String,
    /// Where it is in its life cycle.
    pub state: AlertState,
    /// Who acknowledged it (subject id).
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged, µs since the epoch.
    pub acknowledged_at_us: Option<i64>,
    /// When it escalated, µs since the epoch.
    pub escalated_at_us: Option<i64>,
    /// Who resolved it: a clinician or administrator (subject id), or the ward whose
    /// collector saw a technical condition clear.
    #[serde(default)]
    pub resolved_by: Option<String>,
    /// When it was resolved, µs since the epoch.
    #[serde(default)]
    pub resolved_at_us: Option<i64>,
}

/// The clinical facts of an alarm, as the rule engine reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmFacts {
    /// The limit crossed.
    pub limit: CrossedLimit,
    /// Its priority.
    pub priority: Priority,
    /// The reading's interpretation.
    pub interpretation: Interpretation,
}

impl Alert {
    /// The clinical alert for `reading` (leaf hash `leaf`) crossing `alarm`, raised at
    /// `raised_at_us` in `ward`.
    pub fn clinical(
        ward: SubjectId,
        patient: Option<SubjectId>,
        reading: &Reading,
        leaf: Hash,
        alarm: AlarmFacts,
        raised_at_us: i64,
    ) -> Self {
        let measurement = reading.measurement();
        let value = value_text(measurement.value());
        let data_type = measurement.data_type().name().to_owned();
        let message = format!(
            "{data_type} {value} {} crossed the {} alarm limit {} {} ({})",
            measurement.unit().as_str(),
            alarm.priority.name(),
            alarm.limit.trigger,
            alarm.limit.bound,
            alarm.interpretation.code(),
        );
        Self {
            id: AlertId::clinical(&leaf, &alarm.limit.canonical),
            kind: AlertKind::Clinical,
            code: AlertCode::LimitCrossed,
            ward,
            patient,
            device: Some(reading.device().pure_identity_uri()),
            reading: Some(leaf),
            data_type: Some(data_type),
            value: Some(value),
            limit: Some(alarm.limit),
            priority: alarm.priority,
            interpretation: Some(alarm.interpretation),
            raised_at_us,
            message,
            state: AlertState::Raised,
            acknowledged_by: None,
            acknowledged_at_us: None,
            escalated_at_us: None,
            resolved_by: None,
            resolved_at_us: None,
        }
    }

    /// The technical alert `facts` describe, raised in `ward`.
    pub fn technical(ward: SubjectId, facts: TechnicalAlert) -> Self {
        Self {
            id: AlertId::technical(&ward, facts.code, &facts.subject, facts.since_us),
            kind: facts.code.kind(),
            code: facts.code,
            ward,
            patient: facts.patient,
            device: facts.device,
            reading: None,
            data_type: None,
            value: None,
            limit: None,
            priority: facts.priority,
            interpretation: None,
            raised_at_us: facts.since_us,
            message: facts.message,
            state: AlertState::Raised,
            acknowledged_by: None,
            acknowledged_at_us: None,
            escalated_at_us: None,
            resolved_by: None,
            resolved_at_us: None,
        }
    }

    /// This technical alert, resolved by `ward`'s collector at `at_us` because its
    /// condition cleared (the device was heard again, the card is back, …).
    pub fn resolved_by_ward(mut self, at_us: i64) -> Self {
        self.state = AlertState::Resolved;
        self.resolved_by = Some(self.ward.as_str().to_owned());
        self.resolved_at_us = Some(at_us);
        self
    }

    /// Whether a clinical alert's id is the one its reading and limit derive (storage
    /// refuses one that is not: the id is what makes the two sides' records one).
    pub fn id_is_derived(&self) -> bool {
        match (self.kind, &self.reading, &self.limit) {
            (AlertKind::Clinical, Some(leaf), Some(limit)) => {
                self.id == AlertId::clinical(leaf, &limit.canonical)
            }
            (AlertKind::Clinical, _, _) => false,
            (AlertKind::Technical, _, _) => true,
        }
    }
}

/// A reading's value as text (`25`, `120/80`, or a waveform's sample count).
pub fn value_text(value: &Value) -> String {
    match value {
        Value::Quantity(quantity) => quantity.to_string(),
        Value::BloodPressure {
            systolic,
            diastolic,
        } => format!("{systolic}/{diastolic}"),
        Value::Waveform(data) => format!("waveform of {} samples", data.data().len()),
    }
}

/// A change to an alert, as the live stream carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `raised`, `acknowledged`, `escalated` or `resolved`.
    pub event: AlertState,
    /// The alert after the change.
    pub alert: Alert,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clinical_ids_depend_on_leaf_and_limit_only() {
        let leaf = Hash::sha256(b"reading");
        let a = AlertId::clinical(&leaf, "0:<=40:high");
        assert_eq!(a, AlertId::clinical(&leaf, "0:<=40:high"));
        assert_ne!(a, AlertId::clinical(&leaf, "0:<=50:medium"));
        assert_ne!(a, AlertId::clinical(&Hash::sha256(b"other"), "0:<=40:high"));
        assert_eq!(AlertId::from_hex(&a.to_string()), Some(a));
    }

    #[test]
    fn technical_ids_name_the_condition() {
        let ward: SubjectId = "ward-7".parse().unwrap();
        let a = AlertId::technical(&ward, AlertCode::DeviceSilent, "epc", 1);
        assert_eq!(
            a,
            AlertId::technical(&ward, AlertCode::DeviceSilent, "epc", 1)
        );
        assert_ne!(
            a,
            AlertId::technical(&ward, AlertCode::DeviceSilent, "epc", 2)
        );
        assert_ne!(
            a,
            AlertId::technical(&ward, AlertCode::CardAbsent, "epc", 1)
        );
    }

    #[test]
    fn names_round_trip() {
        for state in [
            AlertState::Raised,
            AlertState::Escalated,
            AlertState::Acknowledged,
            AlertState::Resolved,
        ] {
            assert_eq!(AlertState::from_name(state.name()), Some(state));
        }
        for code in ["L", "H", "LL", "HH"] {
            assert_eq!(
                Interpretation::from_code(code).map(|i| i.code()),
                Some(code)
            );
        }
    }
}
