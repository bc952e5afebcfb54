//! wardseal-core: the data model every wardseal component shares. No I/O.
//!
//! wardseal secures a hospital's medical-IoT data path: devices send readings over
//! mutual TLS to a ward collector, the patient's smart card signs them in batches, and
//! storage keeps only what a card signed and the rules allow. This crate defines what
//! all of them agree on, so a byte means the same thing on the device, in the collector,
//! on the card and in storage:
//!
//! | module | what it defines |
//! |---|---|
//! | [`epc`] | GS1 EPC SGTIN-96 device ids: tag URI, pure-identity URI, 12-byte binary, hex |
//! | [`identity`] | the wardseal X.509 identity extension (role, EPC, group, rule, subject, Ethereum address), its OIDs and ASN.1 module |
//! | [`reading`] | data types with LOINC/MDC/UCUM codes, the JSON devices POST, and the canonical bytes a leaf hash is taken over |
//! | [`decimal`] | exact decimal values (`1.50` and `1.5` are one value) |
//! | [`merkle`] | RFC 9162 Merkle trees, inclusion and consistency proofs |
//! | [`batch`] | batch headers the patient's card signs, chained per patient |
//! | [`signature`] | verification of card signatures: ECDSA P-256, RSA-PSS, DSA, Ed25519, with keys from X.509 certificates |
//! | [`exchange`] | the JSON documents collectors and storage exchange (batch submissions, receipts, ward assignments) |
//!
//! Design rules: every parser is strict and returns a typed error (one [`Error`] with a
//! sub-enum per domain); every encoding that is hashed or signed is canonical (one value,
//! one byte string) and versioned; nothing here does I/O, so the same code runs in a
//! daemon, a CLI, a fuzzer and a test.
//!
//! # Example: from a device's JSON to a proof against a signed root
//!
//! ```
//! use wardseal_core::batch::BatchHeader;
//! use wardseal_core::epc::Sgtin96;
//! use wardseal_core::merkle::MerkleTree;
//! use wardseal_core::reading::{json, Reading};
//! use wardseal_core::signature::SignatureAlgorithm;
//!
//! // The device's EPC comes from its certificate, never from the body.
//! let device: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.6789".parse()?;
//! let body = br#"[{"type":"heart_rate","value":72,"unit":"/min","time":"2026-11-21T08:00:00Z","seq":1},
//!                 {"type":"spo2","value":97,"unit":"%","time":"2026-11-21T08:00:00Z","seq":2}]"#;
//! let readings: Vec<Reading> = json::parse_body(body)?
//!     .into_iter()
//!     .map(|parsed| parsed.map(|m| Reading::new(device.clone(), m)))
//!     .collect::<Result<_, _>>()?;
//!
//! // One Merkle tree per patient batch; the header is what the patient's card signs.
//! let leaves: Vec<_> = readings.iter().map(Reading::leaf_hash).collect();
//! let tree = MerkleTree::from_leaf_hashes(leaves.clone());
//! let time = readings[0].measurement().time();
//! let header = BatchHeader::for_leaves(
//!     "P-000123".parse()?,
//!     "ward-3A".parse()?,
//!     None,
//!     &leaves,
//!     (time, time),
//!     SignatureAlgorithm::EcdsaP256Sha256,
//! )?;
//! assert_eq!(header.root(), tree.root());
//!
//! // Anyone holding the signed header can check that reading 1 is in the batch.
//! let proof = tree.inclusion_proof(1, tree.len())?;
//! proof.verify(&readings[1].leaf_hash(), &header.root())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `core/examples/ward_tour.rs` continues this with the card's signature and the checks
//! storage makes (run `./scripts/demo`).

pub mod alert;
pub mod batch;
mod codec;
pub mod decimal;
pub mod epc;
mod error;
pub mod exchange;
pub mod gap;
pub mod hash;
pub mod identity;
pub mod merkle;
pub mod reading;
pub mod signature;

pub use error::Error;
pub use hash::Hash;
