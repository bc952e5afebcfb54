//! Proof documents (`GET /v1/readings/{leaf}/proof`) and their check
//! (`wardseal-storage verify-proof FILE --ca ROOT.pem --suite … --embedded DIR|--rpc URL`),
//! trusting only the CA certificate and the chain.
//!
//! A document proves, from the CA certificate alone ([`verify`]): the patient certificate
//! chains to the CA and may sign patient data, the patient's card signed the batch header,
//! and the reading is a leaf under the signed root. Its anchor part proves, with the chain
//! ([`check_on_chain`]): the batch's header hash is a leaf of the batch-log tree whose root
//! storage anchored in the `AuditAnchor` contract, under the batch log's id and with that
//! many entries. A batch stored after the last anchoring has no anchor yet: the document
//! says `"anchor_status": "pending"` and `"anchor": null`, and fetching it again after the
//! next anchoring (`--anchor-every`) gives the anchored proof.

use serde::{Deserialize, Serialize};
use wardseal_core::batch::BatchHeader;
use wardseal_core::hash::Hash;
use wardseal_core::merkle::{self, InclusionProof, MerkleTree};
use wardseal_core::reading::Reading;
use wardseal_core::signature::VerifyingKey;

use alloy::primitives::B256;
use wardseal_contracts::{Anchor, AnchorRecord, Backend, Ledger};

use crate::batch_log;
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
    /// Whether the batch is anchored on chain yet.
    #[serde(default)]
    pub anchor_status: AnchorStatus,
    /// The anchor of the batch log covering the reading's batch (`None` while pending).
    #[serde(default)]
    pub anchor: Option<AnchorProof>,
}

/// Whether a proof's batch is anchored on chain yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorStatus {
    /// The document carries the anchor covering the batch.
    Anchored,
    /// The batch was stored after the last anchoring; ask again after the next one.
    #[default]
    Pending,
}

/// The on-chain anchor of a batch-log range and the batch's place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorProof {
    /// The log id the root was anchored under (the batch log's, [`batch_log::batch_log_id`]).
    pub log_id: Hash,
    /// The anchored RFC 9162 root of the batch-log range.
    pub root: Hash,
    /// How many batch-log entries the root covers.
    pub count: u64,
    /// When the first covered batch was stored, µs since the epoch.
    pub first_time: u64,
    /// When the last covered batch was stored, µs since the epoch.
    pub last_time: u64,
    /// The block the anchor was mined in.
    pub block: u64,
    /// The anchoring transaction, when known.
    pub tx_hash: Option<Hash>,
    /// The batch's header hash's inclusion proof under `root`.
    pub header_inclusion: InclusionProof,
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
    /// The anchor the document claims covers the batch, with its block, checked against
    /// the signed header (not yet against the chain: see [`check_on_chain`]).
    pub anchor: Option<(Anchor, u64)>,
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
    let entry = store
        .batch_log_entry(&reading.batch_hash)
        .await?
        .ok_or_else(|| Error::NotFound(format!("batch-log entry of reading {leaf}")))?;
    let anchor = match store.batch_anchor_covering(entry).await? {
        None => None,
        Some(anchor) => {
            let leaves = store
                .batch_log_hashes(anchor.first_entry, anchor.last_entry)
                .await?
                .iter()
                .map(batch_log::leaf)
                .collect::<Vec<_>>();
            let size = u64::try_from(leaves.len()).unwrap_or_default();
            let index = u64::try_from(entry - anchor.first_entry).unwrap_or(u64::MAX);
            let header_inclusion = MerkleTree::from_leaf_hashes(leaves)
                .inclusion_proof(index, size)
                .map_err(|error| Error::NotFound(format!("batch-log inclusion proof: {error}")))?;
            Some(AnchorProof {
                log_id: Hash::from(batch_log::batch_log_id().0),
                root: anchor.root,
                count: size,
                first_time: u64::try_from(anchor.first_time).unwrap_or_default(),
                last_time: u64::try_from(anchor.last_time).unwrap_or_default(),
                block: anchor.block,
                tx_hash: anchor.tx_hash.map(Hash::from),
                header_inclusion,
            })
        }
    };
    Ok(ProofDocument {
        reading: hex::encode(&reading.canonical),
        inclusion,
        header: hex::encode(&batch.header),
        signature: hex::encode(&batch.signature),
        patient_certificate: hex::encode(&batch.patient_certificate),
        ca_chain: ca_chain.iter().map(hex::encode).collect(),
        anchor_status: if anchor.is_some() {
            AnchorStatus::Anchored
        } else {
            AnchorStatus::Pending
        },
        anchor,
    })
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, ProofError> {
    hex::decode(text).map_err(|error| ProofError::Malformed(format!("{field}: {error}")))
}

/// Checks a proof offline: the patient certificate chains to `ca_der` (signature and
/// validity dates; revocation is the CA's CRL's business and is checked at ingest), the
/// card's signature over the header, the reading's inclusion under the signed root, and,
/// when the document carries an anchor, the header hash's inclusion under the anchored
/// root. Whether the chain holds that anchor is [`check_on_chain`]'s part.
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
    let anchor = verify_anchor_part(document, &header)?;
    Ok(Verified {
        reading,
        leaf_hash,
        header,
        anchor,
    })
}

/// The anchor part: consistent with the status, the header hash under the anchored root.
fn verify_anchor_part(
    document: &ProofDocument,
    header: &BatchHeader,
) -> Result<Option<(Anchor, u64)>, ProofError> {
    let anchor = match (document.anchor_status, &document.anchor) {
        (AnchorStatus::Pending, None) => return Ok(None),
        (AnchorStatus::Anchored, Some(anchor)) => anchor,
        (status, anchor) => {
            return Err(ProofError::Malformed(format!(
                "anchor_status is {status:?} but the anchor is {}",
                if anchor.is_some() {
                    "present"
                } else {
                    "missing"
                }
            )));
        }
    };
    if anchor.header_inclusion.tree_size != anchor.count {
        return Err(ProofError::AnchorInclusion(format!(
            "the inclusion proof is for a tree of {} batches, the anchor covers {}",
            anchor.header_inclusion.tree_size, anchor.count
        )));
    }
    anchor
        .header_inclusion
        .verify(&batch_log::leaf(&header.hash()), &anchor.root)
        .map_err(|error| ProofError::AnchorInclusion(error.to_string()))?;
    Ok(Some((
        Anchor {
            log_id: B256::from(*anchor.log_id.as_bytes()),
            root: B256::from(*anchor.root.as_bytes()),
            count: anchor.count,
            first_time: anchor.first_time,
            last_time: anchor.last_time,
        },
        anchor.block,
    )))
}

/// Checks a verified proof's anchor against the chain: the `AuditAnchor` contract holds
/// exactly the claimed root, under the batch log's id, with the claimed count and times,
/// mined in the claimed block. Returns the chain's record.
///
/// Fails with [`ProofError::NotAnchored`] for a pending document, [`ProofError::NotOnChain`]
/// when the root was never anchored, [`ProofError::AnchorMismatch`] when the chain's record
/// says something else, and [`ProofError::Chain`] when the chain cannot be asked.
pub async fn check_on_chain<B: Backend>(
    ledger: &Ledger<B>,
    verified: &Verified,
) -> Result<AnchorRecord, ProofError> {
    let Some((claimed, block)) = verified.anchor else {
        return Err(ProofError::NotAnchored);
    };
    if claimed.log_id != batch_log::batch_log_id() {
        return Err(ProofError::AnchorMismatch(format!(
            "the document's log id {} is not the batch log's {}",
            claimed.log_id,
            batch_log::batch_log_id()
        )));
    }
    let record = ledger
        .anchored(claimed.root)
        .await
        .map_err(|error| ProofError::Chain(error.to_string()))?
        .ok_or(ProofError::NotOnChain {
            root: Hash::from(claimed.root.0),
        })?;
    let mut differences = Vec::new();
    if record.anchor.log_id != claimed.log_id {
        differences.push(format!("log id {} on chain", record.anchor.log_id));
    }
    if record.anchor.count != claimed.count {
        differences.push(format!(
            "count {} on chain, {} in the document",
            record.anchor.count, claimed.count
        ));
    }
    if (record.anchor.first_time, record.anchor.last_time)
        != (claimed.first_time, claimed.last_time)
    {
        differences.push(format!(
            "times {}..{} on chain, {}..{} in the document",
            record.anchor.first_time,
            record.anchor.last_time,
            claimed.first_time,
            claimed.last_time
        ));
    }
    if record.block != block {
        differences.push(format!(
            "block {} on chain, {block} in the document",
            record.block
        ));
    }
    if differences.is_empty() {
        Ok(record)
    } else {
        Err(ProofError::AnchorMismatch(differences.join("; ")))
    }
}

fn webpki_anchor<'a>(
    der: &'a rustls::pki_types::CertificateDer<'a>,
) -> Result<rustls::pki_types::TrustAnchor<'a>, ProofError> {
    webpki::anchor_from_trusted_cert(der)
        .map_err(|error| ProofError::Certificate(error.to_string()))
}
