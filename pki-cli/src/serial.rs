//! Certificate serial numbers: 126 random bits, always 16 positive DER bytes.

use std::fmt;
use std::str::FromStr;

use rand_core::{OsRng, RngCore};

use crate::error::InventoryError;

/// Length of the serials this CA issues, in bytes.
pub const SERIAL_BYTES: usize = 16;

/// A certificate serial number as its DER INTEGER content bytes (big-endian, positive).
///
/// Serials issued here have 126 random bits (CA/Browser Forum asks for at least 64): the
/// top bit is clear so the integer is positive, the next bit is set so the DER encoding is
/// always exactly 16 bytes and the text form always 32 hex digits. Serials read back from
/// certificates of other CAs may have any length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SerialNumber(Vec<u8>);

impl SerialNumber {
    /// A fresh random serial from the operating system's generator.
    pub fn random() -> Self {
        let mut bytes = [0_u8; SERIAL_BYTES];
        OsRng.fill_bytes(&mut bytes);
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Self(bytes.to_vec())
    }

    /// The serial from a certificate's DER INTEGER content bytes (a leading 0x00 that only
    /// keeps the integer positive is dropped, so text forms match openssl's).
    pub fn from_der_content(bytes: &[u8]) -> Self {
        let mut start = 0;
        while start + 1 < bytes.len() && bytes[start] == 0 {
            start += 1;
        }
        Self(bytes[start..].to_vec())
    }

    /// The big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As rcgen wants it.
    pub(crate) fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for SerialNumber {
    /// Lowercase hexadecimal without separators (openssl prints the same digits in
    /// uppercase; [`FromStr`] accepts both, with or without colons).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SerialNumber({self})")
    }
}

impl FromStr for SerialNumber {
    type Err = InventoryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: String = text
            .trim()
            .trim_start_matches("0x")
            .chars()
            .filter(|c| *c != ':')
            .collect();
        let bad = || InventoryError::BadSerial {
            text: text.to_owned(),
        };
        if digits.is_empty() || digits.len() > 40 {
            return Err(bad());
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = hex::decode(padded).map_err(|_| bad())?;
        Ok(Self::from_der_content(&bytes))
    }
}

impl serde::Serialize for SerialNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_serials_are_positive_sixteen_bytes_and_differ() {
        let a = SerialNumber::random();
        let b = SerialNumber::random();
        assert_ne!(a, b);
        for serial in [a, b] {
            assert_eq!(serial.as_bytes().len(), SERIAL_BYTES);
            assert_eq!(serial.as_bytes()[0] & 0xc0, 0x40);
            assert_eq!(serial.to_string().len(), 32);
        }
    }

    #[test]
    fn text_forms_round_trip_and_accept_openssl_style() {
        let serial = SerialNumber::random();
        let upper_with_colons = serial
            .as_bytes()
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(upper_with_colons.parse::<SerialNumber>().unwrap(), serial);
        assert_eq!(serial.to_string().parse::<SerialNumber>().unwrap(), serial);
        assert_eq!("00ff".parse::<SerialNumber>().unwrap().as_bytes(), &[0xff]);
        assert!("xyz".parse::<SerialNumber>().is_err());
        assert!("".parse::<SerialNumber>().is_err());
    }
}
