//! Exact decimal numbers for measured values.
//!
//! A reading's value is never a float: a thermometer that sends `36.6` must be stored,
//! hashed, checked against its rule and shown to a clinician as exactly 36.6. A
//! [`Decimal`] is `mantissa × 10^-scale` with a 64-bit mantissa and at most
//! [`Decimal::MAX_SCALE`] fractional digits.
//!
//! **Trailing zeros carry no meaning.** `1.50`, `1.5` and `15e-1` are the same value and
//! become the same `Decimal` (mantissa 15, scale 1), the same canonical bytes and the same
//! leaf hash. Two spellings of one value must not give two leaf hashes: a device (or an
//! attacker) could otherwise re-send a reading with a zero appended and have it counted
//! twice. The price is that a device cannot state its precision by trailing zeros; a
//! clinician sees `1.5`, not `1.50`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An exact decimal number, always in its normal form (no trailing fractional zeros).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Decimal {
    mantissa: i64,
    scale: u8,
}

/// Why a text or a (mantissa, scale) pair is not a [`Decimal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    /// The text is not a number in JSON's number grammar (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`).
    #[error("`{0}` is not a decimal number (write it like 36.6, -0.05 or 1.2e3)")]
    Syntax(String),
    /// The value needs more than [`Decimal::MAX_SCALE`] digits after the decimal point.
    #[error("a value has at most 18 digits after the decimal point")]
    TooPrecise,
    /// The value needs more than 18 significant digits (its mantissa exceeds a 64-bit integer).
    #[error("a value has at most 18 significant digits and magnitude below 9.2e18")]
    OutOfRange,
    /// A (mantissa, scale) pair is not in normal form: its mantissa ends in a zero while
    /// its scale is positive. Canonical encodings hold only normal forms.
    #[error("decimal {mantissa}e-{scale} is not in normal form (trailing zero)")]
    NotNormalized {
        /// The mantissa found.
        mantissa: i64,
        /// The scale found.
        scale: u8,
    },
}

impl Decimal {
    /// The largest number of fractional digits a value may have.
    pub const MAX_SCALE: u8 = 18;

    /// Zero.
    pub const ZERO: Self = Self {
        mantissa: 0,
        scale: 0,
    };

    /// `mantissa × 10^-scale`, brought to normal form (trailing zeros removed).
    pub fn new(mantissa: i64, scale: u8) -> Result<Self, DecimalError> {
        if mantissa == 0 {
            return Ok(Self::ZERO);
        }
        if scale > Self::MAX_SCALE {
            // A larger scale may still normalise below the limit (e.g. 10e-19).
            let excess = scale - Self::MAX_SCALE;
            let divisor = 10i64
                .checked_pow(u32::from(excess))
                .ok_or(DecimalError::TooPrecise)?;
            if mantissa % divisor != 0 {
                return Err(DecimalError::TooPrecise);
            }
            return Self::new(mantissa / divisor, Self::MAX_SCALE);
        }
        let (mut mantissa, mut scale) = (mantissa, scale);
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        if mantissa == 0 {
            scale = 0;
        }
        Ok(Self { mantissa, scale })
    }

    /// Accepts `mantissa × 10^-scale` only when it is already in normal form, as a
    /// canonical decoder must.
    pub fn from_normalized_parts(mantissa: i64, scale: u8) -> Result<Self, DecimalError> {
        let value = Self::new(mantissa, scale)?;
        if value.mantissa != mantissa || value.scale != scale {
            return Err(DecimalError::NotNormalized { mantissa, scale });
        }
        Ok(value)
    }

    /// An integer value.
    pub const fn from_integer(value: i64) -> Self {
        Self {
            mantissa: value,
            scale: 0,
        }
    }

    /// The mantissa of the normal form.
    pub const fn mantissa(self) -> i64 {
        self.mantissa
    }

    /// The number of fractional digits of the normal form.
    pub const fn scale(self) -> u8 {
        self.scale
    }

    /// Whether the value is below zero.
    pub const fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    /// The nearest `f64`, for display and statistics only: never for hashing or rules.
    pub fn to_f64_lossy(self) -> f64 {
        // i64 → f64 rounding is the point of this function.
        #[expect(clippy::cast_precision_loss, reason = "documented as lossy")]
        let mantissa = self.mantissa as f64;
        mantissa / 10f64.powi(i32::from(self.scale))
    }

    /// Parses JSON number text exactly (no float on the way).
    pub fn parse(text: &str) -> Result<Self, DecimalError> {
        let syntax = || DecimalError::Syntax(truncate_for_message(text));
        let bytes = text.as_bytes();
        let mut pos = 0;
        let negative = bytes.first() == Some(&b'-');
        if negative {
            pos += 1;
        }
        let int_start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let int_digits = &text[int_start..pos];
        if int_digits.is_empty() || (int_digits.len() > 1 && int_digits.starts_with('0')) {
            return Err(syntax());
        }
        let mut frac_digits = "";
        if bytes.get(pos) == Some(&b'.') {
            pos += 1;
            let frac_start = pos;
            while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            frac_digits = &text[frac_start..pos];
            if frac_digits.is_empty() {
                return Err(syntax());
            }
        }
        let mut exponent: i64 = 0;
        if matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            let exp_negative = match bytes.get(pos) {
                Some(b'-') => {
                    pos += 1;
                    true
                }
                Some(b'+') => {
                    pos += 1;
                    false
                }
                _ => false,
            };
            let exp_start = pos;
            while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            let exp_digits = &text[exp_start..pos];
            if exp_digits.is_empty() {
                return Err(syntax());
            }
            // Exponents beyond a few dozen can only be zero-padding or out of range; cap the
            // parse so a 10,000-digit exponent costs nothing.
            let magnitude: i64 = if exp_digits.trim_start_matches('0').len() > 6 {
                1_000_000
            } else {
                exp_digits.parse().map_err(|_| syntax())?
            };
            exponent = if exp_negative { -magnitude } else { magnitude };
        }
        if pos != bytes.len() {
            return Err(syntax());
        }

        // Significant digits: integer and fractional digits together, leading zeros dropped,
        // trailing zeros folded into the exponent.
        let digits = int_digits.chars().chain(frac_digits.chars());
        let mut significant = String::with_capacity(int_digits.len() + frac_digits.len());
        for digit in digits {
            if significant.is_empty() && digit == '0' {
                continue;
            }
            significant.push(digit);
        }
        let frac_len = i64::try_from(frac_digits.len()).map_err(|_| DecimalError::OutOfRange)?;
        let mut power = exponent - frac_len; // value = significant × 10^power
        let trimmed = significant.trim_end_matches('0');
        power += i64::try_from(significant.len() - trimmed.len())
            .map_err(|_| DecimalError::OutOfRange)?;
        if trimmed.is_empty() {
            return Ok(Self::ZERO);
        }
        if trimmed.len() > 19 {
            return Err(if power < -i64::from(Self::MAX_SCALE) {
                DecimalError::TooPrecise
            } else {
                DecimalError::OutOfRange
            });
        }
        let magnitude: i128 = trimmed.parse().map_err(|_| syntax())?;
        let signed = if negative { -magnitude } else { magnitude };
        if power >= 0 {
            let factor = u32::try_from(power)
                .ok()
                .and_then(|p| 10i128.checked_pow(p))
                .ok_or(DecimalError::OutOfRange)?;
            let mantissa = signed
                .checked_mul(factor)
                .and_then(|m| i64::try_from(m).ok())
                .ok_or(DecimalError::OutOfRange)?;
            Ok(Self { mantissa, scale: 0 })
        } else {
            let scale = u8::try_from(-power)
                .ok()
                .filter(|s| *s <= Self::MAX_SCALE)
                .ok_or(DecimalError::TooPrecise)?;
            let mantissa = i64::try_from(signed).map_err(|_| DecimalError::OutOfRange)?;
            Ok(Self { mantissa, scale })
        }
    }
}

fn truncate_for_message(text: &str) -> String {
    const LIMIT: usize = 40;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = usize::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{int}.{frac}")
        } else {
            write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        // Bring both to the larger scale in 128 bits: 10^18 × 2^63 fits in i128.
        let scale = self.scale.max(other.scale);
        let widen = |d: &Decimal| i128::from(d.mantissa) * 10i128.pow(u32::from(scale - d.scale));
        widen(self).cmp(&widen(other))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<i32> for Decimal {
    fn from(value: i32) -> Self {
        Self::from_integer(i64::from(value))
    }
}

/// Serialised as a JSON number written exactly (`36.6`, never `36.600000000000001`).
impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Deserialised from a JSON number, read from its text without passing through a float.
impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        let text = raw.get();
        if text.starts_with('"') {
            return Err(serde::de::Error::custom(
                "a value is a JSON number, not a string (write 36.6, not \"36.6\")",
            ));
        }
        Decimal::parse(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn trailing_zeros_and_exponents_give_one_value() {
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(d("15e-1"), d("1.5"));
        assert_eq!(d("0.15E1"), d("1.5"));
        assert_eq!(d("1.5").mantissa(), 15);
        assert_eq!(d("1.5").scale(), 1);
        assert_eq!(d("100"), Decimal::from_integer(100));
        assert_eq!(d("1e2"), Decimal::from_integer(100));
        assert_eq!(d("-0"), Decimal::ZERO);
        assert_eq!(d("0.000"), Decimal::ZERO);
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("36.60").to_string(), "36.6");
        assert_eq!(d("120").to_string(), "120");
    }

    #[test]
    fn json_number_grammar_is_enforced() {
        for bad in [
            "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "1.5.2", " 1", "1 ", "NaN", "Infinity",
            "0x10", "1_000", "٣",
        ] {
            assert!(
                matches!(Decimal::parse(bad), Err(DecimalError::Syntax(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn limits_are_reported_specifically() {
        assert_eq!(Decimal::parse("1e19"), Err(DecimalError::OutOfRange));
        assert_eq!(
            Decimal::parse("9223372036854775808"),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(d("9223372036854775807").mantissa(), i64::MAX);
        assert_eq!(d("-9223372036854775808").mantissa(), i64::MIN);
        assert_eq!(Decimal::parse("1e-19"), Err(DecimalError::TooPrecise));
        assert_eq!(d("1e-18").scale(), 18);
        assert_eq!(d("10e-19").scale(), 18);
        assert_eq!(
            Decimal::parse("1e999999999999999999"),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(
            Decimal::parse("1e-999999999999999999"),
            Err(DecimalError::TooPrecise)
        );
        assert_eq!(d("0e999999999999999999"), Decimal::ZERO);
        assert_eq!(Decimal::new(1, 19), Err(DecimalError::TooPrecise));
        assert_eq!(Decimal::new(10, 19).unwrap().scale(), 18);
    }

    #[test]
    fn canonical_parts_must_be_normalized() {
        assert_eq!(Decimal::from_normalized_parts(15, 1), Ok(d("1.5")));
        assert_eq!(
            Decimal::from_normalized_parts(150, 2),
            Err(DecimalError::NotNormalized {
                mantissa: 150,
                scale: 2
            })
        );
        assert_eq!(
            Decimal::from_normalized_parts(0, 3),
            Err(DecimalError::NotNormalized {
                mantissa: 0,
                scale: 3
            })
        );
    }

    #[test]
    fn ordering_compares_values_across_scales() {
        assert!(d("1.5") < d("1.51"));
        assert!(d("-1.5") < d("-1.49"));
        assert!(d("100") > d("99.9999999999999999"));
        assert_eq!(d("2.0").cmp(&d("2")), Ordering::Equal);
    }

    #[test]
    fn json_numbers_round_trip_exactly_and_strings_are_refused() {
        let value: Decimal = serde_json::from_str("36.60").unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), "36.6");
        let tiny: Decimal = serde_json::from_str("0.1").unwrap();
        assert_eq!(serde_json::to_string(&tiny).unwrap(), "0.1");
        assert!(serde_json::from_str::<Decimal>("\"36.6\"").is_err());
        assert!(serde_json::from_str::<Decimal>("true").is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(mantissa in any::<i64>(), scale in 0u8..=18) {
            let value = Decimal::new(mantissa, scale).unwrap();
            prop_assert_eq!(value.to_string().parse::<Decimal>(), Ok(value));
        }

        #[test]
        fn appending_zeros_never_changes_the_value(mantissa in -1_000_000i64..1_000_000, scale in 0u8..=6, zeros in 1usize..10) {
            let value = Decimal::new(mantissa, scale).unwrap();
            let mut text = value.to_string();
            if !text.contains('.') {
                text.push('.');
            }
            text.push_str(&"0".repeat(zeros));
            prop_assert_eq!(text.parse::<Decimal>(), Ok(value));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = Decimal::parse(&text);
        }

        #[test]
        fn number_like_text_never_panics(text in "-?[0-9]{0,25}(\\.[0-9]{0,25})?([eE][+-]?[0-9]{0,25})?") {
            if let Ok(value) = Decimal::parse(&text) {
                prop_assert_eq!(value.to_string().parse::<Decimal>(), Ok(value));
            }
        }
    }
}
