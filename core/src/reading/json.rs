//! The JSON form devices POST to a collector's `/v1/readings`.
//!
//! A body is one reading (a JSON object) or an array of 1 to
//! [`MAX_READINGS_PER_REQUEST`] readings. Fields:
//!
//! | field | JSON type | meaning |
//! |---|---|---|
//! | `type` | string | data type: `heart_rate`, `spo2`, `body_temperature`, `blood_pressure`, `respiratory_rate`, `glucose`, `cgm_glucose`, `insulin_dose`, `ecg`, `eeg`, `emg` |
//! | `value` | number | the value, for single-number types |
//! | `systolic`, `diastolic` | number | for `blood_pressure` |
//! | `samples` | object | for `ecg`, `eeg`, `emg`: `origin` (number, default 0), `period_ms` (number > 0), `factor` (number ≠ 0, default 1), `data` (array of 32-bit integers); sample *i* is `origin + factor × data[i]`, taken `i × period_ms` after `time` |
//! | `unit` | string | UCUM code (`/min`, `%`, `Cel`, `mm[Hg]`, `mg/dL`, `[IU]`, `mV`, `uV`) |
//! | `time` | string | RFC 3339 date-time with offset, at most microsecond precision |
//! | `seq` | integer | the device's sequence number, strictly increasing (0 to 2^64-1) |
//!
//! Numbers are read exactly from their text (never through a float) and must be JSON
//! numbers, not strings. Unknown fields are refused, so a typo cannot silently drop data.
//! The device's identity is not in the body: the collector takes it from the device's
//! certificate.
//!
//! ```json
//! {"type": "heart_rate", "value": 72, "unit": "/min",
//!  "time": "2026-11-21T08:00:00.250Z", "seq": 1041}
//! ```
//! ```json
//! [{"type": "blood_pressure", "systolic": 121, "diastolic": 79, "unit": "mm[Hg]",
//!   "time": "2026-11-21T08:00:05Z", "seq": 17},
//!  {"type": "body_temperature", "value": 36.6, "unit": "Cel",
//!   "time": "2026-11-21T08:00:05Z", "seq": 18}]
//! ```
//! ```json
//! {"type": "ecg", "unit": "mV", "time": "2026-11-21T08:00:00Z", "seq": 9,
//!  "samples": {"origin": 0, "period_ms": 4, "factor": 0.005, "data": [2, -1, 140, 35, -12]}}
//! ```
//!
//! ```
//! use wardseal_core::reading::{json, DataType};
//!
//! let body = br#"{"type":"spo2","value":97,"unit":"%","time":"2026-11-21T08:00:00Z","seq":3}"#;
//! let readings = json::parse_body(body)?;
//! let spo2 = readings[0].as_ref().map_err(Clone::clone)?;
//! assert_eq!(spo2.data_type(), DataType::OxygenSaturation);
//! # Ok::<(), wardseal_core::reading::ReadingError>(())
//! ```

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{DataType, Measurement, Reading, ReadingError, SampledData, Timestamp, Unit, Value};
use crate::decimal::Decimal;

/// The most readings one request body may carry.
pub const MAX_READINGS_PER_REQUEST: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMeasurement<'a> {
    #[serde(rename = "type", borrow)]
    data_type: Cow<'a, str>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    systolic: Option<&'a RawValue>,
    #[serde(borrow, default)]
    diastolic: Option<&'a RawValue>,
    #[serde(borrow, default)]
    samples: Option<WireSamples<'a>>,
    #[serde(borrow)]
    unit: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSamples<'a> {
    #[serde(borrow, default)]
    origin: Option<&'a RawValue>,
    #[serde(borrow)]
    period_ms: &'a RawValue,
    #[serde(borrow, default)]
    factor: Option<&'a RawValue>,
    data: Vec<i32>,
}

fn decimal(field: &'static str, raw: &RawValue) -> Result<Decimal, ReadingError> {
    let text = raw.get();
    if text.starts_with('"') {
        return Err(ReadingError::NumberAsString { field });
    }
    Decimal::parse(text).map_err(|source| ReadingError::Decimal { field, source })
}

impl WireMeasurement<'_> {
    fn into_measurement(self) -> Result<Measurement, ReadingError> {
        let data_type: DataType = self.data_type.parse()?;
        let shape_error = || ReadingError::WrongValueShape {
            data_type,
            expected: super::expected_fields(data_type.shape()),
        };
        let value = match (self.value, self.systolic, self.diastolic, self.samples) {
            (Some(value), None, None, None) => Value::Quantity(decimal("value", value)?),
            (None, Some(systolic), Some(diastolic), None) => Value::BloodPressure {
                systolic: decimal("systolic", systolic)?,
                diastolic: decimal("diastolic", diastolic)?,
            },
            (None, None, None, Some(samples)) => Value::Waveform(SampledData::new(
                samples
                    .origin
                    .map(|raw| decimal("samples.origin", raw))
                    .transpose()?
                    .unwrap_or(Decimal::ZERO),
                decimal("samples.period_ms", samples.period_ms)?,
                samples
                    .factor
                    .map(|raw| decimal("samples.factor", raw))
                    .transpose()?
                    .unwrap_or(Decimal::from_integer(1)),
                samples.data,
            )?),
            _ => return Err(shape_error()),
        };
        if value.shape() != data_type.shape() {
            return Err(shape_error());
        }
        Measurement::new(
            data_type,
            self.unit.parse::<Unit>()?,
            value,
            self.time.parse::<Timestamp>()?,
            self.seq,
        )
    }
}

/// Parses one reading (a JSON object).
pub fn parse_measurement(json: &str) -> Result<Measurement, ReadingError> {
    serde_json::from_str::<WireMeasurement<'_>>(json)?.into_measurement()
}

/// Parses a request body: one reading or an array of them.
///
/// The outer `Result` fails when the body as a whole is unusable (not JSON, not an object
/// or array, empty, too many readings); otherwise each reading gets its own `Result`, in
/// body order, so one bad reading does not sink its neighbours.
pub fn parse_body(body: &[u8]) -> Result<Vec<Result<Measurement, ReadingError>>, ReadingError> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    let elements: Vec<&RawValue> = match first {
        Some(b'[') => serde_json::from_slice(body)?,
        Some(b'{') => vec![serde_json::from_slice(body)?],
        _ => return Err(ReadingError::NotObjectOrArray),
    };
    if elements.is_empty() {
        return Err(ReadingError::Empty);
    }
    if elements.len() > MAX_READINGS_PER_REQUEST {
        return Err(ReadingError::TooMany {
            count: elements.len(),
            max: MAX_READINGS_PER_REQUEST,
        });
    }
    Ok(elements
        .into_iter()
        .map(|element| parse_measurement(element.get()))
        .collect())
}

#[derive(Serialize)]
struct SamplesOut<'a> {
    origin: Decimal,
    period_ms: Decimal,
    factor: Decimal,
    data: &'a [i32],
}

fn serialize_fields<M: SerializeMap>(
    map: &mut M,
    measurement: &Measurement,
) -> Result<(), M::Error> {
    map.serialize_entry("type", &measurement.data_type)?;
    match &measurement.value {
        Value::Quantity(value) => map.serialize_entry("value", value)?,
        Value::BloodPressure {
            systolic,
            diastolic,
        } => {
            map.serialize_entry("systolic", systolic)?;
            map.serialize_entry("diastolic", diastolic)?;
        }
        Value::Waveform(samples) => map.serialize_entry(
            "samples",
            &SamplesOut {
                origin: samples.origin,
                period_ms: samples.period_ms,
                factor: samples.factor,
                data: &samples.data,
            },
        )?,
    }
    map.serialize_entry("unit", &measurement.unit)?;
    map.serialize_entry("time", &measurement.time)?;
    map.serialize_entry("seq", &measurement.sequence)
}

/// Serialised in the wire form above; parsing the output gives the same measurement.
impl Serialize for Measurement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        serialize_fields(&mut map, self)?;
        map.end()
    }
}

pub(super) fn serialize_reading<S: Serializer>(
    reading: &Reading,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("device", &reading.device.to_string())?;
    serialize_fields(&mut map, &reading.measurement)?;
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::DecimalError;

    fn one(json: &str) -> Result<Measurement, ReadingError> {
        parse_measurement(json)
    }

    #[test]
    fn the_documented_examples_parse() {
        let heart = one(r#"{"type": "heart_rate", "value": 72, "unit": "/min", "time": "2026-11-21T08:00:00.250Z", "seq": 1041}"#).unwrap();
        assert_eq!(heart.data_type(), DataType::HeartRate);
        assert_eq!(heart.value(), &Value::Quantity(Decimal::from_integer(72)));
        assert_eq!(heart.sequence(), 1041);

        let body = br#"[{"type": "blood_pressure", "systolic": 121, "diastolic": 79, "unit": "mm[Hg]", "time": "2026-11-21T08:00:05Z", "seq": 17},
            {"type": "body_temperature", "value": 36.6, "unit": "Cel", "time": "2026-11-21T08:00:05Z", "seq": 18}]"#;
        let parsed = parse_body(body).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1].as_ref().unwrap().value(),
            &Value::Quantity("36.6".parse().unwrap())
        );

        let ecg = one(r#"{"type": "ecg", "unit": "mV", "time": "2026-11-21T08:00:00Z", "seq": 9,
            "samples": {"origin": 0, "period_ms": 4, "factor": 0.005, "data": [2, -1, 140, 35, -12]}}"#).unwrap();
        let Value::Waveform(samples) = ecg.value() else {
            panic!("not a waveform")
        };
        assert_eq!(samples.data(), &[2, -1, 140, 35, -12]);
        assert_eq!(samples.factor().to_string(), "0.005");
    }

    #[test]
    fn serialised_measurements_parse_back_to_themselves() {
        let text = r#"{"type":"ecg","samples":{"origin":-1.5,"period_ms":3.90625,"factor":0.001,"data":[1,2,3]},"unit":"mV","time":"2026-11-21T08:00:00.000001Z","seq":18446744073709551615}"#;
        let measurement = one(text).unwrap();
        assert_eq!(serde_json::to_string(&measurement).unwrap(), text);
    }

    #[test]
    fn body_level_errors() {
        assert_eq!(parse_body(b"[]"), Err(ReadingError::Empty));
        assert_eq!(parse_body(b"42"), Err(ReadingError::NotObjectOrArray));
        assert_eq!(parse_body(b""), Err(ReadingError::NotObjectOrArray));
        assert!(matches!(parse_body(b"[{"), Err(ReadingError::Json { .. })));
        assert!(matches!(
            parse_body(b"{} trailing"),
            Err(ReadingError::Json { .. })
        ));
        let reading =
            r#"{"type":"spo2","value":97,"unit":"%","time":"2026-11-21T08:00:00Z","seq":3}"#;
        let many = format!(
            "[{}]",
            vec![reading; MAX_READINGS_PER_REQUEST + 1].join(",")
        );
        assert_eq!(
            parse_body(many.as_bytes()),
            Err(ReadingError::TooMany {
                count: 1001,
                max: 1000
            })
        );
    }

    #[test]
    fn one_bad_reading_does_not_sink_its_neighbours() {
        let body = br#"[{"type":"spo2","value":97,"unit":"%","time":"2026-11-21T08:00:00Z","seq":3},
                        {"type":"spo2","value":"97","unit":"%","time":"2026-11-21T08:00:00Z","seq":4}]"#;
        let parsed = parse_body(body).unwrap();
        assert!(parsed[0].is_ok());
        assert_eq!(
            parsed[1],
            Err(ReadingError::NumberAsString { field: "value" })
        );
    }

    #[test]
    fn each_rejection_is_specific() {
        type Expectation = fn(&ReadingError) -> bool;
        let cases: &[(&str, Expectation)] = &[
            (
                r#"{"type":"pulse","value":1,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| matches!(e, ReadingError::UnknownDataType(name) if name == "pulse"),
            ),
            (
                r#"{"type":"heart_rate","samples":{"period_ms":4,"data":[1]},"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| {
                    matches!(
                        e,
                        ReadingError::WrongValueShape {
                            data_type: DataType::HeartRate,
                            ..
                        }
                    )
                },
            ),
            (
                r#"{"type":"blood_pressure","systolic":120,"unit":"mm[Hg]","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| {
                    matches!(
                        e,
                        ReadingError::WrongValueShape {
                            data_type: DataType::BloodPressure,
                            ..
                        }
                    )
                },
            ),
            (
                r#"{"type":"heart_rate","value":72,"systolic":1,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| matches!(e, ReadingError::WrongValueShape { .. }),
            ),
            (
                r#"{"type":"heart_rate","unit":"/min","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| matches!(e, ReadingError::WrongValueShape { .. }),
            ),
            (
                r#"{"type":"heart_rate","value":1e40,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| {
                    matches!(
                        e,
                        ReadingError::Decimal {
                            field: "value",
                            source: DecimalError::OutOfRange
                        }
                    )
                },
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"beats per minute","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| matches!(e, ReadingError::InvalidUnit(_)),
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"/min","time":"21/11/2026 08:00","seq":1}"#,
                |e| matches!(e, ReadingError::InvalidTime(_)),
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00.123456789Z","seq":1}"#,
                |e| matches!(e, ReadingError::SubMicrosecondTime(_)),
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":-1}"#,
                |e| matches!(e, ReadingError::Json { .. }),
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1,"device":"x"}"#,
                |e| matches!(e, ReadingError::Json { message, .. } if message.contains("unknown field `device`")),
            ),
            (
                r#"{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00Z"}"#,
                |e| matches!(e, ReadingError::Json { message, .. } if message.contains("missing field `seq`")),
            ),
            (
                r#"{"type":"ecg","samples":{"period_ms":0,"data":[1]},"unit":"mV","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| matches!(e, ReadingError::InvalidSamples(_)),
            ),
            (
                r#"{"type":"ecg","samples":{"period_ms":4,"data":[2147483648]},"unit":"mV","time":"2026-11-21T08:00:00Z","seq":1}"#,
                |e| matches!(e, ReadingError::Json { .. }),
            ),
        ];
        for (json, expected) in cases {
            let error = one(json).unwrap_err();
            assert!(expected(&error), "{json} gave {error:?}");
        }
    }

    #[test]
    fn trailing_zeros_give_the_same_measurement() {
        let a = one(r#"{"type":"body_temperature","value":36.60,"unit":"Cel","time":"2026-11-21T08:00:00Z","seq":1}"#).unwrap();
        let b = one(r#"{"type":"body_temperature","value":36.6,"unit":"Cel","time":"2026-11-21T08:00:00Z","seq":1}"#).unwrap();
        assert_eq!(a, b);
    }
}
