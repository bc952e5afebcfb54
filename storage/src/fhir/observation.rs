//! `Observation`: one reading each, rendered by [`render`] (what subscriptions and the
//! ward screen reuse), read by leaf hash and searched by patient, code, category, date,
//! device and `_lastUpdated`, paged on a keyset cursor.
//!
//! Codes: LOINC and IEEE 11073 MDC where they exist, plus wardseal's local code system
//! always (the only code for insulin dose, EEG and EMG); units in UCUM;
//! `effectiveDateTime` from the device; `device` names the EPC; `meta.tag` carries the
//! leaf hash (also the id), so each Observation can be proven against its signed batch
//! (`GET /v1/readings/{leaf}/proof`, or the batch's `Provenance`).
//!
//! Values are written as JSON numbers with exactly the digits of the reading's (canonical)
//! decimal; they never pass through a float, which would round 17-digit values.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Serialize;
use serde_json::value::RawValue;
use wardseal_core::decimal::Decimal;
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::Role;
use wardseal_core::reading::{
    Coding, DataType, LOCAL_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, Reading, UCUM_SYSTEM, Value,
};

use super::Context;
use super::bundle::Bundle;
use super::cursor::{Cursor, Direction};
use super::search::{
    self, ParameterDefinition, ParameterType, Parameters, ResourceDefinition, Token,
};
use crate::access;
use crate::error::Error;
use crate::store::{PageRequest, ReadingKey, ReadingRecord, ReadingSearch};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    interpretation: Option<serde_json::Value>,
}

impl Observation {
    /// Its id (the reading's leaf hash, lowercase hex).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets `meta.lastUpdated`: when storage stored the reading's batch (µs).
    #[must_use]
    pub fn stored_at(mut self, micros: i64) -> Self {
        if let Some(meta) = self.meta.as_object_mut() {
            meta.insert("lastUpdated".into(), super::instant(micros).into());
        }
        self
    }

    /// Sets the interpretation of a reading past an alarm limit (`L`, `H`, `LL`, `HH`).
    #[must_use]
    pub fn interpretation(mut self, code: &str) -> Self {
        let display = match code {
            "L" => "Low",
            "H" => "High",
            "LL" => "Critical low",
            "HH" => "Critical high",
            _ => return self,
        };
        self.interpretation = Some(serde_json::json!([{"coding": [{
            "system": INTERPRETATION_SYSTEM,
            "code": code,
            "display": display,
        }]}]));
        self
    }
}

/// The code system of ObservationInterpretation.
pub const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
/// The code system of observation categories.
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// The observation category of a data type: `vital-signs` for the five FHIR vital signs,
/// `laboratory` for glucose (meter and CGM), `therapy` for insulin doses, `procedure`
/// for waveforms (ECG, EEG, EMG).
pub fn category(data_type: DataType) -> &'static str {
    match data_type {
        DataType::HeartRate
        | DataType::OxygenSaturation
        | DataType::BodyTemperature
        | DataType::BloodPressure
        | DataType::RespiratoryRate => "vital-signs",
        DataType::Glucose | DataType::CgmGlucose => "laboratory",
        DataType::InsulinDose => "therapy",
        _ => "procedure",
    }
}

/// Every (system, code) an Observation of `data_type` carries in `code`.
pub fn codes(data_type: DataType) -> Vec<(&'static str, String)> {
    let coding = data_type.coding();
    let mut codes = Vec::new();
    if let Some(loinc) = coding.loinc {
        codes.push((LOINC_SYSTEM, loinc.to_owned()));
    }
    if let Some(mdc) = coding.mdc {
        codes.push((MDC_SYSTEM, mdc.to_string()));
    }
    codes.push((LOCAL_SYSTEM, data_type.name().to_owned()));
    codes
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

/// One reading of `patient` (leaf hash `leaf_hash_hex`) as an Observation.
pub fn render(patient: &str, reading: &Reading, leaf_hash_hex: &str) -> Observation {
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
            "system": CATEGORY_SYSTEM,
            "code": category(data_type),
        }]}]),
        code: concept(data_type, data_type.coding()),
        subject: serde_json::json!({"reference": format!("Patient/{patient}")}),
        effective_date_time: effective,
        device: serde_json::json!({
            "reference": format!("Device/{}", reading.device().to_hex()),
            "identifier": {"system": super::device::EPC_SYSTEM, "value": reading.device().pure_identity_uri()},
        }),
        value_quantity: None,
        value_sampled_data: None,
        component: Vec::new(),
        interpretation: None,
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

/// What `/fhir/Observation` takes (the parser and the CapabilityStatement read this).
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Observation",
    documentation: "One per stored reading; id = the reading's leaf hash (64 hex digits). Read by \
                    the staff responsible for the patient, an authority the patient consented to \
                    on chain, or the patient's own card. Searches page on an opaque keyset cursor \
                    (next and previous links); `total` is given with _summary=count only.",
    parameters: &[
        search::PATIENT,
        ParameterDefinition {
            name: "subject",
            kind: ParameterType::Reference,
            definition: Some("http://hl7.org/fhir/SearchParameter/Observation-subject"),
            documentation: "the patient, as Patient/id",
        },
        ParameterDefinition {
            name: "code",
            kind: ParameterType::Token,
            definition: Some("http://hl7.org/fhir/SearchParameter/clinical-code"),
            documentation: "system|code, |code or code: LOINC (http://loinc.org), MDC \
                            (urn:iso:std:iso:11073:10101) or wardseal's local system; commas OR",
        },
        ParameterDefinition {
            name: "category",
            kind: ParameterType::Token,
            definition: Some("http://hl7.org/fhir/SearchParameter/Observation-category"),
            documentation: "vital-signs, laboratory, therapy or procedure \
                            (http://terminology.hl7.org/CodeSystem/observation-category)",
        },
        ParameterDefinition {
            name: "date",
            kind: ParameterType::Date,
            definition: Some("http://hl7.org/fhir/SearchParameter/clinical-date"),
            documentation: "effectiveDateTime; prefixes eq (default), ge, gt, le, lt; any FHIR \
                            date precision, compared as the period it names; repeat to AND",
        },
        ParameterDefinition {
            name: "device",
            kind: ParameterType::Reference,
            definition: Some("http://hl7.org/fhir/SearchParameter/Observation-device"),
            documentation: "the device, as Device/<EPC, 24 hex digits>",
        },
        ParameterDefinition {
            name: "_lastUpdated",
            kind: ParameterType::Date,
            definition: Some("http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"),
            documentation: "when storage stored the reading's batch; prefixes as for date",
        },
        ParameterDefinition {
            name: "_sort",
            kind: ParameterType::String,
            definition: None,
            documentation: "date (default, oldest first) or -date (newest first)",
        },
        search::COUNT,
        search::SUMMARY,
        search::CURSOR,
    ],
    operations: &[],
};

/// The one reading as an Observation, with when it was stored and its interpretation;
/// `None` if its stored bytes are not a reading (never written so).
pub fn from_record(record: &ReadingRecord) -> Option<Observation> {
    let reading = Reading::from_canonical_bytes(&record.canonical).ok()?;
    let observation = render(&record.patient, &reading, &hex::encode(&record.leaf_hash))
        .stored_at(record.stored_at);
    Some(match &record.interpretation {
        Some(code) => observation.interpretation(code),
        None => observation,
    })
}

/// The data types a `code` or `category` parameter allows (values ORed by commas,
/// repeated parameters ANDed); `None` when the parameter is absent.
fn data_types(
    parameters: &Parameters,
    name: &str,
    codes_of: impl Fn(DataType) -> Vec<(&'static str, String)>,
) -> Option<Vec<u16>> {
    let mut allowed: Option<Vec<u16>> = None;
    for value in parameters.all(name) {
        let matching: Vec<u16> = DataType::ALL
            .iter()
            .filter(|data_type| {
                value.split(',').map(Token::parse).any(|token| {
                    codes_of(**data_type)
                        .iter()
                        .any(|(system, code)| token.matches(system, code))
                })
            })
            .map(|data_type| data_type.code())
            .collect();
        allowed = Some(match allowed {
            None => matching,
            Some(before) => before
                .into_iter()
                .filter(|code| matching.contains(code))
                .collect(),
        });
    }
    allowed
}

/// The patient a search is about: the `patient`/`subject` parameter, or for a patient's
/// own card, that patient.
pub(super) fn searched_patient(
    context: &Context<'_>,
    parameters: &Parameters,
) -> Result<String, Error> {
    match parameters.patient()? {
        Some(patient) => Ok(patient),
        None if context.peer.role() == Role::Patient => context.subject(),
        None => Err(search::bad(
            "patient",
            "required: name the patient (patient=Patient/<id>)",
        )),
    }
}

/// The reading search a request asks for.
fn reading_search(parameters: &Parameters, patient: String) -> Result<ReadingSearch, Error> {
    let intersect = |a: Option<Vec<u16>>, b: Option<Vec<u16>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.into_iter().filter(|code| b.contains(code)).collect()),
        (a, b) => a.or(b),
    };
    let device = match parameters.one("device")? {
        None => None,
        Some(value) => {
            let id = search::reference_id(value, "Device")
                .ok_or_else(|| search::bad("device", "a Device reference: Device/<EPC hex>"))?;
            let epc = Sgtin96::from_hex(id).map_err(|error| {
                search::bad(
                    "device",
                    &format!("the id is not an SGTIN-96 EPC in hex: {error}"),
                )
            })?;
            Some(epc.pure_identity_uri())
        }
    };
    let measured = search::date_interval(parameters, "date")?;
    let stored = search::date_interval(parameters, "_lastUpdated")?;
    Ok(ReadingSearch {
        patient,
        data_types: intersect(
            data_types(parameters, "code", codes),
            data_types(parameters, "category", |data_type| {
                vec![(CATEGORY_SYSTEM, category(data_type).to_owned())]
            }),
        ),
        device,
        measured_from: measured.from,
        measured_to: measured.to,
        stored_from: stored.from,
        stored_to: stored.to,
    })
}

/// `_sort`: whether the newest come first.
fn newest_first(parameters: &Parameters) -> Result<bool, Error> {
    match parameters.one("_sort")? {
        None | Some("date") => Ok(false),
        Some("-date") => Ok(true),
        Some(other) => Err(search::bad(
            "_sort",
            &format!("{other:?} is not supported: date or -date"),
        )),
    }
}

/// `GET /fhir/Observation?…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let patient = searched_patient(context, &parameters)?;
    let search = reading_search(&parameters, patient)?;
    let newest_first = newest_first(&parameters)?;
    let summary = parameters.summary_count()?;
    let count = parameters.count()?;
    let canonical = parameters.canonical();
    let cursor = parameters
        .one("_cursor")?
        .map(|token| Cursor::decode(token, DEFINITION.kind, &canonical))
        .transpose()?;
    let what = format!("FHIR Observation?{}", parameters.query_with(&[]));
    access::authorize(context.storage, context.peer, &search.patient, &what).await?;
    let store = &context.storage.store;
    let self_link = context.url(&format!("Observation?{}", parameters.query_with(&[])));
    if summary {
        let total = store.reading_count(&search).await?;
        return Ok(context.ok(&Bundle::<Observation>::searchset(Vec::new())
            .total(total)
            .link("self", self_link)));
    }
    let backwards = cursor
        .as_ref()
        .is_some_and(|cursor| cursor.direction == Direction::Before);
    let page = PageRequest {
        // Presentation order, flipped for a previous page (read back from its cursor).
        ascending: newest_first == backwards,
        beyond: cursor.as_ref().map(|cursor| ReadingKey {
            measured_at: cursor.time,
            batch_hash: cursor.batch.to_vec(),
            position: cursor.position,
        }),
        limit: count.saturating_add(1),
    };
    let mut rows = store.reading_page(&search, &page).await?;
    let more = rows.len() > count;
    rows.truncate(count);
    if backwards {
        rows.reverse();
    }
    let (has_next, has_previous) = if backwards {
        (!rows.is_empty(), more)
    } else {
        (more, cursor.is_some() && !rows.is_empty())
    };
    let link_to = |direction: Direction, record: &ReadingRecord| {
        let mut batch = [0_u8; 32];
        if record.key.batch_hash.len() == 32 {
            batch.copy_from_slice(&record.key.batch_hash);
        }
        let token = Cursor {
            direction,
            time: record.key.measured_at,
            batch,
            position: record.key.position,
        }
        .encode(DEFINITION.kind, &canonical);
        context.url(&format!(
            "Observation?{}",
            parameters.query_with(&[("_cursor", &token)])
        ))
    };
    let next = rows
        .last()
        .filter(|_| has_next)
        .map(|last| link_to(Direction::After, last));
    let previous = rows
        .first()
        .filter(|_| has_previous)
        .map(|first| link_to(Direction::Before, first));
    let entries = rows
        .iter()
        .filter_map(from_record)
        .map(|observation| {
            (
                context.url(&format!("Observation/{}", observation.id())),
                observation,
            )
        })
        .collect();
    let mut bundle = Bundle::searchset(entries);
    if !has_next && !has_previous {
        // The whole result is on this page: its size is the total, at no cost.
        bundle = bundle.total(u64::try_from(rows.len()).unwrap_or(u64::MAX));
    }
    let mut bundle = bundle
        .link(
            "self",
            match parameters.one("_cursor")? {
                Some(token) => context.url(&format!(
                    "Observation?{}",
                    parameters.query_with(&[("_cursor", token)])
                )),
                None => self_link.clone(),
            },
        )
        .link("first", self_link);
    if let Some(previous) = previous {
        bundle = bundle.link("previous", previous);
    }
    if let Some(next) = next {
        bundle = bundle.link("next", next);
    }
    Ok(context.ok(&bundle))
}

/// `GET /v1/patients/{patient}/observations?type=&since=&until=`, the route from before
/// `/fhir`: the same search as `Observation?patient=…&code=<local system>|<type>&date=ge…
/// &date=le…&_count=1000` (its next link continues under `/fhir`).
pub async fn alias(
    storage: &crate::api::Storage,
    peer: &wardseal_net::peer::PeerIdentity,
    base: String,
    patient: &str,
    data_type: Option<DataType>,
    since: i64,
    until: i64,
) -> Result<Response<Full<Bytes>>, Error> {
    let exact = |name: &str, micros: i64| {
        let text = wardseal_core::reading::Timestamp::from_unix_micros(micros)
            .ok()
            .and_then(|time| time.to_datetime().ok())
            .and_then(|time| {
                time.format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                ))
                .ok()
            })
            .ok_or_else(|| Error::BadRequest(format!("`{name}` is out of range")))?;
        Ok::<_, Error>(text)
    };
    let mut query = vec![
        ("patient".to_owned(), patient.to_owned()),
        ("_count".to_owned(), search::MAX_COUNT.to_string()),
    ];
    if let Some(data_type) = data_type {
        query.push((
            "code".to_owned(),
            format!("{LOCAL_SYSTEM}|{}", data_type.name()),
        ));
    }
    if since > 0 {
        query.push(("date".to_owned(), format!("ge{}", exact("since", since)?)));
    }
    if until < i64::MAX {
        query.push(("date".to_owned(), format!("le{}", exact("until", until)?)));
    }
    let context = Context {
        storage,
        peer,
        query,
        lenient: false,
        pretty: false,
        base,
    };
    search(&context).await
}

/// `GET /fhir/Observation/{leaf hash}`.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let leaf = hex::decode(id)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| Error::NotFound(format!("Observation/{id} (ids are 64 hex digits)")))?;
    let record = context
        .storage
        .store
        .reading_record(&leaf)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Observation/{id}")))?;
    access::authorize(
        context.storage,
        context.peer,
        &record.patient,
        &format!("FHIR Observation/{id}"),
    )
    .await?;
    let observation =
        from_record(&record).ok_or_else(|| Error::corrupt_row(format!("reading {id}")))?;
    Ok(context.ok(&observation))
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
        let json = serde_json::to_string(&render("p-1", &reading, "ab")).unwrap();
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
