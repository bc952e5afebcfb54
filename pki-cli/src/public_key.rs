//! Subject public keys, and how each one gets into its certificate.
//!
//! rcgen writes a certificate's SubjectPublicKeyInfo itself, from one of its own signature
//! algorithms, so it can only certify the keys it knows: EC P-256 and P-384, RSA and
//! Ed25519. A DSA key (FIPS 186-4, 2048-bit p, 256-bit q) is certified by splicing:
//!
//! 1. rcgen builds the whole certificate as for any other key (profile, names, extensions,
//!    serial, validity, authority key identifier) around a placeholder public key, with the
//!    subject key identifier preset to the DSA key's, computed as the CA computes it for
//!    every key (the first 20 bytes of the SHA-256 of the DER SubjectPublicKeyInfo);
//! 2. the certificate is decoded with `x509-cert`, the placeholder SubjectPublicKeyInfo is
//!    replaced with the DSA one, and the TBSCertificate is encoded again;
//! 3. the CA key signs the new TBSCertificate, and the certificate is reassembled with the
//!    same signatureAlgorithm.
//!
//! Nothing of the placeholder survives: its key was only ever in the SubjectPublicKeyInfo,
//! which is replaced, the key identifier never came from it, and the signature rcgen made
//! over it is discarded. DSA keys are checked before they are certified (sizes, subgroup,
//! public value) by `wardseal_core::signature::VerifyingKey`, the verifier storage uses.

use sha2::{Digest, Sha256};
use wardseal_core::signature::{SignatureError, VerifyingKey};
use x509_cert::der::{self, Decode, Encode};
use x509_parser::prelude::FromDer;

use crate::error::{Cause, Error};
use crate::signer::CaKey;

/// `id-dsa` (RFC 3279): the SubjectPublicKeyInfo algorithm of DSA keys.
pub(crate) const OID_DSA: &str = "1.2.840.10040.4.1";

/// Bytes of the subject key identifier: SHA-256 truncated to 160 bits, as rcgen's default
/// `KeyIdMethod::Sha256` (RFC 7093 section 2, method 1) does for the CA's other keys.
const KEY_IDENTIFIER_LENGTH: usize = 20;

/// The subject key identifier the CA gives a key: the first 20 bytes of the SHA-256 of its
/// DER SubjectPublicKeyInfo.
pub fn key_identifier(spki_der: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(spki_der);
    digest.iter().copied().take(KEY_IDENTIFIER_LENGTH).collect()
}

/// A subject's public key, ready to be certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPublicKey {
    spki_der: Vec<u8>,
    /// rcgen's form of the key; `None` for keys rcgen cannot write (DSA), which are spliced.
    rcgen: Option<rcgen::SubjectPublicKeyInfo>,
}

/// Why a SubjectPublicKeyInfo cannot be certified.
#[derive(Debug)]
pub(crate) enum Unsupported {
    /// Not a DER SubjectPublicKeyInfo.
    Malformed,
    /// An algorithm neither rcgen nor the splice handles.
    Algorithm {
        /// The key algorithm OID.
        oid: String,
    },
    /// A DSA key the CA does not certify (wrong sizes or broken parameters).
    Dsa(SignatureError),
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed => f.write_str("not a DER SubjectPublicKeyInfo"),
            Self::Algorithm { oid } => write!(f, "key algorithm {oid} is not certified here"),
            Self::Dsa(error) => write!(f, "DSA key not certified here: {error}"),
        }
    }
}

impl SubjectPublicKey {
    /// Reads a DER SubjectPublicKeyInfo: EC P-256 or P-384, RSA, Ed25519, or DSA 2048/256.
    pub(crate) fn from_der(spki_der: &[u8]) -> Result<Self, Unsupported> {
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|_| Unsupported::Malformed)?;
        let oid = spki.algorithm.algorithm.to_id_string();
        if oid == OID_DSA {
            VerifyingKey::from_spki_der(spki_der).map_err(Unsupported::Dsa)?;
            return Ok(Self {
                spki_der: spki_der.to_vec(),
                rcgen: None,
            });
        }
        let rcgen = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|_| Unsupported::Algorithm { oid })?;
        Ok(Self {
            spki_der: spki_der.to_vec(),
            rcgen: Some(rcgen),
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as [`sign_certificate`] takes it.
    pub(crate) fn certified(&self) -> CertifiedKey<'_> {
        match &self.rcgen {
            Some(key) => CertifiedKey::Rcgen(key),
            None => CertifiedKey::Spliced {
                spki_der: &self.spki_der,
            },
        }
    }
}

/// A key to certify, borrowed: either rcgen writes it, or it is spliced in.
#[derive(Clone, Copy)]
pub(crate) enum CertifiedKey<'a> {
    /// A key rcgen writes itself (EC, RSA, Ed25519).
    Rcgen(&'a dyn rcgen::PublicKeyData),
    /// A key rcgen cannot write (DSA), already checked: its DER SubjectPublicKeyInfo.
    Spliced {
        /// The DER SubjectPublicKeyInfo.
        spki_der: &'a [u8],
    },
}

/// The key rcgen builds a spliced certificate around. Only its SubjectPublicKeyInfo ever
/// holds these bytes, and that is replaced, so they need not be a real key; the value is
/// recognisable so that a test can show it is gone.
struct Placeholder;

/// An uncompressed P-256 point marker followed by 64 bytes no real key has together.
const PLACEHOLDER_POINT: [u8; 65] = {
    let mut point = [0x5a; 65];
    point[0] = 0x04;
    point
};

impl rcgen::PublicKeyData for Placeholder {
    fn der_bytes(&self) -> &[u8] {
        &PLACEHOLDER_POINT
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Builds and signs the certificate `params` describe over `key`, returning its DER.
pub(crate) fn sign_certificate(
    mut params: rcgen::CertificateParams,
    key: CertifiedKey<'_>,
    issuer: &rcgen::Issuer<'_, CaKey>,
) -> Result<Vec<u8>, Error> {
    match key {
        CertifiedKey::Rcgen(key) => Ok(params
            .signed_by(&key, issuer)
            .map_err(|error| Error::encoding("sign the certificate", error))?
            .der()
            .to_vec()),
        CertifiedKey::Spliced { spki_der } => {
            params.key_identifier_method =
                rcgen::KeyIdMethod::PreSpecified(key_identifier(spki_der));
            let placeholder = params
                .signed_by(&Placeholder, issuer)
                .map_err(|error| Error::encoding("build the certificate", error))?;
            splice(placeholder.der(), spki_der, issuer.key())
        }
    }
}

/// Replaces the SubjectPublicKeyInfo of `certificate_der` with `spki_der` and signs it again.
fn splice(certificate_der: &[u8], spki_der: &[u8], key: &CaKey) -> Result<Vec<u8>, Error> {
    let encoding = |action, error: der::Error| Error::Encoding {
        action,
        source: Cause::new(error),
    };
    let mut certificate = x509_cert::Certificate::from_der(certificate_der)
        .map_err(|error| encoding("decode the certificate rcgen built", error))?;
    let tbs = &mut certificate.tbs_certificate;
    tbs.subject_public_key_info = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der)
        .map_err(|error| encoding("decode the subject's public key", error))?;
    let tbs_der = tbs
        .to_der()
        .map_err(|error| encoding("encode the certificate", error))?;
    let signature = key.sign(&tbs_der)?;
    certificate.signature = der::asn1::BitString::from_bytes(&signature)
        .map_err(|error| encoding("encode the certificate's signature", error))?;
    certificate
        .to_der()
        .map_err(|error| encoding("encode the certificate", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_identifier_is_rcgen_s_for_keys_rcgen_writes() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::default();
        assert_eq!(
            key_identifier(&rcgen::PublicKeyData::subject_public_key_info(&key)),
            params.key_identifier(&key)
        );
    }

    /// A DSA key spliced into a certificate rcgen builds: the SubjectPublicKeyInfo and the
    /// subject key identifier are the DSA key's, nothing of the placeholder is left, every
    /// other field is rcgen's, and the CA's signature covers the spliced certificate.
    #[test]
    fn spliced_certificate_carries_the_dsa_key_and_nothing_of_the_placeholder() {
        use x509_parser::prelude::{ParsedExtension, X509Certificate};

        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let ca_certificate = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, CaKey::new(ca_key));

        let dsa = crate::key::SubjectKeyPair::generate(crate::key::KeyAlgorithm::Dsa2048).unwrap();
        let dsa_spki = dsa.public_key_der();
        let mut params = rcgen::CertificateParams::new(vec!["dsa.example".to_owned()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x42; 16]));
        // As the profiles do: rcgen writes a subject key identifier only then.
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let spliced = sign_certificate(params.clone(), dsa.certified(), &issuer).unwrap();

        let (_, certificate) = X509Certificate::from_der(&spliced).unwrap();
        assert_eq!(certificate.public_key().raw, dsa_spki.as_slice());
        let subject_key_identifier = certificate
            .extensions()
            .iter()
            .find_map(|extension| match extension.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .unwrap();
        assert_eq!(subject_key_identifier, key_identifier(&dsa_spki));
        assert!(
            !spliced
                .windows(PLACEHOLDER_POINT.len() - 1)
                .any(|window| window == &PLACEHOLDER_POINT[1..]),
            "the placeholder key is still in the certificate"
        );
        let placeholder_identifier =
            key_identifier(&rcgen::PublicKeyData::subject_public_key_info(&Placeholder));
        assert!(
            !spliced
                .windows(KEY_IDENTIFIER_LENGTH)
                .any(|window| window == placeholder_identifier.as_slice()),
            "the placeholder's key identifier is in the certificate"
        );

        let (_, issuing) = X509Certificate::from_der(ca_certificate.der()).unwrap();
        certificate
            .verify_signature(Some(issuing.public_key()))
            .unwrap();

        // Everything but the key is what rcgen wrote.
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_identifier(&dsa_spki));
        let placeholder = params.signed_by(&Placeholder, &issuer).unwrap();
        let (_, placeholder) = X509Certificate::from_der(placeholder.der()).unwrap();
        assert_eq!(certificate.serial, placeholder.serial);
        assert_eq!(certificate.subject(), placeholder.subject());
        assert_eq!(certificate.issuer(), placeholder.issuer());
        assert_eq!(certificate.validity(), placeholder.validity());
        assert_eq!(certificate.extensions(), placeholder.extensions());
        assert_eq!(
            certificate.signature_algorithm,
            placeholder.signature_algorithm
        );
    }

    #[test]
    fn dsa_keys_of_other_sizes_are_refused() {
        // openssl's default for 2048-bit DSA; not the 2048/256 pair the CA certifies.
        let components =
            dsa::Components::generate(&mut rand_core::OsRng, dsa::KeySize::DSA_2048_224);
        let key = dsa::SigningKey::generate(&mut rand_core::OsRng, components);
        let spki = pkcs8::EncodePublicKey::to_public_key_der(key.verifying_key()).unwrap();
        assert!(matches!(
            SubjectPublicKey::from_der(spki.as_bytes()),
            Err(Unsupported::Dsa(
                SignatureError::UnsupportedDsaParameters { .. }
            ))
        ));
    }

    #[test]
    fn unknown_algorithms_are_named() {
        // An X25519 key: a real SubjectPublicKeyInfo that no certificate here carries.
        let spki = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00, 1, 2, 3, 4, 5,
            6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
            29, 30, 31, 32,
        ];
        let Err(Unsupported::Algorithm { oid }) = SubjectPublicKey::from_der(&spki) else {
            panic!("an X25519 key was accepted");
        };
        assert_eq!(oid, "1.3.101.110");
    }
}
