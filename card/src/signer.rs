//! The [`Signer`] trait every key in wardseal signs through, and the adapter that lets
//! rcgen sign CSRs and certificates with one.

use wardseal_core::hash::Hash;

use crate::Error;
use crate::algorithm::{SignatureAlgorithm, ecdsa_p256_raw_to_der};

/// A private key that signs SHA-256 digests: a token key, a card key or a key file.
///
/// Ed25519 keys are the exception: pure Ed25519 (RFC 8032) signs the message itself, so
/// they implement [`Signer::sign_message`] and refuse [`Signer::sign_digest`] with
/// [`Error::DigestUnsupported`]. Implementations are shared between threads; each call is
/// independent.
pub trait Signer: Send + Sync {
    /// The algorithm and encoding of the signatures [`Signer::sign_digest`] returns.
    fn algorithm(&self) -> SignatureAlgorithm;

    /// The key's certificate (DER), when one is known (read from the token, or attached).
    fn certificate_der(&self) -> Option<&[u8]>;

    /// The public key as a DER `SubjectPublicKeyInfo`.
    fn public_key_der(&self) -> &[u8];

    /// Signs a SHA-256 digest the caller computed (not for Ed25519 keys).
    fn sign_digest(&self, digest: &Hash) -> Result<Vec<u8>, Error>;

    /// Signs a message: SHA-256 of it, then [`Signer::sign_digest`]. Token signers may
    /// override this to let the token hash (needed for keys that ask for the PIN before
    /// every signature, where only multi-part mechanisms allow the re-authentication).
    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_digest(&Hash::sha256(message))
    }
}

/// A [`Signer`] seen as an rcgen key: signs CSRs and certificates (the CA's key on a
/// token, or the card key for its own CSR). Signatures come out in the X.509 form (DER
/// for ECDSA), whatever encoding the signer itself uses.
pub struct RcgenKey<'a> {
    signer: &'a dyn Signer,
    subject_public_key: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl std::fmt::Debug for RcgenKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcgenKey")
            .field("algorithm", &self.signer.algorithm())
            .finish_non_exhaustive()
    }
}

impl<'a> RcgenKey<'a> {
    /// Wraps `signer`; fails for RSA-PSS and DSA, which rcgen 0.14 cannot write.
    pub fn new(signer: &'a dyn Signer) -> Result<Self, Error> {
        let algorithm = match signer.algorithm() {
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP256Sha256Raw => {
                &rcgen::PKCS_ECDSA_P256_SHA256
            }
            SignatureAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            // RSA-PSS, DSA, and whatever core adds later.
            _ => {
                return Err(Error::UnsupportedKey(format!(
                    "rcgen 0.14 cannot write {} CSRs or certificates; use a P-256 or Ed25519 key",
                    signer.algorithm()
                )));
            }
        };
        let spki = pkcs8::spki::SubjectPublicKeyInfoRef::try_from(signer.public_key_der())
            .map_err(|error| Error::KeyEncoding(error.to_string()))?;
        let subject_public_key = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::KeyEncoding("public key BIT STRING is not whole bytes".into()))?
            .to_vec();
        Ok(Self {
            signer,
            subject_public_key,
            algorithm,
        })
    }
}

impl rcgen::PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.subject_public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl rcgen::SigningKey for RcgenKey<'_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature = self
            .signer
            .sign_message(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        match self.signer.algorithm() {
            SignatureAlgorithm::EcdsaP256Sha256Raw => {
                ecdsa_p256_raw_to_der(&signature).map_err(|_| rcgen::Error::RemoteKeyError)
            }
            _ => Ok(signature),
        }
    }
}
