//! wip
#![doc = "wardseal-pki"]

pub mod audit;
pub mod batch;
pub mod ca;
pub mod crl;
pub mod csr;
pub mod describe;
mod error;
pub mod inventory;
pub mod key;
pub mod profile;
pub mod serial;
pub mod serve;
pub mod signer;
pub mod token;
pub mod verify;

pub use error::{
    AuditError, BatchError, CaError, Cause, CsrError, Error, InventoryError, KeyError,
    ProfileError, RowError, TokenError, VerifyError,
};
