//! [`Pkcs11X509Key`]: a token key that signs X.509 structures (certificates, CRLs, CSRs)
//! through rcgen, on curve P-256 (ECDSA with SHA-256) or P-384 (ECDSA with SHA-384).
//!
//! Why this is not a [`Signer`](crate::Signer): a `Signer` signs SHA-256 digests with one
//! of wardseal-core's batch-header algorithms, a wire format that has no P-384 (and
//! should not grow one for the CA's sake). A CA key on a token needs P-384 as well, and
//! needs nothing but rcgen's `SigningKey`. For P-256 keys, [`RcgenKey`](crate::RcgenKey)
//! over a [`Pkcs11Signer`](super::Pkcs11Signer) does the same job; this type is the one
//! that takes both curves.
//!
//! The message is hashed here (SoftHSM 2.6 has no hash-and-sign ECDSA), signed with raw
//! `CKM_ECDSA`, and the token's `r‖s` re-encoded as the DER `SEQUENCE { r, s }` X.509
//! wants. Keys that ask for the PIN before every signature are refused, with the error
//! naming the token's keys that ask once: raw `CKM_ECDSA` is single-part, and there is no
//! place for a context-specific login.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use der::Encode as _;
use sha2::Digest as _;

use super::signer::always_authenticate_error;
use super::token::P256_EC_PARAMS;
use super::{KeyDescription, KeySelector, Pkcs11Config, Pkcs11Token};
use crate::Error;

/// DER of the P-384 curve OID (`secp384r1`), as CKA_EC_PARAMS holds it.
const P384_EC_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// The curve of an EC key on a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcCurve {
    /// NIST P-256 (`prime256v1`), signed over SHA-256.
    P256,
    /// NIST P-384 (`secp384r1`), signed over SHA-384.
    P384,
}

impl EcCurve {
    /// The curve whose OID is `params` (the DER of CKA_EC_PARAMS), if we sign with it.
    fn from_ec_params(params: &[u8]) -> Option<Self> {
        match params {
            P256_EC_PARAMS => Some(Self::P256),
            P384_EC_PARAMS => Some(Self::P384),
            _ => None,
        }
    }

    /// The name, `P-256` or `P-384`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    /// The X.509 signature algorithm of this curve's keys, as rcgen names it.
    pub fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// Length of a field element (and of each of r and s) in bytes.
    fn field_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::P256 => sha2::Sha256::digest(message).to_vec(),
            Self::P384 => sha2::Sha384::digest(message).to_vec(),
        }
    }
}

impl std::fmt::Display for EcCurve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An EC P-256 or P-384 key on a token that signs certificates, CRLs and CSRs.
///
/// Implements rcgen's [`SigningKey`](rcgen::SigningKey); signatures are DER. Shared by any
/// number of threads: each signature borrows a session from the token's pool.
pub struct Pkcs11X509Key {
    token: Pkcs11Token,
    key: ObjectHandle,
    description: KeyDescription,
    curve: EcCurve,
    /// The uncompressed SEC1 point: the `subjectPublicKey` bits.
    point: Vec<u8>,
}

impl std::fmt::Debug for Pkcs11X509Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11X509Key")
            .field("token", &self.token)
            .field("key", &self.description)
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

impl Pkcs11X509Key {
    /// Opens the token and the key a configuration names (its ECDSA encoding is ignored:
    /// X.509 signatures are always DER).
    pub fn open(config: &Pkcs11Config) -> Result<Self, Error> {
        let token = Pkcs11Token::open(&config.module, &config.token, config.pin.as_ref())?;
        Self::new(&token, &config.key)
    }

    /// The key `selector` names on an open token.
    pub fn new(token: &Pkcs11Token, selector: &KeySelector) -> Result<Self, Error> {
        let mut session = token.session()?;
        let result = Self::find(token, &session, selector);
        session.check(result)
    }

    fn find(token: &Pkcs11Token, session: &Session, selector: &KeySelector) -> Result<Self, Error> {
        let (key, description) = token.find_key(session, selector)?;
        if description.key_type != "EC" {
            return Err(Error::UnsupportedKey(format!(
                "key {description} on token {:?} is a {} key; certificates and CRLs are \
                 signed on tokens with EC P-256 or P-384 keys",
                token.label(),
                description.key_type
            )));
        }
        let mechanisms = token
            .module()
            .context()
            .get_mechanism_list(token.inner.slot)
            .map_err(|error| token.error(error))?;
        if !mechanisms.contains(&MechanismType::ECDSA) {
            return Err(Error::MechanismUnsupported {
                token: token.label().to_owned(),
                mechanism: "CKM_ECDSA".to_owned(),
            });
        }
        if description.always_authenticate {
            return Err(always_authenticate_error(
                token,
                session,
                &description,
                "CKM_ECDSA",
            )?);
        }
        // CKA_EC_PARAMS is public on the private key too; the point is on the public key
        // object or, failing that, in the certificate.
        let params = ec_attribute(token, session, key, AttributeType::EcParams)?;
        let curve = params
            .as_deref()
            .and_then(EcCurve::from_ec_params)
            .ok_or_else(|| {
                Error::UnsupportedKey(format!(
                    "key {description} on token {:?} is not on curve P-256 or P-384",
                    token.label()
                ))
            })?;
        let point = match public_point(token, session, &description.id)? {
            Some(point) => point,
            None => certificate_point(token, session, &description)?,
        };
        if point.len() != 1 + 2 * curve.field_len() || point.first() != Some(&0x04) {
            return Err(Error::KeyEncoding(format!(
                "the public key of {description} is not an uncompressed {curve} point"
            )));
        }
        Ok(Self {
            token: token.clone(),
            key,
            description,
            curve,
            point,
        })
    }

    /// The token the key is on.
    pub fn token(&self) -> &Pkcs11Token {
        &self.token
    }

    /// The key's label, id and type.
    pub fn key(&self) -> &KeyDescription {
        &self.description
    }

    /// The key's curve.
    pub fn curve(&self) -> EcCurve {
        self.curve
    }

    /// The `subjectPublicKey` bits of the key's SubjectPublicKeyInfo (the SEC1 point).
    pub fn subject_public_key(&self) -> &[u8] {
        &self.point
    }

    /// Signs `message` (hashed with the curve's hash here), returning DER `SEQUENCE { r, s }`.
    pub fn sign_x509(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let digest = self.curve.digest(message);
        let mut session = self.token.session()?;
        let result = session
            .sign(&Mechanism::Ecdsa, self.key, &digest)
            .map_err(|error| self.token.error(error));
        let raw = session.check(result)?;
        drop(session);
        ecdsa_raw_to_der(&raw, self.curve)
    }
}

impl rcgen::PublicKeyData for Pkcs11X509Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.curve.rcgen_algorithm()
    }
}

impl rcgen::SigningKey for Pkcs11X509Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error has no room for a cause; callers that want it call sign_x509.
        self.sign_x509(message)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// CKA_EC_PARAMS or CKA_EC_POINT of an object, `None` when the object does not have it.
fn ec_attribute(
    token: &Pkcs11Token,
    session: &Session,
    object: ObjectHandle,
    kind: AttributeType,
) -> Result<Option<Vec<u8>>, Error> {
    let attributes = session
        .get_attributes(object, &[kind])
        .map_err(|error| token.error(error))?;
    Ok(attributes
        .into_iter()
        .find_map(|attribute| match attribute {
            Attribute::EcParams(value) | Attribute::EcPoint(value) => Some(value),
            _ => None,
        }))
}

/// The point of the public key object with this CKA_ID, if there is one.
fn public_point(
    token: &Pkcs11Token,
    session: &Session,
    id: &[u8],
) -> Result<Option<Vec<u8>>, Error> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.to_vec()),
        ])
        .map_err(|error| token.error(error))?;
    let Some(&handle) = handles.first() else {
        return Ok(None);
    };
    Ok(
        ec_attribute(token, session, handle, AttributeType::EcPoint)?
            .map(|value| unwrap_ec_point(&value).to_vec()),
    )
}

/// The point in the certificate with the key's CKA_ID.
fn certificate_point(
    token: &Pkcs11Token,
    session: &Session,
    key: &KeyDescription,
) -> Result<Vec<u8>, Error> {
    let certificate = token.certificate_by_id(session, &key.id)?.ok_or_else(|| {
        Error::UnsupportedKey(format!(
            "key {key} has neither a public key object nor a certificate"
        ))
    })?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate)
        .map_err(|error| Error::Certificate(error.to_string()))?;
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}

/// CKA_EC_POINT is a DER OCTET STRING around the SEC1 point in PKCS#11 2.40 (SoftHSM:
/// `04 41 04 …` for P-256, `04 61 04 …` for P-384); some modules return the bare point.
fn unwrap_ec_point(value: &[u8]) -> &[u8] {
    match value {
        [0x04, length, point @ ..]
            if usize::from(*length) == point.len() && is_uncompressed_point(point) =>
        {
            point
        }
        [0x04, 0x81, length, point @ ..]
            if usize::from(*length) == point.len() && is_uncompressed_point(point) =>
        {
            point
        }
        _ => value,
    }
}

/// A bare point of a curve we sign with (a bare point can look like a wrapped one).
fn is_uncompressed_point(point: &[u8]) -> bool {
    point.first() == Some(&0x04) && matches!(point.len(), 65 | 97)
}

/// `SEQUENCE { r INTEGER, s INTEGER }`.
#[derive(der::Sequence)]
struct EcdsaSignature<'a> {
    r: der::asn1::UintRef<'a>,
    s: der::asn1::UintRef<'a>,
}

/// Re-encodes the raw `r‖s` a token returns as DER.
fn ecdsa_raw_to_der(raw: &[u8], curve: EcCurve) -> Result<Vec<u8>, Error> {
    let malformed = || {
        Error::Signing(format!(
            "the token returned a {}-byte signature for a {curve} key (expected {})",
            raw.len(),
            2 * curve.field_len()
        ))
    };
    if raw.len() != 2 * curve.field_len() {
        return Err(malformed());
    }
    let (r, s) = raw.split_at(curve.field_len());
    let signature = EcdsaSignature {
        r: der::asn1::UintRef::new(r).map_err(|_| malformed())?,
        s: der::asn1::UintRef::new(s).map_err(|_| malformed())?,
    };
    signature.to_der().map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_signatures_become_the_der_core_writes() {
        let mut raw = [0x11_u8; 64];
        raw[0] = 0x80;
        raw[32] = 0;
        raw[33] = 0x05;
        assert_eq!(
            ecdsa_raw_to_der(&raw, EcCurve::P256).unwrap(),
            wardseal_core::signature::ecdsa_p256_raw_to_der(&raw).unwrap()
        );
        let p384 = ecdsa_raw_to_der(&[0xff; 96], EcCurve::P384).unwrap();
        assert_eq!(&p384[..4], &[0x30, 102, 0x02, 49]);
        assert!(ecdsa_raw_to_der(&[1; 64], EcCurve::P384).is_err());
    }

    #[test]
    fn ec_points_unwrap_from_octet_strings() {
        let point = [0x04_u8; 97];
        let wrapped = [&[0x04, 0x61][..], &point].concat();
        assert_eq!(unwrap_ec_point(&wrapped), point);
        assert_eq!(unwrap_ec_point(&point), point);
        let p256 = [0x04_u8; 65];
        assert_eq!(unwrap_ec_point(&[&[0x04, 0x41][..], &p256].concat()), p256);
    }

    #[test]
    fn curves_name_their_x509_algorithms() {
        assert_eq!(EcCurve::from_ec_params(P384_EC_PARAMS), Some(EcCurve::P384));
        assert_eq!(
            EcCurve::P384.rcgen_algorithm(),
            &rcgen::PKCS_ECDSA_P384_SHA384
        );
        assert_eq!(EcCurve::from_ec_params(&[0x06, 0x01, 0x00]), None);
    }
}
