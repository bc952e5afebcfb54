//! `Consent`: a mirror of the grants a patient holds on chain (the Consent contract) for
//! the staff and authority accounts storage knows (`POST /v1/admin/staff-accounts`).
//! The chain keeps the current state only, so a Consent exists while the grant stands
//! (status `active`) and is gone once revoked; storage asks the chain on every read.
//!
//! Id: the first 16 bytes of SHA-256(patient ‖ 0x00 ‖ authority account) in hex — stable,
//! short enough for a FHIR id, and naming no account.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::hash::Hash;

use super::Context;
use super::bundle::Bundle;
use super::patient::SUBJECT_SYSTEM;
use super::search::{self, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;

/// The identifier system of on-chain grants: `0x<patient account>:0x<authority account>`.
pub const GRANT_SYSTEM: &str = "urn:wardseal:consent-grant";

/// What `/fhir/Consent` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Consent",
    documentation: "The patient's on-chain grants (Consent contract) to the staff and authority \
                    accounts storage knows; active while granted, gone once revoked (the chain \
                    is asked on every read).",
    parameters: &[search::PATIENT],
    operations: &[],
};

/// One grant: `patient` (account `patient_account`) to `authority` (`authority_account`).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The patient.
    pub patient: String,
    /// The patient's account.
    pub patient_account: [u8; 20],
    /// The staff member or authority (subject id).
    pub authority: String,
    /// Their account.
    pub authority_account: [u8; 20],
}

impl Grant {
    /// The Consent id of this grant.
    pub fn id(&self) -> String {
        let mut bytes = self.patient.as_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(&self.authority_account);
        hex::encode(&Hash::sha256(&bytes).as_bytes()[..16])
    }
}

/// A standing grant as a Consent.
pub fn render(grant: &Grant) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "Consent",
        "id": grant.id(),
        "identifier": [{
            "system": GRANT_SYSTEM,
            "value": format!(
                "0x{}:0x{}",
                hex::encode(grant.patient_account),
                hex::encode(grant.authority_account)
            ),
        }],
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
            "display": "Privacy Consent",
        }]},
        "category": [{"coding": [{
            "system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent",
        }]}],
        "patient": super::reference("Patient", &grant.patient),
        "performer": [super::reference("Patient", &grant.patient)],
        "policyRule": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "OPTIN",
            "display": "opt-in",
        }]},
        "provision": {
            "type": "permit",
            "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                    "display": "information recipient",
                }]},
                "reference": {
                    "identifier": {"system": SUBJECT_SYSTEM, "value": grant.authority},
                    "display": grant.authority,
                },
            }],
        },
    })
}

/// The grants `patient` holds now, for every known account.
async fn grants(context: &Context<'_>, patient: &str) -> Result<Vec<Grant>, Error> {
    let store = &context.storage.store;
    let Some(patient_account) = store.patient_account(patient).await? else {
        return Ok(Vec::new());
    };
    let mut grants = Vec::new();
    for (authority, account) in store.staff_accounts().await? {
        let Ok(authority_account) = <[u8; 20]>::try_from(account.as_slice()) else {
            continue;
        };
        if context
            .storage
            .chain
            .consent(patient_account, authority_account)
            .await?
        {
            grants.push(Grant {
                patient: patient.to_owned(),
                patient_account,
                authority,
                authority_account,
            });
        }
    }
    Ok(grants)
}

/// `GET /fhir/Consent?patient=…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let patient = super::observation::searched_patient(context, &parameters)?;
    access::authorize(
        context.storage,
        context.peer,
        &patient,
        "FHIR Consent search",
    )
    .await?;
    let entries: Vec<_> = grants(context, &patient)
        .await?
        .iter()
        .map(|grant| {
            (
                context.url(&format!("Consent/{}", grant.id())),
                render(grant),
            )
        })
        .collect();
    let total = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    Ok(context.ok(&Bundle::searchset(entries).total(total).link(
        "self",
        context.url(&format!("Consent?{}", parameters.query_with(&[]))),
    )))
}

/// `GET /fhir/Consent/{id}`: a patient's card finds it among its own grants; staff among
/// the grants of the patients they are responsible for.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    for patient in super::patient::readable_patients(context).await? {
        for grant in grants(context, &patient).await? {
            if grant.id() == id {
                access::authorize(
                    context.storage,
                    context.peer,
                    &patient,
                    &format!("FHIR Consent/{id}"),
                )
                .await?;
                return Ok(context.ok(&render(&grant)));
            }
        }
    }
    Err(Error::NotFound(format!("Consent/{id}")))
}
