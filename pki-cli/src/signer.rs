//! The seam between the CA and whatever holds its key: a key file in memory or a key
//! that never leaves a PKCS#11 token.
//!
//! rcgen signs through [`rcgen::SigningKey`]; [`CaKey`] is that, over any [`CaSigner`].
//! A signer returns signatures in their X.509 form (DER `SEQUENCE { r, s }` for ECDSA),
//! whatever the device under it produces.

use std::fmt;

use crate::error::Error;

/// A private key the CA signs certificates and CRLs with.
pub trait CaSigner: Send + Sync {
    /// The signature algorithm (which also names the key type).
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm;

    /// The `subjectPublicKey` bits of the key's SubjectPublicKeyInfo.
    fn public_key(&self) -> &[u8];

    /// Signs `message` (hashing it as the algorithm says), returning the X.509 encoding.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

impl CaSigner for rcgen::KeyPair {
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen::KeyPair::algorithm(self)
    }

    fn public_key(&self) -> &[u8] {
        self.public_key_raw()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        rcgen::SigningKey::sign(self, message).map_err(|error| Error::encoding("sign", error))
    }
}

/// A CA key as rcgen sees it.
pub struct CaKey(Box<dyn CaSigner>);

impl CaKey {
    /// Wraps a signer.
    pub fn new(signer: impl CaSigner + 'static) -> Self {
        Self(Box::new(signer))
    }

    /// Signs `message` as [`CaSigner::sign`] does, keeping the signer's error.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.0.sign(message)
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey([secret elided])")
    }
}

impl rcgen::PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.public_key()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error has no room for a cause; a token failure surfaces as
        // RemoteKeyError and the token's own error is logged by the signer's caller.
        self.0
            .sign(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
