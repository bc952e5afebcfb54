//! A tour of wardseal's data path in one process, using only wardseal-core: what a
//! device is, what it sends, what the collector makes of it, what the patient's card
//! signs, and what storage checks before it keeps a byte.
//!
//! Run it with `./scripts/demo` or `cargo run -p wardseal-core --example ward_tour`.
//! The patient's card is played by a fixed software P-256 key: the real collector asks a
//! smart card or SoftHSM token (wardseal-card) for this signature.
#![expect(
    clippy::print_stdout,
    reason = "printing the tour is this program's job"
)]

use std::error::Error;

use p256::ecdsa::{DerSignature, SigningKey, signature::Signer as _};
use p256::pkcs8::EncodePublicKey as _;
use wardseal_core::batch::{BatchError, BatchHeader};
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId, SubjectId};
use wardseal_core::merkle::MerkleTree;
use wardseal_core::reading::{Reading, json};
use wardseal_core::signature::{SignatureAlgorithm, VerifyingKey};
use wardseal_core::{Hash, decimal::Decimal};

const DEVICE_BODY: &str = r#"[
  {"type": "heart_rate", "value": 72, "unit": "/min", "time": "2026-11-21T08:00:00Z", "seq": 1041},
  {"type": "spo2", "value": 97, "unit": "%", "time": "2026-11-21T08:00:00Z", "seq": 1042},
  {"type": "body_temperature", "value": 36.60, "unit": "Cel", "time": "2026-11-21T08:00:01Z", "seq": 1043},
  {"type": "blood_pressure", "systolic": 121, "diastolic": 79, "unit": "mm[Hg]", "time": "2026-11-21T08:00:02Z", "seq": 1044},
  {"type": "ecg", "unit": "mV", "time": "2026-11-21T08:00:03Z", "seq": 1045,
   "samples": {"origin": 0, "period_ms": 4, "factor": 0.005, "data": [2, -1, 140, 35, -12, 0, 3]}},
  {"type": "heart_rate", "value": "73", "unit": "/min", "time": "2026-11-21T08:00:04Z", "seq": 1046}
]"#;

fn step(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<(), Box<dyn Error>> {
    step("1. A device and its certificate extension");
    let epc: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789".parse()?;
    println!("EPC tag URI       {}", epc.tag_uri());
    println!("pure identity     {}", epc.pure_identity_uri());
    println!("binary (hex)      {}", epc.to_hex());
    let identity = Identity::device(epc.clone(), GroupId(7), RuleId(3));
    let extension = identity.to_der();
    println!(
        "identity extension (DER, {} bytes) {}",
        extension.len(),
        hex::encode(&extension)
    );
    let decoded = Identity::from_der(&extension)?;
    println!(
        "decoded           role {}, group {}, rule {}",
        decoded.role(),
        decoded.group_id().map_or(0, |g| g.0),
        decoded.rule_id().map_or(0, |r| r.0)
    );

    step("2. The device POSTs readings (JSON); each is checked on its own");
    let mut readings = Vec::new();
    for (index, parsed) in json::parse_body(DEVICE_BODY.as_bytes())?
        .into_iter()
        .enumerate()
    {
        match parsed {
            Ok(measurement) => {
                println!(
                    "#{index} accepted    {} seq {}",
                    measurement.data_type(),
                    measurement.sequence()
                );
                // The collector binds each reading to the EPC of the certificate that sent it.
                readings.push(Reading::new(epc.clone(), measurement));
            }
            Err(error) => println!("#{index} refused     {error}"),
        }
    }
    println!(
        "36.60 and 36.6 are one value: {}",
        "36.60".parse::<Decimal>()? == "36.6".parse::<Decimal>()?
    );

    step("3. Canonical bytes and RFC 9162 leaf hashes");
    let leaves: Vec<Hash> = readings.iter().map(Reading::leaf_hash).collect();
    for (reading, leaf) in readings.iter().zip(&leaves) {
        println!(
            "{:<17} {:>4} bytes  leaf {leaf}",
            reading.measurement().data_type().to_string(),
            reading.canonical_bytes().len()
        );
    }

    step("4. The patient's batch: Merkle root and header, signed by the patient's card");
    let tree = MerkleTree::from_leaf_hashes(leaves.clone());
    let patient: SubjectId = "P-000123".parse()?;
    let collector: SubjectId = "ward-3A".parse()?;
    let first = readings
        .iter()
        .map(|r| r.measurement().time())
        .min()
        .ok_or("no readings")?;
    let last = readings
        .iter()
        .map(|r| r.measurement().time())
        .max()
        .ok_or("no readings")?;
    let header = BatchHeader::for_leaves(
        patient.clone(),
        collector.clone(),
        None,
        &leaves,
        (first, last),
        SignatureAlgorithm::EcdsaP256Sha256,
    )?;
    println!("root              {}", tree.root());
    println!("header hash       {} (what the card signs)", header.hash());
    let card = SigningKey::from_slice(Hash::sha256(b"wardseal demo patient card").as_bytes())?;
    let signature: DerSignature = card.sign(&header.canonical_bytes());
    println!(
        "card signature    {} bytes, ECDSA P-256",
        signature.as_bytes().len()
    );

    step("5. Storage checks before it keeps anything");
    let card_public = card.verifying_key().to_public_key_der()?;
    let key = VerifyingKey::from_spki_der(card_public.as_bytes())?;
    header.verify_signature(&key, signature.as_bytes())?;
    println!("signature         valid ({key})");
    let recomputed =
        MerkleTree::from_leaf_hashes(readings.iter().map(Reading::leaf_hash).collect());
    println!("root recomputed   {}", recomputed.root() == header.root());
    header.check_continues(None)?;
    println!("chain             batch 1 starts the patient's chain");

    let mut tampered = readings.clone();
    let forged = json::parse_measurement(
        r#"{"type":"heart_rate","value":180,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1041}"#,
    )?;
    tampered[0] = Reading::new(epc.clone(), forged);
    let forged_root =
        MerkleTree::from_leaf_hashes(tampered.iter().map(Reading::leaf_hash).collect()).root();
    println!(
        "tampered reading  root matches signed header: {}",
        forged_root == header.root()
    );

    let second = BatchHeader::for_leaves(
        patient,
        collector,
        Some(&header.tip()),
        &leaves[..1],
        (first, first),
        SignatureAlgorithm::EcdsaP256Sha256,
    )?;
    match second.check_continues(Some(&second.tip())) {
        Err(error @ BatchError::Replay { .. }) => println!("replayed batch    refused: {error}"),
        other => println!("replayed batch    unexpected: {other:?}"),
    }
    println!(
        "next batch        {:?}",
        second
            .check_continues(Some(&header.tip()))
            .map(|()| "continues the chain")
    );

    step("6. Proof that one reading is in the signed batch");
    let proof = tree.inclusion_proof(2, tree.len())?;
    proof.verify(&leaves[2], &header.root())?;
    println!(
        "reading #2 ({}) is in the batch signed by the card",
        readings[2].measurement().data_type()
    );
    println!("proof             {}", serde_json::to_string(&proof)?);
    println!("reading as stored {}", serde_json::to_string(&readings[2])?);
    Ok(())
}
