//! wardseal's simulator: a whole ward on loopback, simulated medical devices over mutual
//! TLS, load modes and the demo.
//!
//! - [`ward`] prepares a ward in a directory (CA, certificates, patient cards, contracts,
//!   devices, configuration) and runs storage and the collector from it in this process;
//!   end-to-end suites reuse the same files to run the real binaries.
//! - [`devices`] generates plausible readings of each kind, reproducibly from a seed.
//! - [`fleet`] drives a collector with simulated devices: steady, burst and soak modes.
//! - [`attacks`] performs every attack of the threat model against a running ward and
//!   reports how each was refused.
//! - [`demo`] is `wardseal-sim demo`: the ward, the devices, attacks, anchors, FHIR, a proof.
//! - [`kinds`] lists the simulated device kinds, their data types and rules.
//!
//! ```no_run
//! # async fn example() -> Result<(), wardseal_sim::Error> {
//! use wardseal_sim::ward::{RunningWard, WardFiles, WardOptions};
//!
//! let files = WardFiles::prepare(&WardOptions::new("/tmp/ward")).await?;
//! let ward = RunningWard::start(&files).await?;
//! // … devices connect to ward.collector_endpoint() with their certificates …
//! ward.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod attacks;
pub mod demo;
pub mod devices;
pub mod error;
pub mod fleet;
pub mod kinds;
pub mod ward;

pub use error::Error;
