//! HL7 FHIR R4: readings as `Observation` resources in a `searchset` `Bundle`.
//!
//! Codes: LOINC and IEEE 11073 MDC where they exist, wardseal's local code system
//! otherwise (insulin dose, EEG, EMG); units in UCUM; `effectiveDateTime` from the device;
//! `device` names the EPC; `meta.tag` carries the leaf hash, so each Observation can be
//! proven against its signed batch (`GET /v1/readings/{leaf}/proof`).

use serde_json::{Value as Json, json};
use wardseal_core::reading::{
    Coding, DataType, LOCAL_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, Reading, UCUM_SYSTEM, Value,
};

/// The tag system of the leaf hash in `meta.tag`.
pub const LEAF_HASH_SYSTEM: &str = "urn:wardseal:leaf-hash";

fn codings(data_type: DataType, coding: Coding) -> Json {
    let mut list = Vec::new();
    if let Some(loinc) = coding.loinc {
        list.push(json!({"system": LOINC_SYSTEM, "code": loinc, "display": coding.display}));
    }
    if let Some(mdc) = coding.mdc {
        list.push(
            json!({"system": MDC_SYSTEM, "code": mdc.to_string(), "display": coding.display}),
        );
    }
    list.push(json!({"system": LOCAL_SYSTEM, "code": data_type.name(), "display": coding.display}));
    json!({ "coding": list, "text": coding.display })
}

fn quantity(value: &impl ToString, unit: &str) -> Json {
    let text = value.to_string();
    let number: Json = serde_json::from_str(&text).unwrap_or(Json::String(text));
    json!({"value": number, "unit": unit, "system": UCUM_SYSTEM, "code": unit})
}

/// One reading as an Observation.
pub fn observation(patient: &str, reading: &Reading, leaf_hash_hex: &str) -> Json {
    let measurement = reading.measurement();
    let data_type = measurement.data_type();
    let unit = measurement.unit().as_str();
    let effective = measurement
        .time()
        .to_datetime()
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let mut resource = json!({
        "resourceType": "Observation",
        "id": leaf_hash_hex,
        "meta": {"tag": [{"system": LEAF_HASH_SYSTEM, "code": leaf_hash_hex}]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": codings(data_type, data_type.coding()),
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": effective,
        "device": {"identifier": {"system": "urn:epc", "value": reading.device().pure_identity_uri()}},
    });
    match measurement.value() {
        Value::Quantity(value) => {
            resource["valueQuantity"] = quantity(value, unit);
        }
        Value::BloodPressure {
            systolic,
            diastolic,
        } => {
            resource["component"] = json!([
                {"code": codings(data_type, DataType::SYSTOLIC), "valueQuantity": quantity(systolic, unit)},
                {"code": codings(data_type, DataType::DIASTOLIC), "valueQuantity": quantity(diastolic, unit)},
            ]);
        }
        Value::Waveform(sampled) => {
            let data = sampled
                .data()
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            resource["valueSampledData"] = json!({
                "origin": quantity(&sampled.origin(), unit),
                "period": serde_json::from_str::<Json>(&sampled.period_ms().to_string()).unwrap_or(Json::Null),
                "factor": serde_json::from_str::<Json>(&sampled.factor().to_string()).unwrap_or(Json::Null),
                "dimensions": 1,
                "data": data,
            });
        }
    }
    resource
}

/// A searchset Bundle of Observations.
pub fn bundle(observations: Vec<Json>) -> Json {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": observations.len(),
        "entry": observations.into_iter().map(|resource| json!({
            "fullUrl": format!("urn:uuid:{}", resource["id"].as_str().unwrap_or_default()),
            "resource": resource,
            "search": {"mode": "match"},
        })).collect::<Vec<_>>(),
    })
}
