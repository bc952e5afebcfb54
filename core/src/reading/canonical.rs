//! The canonical byte encoding of a reading, version 1.
//!
//! Deterministic by construction: fixed-width big-endian integers, decimals in normal
//! form, timestamps in UTC microseconds, no maps and no optional fields. The same
//! reading gives the same bytes on any machine, and the decoder accepts nothing else
//! (no trailing bytes, no un-normalised decimals, no unknown codes).
//!
//! ```text
//! u8      version = 1
//! [12]    device EPC, SGTIN-96 binary
//! u64     sequence
//! i64     time, microseconds since 1970-01-01T00:00:00Z
//! u16     data type code (DataType::code)
//! u8 n    unit length, then n bytes of UCUM code (1 ≤ n ≤ 32, printable ASCII)
//! u8      value tag: 1 quantity, 2 blood pressure, 3 waveform
//!   1:    decimal value
//!   2:    decimal systolic, decimal diastolic
//!   3:    decimal origin, decimal period_ms, decimal factor, u32 count, count × i32 samples
//! decimal = i64 mantissa, u8 scale (value = mantissa × 10^-scale, normal form)
//! ```
//!
//! The leaf hash of a reading is `SHA-256(0x00 ‖ these bytes)` (RFC 9162 §2.1.1).

use super::{DataType, Measurement, Reading, ReadingError, SampledData, Timestamp, Unit, Value};
use crate::codec::{CodecError, Reader, Writer};
use crate::decimal::Decimal;
use crate::epc::Sgtin96;

/// The version byte this library writes and reads.
pub const VERSION: u8 = 1;

const TAG_QUANTITY: u8 = 1;
const TAG_BLOOD_PRESSURE: u8 = 2;
const TAG_WAVEFORM: u8 = 3;

const DECIMAL_LEN: usize = 9;

impl From<CodecError> for ReadingError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated { position } => ReadingError::Truncated { position },
            CodecError::Trailing { position } => ReadingError::TrailingBytes { position },
        }
    }
}

pub(super) fn encode(reading: &Reading) -> Vec<u8> {
    let measurement = &reading.measurement;
    let value_len = match &measurement.value {
        Value::Quantity(_) => DECIMAL_LEN,
        Value::BloodPressure { .. } => 2 * DECIMAL_LEN,
        Value::Waveform(samples) => 3 * DECIMAL_LEN + 4 + 4 * samples.data.len(),
    };
    let mut out =
        Writer::with_capacity(1 + 12 + 8 + 8 + 2 + 1 + measurement.unit.0.len() + 1 + value_len);
    out.u8(VERSION);
    out.bytes(&reading.device.to_bytes());
    out.u64(measurement.sequence);
    out.i64(measurement.time.unix_micros());
    out.bytes(&measurement.data_type.code().to_be_bytes());
    out.short_str(measurement.unit.as_str());
    match &measurement.value {
        Value::Quantity(value) => {
            out.u8(TAG_QUANTITY);
            out.decimal(*value);
        }
        Value::BloodPressure {
            systolic,
            diastolic,
        } => {
            out.u8(TAG_BLOOD_PRESSURE);
            out.decimal(*systolic);
            out.decimal(*diastolic);
        }
        Value::Waveform(samples) => {
            out.u8(TAG_WAVEFORM);
            out.decimal(samples.origin);
            out.decimal(samples.period_ms);
            out.decimal(samples.factor);
            // SampledData::new caps the count far below u32::MAX.
            out.u32(u32::try_from(samples.data.len()).unwrap_or(u32::MAX));
            for sample in &samples.data {
                out.i32(*sample);
            }
        }
    }
    out.finish()
}

fn decimal(input: &mut Reader<'_>, field: &'static str) -> Result<Decimal, ReadingError> {
    let (mantissa, scale) = input.decimal_parts()?;
    Decimal::from_normalized_parts(mantissa, scale)
        .map_err(|source| ReadingError::Decimal { field, source })
}

pub(super) fn decode(bytes: &[u8]) -> Result<Reading, ReadingError> {
    let mut input = Reader::new(bytes);
    let version = input.u8()?;
    if version != VERSION {
        return Err(ReadingError::UnknownVersion(version));
    }
    let device = Sgtin96::from_bytes(&input.array::<12>()?).map_err(ReadingError::InvalidDevice)?;
    let sequence = input.u64()?;
    let time = Timestamp::from_unix_micros(input.i64()?)?;
    let code = u16::from_be_bytes(input.array()?);
    let data_type = DataType::from_code(code).ok_or(ReadingError::UnknownDataTypeCode(code))?;
    let unit_bytes = input.short_bytes()?;
    let unit: Unit = std::str::from_utf8(unit_bytes)
        .map_err(|_| ReadingError::InvalidUnit(String::from_utf8_lossy(unit_bytes).into_owned()))?
        .parse()?;
    let tag = input.u8()?;
    let value = match (tag, data_type.shape()) {
        (TAG_QUANTITY, super::ValueShape::Quantity) => {
            Value::Quantity(decimal(&mut input, "value")?)
        }
        (TAG_BLOOD_PRESSURE, super::ValueShape::BloodPressure) => Value::BloodPressure {
            systolic: decimal(&mut input, "systolic")?,
            diastolic: decimal(&mut input, "diastolic")?,
        },
        (TAG_WAVEFORM, super::ValueShape::Waveform) => {
            let origin = decimal(&mut input, "samples.origin")?;
            let period_ms = decimal(&mut input, "samples.period_ms")?;
            let factor = decimal(&mut input, "samples.factor")?;
            let count = usize::try_from(input.u32()?).unwrap_or(usize::MAX);
            if count > super::MAX_SAMPLES {
                return Err(ReadingError::InvalidSamples(
                    "data holds more than 16384 samples; split the block",
                ));
            }
            let mut data = Vec::with_capacity(count);
            for _ in 0..count {
                data.push(input.i32()?);
            }
            Value::Waveform(SampledData::new(origin, period_ms, factor, data)?)
        }
        _ => return Err(ReadingError::ValueTagMismatch { data_type, tag }),
    };
    input.finish()?;
    let measurement = Measurement::new(data_type, unit, value, time, sequence)?;
    Ok(Reading::new(device, measurement))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::DecimalError;
    use proptest::prelude::*;

    fn device() -> Sgtin96 {
        "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
            .parse()
            .unwrap()
    }

    fn heart_rate() -> Reading {
        let measurement = super::super::json::parse_measurement(
            r#"{"type":"heart_rate","value":72.5,"unit":"/min","time":"2026-11-21T08:00:00.25Z","seq":1041}"#,
        )
        .unwrap();
        Reading::new(device(), measurement)
    }

    /// The exact bytes of one reading, written out field by field from the layout in the
    /// module documentation. If this changes, every stored leaf hash changes: bump the
    /// version instead.
    #[test]
    fn heart_rate_vector() {
        let expected = [
            "01",                       // version
            "3074257bf7194e4000001a85", // EPC
            "0000000000000411",         // seq 1041
            "000660c4bf56b090",         // 2026-11-21T08:00:00.25Z in µs
            "0001",                     // heart_rate
            "04",
            "2f6d696e", // "/min"
            "01",       // quantity
            "00000000000002d5",
            "01", // 725e-1
        ]
        .concat();
        let bytes = heart_rate().canonical_bytes();
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(Reading::from_canonical_bytes(&bytes).unwrap(), heart_rate());
        // Leaf hash is SHA-256(0x00 ‖ bytes), computed independently here.
        let mut prefixed = vec![0u8];
        prefixed.extend_from_slice(&bytes);
        assert_eq!(heart_rate().leaf_hash(), crate::Hash::sha256(&prefixed));
    }

    #[test]
    fn timestamp_in_vector_is_the_documented_instant() {
        let time: Timestamp = "2026-11-21T08:00:00.25Z".parse().unwrap();
        assert_eq!(time.unix_micros(), 0x0006_60c4_bf56_b090);
    }

    #[test]
    fn decoder_rejects_every_deviation() {
        let good = heart_rate().canonical_bytes();
        let mut bad = good.clone();
        bad[0] = 2;
        assert_eq!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::UnknownVersion(2))
        );

        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::TrailingBytes {
                position: good.len()
            })
        );

        for cut in 0..good.len() {
            assert!(
                matches!(
                    Reading::from_canonical_bytes(&good[..cut]),
                    Err(ReadingError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }

        let mut bad = good.clone();
        bad[1] = 0x31; // EPC header
        assert!(matches!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::InvalidDevice(_))
        ));

        let type_at = 1 + 12 + 8 + 8;
        let mut bad = good.clone();
        bad[type_at + 1] = 0xff;
        assert_eq!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::UnknownDataTypeCode(0xff))
        );

        let tag_at = type_at + 2 + 1 + 4;
        let mut bad = good.clone();
        bad[tag_at] = TAG_BLOOD_PRESSURE;
        assert_eq!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::ValueTagMismatch {
                data_type: DataType::HeartRate,
                tag: 2
            })
        );

        // 72.50 written as 7250e-2: same value, not the canonical bytes.
        let mut bad = good[..tag_at + 1].to_vec();
        bad.extend_from_slice(&7250i64.to_be_bytes());
        bad.push(2);
        assert_eq!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::Decimal {
                field: "value",
                source: DecimalError::NotNormalized {
                    mantissa: 7250,
                    scale: 2
                }
            })
        );

        let unit_at = type_at + 2;
        let mut bad = good.clone();
        bad[unit_at + 1] = b' ';
        assert!(matches!(
            Reading::from_canonical_bytes(&bad),
            Err(ReadingError::InvalidUnit(_))
        ));
    }

    fn arb_decimal() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), 0u8..=18).prop_map(|(m, s)| Decimal::new(m, s).unwrap())
    }

    fn arb_measurement() -> impl Strategy<Value = Measurement> {
        let value = prop_oneof![
            (
                Just(DataType::HeartRate),
                arb_decimal().prop_map(Value::Quantity)
            ),
            (
                Just(DataType::InsulinDose),
                arb_decimal().prop_map(Value::Quantity)
            ),
            (
                Just(DataType::BloodPressure),
                (arb_decimal(), arb_decimal()).prop_map(|(systolic, diastolic)| {
                    Value::BloodPressure {
                        systolic,
                        diastolic,
                    }
                })
            ),
            (
                Just(DataType::Eeg),
                (
                    arb_decimal(),
                    1i64..100_000,
                    1i64..1000,
                    proptest::collection::vec(any::<i32>(), 1..64)
                )
                    .prop_map(|(origin, period, factor, data)| Value::Waveform(
                        SampledData::new(
                            origin,
                            Decimal::new(period, 3).unwrap(),
                            Decimal::new(factor, 4).unwrap(),
                            data
                        )
                        .unwrap()
                    ))
            ),
        ];
        (
            value,
            "[!-~]{1,32}",
            0..=Timestamp::MAX.unix_micros(),
            any::<u64>(),
        )
            .prop_map(|((data_type, value), unit, time, seq)| {
                Measurement::new(
                    data_type,
                    unit.parse().unwrap(),
                    value,
                    Timestamp::from_unix_micros(time).unwrap(),
                    seq,
                )
                .unwrap()
            })
    }

    proptest! {
        #[test]
        fn canonical_bytes_round_trip(measurement in arb_measurement()) {
            let reading = Reading::new(device(), measurement);
            let bytes = reading.canonical_bytes();
            prop_assert_eq!(Reading::from_canonical_bytes(&bytes), Ok(reading.clone()));
            // Deterministic: encoding twice gives the same bytes.
            prop_assert_eq!(reading.canonical_bytes(), bytes);
        }

        #[test]
        fn json_and_canonical_agree(measurement in arb_measurement()) {
            let json = serde_json::to_string(&measurement).unwrap();
            let parsed = super::super::json::parse_measurement(&json).unwrap();
            prop_assert_eq!(
                Reading::new(device(), parsed).canonical_bytes(),
                Reading::new(device(), measurement).canonical_bytes()
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(reading) = Reading::from_canonical_bytes(&bytes) {
                prop_assert_eq!(reading.canonical_bytes(), bytes);
            }
        }
    }
}
