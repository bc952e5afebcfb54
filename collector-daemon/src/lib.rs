//! wardseal-collector: the ward gateway between medical devices and storage.
//!
//! # Design
//!
//! - **Ingest** ([`ingest`]): `POST /v1/readings` over mutual TLS only; the device's
//!   identity (EPC, group, rule) comes from its certificate's wardseal extension, never
//!   from the body. Each check has its own HTTP status and machine code
//!   ([`error::Rejection`], the one error-to-wire map).
//! - **Durable spool** ([`spool`]): SQLite in WAL mode with `synchronous=FULL`; one writer
//!   thread commits many requests per transaction (group commit). A 202 means the reading
//!   *and* the device's replay high-water mark are on disk. A full disk answers 507 and
//!   drops nothing. Every other module reaches the database through typed `Spool`
//!   methods; the SQL lives in that one module.
//! - **Decision log** ([`decision_log`]): every decision is a Merkle leaf; the root of the
//!   unanchored leaves is anchored on chain every interval through the `Ledger`.
//! - **Batches** ([`batcher`]): per patient, an RFC 9162 Merkle tree over the pending
//!   readings, a header chained to the previous one, signed once by the patient's card.
//!   While the card signs, new readings accumulate, so batches grow with the load.
//! - **Forwarding** ([`forwarder`]): batches go to storage over mutual TLS (the pooled
//!   client of `wardseal-net`, re-exported in [`client`]), in chain order, at least once
//!   with backoff, each as the spool stored it (byte for byte); a spool row is deleted
//!   only after storage's receipt. A batch storage refuses for good goes to the
//!   [`quarantine`], whole, and the patient's chain continues past it with a card-signed
//!   gap record (`docs/delivery.md`); an administrator lists, inspects, resubmits or
//!   resolves it (`wardseal-collector quarantine`).
//! - **Background loops** (assignments, ledger follower, anchoring, CRL refresh, bedside
//!   readers) are named functions that [`daemon::Daemon::start`] spawns; logs go through
//!   `tracing` and the binary installs the subscriber (`wardseal_net::logging`).
//! - **Alerts** ([`alerts`]): a reading past an alarm limit raises a clinical alert at
//!   ingest, durable in the spool's outbox before the 202, pushed to storage at once
//!   (`POST /v1/alerts`); technical alerts for silent devices, absent cards and a filling
//!   spool.
//! - **Metrics** ([`metrics`]): `prometheus-client`, written in the Prometheus text format.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wardseal_collector::spool::{Spool, SpoolOptions};
//! let dir = tempfile::tempdir()?;
//! let spool = Spool::open(SpoolOptions {
//!     path: dir.path().join("spool.db"),
//!     max_bytes: None,
//!     max_group: 1024,
//! })?;
//! assert_eq!(spool.depth(), 0);
//! # Ok(())
//! # }
//! ```

pub mod alerts;
mod background;
pub mod batcher;
pub mod client;
pub mod config;
pub mod daemon;
pub mod decision_log;
pub mod error;
pub mod forwarder;
pub mod ingest;
pub mod metrics;
pub mod quarantine;
pub mod spool;

pub use error::{ConfigError, Error, ForwardError, Rejection, SpoolError};
