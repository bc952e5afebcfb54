//! The crate's one error type, with a typed sub-enum per domain.

use crate::batch::BatchError;
use crate::epc::EpcError;
use crate::hash::HashParseError;
use crate::identity::ExtensionError;
use crate::merkle::MerkleError;
use crate::reading::ReadingError;
use crate::signature::SignatureError;

/// Any error wardseal-core reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An EPC (SGTIN-96) URI, hex string or binary value is malformed.
    #[error(transparent)]
    Epc(#[from] EpcError),
    /// The wardseal identity extension is malformed or does not fit its role.
    #[error(transparent)]
    Extension(#[from] ExtensionError),
    /// A reading's JSON or canonical encoding is malformed.
    #[error(transparent)]
    Reading(#[from] ReadingError),
    /// A Merkle proof is malformed or does not verify.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    /// A batch header is malformed or does not continue its patient's chain.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A signature, key or certificate could not be used or did not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A hexadecimal hash is malformed.
    #[error(transparent)]
    Hash(#[from] HashParseError),
}
