//! Card enrollment: a key generated on the token, a CSR it signs, and the issued
//! certificate written back next to the key.
//!
//! The CA side (checking the CSR, choosing the profile, issuing) belongs to wardseal-pki:
//! the CSR only carries the subject's public key and name, proven by the token's signature.

use super::{KeySelector, Pkcs11Signer, Pkcs11Token};
use crate::Error;
use crate::algorithm::EcdsaEncoding;
use crate::signer::{RcgenKey, Signer};

/// What to create on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnrollmentRequest {
    /// CKA_LABEL of the key pair and, later, the certificate.
    pub key_label: String,
    /// CKA_ID of the key pair and the certificate (ties them together).
    pub key_id: Vec<u8>,
    /// The CSR's subject common name (the patient's subject id, for a patient card).
    pub common_name: String,
    /// Whether the key asks for the PIN before every signature (PIV 9C style). Bedside
    /// signing wants `false`: the collector signs many batches per session.
    pub always_authenticate: bool,
}

impl EnrollmentRequest {
    /// A request for a per-session key.
    pub fn new(key_label: &str, key_id: &[u8], common_name: &str) -> Self {
        Self {
            key_label: key_label.to_owned(),
            key_id: key_id.to_vec(),
            common_name: common_name.to_owned(),
            always_authenticate: false,
        }
    }
}

/// The result of [`Pkcs11Token::enroll`]: the new key as a signer, and its CSR.
#[derive(Debug)]
#[non_exhaustive]
pub struct Enrollment {
    /// The key generated on the token.
    pub signer: Pkcs11Signer,
    /// PKCS#10 CSR (DER), signed by that key.
    pub csr_der: Vec<u8>,
}

impl Enrollment {
    /// The CSR as PEM.
    pub fn csr_pem(&self) -> String {
        pem_encode("CERTIFICATE REQUEST", &self.csr_der)
    }
}

impl Pkcs11Token {
    /// Generates a P-256 key on the token and a CSR for it. Refuses if a key with the same
    /// CKA_ID exists already.
    pub fn enroll(&self, request: &EnrollmentRequest) -> Result<Enrollment, Error> {
        let selector = KeySelector::Id(request.key_id.clone());
        if self
            .private_keys()?
            .iter()
            .any(|key| key.id == request.key_id)
        {
            return Err(Error::UnsupportedKey(format!(
                "token {:?} already has a key with id {}; choose another id",
                self.label(),
                hex::encode(&request.key_id)
            )));
        }
        self.generate_p256_key(
            &request.key_label,
            &request.key_id,
            request.always_authenticate,
        )?;
        let signer = Pkcs11Signer::new(self, &selector, EcdsaEncoding::Der)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, request.common_name.as_str());
        let csr = params
            .serialize_request(&RcgenKey::new(&signer)?)
            .map_err(|error| Error::Signing(format!("building the CSR: {error}")))?;
        Ok(Enrollment {
            signer,
            csr_der: csr.der().to_vec(),
        })
    }

    /// Writes the certificate the CA issued for `signer`'s key back to the token (same
    /// label and CKA_ID), after checking that it certifies that key.
    pub fn install_certificate(
        &self,
        signer: &mut Pkcs11Signer,
        certificate_der: &[u8],
    ) -> Result<(), Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate_der)
            .map_err(|error| Error::Certificate(error.to_string()))?;
        if parsed.public_key().raw != signer.public_key_der() {
            return Err(Error::Certificate(format!(
                "the certificate is for another key than {} on token {:?}",
                signer.key(),
                self.label()
            )));
        }
        let key = signer.key().clone();
        self.write_certificate(&key.label, &key.id, certificate_der)?;
        signer.reload_certificate()
    }
}

/// PEM with 64-character lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    // Encoding into a String cannot fail for a valid label; an empty string says it did.
    pkcs8::der::pem::encode_string(label, pkcs8::LineEnding::LF, der).unwrap_or_default()
}
