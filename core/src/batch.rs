//! Batch headers: what a patient's card signs, and how a patient's batches form a chain.
//!
//! A collector groups a patient's readings into an RFC 9162 Merkle tree and describes
//! the batch in a [`BatchHeader`]: patient, collector, batch sequence number, the hash of
//! the patient's previous header, the Merkle root, the number of readings, the range of
//! device times and the signature algorithm. The patient's card signs the header's
//! canonical bytes (for ECDSA, RSA-PSS and DSA it signs their SHA-256, which is
//! [`BatchHeader::hash`]; Ed25519 signs the bytes themselves).
//!
//! Because each header names the hash of the one before, a patient's batches form a
//! private chain sealed by the patient's own card (Chendeb et al., layer 1). Storage keeps
//! the tip of each chain and calls [`BatchHeader::check_continues`]: a dropped batch shows
//! as a gap, a substituted one as a fork, a re-sent one as a replay.
//!
//! Canonical encoding, version 1 (big-endian):
//!
//! ```text
//! [22]    domain tag "wardseal batch header\0" (a card signature over these bytes
//!         can never be mistaken for a signature over a reading or a file)
//! u8      version = 1
//! u8 n    patient id length, n bytes (subject id of the patient's certificate)
//! u8 n    collector id length, n bytes (subject id of the collector's certificate)
//! u64     batch sequence (1 for the patient's first batch)
//! [32]    previous header hash (all zero for sequence 1)
//! [32]    Merkle root of the readings' leaf hashes
//! u64     number of readings (≥ 1)
//! i64     earliest device time, µs since the Unix epoch
//! i64     latest device time, µs since the Unix epoch
//! u8      signature algorithm code (SignatureAlgorithm::code)
//! ```

use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Reader, Writer};
use crate::hash::Hash;
use crate::identity::SubjectId;
use crate::merkle;
use crate::reading::Timestamp;
use crate::signature::{SignatureAlgorithm, SignatureError, VerifyingKey};

/// The domain-separation prefix of every canonical batch header.
pub const DOMAIN_TAG: &[u8; 22] = b"wardseal batch header\0";

/// The version byte this library writes and reads.
pub const VERSION: u8 = 1;

/// Why a batch header is malformed, or does not continue its patient's chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Batch sequence numbers start at 1.
    #[error("batch sequence numbers start at 1")]
    ZeroSequence,
    /// A first batch (sequence 1) names a previous header, or a later one names none.
    #[error(
        "batch {sequence}: the previous-header hash must be zero exactly for a patient's first batch"
    )]
    PreviousMismatch {
        /// The header's sequence number.
        sequence: u64,
    },
    /// A batch must hold at least one reading.
    #[error("a batch must hold at least one reading")]
    Empty,
    /// The earliest time is after the latest.
    #[error("batch time range is reversed: first {first} is after last {last}")]
    TimeRangeReversed {
        /// The stated earliest time.
        first: Timestamp,
        /// The stated latest time.
        last: Timestamp,
    },
    /// A time in the header is before 1970 or after 9999.
    #[error("batch header time is out of range (1970 to 9999)")]
    TimeOutOfRange,
    /// The canonical bytes do not start with the batch-header domain tag.
    #[error("not a wardseal batch header (domain tag missing)")]
    NotABatchHeader,
    /// The canonical encoding's version is not one this library reads.
    #[error("batch header version {0} is not supported (this library reads version 1)")]
    UnknownVersion(u8),
    /// The canonical bytes end before the header does.
    #[error("batch header truncated at byte {position}")]
    Truncated {
        /// Where the input ended.
        position: usize,
    },
    /// The canonical bytes continue after the header.
    #[error("batch header has trailing bytes from byte {position}")]
    TrailingBytes {
        /// The first byte after the header.
        position: usize,
    },
    /// A patient or collector id in the header is not a valid subject id.
    #[error("batch header {field} is not a valid subject id")]
    InvalidSubjectId {
        /// `"patient"` or `"collector"`.
        field: &'static str,
    },
    /// The header names an unknown signature algorithm code.
    #[error("batch header names unknown signature algorithm code {0}")]
    UnknownAlgorithm(u8),
    /// The batch skips sequence numbers: batches between the patient's last stored one
    /// and this one are missing (dropped by a collector, or still on their way).
    #[error("batch {got} leaves a gap: the next batch in this patient's chain is {expected}")]
    Gap {
        /// The sequence number the chain expects.
        expected: u64,
        /// The sequence number received.
        got: u64,
    },
    /// The batch has the next sequence number but names a different previous header:
    /// someone substituted or reordered batches.
    #[error(
        "batch {sequence} forks the chain: it names previous header {got}, the chain holds {expected}"
    )]
    Fork {
        /// The sequence number received.
        sequence: u64,
        /// The hash of the header the chain holds at `sequence - 1`.
        expected: Hash,
        /// The previous-header hash the batch names.
        got: Hash,
    },
    /// The batch's sequence number is not above the chain's tip: an old batch re-sent
    /// (or a different batch claiming an old place).
    #[error("batch {sequence} replays an old place in the chain (the chain is at {tip})")]
    Replay {
        /// The sequence number received.
        sequence: u64,
        /// The chain's last sequence number.
        tip: u64,
    },
}

impl From<CodecError> for BatchError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated { position } => BatchError::Truncated { position },
            CodecError::Trailing { position } => BatchError::TrailingBytes { position },
        }
    }
}

/// The fields of a batch header, for building one or reading it as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchHeaderParts {
    /// Subject id of the patient whose card signs the batch.
    pub patient: SubjectId,
    /// Subject id of the collector that assembled it.
    pub collector: SubjectId,
    /// Position in the patient's chain, from 1.
    pub sequence: u64,
    /// Hash of the patient's previous batch header; zero for the first.
    pub previous: Hash,
    /// RFC 9162 Merkle root over the readings' leaf hashes, in batch order.
    pub root: Hash,
    /// Number of readings.
    pub count: u64,
    /// Earliest device time among the readings.
    pub first_time: Timestamp,
    /// Latest device time among the readings.
    pub last_time: Timestamp,
    /// How the card signs the header.
    pub algorithm: SignatureAlgorithm,
}

/// A validated batch header. See the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BatchHeaderParts", into = "BatchHeaderParts")]
pub struct BatchHeader {
    parts: BatchHeaderParts,
}

/// The last accepted batch of a patient's chain: all storage needs to check the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainTip {
    /// The last accepted batch's sequence number.
    pub sequence: u64,
    /// The last accepted batch's header hash.
    pub hash: Hash,
}

/// Whether a link at `sequence` naming `previous` as the hash before it is the next link
/// after `tip` (`None`: the chain is empty). Batch headers and gap records follow this one
/// rule, so a gap takes exactly the place of the batch it stands for.
pub(crate) fn check_link(
    sequence: u64,
    previous: Hash,
    tip: Option<&ChainTip>,
) -> Result<(), BatchError> {
    let (expected, expected_previous) = match tip {
        None => (1, Hash::ZERO),
        Some(tip) => (tip.sequence.saturating_add(1), tip.hash),
    };
    if let Some(tip) = tip
        && sequence <= tip.sequence
    {
        return Err(BatchError::Replay {
            sequence,
            tip: tip.sequence,
        });
    }
    if sequence != expected {
        return Err(BatchError::Gap {
            expected,
            got: sequence,
        });
    }
    if previous != expected_previous {
        return Err(BatchError::Fork {
            sequence,
            expected: expected_previous,
            got: previous,
        });
    }
    Ok(())
}

impl TryFrom<BatchHeaderParts> for BatchHeader {
    type Error = BatchError;

    fn try_from(parts: BatchHeaderParts) -> Result<Self, Self::Error> {
        Self::new(parts)
    }
}

impl From<BatchHeader> for BatchHeaderParts {
    fn from(header: BatchHeader) -> Self {
        header.parts
    }
}

impl BatchHeader {
    /// Checks the fields: sequence from 1, previous hash zero exactly for the first batch,
    /// at least one reading, time range in order.
    pub fn new(parts: BatchHeaderParts) -> Result<Self, BatchError> {
        if parts.sequence == 0 {
            return Err(BatchError::ZeroSequence);
        }
        if (parts.sequence == 1) != (parts.previous == Hash::ZERO) {
            return Err(BatchError::PreviousMismatch {
                sequence: parts.sequence,
            });
        }
        if parts.count == 0 {
            return Err(BatchError::Empty);
        }
        if parts.first_time > parts.last_time {
            return Err(BatchError::TimeRangeReversed {
                first: parts.first_time,
                last: parts.last_time,
            });
        }
        Ok(Self { parts })
    }

    /// The header for a batch of `leaves` that follows `tip` in the patient's chain (or
    /// starts it, when `tip` is `None`): sequence, previous hash, root and count are
    /// derived, so a collector cannot get them inconsistent.
    pub fn for_leaves(
        patient: SubjectId,
        collector: SubjectId,
        tip: Option<&ChainTip>,
        leaves: &[Hash],
        (first_time, last_time): (Timestamp, Timestamp),
        algorithm: SignatureAlgorithm,
    ) -> Result<Self, BatchError> {
        let (sequence, previous) = match tip {
            Some(tip) => (tip.sequence.saturating_add(1), tip.hash),
            None => (1, Hash::ZERO),
        };
        Self::new(BatchHeaderParts {
            patient,
            collector,
            sequence,
            previous,
            root: merkle::root(leaves),
            count: u64::try_from(leaves.len()).unwrap_or(u64::MAX),
            first_time,
            last_time,
            algorithm,
        })
    }

    /// All fields.
    pub fn parts(&self) -> &BatchHeaderParts {
        &self.parts
    }

    /// The patient's subject id.
    pub fn patient(&self) -> &SubjectId {
        &self.parts.patient
    }

    /// The collector's subject id.
    pub fn collector(&self) -> &SubjectId {
        &self.parts.collector
    }

    /// Position in the patient's chain.
    pub fn sequence(&self) -> u64 {
        self.parts.sequence
    }

    /// Hash of the previous header (zero for the first).
    pub fn previous(&self) -> Hash {
        self.parts.previous
    }

    /// Merkle root of the readings.
    pub fn root(&self) -> Hash {
        self.parts.root
    }

    /// Number of readings.
    pub fn count(&self) -> u64 {
        self.parts.count
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
                + 1
                + 2
                + parts.patient.as_str().len()
                + parts.collector.as_str().len()
                + 8
                + 64
                + 8
                + 16
                + 1,
        );
        out.bytes(DOMAIN_TAG);
        out.u8(VERSION);
        out.short_str(parts.patient.as_str());
        out.short_str(parts.collector.as_str());
        out.u64(parts.sequence);
        out.bytes(parts.previous.as_bytes());
        out.bytes(parts.root.as_bytes());
        out.u64(parts.count);
        out.i64(parts.first_time.unix_micros());
        out.i64(parts.last_time.unix_micros());
        out.u8(parts.algorithm.code());
        out.finish()
    }

    /// Decodes a canonical encoding, accepting only the exact bytes
    /// [`canonical_bytes`](BatchHeader::canonical_bytes) would produce.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, BatchError> {
        let mut input = Reader::new(bytes);
        if input.take(DOMAIN_TAG.len()).ok() != Some(DOMAIN_TAG.as_slice()) {
            return Err(BatchError::NotABatchHeader);
        }
        let version = input.u8()?;
        if version != VERSION {
            return Err(BatchError::UnknownVersion(version));
        }
        let subject = |input: &mut Reader<'_>, field| -> Result<SubjectId, BatchError> {
            input
                .short_subject()?
                .ok_or(BatchError::InvalidSubjectId { field })
        };
        let patient = subject(&mut input, "patient")?;
        let collector = subject(&mut input, "collector")?;
        let sequence = input.u64()?;
        let previous = Hash(input.array()?);
        let root = Hash(input.array()?);
        let count = input.u64()?;
        let time = |input: &mut Reader<'_>| -> Result<Timestamp, BatchError> {
            Timestamp::from_unix_micros(input.i64()?).map_err(|_| BatchError::TimeOutOfRange)
        };
        let first_time = time(&mut input)?;
        let last_time = time(&mut input)?;
        let code = input.u8()?;
        let algorithm =
            SignatureAlgorithm::from_code(code).map_err(|_| BatchError::UnknownAlgorithm(code))?;
        input.finish()?;
        Self::new(BatchHeaderParts {
            patient,
            collector,
            sequence,
            previous,
            root,
            count,
            first_time,
            last_time,
            algorithm,
        })
    }

    /// SHA-256 of the canonical bytes: the header's name in the chain, and the digest the
    /// patient's card signs (for every algorithm but Ed25519).
    pub fn hash(&self) -> Hash {
        Hash::sha256(&self.canonical_bytes())
    }

    /// This header as the tip of its chain, once accepted.
    pub fn tip(&self) -> ChainTip {
        ChainTip {
            sequence: self.parts.sequence,
            hash: self.hash(),
        }
    }

    /// Whether this batch is the next link after `tip`, the patient's last accepted batch
    /// (`None` when the patient has none yet).
    ///
    /// A batch identical to one already stored is a duplicate delivery, not an attack:
    /// storage recognises it by its header hash before calling this, and acknowledges it
    /// again without storing it twice.
    pub fn check_continues(&self, tip: Option<&ChainTip>) -> Result<(), BatchError> {
        check_link(self.parts.sequence, self.parts.previous, tip)
    }

    /// Checks the card's signature over this header with the patient certificate's key.
    pub fn verify_signature(
        &self,
        key: &VerifyingKey,
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        key.verify(self.parts.algorithm, &self.canonical_bytes(), signature)
    }
}

/// A batch header with the patient card's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedBatchHeader {
    /// The header.
    pub header: BatchHeader,
    /// The signature, in the encoding the header's algorithm names (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        hex::decode(text.as_ref()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(micros).unwrap()
    }

    fn subject(text: &str) -> SubjectId {
        text.parse().unwrap()
    }

    fn first() -> BatchHeader {
        BatchHeader::for_leaves(
            subject("P-000123"),
            subject("ward-3A"),
            None,
            &[Hash::sha256(b"a"), Hash::sha256(b"b")],
            (t(1_000), t(2_000)),
            SignatureAlgorithm::EcdsaP256Sha256,
        )
        .unwrap()
    }

    fn after(previous: &BatchHeader) -> BatchHeader {
        BatchHeader::for_leaves(
            subject("P-000123"),
            subject("ward-3A"),
            Some(&previous.tip()),
            &[Hash::sha256(b"c")],
            (t(3_000), t(3_000)),
            SignatureAlgorithm::EcdsaP256Sha256,
        )
        .unwrap()
    }

    #[test]
    fn canonical_layout_matches_the_documentation() {
        let header = first();
        let bytes = header.canonical_bytes();
        let mut expected = DOMAIN_TAG.to_vec();
        expected.push(1);
        expected.push(8);
        expected.extend_from_slice(b"P-000123");
        expected.push(7);
        expected.extend_from_slice(b"ward-3A");
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&[0; 32]);
        expected.extend_from_slice(header.root().as_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&1_000i64.to_be_bytes());
        expected.extend_from_slice(&2_000i64.to_be_bytes());
        expected.push(SignatureAlgorithm::EcdsaP256Sha256.code());
        assert_eq!(bytes, expected);
        assert_eq!(header.hash(), Hash::sha256(&expected));
        assert_eq!(BatchHeader::from_canonical_bytes(&bytes), Ok(header));
    }

    #[test]
    fn header_fields_are_validated() {
        let mut parts = first().parts().clone();
        parts.sequence = 0;
        assert_eq!(
            BatchHeader::new(parts.clone()),
            Err(BatchError::ZeroSequence)
        );
        parts.sequence = 2;
        assert_eq!(
            BatchHeader::new(parts.clone()),
            Err(BatchError::PreviousMismatch { sequence: 2 })
        );
        parts.sequence = 1;
        parts.previous = Hash::sha256(b"x");
        assert_eq!(
            BatchHeader::new(parts.clone()),
            Err(BatchError::PreviousMismatch { sequence: 1 })
        );
        parts.previous = Hash::ZERO;
        parts.count = 0;
        assert_eq!(BatchHeader::new(parts.clone()), Err(BatchError::Empty));
        parts.count = 1;
        parts.first_time = t(5);
        parts.last_time = t(4);
        assert!(matches!(
            BatchHeader::new(parts),
            Err(BatchError::TimeRangeReversed { .. })
        ));
    }

    #[test]
    fn decoder_rejects_every_deviation() {
        let good = first().canonical_bytes();
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert_eq!(
            BatchHeader::from_canonical_bytes(&bad),
            Err(BatchError::NotABatchHeader)
        );
        let mut bad = good.clone();
        bad[DOMAIN_TAG.len()] = 9;
        assert_eq!(
            BatchHeader::from_canonical_bytes(&bad),
            Err(BatchError::UnknownVersion(9))
        );
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(
            BatchHeader::from_canonical_bytes(&bad),
            Err(BatchError::TrailingBytes {
                position: good.len()
            })
        );
        for cut in DOMAIN_TAG.len()..good.len() {
            assert!(
                matches!(
                    BatchHeader::from_canonical_bytes(&good[..cut]),
                    Err(BatchError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut bad = good.clone();
        *bad.last_mut().unwrap() = 0xee;
        assert_eq!(
            BatchHeader::from_canonical_bytes(&bad),
            Err(BatchError::UnknownAlgorithm(0xee))
        );
        let mut bad = good.clone();
        bad[DOMAIN_TAG.len() + 2] = b' ';
        assert_eq!(
            BatchHeader::from_canonical_bytes(&bad),
            Err(BatchError::InvalidSubjectId { field: "patient" })
        );
    }

    #[test]
    fn chain_detects_gap_fork_and_replay() {
        let one = first();
        let two = after(&one);
        let three = after(&two);
        assert_eq!(one.check_continues(None), Ok(()));
        assert_eq!(two.check_continues(Some(&one.tip())), Ok(()));
        assert_eq!(three.check_continues(Some(&two.tip())), Ok(()));

        assert_eq!(
            two.check_continues(None),
            Err(BatchError::Gap {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            three.check_continues(Some(&one.tip())),
            Err(BatchError::Gap {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            two.check_continues(Some(&two.tip())),
            Err(BatchError::Replay {
                sequence: 2,
                tip: 2
            })
        );
        assert_eq!(
            one.check_continues(Some(&two.tip())),
            Err(BatchError::Replay {
                sequence: 1,
                tip: 2
            })
        );

        // A different batch 2 (other readings) built on batch 1, then batch 3 built on it:
        // batch 3 does not continue the stored chain.
        let other_two = BatchHeader::for_leaves(
            subject("P-000123"),
            subject("ward-3A"),
            Some(&one.tip()),
            &[Hash::sha256(b"forged")],
            (t(3_000), t(3_000)),
            SignatureAlgorithm::EcdsaP256Sha256,
        )
        .unwrap();
        let forked_three = after(&other_two);
        assert_eq!(
            forked_three.check_continues(Some(&two.tip())),
            Err(BatchError::Fork {
                sequence: 3,
                expected: two.hash(),
                got: other_two.hash()
            })
        );
    }

    #[test]
    fn signed_header_json_round_trips_and_validates() {
        let signed = SignedBatchHeader {
            header: first(),
            signature: vec![0x30, 0x45, 0x02],
        };
        let json = serde_json::to_string(&signed).unwrap();
        assert!(json.contains("\"signature\":\"304502\""));
        assert_eq!(
            serde_json::from_str::<SignedBatchHeader>(&json).unwrap(),
            signed
        );
        let broken = json.replace("\"count\":2", "\"count\":0");
        assert!(serde_json::from_str::<SignedBatchHeader>(&broken).is_err());
    }

    proptest! {
        #[test]
        fn canonical_bytes_round_trip(
            sequence in 1u64..,
            previous in any::<[u8; 32]>(),
            root in any::<[u8; 32]>(),
            count in 1u64..,
            times in (0..=Timestamp::MAX.unix_micros(), 0..=Timestamp::MAX.unix_micros()),
            patient in "[A-Za-z0-9-]{1,64}",
        ) {
            let (first_time, last_time) = (times.0.min(times.1), times.0.max(times.1));
            let previous = if sequence == 1 { Hash::ZERO } else { Hash(previous) };
            prop_assume!(sequence == 1 || previous != Hash::ZERO);
            let header = BatchHeader::new(BatchHeaderParts {
                patient: subject(&patient),
                collector: subject("ward-3A"),
                sequence,
                previous,
                root: Hash(root),
                count,
                first_time: t(first_time),
                last_time: t(last_time),
                algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            }).unwrap();
            let bytes = header.canonical_bytes();
            prop_assert_eq!(BatchHeader::from_canonical_bytes(&bytes), Ok(header));
        }

        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = DOMAIN_TAG.to_vec();
            bytes.push(VERSION);
            bytes.extend_from_slice(&tail);
            if let Ok(header) = BatchHeader::from_canonical_bytes(&bytes) {
                prop_assert_eq!(header.canonical_bytes(), bytes);
            }
        }
    }
}
