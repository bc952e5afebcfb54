//! The kinds of simulated device, what each one measures and the rule its group gets.
//!
//! Each kind is its own device group with its own rule (group id = rule id = the kind's
//! number), so a reading of a type a kind does not measure is refused by the collector as
//! `data_type_not_allowed`.
//!
//! Each data type has two kinds of limits (see `wardseal_contracts::TypeRule`):
//! - **plausibility** ranges: what a working device can measure. A value outside is false
//!   data and refused as `value_out_of_range`. These are wardseal's engineering bounds,
//!   deliberately wide: a reading a clinician may need is never refused for its value.
//! - **alarm limits** from published clinical references, each cited where it is set. A
//!   value past one is accepted and flagged. Priorities follow IEC 60601-1-8's three
//!   alarm priorities (high: immediate response; medium: prompt response; low:
//!   awareness). Where the source is a NEWS2 score band, wardseal maps the band's score
//!   to a priority: 3 → high, 2 → medium, 1 → low (NEWS2 itself asks for an urgent
//!   response to a score of 3 in any single parameter; the mapping is wardseal's).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use wardseal_contracts::{AlarmLimit, Priority, Range, Trigger, TypeRule, WideDecimal};
use wardseal_core::reading::DataType;

use crate::error::Error;

/// A kind of simulated device (the seed's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Electrocardiograph: heart rate and ECG waveform blocks (mV).
    Ecg,
    /// Electroencephalograph: EEG waveform blocks (µV).
    Eeg,
    /// Electromyograph: EMG waveform blocks (mV).
    Emg,
    /// Pulse oximeter: SpO₂ and pulse rate.
    PulseOximeter,
    /// Thermometer: body temperature.
    Thermometer,
    /// Continuous glucose monitor: interstitial glucose.
    Cgm,
    /// Insulin pen: delivered doses.
    InsulinPen,
    /// Blood-pressure cuff: systolic and diastolic pressure.
    BloodPressure,
}

/// One data type a kind sends, and what its rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeLimits {
    /// The data type.
    pub data_type: DataType,
    /// Inclusive plausibility ranges, one per value component (see
    /// `wardseal_contracts::TypeRule`): outside is false data.
    pub ranges: &'static [(&'static str, &'static str)],
    /// Clinical alarm limits: past one, a reading is accepted and flagged.
    pub alarms: &'static [Alarm],
    /// Readings of this type a device sends per minute at its nominal rate.
    pub per_minute: u32,
}

/// A clinical alarm limit as written in its source: component, trigger, bound, priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alarm {
    /// The value component (0; for blood pressure 0 systolic, 1 diastolic).
    pub component: u8,
    /// How it is crossed.
    pub trigger: Trigger,
    /// The bound, as an exact decimal.
    pub bound: &'static str,
    /// The alarm's priority.
    pub priority: Priority,
}

const fn at_or_below(component: u8, bound: &'static str, priority: Priority) -> Alarm {
    Alarm {
        component,
        trigger: Trigger::AtOrBelow,
        bound,
        priority,
    }
}

const fn below(component: u8, bound: &'static str, priority: Priority) -> Alarm {
    Alarm {
        component,
        trigger: Trigger::Below,
        bound,
        priority,
    }
}

const fn at_or_above(component: u8, bound: &'static str, priority: Priority) -> Alarm {
    Alarm {
        component,
        trigger: Trigger::AtOrAbove,
        bound,
        priority,
    }
}

const fn above(component: u8, bound: &'static str, priority: Priority) -> Alarm {
    Alarm {
        component,
        trigger: Trigger::Above,
        bound,
        priority,
    }
}

impl DeviceKind {
    /// Every kind, in group order.
    pub const ALL: [DeviceKind; 8] = [
        DeviceKind::Ecg,
        DeviceKind::Eeg,
        DeviceKind::Emg,
        DeviceKind::PulseOximeter,
        DeviceKind::Thermometer,
        DeviceKind::Cgm,
        DeviceKind::InsulinPen,
        DeviceKind::BloodPressure,
    ];

    /// The name on the command line and in files (`pulse_oximeter`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Ecg => "ecg",
            DeviceKind::Eeg => "eeg",
            DeviceKind::Emg => "emg",
            DeviceKind::PulseOximeter => "pulse_oximeter",
            DeviceKind::Thermometer => "thermometer",
            DeviceKind::Cgm => "cgm",
            DeviceKind::InsulinPen => "insulin_pen",
            DeviceKind::BloodPressure => "blood_pressure",
        }
    }

    /// The device group (and rule id) of this kind: 1 to 8.
    pub fn group(self) -> u32 {
        match self {
            DeviceKind::Ecg => 1,
            DeviceKind::Eeg => 2,
            DeviceKind::Emg => 3,
            DeviceKind::PulseOximeter => 4,
            DeviceKind::Thermometer => 5,
            DeviceKind::Cgm => 6,
            DeviceKind::InsulinPen => 7,
            DeviceKind::BloodPressure => 8,
        }
    }

    /// The GS1 item reference of this kind's devices (6 digits: company prefix 0614141).
    pub fn item_reference(self) -> u32 {
        812_340 + self.group()
    }

    /// What this kind sends. The nominal rates are what a bedside monitor reports to a
    /// central station, not the sensor's sampling rate: waveforms come in one-second
    /// blocks, vital signs every few seconds, a CGM every few minutes (accelerated here so
    /// a short demo sees some).
    pub fn types(self) -> &'static [TypeLimits] {
        use Priority::{High, Low, Medium};
        const fn limits(
            data_type: DataType,
            ranges: &'static [(&'static str, &'static str)],
            alarms: &'static [Alarm],
            per_minute: u32,
        ) -> TypeLimits {
            TypeLimits {
                data_type,
                ranges,
                alarms,
                per_minute,
            }
        }
        // Heart rate: plausible 0–350 /min (DESIGN.md: beyond any rate a heart or a
        // monitor produces). Alarms: NEWS2 pulse bands (Royal College of Physicians,
        // National Early Warning Score (NEWS) 2, 2017, chart 1): ≤ 40 scores 3,
        // 41–50 scores 1, 91–110 scores 1, 111–130 scores 2, ≥ 131 scores 3.
        const HEART_RANGE: &[(&str, &str)] = &[("0", "350")];
        const HEART_ALARMS: &[Alarm] = &[
            at_or_below(0, "40", High),
            at_or_below(0, "50", Low),
            at_or_above(0, "91", Low),
            at_or_above(0, "111", Medium),
            at_or_above(0, "131", High),
        ];
        // Waveforms: the seed's amplitude ranges, kept as plausibility (the signal an
        // electrode front end passes); amplitude alone raises no clinical alarm.
        const ECG: &[TypeLimits] = &[
            limits(DataType::HeartRate, HEART_RANGE, HEART_ALARMS, 60),
            limits(DataType::Ecg, &[("-5", "5"), ("-5", "5")], &[], 60),
        ];
        const EEG: &[TypeLimits] = &[limits(
            DataType::Eeg,
            &[("-300", "300"), ("-300", "300")],
            &[],
            60,
        )];
        const EMG: &[TypeLimits] = &[limits(
            DataType::Emg,
            &[("-10", "10"), ("-10", "10")],
            &[],
            60,
        )];
        // SpO₂: plausible 0–100 % (a saturation is a fraction). Alarms: NEWS2 SpO₂
        // scale 1 (RCP 2017, chart 1): ≤ 91 scores 3, 92–93 scores 2, 94–95 scores 1.
        // (Scale 2, for hypercapnic respiratory failure, is a per-patient override.)
        const OXIMETER: &[TypeLimits] = &[
            limits(
                DataType::OxygenSaturation,
                &[("0", "100")],
                &[
                    at_or_below(0, "91", High),
                    at_or_below(0, "93", Medium),
                    at_or_below(0, "95", Low),
                ],
                60,
            ),
            limits(DataType::HeartRate, HEART_RANGE, HEART_ALARMS, 60),
        ];
        // Body temperature: plausible 25–45 °C (DESIGN.md). Alarms: NEWS2 temperature
        // bands (RCP 2017, chart 1): ≤ 35.0 scores 3, 35.1–36.0 scores 1, 38.1–39.0
        // scores 1, ≥ 39.1 scores 2.
        const THERMOMETER: &[TypeLimits] = &[limits(
            DataType::BodyTemperature,
            &[("25", "45")],
            &[
                at_or_below(0, "35.0", High),
                at_or_below(0, "36.0", Low),
                at_or_above(0, "38.1", Low),
                at_or_above(0, "39.1", Medium),
            ],
            12,
        )];
        // CGM glucose: plausible 0–1000 mg/dL (wardseal's bound, wider than any sensor's
        // reporting range, so no reading a sensor gives is refused). Alarms:
        // hypoglycaemia level 1 (< 70 mg/dL) and level 2 (< 54 mg/dL) after the American
        // Diabetes Association, Standards of Care in Diabetes—2024, section 6 "Glycemic
        // Goals and Hypoglycemia" (Diabetes Care 47, suppl. 1, S111); hyperglycaemia
        // above 180 mg/dL (level 1) and above 250 mg/dL (level 2) after the
        // International Consensus on Time in Range (Battelino et al., Diabetes Care
        // 42(8):1593, 2019), the CGM ranges the ADA Standards use.
        const CGM: &[TypeLimits] = &[limits(
            DataType::CgmGlucose,
            &[("0", "1000")],
            &[
                below(0, "54", High),
                below(0, "70", Medium),
                above(0, "180", Low),
                above(0, "250", Medium),
            ],
            12,
        )];
        // Insulin doses: plausible 0.5–160 units (wardseal's bound: from the smallest
        // step a pen dials to beyond the largest single dose pens dial). A dose is an
        // action, not an observation: no alarm limit.
        const PEN: &[TypeLimits] = &[limits(DataType::InsulinDose, &[("0.5", "160")], &[], 6)];
        // Blood pressure: plausible 0–300 mmHg for both components (wardseal's bound).
        // Alarms on the systolic pressure: NEWS2 bands (RCP 2017, chart 1): ≤ 90 scores
        // 3, 91–100 scores 2, 101–110 scores 1, ≥ 220 scores 3. NEWS2 scores no
        // diastolic pressure, so none is set here.
        const BLOOD_PRESSURE: &[TypeLimits] = &[limits(
            DataType::BloodPressure,
            &[("0", "300"), ("0", "300")],
            &[
                at_or_below(0, "90", High),
                at_or_below(0, "100", Medium),
                at_or_below(0, "110", Low),
                at_or_above(0, "220", High),
            ],
            12,
        )];
        match self {
            DeviceKind::Ecg => ECG,
            DeviceKind::Eeg => EEG,
            DeviceKind::Emg => EMG,
            DeviceKind::PulseOximeter => OXIMETER,
            DeviceKind::Thermometer => THERMOMETER,
            DeviceKind::Cgm => CGM,
            DeviceKind::InsulinPen => PEN,
            DeviceKind::BloodPressure => BLOOD_PRESSURE,
        }
    }

    /// The type rules of this kind's group. The rate limit leaves room for bursts and
    /// for a simulator run faster than nominal: ten times the nominal rate.
    pub fn type_rules(self) -> Result<Vec<TypeRule>, Error> {
        self.types()
            .iter()
            .map(|limits| {
                let ranges = limits
                    .ranges
                    .iter()
                    .map(|(min, max)| {
                        Range::new(WideDecimal::parse(min)?, WideDecimal::parse(max)?)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let alarms = limits
                    .alarms
                    .iter()
                    .map(|a| {
                        AlarmLimit::new(
                            a.component,
                            a.trigger,
                            a.priority,
                            WideDecimal::parse(a.bound)?,
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TypeRule::new(
                    limits.data_type.code(),
                    limits.data_type.ucum_unit(),
                    ranges,
                    limits.per_minute.saturating_mul(10),
                )?
                .with_alarms(alarms)?)
            })
            .collect()
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        DeviceKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| Error::UnknownKind(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_have_distinct_groups() {
        let mut groups = std::collections::HashSet::new();
        for kind in DeviceKind::ALL {
            assert_eq!(kind.name().parse::<DeviceKind>().unwrap(), kind);
            assert!(groups.insert(kind.group()));
            assert!(!kind.type_rules().unwrap().is_empty());
        }
        assert!("toaster".parse::<DeviceKind>().is_err());
    }

    fn decide(
        kind: DeviceKind,
        data_type: DataType,
        values: &[&str],
    ) -> wardseal_contracts::Decision {
        let rule = wardseal_contracts::Rule {
            rule_id: kind.group(),
            address: Default::default(),
            types: kind.type_rules().unwrap(),
        };
        let book =
            wardseal_contracts::RuleBook::from_parts(&[rule], &[(kind.group(), kind.group())]);
        book.check(&wardseal_contracts::CheckInput {
            group: kind.group(),
            data_type: data_type.code(),
            unit: data_type.ucum_unit().into(),
            components: values
                .iter()
                .map(|v| WideDecimal::parse(v).unwrap())
                .collect(),
            per_minute: 1,
            patient: None,
        })
    }

    fn alarm(
        kind: DeviceKind,
        data_type: DataType,
        values: &[&str],
    ) -> Option<(&'static str, Priority)> {
        let decision = decide(kind, data_type, values);
        assert!(decision.is_allowed(), "{kind} {values:?}: {decision:?}");
        decision
            .alarm()
            .map(|a| (a.interpretation().code(), a.priority()))
    }

    #[test]
    fn critical_readings_are_accepted_and_flagged_implausible_ones_refused() {
        use DataType as T;
        use DeviceKind as K;
        use Priority::{High, Low, Medium};
        // The readings the old rules refused are the ones a nurse must see.
        assert_eq!(alarm(K::Ecg, T::HeartRate, &["25"]), Some(("LL", High)));
        assert_eq!(
            alarm(K::PulseOximeter, T::OxygenSaturation, &["65"]),
            Some(("LL", High))
        );
        assert_eq!(alarm(K::Cgm, T::CgmGlucose, &["38"]), Some(("LL", High)));
        assert_eq!(alarm(K::Cgm, T::CgmGlucose, &["60"]), Some(("L", Medium)));
        assert_eq!(alarm(K::Cgm, T::CgmGlucose, &["300"]), Some(("H", Medium)));
        assert_eq!(
            alarm(K::Thermometer, T::BodyTemperature, &["39.5"]),
            Some(("H", Medium))
        );
        assert_eq!(
            alarm(K::Thermometer, T::BodyTemperature, &["34.2"]),
            Some(("LL", High))
        );
        assert_eq!(
            alarm(K::BloodPressure, T::BloodPressure, &["85", "50"]),
            Some(("LL", High))
        );
        assert_eq!(
            alarm(K::BloodPressure, T::BloodPressure, &["230", "120"]),
            Some(("HH", High))
        );
        assert_eq!(alarm(K::Ecg, T::HeartRate, &["100"]), Some(("H", Low)));
        assert_eq!(alarm(K::Ecg, T::HeartRate, &["72"]), None);
        assert_eq!(alarm(K::PulseOximeter, T::OxygenSaturation, &["97"]), None);
        // What no working device measures is false data.
        for (kind, data_type, values) in [
            (K::Ecg, T::HeartRate, &["400"][..]),
            (K::PulseOximeter, T::OxygenSaturation, &["101"][..]),
            (K::Thermometer, T::BodyTemperature, &["50"][..]),
            (K::Thermometer, T::BodyTemperature, &["24.9"][..]),
            (K::Cgm, T::CgmGlucose, &["-1"][..]),
            (K::BloodPressure, T::BloodPressure, &["120", "301"][..]),
        ] {
            assert!(
                !decide(kind, data_type, values).is_allowed(),
                "{kind} {values:?} must be refused"
            );
        }
    }
}
