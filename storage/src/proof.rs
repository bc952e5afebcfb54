//! Proof documents (`GET /v1/readings/{leaf}/proof`) and their offline check
//! (`wardseal-storage verify-proof FILE --ca ROOT.pem`), trusting only the CA certificate.

use serde::{Deserialize, Serialize};
use wardseal_core::batch::BatchHeader;
use wardseal_core::hash::Hash;
use wardseal_core::merkle::{self, InclusionProof, MerkleTree};
use wardseal_core::reading::Reading;
use wardseal_core::signature::VerifyingKey;

use crate::error::{Error, ProofError};
use crate::store::Store;

/// Everything needed to check one reading without asking the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofDocument {
    /// The reading's canonical bytes (hex).
    pub reading: String,
    /// The inclusion proof in its batch's tree.
    pub inclusion: InclusionProof,
    /// The signed batch header's canonical bytes (hex).
    pub header: String,
    /// The patient card's signature over the header (hex).
    pub signature: String,
    /// The patient certificate (DER, hex).
    pub patient_certificate: String,
    /// The CA certificates between the patient certificate and the root (DER, hex); the
    /// verifier trusts only its own root certificate and checks the path through these.
    pub ca_chain: Vec<String>,
}

/// What a verified proof says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The reading.
    pub reading: Reading,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// The signed header.
    pub header: BatchHeader,
}

/// Builds the proof of the reading with leaf hash `leaf`.
pub async fn build(
    store: &Store,
    leaf: &Hash,
    ca_chain: &[Vec<u8>],
) -> Result<ProofDocument, Error> {
    let reading = store
        .reading_by_leaf(leaf)
        .await?
        .ok_or_else(|| Error::NotFound(format!("reading {leaf}")))?;
    let (batch, leaves) = store
        .batch(&reading.batch_hash)
        .await?
        .ok_or_else(|| Error::NotFound(format!("batch of reading {leaf}")))?;
    let size = u64::try_from(leaves.len()).unwrap_or_default();
    let inclusion = MerkleTree::from_leaf_hashes(leaves)
        .inclusion_proof(reading.position, size)
        .map_err(|error| Error::NotFound(format!("inclusion proof: {error}")))?;
    Ok(ProofDocument {
        reading: hex::encode(&reading.canonical),
        inclusion,
        header: hex::encode(&batch.header),
        signature: hex::encode(&batch.signature),
        patient_certificate: hex::encode(&batch.patient_certificate),
        ca_chain: ca_chain.iter().map(hex::encode).collect(),
    })
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, ProofError> {
    hex::decode(text).map_err(|error| ProofError::Malformed(format!("{field}: {error}")))
}

/// Checks a proof offline: the patient certificate chains to `ca_der` (signature and
/// validity dates; revocation is the CA's CRL's business and is checked at ingest), the
/// card's signature over the header, and the reading's inclusion under the signed root.
pub fn verify(document: &ProofDocument, ca_der: &[u8]) -> Result<Verified, ProofError> {
    let reading_bytes = unhex("reading", &document.reading)?;
    let header_bytes = unhex("header", &document.header)?;
    let signature = unhex("signature", &document.signature)?;
    let certificate = unhex("patient_certificate", &document.patient_certificate)?;

    let chain = document
        .ca_chain
        .iter()
        .map(|certificate| {
            unhex("ca_chain", certificate).map(rustls::pki_types::CertificateDer::from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let anchor_der = rustls::pki_types::CertificateDer::from(ca_der);
    let anchor = webpki_anchor(&anchor_der)?;
    let end_entity_der = rustls::pki_types::CertificateDer::from(certificate.as_slice());
    let end_entity = webpki::EndEntityCert::try_from(&end_entity_der)
        .map_err(|error| ProofError::Certificate(error.to_string()))?;
    let now = rustls::pki_types::UnixTime::now();
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &chain,
            now,
            // webpki applies a *required* usage to CA certificates on the path too, and CA
            // certificates carry no EKU: require it only if present there, and check the
            // patient certificate has it below.
            webpki::KeyUsage::required_if_present(crate::ingest_usage()),
            None,
            None,
        )
        .map_err(|error| ProofError::Certificate(error.to_string()))?;
    let has_usage = x509_parser::parse_x509_certificate(&certificate)
        .ok()
        .and_then(|(_, parsed)| {
            parsed.extended_key_usage().ok().flatten().map(|usage| {
                usage
                    .value
                    .other
                    .iter()
                    .any(|oid| oid.as_bytes() == crate::ingest_usage())
            })
        })
        .unwrap_or(false);
    if !has_usage {
        return Err(ProofError::Certificate(
            "the certificate lacks the patient-data-signing usage".into(),
        ));
    }

    let header = BatchHeader::from_canonical_bytes(&header_bytes)
        .map_err(|error| ProofError::Malformed(format!("header: {error}")))?;
    let key = VerifyingKey::from_certificate_der(&certificate)
        .map_err(|error| ProofError::Certificate(error.to_string()))?;
    header
        .verify_signature(&key, &signature)
        .map_err(|error| ProofError::Signature(error.to_string()))?;
    if document.inclusion.tree_size != header.count() {
        return Err(ProofError::Inclusion(format!(
            "the proof is for a tree of {} leaves, the signed header counts {}",
            document.inclusion.tree_size,
            header.count()
        )));
    }
    let reading = Reading::from_canonical_bytes(&reading_bytes)
        .map_err(|error| ProofError::Malformed(format!("reading: {error}")))?;
    let leaf_hash = merkle::leaf_hash(&reading_bytes);
    document
        .inclusion
        .verify(&leaf_hash, &header.root())
        .map_err(|error| ProofError::Inclusion(error.to_string()))?;
    Ok(Verified {
        reading,
        leaf_hash,
        header,
    })
}

fn webpki_anchor<'a>(
    der: &'a rustls::pki_types::CertificateDer<'a>,
) -> Result<rustls::pki_types::TrustAnchor<'a>, ProofError> {
    webpki::anchor_from_trusted_cert(der)
        .map_err(|error| ProofError::Certificate(error.to_string()))
}
