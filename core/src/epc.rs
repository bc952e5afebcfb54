//! (in progress)

/// (in progress)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpcError {}

/// TEMPORARY STUB (replaced by the epc branch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sgtin96([u8; 12]);
impl Sgtin96 {
    /// stub
    pub fn from_bytes(bytes: &[u8; 12]) -> Result<Self, EpcError> {
        Ok(Self(*bytes))
    }
    /// stub
    pub fn to_bytes(&self) -> [u8; 12] {
        self.0
    }
}
impl std::str::FromStr for Sgtin96 {
    type Err = EpcError;
    fn from_str(_: &str) -> Result<Self, EpcError> {
        Ok(Self([0x30; 12]))
    }
}
impl std::fmt::Display for Sgtin96 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stub")
    }
}
