//! Keys on PKCS#11 tokens and smart cards, through `cryptoki`.
//!
//! - [`Module`]: one loaded, initialised module per process (see its docs for the
//!   SoftHSM 2.6.1 crash causes this prevents).
//! - [`Pkcs11Token`]: a token chosen by label, serial or `pkcs11:` URI (never by slot
//!   number), logged in once, with a pool of sessions (one per concurrent caller).
//! - [`Pkcs11Signer`]: a private key on the token found by CKA_ID or label, with its public
//!   key and certificate; ECDSA P-256 (`CKM_ECDSA` over a software SHA-256) and RSA-PSS.
//! - [`Pkcs11X509Key`]: an EC P-256 or P-384 key that signs certificates, CRLs and CSRs
//!   through rcgen (a CA key on a token); P-384 has no place in the `Signer` trait, whose
//!   algorithms are wardseal-core's batch-header ones.
//! - Enrollment: [`Pkcs11Token::enroll`] generates a P-256 key on the token and builds a CSR
//!   signed by it; [`Pkcs11Token::install_certificate`] writes the issued certificate back.

mod enroll;
mod module;
mod signer;
mod token;
mod uri;
mod x509_key;

use cryptoki::error::{Error as CryptokiError, RvError};

pub use enroll::{Enrollment, EnrollmentRequest};
pub use module::{Module, PublicObject, PublicObjectKind, TokenDescription};
pub use signer::{Pkcs11Config, Pkcs11Signer};
pub use token::{KeyDescription, Pkcs11Token};
pub use uri::Pkcs11Uri;
pub use x509_key::{EcCurve, Pkcs11X509Key};

use crate::Error;

/// Which token to use. Never a slot number: those change when tokens are initialised and
/// when readers come and go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSelector {
    /// The token label (CKA_LABEL of the token, trailing spaces ignored).
    Label(String),
    /// The token serial number.
    Serial(String),
    /// The token attributes of a `pkcs11:` URI.
    Uri(Box<Pkcs11Uri>),
}

impl TokenSelector {
    pub(crate) fn matches(&self, token: &TokenDescription) -> bool {
        match self {
            Self::Label(label) => token.label == *label,
            Self::Serial(serial) => token.serial == *serial,
            Self::Uri(uri) => uri.matches_token(
                &token.label,
                &token.serial,
                &token.manufacturer,
                &token.model,
            ),
        }
    }
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Label(label) => write!(f, "label {label:?}"),
            Self::Serial(serial) => write!(f, "serial {serial:?}"),
            Self::Uri(uri) => write!(f, "URI attributes {uri:?}"),
        }
    }
}

/// Which private key on the token to use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySelector {
    /// CKA_ID (the id that ties a key to its public key and certificate).
    Id(Vec<u8>),
    /// CKA_LABEL.
    Label(String),
    /// Both must match.
    IdAndLabel(Vec<u8>, String),
}

impl std::fmt::Display for KeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "id {}", hex::encode(id)),
            Self::Label(label) => write!(f, "label {label:?}"),
            Self::IdAndLabel(id, label) => write!(f, "id {} label {label:?}", hex::encode(id)),
        }
    }
}

/// Maps a cryptoki error to ours. `token` is the label for the message ("" before one is chosen).
pub(crate) fn map_error(token: &str, error: CryptokiError) -> Error {
    let token = token.to_owned();
    match error {
        CryptokiError::Pkcs11(rv, function) => match rv {
            RvError::PinLocked => Error::PinLocked { token },
            RvError::TokenNotPresent
            | RvError::DeviceRemoved
            | RvError::TokenNotRecognized
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed => Error::TokenRemoved { token },
            RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                Error::MechanismUnsupported {
                    token,
                    mechanism: format!("the mechanism asked of {function}"),
                }
            }
            other => Error::Token {
                token,
                function: function.to_string(),
                code: format!("{other:?}: {other}"),
            },
        },
        other => Error::Token {
            token,
            function: "cryptoki".to_owned(),
            code: other.to_string(),
        },
    }
}

/// Whether an error means the session it happened in is dead and must not go back to the pool.
pub(crate) fn session_is_dead(error: &Error) -> bool {
    matches!(error, Error::TokenRemoved { .. })
}
