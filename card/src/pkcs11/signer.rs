//! [`Pkcs11Signer`]: a private key on a token.

use std::path::PathBuf;

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use pkcs8::EncodePublicKey as _;
use wardseal_core::hash::Hash;

use super::token::P256_EC_PARAMS;
use super::{KeySelector, Pkcs11Token, Pkcs11Uri, TokenSelector};
use crate::Error;
use crate::algorithm::{EcdsaEncoding, SignatureAlgorithm, ecdsa_p256_raw_to_der};
use crate::secret::SecretSource;
use crate::signer::Signer;

/// Where a [`Pkcs11Signer`] finds its key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pkcs11Config {
    /// The PKCS#11 module file.
    pub module: PathBuf,
    /// Which token.
    pub token: TokenSelector,
    /// Which private key on it.
    pub key: KeySelector,
    /// Where the PIN comes from; `None` for a pinpad reader.
    pub pin: Option<SecretSource>,
    /// How ECDSA signatures are encoded (DER unless told otherwise).
    pub ecdsa_encoding: EcdsaEncoding,
}

impl Pkcs11Config {
    /// A configuration with the DER ECDSA encoding.
    pub fn new(
        module: impl Into<PathBuf>,
        token: TokenSelector,
        key: KeySelector,
        pin: Option<SecretSource>,
    ) -> Self {
        Self {
            module: module.into(),
            token,
            key,
            pin,
            ecdsa_encoding: EcdsaEncoding::Der,
        }
    }

    /// Reads everything from an RFC 7512 URI: `module-path`, the token attributes, `id`
    /// and/or `object`, and `pin-source` (`file:PATH`, a bare path, or `env:NAME`).
    pub fn from_uri(uri: &str) -> Result<Self, Error> {
        let parsed = Pkcs11Uri::parse(uri)?;
        let missing = |what: &str| Error::InvalidUri {
            uri: uri.to_owned(),
            reason: format!("it names no {what}"),
        };
        let module = parsed
            .module_path
            .clone()
            .ok_or_else(|| missing("module-path"))?;
        if parsed.token.is_none() && parsed.serial.is_none() {
            return Err(missing("token (token= or serial=)"));
        }
        let key = match (parsed.id.clone(), parsed.object.clone()) {
            (Some(id), Some(label)) => KeySelector::IdAndLabel(id, label),
            (Some(id), None) => KeySelector::Id(id),
            (None, Some(label)) => KeySelector::Label(label),
            (None, None) => return Err(missing("key (id= or object=)")),
        };
        let pin = parsed.pin_source.as_deref().map(|source| {
            SecretSource::parse(source).unwrap_or_else(|| SecretSource::File(PathBuf::from(source)))
        });
        Ok(Self::new(
            module,
            TokenSelector::Uri(Box::new(parsed)),
            key,
            pin,
        ))
    }
}

/// A signing key on a PKCS#11 token, shared by any number of threads.
///
/// Each signature borrows a session from the token's pool (opening one when all are busy),
/// so concurrent callers never share a session and the pool grows to the number of
/// threads that sign at once.
pub struct Pkcs11Signer {
    token: Pkcs11Token,
    key: ObjectHandle,
    description: super::KeyDescription,
    algorithm: SignatureAlgorithm,
    public_key: Vec<u8>,
    certificate: Option<Vec<u8>>,
    /// The module offers CKM_ECDSA_SHA256 (multi-part), usable with a context-specific login.
    ecdsa_sha256: bool,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("token", &self.token)
            .field("key", &self.description)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Opens the token and the key a configuration names.
    pub fn open(config: &Pkcs11Config) -> Result<Self, Error> {
        let token = Pkcs11Token::open(&config.module, &config.token, config.pin.as_ref())?;
        Self::new(&token, &config.key, config.ecdsa_encoding)
    }

    /// The key `selector` names on an open token.
    pub fn new(
        token: &Pkcs11Token,
        selector: &KeySelector,
        encoding: EcdsaEncoding,
    ) -> Result<Self, Error> {
        let mut session = token.session()?;
        let result = Self::find(token, &session, selector, encoding);
        session.check(result)
    }

    fn find(
        token: &Pkcs11Token,
        session: &Session,
        selector: &KeySelector,
        encoding: EcdsaEncoding,
    ) -> Result<Self, Error> {
        let (key, description) = token.find_key(session, selector)?;
        let mechanisms = token
            .module()
            .context()
            .get_mechanism_list(token.inner.slot)
            .map_err(|error| token.error(error))?;
        let needs = |mechanism: MechanismType, name: &str| {
            if mechanisms.contains(&mechanism) {
                Ok(())
            } else {
                Err(Error::MechanismUnsupported {
                    token: token.label().to_owned(),
                    mechanism: name.to_owned(),
                })
            }
        };
        let ecdsa_sha256 = mechanisms.contains(&MechanismType::ECDSA_SHA256);
        let algorithm = match &*description.key_type {
            "EC" => {
                needs(MechanismType::ECDSA, "CKM_ECDSA")?;
                if description.always_authenticate && !ecdsa_sha256 {
                    return Err(always_authenticate_error(
                        token,
                        session,
                        &description,
                        "CKM_ECDSA",
                    )?);
                }
                encoding.algorithm()
            }
            "RSA" => {
                needs(MechanismType::RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS")?;
                if description.always_authenticate {
                    needs(
                        MechanismType::SHA256_RSA_PKCS_PSS,
                        "CKM_SHA256_RSA_PKCS_PSS",
                    )?;
                }
                SignatureAlgorithm::RsaPssSha256
            }
            other => {
                return Err(Error::UnsupportedKey(format!(
                    "key {description} is of type {other}; wardseal signs on tokens with EC P-256 or RSA"
                )));
            }
        };
        let certificate = token.certificate_by_id(session, &description.id)?;
        let public_key = match public_key_from_token(token, session, &description)? {
            Some(public_key) => public_key,
            None => match &certificate {
                Some(certificate) => {
                    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
                        .map_err(|error| Error::Certificate(error.to_string()))?;
                    parsed.public_key().raw.to_vec()
                }
                None => {
                    return Err(Error::UnsupportedKey(format!(
                        "key {description} has neither a public key object nor a certificate"
                    )));
                }
            },
        };
        Ok(Self {
            token: token.clone(),
            key,
            description,
            algorithm,
            public_key,
            certificate,
            ecdsa_sha256,
        })
    }

    /// The token the key is on.
    pub fn token(&self) -> &Pkcs11Token {
        &self.token
    }

    /// The key's label, id and type.
    pub fn key(&self) -> &super::KeyDescription {
        &self.description
    }

    /// Whether the token asks for the PIN before every signature with this key.
    pub fn always_authenticate(&self) -> bool {
        self.description.always_authenticate
    }

    /// Re-reads the certificate object (after enrollment wrote it).
    pub fn reload_certificate(&mut self) -> Result<(), Error> {
        let mut session = self.token.session()?;
        let result = self.token.certificate_by_id(&session, &self.description.id);
        self.certificate = session.check(result)?;
        Ok(())
    }

    fn pss_params() -> PkcsPssParams {
        PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }
    }

    /// Multi-part signing with a context-specific login between init and update, the way
    /// PKCS#11 re-authenticates for CKA_ALWAYS_AUTHENTICATE keys.
    fn sign_with_context_login(
        &self,
        mechanism: &Mechanism<'_>,
        message: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let mut session = self.token.session()?;
        let result = (|| {
            session
                .sign_init(mechanism, self.key)
                .map_err(|error| self.token.error(error))?;
            self.token.login(&session, UserType::ContextSpecific)?;
            session
                .sign_update(message)
                .map_err(|error| self.token.error(error))?;
            session
                .sign_final()
                .map_err(|error| self.token.error(error))
        })();
        session.check(result)
    }

    fn encode_ecdsa(&self, raw: Vec<u8>) -> Result<Vec<u8>, Error> {
        match self.algorithm {
            SignatureAlgorithm::EcdsaP256Sha256 => ecdsa_p256_raw_to_der(&raw),
            _ => Ok(raw),
        }
    }
}

impl Signer for Pkcs11Signer {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn certificate_der(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key
    }

    fn sign_digest(&self, digest: &Hash) -> Result<Vec<u8>, Error> {
        if self.description.always_authenticate {
            // Raw CKM_ECDSA and CKM_RSA_PKCS_PSS are single-part: cryptoki offers no way to
            // log in between C_SignInit and C_Sign for them. Only sign_message can.
            let mut session = self.token.session()?;
            let result = always_authenticate_error(
                &self.token,
                &session,
                &self.description,
                if self.description.key_type == "EC" {
                    "CKM_ECDSA"
                } else {
                    "CKM_RSA_PKCS_PSS"
                },
            );
            return Err(session.check(result)?);
        }
        let mut session = self.token.session()?;
        let result = match self.algorithm {
            SignatureAlgorithm::RsaPssSha256 => session
                .sign(
                    &Mechanism::RsaPkcsPss(Self::pss_params()),
                    self.key,
                    digest.as_bytes(),
                )
                .map_err(|error| self.token.error(error)),
            _ => session
                .sign(&Mechanism::Ecdsa, self.key, digest.as_bytes())
                .map_err(|error| self.token.error(error)),
        };
        let signature = session.check(result)?;
        drop(session);
        match self.algorithm {
            SignatureAlgorithm::RsaPssSha256 => Ok(signature),
            _ => self.encode_ecdsa(signature),
        }
    }

    fn sign_message(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        if !self.description.always_authenticate {
            return self.sign_digest(&Hash::sha256(message));
        }
        match self.algorithm {
            SignatureAlgorithm::RsaPssSha256 => self
                .sign_with_context_login(&Mechanism::Sha256RsaPkcsPss(Self::pss_params()), message),
            _ if self.ecdsa_sha256 => {
                let raw = self.sign_with_context_login(&Mechanism::EcdsaSha256, message)?;
                self.encode_ecdsa(raw)
            }
            _ => self.sign_digest(&Hash::sha256(message)),
        }
    }
}

/// The error for an always-authenticate key this module cannot re-authenticate for,
/// listing the keys on the token that ask for the PIN once per session.
pub(super) fn always_authenticate_error(
    token: &Pkcs11Token,
    session: &Session,
    key: &super::KeyDescription,
    mechanism: &str,
) -> Result<Error, Error> {
    let alternatives = token
        .private_keys_in(session, &[Attribute::Sign(true)])?
        .into_iter()
        .filter(|(_, other)| !other.always_authenticate)
        .map(|(_, other)| other.to_string())
        .collect();
    Ok(Error::AlwaysAuthenticate {
        token: token.label().to_owned(),
        key: key.to_string(),
        mechanism: mechanism.to_owned(),
        alternatives,
    })
}

/// The SubjectPublicKeyInfo of the public key object with the key's CKA_ID, if any.
fn public_key_from_token(
    token: &Pkcs11Token,
    session: &Session,
    key: &super::KeyDescription,
) -> Result<Option<Vec<u8>>, Error> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(key.id.clone()),
        ])
        .map_err(|error| token.error(error))?;
    let Some(&handle) = handles.first() else {
        return Ok(None);
    };
    let encoding = |error: pkcs8::spki::Error| Error::KeyEncoding(error.to_string());
    if key.key_type == "EC" {
        let attributes = session
            .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(|error| token.error(error))?;
        let mut params = None;
        let mut point = None;
        for attribute in attributes {
            match attribute {
                Attribute::EcParams(value) => params = Some(value),
                Attribute::EcPoint(value) => point = Some(value),
                _ => {}
            }
        }
        if params.as_deref() != Some(P256_EC_PARAMS) {
            return Err(Error::UnsupportedKey(format!(
                "key {key} is not on curve P-256"
            )));
        }
        let point =
            point.ok_or_else(|| Error::KeyEncoding("public key has no CKA_EC_POINT".into()))?;
        let point = unwrap_octet_string(&point);
        let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| Error::KeyEncoding("CKA_EC_POINT is not a P-256 point".into()))?;
        return Ok(Some(
            public.to_public_key_der().map_err(encoding)?.into_vec(),
        ));
    }
    let attributes = session
        .get_attributes(
            handle,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(|error| token.error(error))?;
    let mut modulus = None;
    let mut exponent = None;
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(value) => modulus = Some(value),
            Attribute::PublicExponent(value) => exponent = Some(value),
            _ => {}
        }
    }
    let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
        return Ok(None);
    };
    let public = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&modulus),
        rsa::BigUint::from_bytes_be(&exponent),
    )
    .map_err(|error| Error::KeyEncoding(error.to_string()))?;
    Ok(Some(
        public.to_public_key_der().map_err(encoding)?.into_vec(),
    ))
}

/// CKA_EC_POINT is a DER OCTET STRING around the SEC1 point in PKCS#11 2.40 (SoftHSM:
/// `04 41 04 …`, 67 bytes for P-256), but some modules return the bare 65-byte point.
fn unwrap_octet_string(value: &[u8]) -> &[u8] {
    match value {
        [0x04, 0x41, point @ ..] if point.len() == 0x41 => point,
        _ => value,
    }
}
