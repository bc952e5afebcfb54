//! The focus resources notifications carry, rendered by the crate's FHIR module
//! ([`crate::fhir::observation::render`], [`crate::fhir::flag::render`]) so a subscriber
//! sees exactly what a read of the same resource returns. This is the one place the
//! subscriptions call into it.

use wardseal_core::alert::Alert;
use wardseal_core::reading::{DataType, Reading};

/// A stored reading of `patient` (canonical bytes, leaf hash) as an Observation (JSON
/// text); `None` when the bytes do not decode (never written by ingest).
pub fn observation(patient: &str, canonical: &[u8], leaf_hex: &str) -> Option<String> {
    let reading = Reading::from_canonical_bytes(canonical).ok()?;
    serde_json::to_string(&crate::fhir::observation::render(
        patient, &reading, leaf_hex,
    ))
    .ok()
}

/// The codings a reading of data type `code` carries (system, code), for `code` filters.
pub fn codings(code: u16) -> Vec<(&'static str, String)> {
    DataType::from_code(code)
        .map(crate::fhir::observation::codes)
        .unwrap_or_default()
}

/// An alert as a FHIR `Flag` (JSON text).
pub fn flag(alert: &Alert) -> String {
    crate::fhir::flag::render(alert).to_string()
}
