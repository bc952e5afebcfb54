//! `Provenance`: one per stored batch (id = the batch header's hash, 64 hex digits). It
//! targets the batch's Observations; its agents are the collector that assembled the
//! batch and the patient whose card signed it; `signature` is the card's signature over
//! the canonical batch header (`sigFormat` names the algorithm).
//!
//! What makes the signature checkable travels with it as contained Binaries, referenced
//! from `entity`: `#header` the canonical header bytes that were signed, `#certificate`
//! the patient card's certificate (DER), and `#proof` the proof document of one of its
//! readings (`/v1/readings/{leaf}/proof`: the reading's inclusion under the signed root,
//! the header's inclusion in the anchored batch log and the anchor's block), which
//! `wardseal-storage verify-proof` checks offline and against the chain. A search by
//! `target` proves that target; a read proves the batch's first reading.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use wardseal_core::batch::BatchHeader;
use wardseal_core::hash::Hash;

use super::Context;
use super::bundle::Bundle;
use super::patient::SUBJECT_SYSTEM;
use super::search::{self, ParameterDefinition, ParameterType, Parameters, ResourceDefinition};
use crate::access;
use crate::error::Error;
use crate::proof::ProofDocument;
use crate::store::BatchRecord;

/// What `/fhir/Provenance` takes.
pub const DEFINITION: ResourceDefinition = ResourceDefinition {
    kind: "Provenance",
    documentation: "One per stored batch (id = header hash): targets its Observations, agents \
                    the collector and the patient's card, signature = the card's signature over \
                    the header; contained Binaries #header, #certificate and #proof (inclusion \
                    and anchor of one reading).",
    parameters: &[
        ParameterDefinition {
            name: "target",
            kind: ParameterType::Reference,
            definition: Some("http://hl7.org/fhir/SearchParameter/Provenance-target"),
            documentation: "an Observation (Observation/<leaf hash>): its batch's Provenance, \
                            proving that Observation",
        },
        search::PATIENT,
        search::COUNT,
    ],
    operations: &[],
};

/// The signature algorithm's media type for `sigFormat`.
fn signature_format(header: Option<&BatchHeader>) -> String {
    header.map_or_else(
        || "application/octet-stream".to_owned(),
        |header| format!("application/octet-stream; algorithm={}", header.algorithm()),
    )
}

/// A stored batch as a Provenance; `proof` proves one of its readings.
pub fn render(batch: &BatchRecord, proof: Option<&ProofDocument>) -> serde_json::Value {
    let id = hex::encode(&batch.header_hash);
    let header = BatchHeader::from_canonical_bytes(&batch.header).ok();
    let binary = |id: &str, content_type: &str, data: &[u8]| {
        serde_json::json!({
            "resourceType": "Binary",
            "id": id,
            "contentType": content_type,
            "data": STANDARD.encode(data),
        })
    };
    let mut contained = vec![
        binary("header", "application/octet-stream", &batch.header),
        binary(
            "certificate",
            "application/pkix-cert",
            &batch.patient_certificate,
        ),
    ];
    let mut entity = vec![
        serde_json::json!({"role": "source", "what": {
            "reference": "#header", "display": "the canonical batch header the card signed",
        }}),
        serde_json::json!({"role": "source", "what": {
            "reference": "#certificate", "display": "the patient card's certificate",
        }}),
    ];
    if let Some(proof) = proof.and_then(|proof| serde_json::to_vec(proof).ok()) {
        contained.push(binary("proof", "application/json", &proof));
        entity.push(serde_json::json!({"role": "quotation", "what": {
            "reference": "#proof",
            "display": "inclusion proof of a reading and the batch log's anchor",
        }}));
    }
    serde_json::json!({
        "resourceType": "Provenance",
        "id": id,
        "contained": contained,
        "target": batch
            .leaves
            .iter()
            .map(|leaf| super::reference("Observation", &hex::encode(leaf)))
            .collect::<Vec<_>>(),
        "recorded": super::instant(batch.received_at),
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": "CREATE",
            "display": "create",
        }]},
        "agent": [
            {
                "type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "assembler",
                    "display": "Assembler",
                }]},
                "who": {
                    "identifier": {"system": SUBJECT_SYSTEM, "value": batch.collector},
                    "display": format!("collector {}", batch.collector),
                },
            },
            {
                "type": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "attester",
                    "display": "Attester",
                }]},
                "who": super::reference("Patient", &batch.patient),
            },
        ],
        "entity": entity,
        "signature": [{
            "type": [{
                "system": "urn:iso-astm:E1762-95:2013",
                "code": "1.2.840.10065.1.12.1.5",
                "display": "Verification Signature",
            }],
            // The card signed before storage received the batch: the receipt bounds it.
            "when": super::instant(batch.received_at),
            "who": super::reference("Patient", &batch.patient),
            "targetFormat": "application/octet-stream",
            "sigFormat": signature_format(header.as_ref()),
            "data": STANDARD.encode(&batch.signature),
        }],
    })
}

async fn proof(context: &Context<'_>, leaf: &[u8]) -> Result<Option<ProofDocument>, Error> {
    let Ok(leaf) = Hash::from_slice(leaf) else {
        return Ok(None);
    };
    let ca_chain =
        wardseal_net::files::certificates("CA bundle", &context.storage.tls.settings().ca_bundle)?
            .into_iter()
            .map(|certificate| certificate.to_vec())
            .collect::<Vec<_>>();
    match crate::proof::build(&context.storage.store, &leaf, &ca_chain).await {
        Ok(document) => Ok(Some(document)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// `GET /fhir/Provenance?target=Observation/<leaf>` or `?patient=…`.
pub async fn search(context: &Context<'_>) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let parameters = Parameters::parse(&DEFINITION, &context.query, context.lenient)?;
    let store = &context.storage.store;
    let mut entries = Vec::new();
    if let Some(target) = parameters.one("target")? {
        let leaf = search::reference_id(target, "Observation")
            .and_then(|id| hex::decode(id).ok())
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| search::bad("target", "an Observation: Observation/<leaf hash>"))?;
        if let Some(reading) = store.reading_record(&leaf).await? {
            access::authorize(
                context.storage,
                context.peer,
                &reading.patient,
                &format!("FHIR Provenance?target={target}"),
            )
            .await?;
            if let Some(batch) = store.batch_record(&reading.key.batch_hash).await? {
                let proof = proof(context, &leaf).await?;
                entries.push((batch, proof));
            }
        }
    } else {
        let patient = super::observation::searched_patient(context, &parameters)?;
        access::authorize(
            context.storage,
            context.peer,
            &patient,
            "FHIR Provenance search",
        )
        .await?;
        for hash in store
            .patient_batches(&patient, parameters.count()?.max(1))
            .await?
        {
            if let Some(batch) = store.batch_record(&hash).await? {
                entries.push((batch, None));
            }
        }
    }
    let resources: Vec<_> = entries
        .iter()
        .map(|(batch, proof)| {
            (
                context.url(&format!("Provenance/{}", hex::encode(&batch.header_hash))),
                render(batch, proof.as_ref()),
            )
        })
        .collect();
    let total = u64::try_from(resources.len()).unwrap_or(u64::MAX);
    Ok(context.ok(&Bundle::searchset(resources).total(total).link(
        "self",
        context.url(&format!("Provenance?{}", parameters.query_with(&[]))),
    )))
}

/// `GET /fhir/Provenance/{header hash}`.
pub async fn read(context: &Context<'_>, id: &str) -> Result<Response<Full<Bytes>>, Error> {
    context.require(super::READERS)?;
    let not_found = || Error::NotFound(format!("Provenance/{id}"));
    let hash = hex::decode(id)
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(not_found)?;
    let batch = context
        .storage
        .store
        .batch_record(&hash)
        .await?
        .ok_or_else(not_found)?;
    access::authorize(
        context.storage,
        context.peer,
        &batch.patient,
        &format!("FHIR Provenance/{id}"),
    )
    .await?;
    let proof = match batch.leaves.first() {
        Some(leaf) => proof(context, leaf).await?,
        None => None,
    };
    Ok(context.ok(&render(&batch, proof.as_ref())))
}
