//! `/csrattrs` (RFC 7030 §4.5): what the CA would like a CSR to contain.
//!
//! The answer is advice, not a rule: the certificate's content comes from the device's
//! registration whatever the CSR holds. It asks for an EC P-256 key signed with
//! ECDSA-SHA256 (what the device profile is built around), in the AttrOrOID form of
//! RFC 7030 §4.5.2's example: the signature algorithm as a bare OID, the key type as an
//! attribute whose value is the curve.

use der::Encode;
use der::asn1::{ObjectIdentifier, SetOfVec};

use crate::error::Error;

/// `ecdsa-with-SHA256` (RFC 5758 §3.2).
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// `id-ecPublicKey` (RFC 5480 §2.1.1).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1` (RFC 5480 §2.1.1.1).
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

#[derive(der::Sequence)]
struct Attribute {
    attribute_type: ObjectIdentifier,
    values: SetOfVec<ObjectIdentifier>,
}

#[derive(der::Sequence)]
struct CsrAttrs {
    signature_algorithm: ObjectIdentifier,
    key_type: Attribute,
}

/// The DER `CsrAttrs` this CA answers.
pub fn csr_attributes() -> Result<Vec<u8>, Error> {
    let encoding = |error: der::Error| Error::encoding("encode the CSR attributes", error);
    let mut curve = SetOfVec::new();
    curve.insert(SECP256R1).map_err(encoding)?;
    CsrAttrs {
        signature_algorithm: ECDSA_WITH_SHA256,
        key_type: Attribute {
            attribute_type: ID_EC_PUBLIC_KEY,
            values: curve,
        },
    }
    .to_der()
    .map_err(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_rfc_7030_example_shape() {
        let der = csr_attributes().unwrap();
        // SEQUENCE { OID ecdsa-with-SHA256, SEQUENCE { OID id-ecPublicKey, SET { OID secp256r1 } } }
        let expected = hex::decode(concat!(
            "3021",
            "06082a8648ce3d040302",
            "3015",
            "06072a8648ce3d0201",
            "310a",
            "06082a8648ce3d030107"
        ))
        .unwrap();
        assert_eq!(der, expected);
    }
}
