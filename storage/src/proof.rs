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
//!
//! [`verify_each`] runs the same checks one by one and reports each (the ward screen's
//! proof badge, `GET /v1/readings/{leaf}/verify`), so the server's verification and the
//! offline one are one piece of code.

use serde::{Deserialize, Serialize};
use wardseal_core::batch::BatchHeader;
use wardseal_core::hash::Hash;
use wardseal_core::merkle::{self, InclusionProof, MerkleTree};
use wardseal_core::reading::Reading;
use wardseal_core::signature::VerifyingKey;

use alloy::primitives::B256;
use wardseal_contracts::{Anchor, AnchorRecord, Backend, Ledger};

use wardseal_core::identity::Role;
use wardseal_net::peer::PeerIdentity;

use crate::api::Storage;
use crate::batch_log;
use crate::error::{AccessRefusal, Error, ProofError};
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

/// The proof of the reading with leaf hash `leaf` (64 hex digits), for `peer`: the
/// patient whose card signed it, or staff allowed to read the patient's data (checked and
/// logged by [`crate::access::authorize`] as `purpose` and the leaf).
pub async fn for_peer(
    storage: &Storage,
    peer: &PeerIdentity,
    leaf: &str,
    purpose: &str,
) -> Result<ProofDocument, Error> {
    peer.require_any_role(&[Role::Staff, Role::Patient])
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))?;
    let leaf = Hash::from_slice(&hex::decode(leaf).unwrap_or_default())
        .map_err(|_| Error::BadRequest("the leaf hash must be 64 hex digits".into()))?;
    let ca_chain =
        wardseal_net::files::certificates("CA bundle", &storage.tls.settings().ca_bundle)?
            .into_iter()
            .map(|certificate| certificate.to_vec())
            .collect::<Vec<_>>();
    let document = build(&storage.store, &leaf, &ca_chain).await?;
    let header = hex::decode(&document.header)
        .ok()
        .and_then(|bytes| BatchHeader::from_canonical_bytes(&bytes).ok())
        .ok_or_else(|| Error::NotFound("the reading's batch".into()))?;
    let patient = header.patient().as_str().to_owned();
    let subject = peer
        .identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))?;
    if peer.role() == Role::Patient {
        if subject != patient {
            return Err(Error::Access(AccessRefusal::NotResponsible {
                staff: subject,
                patient,
            }));
        }
    } else {
        crate::access::authorize(storage, peer, &patient, &format!("{purpose} {leaf}")).await?;
    }
    Ok(document)
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
    let certificate = check_certificate(document, ca_der)?;
    let header = check_card_signature(document, &certificate)?;
    let (reading, leaf_hash) = check_inclusion(document, &header)?;
    let anchor = verify_anchor_part(document, &header)?;
    Ok(Verified {
        reading,
        leaf_hash,
        header,
        anchor,
    })
}

/// The first check: the patient certificate chains to `ca_der` through the document's
/// CA certificates and carries the patient-data-signing usage. Returns it (DER).
fn check_certificate(document: &ProofDocument, ca_der: &[u8]) -> Result<Vec<u8>, ProofError> {
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
    Ok(certificate)
}

/// The second check: the card holding `certificate` signed the document's batch header.
fn check_card_signature(
    document: &ProofDocument,
    certificate: &[u8],
) -> Result<BatchHeader, ProofError> {
    let header_bytes = unhex("header", &document.header)?;
    let signature = unhex("signature", &document.signature)?;
    let header = BatchHeader::from_canonical_bytes(&header_bytes)
        .map_err(|error| ProofError::Malformed(format!("header: {error}")))?;
    let key = VerifyingKey::from_certificate_der(certificate)
        .map_err(|error| ProofError::Certificate(error.to_string()))?;
    header
        .verify_signature(&key, &signature)
        .map_err(|error| ProofError::Signature(error.to_string()))?;
    Ok(header)
}

/// The third check: the reading is a leaf of the tree whose root `header` signs.
fn check_inclusion(
    document: &ProofDocument,
    header: &BatchHeader,
) -> Result<(Reading, Hash), ProofError> {
    let reading_bytes = unhex("reading", &document.reading)?;
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
    Ok((reading, leaf_hash))
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

/// One check of a proof document, in the order [`verify_each`] runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The patient certificate chains to the CA and may sign patient data.
    Certificate,
    /// The patient's card signed the batch header.
    CardSignature,
    /// The reading is a leaf under the signed root.
    Inclusion,
    /// The batch's header hash is a leaf under the anchored batch-log root.
    AnchorInclusion,
    /// The chain holds that anchor, as the document claims it.
    OnChain,
}

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// It holds.
    Passed,
    /// It does not hold; the detail says why.
    Failed,
    /// It cannot be made yet: the batch was stored after the last anchoring.
    Pending,
    /// An earlier check failed, so this one was not made.
    NotRun,
}

/// One check's outcome, with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Which check.
    pub check: Check,
    /// How it went.
    pub outcome: CheckOutcome,
    /// What was found.
    pub detail: String,
}

/// Every check of one proof document, step by step (`GET /v1/readings/{leaf}/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Whether every check passed, the anchor on chain included.
    pub verified: bool,
    /// The patient whose card signed the batch (from the signed header, once checked).
    pub patient: Option<String>,
    /// The batch's sequence number in the patient's chain (once the signature is checked).
    pub batch: Option<u64>,
    /// The collector that built the batch (once the signature is checked).
    pub collector: Option<String>,
    /// The block the batch log's root was anchored in (once the chain confirmed it).
    pub block: Option<u64>,
    /// The checks, in order.
    pub checks: Vec<CheckReport>,
}

/// Runs the checks of [`verify`] and [`check_on_chain`] one by one against `ca_der` and
/// `ledger`, reporting each: what was found when it passed, why when it failed; the checks
/// after a failed one are reported as not run. A document whose batch is not anchored yet
/// passes the offline checks and reports the anchor checks as pending.
pub async fn verify_each<B: Backend>(
    document: &ProofDocument,
    ca_der: &[u8],
    ledger: &Ledger<B>,
) -> Verification {
    let mut report = Verification {
        verified: false,
        patient: None,
        batch: None,
        collector: None,
        block: None,
        checks: Vec::new(),
    };
    let passed = |check: Check, detail: String| CheckReport {
        check,
        outcome: CheckOutcome::Passed,
        detail,
    };
    let failed = |check: Check, error: ProofError| CheckReport {
        check,
        outcome: CheckOutcome::Failed,
        detail: error.to_string(),
    };
    let run = |report: &mut Verification, step: CheckReport| {
        let ok = step.outcome != CheckOutcome::Failed;
        report.checks.push(step);
        ok
    };
    let finish = |mut report: Verification| {
        for check in [
            Check::Certificate,
            Check::CardSignature,
            Check::Inclusion,
            Check::AnchorInclusion,
            Check::OnChain,
        ] {
            if !report.checks.iter().any(|step| step.check == check) {
                report.checks.push(CheckReport {
                    check,
                    outcome: CheckOutcome::NotRun,
                    detail: "not made: an earlier check failed".into(),
                });
            }
        }
        report
    };

    let certificate = match check_certificate(document, ca_der) {
        Ok(certificate) => {
            let subject = x509_parser::parse_x509_certificate(&certificate)
                .map(|(_, parsed)| parsed.subject().to_string())
                .unwrap_or_default();
            run(
                &mut report,
                passed(
                    Check::Certificate,
                    format!(
                        "the patient certificate ({subject}) chains to the hospital CA, is within its validity and may sign patient data"
                    ),
                ),
            );
            certificate
        }
        Err(error) => {
            run(&mut report, failed(Check::Certificate, error));
            return finish(report);
        }
    };
    let header = match check_card_signature(document, &certificate) {
        Ok(header) => {
            report.patient = Some(header.patient().as_str().to_owned());
            report.batch = Some(header.sequence());
            report.collector = Some(header.collector().as_str().to_owned());
            run(
                &mut report,
                passed(
                    Check::CardSignature,
                    format!(
                        "{}'s card signed batch {} from {} (header {})",
                        header.patient().as_str(),
                        header.sequence(),
                        header.collector().as_str(),
                        header.hash()
                    ),
                ),
            );
            header
        }
        Err(error) => {
            run(&mut report, failed(Check::CardSignature, error));
            return finish(report);
        }
    };
    let (reading, leaf_hash) = match check_inclusion(document, &header) {
        Ok(found) => found,
        Err(error) => {
            run(&mut report, failed(Check::Inclusion, error));
            return finish(report);
        }
    };
    run(
        &mut report,
        passed(
            Check::Inclusion,
            format!(
                "the reading (leaf {leaf_hash}) is leaf {} of the {} under the signed root {}",
                document.inclusion.leaf_index,
                header.count(),
                header.root()
            ),
        ),
    );
    let anchor = match verify_anchor_part(document, &header) {
        Ok(None) => {
            for check in [Check::AnchorInclusion, Check::OnChain] {
                report.checks.push(CheckReport {
                    check,
                    outcome: CheckOutcome::Pending,
                    detail: "the batch was stored after the last anchoring; ask again after the next one".into(),
                });
            }
            return report;
        }
        Ok(Some(anchor)) => anchor,
        Err(error) => {
            run(&mut report, failed(Check::AnchorInclusion, error));
            return finish(report);
        }
    };
    run(
        &mut report,
        passed(
            Check::AnchorInclusion,
            format!(
                "the batch's header is entry {} of the {} batches under the batch-log root {}",
                document
                    .anchor
                    .as_ref()
                    .map_or(0, |anchor| anchor.header_inclusion.leaf_index),
                anchor.0.count,
                Hash::from(anchor.0.root.0)
            ),
        ),
    );
    let verified = Verified {
        reading,
        leaf_hash,
        header,
        anchor: Some(anchor),
    };
    match check_on_chain(ledger, &verified).await {
        Ok(record) => {
            report.block = Some(record.block);
            run(
                &mut report,
                passed(
                    Check::OnChain,
                    format!(
                        "the AuditAnchor contract holds that root, anchored by {} in block {}",
                        record.anchorer, record.block
                    ),
                ),
            );
            report.verified = true;
        }
        Err(error) => {
            run(&mut report, failed(Check::OnChain, error));
        }
    }
    report
}

fn webpki_anchor<'a>(
    der: &'a rustls::pki_types::CertificateDer<'a>,
) -> Result<rustls::pki_types::TrustAnchor<'a>, ProofError> {
    webpki::anchor_from_trusted_cert(der)
        .map_err(|error| ProofError::Certificate(error.to_string()))
}
