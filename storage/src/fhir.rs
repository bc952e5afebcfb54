//! HL7 FHIR R4: readings as `Observation` resources in a `searchset` `Bundle`.
//!
//! Codes: LOINC and IEEE 11073 MDC where they exist, plus wardseal's local code system
//! always (the only code for insulin dose, EEG and EMG); units in UCUM;
//! `effectiveDateTime` from the device; `device` names the EPC; `meta.tag` carries the
//! leaf hash, so each Observation can be proven against its signed batch
//! (`GET /v1/readings/{leaf}/proof`).
//!
//! Values are written as JSON numbers with exactly the digits of the reading's (canonical)
//! decimal; they never pass through a float, which would round 17-digit values.

use serde::Serialize;
use serde_json::value::RawValue;
use wardseal_core::decimal::Decimal;
use wardseal_core::reading::{
    Coding, DataType, LOCAL_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, Reading, UCUM_SYSTEM, Value,
};

/// The tag system of the leaf hash in `meta.tag`.
pub const LEAF_HASH_SYSTEM: &str = "urn:wardseal:leaf-hash";

/// A FHIR decimal written with its exact digits.
#[derive(Debug, Clone)]
pub struct Exact(Box<RawValue>);

impl Exact {
    fn of(value: Decimal) -> Self {
        // A Decimal prints as `-?digits(.digits)?`, always a valid JSON number.
        Self(RawValue::from_string(value.to_string()).unwrap_or_else(|_| zero()))
    }
}

fn zero() -> Box<RawValue> {
    RawValue::from_string("0".to_owned()).unwrap_or_default()
}

impl Serialize for Exact {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// `Coding`.
#[derive(Debug, Clone, Serialize)]
pub struct CodingJson {
    system: &'static str,
    code: String,
    display: &'static str,
}

/// `CodeableConcept`.
#[derive(Debug, Clone, Serialize)]
pub struct CodeableConcept {
    coding: Vec<CodingJson>,
    text: &'static str,
}

/// `Quantity` in UCUM.
#[derive(Debug, Clone, Serialize)]
pub struct Quantity {
    value: Exact,
    unit: String,
    system: &'static str,
    code: String,
}

/// `Observation.component`.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    code: CodeableConcept,
    #[serde(rename = "valueQuantity")]
    value_quantity: Quantity,
}

/// `SampledData`.
#[derive(Debug, Clone, Serialize)]
pub struct SampledData {
    origin: Quantity,
    period: Exact,
    factor: Exact,
    dimensions: u32,
    data: String,
}

/// One `Observation`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    resource_type: &'static str,
    id: String,
    meta: serde_json::Value,
    status: &'static str,
    category: serde_json::Value,
    code: CodeableConcept,
    subject: serde_json::Value,
    effective_date_time: String,
    device: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_sampled_data: Option<SampledData>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    component: Vec<Component>,
}

/// A `searchset` `Bundle`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    total: usize,
    entry: Vec<Entry>,
}

/// A `Bundle.entry`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    full_url: String,
    resource: Observation,
    search: serde_json::Value,
}

fn concept(data_type: DataType, coding: Coding) -> CodeableConcept {
    let mut list = Vec::new();
    if let Some(loinc) = coding.loinc {
        list.push(CodingJson {
            system: LOINC_SYSTEM,
            code: loinc.to_owned(),
            display: coding.display,
        });
    }
    if let Some(mdc) = coding.mdc {
        list.push(CodingJson {
            system: MDC_SYSTEM,
            code: mdc.to_string(),
            display: coding.display,
        });
    }
    list.push(CodingJson {
        system: LOCAL_SYSTEM,
        code: data_type.name().to_owned(),
        display: coding.display,
    });
    CodeableConcept {
        coding: list,
        text: coding.display,
    }
}

fn quantity(value: Decimal, unit: &str) -> Quantity {
    Quantity {
        value: Exact::of(value),
        unit: unit.to_owned(),
        system: UCUM_SYSTEM,
        code: unit.to_owned(),
    }
}

/// One reading as an Observation.
pub fn observation(patient: &str, reading: &Reading, leaf_hash_hex: &str) -> Observation {
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
    let mut observation = Observation {
        resource_type: "Observation",
        id: leaf_hash_hex.to_owned(),
        meta: serde_json::json!({"tag": [{"system": LEAF_HASH_SYSTEM, "code": leaf_hash_hex}]}),
        status: "final",
        category: serde_json::json!([{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }]}]),
        code: concept(data_type, data_type.coding()),
        subject: serde_json::json!({"reference": format!("Patient/{patient}")}),
        effective_date_time: effective,
        device: serde_json::json!({"identifier": {
            "system": "urn:epc",
            "value": reading.device().pure_identity_uri()
        }}),
        value_quantity: None,
        value_sampled_data: None,
        component: Vec::new(),
    };
    match measurement.value() {
        Value::Quantity(value) => observation.value_quantity = Some(quantity(*value, unit)),
        Value::BloodPressure {
            systolic,
            diastolic,
        } => {
            observation.component = vec![
                Component {
                    code: concept(data_type, DataType::SYSTOLIC),
                    value_quantity: quantity(*systolic, unit),
                },
                Component {
                    code: concept(data_type, DataType::DIASTOLIC),
                    value_quantity: quantity(*diastolic, unit),
                },
            ];
        }
        Value::Waveform(sampled) => {
            let data = sampled
                .data()
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            observation.value_sampled_data = Some(SampledData {
                origin: quantity(sampled.origin(), unit),
                period: Exact::of(sampled.period_ms()),
                factor: Exact::of(sampled.factor()),
                dimensions: 1,
                data,
            });
        }
    }
    observation
}

/// A searchset Bundle of Observations.
pub fn bundle(observations: Vec<Observation>) -> Bundle {
    Bundle {
        resource_type: "Bundle",
        kind: "searchset",
        total: observations.len(),
        entry: observations
            .into_iter()
            .map(|resource| Entry {
                full_url: format!("urn:wardseal:observation:{}", resource.id),
                resource,
                search: serde_json::json!({"mode": "match"}),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardseal_core::reading::{Measurement, Timestamp, Unit};

    #[test]
    fn decimals_keep_their_digits() {
        let measurement = Measurement::new(
            DataType::BodyTemperature,
            Unit::of(DataType::BodyTemperature),
            // 18 significant digits: an f64 would print 12345678901234568.
            Value::Quantity(Decimal::parse("12345678901234567.8").unwrap()),
            Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap(),
            1,
        )
        .unwrap();
        let epc = "urn:epc:id:sgtin:0614141.812345.6789".parse().unwrap();
        let reading = Reading::new(epc, measurement);
        let json =
            serde_json::to_string(&bundle(vec![observation("p-1", &reading, "ab")])).unwrap();
        assert!(
            json.contains(r#""valueQuantity":{"value":12345678901234567.8,"unit":"Cel""#),
            "{json}"
        );
        assert!(json.contains(r#""code":"8310-5""#));
        assert!(
            json.contains(r#""effectiveDateTime":"2027-01-15T08:00:00Z""#),
            "{json}"
        );
    }
}
