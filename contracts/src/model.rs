//! The crate's own view of what the contracts hold: exact decimals, rules, devices,
//! anchors, the suite's addresses, and the events collectors follow.
//!
//! Ids are plain `u32` group and rule ids and 12-byte SGTIN-96 EPCs, as in the device
//! certificates; conversions from `wardseal-core`'s identity types live at the edges.

use std::cmp::Ordering;
use std::fmt;

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use wardseal_core::decimal::Decimal;

use crate::error::RuleError;

/// The largest scale (digits after the decimal point) a value may have, as in
/// [`Decimal::MAX_SCALE`] and the contracts' `MAX_SCALE`.
pub const MAX_SCALE: u8 = 18;

/// The most value components a data type may have (the contract's `MAX_COMPONENTS`).
pub const MAX_COMPONENTS: usize = 8;

/// The most alarm limits a data type, or one patient's override of it, may hold (the
/// contracts' `MAX_ALARM_LIMITS`).
pub const MAX_ALARM_LIMITS: usize = 16;

/// An exact decimal `mantissa × 10^-scale` with a 128-bit mantissa: the contracts' `Dec`.
///
/// Wider than [`Decimal`] because the physical value of a waveform sample,
/// `origin + factor × raw`, may need more than 64 bits before normalisation. Two values
/// compare exactly (no floats, no rounding). The scale is not checked here: a component
/// with a scale above [`MAX_SCALE`] is what the rule check reports as
/// [`Verdict::InvalidScale`], on chain and natively alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WideDecimal {
    /// The mantissa.
    pub mantissa: i128,
    /// Digits after the decimal point.
    pub scale: u8,
}

impl WideDecimal {
    /// `mantissa × 10^-scale`.
    pub const fn new(mantissa: i128, scale: u8) -> Self {
        Self { mantissa, scale }
    }

    /// Compares two values exactly. Both scales must be at most [`MAX_SCALE`]; `None`
    /// otherwise.
    pub fn compare(self, other: Self) -> Option<Ordering> {
        if self.scale > MAX_SCALE || other.scale > MAX_SCALE {
            return None;
        }
        let (a, b) = match self.scale.cmp(&other.scale) {
            Ordering::Equal => return Some(self.mantissa.cmp(&other.mantissa)),
            Ordering::Less => (
                scale_up(self.mantissa, other.scale - self.scale),
                Scaled::Exact(other.mantissa),
            ),
            Ordering::Greater => (
                Scaled::Exact(self.mantissa),
                scale_up(other.mantissa, self.scale - other.scale),
            ),
        };
        Some(a.cmp_with(b))
    }

    /// Parses `123`, `-0.05` or `36.6` exactly (no exponent).
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = || RuleError::InvalidNumber(text.to_owned());
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(bad());
        }
        let scale = u8::try_from(fraction.len()).map_err(|_| bad())?;
        if scale > MAX_SCALE {
            return Err(bad());
        }
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or_else(bad)?;
        }
        Ok(Self::new(
            if negative { -mantissa } else { mantissa },
            scale,
        ))
    }
}

/// A mantissa brought to a larger scale, or known to be beyond every `i128` when the
/// multiplication overflows (then only its sign matters for comparison).
#[derive(Clone, Copy)]
enum Scaled {
    Exact(i128),
    BeyondPositive,
    BeyondNegative,
}

fn scale_up(mantissa: i128, by: u8) -> Scaled {
    match 10i128
        .checked_pow(u32::from(by))
        .and_then(|f| mantissa.checked_mul(f))
    {
        Some(value) => Scaled::Exact(value),
        None if mantissa > 0 => Scaled::BeyondPositive,
        None => Scaled::BeyondNegative,
    }
}

impl Scaled {
    fn cmp_with(self, other: Scaled) -> Ordering {
        // Only one side is ever scaled up, so "beyond" meets an exact value.
        match (self, other) {
            (Scaled::Exact(a), Scaled::Exact(b)) => a.cmp(&b),
            (Scaled::BeyondPositive, _) | (_, Scaled::BeyondNegative) => Ordering::Greater,
            (Scaled::BeyondNegative, _) | (_, Scaled::BeyondPositive) => Ordering::Less,
        }
    }
}

impl From<Decimal> for WideDecimal {
    fn from(value: Decimal) -> Self {
        Self::new(i128::from(value.mantissa()), value.scale())
    }
}

impl fmt::Display for WideDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scale == 0 {
            return write!(f, "{}", self.mantissa);
        }
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        let sign = if self.mantissa < 0 { "-" } else { "" };
        write!(f, "{sign}{whole}.{fraction}")
    }
}

/// An inclusive range `[min, max]` for one value component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Range {
    /// The lowest allowed value.
    pub min: WideDecimal,
    /// The highest allowed value.
    pub max: WideDecimal,
}

impl Range {
    /// A range, checked: scales at most [`MAX_SCALE`] and `min ≤ max`.
    pub fn new(min: WideDecimal, max: WideDecimal) -> Result<Self, RuleError> {
        match min.compare(max) {
            Some(Ordering::Less | Ordering::Equal) => Ok(Self { min, max }),
            _ => Err(RuleError::InvalidRange {
                min: min.to_string(),
                max: max.to_string(),
            }),
        }
    }
}

/// How a reading crosses an [`AlarmLimit`]; the numbers are the contracts' `Trigger`.
///
/// Both strict and inclusive forms exist because published bands are written both ways
/// (NEWS2: heart rate "≤ 40"; ADA: glucose "< 70 mg/dL"), and a limit should read as its
/// source does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Trigger {
    /// The value is below the bound.
    Below = 0,
    /// The value is at or below the bound.
    AtOrBelow = 1,
    /// The value is above the bound.
    Above = 2,
    /// The value is at or above the bound.
    AtOrAbove = 3,
}

impl Trigger {
    /// The trigger with this number, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Trigger::Below,
            1 => Trigger::AtOrBelow,
            2 => Trigger::Above,
            3 => Trigger::AtOrAbove,
            _ => return None,
        })
    }

    /// Whether this is a low limit (crossed from above).
    pub fn is_low(self) -> bool {
        matches!(self, Trigger::Below | Trigger::AtOrBelow)
    }
}

/// An alarm priority, after IEC 60601-1-8's terms; the numbers are the contracts'
/// `Priority` (0 there means "no alarm" and has no value here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Priority {
    /// Awareness is required.
    Low = 1,
    /// Prompt response is required.
    Medium = 2,
    /// Immediate response is required: the critical tier (FHIR LL / HH).
    High = 3,
}

impl Priority {
    /// The priority with this number; `None` for 0 (no alarm) and unknown numbers.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Priority::Low,
            2 => Priority::Medium,
            3 => Priority::High,
            _ => return None,
        })
    }

    /// The name used in logs and on the wire: `low`, `medium`, `high`.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }
}

/// A FHIR R4 `ObservationInterpretation` code (HL7 v3 code system
/// `http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation`) for a reading
/// past an alarm limit: L / H below or above a limit, LL / HH for the critical tier
/// ([`Priority::High`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Interpretation {
    /// `L`: low.
    Low,
    /// `H`: high.
    High,
    /// `LL`: critical low.
    CriticalLow,
    /// `HH`: critical high.
    CriticalHigh,
}

impl Interpretation {
    /// The FHIR code: `L`, `H`, `LL` or `HH`.
    pub fn code(self) -> &'static str {
        match self {
            Interpretation::Low => "L",
            Interpretation::High => "H",
            Interpretation::CriticalLow => "LL",
            Interpretation::CriticalHigh => "HH",
        }
    }
}

/// A clinical alarm limit on one value component: a reading that crosses it is accepted
/// and flagged with its priority. (Plausibility ranges, [`Range`], refuse; these never do.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlarmLimit {
    /// The value component it watches (0 for a quantity; 0 systolic, 1 diastolic).
    pub component: u8,
    /// Which way it is crossed.
    pub trigger: Trigger,
    /// The alarm's priority.
    pub priority: Priority,
    /// The bound.
    pub bound: WideDecimal,
}

impl AlarmLimit {
    /// A limit, checked: component below [`MAX_COMPONENTS`], bound of scale ≤ 18.
    pub fn new(
        component: u8,
        trigger: Trigger,
        priority: Priority,
        bound: WideDecimal,
    ) -> Result<Self, RuleError> {
        if usize::from(component) >= MAX_COMPONENTS || bound.scale > MAX_SCALE {
            return Err(RuleError::InvalidAlarmLimit(format!(
                "component {component}, bound {bound}: the component must be below 8 and the bound have at most 18 digits after the point"
            )));
        }
        Ok(Self {
            component,
            trigger,
            priority,
            bound,
        })
    }

    /// A low limit: `value < bound`, or `value ≤ bound` when `inclusive`.
    pub fn low(component: u8, bound: WideDecimal, inclusive: bool, priority: Priority) -> Self {
        let trigger = if inclusive {
            Trigger::AtOrBelow
        } else {
            Trigger::Below
        };
        Self {
            component,
            trigger,
            priority,
            bound,
        }
    }

    /// A high limit: `value > bound`, or `value ≥ bound` when `inclusive`.
    pub fn high(component: u8, bound: WideDecimal, inclusive: bool, priority: Priority) -> Self {
        let trigger = if inclusive {
            Trigger::AtOrAbove
        } else {
            Trigger::Above
        };
        Self {
            component,
            trigger,
            priority,
            bound,
        }
    }

    /// Parses `[COMPONENT:]OP BOUND:PRIORITY` with OP one of `<`, `<=`, `>`, `>=` and
    /// PRIORITY `low`, `medium` or `high`: `<=40:high`, `1:>120:medium`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = |why: &str| {
            RuleError::InvalidAlarmLimit(format!(
                "`{text}` {why} (write [COMPONENT:]OP BOUND:PRIORITY, e.g. <=40:high or 1:>120:medium)"
            ))
        };
        let (limit, priority) = text
            .rsplit_once(':')
            .ok_or_else(|| bad("has no priority"))?;
        let priority = match priority {
            "low" => Priority::Low,
            "medium" => Priority::Medium,
            "high" => Priority::High,
            _ => return Err(bad("has a priority other than low, medium or high")),
        };
        let (component, limit) = match limit.split_once(':') {
            Some((c, rest)) => (
                c.parse::<u8>().map_err(|_| bad("has a bad component"))?,
                rest,
            ),
            None => (0, limit),
        };
        let (trigger, bound) = if let Some(b) = limit.strip_prefix("<=") {
            (Trigger::AtOrBelow, b)
        } else if let Some(b) = limit.strip_prefix(">=") {
            (Trigger::AtOrAbove, b)
        } else if let Some(b) = limit.strip_prefix('<') {
            (Trigger::Below, b)
        } else if let Some(b) = limit.strip_prefix('>') {
            (Trigger::Above, b)
        } else {
            return Err(bad("has no <, <=, > or >="));
        };
        Self::new(
            component,
            trigger,
            priority,
            WideDecimal::parse(bound.trim())?,
        )
    }

    /// Whether `value` crosses this limit (`None` when a scale is above 18).
    pub fn crossed_by(&self, value: WideDecimal) -> Option<bool> {
        let order = value.compare(self.bound)?;
        Some(match self.trigger {
            Trigger::Below => order == Ordering::Less,
            Trigger::AtOrBelow => order != Ordering::Greater,
            Trigger::Above => order == Ordering::Greater,
            Trigger::AtOrAbove => order != Ordering::Less,
        })
    }

    /// The FHIR interpretation of a reading past this limit.
    pub fn interpretation(&self) -> Interpretation {
        match (self.trigger.is_low(), self.priority == Priority::High) {
            (true, false) => Interpretation::Low,
            (true, true) => Interpretation::CriticalLow,
            (false, false) => Interpretation::High,
            (false, true) => Interpretation::CriticalHigh,
        }
    }
}

/// The form [`AlarmLimit::parse`] reads: `0:<=40:high`.
impl fmt::Display for AlarmLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.trigger {
            Trigger::Below => "<",
            Trigger::AtOrBelow => "<=",
            Trigger::Above => ">",
            Trigger::AtOrAbove => ">=",
        };
        write!(
            f,
            "{}:{op}{}:{}",
            self.component,
            self.bound,
            self.priority.name()
        )
    }
}

/// Checks a list of alarm limits as the contracts do: at most [`MAX_ALARM_LIMITS`], each
/// on one of `components` components.
fn check_alarm_limits(limits: &[AlarmLimit], components: usize) -> Result<(), RuleError> {
    if limits.len() > MAX_ALARM_LIMITS {
        return Err(RuleError::InvalidAlarmLimit(format!(
            "{} limits: at most {MAX_ALARM_LIMITS}",
            limits.len()
        )));
    }
    for limit in limits {
        AlarmLimit::new(limit.component, limit.trigger, limit.priority, limit.bound)?;
        if usize::from(limit.component) >= components {
            return Err(RuleError::InvalidAlarmLimit(format!(
                "{limit}: the value has {components} component(s)"
            )));
        }
    }
    Ok(())
}

/// A patient as the chain knows them: a 32-byte pseudonymous key, the keccak-256 of a
/// domain tag and the patient's subject id. Never the id itself: nothing about patients
/// goes on chain but pseudonymous keys and hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PatientKey(pub B256);

impl PatientKey {
    /// The key of the patient with subject id `subject_id` (as in the patient's
    /// certificate and storage's assignments).
    pub fn for_subject(subject_id: &str) -> Self {
        let mut bytes = b"wardseal patient\0".to_vec();
        bytes.extend_from_slice(subject_id.as_bytes());
        Self(alloy::primitives::keccak256(bytes))
    }
}

impl fmt::Display for PatientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A patient's own alarm limits for one data type, replacing the rule's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PatientLimits {
    /// The patient.
    pub patient: PatientKey,
    /// The data type code.
    pub data_type: u16,
    /// The limits (1 to [`MAX_ALARM_LIMITS`]).
    pub limits: Vec<AlarmLimit>,
}

impl PatientLimits {
    /// An override, checked as the contract checks it: 1 to [`MAX_ALARM_LIMITS`] limits,
    /// each valid.
    pub fn new(
        patient: PatientKey,
        data_type: u16,
        limits: Vec<AlarmLimit>,
    ) -> Result<Self, RuleError> {
        if limits.is_empty() {
            return Err(RuleError::InvalidAlarmLimit(
                "an override needs at least one limit (clear it to return to the rule's)".into(),
            ));
        }
        check_alarm_limits(&limits, MAX_COMPONENTS)?;
        Ok(Self {
            patient,
            data_type,
            limits,
        })
    }
}

/// What a rule allows for one data type.
///
/// Two kinds of limits:
/// - **plausibility** ranges, one per value component: what a working device can
///   measure. A value outside is false data and refused.
/// - **alarm limits** ([`AlarmLimit`]) with priorities: what is clinically abnormal. A
///   value past one is accepted and flagged. A patient may have their own
///   ([`PatientLimits`]), set by a rule admin or a responsible clinician.
///
/// The value of a reading has components, and the rule one range per component:
/// - a quantity (heart rate, SpO₂, temperature, …): `[value]`;
/// - blood pressure: `[systolic, diastolic]`;
/// - a waveform block (ECG, EEG, EMG): `[lowest sample, highest sample]`, physical values
///   (`origin + factor × raw`), so a rule bounds both ends of the block, e.g. ECG lowest
///   sample in −5…5 mV and highest sample in −5…5 mV.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TypeRule {
    /// The data type code (`wardseal_core::reading::DataType::code`).
    pub data_type: u16,
    /// The UCUM unit a reading must state, byte for byte.
    pub unit: String,
    /// One inclusive plausibility range per value component.
    pub ranges: Vec<Range>,
    /// The clinical alarm limits (none: the data type never alarms).
    #[serde(default)]
    pub alarms: Vec<AlarmLimit>,
    /// The most readings of this type a device may send in any 60 s; 0 means no limit.
    pub max_per_minute: u32,
}

impl TypeRule {
    /// A type rule, checked as the contract checks it: unit of 1 to 32 bytes, 1 to
    /// [`MAX_COMPONENTS`] ranges, each valid.
    pub fn new(
        data_type: u16,
        unit: impl Into<String>,
        ranges: Vec<Range>,
        max_per_minute: u32,
    ) -> Result<Self, RuleError> {
        let unit = unit.into();
        if unit.is_empty() || unit.len() > 32 {
            return Err(RuleError::InvalidUnit(unit));
        }
        if ranges.is_empty() || ranges.len() > MAX_COMPONENTS {
            return Err(RuleError::ComponentCount(ranges.len()));
        }
        for range in &ranges {
            Range::new(range.min, range.max)?;
        }
        Ok(Self {
            data_type,
            unit,
            ranges,
            alarms: Vec::new(),
            max_per_minute,
        })
    }

    /// The same rule with these alarm limits, checked as the contract checks them: at
    /// most [`MAX_ALARM_LIMITS`], each on one of the rule's components.
    pub fn with_alarms(mut self, alarms: Vec<AlarmLimit>) -> Result<Self, RuleError> {
        check_alarm_limits(&alarms, self.ranges.len())?;
        self.alarms = alarms;
        Ok(self)
    }
}

/// A rule as registered in the RuleManager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule id (carried in device and collector certificates).
    pub rule_id: u32,
    /// The rule contract's address.
    pub address: Address,
    /// What it allows, one entry per data type, ordered by data type code.
    pub types: Vec<TypeRule>,
}

/// A device as the DeviceRegistry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device's SGTIN-96 EPC (the 12 bytes in its certificate).
    pub epc: [u8; 12],
    /// Its group id.
    pub group: u32,
    /// Its rule id.
    pub rule_id: u32,
    /// The ward it is in (a ward id, never a patient's).
    pub ward: String,
    /// False once deactivated (captured or retired): collectors refuse its readings.
    pub active: bool,
}

/// What an AuditAnchor anchor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Anchor {
    /// Which log the root covers (a collector's decision log, a server's access log).
    pub log_id: B256,
    /// The Merkle root (RFC 9162) of the log entries.
    pub root: B256,
    /// How many entries the root covers (at least one).
    pub count: u64,
    /// When the first entry was written, microseconds since the Unix epoch.
    pub first_time: u64,
    /// When the last entry was written, microseconds since the Unix epoch.
    pub last_time: u64,
}

/// An anchor as found on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// What was anchored.
    pub anchor: Anchor,
    /// The account that anchored it.
    pub anchorer: Address,
    /// The block it was anchored in.
    pub block: u64,
}

/// The addresses of a deployed suite: everything a collector, a server or the CLI needs
/// to find the contracts. Stored as JSON (`suite.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suite {
    /// The RuleManager.
    pub rule_manager: Address,
    /// The DeviceRegistry.
    pub device_registry: Address,
    /// The Consent contract.
    pub consent: Address,
    /// The AuditAnchor.
    pub audit_anchor: Address,
    /// The AuthorityRegistry (zero in a suite file written before it existed: such a
    /// suite has no authorities).
    #[serde(default)]
    pub authority_registry: Address,
    /// The block the suite was deployed in: followers start there.
    pub deployed_at: u64,
}

impl Suite {
    /// Reads a suite file written by [`Suite::save`].
    pub fn load(path: &std::path::Path) -> Result<Self, crate::Error> {
        let fail = |reason: String| crate::Error::SuiteFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| {
            fail(format!(
                "{e} (deploy a suite first with `wardseal-ledger deploy`)"
            ))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("not a suite file: {e}")))
    }

    /// Writes the suite as JSON, replacing the file atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<(), crate::Error> {
        let fail = |reason: String| crate::Error::SuiteFile {
            path: path.to_owned(),
            reason,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| fail(e.to_string()))?;
        text.push('\n');
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| fail(e.to_string()))
    }

    /// The contract addresses.
    pub fn addresses(&self) -> [Address; 5] {
        [
            self.rule_manager,
            self.device_registry,
            self.consent,
            self.audit_anchor,
            self.authority_registry,
        ]
    }
}

/// The data type with this name (`heart_rate`) or numeric code (`1`).
pub fn parse_data_type(text: &str) -> Result<wardseal_core::reading::DataType, RuleError> {
    use wardseal_core::reading::DataType;
    let found = match text.parse::<u16>() {
        Ok(code) => DataType::from_code(code),
        Err(_) => DataType::ALL.iter().copied().find(|t| t.name() == text),
    };
    found.ok_or_else(|| RuleError::UnknownDataType(text.to_owned()))
}

/// The roles the suite knows, each held in one contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Role {
    /// Registers rules, assigns them to groups and changes them (RuleManager).
    RuleAdmin,
    /// Registers and deactivates devices (DeviceRegistry).
    Registrar,
    /// Anchors log roots: registered collectors and storage servers (AuditAnchor).
    Anchorer,
    /// Registers, binds and deactivates authorities (AuthorityRegistry).
    AuthorityRegistrar,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "rule-admin" => Ok(Role::RuleAdmin),
            "registrar" => Ok(Role::Registrar),
            "anchorer" => Ok(Role::Anchorer),
            "authority-registrar" => Ok(Role::AuthorityRegistrar),
            _ => Err(format!(
                "unknown role `{text}`: use rule-admin, registrar, anchorer or authority-registrar"
            )),
        }
    }
}

impl Role {
    /// The role's id as AccessControl stores it.
    pub fn id(self) -> B256 {
        let name: &[u8] = match self {
            Role::RuleAdmin => b"wardseal.RULE_ADMIN_ROLE",
            Role::Registrar => b"wardseal.REGISTRAR_ROLE",
            Role::Anchorer => b"wardseal.ANCHORER_ROLE",
            Role::AuthorityRegistrar => b"wardseal.AUTHORITY_REGISTRAR_ROLE",
        };
        alloy::primitives::keccak256(name)
    }
}

/// The answer of a rule check; the numbers are the contracts' `Verdict` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Verdict {
    /// Every check passed.
    Allowed = 0,
    /// The device's group has no rule.
    NoRuleForGroup = 1,
    /// The rule does not allow this data type.
    DataTypeNotAllowed = 2,
    /// The unit is not the one the rule fixes for the data type.
    WrongUnit = 3,
    /// The value has not as many components as the rule has ranges.
    WrongComponentCount = 4,
    /// A component has a scale above 18.
    InvalidScale = 5,
    /// A component is below its range.
    BelowMinimum = 6,
    /// A component is above its range.
    AboveMaximum = 7,
    /// More readings in the last minute than the rule allows.
    RateExceeded = 8,
}

impl Verdict {
    /// The verdict with this number, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Verdict::Allowed,
            1 => Verdict::NoRuleForGroup,
            2 => Verdict::DataTypeNotAllowed,
            3 => Verdict::WrongUnit,
            4 => Verdict::WrongComponentCount,
            5 => Verdict::InvalidScale,
            6 => Verdict::BelowMinimum,
            7 => Verdict::AboveMaximum,
            8 => Verdict::RateExceeded,
            _ => return None,
        })
    }
}

/// Where the alarm limit a reading crossed came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LimitSource {
    /// The rule's own limits for the data type.
    Rule,
    /// The patient's override ([`PatientLimits`]).
    Patient,
}

/// A reading past an alarm limit: accepted, and flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Alarm {
    /// The limit crossed (the highest priority one; the first such on a tie).
    pub limit: AlarmLimit,
    /// The rule's or the patient's.
    pub source: LimitSource,
}

impl Alarm {
    /// The crossed limit's bound.
    pub fn bound(&self) -> WideDecimal {
        self.limit.bound
    }

    /// The alarm's priority.
    pub fn priority(&self) -> Priority {
        self.limit.priority
    }

    /// The FHIR `ObservationInterpretation` code: L, H, LL or HH.
    pub fn interpretation(&self) -> Interpretation {
        self.limit.interpretation()
    }

    /// The alarm as `wardseal-core`'s alert model records it (the collector and storage
    /// build the same alert, and the same alert id, from it).
    pub fn facts(&self) -> wardseal_core::alert::AlarmFacts {
        use wardseal_core::alert::{self, CrossedLimit};
        let trigger = match self.limit.trigger {
            Trigger::Below => "<",
            Trigger::AtOrBelow => "<=",
            Trigger::Above => ">",
            Trigger::AtOrAbove => ">=",
        };
        alert::AlarmFacts {
            limit: CrossedLimit {
                canonical: self.limit.to_string(),
                component: self.limit.component,
                trigger: trigger.to_owned(),
                bound: self.limit.bound.to_string(),
            },
            priority: match self.priority() {
                Priority::Low => alert::Priority::Low,
                Priority::Medium => alert::Priority::Medium,
                Priority::High => alert::Priority::High,
            },
            interpretation: match self.interpretation() {
                Interpretation::Low => alert::Interpretation::L,
                Interpretation::High => alert::Interpretation::H,
                Interpretation::CriticalLow => alert::Interpretation::LL,
                Interpretation::CriticalHigh => alert::Interpretation::HH,
            },
        }
    }
}

/// A rule decision: refused (false data, a wrong shape, the rate) or accepted, possibly
/// with an alarm. A reading is never refused for being clinically abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    /// The reading is refused.
    Refused {
        /// Why (never [`Verdict::Allowed`]).
        verdict: Verdict,
        /// The failing component's index for `InvalidScale`, `BelowMinimum` and
        /// `AboveMaximum`; 0 otherwise.
        component: u8,
    },
    /// The reading is accepted.
    Accepted {
        /// The alarm limit it crossed, if any.
        alarm: Option<Alarm>,
    },
}

impl Decision {
    /// Whether the reading is allowed (possibly with an alarm).
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Accepted { .. })
    }

    /// The verdict code: [`Verdict::Allowed`] when accepted.
    pub fn verdict(&self) -> Verdict {
        match self {
            Decision::Refused { verdict, .. } => *verdict,
            Decision::Accepted { .. } => Verdict::Allowed,
        }
    }

    /// The failing component (0 when accepted or not about a component).
    pub fn component(&self) -> u8 {
        match self {
            Decision::Refused { component, .. } => *component,
            Decision::Accepted { .. } => 0,
        }
    }

    /// The alarm, when accepted past an alarm limit.
    pub fn alarm(&self) -> Option<&Alarm> {
        match self {
            Decision::Accepted { alarm } => alarm.as_ref(),
            Decision::Refused { .. } => None,
        }
    }
}

/// What a rule check is asked: the reading's group, data type, unit, value components,
/// how many readings of this type the device sent in the last minute, this one
/// included, and the patient (whose own alarm limits apply, if set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckInput {
    /// The device's group id.
    pub group: u32,
    /// The data type code.
    pub data_type: u16,
    /// The unit the device stated.
    pub unit: String,
    /// The value components (see [`TypeRule`]).
    pub components: Vec<WideDecimal>,
    /// Readings of this type from this device in the 60 s ending with this one, inclusive.
    pub per_minute: u32,
    /// The patient measured, if known (the contract's `bytes32(0)` otherwise).
    #[serde(default)]
    pub patient: Option<PatientKey>,
}

/// Where an event sits in the chain: events are ordered by block, then log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventPosition {
    /// The block number.
    pub block: u64,
    /// The log's index in its block.
    pub log_index: u64,
}

/// A change to the suite, as collectors and servers follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LedgerEvent {
    /// A rule contract was registered.
    RuleRegistered {
        /// The rule id.
        rule_id: u32,
        /// The rule contract.
        address: Address,
    },
    /// A group now follows a rule.
    GroupRuleSet {
        /// The group id.
        group: u32,
        /// The rule id.
        rule_id: u32,
    },
    /// A rule now allows a data type as described.
    TypeRuleSet {
        /// The rule id.
        rule_id: u32,
        /// The new setting.
        rule: TypeRule,
    },
    /// A rule no longer allows a data type.
    TypeRuleRemoved {
        /// The rule id.
        rule_id: u32,
        /// The data type code.
        data_type: u16,
    },
    /// A clinician is now (or no longer) responsible for a patient.
    ClinicianSet {
        /// The patient.
        patient: PatientKey,
        /// The clinician's account.
        clinician: Address,
        /// Responsible from now on, or no longer.
        responsible: bool,
    },
    /// A patient's alarm limits for a data type were set (replacing the rule's).
    PatientLimitsSet {
        /// The patient and the limits.
        limits: PatientLimits,
        /// Who set them (a rule admin or a responsible clinician).
        by: Address,
    },
    /// A patient's alarm limits for a data type are the rule's again.
    PatientLimitsCleared {
        /// The patient.
        patient: PatientKey,
        /// The data type code.
        data_type: u16,
        /// Who cleared them.
        by: Address,
    },
    /// A device was registered, active.
    DeviceRegistered(Device),
    /// A device was deactivated for good.
    DeviceDeactivated {
        /// Its EPC.
        epc: [u8; 12],
    },
    /// A patient granted an authority access.
    ConsentGranted {
        /// The patient's account.
        patient: Address,
        /// The authority's account.
        authority: Address,
    },
    /// A patient revoked an authority's access.
    ConsentRevoked {
        /// The patient's account.
        patient: Address,
        /// The authority's account.
        authority: Address,
    },
    /// An authority (organisation) was registered, active.
    OrganisationRegistered {
        /// The organisation's id.
        organisation: String,
        /// What kind of organisation it is.
        kind: wardseal_core::identity::AuthorityKind,
    },
    /// An authority was deactivated (`active` false) or reactivated.
    OrganisationActiveSet {
        /// The organisation's id.
        organisation: String,
        /// Whether it is active from now on.
        active: bool,
    },
    /// Certificates with a subject id now act for an organisation.
    SubjectBound {
        /// The certificates' subject id.
        subject: String,
        /// The organisation's id.
        organisation: String,
    },
    /// Certificates with a subject id no longer act for an organisation.
    SubjectUnbound {
        /// The certificates' subject id.
        subject: String,
        /// The organisation's id.
        organisation: String,
    },
    /// A patient allowed an organisation to read their records.
    AccessGranted {
        /// The patient's account.
        patient: Address,
        /// The organisation's id.
        organisation: String,
    },
    /// A patient withdrew an organisation's access to their records.
    AccessRevoked {
        /// The patient's account.
        patient: Address,
        /// The organisation's id.
        organisation: String,
    },
    /// A log root was anchored.
    Anchored {
        /// The anchor.
        anchor: Anchor,
        /// Who anchored it.
        anchorer: Address,
        /// Its number, counting anchors from 0.
        sequence: u64,
    },
    /// An account was given a role.
    RoleGranted {
        /// The contract whose role it is.
        contract: Address,
        /// The role id.
        role: B256,
        /// The account.
        account: Address,
    },
    /// An account lost a role.
    RoleRevoked {
        /// The contract whose role it is.
        contract: Address,
        /// The role id.
        role: B256,
        /// The account.
        account: Address,
    },
}

/// A followed event with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionedEvent {
    /// Where it is.
    pub position: EventPosition,
    /// The transaction that emitted it.
    pub tx_hash: B256,
    /// What happened.
    pub event: LedgerEvent,
}

/// What a mined transaction cost and where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxOutcome {
    /// The transaction hash.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block: u64,
    /// The gas it used.
    pub gas_used: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> WideDecimal {
        WideDecimal::parse(text).unwrap()
    }

    #[test]
    fn compares_across_scales_exactly() {
        assert_eq!(d("36.6").compare(d("36.60")), Some(Ordering::Equal));
        assert_eq!(d("36.6").compare(d("36.61")), Some(Ordering::Less));
        assert_eq!(d("-0.5").compare(d("-1")), Some(Ordering::Greater));
        assert_eq!(
            WideDecimal::new(1, 19).compare(d("1")),
            None,
            "scale 19 is refused"
        );
    }

    #[test]
    fn compares_when_scaling_overflows() {
        let huge = WideDecimal::new(i128::MAX / 10, 0);
        let tiny = WideDecimal::new(1, 18);
        assert_eq!(huge.compare(tiny), Some(Ordering::Greater));
        assert_eq!(
            WideDecimal::new(-(i128::MAX / 10), 0).compare(tiny),
            Some(Ordering::Less)
        );
        assert_eq!(tiny.compare(huge), Some(Ordering::Less));
    }

    #[test]
    fn parses_and_prints() {
        for text in ["0", "36.6", "-0.05", "120", "0.000000000000000001"] {
            assert_eq!(d(text).to_string(), text);
        }
        for bad in ["", "-", "1.", ".5", "1e3", "1.2.3", "0.0000000000000000001"] {
            assert!(WideDecimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn range_and_type_rule_are_checked() {
        assert!(Range::new(d("2"), d("1")).is_err());
        assert!(Range::new(d("1"), d("1")).is_ok());
        let r = Range::new(d("30"), d("220")).unwrap();
        assert!(TypeRule::new(1, "", vec![r], 0).is_err());
        assert!(TypeRule::new(1, "/min", vec![], 0).is_err());
        assert!(TypeRule::new(1, "/min", vec![r; 9], 0).is_err());
        assert!(TypeRule::new(1, "/min", vec![r], 0).is_ok());
    }

    #[test]
    fn alarm_limits_are_checked() {
        let r = Range::new(d("0"), d("350")).unwrap();
        let rule = TypeRule::new(1, "/min", vec![r], 0).unwrap();
        let low = AlarmLimit::low(0, d("40"), true, Priority::High);
        assert!(rule.clone().with_alarms(vec![low]).is_ok());
        let on_diastolic = AlarmLimit::low(1, d("40"), true, Priority::High);
        assert!(rule.clone().with_alarms(vec![on_diastolic]).is_err());
        assert!(rule.with_alarms(vec![low; 17]).is_err());
        assert!(AlarmLimit::new(8, Trigger::Below, Priority::Low, d("1")).is_err());
        let patient = PatientKey::for_subject("P-1");
        assert!(PatientLimits::new(patient, 1, vec![]).is_err());
        assert!(PatientLimits::new(patient, 1, vec![on_diastolic]).is_ok());
    }

    #[test]
    fn alarm_limits_parse_and_print() {
        for (text, printed) in [
            ("<=40:high", "0:<=40:high"),
            ("1:>120:medium", "1:>120:medium"),
            ("<70:medium", "0:<70:medium"),
            (">=38.1:low", "0:>=38.1:low"),
        ] {
            let limit = AlarmLimit::parse(text).unwrap();
            assert_eq!(limit.to_string(), printed);
            assert_eq!(AlarmLimit::parse(printed).unwrap(), limit);
        }
        for bad in [
            "40:high",
            "<=40",
            "<=40:urgent",
            "9:<1:low",
            "x:<1:low",
            "<=4a:low",
        ] {
            assert!(AlarmLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_trigger_and_interpret_as_written() {
        let ll = AlarmLimit::low(0, d("40"), true, Priority::High);
        assert_eq!(ll.crossed_by(d("40")), Some(true));
        assert_eq!(ll.crossed_by(d("40.01")), Some(false));
        assert_eq!(ll.interpretation().code(), "LL");
        let l = AlarmLimit::low(0, d("70"), false, Priority::Medium);
        assert_eq!(l.crossed_by(d("70")), Some(false));
        assert_eq!(l.crossed_by(d("69.9")), Some(true));
        assert_eq!(l.interpretation().code(), "L");
        let h = AlarmLimit::high(0, d("91"), true, Priority::Low);
        assert_eq!(h.crossed_by(d("91")), Some(true));
        assert_eq!(h.interpretation().code(), "H");
        let hh = AlarmLimit::high(0, d("180"), false, Priority::High);
        assert_eq!(hh.crossed_by(d("180")), Some(false));
        assert_eq!(hh.interpretation().code(), "HH");
    }
}
