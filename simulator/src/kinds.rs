//! The kinds of simulated device, what each one measures and the rule its group gets.
//!
//! Each kind is its own device group with its own rule (group id = rule id = the kind's
//! number), so a reading of a type a kind does not measure is refused by the collector as
//! `data_type_not_allowed`, and a value outside the clinical range below as
//! `value_out_of_range`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use wardseal_contracts::{Range, TypeRule, WideDecimal};
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
    /// Inclusive ranges, one per value component (see `wardseal_contracts::TypeRule`).
    pub ranges: &'static [(&'static str, &'static str)],
    /// Readings of this type a device sends per minute at its nominal rate.
    pub per_minute: u32,
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
        const fn limits(
            data_type: DataType,
            ranges: &'static [(&'static str, &'static str)],
            per_minute: u32,
        ) -> TypeLimits {
            TypeLimits {
                data_type,
                ranges,
                per_minute,
            }
        }
        const HEART: &[(&str, &str)] = &[("30", "220")];
        const ECG: &[TypeLimits] = &[
            limits(DataType::HeartRate, HEART, 60),
            limits(DataType::Ecg, &[("-5", "5"), ("-5", "5")], 60),
        ];
        const EEG: &[TypeLimits] = &[limits(
            DataType::Eeg,
            &[("-300", "300"), ("-300", "300")],
            60,
        )];
        const EMG: &[TypeLimits] = &[limits(DataType::Emg, &[("-10", "10"), ("-10", "10")], 60)];
        const OXIMETER: &[TypeLimits] = &[
            limits(DataType::OxygenSaturation, &[("70", "100")], 60),
            limits(DataType::HeartRate, HEART, 60),
        ];
        const THERMOMETER: &[TypeLimits] =
            &[limits(DataType::BodyTemperature, &[("34", "42")], 12)];
        const CGM: &[TypeLimits] = &[limits(DataType::CgmGlucose, &[("40", "400")], 12)];
        const PEN: &[TypeLimits] = &[limits(DataType::InsulinDose, &[("0.5", "30")], 6)];
        const BLOOD_PRESSURE: &[TypeLimits] = &[limits(
            DataType::BloodPressure,
            &[("60", "220"), ("30", "140")],
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
                Ok(TypeRule::new(
                    limits.data_type.code(),
                    limits.data_type.ucum_unit(),
                    ranges,
                    limits.per_minute.saturating_mul(10),
                )?)
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
}
