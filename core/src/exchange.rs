//! What collectors and storage send each other, as JSON over mutual TLS.
//!
//! | route | direction | body |
//! |---|---|---|
//! | `POST /v1/batches` | collector → storage | [`BatchSubmission`] |
//! | (its answer, 200 or 201) | storage → collector | [`BatchReceipt`] |
//! | `GET /v1/wards/{ward}/assignments` | storage → collector | [`WardAssignments`] |
//! | `POST /v1/batches/gaps` | collector → storage | [`GapSubmission`] |
//! | (its answer, 200 or 201) | storage → collector | [`GapReceipt`] |
//!
//! Byte strings (canonical readings, signatures, certificates) are standard base64 with
//! padding. A submission carries everything storage needs to check it without asking
//! anyone: the signed header, the patient's certificate and every reading's canonical
//! bytes in leaf order. Storage recomputes the leaf hashes and the Merkle root itself;
//! nothing a collector says about them is taken on trust.
//!
//! ```
//! use wardseal_core::exchange::BatchSubmission;
//!
//! let json = r#"{"header": {"patient": "P-000123", "collector": "ward-3A", "sequence": 1,
//!   "previous": "0000000000000000000000000000000000000000000000000000000000000000",
//!   "root": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
//!   "count": 1, "first_time": "2026-11-21T08:00:00Z", "last_time": "2026-11-21T08:00:00Z",
//!   "algorithm": "ecdsa-p256-sha256"},
//!   "signature": "MEUCIQ==", "patient_certificate": "MIIB", "readings": ["AQ=="]}"#;
//! let submission: BatchSubmission = serde_json::from_str(json)?;
//! assert_eq!(submission.readings.len(), 1);
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;
use crate::epc::Sgtin96;
use crate::gap::GapRecord;
use crate::hash::Hash;
use crate::identity::SubjectId;
use crate::reading::Timestamp;

/// A patient's batch as a collector delivers it to storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmission {
    /// The batch header the patient's card signed.
    pub header: BatchHeader,
    /// The card's signature over the header's canonical bytes, in the encoding the
    /// header's algorithm names.
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
    /// The patient's certificate (DER), whose key made the signature.
    #[serde(with = "base64_bytes")]
    pub patient_certificate: Vec<u8>,
    /// Every reading's canonical bytes, in the order of the Merkle tree's leaves.
    #[serde(with = "base64_list")]
    pub readings: Vec<Vec<u8>>,
}

/// Storage's acknowledgement of a submission. A collector deletes a batch from its spool
/// only after receiving one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchReceipt {
    /// The accepted header's hash (its name in the patient's chain).
    pub header_hash: Hash,
    /// The patient's chain position now stored.
    pub sequence: u64,
    /// Readings stored with this batch.
    pub count: u64,
    /// `false` when this exact batch was already stored (a repeated delivery): it is
    /// acknowledged again and stored once.
    pub newly_stored: bool,
}

/// A declared gap in a patient's chain (see [`crate::gap`]), signed by the patient's
/// current card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapSubmission {
    /// The gap record the card signed.
    pub gap: GapRecord,
    /// The card's signature over the record's canonical bytes.
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
    /// The patient's current certificate (DER), whose key made the signature.
    #[serde(with = "base64_bytes")]
    pub patient_certificate: Vec<u8>,
}

/// Storage's acknowledgement of a gap record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapReceipt {
    /// The withheld header's hash (now the patient's chain tip).
    pub withheld: Hash,
    /// Its sequence.
    pub sequence: u64,
    /// `false` when this gap was already recorded (a repeated declaration).
    pub newly_recorded: bool,
}

/// Which devices measure which patients in a ward, as storage's admissions say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WardAssignments {
    /// The ward (the collector certificate's subject id).
    pub ward: SubjectId,
    /// When storage produced this list.
    pub as_of: Timestamp,
    /// Current device-to-patient assignments of the ward's admitted patients.
    pub assignments: Vec<DeviceAssignment>,
}

/// One device assigned to one admitted patient.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAssignment {
    /// The device's EPC.
    pub device: Sgtin96,
    /// The patient's pseudonymous subject id (as in the patient's certificate).
    pub patient: SubjectId,
    /// Since when the device measures this patient.
    pub since: Timestamp,
    /// When the assignment ended (absent while it lasts). Storage lists assignments that
    /// ended recently too, so a reading measured before the end still finds its patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl DeviceAssignment {
    /// Whether the assignment held at `time` (`since` ≤ `time` < `until`), the rule
    /// storage applies to every reading.
    pub fn holds_at(&self, time: Timestamp) -> bool {
        self.since <= time && self.until.is_none_or(|until| time < until)
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

mod base64_list {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        items: &[Vec<u8>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&STANDARD.encode(item))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = <Vec<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| {
                STANDARD
                    .decode(text.as_bytes())
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;
    use crate::reading::{Reading, json};
    use crate::signature::SignatureAlgorithm;

    fn submission() -> BatchSubmission {
        let device: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789"
            .parse()
            .unwrap();
        let measurement = json::parse_measurement(
            r#"{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1}"#,
        )
        .unwrap();
        let reading = Reading::new(device, measurement);
        let tree = MerkleTree::from_leaf_hashes(vec![reading.leaf_hash()]);
        let time = reading.measurement().time();
        let header = BatchHeader::for_leaves(
            "P-000123".parse().unwrap(),
            "ward-3A".parse().unwrap(),
            None,
            tree.leaves(),
            (time, time),
            SignatureAlgorithm::EcdsaP256Sha256,
        )
        .unwrap();
        BatchSubmission {
            header,
            signature: vec![0x30, 0x44, 0xff],
            patient_certificate: vec![0x30, 0x82, 0x01],
            readings: vec![reading.canonical_bytes()],
        }
    }

    #[test]
    fn submissions_round_trip_through_json() {
        let submission = submission();
        let text = serde_json::to_string(&submission).unwrap();
        assert!(text.contains(r#""signature":"MET/""#), "{text}");
        assert_eq!(
            serde_json::from_str::<BatchSubmission>(&text).unwrap(),
            submission
        );
    }

    #[test]
    fn malformed_submissions_are_refused() {
        let text = serde_json::to_string(&submission()).unwrap();
        let bad_base64 = text.replace(r#""signature":"MET/""#, r#""signature":"MET*""#);
        assert!(serde_json::from_str::<BatchSubmission>(&bad_base64).is_err());
        let unknown_field = text.replacen('{', r#"{"root_claimed_by_collector":"x","#, 1);
        assert!(serde_json::from_str::<BatchSubmission>(&unknown_field).is_err());
        let invalid_header = text.replace(r#""count":1"#, r#""count":0"#);
        assert!(serde_json::from_str::<BatchSubmission>(&invalid_header).is_err());
    }

    #[test]
    fn assignments_round_trip_through_json() {
        let assignments = WardAssignments {
            ward: "ward-3A".parse().unwrap(),
            as_of: "2026-11-21T08:00:00Z".parse().unwrap(),
            assignments: vec![DeviceAssignment {
                device: "urn:epc:id:sgtin:0614141.812345.6789".parse().unwrap(),
                patient: "P-000123".parse().unwrap(),
                since: "2026-11-20T10:00:00Z".parse().unwrap(),
                until: None,
            }],
        };
        let text = serde_json::to_string(&assignments).unwrap();
        assert_eq!(
            serde_json::from_str::<WardAssignments>(&text).unwrap(),
            assignments
        );
    }
}
