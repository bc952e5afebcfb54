//! The 32-byte SHA-256 value that leaves, Merkle nodes and batch headers are named by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, a Merkle node or root, or a batch-header hash.
///
/// Printed and parsed as 64 lowercase hexadecimal digits (uppercase is accepted on input).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero value, used as the "previous header" of a patient's first batch.
    pub const ZERO: Self = Self([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a hash from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashParseError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| HashParseError::Length(bytes.len()))?;
        Ok(Self(array))
    }
}

impl From<[u8; 32]> for Hash {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// Why a text or byte string is not a [`Hash`](struct@Hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// The input does not hold exactly 32 bytes (64 hexadecimal digits).
    #[error("a SHA-256 hash is 32 bytes (64 hex digits), got {0} bytes")]
    Length(usize),
    /// The text holds something other than hexadecimal digits.
    #[error("a SHA-256 hash is written in hexadecimal digits only")]
    NotHex,
}

impl FromStr for Hash {
    type Err = HashParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 64 {
            return Err(HashParseError::Length(text.len() / 2));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| HashParseError::NotHex)?;
        Ok(Self(bytes))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_hashes_to_the_well_known_value() {
        assert_eq!(
            Hash::sha256(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let hash = Hash::sha256(b"wardseal");
        assert_eq!(hash.to_string().parse::<Hash>(), Ok(hash));
        assert_eq!(hash.to_string().to_uppercase().parse::<Hash>(), Ok(hash));
        assert_eq!("abcd".parse::<Hash>(), Err(HashParseError::Length(2)));
        assert_eq!("zz".repeat(32).parse::<Hash>(), Err(HashParseError::NotHex));
        assert_eq!(Hash::from_slice(&[0; 31]), Err(HashParseError::Length(31)));
    }
}
