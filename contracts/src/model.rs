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

/// What a rule allows for one data type.
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
    /// One inclusive range per value component.
    pub ranges: Vec<Range>,
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
            max_per_minute,
        })
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

    /// The four contract addresses.
    pub fn addresses(&self) -> [Address; 4] {
        [
            self.rule_manager,
            self.device_registry,
            self.consent,
            self.audit_anchor,
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
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "rule-admin" => Ok(Role::RuleAdmin),
            "registrar" => Ok(Role::Registrar),
            "anchorer" => Ok(Role::Anchorer),
            _ => Err(format!(
                "unknown role `{text}`: use rule-admin, registrar or anchorer"
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

/// A rule decision: the verdict and, for range failures, which component failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The failing component's index for `InvalidScale`, `BelowMinimum` and
    /// `AboveMaximum`; 0 otherwise.
    pub component: u8,
}

impl Decision {
    /// Whether the reading is allowed.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allowed
    }
}

/// What a rule check is asked: the reading's group, data type, unit, value components
/// and how many readings of this type the device sent in the last minute, this one
/// included.
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
}
