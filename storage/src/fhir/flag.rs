//! `Flag`: alerts, clinical (an alarm limit crossed) and technical (a device silent, a
//! card out of its reader, a batch quarantined). Id = the alert id (64 hex digits), the
//! same id the collector and `/v1/alerts` use.
//!
//! Why Flag and not DetectedIssue: a Flag is "a prospective warning of potential issues
//! when providing care to the patient" shown to whoever opens the patient's record, with
//! a `status` and a `period` — the life of an alert on a ward screen. DetectedIssue is a
//! finding about a proposed or ongoing action (a drug interaction, a duplicate order) and
//! needs an `implicated` act; an alarm about a patient's state or a device's silence has
//! none. The alarm priority (IEC 60601-1-8 low, medium, high) goes in the standard
//! `flag-priority` extension (PL, PM, PH).
//!
//! Status: `active` while the alert is raised, escalated or acknowledged (the condition
//! stands), `inactive` once resolved; the life-cycle state itself, who acknowledged and
//! when, are in the extensions below. `POST /fhir/Flag/{id}/$acknowledge` acknowledges
//! exactly as `/v1/alerts/{id}/acknowledge` does (responsible staff, logged).

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::alert::{Alert, AlertId, AlertKind, AlertState, Priority};
use wardseal_core::epc::Sgtin96;

use super::Context;
use super::search::{self, ParameterDefinition, ParameterType, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;

/// The standard extension for a Flag's priority.
pub const PRIORITY_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/flag-priority";
/// The code system of flag priorities (PN, PL, PM, PH).
pub const PRIORITY_SYSTEM: &str = "http://hl7.org/fhir/flag-priority-code";
/// The code system of flag categories.
pub const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/flag-category";
/// wardseal's alert codes (`limit_crossed`, `device_silent`, …).
pub const ALERT_CODE_SYSTEM: &str = "urn:wardseal:alert-code";
/// The extension holding the alert's life-cycle state (`valueCode`: raised, escalated,
/// acknowledged, resolved).
pub const STATE_EXTENSION: &str = "urn:wardseal:fhir:extension:alert-state";
/// Who acknowledged the alert (`valueString`: their subject id).
pub const ACKNOWLEDGED_BY_EXTENSION: &str = "urn:wardseal:fhir:extension:alert-acknowledged-by";
/// When the alert was acknowledged (`valueInstant`).
pub const ACKNOWLEDGED_AT_EXTENSION: &str = "urn:wardseal:fhir:extension:alert-acknowledged-at";
/// When the alert escalated (`valueInstant`).
pub const ESCALATED_AT_EXTENSION: &str = "urn:wardseal:fhir:extension:alert-escalated-at";

/// The canonical URL of the `$acknowledge` operation.
pub const ACKNOWLEDGE_OPERATION: &str = "urn:wardseal:fhir:OperationDefinition:Flag-acknowledge";

/// What `/fhir/Flag` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Flag",
    documentation: "Alerts (clinical and technical): id = the alert id; status active while \
                    raised, escalated or acknowledged, inactive once resolved; priority in the \
                    flag-priority extension (PL, PM, PH). Without patient, a search covers the \
                    patients the caller may read. $acknowledge (POST, no body) acknowledges.",
    parameters: &[
        search::PATIENT,
        ParameterDefinition {
            name: "subject",
            kind: ParameterType::Reference,
            definition: Some("http://hl7.org/fhir/SearchParameter/Flag-subject"),
            documentation: "the patient, as Patient/id",
        },
        ParameterDefinition {
            name: "status",
            kind: ParameterType::Token,
            definition: None,
            documentation: "active or inactive; commas OR",
        },
    ],
    operations: &[("acknowledge", ACKNOWLEDGE_OPERATION)],
};

/// The flag-priority code of an alarm priority.
pub fn priority_code(priority: Priority) -> (&'static str, &'static str) {
    match priority {
        Priority::Low => ("PL", "Low priority"),
        Priority::Medium => ("PM", "Medium priority"),
        Priority::High => ("PH", "High priority"),
    }
}

fn is_active(state: AlertState) -> bool {
    !matches!(state, AlertState::Resolved)
}

/// An alert as a Flag.
pub fn render(alert: &Alert) -> serde_json::Value {
    let (priority, priority_display) = priority_code(alert.priority);
    let mut extension = vec![
        serde_json::json!({
            "url": PRIORITY_EXTENSION,
            "valueCodeableConcept": {"coding": [{
                "system": PRIORITY_SYSTEM, "code": priority, "display": priority_display,
            }]},
        }),
        serde_json::json!({"url": STATE_EXTENSION, "valueCode": alert.state.name()}),
    ];
    if let Some(by) = &alert.acknowledged_by {
        extension.push(serde_json::json!({"url": ACKNOWLEDGED_BY_EXTENSION, "valueString": by}));
    }
    if let Some(at) = alert.acknowledged_at_us {
        extension.push(
            serde_json::json!({"url": ACKNOWLEDGED_AT_EXTENSION, "valueInstant": super::instant(at)}),
        );
    }
    if let Some(at) = alert.escalated_at_us {
        extension.push(
            serde_json::json!({"url": ESCALATED_AT_EXTENSION, "valueInstant": super::instant(at)}),
        );
    }
    let last_updated = [
        Some(alert.raised_at_us),
        alert.acknowledged_at_us,
        alert.escalated_at_us,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(alert.raised_at_us);
    let (category, category_display) = match alert.kind {
        AlertKind::Clinical => ("clinical", "Clinical"),
        AlertKind::Technical => ("safety", "Safety"),
    };
    let subject = match &alert.patient {
        Some(patient) => super::reference("Patient", patient.as_str()),
        None => serde_json::json!({"display": format!("ward {}", alert.ward)}),
    };
    let mut flag = serde_json::json!({
        "resourceType": "Flag",
        "id": alert.id.to_string(),
        "meta": {"lastUpdated": super::instant(last_updated)},
        "extension": extension,
        "status": if is_active(alert.state) { "active" } else { "inactive" },
        "category": [{"coding": [{
            "system": CATEGORY_SYSTEM, "code": category, "display": category_display,
        }]}],
        "code": {
            "coding": [{"system": ALERT_CODE_SYSTEM, "code": alert.code.name()}],
            "text": alert.message,
        },
        "subject": subject,
        "period": {"start": super::instant(alert.raised_at_us)},
    });
    if let Some(epc) = alert
        .device
        .as_deref()
        .and_then(|device| Sgtin96::from_pure_identity_uri(device).ok())
    {
        flag["author"] = super::reference("Device", &epc.to_hex());
    }
    flag
}

/// `GET /fhir/Flag?…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let mut wanted: Option<Vec<bool>> = None;
    for value in parameters.all("status") {
        let mut listed = Vec::new();
        for status in value.split(',') {
            listed.push(match status {
                "active" => true,
                "inactive" => false,
                other => {
                    return Err(search::bad(
                        "status",
                        &format!("{other:?}: alerts are active or inactive"),
                    ));
                }
            });
        }
        wanted = Some(match wanted {
            None => listed,
            Some(before) => before.into_iter().filter(|s| listed.contains(s)).collect(),
        });
    }
    let states: Vec<AlertState> = [
        AlertState::Raised,
        AlertState::Escalated,
        AlertState::Acknowledged,
        AlertState::Resolved,
    ]
    .into_iter()
    .filter(|state| {
        wanted
            .as_ref()
            .is_none_or(|wanted| wanted.contains(&is_active(*state)))
    })
    .collect();
    let patients = match parameters.patient()? {
        Some(patient) => vec![patient],
        None => super::patient::readable_patients(context).await?,
    };
    let mut entries = Vec::new();
    if !states.is_empty() {
        for patient in patients {
            access::authorize(context.storage, context.peer, &patient, "FHIR Flag search").await?;
            for alert in context
                .storage
                .store
                .patient_alerts(&patient, &states)
                .await?
            {
                entries.push((context.url(&format!("Flag/{}", alert.id)), render(&alert)));
            }
        }
    }
    Ok(context.whole_searchset("Flag", &parameters, entries))
}

/// `GET /fhir/Flag/{alert id}`.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let not_found = || Error::NotFound(format!("Flag/{id}"));
    let alert_id = AlertId::from_hex(id).ok_or_else(not_found)?;
    let alert = crate::alerts::load(&context.storage.store, &alert_id)
        .await?
        .ok_or_else(not_found)?;
    // An alert about no patient is the administrators' (`/v1/alerts`).
    let patient = alert.patient.as_ref().ok_or_else(not_found)?;
    access::authorize(
        context.storage,
        context.peer,
        patient.as_str(),
        &format!("FHIR Flag/{id}"),
    )
    .await?;
    Ok(context.ok(&render(&alert)))
}

/// `POST /fhir/Flag/{alert id}/$acknowledge`: the Flag as it is after.
pub async fn acknowledge(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    if AlertId::from_hex(id).is_none() {
        return Err(Error::NotFound(format!("Flag/{id}")));
    }
    let alert = context.storage.acknowledge_alert(id, context.peer).await?;
    Ok(context.ok(&render(&alert)))
}
