//! `Consent`: a mirror of the grants a patient holds on chain: those of the Consent
//! contract to the staff accounts storage knows (`POST /v1/admin/staff-accounts`), and
//! those of the AuthorityRegistry to authority organisations (laboratories, insurers,
//! pharmacies, other hospitals). The chain keeps the current state only, so a Consent
//! exists while the grant stands (status `active`) and is gone once revoked; storage asks
//! the chain on every read.
//!
//! Id: the first 16 bytes of SHA-256(patient ‖ 0x00 ‖ staff account) or SHA-256(patient ‖
//! 0x01 ‖ organisation id) in hex — stable, short enough for a FHIR id, and naming no
//! account.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::hash::Hash;

use super::Context;
use super::patient::SUBJECT_SYSTEM;
use super::search::{self, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;

/// The identifier system of on-chain grants: `0x<patient account>:0x<authority account>`.
pub const GRANT_SYSTEM: &str = "urn:wardseal:consent-grant";
/// The identifier system of grants to authority organisations:
/// `0x<patient account>:<organisation id>`.
pub const AUTHORITY_GRANT_SYSTEM: &str = "urn:wardseal:authority-grant";
/// The identifier system of authority organisations (their registry id).
pub const ORGANISATION_SYSTEM: &str = "urn:wardseal:authority";

/// What `/fhir/Consent` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Consent",
    documentation: "The patient's on-chain grants: to the staff accounts storage knows \
                    (Consent contract) and to authority organisations (AuthorityRegistry); \
                    active while granted, gone once revoked (the chain is asked on every read).",
    parameters: &[search::PATIENT],
    operations: &[],
};

/// Whom a grant lets read.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// A staff member's account (Consent contract).
    Account {
        /// The staff member (subject id).
        subject: String,
        /// Their account.
        account: [u8; 20],
    },
    /// An authority organisation (AuthorityRegistry), by its registry id.
    Organisation(String),
}

/// One standing grant of `patient` (account `patient_account`).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The patient.
    pub patient: String,
    /// The patient's account.
    pub patient_account: [u8; 20],
    /// Whom it lets read.
    pub recipient: Recipient,
}

impl Grant {
    /// The Consent id of this grant.
    pub fn id(&self) -> String {
        let mut bytes = self.patient.as_bytes().to_vec();
        match &self.recipient {
            Recipient::Account { account, .. } => {
                bytes.push(0);
                bytes.extend_from_slice(account);
            }
            Recipient::Organisation(id) => {
                bytes.push(1);
                bytes.extend_from_slice(id.as_bytes());
            }
        }
        hex::encode(&Hash::sha256(&bytes).as_bytes()[..16])
    }
}

/// A standing grant as a Consent.
pub fn render(grant: &Grant) -> serde_json::Value {
    let patient_account = hex::encode(grant.patient_account);
    let (identifier, actor) = match &grant.recipient {
        Recipient::Account { subject, account } => (
            serde_json::json!({
                "system": GRANT_SYSTEM,
                "value": format!("0x{patient_account}:0x{}", hex::encode(account)),
            }),
            serde_json::json!({
                "identifier": {"system": SUBJECT_SYSTEM, "value": subject},
                "display": subject,
            }),
        ),
        Recipient::Organisation(id) => (
            serde_json::json!({
                "system": AUTHORITY_GRANT_SYSTEM,
                "value": format!("0x{patient_account}:{id}"),
            }),
            serde_json::json!({
                "type": "Organization",
                "identifier": {"system": ORGANISATION_SYSTEM, "value": id},
                "display": id,
            }),
        ),
    };
    serde_json::json!({
        "resourceType": "Consent",
        "id": grant.id(),
        "identifier": [identifier],
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
                "reference": actor,
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
                recipient: Recipient::Account {
                    subject: authority,
                    account: authority_account,
                },
            });
        }
    }
    for organisation in context
        .storage
        .chain
        .authority_grants(patient_account)
        .await?
    {
        grants.push(Grant {
            patient: patient.to_owned(),
            patient_account,
            recipient: Recipient::Organisation(organisation.id),
        });
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
    Ok(context.whole_searchset("Consent", &parameters, entries))
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
