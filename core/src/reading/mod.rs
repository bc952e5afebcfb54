//! Readings: what a device measures, how it sends it, and the bytes that get hashed.
//!
//! A device POSTs a [`Measurement`] as JSON (see [`json`] for the wire form and
//! examples). The collector pairs it with the device's EPC, taken from the device's
//! certificate and never from the body, to make a [`Reading`]: the leaf of a patient's
//! Merkle tree. A reading's [`canonical_bytes`](Reading::canonical_bytes) are versioned and
//! deterministic (see [`canonical`]); its leaf hash is `SHA-256(0x00 ‖ canonical bytes)`
//! (RFC 9162).
//!
//! Values are exact [`Decimal`]s: `1.50` and `1.5` are the same value and give the same
//! bytes (see [`crate::decimal`] for why).

pub mod canonical;
mod data_type;
pub mod json;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use data_type::{
    Coding, DataType, LOCAL_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, UCUM_SYSTEM, ValueShape,
};

use crate::decimal::{Decimal, DecimalError};
use crate::epc::{EpcError, Sgtin96};
use crate::hash::Hash;

/// The most samples one waveform reading may carry (about 30 s of ECG at 500 Hz).
pub const MAX_SAMPLES: usize = 16_384;

/// Why a reading, in JSON or in canonical bytes, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadingError {
    /// The body is not valid JSON, or a field has the wrong JSON type, or a field is
    /// unknown or missing.
    #[error("malformed reading JSON at line {line}, column {column}: {message}")]
    Json {
        /// Line of the error in the reading's JSON text (1-based).
        line: usize,
        /// Column of the error (1-based).
        column: usize,
        /// What the JSON parser found.
        message: String,
    },
    /// The body is neither one reading (a JSON object) nor an array of them.
    #[error("the body must be one reading (a JSON object) or an array of readings")]
    NotObjectOrArray,
    /// The body is an empty array.
    #[error("the array of readings is empty")]
    Empty,
    /// The body holds more readings than one request may carry.
    #[error("{count} readings in one request; send at most {max} per request")]
    TooMany {
        /// Readings in the body.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The `type` names no data type wardseal knows.
    #[error(
        "unknown data type `{0}` (known: heart_rate, spo2, body_temperature, blood_pressure, respiratory_rate, glucose, cgm_glucose, insulin_dose, ecg, eeg, emg)"
    )]
    UnknownDataType(String),
    /// The value fields present do not fit the data type (e.g. `samples` on a heart rate).
    #[error("{data_type} readings carry {expected}")]
    WrongValueShape {
        /// The reading's data type.
        data_type: DataType,
        /// What that type carries, in words.
        expected: &'static str,
    },
    /// A numeric field is not an exact decimal within limits.
    #[error("field `{field}`: {source}")]
    Decimal {
        /// The field that holds the number.
        field: &'static str,
        /// What is wrong with it.
        source: DecimalError,
    },
    /// A numeric field holds a JSON string.
    #[error("field `{field}` must be a JSON number, not a string (write 36.6, not \"36.6\")")]
    NumberAsString {
        /// The field that holds the string.
        field: &'static str,
    },
    /// The unit is not a plausible UCUM code.
    #[error(
        "unit `{0}` is not a UCUM code (1 to 32 printable ASCII characters, no spaces, e.g. /min, Cel, mm[Hg])"
    )]
    InvalidUnit(String),
    /// The time is not an RFC 3339 date-time with an offset.
    #[error("time `{0}` is not an RFC 3339 date-time such as 2026-11-21T08:00:00.250Z")]
    InvalidTime(String),
    /// The time has digits below the microsecond.
    #[error("time `{0}` is more precise than a microsecond; send at most 6 fractional digits")]
    SubMicrosecondTime(String),
    /// The time is before 1970 or after 9999.
    #[error("time is out of range (1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z)")]
    TimeOutOfRange,
    /// A waveform's sampling description is unusable.
    #[error("waveform samples: {0}")]
    InvalidSamples(&'static str),
    /// Canonical bytes end before the reading does.
    #[error("canonical reading truncated at byte {position}")]
    Truncated {
        /// Where the input ended.
        position: usize,
    },
    /// Canonical bytes continue after the reading.
    #[error("canonical reading has trailing bytes from byte {position}")]
    TrailingBytes {
        /// The first byte after the reading.
        position: usize,
    },
    /// The canonical encoding's version byte is not one this library reads.
    #[error("canonical reading version {0} is not supported (this library reads version 1)")]
    UnknownVersion(u8),
    /// The canonical encoding names a data type code that does not exist.
    #[error("canonical reading names unknown data type code {0}")]
    UnknownDataTypeCode(u16),
    /// The canonical value tag is unknown or does not fit the data type.
    #[error("canonical reading has value tag {tag}, which does not fit data type {data_type}")]
    ValueTagMismatch {
        /// The data type found.
        data_type: DataType,
        /// The value tag found.
        tag: u8,
    },
    /// The canonical encoding holds a device id that is not an SGTIN-96 EPC.
    #[error("canonical reading device id: {0}")]
    InvalidDevice(EpcError),
}

impl From<serde_json::Error> for ReadingError {
    fn from(error: serde_json::Error) -> Self {
        // serde_json's Display appends " at line L column C"; keep the sentence only.
        let message = error.to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        ReadingError::Json {
            line: error.line(),
            column: error.column(),
            message,
        }
    }
}

/// A UCUM unit code as the device sent it (`/min`, `Cel`, `mm[Hg]`, `%`, `mg/dL`).
///
/// The syntax is checked here; whether it is the right unit for the data type is a
/// rule decision, so a collector can refuse it with its own reason.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unit(String);

impl Unit {
    /// The longest unit code accepted.
    pub const MAX_LEN: usize = 32;

    /// The unit code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unit a data type is expected in.
    pub fn of(data_type: DataType) -> Self {
        Self(data_type.ucum_unit().to_owned())
    }
}

impl FromStr for Unit {
    type Err = ReadingError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        let plausible = (1..=Self::MAX_LEN).contains(&code.len())
            && code.bytes().all(|byte| byte.is_ascii_graphic());
        if plausible {
            Ok(Self(code.to_owned()))
        } else {
            Err(ReadingError::InvalidUnit(code.chars().take(40).collect()))
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unit({})", self.0)
    }
}

impl Serialize for Unit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Unit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

/// A point in time, in whole microseconds since 1970-01-01T00:00:00Z.
///
/// Written as RFC 3339 in UTC on the wire (`2026-11-21T08:00:00.25Z`); any offset is
/// accepted on input and converted to UTC, so one instant has one encoding. The range is
/// 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z: every value can be written in
/// RFC 3339, and no device measured anything before 1970.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest timestamp: 1970-01-01T00:00:00Z.
    pub const MIN: Self = Self(0);
    /// The latest timestamp: 9999-12-31T23:59:59.999999Z.
    pub const MAX: Self = Self(253_402_300_799_999_999);

    /// From microseconds since the Unix epoch, within [`MIN`](Self::MIN)..=[`MAX`](Self::MAX).
    pub const fn from_unix_micros(micros: i64) -> Result<Self, ReadingError> {
        if micros < Self::MIN.0 || micros > Self::MAX.0 {
            return Err(ReadingError::TimeOutOfRange);
        }
        Ok(Self(micros))
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// From an `OffsetDateTime`, refusing sub-microsecond precision.
    pub fn from_datetime(datetime: OffsetDateTime) -> Result<Self, ReadingError> {
        let nanos = datetime.unix_timestamp_nanos();
        if nanos % 1_000 != 0 {
            return Err(ReadingError::SubMicrosecondTime(
                datetime.format(&Rfc3339).unwrap_or_default(),
            ));
        }
        let micros = i64::try_from(nanos / 1_000).map_err(|_| ReadingError::TimeOutOfRange)?;
        Self::from_unix_micros(micros)
    }

    /// The instant as an `OffsetDateTime` in UTC.
    pub fn to_datetime(self) -> Result<OffsetDateTime, ReadingError> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .map_err(|_| ReadingError::TimeOutOfRange)
    }

    /// The current time (microsecond precision).
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let micros = i64::try_from(nanos / 1_000).unwrap_or(i64::MAX);
        Self(micros.clamp(Self::MIN.0, Self::MAX.0))
    }
}

impl FromStr for Timestamp {
    type Err = ReadingError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let datetime = OffsetDateTime::parse(text, &Rfc3339)
            .map_err(|_| ReadingError::InvalidTime(text.chars().take(40).collect()))?;
        Self::from_datetime(datetime).map_err(|error| match error {
            ReadingError::SubMicrosecondTime(_) => {
                ReadingError::SubMicrosecondTime(text.to_owned())
            }
            other => other,
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .to_datetime()
            .ok()
            .and_then(|dt| dt.format(&Rfc3339).ok())
        {
            Some(text) => f.write_str(&text),
            None => write!(f, "@{}us", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A block of waveform samples: sample `i` is `origin + factor × data[i]`, taken
/// `i × period_ms` milliseconds after the reading's time (FHIR `SampledData` with one
/// dimension).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SampledData {
    origin: Decimal,
    period_ms: Decimal,
    factor: Decimal,
    data: Vec<i32>,
}

impl SampledData {
    /// Checks the description: positive period, non-zero factor, 1 to [`MAX_SAMPLES`] samples.
    pub fn new(
        origin: Decimal,
        period_ms: Decimal,
        factor: Decimal,
        data: Vec<i32>,
    ) -> Result<Self, ReadingError> {
        if period_ms <= Decimal::ZERO {
            return Err(ReadingError::InvalidSamples("period_ms must be above zero"));
        }
        if factor == Decimal::ZERO {
            return Err(ReadingError::InvalidSamples("factor must not be zero"));
        }
        if data.is_empty() {
            return Err(ReadingError::InvalidSamples(
                "data must hold at least one sample",
            ));
        }
        if data.len() > MAX_SAMPLES {
            return Err(ReadingError::InvalidSamples(
                "data holds more than 16384 samples; split the block",
            ));
        }
        Ok(Self {
            origin,
            period_ms,
            factor,
            data,
        })
    }

    /// The value that a raw sample of zero stands for.
    pub fn origin(&self) -> Decimal {
        self.origin
    }

    /// Milliseconds between samples.
    pub fn period_ms(&self) -> Decimal {
        self.period_ms
    }

    /// The value of one raw sample step.
    pub fn factor(&self) -> Decimal {
        self.factor
    }

    /// The raw samples.
    pub fn data(&self) -> &[i32] {
        &self.data
    }
}

/// What a reading measured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// One number.
    Quantity(Decimal),
    /// Systolic and diastolic pressure.
    BloodPressure {
        /// Systolic pressure.
        systolic: Decimal,
        /// Diastolic pressure.
        diastolic: Decimal,
    },
    /// A block of waveform samples.
    Waveform(SampledData),
}

impl Value {
    /// The shape of this value.
    pub fn shape(&self) -> ValueShape {
        match self {
            Value::Quantity(_) => ValueShape::Quantity,
            Value::BloodPressure { .. } => ValueShape::BloodPressure,
            Value::Waveform(_) => ValueShape::Waveform,
        }
    }
}

fn expected_fields(shape: ValueShape) -> &'static str {
    match shape {
        ValueShape::Quantity => "one number in `value`",
        ValueShape::BloodPressure => "`systolic` and `diastolic`",
        ValueShape::Waveform => "a block of `samples`",
    }
}

/// One measurement as a device reports it: everything but the device's identity, which
/// comes from its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Measurement {
    data_type: DataType,
    unit: Unit,
    value: Value,
    time: Timestamp,
    sequence: u64,
}

impl Measurement {
    /// A measurement whose value has the shape its data type needs.
    pub fn new(
        data_type: DataType,
        unit: Unit,
        value: Value,
        time: Timestamp,
        sequence: u64,
    ) -> Result<Self, ReadingError> {
        if value.shape() != data_type.shape() {
            return Err(ReadingError::WrongValueShape {
                data_type,
                expected: expected_fields(data_type.shape()),
            });
        }
        Ok(Self {
            data_type,
            unit,
            value,
            time,
            sequence,
        })
    }

    /// What was measured.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The unit the device stated.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    /// The measured value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// When the device measured it (the device's clock).
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// The device's sequence number for this reading; strictly increasing per device.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// A measurement bound to the device that made it: a leaf of a patient's Merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reading {
    device: Sgtin96,
    measurement: Measurement,
}

impl Reading {
    /// Binds a measurement to the device whose certificate sent it.
    pub fn new(device: Sgtin96, measurement: Measurement) -> Self {
        Self {
            device,
            measurement,
        }
    }

    /// The device's EPC.
    pub fn device(&self) -> &Sgtin96 {
        &self.device
    }

    /// The measurement.
    pub fn measurement(&self) -> &Measurement {
        &self.measurement
    }

    /// The canonical encoding (version 1): what is hashed, signed over and stored.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical::encode(self)
    }

    /// Decodes a canonical encoding, accepting only the exact bytes
    /// [`canonical_bytes`](Reading::canonical_bytes) would produce.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ReadingError> {
        canonical::decode(bytes)
    }

    /// The RFC 9162 leaf hash: `SHA-256(0x00 ‖ canonical bytes)`.
    pub fn leaf_hash(&self) -> Hash {
        crate::merkle::leaf_hash(&self.canonical_bytes())
    }
}

/// Serialised as the device's JSON form plus `"device"` (the EPC tag URI).
impl Serialize for Reading {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        json::serialize_reading(self, serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_rfc3339_in_any_offset_and_print_utc() {
        let utc: Timestamp = "2026-11-21T08:00:00.25Z".parse().unwrap();
        let paris: Timestamp = "2026-11-21T09:00:00.250+01:00".parse().unwrap();
        assert_eq!(utc, paris);
        assert_eq!(utc.to_string(), "2026-11-21T08:00:00.25Z");
        assert_eq!(utc.to_string().parse::<Timestamp>(), Ok(utc));
        assert_eq!(
            "2026-11-21T08:00:00.000001Z"
                .parse::<Timestamp>()
                .unwrap()
                .unix_micros()
                % 1_000_000,
            1
        );
    }

    #[test]
    fn timestamps_refuse_bad_text_and_nanoseconds() {
        for bad in [
            "",
            "2026-11-21",
            "2026-11-21T08:00:00",
            "yesterday",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(
                matches!(bad.parse::<Timestamp>(), Err(ReadingError::InvalidTime(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "1969-12-31T23:59:59Z".parse::<Timestamp>(),
            Err(ReadingError::TimeOutOfRange)
        );
        assert_eq!(
            Timestamp::from_unix_micros(-1),
            Err(ReadingError::TimeOutOfRange)
        );
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(Timestamp::MAX.to_string().parse(), Ok(Timestamp::MAX));
        assert_eq!(
            Timestamp::from_unix_micros(Timestamp::MAX.unix_micros() + 1),
            Err(ReadingError::TimeOutOfRange)
        );
        assert!(matches!(
            "2026-11-21T08:00:00.0000001Z".parse::<Timestamp>(),
            Err(ReadingError::SubMicrosecondTime(_))
        ));
    }

    #[test]
    fn units_are_checked_for_syntax_only() {
        for good in ["/min", "Cel", "mm[Hg]", "%", "mg/dL", "[IU]", "uV"] {
            assert_eq!(good.parse::<Unit>().unwrap().as_str(), good);
        }
        for bad in ["", "mm Hg", "°C", "a".repeat(33).as_str(), "\n"] {
            assert!(
                matches!(bad.parse::<Unit>(), Err(ReadingError::InvalidUnit(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sampled_data_limits() {
        let one = Decimal::from_integer(1);
        assert!(SampledData::new(Decimal::ZERO, one, one, vec![1]).is_ok());
        assert!(SampledData::new(Decimal::ZERO, Decimal::ZERO, one, vec![1]).is_err());
        assert!(SampledData::new(Decimal::ZERO, one, Decimal::ZERO, vec![1]).is_err());
        assert!(SampledData::new(Decimal::ZERO, one, one, vec![]).is_err());
        assert!(SampledData::new(Decimal::ZERO, one, one, vec![0; MAX_SAMPLES + 1]).is_err());
        assert!(SampledData::new(Decimal::ZERO, one, one, vec![0; MAX_SAMPLES]).is_ok());
    }

    #[test]
    fn measurement_shape_must_fit_the_data_type() {
        let time = Timestamp::MIN;
        let error = Measurement::new(
            DataType::HeartRate,
            Unit::of(DataType::HeartRate),
            Value::BloodPressure {
                systolic: Decimal::from_integer(120),
                diastolic: Decimal::from_integer(80),
            },
            time,
            1,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "heart_rate readings carry one number in `value`"
        );
    }
}
