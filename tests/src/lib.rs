//! Shared pieces of wardseal's end-to-end suites (`tests/tests/*.rs`): what the attack and
//! fault suites need beyond a [`wardseal_sim::ward`] — reading storage's database to prove
//! what was (and was not) stored, and running the real binaries as child processes.
//!
//! For the attack suite: [`db`] reads storage's tables. For the fault suite: [`procs`] runs a binary as a child that can be killed and
//! restarted, [`anvil`] and [`postgres`] the ledger node and the database as such
//! children, [`stack`] a whole ward of processes, [`pcsc`] a bedside reader (pcscd and a virtual card), [`load`] devices that keep sending
//! through the faults and record what was acknowledged, and [`audit`] the final checks
//! (every acknowledged reading stored exactly once, every log entry anchored on chain).

#![forbid(unsafe_code)]

pub mod anvil;
pub mod audit;
pub mod db;
pub mod load;
pub mod pcsc;
pub mod postgres;
pub mod procs;
pub mod stack;
