//! `GET /fhir/metadata`: the CapabilityStatement, written from the same
//! [`ResourceDefinition`] tables the search parser checks requests against, so it states
//! exactly what is served.

use std::sync::OnceLock;

use super::search::{RESULT_PARAMETERS, ResourceDefinition};
use super::{FHIR_JSON, FHIR_VERSION};

/// Every resource type served, in the statement's order.
pub const RESOURCES: &[&ResourceDefinition] = &[
    &super::patient::DEFINITION,
    &super::encounter::DEFINITION,
    &super::observation::DEFINITION,
    &super::device::DEFINITION,
    &super::flag::DEFINITION,
    &super::consent::DEFINITION,
    &super::audit_event::DEFINITION,
    &super::provenance::DEFINITION,
];

fn resource(definition: &ResourceDefinition) -> serde_json::Value {
    let parameters: Vec<serde_json::Value> = definition
        .parameters
        .iter()
        .chain(RESULT_PARAMETERS)
        .map(|parameter| {
            let mut entry = serde_json::json!({
                "name": parameter.name,
                "type": parameter.kind.code(),
                "documentation": parameter.documentation,
            });
            if let Some(url) = parameter.definition {
                entry["definition"] = url.into();
            }
            entry
        })
        .collect();
    let mut interactions = vec![
        serde_json::json!({"code": "read"}),
        serde_json::json!({"code": "search-type"}),
    ];
    // Authorities record visits (`fhir::visit::create`).
    if definition.kind == super::encounter::DEFINITION.kind {
        interactions.push(serde_json::json!({"code": "create"}));
    }
    let mut entry = serde_json::json!({
        "type": definition.kind,
        "documentation": definition.documentation,
        "interaction": interactions,
        "searchParam": parameters,
    });
    if !definition.operations.is_empty() {
        entry["operation"] = definition
            .operations
            .iter()
            .map(|(name, url)| serde_json::json!({"name": name, "definition": url}))
            .collect();
    }
    entry
}

/// The CapabilityStatement.
pub fn statement() -> serde_json::Value {
    // The statement changes with the software only: dated when the process started.
    static STARTED: OnceLock<String> = OnceLock::new();
    let date = STARTED.get_or_init(|| super::instant(crate::store::now_micros()));
    serde_json::json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "wardseal",
        "kind": "instance",
        "software": {"name": "wardseal-storage", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "wardseal storage: card-signed readings, alerts, admissions and the \
                            anchored access log of a hospital's medical IoT",
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["json", FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "Unknown search parameters are refused (400 OperationOutcome) \
                              unless the request carries Prefer: handling=lenient. Every read \
                              of patient data is logged in the anchored access log.",
            "security": {
                "cors": false,
                "description": "Mutual TLS with a certificate of the hospital CA (CRLs \
                                checked per request). Staff read the patients assigned to them \
                                or who consented on chain to their account; a patient's card \
                                certificate reads that patient's own records.",
            },
            "resource": RESOURCES.iter().map(|definition| resource(definition)).collect::<Vec<_>>(),
        }],
    })
}
