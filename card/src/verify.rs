//! Checking a signature against a certificate or public key.
//!
//! SWITCH: once `wardseal_core::signature::VerifyingKey` lands, [`PublicKey`] becomes a
//! thin wrapper over it (`from_certificate_der`, `from_spki_der`, `verify_prehashed`);
//! the behaviour here is the same and the tests stay.

use pkcs8::DecodePublicKey as _;
use sha2::Sha256;
use signature::hazmat::PrehashVerifier as _;
use wardseal_core::hash::Hash;

use crate::Error;
use crate::algorithm::SignatureAlgorithm;

/// A public key that checks signatures made by a [`crate::Signer`].
#[derive(Debug, Clone)]
pub struct PublicKey(Key);

#[derive(Debug, Clone)]
enum Key {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Dsa(dsa::VerifyingKey),
}

impl PublicKey {
    /// The subject public key of a DER certificate.
    pub fn from_certificate_der(certificate: &[u8]) -> Result<Self, Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
            .map_err(|error| Error::Certificate(error.to_string()))?;
        Self::from_spki_der(parsed.public_key().raw)
    }

    /// The subject public key of a PEM certificate.
    pub fn from_certificate_pem(pem: &str) -> Result<Self, Error> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|error| Error::Certificate(error.to_string()))?;
        Self::from_certificate_der(&block.contents)
    }

    /// A DER `SubjectPublicKeyInfo` (P-256, RSA, Ed25519 or DSA).
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, Error> {
        let unsupported =
            |_| Error::UnsupportedKey("public key is not P-256, RSA, Ed25519 or DSA".into());
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) {
            return Ok(Self(Key::EcdsaP256(key)));
        }
        if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(spki) {
            return Ok(Self(Key::Rsa(key)));
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(spki) {
            return Ok(Self(Key::Ed25519(key)));
        }
        dsa::VerifyingKey::from_public_key_der(spki)
            .map(|key| Self(Key::Dsa(key)))
            .map_err(unsupported)
    }

    /// Checks `signature` over a SHA-256 `digest`.
    pub fn verify_digest(
        &self,
        algorithm: SignatureAlgorithm,
        digest: &Hash,
        signature: &[u8],
    ) -> Result<(), Error> {
        let invalid = |_| Error::SignatureInvalid;
        let digest = digest.as_bytes();
        match (&self.0, algorithm) {
            (Key::EcdsaP256(key), SignatureAlgorithm::EcdsaP256Sha256) => {
                let signature = p256::ecdsa::Signature::from_der(signature).map_err(invalid)?;
                key.verify_prehash(digest, &signature).map_err(invalid)
            }
            (Key::EcdsaP256(key), SignatureAlgorithm::EcdsaP256Sha256Raw) => {
                let signature = p256::ecdsa::Signature::from_slice(signature).map_err(invalid)?;
                key.verify_prehash(digest, &signature).map_err(invalid)
            }
            (Key::Rsa(key), SignatureAlgorithm::RsaPssSha256) => key
                .verify(rsa::Pss::new_with_salt::<Sha256>(32), digest, signature)
                .map_err(|_| Error::SignatureInvalid),
            (Key::Ed25519(key), SignatureAlgorithm::Ed25519) => {
                let signature = ed25519_dalek::Signature::from_slice(signature).map_err(invalid)?;
                key.verify_strict(digest, &signature).map_err(invalid)
            }
            (Key::Dsa(key), SignatureAlgorithm::DsaSha256) => {
                let signature = dsa::Signature::try_from(signature).map_err(invalid)?;
                key.verify_prehash(digest, &signature).map_err(invalid)
            }
            _ => Err(Error::UnsupportedKey(format!(
                "a {} signature cannot come from this key",
                algorithm
            ))),
        }
    }

    /// Checks `signature` over SHA-256 of `message`.
    pub fn verify_message(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        self.verify_digest(algorithm, &Hash::sha256(message), signature)
    }
}
