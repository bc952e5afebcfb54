//! `Encounter`: admissions (and discharges). Id `adm-<n>`, n = the admission's start in
//! µs since the epoch; `status` in-progress while admitted, finished once discharged;
//! `location` names the ward, room and bed (physical types `wa`, `ro`, `bd`).
//!
//! Storage keeps a patient's current (or last) stay: a re-admission replaces the earlier
//! one, whose Encounter is then gone.
//!
//! Visits recorded by authorities are Encounters too, id `visit-<n>` ([`super::visit`]):
//! a search returns a patient's visits with their admission.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::identity::Role;

use super::Context;
use super::search::{self, ParameterDefinition, ParameterType, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;
use crate::store::AdmissionRecord;

/// The code system of location physical types.
pub const PHYSICAL_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/location-physical-type";

/// What `/fhir/Encounter` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Encounter",
    documentation: "Admissions: id adm-<admission start, µs since the epoch>, status in-progress \
                    or finished, location ward / room / bed. Visits by authorities: id \
                    visit-<n>, class AMB/VR/HH/FLD/EMER, serviceProvider the organisation; an \
                    authority creates one (POST, with the patient's on-chain consent). Without \
                    patient, a search covers the patients the caller may read (staff: assigned \
                    now; a patient's card: themselves).",
    parameters: &[
        search::PATIENT,
        ParameterDefinition {
            name: "subject",
            kind: ParameterType::Reference,
            definition: Some("http://hl7.org/fhir/SearchParameter/Encounter-subject"),
            documentation: "the patient, as Patient/id",
        },
        ParameterDefinition {
            name: "status",
            kind: ParameterType::Token,
            definition: Some("http://hl7.org/fhir/SearchParameter/Encounter-status"),
            documentation: "in-progress or finished; commas OR",
        },
    ],
    operations: &[],
};

/// An admission as an Encounter.
pub fn render(admission: &AdmissionRecord) -> serde_json::Value {
    let finished = admission.discharged_at.is_some();
    let place = |code: &str, display: &str, name: &str| {
        serde_json::json!({
            "location": {"display": name},
            "status": if finished { "completed" } else { "active" },
            "physicalType": {"coding": [{
                "system": PHYSICAL_TYPE_SYSTEM, "code": code, "display": display,
            }]},
        })
    };
    let mut period = serde_json::json!({"start": super::instant(admission.admitted_at)});
    if let Some(end) = admission.discharged_at {
        period["end"] = super::instant(end).into();
    }
    serde_json::json!({
        "resourceType": "Encounter",
        "id": format!("adm-{}", admission.admitted_at),
        "status": if finished { "finished" } else { "in-progress" },
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": super::reference("Patient", &admission.patient),
        "period": period,
        "location": [
            place("wa", "Ward", &admission.ward),
            place("ro", "Room", &format!("{}, room {}", admission.ward, admission.room)),
            place("bd", "Bed", &format!(
                "{}, room {}, bed {}",
                admission.ward, admission.room, admission.bed
            )),
        ],
    })
}

/// `GET /fhir/Encounter?…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let mut statuses: Option<Vec<&str>> = None;
    for value in parameters.all("status") {
        let listed: Vec<&str> = value.split(',').collect();
        if let Some(unknown) = listed
            .iter()
            .find(|status| !matches!(**status, "in-progress" | "finished"))
        {
            return Err(search::bad(
                "status",
                &format!("{unknown:?}: admissions and visits are in-progress or finished"),
            ));
        }
        statuses = Some(match statuses {
            None => listed,
            Some(before) => before.into_iter().filter(|s| listed.contains(s)).collect(),
        });
    }
    let patients = match parameters.patient()? {
        Some(patient) => vec![patient],
        None => super::patient::readable_patients(context).await?,
    };
    let mut entries = Vec::new();
    for patient in patients {
        access::authorize(
            context.storage,
            context.peer,
            &patient,
            "FHIR Encounter search",
        )
        .await?;
        // Visits before the admission: a reader that takes a patient's place from the
        // last in-progress Encounter it sees (the ward screen) still gets the bed.
        entries.extend(super::visit::entries(context, &patient, statuses.as_deref()).await?);
        let Some(admission) = context.storage.store.admission_record(&patient).await? else {
            continue;
        };
        let status = if admission.discharged_at.is_some() {
            "finished"
        } else {
            "in-progress"
        };
        if statuses
            .as_ref()
            .is_some_and(|wanted| !wanted.contains(&status))
        {
            continue;
        }
        entries.push((
            context.url(&format!("Encounter/adm-{}", admission.admitted_at)),
            render(&admission),
        ));
    }
    Ok(context.whole_searchset("Encounter", &parameters, entries))
}

/// `GET /fhir/Encounter/adm-{n}` (and `visit-{n}`, [`super::visit`]).
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    if id.starts_with("visit-") {
        return super::visit::read(context, id).await;
    }
    context.require(super::READERS)?;
    let not_found = || Error::NotFound(format!("Encounter/{id}"));
    let number: i64 = id
        .strip_prefix("adm-")
        .and_then(|number| number.parse().ok())
        .ok_or_else(not_found)?;
    let admissions = context.storage.store.admissions_at(number).await?;
    // Two admissions started in the same µs share a number: the caller's own (a patient)
    // or the first is the one read.
    let admission = match context.peer.role() {
        Role::Patient => {
            let subject = context.subject()?;
            admissions
                .iter()
                .find(|admission| admission.patient == subject)
                .or(admissions.first())
        }
        _ => admissions.first(),
    }
    .ok_or_else(not_found)?;
    access::authorize(
        context.storage,
        context.peer,
        &admission.patient,
        &format!("FHIR Encounter/{id}"),
    )
    .await?;
    Ok(context.ok(&render(admission)))
}
