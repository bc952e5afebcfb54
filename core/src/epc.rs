//! GS1 EPC SGTIN-96: the 96-bit device identifier carried in device certificates.
//!
//! An SGTIN (serialised Global Trade Item Number) names one physical item: a GS1 company
//! prefix, an item reference (with the GTIN indicator digit in front) and a serial number.
//! The 96-bit binary form is what an RFID tag stores and what the wardseal identity
//! extension carries; the URIs are what people, logs and generic tools read.
//!
//! [`Sgtin96`] converts exactly between the four forms defined by the GS1 EPC Tag Data
//! Standard (TDS), and refuses anything the standard does not allow:
//!
//! | form | example |
//! |---|---|
//! | tag URI | `urn:epc:tag:sgtin-96:3.0614141.812345.6789` |
//! | pure-identity URI | `urn:epc:id:sgtin:0614141.812345.6789` (no filter) |
//! | 12-byte binary | `30 74 25 7B F7 19 4E 40 00 00 1A 85` |
//! | 24 hexadecimal digits | `3074257BF7194E4000001A85` |
//!
//! The company prefix and item reference are kept as digit strings, not numbers: their
//! leading zeros are significant (`0614141` is a 7-digit prefix, different from the
//! 6-digit `614141`) and decide the partition value written to the tag.
//!
//! ```
//! use wardseal_core::epc::Sgtin96;
//!
//! let epc: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789".parse()?;
//! assert_eq!(epc.to_hex(), "3074257BF7194E4000001A85");
//! assert_eq!(epc.pure_identity_uri(), "urn:epc:id:sgtin:0614141.812345.6789");
//! assert_eq!(Sgtin96::from_hex("3074257bf7194e4000001a85")?, epc);
//! # Ok::<(), wardseal_core::epc::EpcError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The EPC header byte that marks an SGTIN-96 (TDS table 14-1: `0011 0000`).
pub const SGTIN96_HEADER: u8 = 0x30;

/// The largest SGTIN-96 serial number: the serial field is 38 bits wide.
pub const MAX_SERIAL: u64 = (1 << SERIAL_BITS) - 1;

/// The prefix of an SGTIN-96 tag URI: `urn:epc:tag:sgtin-96:F.C.I.S`.
pub const TAG_URI_PREFIX: &str = "urn:epc:tag:sgtin-96:";

/// The prefix of an SGTIN pure-identity URI: `urn:epc:id:sgtin:C.I.S`.
pub const PURE_IDENTITY_URI_PREFIX: &str = "urn:epc:id:sgtin:";

/// Length of the binary form in bytes.
pub const SGTIN96_BYTES: usize = 12;

const SERIAL_BITS: u32 = 38;
const HEX_DIGITS: usize = 2 * SGTIN96_BYTES;
/// A company prefix and its item reference (indicator digit included) always total
/// 13 digits: with the check digit they make the 14-digit GTIN.
const GTIN_DIGITS_WITHOUT_CHECK_DIGIT: usize = 13;
/// The largest filter value: the field is 3 bits wide.
const MAX_FILTER: u8 = 7;

/// One row of the SGTIN partition table (GS1 TDS 2.x, table 14-2).
struct PartitionRow {
    company_prefix_bits: u32,
    company_prefix_digits: usize,
    item_reference_bits: u32,
    item_reference_digits: usize,
}

/// The SGTIN partition table, indexed by partition value. Partition 7 is reserved.
///
/// Checked against GS1 Tag Data Translation `SGTIN-96.xml` (TDT 2.0, options 12 and 11:
/// 40/4 and 37/7 bits) and the tables of several independent implementations; company
/// prefix and item reference bits always total 44, digits always 13.
const PARTITIONS: [PartitionRow; 7] = [
    PartitionRow::new(40, 12, 4, 1),
    PartitionRow::new(37, 11, 7, 2),
    PartitionRow::new(34, 10, 10, 3),
    PartitionRow::new(30, 9, 14, 4),
    PartitionRow::new(27, 8, 17, 5),
    PartitionRow::new(24, 7, 20, 6),
    PartitionRow::new(20, 6, 24, 7),
];

// The binary layout relies on every row tiling the same 44 bits and 13 digits; a typo in
// the table fails the build instead of producing wrong tags.
const _: () = {
    let mut index = 0;
    while index < PARTITIONS.len() {
        let row = &PARTITIONS[index];
        assert!(row.company_prefix_bits + row.item_reference_bits == 44);
        assert!(
            row.company_prefix_digits + row.item_reference_digits
                == GTIN_DIGITS_WITHOUT_CHECK_DIGIT
        );
        assert!(row.company_prefix_digits == 12 - index);
        index += 1;
    }
};

impl PartitionRow {
    const fn new(
        company_prefix_bits: u32,
        company_prefix_digits: usize,
        item_reference_bits: u32,
        item_reference_digits: usize,
    ) -> Self {
        Self {
            company_prefix_bits,
            company_prefix_digits,
            item_reference_bits,
            item_reference_digits,
        }
    }

    fn lookup(partition: u8) -> Result<&'static Self, EpcError> {
        PARTITIONS
            .get(usize::from(partition))
            .ok_or(EpcError::InvalidPartition { partition })
    }
}

/// A part of an SGTIN that an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EpcComponent {
    /// The filter value (tag URI only).
    Filter,
    /// The GS1 company prefix.
    CompanyPrefix,
    /// The item reference, indicator digit included.
    ItemReference,
    /// The serial number.
    Serial,
}

impl fmt::Display for EpcComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Filter => "filter",
            Self::CompanyPrefix => "company prefix",
            Self::ItemReference => "item reference",
            Self::Serial => "serial",
        })
    }
}

/// Why a value is not a valid SGTIN-96.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpcError {
    /// The binary form does not start with the SGTIN-96 header byte.
    #[error(
        "EPC header is 0x{found:02X} but an SGTIN-96 starts with 0x30; other EPC schemes are not device ids"
    )]
    Header {
        /// The header byte found.
        found: u8,
    },
    /// The partition value is 7 (reserved) or otherwise not in the partition table.
    #[error("EPC partition {partition} is not defined; SGTIN-96 partitions are 0 to 6")]
    InvalidPartition {
        /// The partition value found.
        partition: u8,
    },
    /// The company prefix does not have the digit count the partition dictates.
    #[error("EPC company prefix has {digits} digits but partition {partition} needs {expected}")]
    CompanyPrefixLength {
        /// Digits in the company prefix given.
        digits: usize,
        /// The partition value given.
        partition: u8,
        /// Digits that partition needs.
        expected: usize,
    },
    /// A URI's company prefix is shorter than 6 or longer than 12 digits, so no partition
    /// fits it.
    #[error("EPC company prefix has {digits} digits but GS1 company prefixes have 6 to 12")]
    CompanyPrefixDigits {
        /// Digits in the company prefix given.
        digits: usize,
    },
    /// The item reference does not have the digit count the partition dictates.
    #[error(
        "EPC item reference has {digits} digits but partition {partition} needs {expected} \
         (company prefix and item reference together have 13 digits)"
    )]
    ItemReferenceLength {
        /// Digits in the item reference given.
        digits: usize,
        /// The partition value (given, or implied by the company prefix length).
        partition: u8,
        /// Digits that partition needs.
        expected: usize,
    },
    /// The binary company prefix field holds a number with more digits than the partition
    /// allows; GS1 TDS requires decoding to fail rather than truncate.
    #[error(
        "EPC company prefix field holds {value}, more than the {digits} digits partition {partition} allows"
    )]
    CompanyPrefixOverflow {
        /// The number in the field.
        value: u64,
        /// The partition value.
        partition: u8,
        /// Digits that partition allows.
        digits: usize,
    },
    /// The binary item reference field holds a number with more digits than the partition
    /// allows.
    #[error(
        "EPC item reference field holds {value}, more than the {digits} digits partition {partition} allows"
    )]
    ItemReferenceOverflow {
        /// The number in the field.
        value: u64,
        /// The partition value.
        partition: u8,
        /// Digits that partition allows.
        digits: usize,
    },
    /// The serial number does not fit the 38-bit serial field.
    #[error("EPC serial {serial} is larger than 274877906943, the SGTIN-96 maximum (38 bits)")]
    SerialTooLarge {
        /// The serial as given, in decimal.
        serial: String,
    },
    /// The serial number is written with leading zeros, which SGTIN-96 cannot represent.
    #[error(
        "EPC serial {serial} has leading zeros; SGTIN-96 serials are written without them (only 0 itself starts with 0)"
    )]
    SerialLeadingZero {
        /// The serial as given.
        serial: String,
    },
    /// A component holds something other than the decimal digits 0-9.
    #[error(
        "EPC {component} must be decimal digits only (SGTIN-96 serials are numeric; \
         alphanumeric serials need SGTIN-198, which wardseal does not use)"
    )]
    NonDigit {
        /// The component with the bad character.
        component: EpcComponent,
    },
    /// A URI component is empty.
    #[error("EPC {component} is empty")]
    EmptyComponent {
        /// The empty component.
        component: EpcComponent,
    },
    /// The filter value is not a single digit from 0 to 7.
    #[error("EPC filter {filter} is not a single digit from 0 to 7")]
    FilterOutOfRange {
        /// The filter as given.
        filter: String,
    },
    /// The URI does not start with the prefix of the form expected.
    #[error("EPC URI must start with {expected}")]
    UriScheme {
        /// The prefix or prefixes expected.
        expected: &'static str,
    },
    /// The URI does not have the expected number of dot-separated components.
    #[error("EPC URI has {found} dot-separated components but needs {expected} ({layout})")]
    ComponentCount {
        /// Components found.
        found: usize,
        /// Components needed.
        expected: usize,
        /// The components needed, by name.
        layout: &'static str,
    },
    /// The hexadecimal form does not have exactly 24 characters.
    #[error("an SGTIN-96 in hexadecimal is 24 digits, got {length} characters")]
    HexLength {
        /// Characters found.
        length: usize,
    },
    /// The hexadecimal form holds a character that is not a hexadecimal digit.
    #[error("an SGTIN-96 in hexadecimal has the digits 0-9 and A-F (or a-f) only")]
    NotHex,
    /// The binary form does not have exactly 12 bytes.
    #[error("an SGTIN-96 is 12 bytes, got {length}")]
    ByteLength {
        /// Bytes found.
        length: usize,
    },
}

/// A GS1 SGTIN-96 Electronic Product Code: the wardseal device id.
///
/// Every value is valid by construction: filter 0-7, partition 0-6, company prefix and
/// item reference digit strings of exactly the lengths the partition dictates, serial at
/// most [`MAX_SERIAL`]. Equality compares all fields, the filter included.
///
/// [`Display`](fmt::Display) prints the tag URI (`urn:epc:tag:sgtin-96:F.C.I.S`), because
/// only that form keeps every field; [`FromStr`] reads the tag URI, the pure-identity
/// URI (filter 0) or 24 hexadecimal digits. Serde uses the same text forms.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sgtin96 {
    filter: u8,
    partition: u8,
    company_prefix: String,
    item_reference: String,
    serial: u64,
    // Numeric values of the digit strings, kept so binary encoding needs no re-parsing.
    company_prefix_value: u64,
    item_reference_value: u64,
}

impl Sgtin96 {
    /// Builds an SGTIN-96 from its fields.
    ///
    /// `company_prefix` and `item_reference` are decimal digit strings whose lengths must
    /// match `partition` (company prefix 12 − partition digits, item reference
    /// partition + 1 digits, indicator digit first).
    pub fn new(
        filter: u8,
        partition: u8,
        company_prefix: &str,
        item_reference: &str,
        serial: u64,
    ) -> Result<Self, EpcError> {
        check_filter(filter)?;
        let row = PartitionRow::lookup(partition)?;
        let company_prefix_value = digits_value(EpcComponent::CompanyPrefix, company_prefix)?;
        if company_prefix.len() != row.company_prefix_digits {
            return Err(EpcError::CompanyPrefixLength {
                digits: company_prefix.len(),
                partition,
                expected: row.company_prefix_digits,
            });
        }
        let item_reference_value = digits_value(EpcComponent::ItemReference, item_reference)?;
        if item_reference.len() != row.item_reference_digits {
            return Err(EpcError::ItemReferenceLength {
                digits: item_reference.len(),
                partition,
                expected: row.item_reference_digits,
            });
        }
        if serial > MAX_SERIAL {
            return Err(EpcError::SerialTooLarge {
                serial: serial.to_string(),
            });
        }
        Ok(Self {
            filter,
            partition,
            company_prefix: company_prefix.to_owned(),
            item_reference: item_reference.to_owned(),
            serial,
            company_prefix_value,
            item_reference_value,
        })
    }

    /// Returns this EPC with another filter value (0-7).
    ///
    /// A pure-identity URI has no filter, so parsing one yields filter 0; callers that
    /// know the tag's filter set it here.
    pub fn with_filter(mut self, filter: u8) -> Result<Self, EpcError> {
        check_filter(filter)?;
        self.filter = filter;
        Ok(self)
    }

    /// Parses a tag URI, `urn:epc:tag:sgtin-96:Filter.CompanyPrefix.ItemReference.Serial`.
    pub fn from_tag_uri(uri: &str) -> Result<Self, EpcError> {
        let body = uri
            .strip_prefix(TAG_URI_PREFIX)
            .ok_or(EpcError::UriScheme {
                expected: TAG_URI_PREFIX,
            })?;
        let components: Vec<&str> = body.split('.').collect();
        let [filter, company_prefix, item_reference, serial] = components[..] else {
            return Err(EpcError::ComponentCount {
                found: components.len(),
                expected: 4,
                layout: "filter.companyPrefix.itemReference.serial",
            });
        };
        let filter = parse_filter(filter)?;
        Self::from_uri_components(filter, company_prefix, item_reference, serial)
    }

    /// Parses a pure-identity URI, `urn:epc:id:sgtin:CompanyPrefix.ItemReference.Serial`.
    ///
    /// The pure identity has no filter: the result has filter 0 (use
    /// [`with_filter`](Self::with_filter) to set another).
    pub fn from_pure_identity_uri(uri: &str) -> Result<Self, EpcError> {
        let body = uri
            .strip_prefix(PURE_IDENTITY_URI_PREFIX)
            .ok_or(EpcError::UriScheme {
                expected: PURE_IDENTITY_URI_PREFIX,
            })?;
        let components: Vec<&str> = body.split('.').collect();
        let [company_prefix, item_reference, serial] = components[..] else {
            return Err(EpcError::ComponentCount {
                found: components.len(),
                expected: 3,
                layout: "companyPrefix.itemReference.serial",
            });
        };
        Self::from_uri_components(0, company_prefix, item_reference, serial)
    }

    /// Decodes the 12-byte binary form.
    pub fn from_bytes(bytes: &[u8; SGTIN96_BYTES]) -> Result<Self, EpcError> {
        let mut wide = [0u8; 16];
        wide[16 - SGTIN96_BYTES..].copy_from_slice(bytes);
        let value = u128::from_be_bytes(wide);

        let header = bytes[0];
        if header != SGTIN96_HEADER {
            return Err(EpcError::Header { found: header });
        }
        // The `as` casts below keep exactly the bits of each field: the masks make the
        // values fit their target types.
        let filter = ((value >> 85) & 0b111) as u8;
        let partition = ((value >> 82) & 0b111) as u8;
        let row = PartitionRow::lookup(partition)?;
        let item_shift = SERIAL_BITS;
        let company_shift = item_shift + row.item_reference_bits;
        let company_prefix_value =
            ((value >> company_shift) & mask(row.company_prefix_bits)) as u64;
        let item_reference_value = ((value >> item_shift) & mask(row.item_reference_bits)) as u64;
        let serial = (value & mask(SERIAL_BITS)) as u64;

        if company_prefix_value >= pow10(row.company_prefix_digits) {
            return Err(EpcError::CompanyPrefixOverflow {
                value: company_prefix_value,
                partition,
                digits: row.company_prefix_digits,
            });
        }
        if item_reference_value >= pow10(row.item_reference_digits) {
            return Err(EpcError::ItemReferenceOverflow {
                value: item_reference_value,
                partition,
                digits: row.item_reference_digits,
            });
        }
        Ok(Self {
            filter,
            partition,
            company_prefix: format!(
                "{company_prefix_value:0width$}",
                width = row.company_prefix_digits
            ),
            item_reference: format!(
                "{item_reference_value:0width$}",
                width = row.item_reference_digits
            ),
            serial,
            company_prefix_value,
            item_reference_value,
        })
    }

    /// Parses the 24-digit hexadecimal form (upper or lower case).
    pub fn from_hex(text: &str) -> Result<Self, EpcError> {
        if text.len() != HEX_DIGITS {
            return Err(EpcError::HexLength {
                length: text.chars().count(),
            });
        }
        let mut bytes = [0u8; SGTIN96_BYTES];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| EpcError::NotHex)?;
        Self::from_bytes(&bytes)
    }

    /// The 12-byte binary form, as written to a tag's EPC memory bank.
    pub fn to_bytes(&self) -> [u8; SGTIN96_BYTES] {
        // Every partition row has 44 bits of company prefix and item reference, so the
        // fields tile the 96 bits exactly: 8 + 3 + 3 + 44 + 38.
        let item_shift = SERIAL_BITS;
        let company_shift = item_shift + self.row().item_reference_bits;
        let value = (u128::from(SGTIN96_HEADER) << 88)
            | (u128::from(self.filter) << 85)
            | (u128::from(self.partition) << 82)
            | (u128::from(self.company_prefix_value) << company_shift)
            | (u128::from(self.item_reference_value) << item_shift)
            | u128::from(self.serial);
        let wide = value.to_be_bytes();
        let mut bytes = [0u8; SGTIN96_BYTES];
        bytes.copy_from_slice(&wide[16 - SGTIN96_BYTES..]);
        bytes
    }

    /// The 24-digit uppercase hexadecimal form.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.to_bytes())
    }

    /// The tag URI, `urn:epc:tag:sgtin-96:F.C.I.S`, which keeps every field.
    pub fn tag_uri(&self) -> String {
        format!(
            "{TAG_URI_PREFIX}{}.{}.{}.{}",
            self.filter, self.company_prefix, self.item_reference, self.serial
        )
    }

    /// The pure-identity URI, `urn:epc:id:sgtin:C.I.S`: the item's identity without the
    /// filter (and the partition, which the company prefix length implies).
    pub fn pure_identity_uri(&self) -> String {
        format!(
            "{PURE_IDENTITY_URI_PREFIX}{}.{}.{}",
            self.company_prefix, self.item_reference, self.serial
        )
    }

    /// The filter value, 0-7 (a hint for RFID readers, e.g. 1 = point-of-sale item).
    pub fn filter(&self) -> u8 {
        self.filter
    }

    /// The partition value, 0-6: it fixes how many digits the company prefix has.
    pub fn partition(&self) -> u8 {
        self.partition
    }

    /// The GS1 company prefix, 6-12 digits, leading zeros kept.
    pub fn company_prefix(&self) -> &str {
        &self.company_prefix
    }

    /// The item reference with its leading indicator digit, 1-7 digits, leading zeros kept.
    pub fn item_reference(&self) -> &str {
        &self.item_reference
    }

    /// The serial number, 0 to [`MAX_SERIAL`].
    pub fn serial(&self) -> u64 {
        self.serial
    }

    fn row(&self) -> &'static PartitionRow {
        // The partition was checked when the value was built; partition 6 is only a
        // fallback that keeps this function free of panics.
        PARTITIONS
            .get(usize::from(self.partition))
            .unwrap_or(&PARTITIONS[6])
    }

    /// Builds a value from URI components; the partition follows from the length of the
    /// company prefix.
    fn from_uri_components(
        filter: u8,
        company_prefix: &str,
        item_reference: &str,
        serial: &str,
    ) -> Result<Self, EpcError> {
        digits_value(EpcComponent::CompanyPrefix, company_prefix)?;
        let (partition, _) = (0u8..)
            .zip(PARTITIONS.iter())
            .find(|(_, row)| row.company_prefix_digits == company_prefix.len())
            .ok_or(EpcError::CompanyPrefixDigits {
                digits: company_prefix.len(),
            })?;
        let serial = parse_serial(serial)?;
        Self::new(filter, partition, company_prefix, item_reference, serial)
    }
}

impl fmt::Display for Sgtin96 {
    /// Prints the tag URI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG_URI_PREFIX}{}.{}.{}.{}",
            self.filter, self.company_prefix, self.item_reference, self.serial
        )
    }
}

impl fmt::Debug for Sgtin96 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sgtin96({self})")
    }
}

impl FromStr for Sgtin96 {
    type Err = EpcError;

    /// Reads a tag URI, a pure-identity URI (filter 0) or 24 hexadecimal digits.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with(TAG_URI_PREFIX) {
            Self::from_tag_uri(text)
        } else if text.starts_with(PURE_IDENTITY_URI_PREFIX) {
            Self::from_pure_identity_uri(text)
        } else if text.starts_with("urn:") {
            Err(EpcError::UriScheme {
                expected: "urn:epc:tag:sgtin-96: (tag URI) or urn:epc:id:sgtin: (pure identity)",
            })
        } else {
            Self::from_hex(text)
        }
    }
}

impl TryFrom<&[u8]> for Sgtin96 {
    type Error = EpcError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let bytes: &[u8; SGTIN96_BYTES] = bytes.try_into().map_err(|_| EpcError::ByteLength {
            length: bytes.len(),
        })?;
        Self::from_bytes(bytes)
    }
}

impl Serialize for Sgtin96 {
    /// Serialises as the tag URI.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sgtin96 {
    /// Accepts every form [`FromStr`] accepts.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn check_filter(filter: u8) -> Result<(), EpcError> {
    if filter > MAX_FILTER {
        return Err(EpcError::FilterOutOfRange {
            filter: filter.to_string(),
        });
    }
    Ok(())
}

fn parse_filter(text: &str) -> Result<u8, EpcError> {
    let value = digits_value(EpcComponent::Filter, text)?;
    match u8::try_from(value) {
        Ok(filter) if text.len() == 1 && filter <= MAX_FILTER => Ok(filter),
        _ => Err(EpcError::FilterOutOfRange {
            filter: text.to_owned(),
        }),
    }
}

fn parse_serial(text: &str) -> Result<u64, EpcError> {
    // Check characters first so that "0x1" is reported as a non-digit, not a leading zero.
    if text.is_empty() {
        return Err(EpcError::EmptyComponent {
            component: EpcComponent::Serial,
        });
    }
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(EpcError::NonDigit {
            component: EpcComponent::Serial,
        });
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(EpcError::SerialLeadingZero {
            serial: text.to_owned(),
        });
    }
    let too_large = || EpcError::SerialTooLarge {
        serial: text.to_owned(),
    };
    // MAX_SERIAL has 12 digits; anything longer is too large and would overflow u64.
    if text.len() > 12 {
        return Err(too_large());
    }
    let serial = digits_value(EpcComponent::Serial, text)?;
    if serial > MAX_SERIAL {
        return Err(too_large());
    }
    Ok(serial)
}

/// The value of a non-empty string of at most 19 decimal digits.
fn digits_value(component: EpcComponent, text: &str) -> Result<u64, EpcError> {
    if text.is_empty() {
        return Err(EpcError::EmptyComponent { component });
    }
    let mut value: u64 = 0;
    for byte in text.bytes() {
        if !byte.is_ascii_digit() {
            return Err(EpcError::NonDigit { component });
        }
        // Callers pass at most 13 digits after their length checks or through the
        // partition table; a longer string is a too-long component, reported by length.
        value = value
            .saturating_mul(10)
            .saturating_add(u64::from(byte - b'0'));
    }
    Ok(value)
}

fn mask(bits: u32) -> u128 {
    (1u128 << bits) - 1
}

fn pow10(digits: usize) -> u64 {
    // At most 12 digits, far below u64::MAX.
    (0..digits).fold(1u64, |acc, _| acc.saturating_mul(10))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (tag URI, hex, source). Every vector is checked in both directions.
    const VECTORS: &[(&str, &str, &str)] = &[
        // GS1 TDS example, quoted in DESIGN.md.
        (
            "urn:epc:tag:sgtin-96:3.0614141.812345.6789",
            "3074257BF7194E4000001A85",
            "GS1 TDS",
        ),
        // GS1 TDS 2.3 annex E.3 (SGTIN-96 row): partition 1, 11-digit company prefix.
        (
            "urn:epc:tag:sgtin-96:3.95060001343.05.123456789",
            "3066C4409047E140075BCD15",
            "GS1 TDS 2.3 E.3",
        ),
        // awelxtr/epcGS1coder Sgtin96Test.java: partition 5 with leading zeros.
        (
            "urn:epc:tag:sgtin-96:1.0008000.001137.11",
            "3034007D00011C400000000B",
            "epcGS1coder",
        ),
        // Python `epc` package tests (test_96_encode): partitions 6, 0 and 4.
        (
            "urn:epc:tag:sgtin-96:0.000001.0000001.1",
            "301800004000004000000001",
            "python epc",
        ),
        (
            "urn:epc:tag:sgtin-96:0.320000000000.1.0",
            "30012A05F200004000000000",
            "python epc",
        ),
        (
            "urn:epc:tag:sgtin-96:0.32000000.25000.51681623",
            "3010F42400186A0003149957",
            "python epc",
        ),
        // Rust `gs1` crate tests (decode_binary, pure identity
        // urn:epc:id:sgtin:360843.0951968.7025652); the filter, 1, is read off byte 0x39.
        (
            "urn:epc:tag:sgtin-96:1.360843.0951968.7025652",
            "30396062C3A1A800006B33F4",
            "gs1 crate",
        ),
    ];

    #[test]
    fn design_vector_round_trips_all_forms() {
        let epc = Sgtin96::from_tag_uri("urn:epc:tag:sgtin-96:3.0614141.812345.6789").unwrap();
        assert_eq!(epc.filter(), 3);
        assert_eq!(epc.partition(), 5);
        assert_eq!(epc.company_prefix(), "0614141");
        assert_eq!(epc.item_reference(), "812345");
        assert_eq!(epc.serial(), 6789);
        assert_eq!(epc.to_hex(), "3074257BF7194E4000001A85");
        assert_eq!(
            epc.to_bytes(),
            [
                0x30, 0x74, 0x25, 0x7B, 0xF7, 0x19, 0x4E, 0x40, 0x00, 0x00, 0x1A, 0x85
            ]
        );
        assert_eq!(
            epc.pure_identity_uri(),
            "urn:epc:id:sgtin:0614141.812345.6789"
        );
        assert_eq!(
            epc.to_string(),
            "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
        );
        let from_hex = Sgtin96::from_hex("3074257BF7194E4000001A85").unwrap();
        assert_eq!(from_hex, epc);
        let pure = Sgtin96::from_pure_identity_uri("urn:epc:id:sgtin:0614141.812345.6789").unwrap();
        assert_eq!(pure.filter(), 0);
        assert_eq!(pure.with_filter(3).unwrap(), epc);
    }

    #[test]
    fn published_vectors_decode_and_encode() {
        for (uri, hex, source) in VECTORS {
            let from_uri = Sgtin96::from_tag_uri(uri).unwrap();
            assert_eq!(from_uri.to_hex(), *hex, "{source}: {uri}");
            let from_hex: Sgtin96 = hex.parse().unwrap();
            assert_eq!(from_hex.tag_uri(), *uri, "{source}: {hex}");
            assert_eq!(from_hex.to_hex(), *hex);
            let lower: Sgtin96 = hex.to_lowercase().parse().unwrap();
            assert_eq!(lower, from_hex);
        }
    }

    #[test]
    fn from_str_accepts_each_form() {
        let expected = Sgtin96::new(3, 5, "0614141", "812345", 6789).unwrap();
        let tag: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
            .parse()
            .unwrap();
        let pure: Sgtin96 = "urn:epc:id:sgtin:0614141.812345.6789".parse().unwrap();
        let hex: Sgtin96 = "3074257bf7194e4000001a85".parse().unwrap();
        assert_eq!(tag, expected);
        assert_eq!(hex, expected);
        assert_eq!(pure, expected.clone().with_filter(0).unwrap());
        let slice: &[u8] = &expected.to_bytes();
        assert_eq!(Sgtin96::try_from(slice).unwrap(), expected);
    }

    #[test]
    fn serde_uses_the_tag_uri() {
        let epc = Sgtin96::new(3, 5, "0614141", "812345", 6789).unwrap();
        let json = serde_json::to_string(&epc).unwrap();
        assert_eq!(json, "\"urn:epc:tag:sgtin-96:3.0614141.812345.6789\"");
        assert_eq!(serde_json::from_str::<Sgtin96>(&json).unwrap(), epc);
        assert_eq!(
            serde_json::from_str::<Sgtin96>("\"3074257BF7194E4000001A85\"").unwrap(),
            epc
        );
        let error =
            serde_json::from_str::<Sgtin96>("\"urn:epc:tag:sgtin-96:9.0614141.812345.6789\"")
                .unwrap_err();
        assert!(error.to_string().contains("filter 9"), "{error}");
    }

    #[test]
    fn serial_limits() {
        let max = format!("urn:epc:id:sgtin:0614141.812345.{MAX_SERIAL}");
        let epc: Sgtin96 = max.parse().unwrap();
        assert_eq!(epc.serial(), 274_877_906_943);
        // The serial is the low 38 bits: all ones.
        let bytes = epc.to_bytes();
        assert_eq!(bytes[8..], [0xFF; 4]);
        assert_eq!(bytes[7] & 0x3F, 0x3F);
        let zero: Sgtin96 = "urn:epc:id:sgtin:0614141.812345.0".parse().unwrap();
        assert_eq!(zero.serial(), 0);
    }

    fn bytes_of(hex: &str) -> [u8; 12] {
        let mut bytes = [0u8; 12];
        hex::decode_to_slice(hex, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn rejects_wrong_header() {
        let mut bytes = bytes_of("3074257BF7194E4000001A85");
        bytes[0] = 0x36; // SGTIN-198
        assert_eq!(
            Sgtin96::from_bytes(&bytes),
            Err(EpcError::Header { found: 0x36 })
        );
        assert_eq!(
            "3174257BF7194E4000001A85".parse::<Sgtin96>(),
            Err(EpcError::Header { found: 0x31 })
        );
    }

    #[test]
    fn rejects_partition_seven() {
        // 0x7C = filter 3, partition 7.
        assert_eq!(
            "307C257BF7194E4000001A85".parse::<Sgtin96>(),
            Err(EpcError::InvalidPartition { partition: 7 })
        );
        assert_eq!(
            Sgtin96::new(3, 7, "0614141", "812345", 1),
            Err(EpcError::InvalidPartition { partition: 7 })
        );
    }

    #[test]
    fn rejects_company_prefix_of_wrong_length() {
        let error = Sgtin96::new(3, 5, "06141410", "81234", 1).unwrap_err();
        assert_eq!(
            error,
            EpcError::CompanyPrefixLength {
                digits: 8,
                partition: 5,
                expected: 7
            }
        );
        assert_eq!(
            error.to_string(),
            "EPC company prefix has 8 digits but partition 5 needs 7"
        );
        assert_eq!(
            "urn:epc:id:sgtin:06141.81234567.1".parse::<Sgtin96>(),
            Err(EpcError::CompanyPrefixDigits { digits: 5 })
        );
        assert_eq!(
            "urn:epc:id:sgtin:0614141000000.1.1".parse::<Sgtin96>(),
            Err(EpcError::CompanyPrefixDigits { digits: 13 })
        );
    }

    #[test]
    fn rejects_item_reference_of_wrong_length() {
        assert_eq!(
            Sgtin96::new(3, 5, "0614141", "8123456", 1),
            Err(EpcError::ItemReferenceLength {
                digits: 7,
                partition: 5,
                expected: 6
            })
        );
        assert_eq!(
            "urn:epc:tag:sgtin-96:3.0614141.81234.1".parse::<Sgtin96>(),
            Err(EpcError::ItemReferenceLength {
                digits: 5,
                partition: 5,
                expected: 6
            })
        );
    }

    #[test]
    fn rejects_binary_fields_beyond_their_digits() {
        // Partition 6: the 20-bit company prefix field holds 0xFFFFF = 1048575 (7 digits).
        let mut value: u128 = (0x30 << 88) | (6 << 82) | (0xF_FFFF << 62);
        let bytes: [u8; 12] = value.to_be_bytes()[4..].try_into().unwrap();
        assert_eq!(
            Sgtin96::from_bytes(&bytes),
            Err(EpcError::CompanyPrefixOverflow {
                value: 1_048_575,
                partition: 6,
                digits: 6
            })
        );
        // Partition 0: the 4-bit item reference field holds 10 (2 digits).
        value = (0x30 << 88) | (10 << 38);
        let bytes: [u8; 12] = value.to_be_bytes()[4..].try_into().unwrap();
        assert_eq!(
            Sgtin96::from_bytes(&bytes),
            Err(EpcError::ItemReferenceOverflow {
                value: 10,
                partition: 0,
                digits: 1
            })
        );
    }

    #[test]
    fn rejects_serial_too_large() {
        assert_eq!(
            "urn:epc:id:sgtin:0614141.812345.274877906944".parse::<Sgtin96>(),
            Err(EpcError::SerialTooLarge {
                serial: "274877906944".into()
            })
        );
        assert_eq!(
            "urn:epc:id:sgtin:0614141.812345.99999999999999999999999".parse::<Sgtin96>(),
            Err(EpcError::SerialTooLarge {
                serial: "99999999999999999999999".into()
            })
        );
        assert_eq!(
            Sgtin96::new(0, 5, "0614141", "812345", MAX_SERIAL + 1),
            Err(EpcError::SerialTooLarge {
                serial: "274877906944".into()
            })
        );
    }

    #[test]
    fn rejects_serial_with_leading_zeros() {
        assert_eq!(
            "urn:epc:tag:sgtin-96:3.0614141.812345.06789".parse::<Sgtin96>(),
            Err(EpcError::SerialLeadingZero {
                serial: "06789".into()
            })
        );
        assert_eq!(
            "urn:epc:id:sgtin:0614141.812345.00".parse::<Sgtin96>(),
            Err(EpcError::SerialLeadingZero {
                serial: "00".into()
            })
        );
    }

    #[test]
    fn rejects_non_digits_naming_the_component() {
        let cases = [
            (
                "urn:epc:tag:sgtin-96:x.0614141.812345.1",
                EpcComponent::Filter,
            ),
            (
                "urn:epc:tag:sgtin-96:3.06141A1.812345.1",
                EpcComponent::CompanyPrefix,
            ),
            (
                "urn:epc:tag:sgtin-96:3.0614141.8123-5.1",
                EpcComponent::ItemReference,
            ),
            (
                "urn:epc:tag:sgtin-96:3.0614141.812345.12a",
                EpcComponent::Serial,
            ),
            ("urn:epc:id:sgtin:0614141.812345.+1", EpcComponent::Serial),
            ("urn:epc:id:sgtin:0614141.812345.٣", EpcComponent::Serial),
        ];
        for (uri, component) in cases {
            assert_eq!(
                uri.parse::<Sgtin96>(),
                Err(EpcError::NonDigit { component }),
                "{uri}"
            );
        }
        assert_eq!(
            Sgtin96::new(0, 5, "061414 ", "812345", 1),
            Err(EpcError::NonDigit {
                component: EpcComponent::CompanyPrefix
            })
        );
    }

    #[test]
    fn rejects_empty_components() {
        assert_eq!(
            "urn:epc:tag:sgtin-96:.0614141.812345.1".parse::<Sgtin96>(),
            Err(EpcError::EmptyComponent {
                component: EpcComponent::Filter
            })
        );
        assert_eq!(
            "urn:epc:id:sgtin:0614141..1".parse::<Sgtin96>(),
            Err(EpcError::EmptyComponent {
                component: EpcComponent::ItemReference
            })
        );
        assert_eq!(
            "urn:epc:id:sgtin:0614141.812345.".parse::<Sgtin96>(),
            Err(EpcError::EmptyComponent {
                component: EpcComponent::Serial
            })
        );
    }

    #[test]
    fn rejects_filter_out_of_range() {
        for filter in ["8", "9", "03", "10"] {
            assert_eq!(
                format!("urn:epc:tag:sgtin-96:{filter}.0614141.812345.1").parse::<Sgtin96>(),
                Err(EpcError::FilterOutOfRange {
                    filter: filter.into()
                })
            );
        }
        let epc = Sgtin96::new(0, 5, "0614141", "812345", 1).unwrap();
        assert_eq!(
            epc.with_filter(8),
            Err(EpcError::FilterOutOfRange { filter: "8".into() })
        );
        assert_eq!(
            Sgtin96::new(200, 5, "0614141", "812345", 1),
            Err(EpcError::FilterOutOfRange {
                filter: "200".into()
            })
        );
    }

    #[test]
    fn rejects_other_uri_schemes() {
        assert!(matches!(
            "urn:epc:tag:sgtin-198:3.0614141.812345.1".parse::<Sgtin96>(),
            Err(EpcError::UriScheme { .. })
        ));
        assert!(matches!(
            "urn:epc:id:sscc:0614141.1234567890".parse::<Sgtin96>(),
            Err(EpcError::UriScheme { .. })
        ));
        assert_eq!(
            Sgtin96::from_tag_uri("urn:epc:id:sgtin:0614141.812345.1"),
            Err(EpcError::UriScheme {
                expected: TAG_URI_PREFIX
            })
        );
        assert_eq!(
            Sgtin96::from_pure_identity_uri("URN:EPC:ID:SGTIN:0614141.812345.1"),
            Err(EpcError::UriScheme {
                expected: PURE_IDENTITY_URI_PREFIX
            })
        );
    }

    #[test]
    fn rejects_wrong_component_count() {
        assert!(matches!(
            "urn:epc:tag:sgtin-96:0614141.812345.1".parse::<Sgtin96>(),
            Err(EpcError::ComponentCount {
                found: 3,
                expected: 4,
                ..
            })
        ));
        assert!(matches!(
            "urn:epc:id:sgtin:3.0614141.812345.1".parse::<Sgtin96>(),
            Err(EpcError::ComponentCount {
                found: 4,
                expected: 3,
                ..
            })
        ));
        assert!(matches!(
            "urn:epc:id:sgtin:".parse::<Sgtin96>(),
            Err(EpcError::ComponentCount {
                found: 1,
                expected: 3,
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(
            "3074257BF7194E4000001A8".parse::<Sgtin96>(),
            Err(EpcError::HexLength { length: 23 })
        );
        assert_eq!(
            "0x3074257BF7194E4000001A85".parse::<Sgtin96>(),
            Err(EpcError::HexLength { length: 26 })
        );
        assert_eq!(
            "".parse::<Sgtin96>(),
            Err(EpcError::HexLength { length: 0 })
        );
        assert_eq!(
            "3074257BF7194E4000001AG5".parse::<Sgtin96>(),
            Err(EpcError::NotHex)
        );
        // 24 bytes but fewer characters: not hex either.
        assert_eq!(
            "3074257BF7194E4000001Aé".parse::<Sgtin96>(),
            Err(EpcError::NotHex)
        );
    }

    #[test]
    fn rejects_wrong_byte_length() {
        let short: &[u8] = &[0x30; 11];
        let long: &[u8] = &[0x30; 13];
        assert_eq!(
            Sgtin96::try_from(short),
            Err(EpcError::ByteLength { length: 11 })
        );
        assert_eq!(
            Sgtin96::try_from(long),
            Err(EpcError::ByteLength { length: 13 })
        );
    }

    fn digit_string(length: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(0u8..10, length)
            .prop_map(|digits| digits.into_iter().map(|d| char::from(b'0' + d)).collect())
    }

    /// Any valid field combination, built field by field (not through the parsers).
    pub(crate) fn any_sgtin96() -> impl Strategy<Value = Sgtin96> {
        (0u8..=6).prop_flat_map(|partition| {
            let row = &PARTITIONS[usize::from(partition)];
            (
                0u8..=7,
                Just(partition),
                digit_string(row.company_prefix_digits),
                digit_string(row.item_reference_digits),
                0..=MAX_SERIAL,
            )
                .prop_map(|(filter, partition, company, item, serial)| {
                    Sgtin96::new(filter, partition, &company, &item, serial).unwrap()
                })
        })
    }

    proptest! {
        #[test]
        fn valid_values_round_trip_every_form(epc in any_sgtin96()) {
            prop_assert_eq!(Sgtin96::from_tag_uri(&epc.tag_uri()).unwrap(), epc.clone());
            prop_assert_eq!(epc.to_string().parse::<Sgtin96>().unwrap(), epc.clone());
            let pure = Sgtin96::from_pure_identity_uri(&epc.pure_identity_uri()).unwrap();
            prop_assert_eq!(pure.filter(), 0);
            prop_assert_eq!(pure.with_filter(epc.filter()).unwrap(), epc.clone());
            prop_assert_eq!(Sgtin96::from_bytes(&epc.to_bytes()).unwrap(), epc.clone());
            prop_assert_eq!(epc.to_hex().parse::<Sgtin96>().unwrap(), epc.clone());
            prop_assert_eq!(epc.to_hex().to_lowercase().parse::<Sgtin96>().unwrap(), epc.clone());
            // The digit strings keep their exact lengths (13 digits together).
            prop_assert_eq!(
                epc.company_prefix().len() + epc.item_reference().len(),
                GTIN_DIGITS_WITHOUT_CHECK_DIGIT
            );
            prop_assert_eq!(epc.company_prefix().len(), 12 - usize::from(epc.partition()));
        }

        #[test]
        fn arbitrary_bytes_decode_exactly_or_fail(
            mut bytes in any::<[u8; 12]>(),
            force_header in any::<bool>(),
        ) {
            // Without the header most inputs would stop at the first check.
            if force_header {
                bytes[0] = SGTIN96_HEADER;
            }
            if let Ok(epc) = Sgtin96::from_bytes(&bytes) {
                prop_assert_eq!(epc.to_bytes(), bytes);
                prop_assert_eq!(Sgtin96::from_tag_uri(&epc.tag_uri()).unwrap(), epc);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,64}") {
            let _ = text.parse::<Sgtin96>();
            let _ = Sgtin96::from_tag_uri(&format!("{TAG_URI_PREFIX}{text}"));
            let _ = Sgtin96::from_pure_identity_uri(&format!("{PURE_IDENTITY_URI_PREFIX}{text}"));
        }
    }
}
