//! Certificate signing requests: read, signature-checked, and reduced to their public key.
//!
//! rcgen refuses CSRs with extensions it does not know, and a CA must not copy what a
//! requester asks for anyway: the CSR is parsed with x509-parser, its self-signature is
//! verified, and only the public key is kept. Subject, names, usages and the identity
//! extension all come from the profile.
//!
//! x509-parser checks signatures with ring, which has no DSA: a CSR with a DSA key is
//! checked with `wardseal_core::signature::VerifyingKey` instead (dsaWithSHA256 over the
//! DER CertificationRequestInfo, DSA 2048/256 only, as [`crate::public_key`] certifies).

use wardseal_core::signature::{SignatureAlgorithm, VerifyingKey};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::error::CsrError;
use crate::public_key::{OID_DSA, SubjectPublicKey, Unsupported};

/// `dsa-with-sha256` (RFC 5758): the only DSA signature a CSR may carry here.
const OID_DSA_WITH_SHA256: &str = "2.16.840.1.101.3.4.3.2";

/// The public key of a verified CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrKey {
    public_key: SubjectPublicKey,
    /// The subject the requester asked for, for the record (not copied).
    pub requested_subject: String,
}

impl CsrKey {
    /// The key, to certify.
    pub(crate) fn public_key(&self) -> &SubjectPublicKey {
        &self.public_key
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        self.public_key.der()
    }
}

/// Parses a PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) or DER CSR, checks its
/// signature with its own key, and returns the key.
pub fn read_csr(bytes: &[u8]) -> Result<CsrKey, CsrError> {
    let malformed = |reason: String| CsrError::Malformed { reason };
    let der = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
            .map_err(|error| malformed(format!("bad PEM: {error}")))?;
        if !pem.label.ends_with("CERTIFICATE REQUEST") {
            return Err(malformed(format!(
                "PEM label is {:?}, expected \"CERTIFICATE REQUEST\"",
                pem.label
            )));
        }
        pem.contents
    } else {
        bytes.to_vec()
    };
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|error| malformed(error.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} bytes after the request", rest.len())));
    }
    let info = &csr.certification_request_info;
    if info.subject_pki.algorithm.algorithm.to_id_string() == OID_DSA {
        verify_dsa_signature(&csr)?;
    } else {
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    }
    let public_key =
        SubjectPublicKey::from_der(info.subject_pki.raw).map_err(|error| match error {
            Unsupported::Malformed => CsrError::Malformed {
                reason: "the public key is not a DER SubjectPublicKeyInfo".to_owned(),
            },
            Unsupported::Algorithm { oid } => CsrError::UnsupportedKey { oid },
            Unsupported::Dsa(error) => CsrError::UnsupportedDsaKey {
                reason: error.to_string(),
            },
        })?;
    Ok(CsrKey {
        public_key,
        requested_subject: info.subject.to_string(),
    })
}

/// Checks a DSA CSR's dsaWithSHA256 signature over its CertificationRequestInfo.
fn verify_dsa_signature(csr: &X509CertificationRequest<'_>) -> Result<(), CsrError> {
    let info = &csr.certification_request_info;
    let key = VerifyingKey::from_spki_der(info.subject_pki.raw).map_err(|error| {
        CsrError::UnsupportedDsaKey {
            reason: error.to_string(),
        }
    })?;
    let algorithm = csr.signature_algorithm.algorithm.to_id_string();
    if algorithm != OID_DSA_WITH_SHA256 {
        return Err(CsrError::UnsupportedSignature { oid: algorithm });
    }
    key.verify(
        SignatureAlgorithm::DsaSha256,
        info.raw,
        &csr.signature_value.data,
    )
    .map_err(|_| CsrError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> rcgen::CertificateSigningRequest {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x.example".to_owned()]).unwrap();
        params.serialize_request(&key).unwrap()
    }

    #[test]
    fn good_csr_is_read_in_der_and_pem() {
        let csr = csr();
        read_csr(csr.der()).unwrap();
        read_csr(csr.pem().unwrap().as_bytes()).unwrap();
    }

    #[test]
    fn altered_csr_fails_its_signature() {
        let mut der = csr().der().to_vec();
        // The last byte is inside the signature BIT STRING.
        let last = der.len() - 1;
        der[last] ^= 1;
        assert!(matches!(read_csr(&der), Err(CsrError::BadSignature)));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            read_csr(b"hello"),
            Err(CsrError::Malformed { .. })
        ));
    }
}
