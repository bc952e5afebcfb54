//! wardseal's one test kit: the real components every suite runs against, started one
//! way each, for the tests and benchmarks of every crate and for the simulator's ward.
//!
//! # What is here
//!
//! - [`postgres`]: a throwaway PostgreSQL 15 cluster (`initdb` + `pg_ctl` as user
//!   `postgres` when root, as the current user otherwise) on a free loopback port, stopped
//!   by the postmaster's PID when dropped; [`Postgres::start`] honours `DATABASE_URL`.
//! - [`pcsc`]: a `pcscd` of the test's own with vsmartcard's vpcd readers and a virtual
//!   card, serialised across test binaries by one lock file.
//! - [`anvil`]: anvil on a free loopback port, with or without a state file, killable
//!   and restartable; anvil's funded development accounts.
//! - [`softhsm`]: private SoftHSM2 stores (the `wardseal-softhsm` crate, re-exported: it
//!   stays a crate of its own because it depends on no wardseal crate, so the card's and
//!   the CA's own tests and benchmarks use SoftHSM without building the kit's Ethereum
//!   and CA dependencies).
//! - [`pki`]: the test PKI, a real `wardseal-pki` CA issuing certificates as files and
//!   enrolling patient cards on SoftHSM tokens.
//! - [`process`]: the workspace's binaries (and anvil) as child processes that are killed
//!   by PID when dropped, with their output in a log file.
//! - [`wait`]: free loopback ports and bounded waits (until listening, until a condition
//!   holds).
//! - [`browser`]: Debian's Chromium, headless, under `chromium-driver` (WebDriver), with
//!   a client certificate in its own NSS database, selected without a prompt.
//!
//! # Design
//!
//! The kit depends only on the crates below the servers (core, pki, card, contracts and
//! SoftHSM), so storage's and the collector's dev-dependencies and the simulator can use
//! it without a cycle; suites that need a whole ward (`tests/`) build it from the
//! simulator on top of the kit. A fixture that cannot start (PostgreSQL, pcscd, anvil or
//! SoftHSM not installed) is an [`Error`] that says what to install: a suite that needs it
//! fails, it never skips. Everything a fixture starts it stops when dropped, by PID, so a
//! failing test leaves nothing running.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use wardseal_core::identity::Identity;
//! use wardseal_testkit::{Postgres, TestPki, free_port, wait_until};
//!
//! # async fn example() -> Result<(), wardseal_testkit::Error> {
//! // A CA in a temporary directory, and a storage certificate from it.
//! let pki = TestPki::new().await?;
//! let storage = pki.issue(Identity::storage(None, None)).await?;
//! assert!(storage.key.is_file());
//!
//! // A database: DATABASE_URL's, or a throwaway cluster stopped when `postgres` drops.
//! let postgres = Postgres::start()?;
//! assert!(postgres.url().starts_with("postgres://"));
//!
//! // A port for a server, and a bounded wait on a condition.
//! let port = free_port()?;
//! wait_until("the CRL written", Duration::from_secs(5), || pki.crl().is_file())?;
//! # let _ = port;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod anvil;
pub mod browser;
mod error;
pub mod pcsc;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod wait;

pub use wardseal_softhsm as softhsm;

pub use anvil::{Anvil, AnvilOptions};
pub use browser::{Browser, BrowserOptions};
pub use error::Error;
pub use pcsc::Pcscd;
pub use pki::{CertificateFiles, TestPki};
pub use postgres::{Postgres, PostgresCluster};
pub use process::Process;
pub use wait::{
    bind_retrying, eventually, free_port, runtime, wait_listening, wait_until, wait_until_async,
};
