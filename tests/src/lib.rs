//! Shared pieces of wardseal's end-to-end suites (`tests/tests/*.rs`): what the attack and
//! fault suites need beyond a [`wardseal_sim::ward`] — reading storage's database to prove
//! what was (and was not) stored, and running the real binaries as child processes.
//!
//! For the attack suite: [`db`] reads storage's tables. For the fault suite: [`stack`] a
//! whole ward of processes (the binaries, anvil and PostgreSQL as children from
//! `wardseal-testkit`, which also has the bedside reader: pcscd and a virtual card),
//! [`load`] devices that keep sending through the faults and record what was
//! acknowledged, and [`audit`] the final checks (every acknowledged reading stored exactly
//! once, every log entry anchored on chain).

#![forbid(unsafe_code)]

pub mod audit;
pub mod db;
pub mod load;
pub mod stack;
