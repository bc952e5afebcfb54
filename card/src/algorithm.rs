//! Which signature a signer produces. The algorithms are wardseal-core's
//! [`SignatureAlgorithm`]: what a signer produces is exactly what storage verifies.

pub use wardseal_core::signature::SignatureAlgorithm;

/// How ECDSA signatures from a P-256 key are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EcdsaEncoding {
    /// DER `SEQUENCE { r, s }`, what X.509 and openssl use (the default).
    #[default]
    Der,
    /// Raw `r ‖ s`, 64 bytes.
    Raw,
}

impl EcdsaEncoding {
    /// The algorithm an ECDSA P-256 signer with this encoding reports.
    pub fn algorithm(self) -> SignatureAlgorithm {
        match self {
            Self::Der => SignatureAlgorithm::EcdsaP256Sha256,
            Self::Raw => SignatureAlgorithm::EcdsaP256Sha256Raw,
        }
    }
}

/// Converts a raw `r ‖ s` P-256 signature (what PKCS#11 `CKM_ECDSA` returns) to DER.
pub fn ecdsa_p256_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, crate::Error> {
    let malformed =
        || crate::Error::Signing("the token returned a malformed ECDSA signature".into());
    let raw = <&[u8; 64]>::try_from(raw).map_err(|_| malformed())?;
    wardseal_core::signature::ecdsa_p256_raw_to_der(raw).map_err(|_| malformed())
}
