//! Certificate signing requests: read, signature-checked, and reduced to their public key.
//!
//! rcgen refuses CSRs with extensions it does not know, and a CA must not copy what a
//! requester asks for anyway: the CSR is parsed with x509-parser, its self-signature is
//! verified, and only the public key is kept. Subject, names, usages and the identity
//! extension all come from the profile.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::error::CsrError;

/// The public key of a verified CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrKey {
    spki: rcgen::SubjectPublicKeyInfo,
    spki_der: Vec<u8>,
    /// The subject the requester asked for, for the record (not copied).
    pub requested_subject: String,
}

impl CsrKey {
    /// The key as rcgen wants it for [`rcgen::CertificateParams::signed_by`].
    pub(crate) fn public_key(&self) -> &rcgen::SubjectPublicKeyInfo {
        &self.spki
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
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
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    let info = &csr.certification_request_info;
    let spki_der = info.subject_pki.raw.to_vec();
    let spki =
        rcgen::SubjectPublicKeyInfo::from_der(&spki_der).map_err(|_| CsrError::UnsupportedKey {
            oid: info.subject_pki.algorithm.algorithm.to_id_string(),
        })?;
    Ok(CsrKey {
        spki,
        spki_der,
        requested_subject: info.subject.to_string(),
    })
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
