//! Which signature a signer produces.
//!
//! SWITCH (merge with the signature work in wardseal-core): the four ECDSA/RSA/DSA
//! variants mirror `wardseal_core::signature::SignatureAlgorithm` one to one, with the
//! same names, codes and wire names; when that lands, replace this enum by a re-export and
//! keep [`SignatureAlgorithm::Ed25519`] only if core gains it (storage does not verify
//! Ed25519 yet).

/// A signature algorithm over a SHA-256 digest, including the signature's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA P-256 over SHA-256, signature as DER `SEQUENCE { r, s }` (X.509, openssl).
    EcdsaP256Sha256,
    /// ECDSA P-256 over SHA-256, signature as raw `r ‖ s` (64 bytes; what PKCS#11 returns).
    EcdsaP256Sha256Raw,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    RsaPssSha256,
    /// DSA (FIPS 186-4, 2048/256) over SHA-256, signature as DER `SEQUENCE { r, s }`.
    DsaSha256,
    /// Ed25519 (pure EdDSA) over the 32 bytes of the SHA-256 digest. Software keys only.
    Ed25519,
}

impl SignatureAlgorithm {
    /// The stable wire name (the same as wardseal-core's `as_str`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::EcdsaP256Sha256Raw => "ecdsa-p256-sha256-raw",
            Self::RsaPssSha256 => "rsa-pss-sha256",
            Self::DsaSha256 => "dsa-sha256",
            Self::Ed25519 => "ed25519-sha256",
        }
    }
}

impl std::fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// Converts a raw `r ‖ s` P-256 signature to DER.
///
/// SWITCH: `wardseal_core::signature::ecdsa_p256_raw_to_der` once merged.
pub fn ecdsa_p256_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, crate::Error> {
    let signature = p256::ecdsa::Signature::from_slice(raw)
        .map_err(|_| crate::Error::Signing("token returned a malformed ECDSA signature".into()))?;
    Ok(signature.to_der().as_bytes().to_vec())
}
