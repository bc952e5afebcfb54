//! Storage's front door: the body of `POST /v1/batches`, through the pure steps storage
//! runs before it asks the database or the chain: the `BatchSubmission` JSON, the header,
//! the patient certificate's key and the card's signature, each reading's canonical
//! decoding and the Merkle root. None may panic; what parses must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardseal_core::batch::BatchHeader;
use wardseal_core::exchange::BatchSubmission;
use wardseal_core::merkle;
use wardseal_core::reading::Reading;
use wardseal_core::signature::VerifyingKey;

fuzz_target!(|data: &[u8]| {
    let Ok(submission) = serde_json::from_slice::<BatchSubmission>(data) else {
        return;
    };
    // The JSON form round-trips: storage stores what it parsed, not the raw body.
    let text = serde_json::to_vec(&submission).expect("a parsed submission serialises");
    let again: BatchSubmission = serde_json::from_slice(&text).expect("and parses back");
    assert_eq!(again, submission);

    // The header's signed bytes decode to the same header (its hash names the batch).
    let header = &submission.header;
    let bytes = header.canonical_bytes();
    assert_eq!(
        BatchHeader::from_canonical_bytes(&bytes).ok().as_ref(),
        Some(header)
    );
    let _ = header.hash();
    let _ = header.check_continues(None);

    // The patient certificate's key and the signature: arbitrary DER and signature bytes.
    if let Ok(key) = VerifyingKey::from_certificate_der(&submission.patient_certificate) {
        let _ = header.verify_signature(&key, &submission.signature);
    }

    // Readings: what decodes is canonical; the root is computed over every leaf.
    let mut leaves = Vec::with_capacity(submission.readings.len());
    for bytes in &submission.readings {
        if let Ok(reading) = Reading::from_canonical_bytes(bytes) {
            assert_eq!(&reading.canonical_bytes(), bytes);
        }
        leaves.push(merkle::leaf_hash(bytes));
    }
    let _ = merkle::root(&leaves) == header.root();
});
