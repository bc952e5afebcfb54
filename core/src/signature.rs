//! (in progress)

/// (in progress)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {}

/// TEMPORARY STUB
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SignatureAlgorithm {
    /// stub
    EcdsaP256Sha256,
}
impl SignatureAlgorithm {
    /// stub
    pub fn code(self) -> u8 {
        1
    }
    /// stub
    pub fn from_code(_: u8) -> Result<Self, SignatureError> {
        Ok(Self::EcdsaP256Sha256)
    }
}
/// stub
pub struct VerifyingKey;
impl VerifyingKey {
    /// stub
    pub fn verify(&self, _: SignatureAlgorithm, _: &[u8], _: &[u8]) -> Result<(), SignatureError> {
        Ok(())
    }
}
