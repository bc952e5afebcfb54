//! Gap records: how a patient's chain continues past a batch storage refused for good.
//!
//! A collector quarantines a batch that storage refuses permanently (a device deactivated
//! between the 202 and delivery, a rule tightened, a patient certificate revoked, …). The
//! patient's later batches already name that batch's header as their previous one, so the
//! chain would stall behind it. Instead of hiding the hole, the collector declares it: a
//! [`GapRecord`] names the withheld batch (its sequence, its header hash and the header
//! hash before it) and why it was withheld, and the patient's *current* card signs it
//! (the card that signed the withheld batch may be the revoked one). Storage checks that
//! the record continues the chain it holds (sequence = tip + 1, previous = tip hash),
//! records it, and moves the tip to the withheld header's hash, so the next batch
//! continues. A dropped batch is thus never silent: storage holds a signed statement of
//! which batch is missing and why, and accepts that exact batch later (a resubmission
//! after a fix) to fill the gap.
//!
//! Canonical encoding, version 1 (big-endian):
//!
//! ```text
//! [19]    domain tag "wardseal batch gap\0" (never a batch header's tag: a signature
//!         over a gap record cannot be taken for a signature over a header, or back)
//! u8      version = 1
//! u8 n    patient id length, n bytes
//! u8 n    collector id length, n bytes
//! u64     the withheld batch's sequence
//! [32]    the withheld header's previous-header hash (zero for sequence 1)
//! [32]    the withheld header's hash
//! u8 n    reason code length, n bytes (storage's refusal code, ASCII)
//! i64     declared at, µs since the Unix epoch
//! u8      signature algorithm code (SignatureAlgorithm::code)
//! ```
//!
//! ```
//! use wardseal_core::gap::{GapRecord, GapRecordParts};
//! use wardseal_core::hash::Hash;
//! use wardseal_core::reading::Timestamp;
//! use wardseal_core::signature::SignatureAlgorithm;
//!
//! let gap = GapRecord::new(GapRecordParts {
//!     patient: "P-000123".parse()?,
//!     collector: "ward-3A".parse()?,
//!     sequence: 4,
//!     previous: Hash::sha256(b"batch 3"),
//!     withheld: Hash::sha256(b"batch 4"),
//!     reason: "device_inactive".into(),
//!     declared_at: Timestamp::from_unix_micros(1_800_000_000_000_000)?,
//!     algorithm: SignatureAlgorithm::EcdsaP256Sha256,
//! })?;
//! let bytes = gap.canonical_bytes();
//! assert!(bytes.starts_with(b"wardseal batch gap\0"));
//! assert_eq!(GapRecord::from_canonical_bytes(&bytes)?, gap);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::batch::{BatchError, ChainTip};
use crate::codec::{CodecError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::SubjectId;
use crate::reading::Timestamp;
use crate::signature::{SignatureAlgorithm, SignatureError, VerifyingKey};

/// The domain-separation prefix of every canonical gap record.
pub const DOMAIN_TAG: &[u8; 19] = b"wardseal batch gap\0";

/// The version byte this library writes and reads.
pub const VERSION: u8 = 1;

/// The longest reason code (storage's refusal codes are short `snake_case` words).
pub const MAX_REASON_LEN: usize = 64;

/// Why a gap record is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GapError {
    /// Sequence numbers start at 1.
    #[error("gap record: batch sequence numbers start at 1")]
    ZeroSequence,
    /// The previous hash must be zero exactly when the withheld batch is the first.
    #[error(
        "gap record for batch {sequence}: the previous-header hash must be zero exactly for a patient's first batch"
    )]
    PreviousMismatch {
        /// The withheld batch's sequence.
        sequence: u64,
    },
    /// The reason code is empty, too long or not `snake_case` ASCII.
    #[error("gap record reason must be 1 to 64 characters of a-z, 0-9 and '_'")]
    InvalidReason,
    /// The canonical bytes do not start with the gap-record domain tag.
    #[error("not a wardseal gap record (domain tag missing)")]
    NotAGapRecord,
    /// The canonical encoding's version is not one this library reads.
    #[error("gap record version {0} is not supported (this library reads version 1)")]
    UnknownVersion(u8),
    /// The bytes end early or continue after the record.
    #[error("gap record encoding: {0}")]
    Encoding(String),
    /// A patient or collector id is not a valid subject id.
    #[error("gap record {field} is not a valid subject id")]
    InvalidSubjectId {
        /// `"patient"` or `"collector"`.
        field: &'static str,
    },
    /// A time is before 1970 or after 9999.
    #[error("gap record time is out of range (1970 to 9999)")]
    TimeOutOfRange,
    /// The record names an unknown signature algorithm code.
    #[error("gap record names unknown signature algorithm code {0}")]
    UnknownAlgorithm(u8),
}

impl From<CodecError> for GapError {
    fn from(error: CodecError) -> Self {
        Self::Encoding(match error {
            CodecError::Truncated { position } => format!("truncated at byte {position}"),
            CodecError::Trailing { position } => format!("trailing bytes from byte {position}"),
        })
    }
}

/// The fields of a gap record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GapRecordParts {
    /// The patient whose chain has the gap.
    pub patient: SubjectId,
    /// The collector declaring it.
    pub collector: SubjectId,
    /// The withheld batch's sequence number.
    pub sequence: u64,
    /// The withheld header's previous-header hash.
    pub previous: Hash,
    /// The withheld header's hash.
    pub withheld: Hash,
    /// Why it is withheld: storage's refusal code.
    pub reason: String,
    /// When the collector declared the gap.
    pub declared_at: Timestamp,
    /// How the card signs the record.
    pub algorithm: SignatureAlgorithm,
}

/// A validated gap record. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "GapRecordParts", into = "GapRecordParts")]
pub struct GapRecord {
    parts: GapRecordParts,
}

impl TryFrom<GapRecordParts> for GapRecord {
    type Error = GapError;

    fn try_from(parts: GapRecordParts) -> Result<Self, Self::Error> {
        Self::new(parts)
    }
}

impl From<GapRecord> for GapRecordParts {
    fn from(record: GapRecord) -> Self {
        record.parts
    }
}

impl GapRecord {
    /// Checks the fields: sequence from 1, previous hash zero exactly for the first
    /// batch, a `snake_case` reason of at most [`MAX_REASON_LEN`] bytes.
    pub fn new(parts: GapRecordParts) -> Result<Self, GapError> {
        if parts.sequence == 0 {
            return Err(GapError::ZeroSequence);
        }
        if (parts.sequence == 1) != (parts.previous == Hash::ZERO) {
            return Err(GapError::PreviousMismatch {
                sequence: parts.sequence,
            });
        }
        let reason_ok = !parts.reason.is_empty()
            && parts.reason.len() <= MAX_REASON_LEN
            && parts
                .reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !reason_ok {
            return Err(GapError::InvalidReason);
        }
        Ok(Self { parts })
    }

    /// All fields.
    pub fn parts(&self) -> &GapRecordParts {
        &self.parts
    }

    /// The patient.
    pub fn patient(&self) -> &SubjectId {
        &self.parts.patient
    }

    /// The collector.
    pub fn collector(&self) -> &SubjectId {
        &self.parts.collector
    }

    /// The withheld batch's sequence.
    pub fn sequence(&self) -> u64 {
        self.parts.sequence
    }

    /// The withheld header's hash.
    pub fn withheld(&self) -> Hash {
        self.parts.withheld
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.parts.algorithm
    }

    /// The canonical encoding (version 1): the message the patient's card signs.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let parts = &self.parts;
        let mut out = Writer::with_capacity(
            DOMAIN_TAG.len()
                + 4
                + parts.patient.as_str().len()
                + parts.collector.as_str().len()
                + parts.reason.len()
                + 8
                + 64
                + 8,
        );
        out.bytes(DOMAIN_TAG);
        out.u8(VERSION);
        out.short_str(parts.patient.as_str());
        out.short_str(parts.collector.as_str());
        out.u64(parts.sequence);
        out.bytes(parts.previous.as_bytes());
        out.bytes(parts.withheld.as_bytes());
        out.short_str(&parts.reason);
        out.i64(parts.declared_at.unix_micros());
        out.u8(parts.algorithm.code());
        out.finish()
    }

    /// Decodes a canonical encoding, accepting only the exact bytes
    /// [`canonical_bytes`](GapRecord::canonical_bytes) would produce.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, GapError> {
        let mut input = Reader::new(bytes);
        if input.take(DOMAIN_TAG.len()).ok() != Some(DOMAIN_TAG.as_slice()) {
            return Err(GapError::NotAGapRecord);
        }
        let version = input.u8()?;
        if version != VERSION {
            return Err(GapError::UnknownVersion(version));
        }
        let subject = |input: &mut Reader<'_>, field| -> Result<SubjectId, GapError> {
            input
                .short_subject()?
                .ok_or(GapError::InvalidSubjectId { field })
        };
        let patient = subject(&mut input, "patient")?;
        let collector = subject(&mut input, "collector")?;
        let sequence = input.u64()?;
        let previous = Hash::from(input.array::<32>()?);
        let withheld = Hash::from(input.array::<32>()?);
        let reason = std::str::from_utf8(input.short_bytes()?)
            .map_err(|_| GapError::InvalidReason)?
            .to_owned();
        let declared_at =
            Timestamp::from_unix_micros(input.i64()?).map_err(|_| GapError::TimeOutOfRange)?;
        let code = input.u8()?;
        let algorithm =
            SignatureAlgorithm::from_code(code).map_err(|_| GapError::UnknownAlgorithm(code))?;
        input.finish()?;
        Self::new(GapRecordParts {
            patient,
            collector,
            sequence,
            previous,
            withheld,
            reason,
            declared_at,
            algorithm,
        })
    }

    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        Hash::sha256(&self.canonical_bytes())
    }

    /// The chain tip once the gap is recorded: the withheld batch's place and hash, so
    /// the batch after it (which names that hash as its previous) continues.
    pub fn tip(&self) -> ChainTip {
        ChainTip {
            sequence: self.parts.sequence,
            hash: self.parts.withheld,
        }
    }

    /// Whether the gap takes the next place after `tip` (the same rule as a batch header:
    /// [`BatchHeader::check_continues`](crate::batch::BatchHeader::check_continues)).
    pub fn check_continues(&self, tip: Option<&ChainTip>) -> Result<(), BatchError> {
        crate::batch::check_link(self.parts.sequence, self.parts.previous, tip)
    }

    /// Checks the card's signature over this record with the patient certificate's key.
    pub fn verify_signature(
        &self,
        key: &VerifyingKey,
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        key.verify(self.parts.algorithm, &self.canonical_bytes(), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::DOMAIN_TAG as HEADER_TAG;

    fn record(sequence: u64) -> GapRecord {
        GapRecord::new(GapRecordParts {
            patient: "P-1".parse().unwrap(),
            collector: "ward-1".parse().unwrap(),
            sequence,
            previous: if sequence == 1 {
                Hash::ZERO
            } else {
                Hash::sha256(b"prev")
            },
            withheld: Hash::sha256(b"withheld"),
            reason: "device_inactive".into(),
            declared_at: Timestamp::from_unix_micros(1_700_000_000_000_000).unwrap(),
            algorithm: SignatureAlgorithm::EcdsaP256Sha256,
        })
        .unwrap()
    }

    #[test]
    fn round_trips_and_refuses_trailing_bytes() {
        let gap = record(3);
        let bytes = gap.canonical_bytes();
        assert_eq!(GapRecord::from_canonical_bytes(&bytes).unwrap(), gap);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(GapRecord::from_canonical_bytes(&longer).is_err());
        assert!(GapRecord::from_canonical_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_domain_tag_differs_from_a_headers() {
        let bytes = record(1).canonical_bytes();
        assert!(!bytes.starts_with(HEADER_TAG));
        assert!(crate::batch::BatchHeader::from_canonical_bytes(&bytes).is_err());
    }

    #[test]
    fn continues_only_the_tip_it_names() {
        let gap = record(3);
        let tip = ChainTip {
            sequence: 2,
            hash: Hash::sha256(b"prev"),
        };
        assert!(gap.check_continues(Some(&tip)).is_ok());
        let other = ChainTip {
            hash: Hash::sha256(b"other"),
            ..tip
        };
        assert!(matches!(
            gap.check_continues(Some(&other)),
            Err(BatchError::Fork { .. })
        ));
        assert!(matches!(
            gap.check_continues(None),
            Err(BatchError::Gap { .. })
        ));
        assert!(record(1).check_continues(None).is_ok());
        assert_eq!(gap.tip().hash, Hash::sha256(b"withheld"));
    }

    #[test]
    fn reasons_are_checked() {
        let mut parts = record(2).parts().clone();
        parts.reason = "Not OK".into();
        assert_eq!(GapRecord::new(parts).unwrap_err(), GapError::InvalidReason);
    }
}
