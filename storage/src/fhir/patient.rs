//! `Patient`: pseudonymous. The id is the patient's subject id (the pseudonym in their
//! card certificate, e.g. `patient-0042`); storage holds no name, birth date or address,
//! so the resource carries the pseudonym as its identifier and whether the patient is
//! admitted now (`active`), nothing else.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::identity::Role;

use super::Context;
use super::search::{ParameterDefinition, ParameterType, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;

/// The identifier system of patients' subject ids (pseudonyms).
pub const SUBJECT_SYSTEM: &str = "urn:wardseal:subject";

/// What `/fhir/Patient` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Patient",
    documentation: "Pseudonymous: id = the subject id of the patient's card certificate. A \
                    search lists the patients the caller may read: for staff, those assigned to \
                    them now; for a patient's card, themselves; _id asks for one (authorities \
                    with consent use it).",
    parameters: &[ParameterDefinition {
        name: "_id",
        kind: ParameterType::Token,
        definition: Some("http://hl7.org/fhir/SearchParameter/Resource-id"),
        documentation: "the patient's id",
    }],
    operations: &[],
};

/// `patient` as a Patient resource; `admitted` says whether they are admitted now.
pub fn render(patient: &str, admitted: bool) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "Patient",
        "id": patient,
        "identifier": [{"system": SUBJECT_SYSTEM, "value": patient}],
        "active": admitted,
    })
}

/// The patients a search without a patient covers: for staff, those assigned to them
/// now; for a patient's card, themselves.
pub(super) async fn readable_patients(context: &Context<'_>) -> Result<Vec<String>, Error> {
    let subject = context.subject()?;
    if context.peer.role() == Role::Patient {
        return Ok(vec![subject]);
    }
    context.storage.store.responsible_patients(&subject).await
}

async fn admitted(context: &Context<'_>, patient: &str) -> Result<bool, Error> {
    Ok(context.storage.store.admission(patient).await?.is_some())
}

/// `GET /fhir/Patient?…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let patients = match parameters.one("_id")? {
        Some(id) => vec![id.to_owned()],
        None => readable_patients(context).await?,
    };
    let mut entries = Vec::new();
    for patient in patients {
        access::authorize(
            context.storage,
            context.peer,
            &patient,
            "FHIR Patient search",
        )
        .await?;
        if !context.storage.store.patient_known(&patient).await? {
            continue;
        }
        let admitted = admitted(context, &patient).await?;
        entries.push((
            context.url(&format!("Patient/{patient}")),
            render(&patient, admitted),
        ));
    }
    Ok(context.whole_searchset("Patient", &parameters, entries))
}

/// `GET /fhir/Patient/{id}`.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    access::authorize(
        context.storage,
        context.peer,
        id,
        &format!("FHIR Patient/{id}"),
    )
    .await?;
    if !context.storage.store.patient_known(id).await? {
        return Err(Error::NotFound(format!("Patient/{id}")));
    }
    let admitted = admitted(context, id).await?;
    Ok(context.ok(&render(id, admitted)))
}
