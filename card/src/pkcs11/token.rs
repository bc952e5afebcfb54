//! [`Pkcs11Token`]: a chosen, logged-in token and its session pool.

use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use cryptoki::error::{Error as CryptokiError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use super::{KeySelector, Module, TokenDescription, TokenSelector, map_error, session_is_dead};
use crate::Error;
use crate::error::PinTries;
use crate::secret::{Pin, SecretSource};

/// DER of the P-256 curve OID (`prime256v1`), as CKA_EC_PARAMS holds it.
pub(crate) const P256_EC_PARAMS: &[u8] =
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A token chosen by label, serial or URI, logged in, with a pool of sessions.
///
/// Cloning is cheap and shares the login and the pool. The last clone (and the last
/// signer made from it) closes the sessions, which logs the token out.
#[derive(Clone)]
pub struct Pkcs11Token {
    pub(crate) inner: Arc<TokenInner>,
}

pub(crate) struct TokenInner {
    pub(crate) module: Arc<Module>,
    pub(crate) slot: Slot,
    pub(crate) label: String,
    pub(crate) serial: String,
    pub(crate) pin: Option<Pin>,
    idle: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Token")
            .field("module", &self.inner.module.path())
            .field("label", &self.inner.label)
            .field("serial", &self.inner.serial)
            .field("pin", &"[secret elided]")
            .finish()
    }
}

impl Drop for TokenInner {
    fn drop(&mut self) {
        let sessions = std::mem::take(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner));
        for session in sessions {
            self.module.close_session(session);
        }
    }
}

/// A session borrowed from the pool; goes back on drop unless it died.
pub(crate) struct PooledSession<'a> {
    token: &'a TokenInner,
    session: Option<Session>,
    dead: bool,
}

impl PooledSession<'_> {
    /// Marks the session dead if `error` says the token went away.
    pub(crate) fn check<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(error) = &result
            && session_is_dead(error)
        {
            self.dead = true;
        }
        result
    }
}

impl Deref for PooledSession<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        // Only `drop` takes the session out.
        #[expect(clippy::unwrap_used, reason = "the session is present until drop")]
        self.session.as_ref().unwrap()
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if self.dead {
                self.token.module.close_session(session);
            } else {
                self.token
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(session);
            }
        }
    }
}

/// A private key found on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyDescription {
    /// CKA_LABEL.
    pub label: String,
    /// CKA_ID.
    pub id: Vec<u8>,
    /// "EC", "RSA", or the PKCS#11 key type for others.
    pub key_type: String,
    /// CKA_ALWAYS_AUTHENTICATE: the PIN is asked for before every signature.
    pub always_authenticate: bool,
}

impl std::fmt::Display for KeyDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "label {:?} (id {}, {})",
            self.label,
            hex::encode(&self.id),
            self.key_type
        )
    }
}

impl Pkcs11Token {
    /// Loads `module`, finds the one token that matches `selector`, reads the PIN from
    /// `pin` and logs in.
    ///
    /// `pin = None` is for tokens with a protected authentication path (a pinpad reader):
    /// the PIN is then entered on the reader. A locked PIN is reported without trying.
    pub fn open(
        module: &Path,
        selector: &TokenSelector,
        pin: Option<&SecretSource>,
    ) -> Result<Self, Error> {
        let module = Module::load(module)?;
        let tokens = module.tokens()?;
        let mut matching = tokens.iter().filter(|token| selector.matches(token));
        let description = match (matching.next(), matching.count()) {
            (Some(description), 0) => description.clone(),
            (Some(_), more) => {
                return Err(Error::AmbiguousToken {
                    selector: selector.to_string(),
                    count: more + 1,
                });
            }
            (None, _) => {
                return Err(Error::TokenNotFound {
                    selector: selector.to_string(),
                    present: tokens
                        .iter()
                        .map(|token| format!("{:?} (serial {})", token.label, token.serial))
                        .collect(),
                });
            }
        };
        if description.user_pin_locked {
            return Err(Error::PinLocked {
                token: description.label,
            });
        }
        let pin = match pin {
            Some(source) => Some(Pin::read(source)?),
            None if description.protected_authentication_path => None,
            None => {
                return Err(Error::SecretUnavailable {
                    what: "PIN",
                    source_description: "nowhere".to_owned(),
                    reason: format!(
                        "token {:?} has no pinpad; give a PIN file, variable or prompt",
                        description.label
                    ),
                });
            }
        };
        let token = Self {
            inner: Arc::new(TokenInner {
                module,
                slot: description.slot,
                label: description.label,
                serial: description.serial,
                pin,
                idle: Mutex::new(Vec::new()),
            }),
        };
        // Log in now, so a wrong PIN is reported here and not by the first signature.
        drop(token.session()?);
        Ok(token)
    }

    /// The token label.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The token serial number.
    pub fn serial(&self) -> &str {
        &self.inner.serial
    }

    /// The module the token is reached through.
    pub fn module(&self) -> &Arc<Module> {
        &self.inner.module
    }

    /// What the module says about the token now (PIN flags included).
    pub fn describe(&self) -> Result<TokenDescription, Error> {
        self.inner.module.describe(self.inner.slot)
    }

    pub(crate) fn error(&self, error: CryptokiError) -> Error {
        map_error(&self.inner.label, error)
    }

    /// A session from the pool, or a new logged-in one.
    pub(crate) fn session(&self) -> Result<PooledSession<'_>, Error> {
        let pooled = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let session = match pooled {
            Some(session) => session,
            None => {
                let session = self
                    .inner
                    .module
                    .context()
                    .open_ro_session(self.inner.slot)
                    .map_err(|error| self.error(error))?;
                if let Err(error) = self.login(&session, UserType::User) {
                    self.inner.module.close_session(session);
                    return Err(error);
                }
                session
            }
        };
        Ok(PooledSession {
            token: &self.inner,
            session: Some(session),
            dead: false,
        })
    }

    /// Logs `session` in as `user` (User once per token; ContextSpecific before each
    /// signature with an always-authenticate key).
    pub(crate) fn login(&self, session: &Session, user: UserType) -> Result<(), Error> {
        let result = session.login(user, self.inner.pin.as_ref().map(Pin::secret));
        match result {
            Ok(()) => Ok(()),
            Err(CryptokiError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CryptokiError::Pkcs11(RvError::PinIncorrect, _)) => {
                let description = self.describe();
                Err(match description {
                    Ok(description) if description.user_pin_locked => Error::PinLocked {
                        token: self.inner.label.clone(),
                    },
                    Ok(description) => Error::WrongPin {
                        token: self.inner.label.clone(),
                        tries: if description.user_pin_final_try {
                            PinTries::FinalTry
                        } else if description.user_pin_count_low {
                            PinTries::Low
                        } else {
                            PinTries::Unknown
                        },
                    },
                    Err(_) => Error::WrongPin {
                        token: self.inner.label.clone(),
                        tries: PinTries::Unknown,
                    },
                })
            }
            Err(error) => Err(self.error(error)),
        }
    }

    /// Runs `operation` in a fresh read-write session (key generation, object creation),
    /// closed afterwards under the module's close lock.
    fn with_rw_session<T>(
        &self,
        operation: impl FnOnce(&Session) -> Result<T, Error>,
    ) -> Result<T, Error> {
        // Keep a logged-in session open meanwhile, so the login state outlives the RW one.
        let _keep_logged_in = self.session()?;
        let session = self
            .inner
            .module
            .context()
            .open_rw_session(self.inner.slot)
            .map_err(|error| self.error(error))?;
        let result = self
            .login(&session, UserType::User)
            .and_then(|()| operation(&session));
        self.inner.module.close_session(session);
        result
    }

    /// The private keys on the token.
    pub fn private_keys(&self) -> Result<Vec<KeyDescription>, Error> {
        let mut session = self.session()?;
        let result = self.private_keys_in(&session, &[]);
        session
            .check(result)
            .map(|keys| keys.into_iter().map(|(_, key)| key).collect())
    }

    pub(crate) fn private_keys_in(
        &self,
        session: &Session,
        filter: &[Attribute],
    ) -> Result<Vec<(ObjectHandle, KeyDescription)>, Error> {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        template.extend_from_slice(filter);
        let handles = session
            .find_objects(&template)
            .map_err(|error| self.error(error))?;
        let mut keys = Vec::with_capacity(handles.len());
        for handle in handles {
            let attributes = session
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Label,
                        AttributeType::Id,
                        AttributeType::KeyType,
                        AttributeType::AlwaysAuthenticate,
                    ],
                )
                .map_err(|error| self.error(error))?;
            let mut key = KeyDescription {
                label: String::new(),
                id: Vec::new(),
                key_type: String::new(),
                always_authenticate: false,
            };
            for attribute in attributes {
                match attribute {
                    Attribute::Label(label) => {
                        key.label = String::from_utf8_lossy(&label).into_owned()
                    }
                    Attribute::Id(id) => key.id = id,
                    Attribute::KeyType(kind) if kind == KeyType::EC => key.key_type = "EC".into(),
                    Attribute::KeyType(kind) if kind == KeyType::RSA => key.key_type = "RSA".into(),
                    Attribute::KeyType(kind) => key.key_type = kind.to_string(),
                    Attribute::AlwaysAuthenticate(flag) => key.always_authenticate = flag,
                    _ => {}
                }
            }
            keys.push((handle, key));
        }
        Ok(keys)
    }

    /// Finds the one private key matching `selector`.
    pub(crate) fn find_key(
        &self,
        session: &Session,
        selector: &KeySelector,
    ) -> Result<(ObjectHandle, KeyDescription), Error> {
        let filter = match selector {
            KeySelector::Id(id) => vec![Attribute::Id(id.clone())],
            KeySelector::Label(label) => vec![Attribute::Label(label.as_bytes().to_vec())],
            KeySelector::IdAndLabel(id, label) => vec![
                Attribute::Id(id.clone()),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        };
        let mut found = self.private_keys_in(session, &filter)?;
        if found.len() == 1
            && let Some(key) = found.pop()
        {
            return Ok(key);
        }
        let present = self
            .private_keys_in(session, &[])?
            .into_iter()
            .map(|(_, key)| key.to_string())
            .collect();
        Err(Error::KeyNotFound {
            token: self.inner.label.clone(),
            key: if found.is_empty() {
                selector.to_string()
            } else {
                format!("{selector} (matches {} keys; select by id)", found.len())
            },
            present,
        })
    }

    /// The value of the certificate object with this CKA_ID, if there is one.
    pub(crate) fn certificate_by_id(
        &self,
        session: &Session,
        id: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        let handles = session
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(id.to_vec()),
            ])
            .map_err(|error| self.error(error))?;
        let Some(&handle) = handles.first() else {
            return Ok(None);
        };
        let attributes = session
            .get_attributes(handle, &[AttributeType::Value])
            .map_err(|error| self.error(error))?;
        Ok(attributes
            .into_iter()
            .find_map(|attribute| match attribute {
                Attribute::Value(value) => Some(value),
                _ => None,
            }))
    }

    /// Generates an ECDSA P-256 key pair on the token: the private key sensitive, not
    /// extractable, signing only; with `always_authenticate`, it asks for the PIN before
    /// every signature.
    pub fn generate_p256_key(
        &self,
        label: &str,
        id: &[u8],
        always_authenticate: bool,
    ) -> Result<(), Error> {
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P256_EC_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::AlwaysAuthenticate(always_authenticate),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        self.with_rw_session(|session| {
            session
                .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
                .map(drop)
                .map_err(|error| self.error(error))
        })
    }

    /// Writes a DER certificate to the token as an X.509 certificate object.
    pub fn write_certificate(
        &self,
        label: &str,
        id: &[u8],
        certificate_der: &[u8],
    ) -> Result<(), Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate_der)
            .map_err(|error| Error::Certificate(error.to_string()))?;
        let template = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Subject(parsed.subject().as_raw().to_vec()),
            Attribute::Issuer(parsed.issuer().as_raw().to_vec()),
            Attribute::SerialNumber(der_integer(parsed.raw_serial())),
            Attribute::Value(certificate_der.to_vec()),
        ];
        self.with_rw_session(|session| {
            session
                .create_object(&template)
                .map(drop)
                .map_err(|error| self.error(error))
        })
    }
}

/// DER INTEGER around a certificate's serial-number content octets (CKA_SERIAL_NUMBER
/// holds the DER encoding). Serials are at most 20 octets, so the short length form fits.
fn der_integer(content: &[u8]) -> Vec<u8> {
    let mut der = Vec::with_capacity(content.len() + 2);
    der.push(0x02);
    der.push(u8::try_from(content.len()).unwrap_or(0x7f).min(0x7f));
    der.extend_from_slice(content);
    der
}
