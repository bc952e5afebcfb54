//! Certs-only CMS (PKCS#7) messages: how EST hands out certificates (RFC 7030 §4.1.3,
//! §4.2.3).
//!
//! A certs-only message is a degenerate SignedData (RFC 5652 §5, RFC 8551 §3.2.2): no
//! content, no signers, the certificates in `certificates`. `openssl pkcs7 -print_certs`
//! reads it.

use der::asn1::{ContextSpecific, ObjectIdentifier, SetOfVec};
use der::{Any, Encode, Sequence, TagMode, TagNumber};

use crate::error::Error;

/// `id-signedData` (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// `id-data` (RFC 5652 §4).
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");

#[derive(Sequence)]
struct EncapsulatedContentInfo {
    content_type: ObjectIdentifier,
}

#[derive(Sequence)]
struct SignedData {
    version: u8,
    digest_algorithms: SetOfVec<Any>,
    encapsulated: EncapsulatedContentInfo,
    certificates: ContextSpecific<SetOfVec<Any>>,
    signer_infos: SetOfVec<Any>,
}

#[derive(Sequence)]
struct ContentInfo {
    content_type: ObjectIdentifier,
    content: ContextSpecific<SignedData>,
}

/// A certs-only SignedData (DER) holding `certificates` (each DER).
pub fn certs_only(certificates: &[&[u8]]) -> Result<Vec<u8>, Error> {
    let encoding = |error: der::Error| Error::encoding("encode a certs-only PKCS#7", error);
    let mut set = SetOfVec::new();
    for certificate in certificates {
        let certificate: Any = der::Decode::from_der(certificate).map_err(encoding)?;
        set.insert(certificate).map_err(encoding)?;
    }
    let signed = SignedData {
        // Version 1: no attribute certificates, no other formats (RFC 5652 §5.1).
        version: 1,
        digest_algorithms: SetOfVec::new(),
        encapsulated: EncapsulatedContentInfo {
            content_type: ID_DATA,
        },
        certificates: ContextSpecific {
            tag_number: TagNumber::N0,
            tag_mode: TagMode::Implicit,
            value: set,
        },
        signer_infos: SetOfVec::new(),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: ContextSpecific {
            tag_number: TagNumber::N0,
            tag_mode: TagMode::Explicit,
            value: signed,
        },
    }
    .to_der()
    .map_err(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_certificates_and_no_signer() {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = certs_only(&[certificate.der()]).unwrap();
        // The certificate is inside, whole.
        assert!(
            der.windows(certificate.der().len())
                .any(|window| window == certificate.der().as_ref())
        );
        // ContentInfo SEQUENCE, then the signedData OID.
        assert_eq!(der[0], 0x30);
        let oid = ID_SIGNED_DATA.to_der().unwrap();
        assert!(der.windows(oid.len()).any(|window| window == oid));
        assert!(certs_only(&[b"not a certificate"]).is_err());
        // The EST client reads back exactly what was put in.
        let read = wardseal_net::est_client::certs_only("test", &der).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].as_ref(), certificate.der().as_ref());
    }
}
