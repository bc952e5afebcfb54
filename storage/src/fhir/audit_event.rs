//! `AuditEvent`: one per access-log entry (id = the entry's number), in the shape of IHE
//! Basic Audit Log Patterns (BALP) for a RESTful read or search of a patient's data:
//! `type` rest, `subtype` the interaction, the reader as the requesting agent, storage as
//! the observer, the patient as entity (role Patient) and the request as a query entity;
//! `outcome` 0 when allowed, 4 when refused. The entries are the leaves of the anchored
//! access log: `/v1/access-log` and the chain prove them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use super::Context;
use super::bundle::Bundle;
use super::cursor::{Cursor, Direction};
use super::patient::SUBJECT_SYSTEM;
use super::search::{self, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;
use crate::store::AccessEntry;

/// What `/fhir/AuditEvent` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "AuditEvent",
    documentation: "One per entry of the anchored access log (id = its number), IHE BALP shape; \
                    newest first, paged by next links.",
    parameters: &[search::PATIENT, search::COUNT, search::CURSOR],
    operations: &[],
};

/// The FHIR interaction an access-log `what` describes, and the BALP action code.
fn interaction(what: &str) -> (&'static str, &'static str) {
    if what.contains("acknowledge") {
        ("operation", "E")
    } else if what.contains('?') || what.contains("search") || what.starts_with("observations") {
        ("search-type", "E")
    } else {
        ("read", "R")
    }
}

/// An access-log entry as an AuditEvent.
pub fn render(entry: &AccessEntry) -> serde_json::Value {
    let (subtype, action) = interaction(&entry.what);
    serde_json::json!({
        "resourceType": "AuditEvent",
        "id": entry.entry.to_string(),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
        "action": action,
        "recorded": super::instant(entry.at),
        "outcome": if entry.allowed { "0" } else { "4" },
        "outcomeDesc": entry.reason,
        "agent": [{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP",
                "display": "information recipient",
            }]},
            "role": [{"text": entry.role}],
            "who": {
                "identifier": {"system": SUBJECT_SYSTEM, "value": entry.who},
                "display": entry.who,
            },
            "requestor": true,
        }],
        "source": {
            "observer": {"display": "wardseal storage"},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }],
        },
        "entity": [
            {
                "what": super::reference("Patient", &entry.patient),
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            },
            {
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "description": entry.what,
            },
        ],
    })
}

/// `GET /fhir/AuditEvent?patient=…`: newest first.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let patient = super::observation::searched_patient(context, &parameters)?;
    let count = parameters.count()?.max(1);
    let canonical = parameters.canonical();
    let before = parameters
        .one("_cursor")?
        .map(|token| Cursor::decode(token, DEFINITION.kind, &canonical))
        .transpose()?
        .map(|cursor| cursor.time);
    access::authorize(
        context.storage,
        context.peer,
        &patient,
        "FHIR AuditEvent search",
    )
    .await?;
    let mut entries = context
        .storage
        .store
        .access_page(&patient, before, count.saturating_add(1))
        .await?;
    let more = entries.len() > count;
    entries.truncate(count);
    let self_link = context.url(&format!("AuditEvent?{}", parameters.query_with(&[])));
    let next = entries.last().filter(|_| more).map(|last| {
        let token = Cursor {
            direction: Direction::After,
            time: last.entry,
            batch: [0; 32],
            position: 0,
        }
        .encode(DEFINITION.kind, &canonical);
        context.url(&format!(
            "AuditEvent?{}",
            parameters.query_with(&[("_cursor", &token)])
        ))
    });
    let whole = !more && before.is_none();
    let resources: Vec<_> = entries
        .iter()
        .map(|entry| {
            (
                context.url(&format!("AuditEvent/{}", entry.entry)),
                render(entry),
            )
        })
        .collect();
    let size = u64::try_from(resources.len()).unwrap_or(u64::MAX);
    let mut bundle = Bundle::searchset(resources).link("self", self_link);
    if whole {
        bundle = bundle.total(size);
    }
    if let Some(next) = next {
        bundle = bundle.link("next", next);
    }
    Ok(context.ok(&bundle))
}

/// `GET /fhir/AuditEvent/{entry}`.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let not_found = || Error::NotFound(format!("AuditEvent/{id}"));
    let number: i64 = id.parse().map_err(|_| not_found())?;
    let entry = context
        .storage
        .store
        .access_entry(number)
        .await?
        .ok_or_else(not_found)?;
    access::authorize(
        context.storage,
        context.peer,
        &entry.patient,
        &format!("FHIR AuditEvent/{id}"),
    )
    .await?;
    Ok(context.ok(&render(&entry)))
}
