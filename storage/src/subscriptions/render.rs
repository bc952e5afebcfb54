//! The focus resources notifications carry, rendered by the crate's FHIR module so a
//! subscriber sees exactly what a read of the same resource returns. This is the one
//! place the subscriptions call into it.

use serde_json::{Value, json};
use wardseal_core::alert::{Alert, AlertKind, AlertState, Priority};
use wardseal_core::reading::{DataType, LOCAL_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, Reading};

/// The FHIR extension carrying a Flag's priority.
const FLAG_PRIORITY: &str = "http://hl7.org/fhir/StructureDefinition/flag-priority";

/// A stored reading of `patient` (canonical bytes, leaf hash) as an Observation (JSON
/// text); `None` when the bytes do not decode (never written by ingest).
pub fn observation(patient: &str, canonical: &[u8], leaf_hex: &str) -> Option<String> {
    let reading = Reading::from_canonical_bytes(canonical).ok()?;
    serde_json::to_string(&crate::fhir::observation(patient, &reading, leaf_hex)).ok()
}

/// The codings a reading of data type `code` carries (system, code), for `code` filters.
pub fn codings(code: u16) -> Vec<(&'static str, String)> {
    let Some(data_type) = DataType::from_code(code) else {
        return Vec::new();
    };
    let coding = data_type.coding();
    let mut list = Vec::new();
    if let Some(loinc) = coding.loinc {
        list.push((LOINC_SYSTEM, loinc.to_owned()));
    }
    if let Some(mdc) = coding.mdc {
        list.push((MDC_SYSTEM, mdc.to_string()));
    }
    list.push((LOCAL_SYSTEM, data_type.name().to_owned()));
    list
}

/// An alert as a FHIR `Flag` (JSON text): id the alert id, `active` until resolved,
/// priority in the `flag-priority` extension (PL/PM/PH).
pub fn flag(alert: &Alert) -> String {
    let priority = match alert.priority {
        Priority::Low => ("PL", "Low priority"),
        Priority::Medium => ("PM", "Medium priority"),
        Priority::High => ("PH", "High priority"),
    };
    let status = if alert.state == AlertState::Resolved {
        "inactive"
    } else {
        "active"
    };
    let category = match alert.kind {
        AlertKind::Clinical => ("clinical", "Clinical"),
        AlertKind::Technical => ("admin", "Administrative"),
    };
    let mut flag = json!({
        "resourceType": "Flag",
        "id": alert.id.to_string(),
        "extension": [{"url": FLAG_PRIORITY, "valueCodeableConcept": {"coding": [{
            "system": "http://hl7.org/fhir/flag-priority-code",
            "code": priority.0,
            "display": priority.1
        }]}}],
        "status": status,
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": category.0,
            "display": category.1
        }]}],
        "code": {"text": alert.message},
        "period": {"start": super::resource::instant(alert.raised_at_us)},
    });
    if let Some(patient) = &alert.patient {
        flag["subject"] = json!({"reference": format!("Patient/{patient}")});
    } else {
        flag["subject"] = json!({"display": format!("ward {}", alert.ward)});
    }
    if let Some(leaf) = &alert.reading {
        flag["extension"]
            .as_array_mut()
            .map(|extensions| {
                extensions.push(json!({
                    "url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                    "valueReference": {"reference": format!("Observation/{leaf}")}
                }))
            })
            .unwrap_or_default();
    }
    flag.to_string()
}

/// The resource as JSON, for tests and callers that hold text.
pub fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}
