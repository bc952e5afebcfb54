//! `Encounter` for the visits authorities record (seed 2, scenario 3): id `visit-<n>`,
//! beside the admissions' `adm-<n>` ([`super::encounter`]).
//!
//! A visit's organisation is its `serviceProvider` and the certificate that recorded it
//! its participant (type PART), both named by identifier (registry id, certificate
//! subject id) rather than by a resource this server serves; `class` is the HL7 v3 ActCode
//! the authority gave, `status` `finished` once the visit has an end. `POST
//! /fhir/Encounter` by an authority certificate records one (`create`), under the same
//! registry and consent decision as `POST /v1/visits` (docs/authorities.md).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use wardseal_core::identity::Role;

use super::Context;
use crate::access;
use crate::error::Error;
use crate::store::VisitRecord;
use crate::visits::{ACT_CODE_SYSTEM, VisitClass, VisitRequest};

/// The identifier system of authority organisations (their registry ids).
pub const AUTHORITY_SYSTEM: &str = "urn:wardseal:authority";
/// The identifier system of authority certificates (their subject ids).
pub const AUTHORITY_SUBJECT_SYSTEM: &str = "urn:wardseal:authority-subject";
/// The code system of participant types.
pub const PARTICIPATION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The Encounter id of visit number `visit`.
pub fn id(visit: i64) -> String {
    format!("visit-{visit}")
}

/// The visit number an Encounter id names, if it names one.
pub fn number(id: &str) -> Option<i64> {
    id.strip_prefix("visit-")?
        .parse()
        .ok()
        .filter(|number| *number > 0)
}

/// The FHIR `status` of a visit.
pub fn status(visit: &VisitRecord) -> &'static str {
    if visit.ended_at.is_some() {
        "finished"
    } else {
        "in-progress"
    }
}

/// A visit as a FHIR R4 Encounter.
pub fn render(visit: &VisitRecord) -> Value {
    let display = visit
        .class
        .parse::<VisitClass>()
        .map_or("unknown", VisitClass::display);
    let mut period = json!({"start": super::instant(visit.started_at)});
    if let Some(end) = visit.ended_at {
        period["end"] = super::instant(end).into();
    }
    let mut encounter = json!({
        "resourceType": "Encounter",
        "id": id(visit.visit),
        "meta": {"lastUpdated": super::instant(visit.recorded_at)},
        "status": status(visit),
        "class": {"system": ACT_CODE_SYSTEM, "code": visit.class, "display": display},
        "subject": {"reference": format!("Patient/{}", visit.patient)},
        "participant": [{
            "type": [{"coding": [{
                "system": PARTICIPATION_TYPE_SYSTEM,
                "code": "PART",
                "display": "Participation"
            }]}],
            "individual": {
                "identifier": {"system": AUTHORITY_SUBJECT_SYSTEM, "value": visit.subject},
                "display": format!("{} of {}", visit.subject, visit.organisation)
            }
        }],
        "period": period,
        "serviceProvider": {
            "identifier": {"system": AUTHORITY_SYSTEM, "value": visit.organisation},
            "display": format!("{} ({})", visit.organisation, visit.kind)
        }
    });
    if let Some(reason) = &visit.reason {
        encounter["reasonCode"] = json!([{"text": reason}]);
    }
    encounter
}

/// A patient's visits as search entries (full URL, resource), those whose status is in
/// `statuses` when given. The caller has authorised the read.
pub(super) async fn entries(
    context: &Context<'_>,
    patient: &str,
    statuses: Option<&[&str]>,
) -> Result<Vec<(String, Value)>, Error> {
    Ok(context
        .storage
        .store
        .visits(patient)
        .await?
        .iter()
        .filter(|visit| statuses.is_none_or(|wanted| wanted.contains(&status(visit))))
        .map(|visit| {
            (
                context.url(&format!("Encounter/{}", id(visit.visit))),
                render(visit),
            )
        })
        .collect())
}

/// `GET /fhir/Encounter/visit-{n}`.
pub(super) async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let not_found = || Error::NotFound(format!("Encounter/{id}"));
    let visit = context
        .storage
        .store
        .visit(number(id).ok_or_else(not_found)?)
        .await?
        .ok_or_else(not_found)?;
    access::authorize(
        context.storage,
        context.peer,
        &visit.patient,
        &format!("FHIR Encounter/{id}"),
    )
    .await?;
    Ok(context.ok(&render(&visit)))
}

/// `POST /fhir/Encounter`: an authority records a visit (201 with the Encounter and its
/// `Location`).
pub(super) async fn create(
    context: &Context<'_>,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Error> {
    context.require(&[Role::Authority])?;
    let encounter: Value = serde_json::from_slice(body)
        .map_err(|error| Error::BadRequest(format!("not a FHIR JSON resource: {error}")))?;
    let request = VisitRequest::from_encounter(&encounter)?;
    let visit = crate::visits::record_request(context.storage, context.peer, &request).await?;
    let mut response = context.respond(StatusCode::CREATED, &render(&visit));
    if let Ok(location) =
        HeaderValue::from_str(&context.url(&format!("Encounter/{}/_history/1", id(visit.visit))))
    {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(ended_at: Option<i64>, reason: Option<&str>) -> VisitRecord {
        VisitRecord {
            visit: 3,
            patient: "patient-1".into(),
            organisation: "lab-7".into(),
            subject: "lab-7-frontdesk".into(),
            kind: "laboratory".into(),
            class: "AMB".into(),
            started_at: 1_800_000_000_000_000,
            ended_at,
            reason: reason.map(Into::into),
            recorded_at: 1_800_000_900_000_000,
        }
    }

    #[test]
    fn a_visit_renders_as_an_encounter_and_reads_back_as_its_request() {
        let finished = render(&visit(Some(1_800_000_600_000_000), Some("blood draw")));
        assert_eq!(finished["id"], "visit-3");
        assert_eq!(finished["status"], "finished");
        assert_eq!(finished["class"]["code"], "AMB");
        assert_eq!(finished["class"]["display"], "ambulatory");
        assert_eq!(finished["serviceProvider"]["identifier"]["value"], "lab-7");
        assert_eq!(
            finished["participant"][0]["individual"]["identifier"]["value"],
            "lab-7-frontdesk"
        );
        assert_eq!(finished["reasonCode"][0]["text"], "blood draw");
        let open = render(&visit(None, None));
        assert_eq!(open["status"], "in-progress");
        assert!(open["period"].get("end").is_none());
        assert!(open.get("reasonCode").is_none());
        // What the server renders, less what it assigns, is a request for the same visit.
        let mut request = finished.clone();
        for assigned in ["id", "meta", "participant", "serviceProvider"] {
            request.as_object_mut().unwrap().remove(assigned);
        }
        let request = VisitRequest::from_encounter(&request).unwrap();
        assert_eq!(request.patient, "patient-1");
        assert_eq!(request.class, "AMB");
        assert_eq!(request.reason.as_deref(), Some("blood draw"));
        assert_eq!(number("visit-3"), Some(3));
        assert_eq!(number("visit-0"), None);
        assert_eq!(number("adm-3"), None);
    }
}
