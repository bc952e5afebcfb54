//! wardseal-core: the data model every wardseal component shares. No I/O.
//!
//! (Crate documentation with the design overview and a runnable example is written
//! once the modules below are complete.)

pub mod batch;
mod codec;
pub mod decimal;
pub mod epc;
mod error;
pub mod hash;
pub mod identity;
pub mod merkle;
pub mod reading;
pub mod signature;

pub use error::Error;
pub use hash::Hash;
