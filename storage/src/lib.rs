//! The wardseal storage server (application layer): keeps only card-signed, rule-abiding
//! data, and lets only the clinicians responsible for a patient (or those the patient
//! consented to) read it.
//!
//! # Design
//!
//! - The front door is `wardseal-net`: mutual TLS against the hospital CA with CRLs,
//!   reloadable, no session resumption, per-request revocation re-check.
//! - [`ingest`] verifies everything about a batch before a byte is stored (certificates,
//!   card signature, Merkle root, chain continuity, device registry and assignment, rules)
//!   and records refusals with a stable code ([`Refusal::code`]).
//! - [`store`] keeps batches, readings, rejections, admissions, assignments and the access
//!   log (one module per table family) in SQLite (one 0600 file, WAL) or PostgreSQL, with one set of migrations.
//! - [`chain`] asks the `Ledger` (embedded revm or JSON-RPC) for devices, rules (kept as a
//!   native replica that follows the ledger's events), consent, and anchors the Merkle
//!   roots of the access log ([`access`]) and of the batch log ([`batch_log`]).
//! - [`gap`] records the gaps collectors declare when storage refused a batch for good
//!   (card-signed, in chain order), so a patient's chain continues past a quarantined
//!   batch, and accepts that batch later to fill the gap (`docs/delivery.md`).
//! - [`fhir`] is the FHIR R4 API at `/fhir` (Observation search on a keyset cursor,
//!   Patient, Device, Encounter, Flag with `$acknowledge`, the CapabilityStatement),
//!   behind the same access rules; [`proof`] builds and checks
//!   offline proofs of single readings.
//! - [`access`] also admits authorities (laboratories, insurers, pharmacies, other
//!   hospitals) registered on chain with the patient's on-chain grant; [`visits`] records
//!   the visits they make (`POST /v1/visits`).
//! - [`alerts`] keeps the durable alert record (clinical alerts from the collector and
//!   from each batch's rule re-check, acknowledgement, escalation, resolution) and serves the live
//!   alert stream (server-sent events) through [`api::Storage::respond`].
//! - [`subscriptions`] serves FHIR subscriptions (R4 Backport IG, topic-based): topics
//!   for new observations and alerts raised or acknowledged, rest-hook and websocket
//!   channels, events stored durably and delivered in order with retries.
//! - [`ui`] serves the ward screen (`/ui/`), a page built on the FHIR API and the live
//!   stream, and checks proofs step by step for it.
//! - [`api::to_wire`] is the one error-to-wire mapping; [`metrics`] backs `GET /metrics`.
//! - [`Server::start`] is the one start-up path (the binary, the test suites and the
//!   simulator): a [`ServerConfig`] and the ledger in, a running server out, with the
//!   anchoring timer, [`Server::reload`] (what SIGHUP does) and [`Server::shutdown`].
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wardseal_core::identity::SubjectId;
//! let store = wardseal_storage::store::Store::open("sqlite:///var/lib/wardseal/storage.db").await?;
//! let patient = SubjectId::new("patient-0042")?;
//! let nurse = SubjectId::new("nurse-1")?;
//! store.admit(&patient, "ward-7", "12", "B", None).await?;
//! store.assign_staff(&nurse, &patient, "nurse").await?;
//! # Ok(())
//! # }
//! ```

pub mod access;
pub mod alerts;
pub mod api;
pub mod assignments;
pub mod batch_log;
pub mod chain;
mod error;
pub mod events;
pub mod fhir;
pub mod gap;
pub mod ingest;
pub mod metrics;
pub mod proof;
pub mod server;
pub mod store;
pub mod subscriptions;
pub mod ui;
pub mod visits;

pub use error::{AccessRefusal, Error, FhirError, ProofError, Refusal};
pub use server::{AnchorRound, Server, ServerConfig};

/// The DER content octets of the patient-data-signing EKU OID.
pub(crate) fn ingest_usage() -> &'static [u8] {
    static USAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    USAGE.get_or_init(|| {
        wardseal_core::identity::PATIENT_DATA_SIGNING_OID
            .as_bytes()
            .to_vec()
    })
}
