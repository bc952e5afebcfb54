//! The kinds of measurement wardseal carries, with their standard codes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ReadingError;

/// The FHIR code system URI of LOINC.
pub const LOINC_SYSTEM: &str = "http://loinc.org";
/// The FHIR code system URI of the ISO/IEEE 11073-10101 nomenclature (MDC codes).
pub const MDC_SYSTEM: &str = "urn:iso:std:iso:11073:10101";
/// The FHIR code system URI of UCUM units.
pub const UCUM_SYSTEM: &str = "http://unitsofmeasure.org";
/// wardseal's local code system: every data type has a code here (its wire name), and it
/// is the only code for types that LOINC and MDC do not name (insulin dose, EEG, EMG).
/// The OID is `.3` under the wardseal arc.
pub const LOCAL_SYSTEM: &str =
    "urn:oid:1.2.840.113556.1.8000.2554.1820.48732.25317.17402.36803.3040821.308419.3";

/// How a data type's value is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueShape {
    /// One number (`"value"` on the wire).
    Quantity,
    /// A systolic and a diastolic pressure (`"systolic"`, `"diastolic"`).
    BloodPressure,
    /// A block of samples taken at a fixed period (`"samples"`).
    Waveform,
}

/// A standard code for a data type or one of its components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Coding {
    /// LOINC code, when LOINC has one.
    pub loinc: Option<&'static str>,
    /// ISO/IEEE 11073-10101 (MDC) code, when one was verified for this use.
    pub mdc: Option<u32>,
    /// Human-readable name.
    pub display: &'static str,
}

macro_rules! data_types {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $shape:ident, $unit:literal,
        $loinc:expr, $mdc:expr, $display:literal; )*) => {
        /// A kind of measurement. The numeric [`code`](DataType::code) is stable: it is in the
        /// canonical encoding of every reading and in the rule contracts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum DataType {
            $( $(#[$doc])* $variant, )*
        }

        impl DataType {
            /// Every data type, in code order.
            pub const ALL: &'static [DataType] = &[$(DataType::$variant),*];

            /// The stable numeric code (canonical encoding, rule contracts).
            pub const fn code(self) -> u16 {
                match self { $(DataType::$variant => $code,)* }
            }

            /// The data type with this numeric code.
            pub fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some(DataType::$variant),)* _ => None }
            }

            /// The name used on the wire (`"type"` field) and as the local code.
            pub const fn name(self) -> &'static str {
                match self { $(DataType::$variant => $name,)* }
            }

            /// How the value is shaped.
            pub const fn shape(self) -> ValueShape {
                match self { $(DataType::$variant => ValueShape::$shape,)* }
            }

            /// The UCUM unit readings of this type are expected in.
            pub const fn ucum_unit(self) -> &'static str {
                match self { $(DataType::$variant => $unit,)* }
            }

            /// The standard codes of this type (for blood pressure: the panel).
            pub const fn coding(self) -> Coding {
                match self {
                    $(DataType::$variant => Coding { loinc: $loinc, mdc: $mdc, display: $display },)*
                }
            }
        }
    };
}

data_types! {
    /// Heart rate, beats per minute.
    HeartRate = 1, "heart_rate", Quantity, "/min", Some("8867-4"), Some(147_842), "Heart rate";
    /// Oxygen saturation (pulse oximetry), percent.
    OxygenSaturation = 2, "spo2", Quantity, "%", Some("2708-6"), Some(150_456), "Oxygen saturation";
    /// Body temperature, degrees Celsius.
    BodyTemperature = 3, "body_temperature", Quantity, "Cel", Some("8310-5"), Some(150_364), "Body temperature";
    /// Non-invasive blood pressure: systolic and diastolic, millimetres of mercury.
    BloodPressure = 4, "blood_pressure", BloodPressure, "mm[Hg]", Some("85354-9"), Some(150_020), "Blood pressure panel";
    /// Respiratory rate, breaths per minute.
    RespiratoryRate = 5, "respiratory_rate", Quantity, "/min", Some("9279-1"), Some(151_562), "Respiratory rate";
    /// Blood glucose (meter), mg/dL.
    Glucose = 6, "glucose", Quantity, "mg/dL", Some("2339-0"), None, "Glucose in blood";
    /// Interstitial glucose from a continuous glucose monitor, mg/dL.
    CgmGlucose = 7, "cgm_glucose", Quantity, "mg/dL", Some("99504-3"), None, "Glucose in interstitial fluid (CGM)";
    /// Insulin dose delivered by a pen or pump, international units. No LOINC or MDC
    /// code fits a device-reported dose: local code only.
    InsulinDose = 8, "insulin_dose", Quantity, "[IU]", None, None, "Insulin dose";
    /// Electrocardiogram waveform, millivolts.
    Ecg = 9, "ecg", Waveform, "mV", None, Some(131_328), "ECG electric potential";
    /// Electroencephalogram waveform, microvolts. Local code only.
    Eeg = 10, "eeg", Waveform, "uV", None, None, "EEG electric potential";
    /// Electromyogram waveform, millivolts. Local code only.
    Emg = 11, "emg", Waveform, "mV", None, None, "EMG electric potential";
}

/// The components of a blood-pressure reading.
impl DataType {
    /// Codes of the systolic component.
    pub const SYSTOLIC: Coding = Coding {
        loinc: Some("8480-6"),
        mdc: Some(150_021),
        display: "Systolic blood pressure",
    };
    /// Codes of the diastolic component.
    pub const DIASTOLIC: Coding = Coding {
        loinc: Some("8462-4"),
        mdc: Some(150_022),
        display: "Diastolic blood pressure",
    };
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataType {
    type Err = ReadingError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        DataType::ALL
            .iter()
            .copied()
            .find(|data_type| data_type.name() == name)
            .ok_or_else(|| ReadingError::UnknownDataType(name.chars().take(40).collect()))
    }
}

impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_round_trip() {
        let mut codes = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for &data_type in DataType::ALL {
            assert!(codes.insert(data_type.code()));
            assert!(names.insert(data_type.name()));
            assert_eq!(DataType::from_code(data_type.code()), Some(data_type));
            assert_eq!(data_type.name().parse::<DataType>(), Ok(data_type));
        }
        assert_eq!(DataType::from_code(0), None);
        assert!(matches!(
            "pulse".parse::<DataType>(),
            Err(ReadingError::UnknownDataType(_))
        ));
    }

    #[test]
    fn local_system_is_the_arc_s_third_oid() {
        assert_eq!(
            LOCAL_SYSTEM,
            format!("urn:oid:{}", crate::identity::LOCAL_CODE_SYSTEM_OID)
        );
    }

    #[test]
    fn design_codes_are_kept() {
        assert_eq!(DataType::HeartRate.coding().loinc, Some("8867-4"));
        assert_eq!(DataType::HeartRate.coding().mdc, Some(147_842));
        assert_eq!(DataType::OxygenSaturation.coding().mdc, Some(150_456));
        assert_eq!(DataType::BodyTemperature.ucum_unit(), "Cel");
        assert_eq!(DataType::BloodPressure.coding().loinc, Some("85354-9"));
        assert_eq!(DataType::SYSTOLIC.loinc, Some("8480-6"));
        assert_eq!(DataType::DIASTOLIC.loinc, Some("8462-4"));
        assert_eq!(DataType::RespiratoryRate.coding().mdc, Some(151_562));
        assert_eq!(DataType::CgmGlucose.coding().loinc, Some("99504-3"));
        assert_eq!(DataType::InsulinDose.coding().loinc, None);
        assert_eq!(DataType::Eeg.shape(), ValueShape::Waveform);
    }
}
