//! The native rule evaluator: a replica of the rules that collectors evaluate per reading
//! without asking the chain.
//!
//! A [`RuleBook`] is bootstrapped from [`crate::Ledger::rules`] and
//! [`crate::Ledger::group_rules`] and kept current by applying the followed
//! [`LedgerEvent`]s. [`RuleBook::check`] gives exactly the decision of the RuleManager's
//! `check` (same verdict, same component index, same order of checks: group, data type,
//! unit, component count, then per component scale, plausibility minimum and maximum,
//! and the rate; then, for an accepted reading, the alarm limits — the patient's own if
//! set, else the rule's — and the crossed limit of highest priority, the first such in
//! the limits' order on a tie); the differential tests run both on random readings.
//!
//! Values compare exactly: [`WideDecimal::compare`] brings both sides to the larger
//! scale in 128-bit integers (the contract does it in 256 bits; a product that overflows
//! 128 bits is beyond every `i128` and compares by sign).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use wardseal_core::reading::{Measurement, Value};

use crate::error::RuleError;
use crate::model::{
    Alarm, AlarmLimit, CheckInput, Decision, LedgerEvent, LimitSource, MAX_SCALE, PatientKey,
    PatientLimits, Rule, TypeRule, Verdict, WideDecimal,
};

/// A replica of the rules: which rule each group follows, what each rule allows, and
/// the patients' own alarm limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleBook {
    groups: BTreeMap<u32, u32>,
    rules: BTreeMap<u32, BTreeMap<u16, TypeRule>>,
    patients: BTreeMap<(PatientKey, u16), Vec<AlarmLimit>>,
}

impl RuleBook {
    /// An empty book (no group has a rule).
    pub fn new() -> Self {
        Self::default()
    }

    /// A book holding `rules` and the (group, rule id) pairs of `groups`.
    pub fn from_parts(rules: &[Rule], groups: &[(u32, u32)]) -> Self {
        let mut book = Self::new();
        for rule in rules {
            let types = book.rules.entry(rule.rule_id).or_default();
            for t in &rule.types {
                types.insert(t.data_type, t.clone());
            }
        }
        for &(group, rule_id) in groups {
            book.groups.insert(group, rule_id);
        }
        book
    }

    /// The same book with these patients' own alarm limits (from
    /// [`crate::Ledger::all_patient_limits`]).
    pub fn with_patient_limits(mut self, overrides: Vec<PatientLimits>) -> Self {
        for o in overrides {
            self.patients.insert((o.patient, o.data_type), o.limits);
        }
        self
    }

    /// Applies one followed event; events that are not about rules are ignored.
    pub fn apply(&mut self, event: &LedgerEvent) {
        match event {
            LedgerEvent::RuleRegistered { rule_id, .. } => {
                self.rules.entry(*rule_id).or_default();
            }
            LedgerEvent::GroupRuleSet { group, rule_id } => {
                self.groups.insert(*group, *rule_id);
            }
            LedgerEvent::TypeRuleSet { rule_id, rule } => {
                self.rules
                    .entry(*rule_id)
                    .or_default()
                    .insert(rule.data_type, rule.clone());
            }
            LedgerEvent::TypeRuleRemoved { rule_id, data_type } => {
                if let Some(types) = self.rules.get_mut(rule_id) {
                    types.remove(data_type);
                }
            }
            LedgerEvent::PatientLimitsSet { limits, .. } => {
                self.patients
                    .insert((limits.patient, limits.data_type), limits.limits.clone());
            }
            LedgerEvent::PatientLimitsCleared {
                patient, data_type, ..
            } => {
                self.patients.remove(&(*patient, *data_type));
            }
            _ => {}
        }
    }

    /// The rule group `group` follows.
    pub fn group_rule(&self, group: u32) -> Option<u32> {
        self.groups.get(&group).copied()
    }

    /// What rule `rule_id` allows for `data_type`.
    pub fn type_rule(&self, rule_id: u32, data_type: u16) -> Option<&TypeRule> {
        self.rules.get(&rule_id)?.get(&data_type)
    }

    /// `patient`'s own alarm limits for `data_type`, if set.
    pub fn patient_limits(&self, patient: PatientKey, data_type: u16) -> Option<&[AlarmLimit]> {
        self.patients.get(&(patient, data_type)).map(Vec::as_slice)
    }

    /// The decision the contract's `check` gives for `input`.
    pub fn check(&self, input: &CheckInput) -> Decision {
        let decide = |verdict, component| Decision::Refused { verdict, component };
        let Some(rule_id) = self.group_rule(input.group) else {
            return decide(Verdict::NoRuleForGroup, 0);
        };
        let Some(rule) = self.type_rule(rule_id, input.data_type) else {
            return decide(Verdict::DataTypeNotAllowed, 0);
        };
        if rule.unit != input.unit {
            return decide(Verdict::WrongUnit, 0);
        }
        if input.components.len() != rule.ranges.len() {
            return decide(Verdict::WrongComponentCount, 0);
        }
        for (index, (value, range)) in input.components.iter().zip(&rule.ranges).enumerate() {
            // At most MAX_COMPONENTS (8) ranges exist, so the index fits a u8.
            let component = u8::try_from(index).unwrap_or(u8::MAX);
            if value.scale > MAX_SCALE {
                return decide(Verdict::InvalidScale, component);
            }
            // Bounds always have valid scales (the contract refuses others), so `None`
            // cannot come from the chain; it fails the check rather than pass it.
            if matches!(value.compare(range.min), Some(Ordering::Less) | None) {
                return decide(Verdict::BelowMinimum, component);
            }
            if matches!(value.compare(range.max), Some(Ordering::Greater) | None) {
                return decide(Verdict::AboveMaximum, component);
            }
        }
        if rule.max_per_minute != 0 && input.per_minute > rule.max_per_minute {
            return decide(Verdict::RateExceeded, 0);
        }
        let own = input
            .patient
            .and_then(|patient| self.patient_limits(patient, input.data_type));
        let (limits, source) = match own {
            Some(limits) => (limits, LimitSource::Patient),
            None => (rule.alarms.as_slice(), LimitSource::Rule),
        };
        Decision::Accepted {
            alarm: worst_alarm(limits, &input.components).map(|limit| Alarm { limit, source }),
        }
    }
}

/// The crossed limit of highest priority, the first such in `limits` order; limits on
/// components the value lacks are skipped (as the contract's `worstAlarm`).
fn worst_alarm(limits: &[AlarmLimit], components: &[WideDecimal]) -> Option<AlarmLimit> {
    let mut worst: Option<AlarmLimit> = None;
    for limit in limits {
        let Some(&value) = components.get(usize::from(limit.component)) else {
            continue;
        };
        if worst.is_some_and(|w| limit.priority <= w.priority) {
            continue;
        }
        if limit.crossed_by(value) == Some(true) {
            worst = Some(*limit);
        }
    }
    worst
}

/// The value components a rule checks (see [`TypeRule`]): `[value]`, `[systolic,
/// diastolic]`, or for a waveform the lowest and highest physical sample
/// (`origin + factor × raw`, exact).
pub fn components(value: &Value) -> Result<Vec<WideDecimal>, RuleError> {
    Ok(match value {
        Value::Quantity(v) => vec![(*v).into()],
        Value::BloodPressure {
            systolic,
            diastolic,
        } => vec![(*systolic).into(), (*diastolic).into()],
        Value::Waveform(samples) => {
            let data = samples.data();
            let (Some(&low), Some(&high)) = (data.iter().min(), data.iter().max()) else {
                return Err(RuleError::ValueOutOfRange);
            };
            let factor = samples.factor();
            // A negative factor turns the lowest raw sample into the highest value.
            let (low, high) = if factor.is_negative() {
                (high, low)
            } else {
                (low, high)
            };
            let physical = |raw: i32| -> Result<WideDecimal, RuleError> {
                let origin = samples.origin();
                let scale = origin.scale().max(factor.scale());
                let up = |mantissa: i64, from: u8| {
                    10i128
                        .checked_pow(u32::from(scale - from))
                        .and_then(|f| i128::from(mantissa).checked_mul(f))
                };
                let o = up(origin.mantissa(), origin.scale()).ok_or(RuleError::ValueOutOfRange)?;
                let f = up(factor.mantissa(), factor.scale()).ok_or(RuleError::ValueOutOfRange)?;
                let m = f
                    .checked_mul(i128::from(raw))
                    .and_then(|v| v.checked_add(o))
                    .ok_or(RuleError::ValueOutOfRange)?;
                Ok(WideDecimal::new(m, scale))
            };
            vec![physical(low)?, physical(high)?]
        }
    })
}

impl CheckInput {
    /// What to ask about `measurement` from a device of `group` that sent `per_minute`
    /// readings of this type in the last 60 s, this one included.
    pub fn for_measurement(
        group: u32,
        measurement: &Measurement,
        per_minute: u32,
    ) -> Result<Self, RuleError> {
        Ok(Self {
            group,
            data_type: measurement.data_type().code(),
            unit: measurement.unit().as_str().to_owned(),
            components: components(measurement.value())?,
            per_minute,
            patient: None,
        })
    }

    /// The same question about a reading of `patient`, whose own alarm limits apply if set.
    pub fn with_patient(mut self, patient: PatientKey) -> Self {
        self.patient = Some(patient);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Range;
    use wardseal_core::decimal::Decimal;
    use wardseal_core::reading::SampledData;

    fn d(text: &str) -> WideDecimal {
        WideDecimal::parse(text).unwrap()
    }

    fn book() -> RuleBook {
        let heart =
            TypeRule::new(1, "/min", vec![Range::new(d("30"), d("220")).unwrap()], 6).unwrap();
        let bp = TypeRule::new(
            4,
            "mm[Hg]",
            vec![
                Range::new(d("60"), d("250")).unwrap(),
                Range::new(d("30"), d("150")).unwrap(),
            ],
            0,
        )
        .unwrap();
        let rule = Rule {
            rule_id: 7,
            address: Default::default(),
            types: vec![heart, bp],
        };
        RuleBook::from_parts(&[rule], &[(3, 7)])
    }

    fn input(
        group: u32,
        data_type: u16,
        unit: &str,
        values: &[&str],
        per_minute: u32,
    ) -> CheckInput {
        CheckInput {
            group,
            data_type,
            unit: unit.into(),
            components: values.iter().map(|v| d(v)).collect(),
            per_minute,
            patient: None,
        }
    }

    #[test]
    fn checks_in_the_contracts_order() {
        let b = book();
        let v = |i: &CheckInput| b.check(i).verdict();
        assert_eq!(v(&input(3, 1, "/min", &["72"], 1)), Verdict::Allowed);
        assert_eq!(v(&input(4, 1, "/min", &["72"], 1)), Verdict::NoRuleForGroup);
        assert_eq!(
            v(&input(3, 2, "%", &["97"], 1)),
            Verdict::DataTypeNotAllowed
        );
        assert_eq!(v(&input(3, 1, "bpm", &["72"], 1)), Verdict::WrongUnit);
        assert_eq!(
            v(&input(3, 1, "/min", &["72", "1"], 1)),
            Verdict::WrongComponentCount
        );
        assert_eq!(
            v(&input(3, 1, "/min", &["29.999"], 1)),
            Verdict::BelowMinimum
        );
        assert_eq!(
            v(&input(3, 1, "/min", &["220.0000001"], 1)),
            Verdict::AboveMaximum
        );
        assert_eq!(v(&input(3, 1, "/min", &["220"], 7)), Verdict::RateExceeded);
        assert_eq!(v(&input(3, 1, "/min", &["220"], 6)), Verdict::Allowed);
        let bad_scale = CheckInput {
            components: vec![WideDecimal::new(1, 19)],
            ..input(3, 1, "/min", &["1"], 1)
        };
        assert_eq!(v(&bad_scale), Verdict::InvalidScale);
        let diastolic_low = b.check(&input(3, 4, "mm[Hg]", &["120", "29"], 1));
        assert_eq!(
            (diastolic_low.verdict(), diastolic_low.component()),
            (Verdict::BelowMinimum, 1)
        );
    }

    fn alarmed_book() -> RuleBook {
        use crate::model::Priority::{High, Low, Medium};
        let bp = TypeRule::new(
            4,
            "mm[Hg]",
            vec![
                Range::new(d("20"), d("300")).unwrap(),
                Range::new(d("10"), d("250")).unwrap(),
            ],
            0,
        )
        .unwrap()
        .with_alarms(vec![
            AlarmLimit::low(0, d("90"), true, High),
            AlarmLimit::high(0, d("220"), true, High),
            AlarmLimit::high(1, d("110"), false, Medium),
            AlarmLimit::low(0, d("100"), true, Low),
        ])
        .unwrap();
        let rule = Rule {
            rule_id: 7,
            address: Default::default(),
            types: vec![bp],
        };
        RuleBook::from_parts(&[rule], &[(3, 7)])
    }

    #[test]
    fn abnormal_values_are_accepted_with_the_worst_alarm() {
        let b = alarmed_book();
        let alarm = |sys: &str, dia: &str| {
            let decision = b.check(&input(3, 4, "mm[Hg]", &[sys, dia], 1));
            assert!(decision.is_allowed(), "{sys}/{dia}: {decision:?}");
            decision
                .alarm()
                .map(|a| (a.limit.component, a.interpretation().code(), a.priority()))
        };
        use crate::model::Priority::{High, Low, Medium};
        assert_eq!(alarm("120", "80"), None);
        assert_eq!(alarm("95", "80"), Some((0, "L", Low)));
        assert_eq!(
            alarm("85", "80"),
            Some((0, "LL", High)),
            "the high tier wins"
        );
        assert_eq!(alarm("120", "115"), Some((1, "H", Medium)));
        assert_eq!(
            alarm("230", "115"),
            Some((0, "HH", High)),
            "a higher priority on another component wins"
        );
        assert_eq!(alarm("120", "110"), None, "strictly above 110");
        assert_eq!(
            b.check(&input(3, 4, "mm[Hg]", &["301", "80"], 1)).verdict(),
            Verdict::AboveMaximum,
            "implausible: refused"
        );
    }

    #[test]
    fn a_patients_own_limits_replace_the_rules() {
        let mut b = alarmed_book();
        let patient = PatientKey::for_subject("P-1");
        let own = PatientLimits::new(
            patient,
            4,
            vec![AlarmLimit::low(
                0,
                d("80"),
                true,
                crate::model::Priority::High,
            )],
        )
        .unwrap();
        b.apply(&LedgerEvent::PatientLimitsSet {
            limits: own,
            by: Default::default(),
        });
        let reading = input(3, 4, "mm[Hg]", &["85", "80"], 1);
        assert!(b.check(&reading).alarm().is_some());
        let theirs = b.check(&reading.clone().with_patient(patient));
        assert_eq!(theirs, Decision::Accepted { alarm: None });
        let low = b.check(&input(3, 4, "mm[Hg]", &["80", "80"], 1).with_patient(patient));
        assert_eq!(low.alarm().map(|a| a.source), Some(LimitSource::Patient));
        b.apply(&LedgerEvent::PatientLimitsCleared {
            patient,
            data_type: 4,
            by: Default::default(),
        });
        assert!(b.check(&reading.with_patient(patient)).alarm().is_some());
    }

    #[test]
    fn follows_rule_events() {
        let mut b = book();
        b.apply(&LedgerEvent::TypeRuleRemoved {
            rule_id: 7,
            data_type: 1,
        });
        assert_eq!(
            b.check(&input(3, 1, "/min", &["72"], 1)).verdict(),
            Verdict::DataTypeNotAllowed
        );
        b.apply(&LedgerEvent::GroupRuleSet {
            group: 9,
            rule_id: 7,
        });
        assert_eq!(
            b.check(&input(9, 4, "mm[Hg]", &["120", "80"], 1)).verdict(),
            Verdict::Allowed
        );
    }

    #[test]
    fn waveform_components_are_the_physical_extremes() {
        let dec = |t: &str| Decimal::parse(t).unwrap();
        let samples =
            SampledData::new(dec("0.5"), dec("4"), dec("-0.001"), vec![100, -2000, 300]).unwrap();
        let c = components(&Value::Waveform(samples)).unwrap();
        // 0.5 - 0.001 × 300 = 0.2 (lowest), 0.5 + 0.001 × 2000 = 2.5 (highest)
        assert_eq!(c[0].compare(d("0.2")), Some(Ordering::Equal));
        assert_eq!(c[1].compare(d("2.5")), Some(Ordering::Equal));
    }
}
