//! (in progress)

/// (in progress)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {}

/// TEMPORARY STUB
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SubjectId(String);
impl std::str::FromStr for SubjectId {
    type Err = ExtensionError;
    fn from_str(s: &str) -> Result<Self, ExtensionError> {
        Ok(Self(s.to_owned()))
    }
}
impl SubjectId {
    /// stub
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Display for SubjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
