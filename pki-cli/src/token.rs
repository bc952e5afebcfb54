//! CA keys on a PKCS#11 token, addressed by an RFC 7512 `pkcs11:` URI.
//!
//! ```text
//! pkcs11:token=hospital-ca;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so
//! ```
//!
//! Everything PKCS#11 is wardseal-card's: the URI parser, loading the module once per
//! process (the SoftHSM 2.6.1 crash rules), finding the token by label or serial (never
//! by slot number), the login with a zeroized PIN, the session pool, and the signing key
//! itself ([`Pkcs11X509Key`]: EC P-256 with SHA-256 or P-384 with SHA-384, DER out). This
//! module keeps what is the CA's: the URI text stored in the CA database, where the PIN
//! comes from, the module fallback ([`MODULE_ENVIRONMENT_VARIABLE`]), the [`CaSigner`]
//! seam, and turning the card's errors into the CA's ([`From<wardseal_card::Error>`]).

use std::fmt;
use std::path::PathBuf;

use wardseal_card::pkcs11::Pkcs11Uri as CardUri;
use wardseal_card::{KeySelector, Pkcs11Config, Pkcs11X509Key, TokenSelector};

use crate::error::{Cause, Error, KeyError, TokenError};
use crate::key::SecretSource;
use crate::signer::CaSigner;

/// Where the module is when the URI does not say (`module-path=`).
pub const MODULE_ENVIRONMENT_VARIABLE: &str = "WARDSEAL_PKCS11_MODULE";

/// A `pkcs11:` URI naming a token key, kept as written (that is what the CA database
/// stores). Never holds a PIN: `pin-value` is refused, and so is `slot-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    text: String,
    // Boxed: the parsed form is ten optional fields, and this sits in small enums.
    parsed: Box<CardUri>,
}

impl Pkcs11Uri {
    /// Parses a URI; it must name a token (`token=` or `serial=`) and a key (`object=`
    /// or `id=`).
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let parsed = CardUri::parse(text).map_err(|error| {
            // The card library's URI in its error has any PIN elided already.
            let (uri, reason) = match error {
                wardseal_card::Error::InvalidUri { uri, reason } => (uri, reason),
                other => (text.to_owned(), other.to_string()),
            };
            let reason = if text.contains("pin-value=") {
                "a PIN in the URI is refused (it ends up in shell history and process lists); \
                 use pin-source=file:…, --pin-file or --pin-env"
                    .to_owned()
            } else {
                reason
            };
            TokenError::BadUri { uri, reason }
        })?;
        let bad = |reason: &str| TokenError::BadUri {
            uri: text.to_owned(),
            reason: reason.to_owned(),
        };
        if parsed.token.is_none() && parsed.serial.is_none() {
            return Err(bad("it names no token (token=… or serial=…)"));
        }
        if parsed.object.is_none() && parsed.id.is_none() {
            return Err(bad("it names no key (object=… or id=…)"));
        }
        Ok(Self {
            text: text.to_owned(),
            parsed: Box::new(parsed),
        })
    }

    /// The token label (`token=`), if given.
    pub fn token(&self) -> Option<&str> {
        self.parsed.token.as_deref()
    }

    /// The key label (`object=`), if given.
    pub fn object(&self) -> Option<&str> {
        self.parsed.object.as_deref()
    }

    /// The key's `CKA_ID` (`id=`), if given.
    pub fn id(&self) -> Option<&[u8]> {
        self.parsed.id.as_deref()
    }

    /// The module (`module-path=`), else [`MODULE_ENVIRONMENT_VARIABLE`].
    pub fn module(&self) -> Result<PathBuf, TokenError> {
        match (
            &self.parsed.module_path,
            std::env::var_os(MODULE_ENVIRONMENT_VARIABLE),
        ) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(path)) => Ok(PathBuf::from(path)),
            (None, None) => Err(TokenError::BadUri {
                uri: self.text.clone(),
                reason: format!(
                    "no module: add ?module-path=… or set {MODULE_ENVIRONMENT_VARIABLE}"
                ),
            }),
        }
    }

    /// The token as the CA's messages name it: `labelled "x"` or `with serial "y"`.
    fn token_description(&self) -> String {
        match (&self.parsed.token, &self.parsed.serial) {
            (Some(label), _) => format!("labelled {label:?}"),
            (None, Some(serial)) => format!("with serial {serial:?}"),
            (None, None) => "(unnamed)".to_owned(),
        }
    }

    /// The card library's configuration: `pin` if given, else the URI's `pin-source`,
    /// else a prompt.
    fn config(&self, pin: Option<&SecretSource>) -> Result<Pkcs11Config, TokenError> {
        let key = match (self.parsed.id.clone(), self.parsed.object.clone()) {
            (Some(id), Some(label)) => KeySelector::IdAndLabel(id, label),
            (Some(id), None) => KeySelector::Id(id),
            (None, Some(label)) => KeySelector::Label(label),
            (None, None) => {
                return Err(TokenError::BadUri {
                    uri: self.text.clone(),
                    reason: "it names no key (object=… or id=…)".to_owned(),
                });
            }
        };
        let pin = match (pin, &self.parsed.pin_source) {
            (Some(source), _) => card_secret_source(source, &self.token_description()),
            (None, Some(source)) => wardseal_card::SecretSource::parse(source)
                .unwrap_or_else(|| wardseal_card::SecretSource::File(PathBuf::from(source))),
            (None, None) => card_secret_source(&SecretSource::Prompt, &self.token_description()),
        };
        Ok(Pkcs11Config::new(
            self.module()?,
            TokenSelector::Uri(self.parsed.clone()),
            key,
            Some(pin),
        ))
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The card library's form of a PIN source; `token` names the token in a prompt.
pub fn card_secret_source(source: &SecretSource, token: &str) -> wardseal_card::SecretSource {
    match source {
        SecretSource::File(path) => wardseal_card::SecretSource::File(path.clone()),
        SecretSource::Environment(name) => wardseal_card::SecretSource::Env(name.clone()),
        SecretSource::Prompt => {
            wardseal_card::SecretSource::Prompt(format!("PIN of token {token}: "))
        }
    }
}

/// A CA key on a token, logged in and ready to sign.
#[derive(Debug)]
pub struct TokenKey(Pkcs11X509Key);

impl TokenKey {
    /// Loads the module, finds the token, checks its PIN is not locked, logs in with the
    /// PIN from `pin` (else the URI's `pin-source`, else a prompt), and finds the key.
    pub fn open(uri: &Pkcs11Uri, pin: Option<&SecretSource>) -> Result<Self, Error> {
        let config = uri.config(pin)?;
        Pkcs11X509Key::open(&config)
            .map(Self)
            .map_err(|error| match error {
                // The CA names the token as its URI does, not as the card's selector prints.
                wardseal_card::Error::TokenNotFound { present, .. } => TokenError::NotFound {
                    wanted: uri.token_description(),
                    present: present_list(&present),
                }
                .into(),
                other => other.into(),
            })
    }

    /// The card library's key.
    pub fn key(&self) -> &Pkcs11X509Key {
        &self.0
    }
}

impl CaSigner for TokenKey {
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.curve().rcgen_algorithm()
    }

    fn public_key(&self) -> &[u8] {
        self.0.subject_public_key()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.0.sign_x509(message).map_err(Error::from)
    }
}

fn present_list(present: &[String]) -> String {
    if present.is_empty() {
        "none".to_owned()
    } else {
        present.join(", ")
    }
}

impl From<wardseal_card::Error> for Error {
    /// Keeps the cases a user acts on differently as their own variants (wrong PIN with
    /// what the token says about tries left, locked PIN, token or key missing, token
    /// removed, PIN unreadable); the rest keep the card library's message as their cause.
    fn from(error: wardseal_card::Error) -> Self {
        use wardseal_card::Error as Card;
        match error {
            Card::WrongPin { token, tries } => TokenError::WrongPin {
                label: token,
                tries,
            }
            .into(),
            Card::PinLocked { token } => TokenError::Locked { label: token }.into(),
            Card::TokenNotFound { selector, present } => TokenError::NotFound {
                wanted: format!("matching {selector}"),
                present: present_list(&present),
            }
            .into(),
            Card::TokenRemoved { token } => TokenError::Removed { label: token }.into(),
            Card::KeyNotFound {
                token,
                key,
                present,
            } => TokenError::KeyNotFound {
                label: token,
                object: key,
                present: present_list(&present),
            }
            .into(),
            Card::SecretUnavailable {
                what,
                source_description,
                reason,
            } => KeyError::SecretUnavailable {
                what: what.to_owned(),
                source_description,
                reason,
            }
            .into(),
            Card::InvalidUri { uri, reason } => TokenError::BadUri { uri, reason }.into(),
            Card::KeyDecrypt { path } => KeyError::WrongPassphrase { path }.into(),
            other => TokenError::Card(Cause::new(other)).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parses_rfc7512_examples_and_refuses_pin_values() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=hospital%20ca;object=issuing;id=%01%02?module-path=/m.so&pin-source=file:/p",
        )
        .unwrap();
        assert_eq!(uri.token(), Some("hospital ca"));
        assert_eq!(uri.object(), Some("issuing"));
        assert_eq!(uri.id(), Some(&[1_u8, 2][..]));
        assert_eq!(uri.module().unwrap(), PathBuf::from("/m.so"));
        let config = uri.config(None).unwrap();
        assert!(
            matches!(&config.pin, Some(wardseal_card::SecretSource::File(path)) if path == std::path::Path::new("/p")),
            "{:?}",
            config.pin
        );
        let error = Pkcs11Uri::parse("pkcs11:token=t;object=k?pin-value=1234").unwrap_err();
        assert!(
            error.to_string().contains("PIN in the URI is refused"),
            "{error}"
        );
        assert!(!error.to_string().contains("1234"), "{error}");
        assert!(Pkcs11Uri::parse("pkcs11:object=k").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=t").is_err());
        assert!(Pkcs11Uri::parse("file:token=t;object=k").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=%zz;object=k").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:slot-id=1;object=k").is_err());
    }

    #[test]
    fn card_errors_keep_their_specific_messages() {
        let wrong: Error = wardseal_card::Error::WrongPin {
            token: "ca".into(),
            tries: wardseal_card::PinTries::FinalTry,
        }
        .into();
        let text = wrong.to_string();
        assert!(text.contains("refused the PIN"), "{text}");
        assert!(
            text.contains("one more wrong PIN locks the token"),
            "{text}"
        );
        let locked: Error = wardseal_card::Error::PinLocked { token: "ca".into() }.into();
        assert!(locked.to_string().contains("is locked"), "{locked}");
        let other: Error = wardseal_card::Error::MechanismUnsupported {
            token: "ca".into(),
            mechanism: "CKM_ECDSA".into(),
        }
        .into();
        assert!(other.to_string().contains("CKM_ECDSA"), "{other}");
    }
}
