//! (in progress)

/// (in progress)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {}

/// stub
pub fn leaf_hash(bytes: &[u8]) -> crate::Hash {
    let mut v = vec![0u8];
    v.extend_from_slice(bytes);
    crate::Hash::sha256(&v)
}
/// stub
pub fn root(_leaves: &[crate::Hash]) -> crate::Hash {
    crate::Hash::ZERO
}
