//! `Device`: the devices assigned to a patient. Id = the device's SGTIN-96 EPC as 24 hex
//! digits; identifier `urn:epc` with the EPC pure identity URI; `status` from the on-chain
//! device registry (active, or inactive when deactivated or not registered); `patient`
//! the patient it is assigned to; the last time it measured a stored reading in the
//! extension [`LAST_HEARD_EXTENSION`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::epc::Sgtin96;

use super::Context;
use super::search::{self, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;

/// The identifier system of EPCs (the value is the pure identity URI).
pub const EPC_SYSTEM: &str = "urn:epc";
/// The extension holding when a device last measured a stored reading (`valueInstant`).
pub const LAST_HEARD_EXTENSION: &str = "urn:wardseal:fhir:extension:device-last-heard";
/// The extension holding since when the device is assigned to its patient.
pub const ASSIGNED_SINCE_EXTENSION: &str = "urn:wardseal:fhir:extension:device-assigned-since";

/// What `/fhir/Device` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Device",
    documentation: "Devices assigned to a patient now: id = the SGTIN-96 EPC in 24 hex digits, \
                    identifier urn:epc, status from the on-chain device registry, the last \
                    stored measurement in the device-last-heard extension.",
    parameters: &[search::PATIENT],
    operations: &[],
};

/// What a Device is rendered from.
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    /// The EPC.
    pub epc: Sgtin96,
    /// The patient it is (or was last) assigned to.
    pub patient: String,
    /// Since when (µs).
    pub since: i64,
    /// Whether the registry lists it as active.
    pub registry_active: bool,
    /// When it last measured a stored reading (µs).
    pub last_heard: Option<i64>,
}

/// A device as a Device resource.
pub fn render(facts: &DeviceFacts) -> serde_json::Value {
    let mut extension = vec![serde_json::json!({
        "url": ASSIGNED_SINCE_EXTENSION,
        "valueInstant": super::instant(facts.since),
    })];
    if let Some(last) = facts.last_heard {
        extension.push(serde_json::json!({
            "url": LAST_HEARD_EXTENSION,
            "valueInstant": super::instant(last),
        }));
    }
    serde_json::json!({
        "resourceType": "Device",
        "id": facts.epc.to_hex(),
        "extension": extension,
        "identifier": [{"system": EPC_SYSTEM, "value": facts.epc.pure_identity_uri()}],
        "status": if facts.registry_active { "active" } else { "inactive" },
        "patient": super::reference("Patient", &facts.patient),
    })
}

async fn facts(
    context: &Context<'_>,
    epc: Sgtin96,
    patient: String,
    since: i64,
) -> Result<DeviceFacts, Error> {
    // The assignment names the pure identity, which has no filter value; the registry
    // keys a tag's 96 bits, filter included: the device is registered under one of them.
    let tags: Vec<[u8; 12]> = (0..=7)
        .filter_map(|filter| epc.clone().with_filter(filter).ok())
        .map(|tag| tag.to_bytes())
        .collect();
    let registry = context.storage.chain.devices(&tags).await?;
    let registry_active = registry.values().flatten().any(|device| device.active);
    let last_heard = context
        .storage
        .store
        .device_last_heard(&epc.pure_identity_uri())
        .await?;
    Ok(DeviceFacts {
        epc,
        patient,
        since,
        registry_active,
        last_heard,
    })
}

/// `GET /fhir/Device?patient=…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let patient = super::observation::searched_patient(context, &parameters)?;
    access::authorize(
        context.storage,
        context.peer,
        &patient,
        "FHIR Device search",
    )
    .await?;
    let mut entries = Vec::new();
    for (device, since, until) in context.storage.store.patient_devices(&patient).await? {
        if until.is_some() {
            continue;
        }
        let Ok(epc) = Sgtin96::from_pure_identity_uri(&device) else {
            continue;
        };
        let facts = facts(context, epc, patient.clone(), since).await?;
        entries.push((
            context.url(&format!("Device/{}", facts.epc.to_hex())),
            render(&facts),
        ));
    }
    Ok(context.whole_searchset("Device", &parameters, entries))
}

/// `GET /fhir/Device/{EPC hex}`: readable by whoever may read the patient it is (or was
/// last) assigned to.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let not_found = || Error::NotFound(format!("Device/{id}"));
    let epc = Sgtin96::from_hex(id).map_err(|_| not_found())?;
    let (patient, since, _) = context
        .storage
        .store
        .device_holder(&epc.pure_identity_uri())
        .await?
        .ok_or_else(not_found)?;
    access::authorize(
        context.storage,
        context.peer,
        &patient,
        &format!("FHIR Device/{id}"),
    )
    .await?;
    let facts = facts(context, epc, patient, since).await?;
    Ok(context.ok(&render(&facts)))
}
