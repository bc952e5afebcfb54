//! Shared pieces of wardseal's end-to-end suites (`tests/tests/*.rs`): what the attack and
//! fault suites need beyond a [`wardseal_sim::ward`] — reading storage's database to prove
//! what was (and was not) stored, and running the real binaries as child processes.

#![forbid(unsafe_code)]

pub mod db;
pub mod postgres;
