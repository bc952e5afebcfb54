//! The one error type of wardseal-card, with a sentence for each case that tells the user
//! what to do.

use std::path::PathBuf;

/// How many PIN tries a token says are left after a wrong PIN.
///
/// PKCS#11 does not give a count, only flags: "count low" and "final try".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinTries {
    /// The token did not say (SoftHSM never does).
    Unknown,
    /// The token says few tries are left (`CKF_USER_PIN_COUNT_LOW`).
    Low,
    /// The next wrong PIN locks the token (`CKF_USER_PIN_FINAL_TRY`).
    FinalTry,
}

impl std::fmt::Display for PinTries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unknown => "the token does not say how many tries are left",
            Self::Low => "few tries are left before the token locks",
            Self::FinalTry => "one more wrong PIN locks the token",
        })
    }
}

/// Everything that can go wrong while finding, unlocking and using a signing key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PKCS#11 module file does not exist.
    #[error(
        "PKCS#11 module {path} does not exist; install it (Debian: `softhsm2` for \
         libsofthsm2.so, `opensc-pkcs11` for opensc-pkcs11.so) or give its full path"
    )]
    ModuleMissing {
        /// The path that was given.
        path: PathBuf,
    },
    /// The module exists but could not be loaded or initialised.
    #[error("cannot load PKCS#11 module {path}: {detail}")]
    ModuleLoad {
        /// The module.
        path: PathBuf,
        /// What the loader or `C_Initialize` said.
        detail: String,
    },
    /// No token matched the selector.
    #[error("no token matches {selector}; tokens present: {present:?}")]
    TokenNotFound {
        /// The selector, as the user wrote it.
        selector: String,
        /// Labels (and serials) of the tokens that are present.
        present: Vec<String>,
    },
    /// Several tokens matched the selector.
    #[error("{selector} matches {count} tokens; select by serial number or a fuller pkcs11: URI")]
    AmbiguousToken {
        /// The selector.
        selector: String,
        /// How many matched.
        count: usize,
    },
    /// The token was removed (or its reader went away) during the operation.
    #[error("token {token:?} was removed; insert it again and retry")]
    TokenRemoved {
        /// Token label.
        token: String,
    },
    /// The PIN was wrong.
    #[error("wrong PIN for token {token:?}: {tries}")]
    WrongPin {
        /// Token label.
        token: String,
        /// What the token says about the tries left.
        tries: PinTries,
    },
    /// The user PIN is locked; no login is attempted.
    #[error("the user PIN of token {token:?} is locked; unblock it with the SO PIN or PUK")]
    PinLocked {
        /// Token label.
        token: String,
    },
    /// The PIN (or passphrase) could not be read from where it was said to be.
    #[error("cannot read the {what} from {source_description}: {reason}")]
    SecretUnavailable {
        /// "PIN" or "passphrase".
        what: &'static str,
        /// Where it was to come from ("file /x", "environment variable X", "the terminal").
        source_description: String,
        /// Why it could not be read.
        reason: String,
    },
    /// No private key on the token matched.
    #[error("no private signing key {key} on token {token:?}; keys present: {present:?}")]
    KeyNotFound {
        /// Token label.
        token: String,
        /// The key selector ("id 01", "label \"x\"").
        key: String,
        /// Labels and ids of the private keys that are present.
        present: Vec<String>,
    },
    /// No certificate object matched the key.
    #[error("no certificate with {key} on token {token:?}; enroll the token first")]
    CertificateNotFound {
        /// Token label.
        token: String,
        /// The key's id or label.
        key: String,
    },
    /// The token or module cannot perform a mechanism we need.
    #[error("token {token:?} does not support {mechanism}")]
    MechanismUnsupported {
        /// Token label.
        token: String,
        /// The mechanism, e.g. `CKM_RSA_PKCS_PSS`.
        mechanism: String,
    },
    /// The key asks for the PIN before every signature and this module cannot do that for
    /// the mechanism in use.
    #[error(
        "key {key} on token {token:?} asks for the PIN before every signature \
         (CKA_ALWAYS_AUTHENTICATE) and this module cannot re-authenticate for {mechanism}; \
         use a key that asks once per session instead: {alternatives:?}"
    )]
    AlwaysAuthenticate {
        /// Token label.
        token: String,
        /// The key.
        key: String,
        /// The mechanism that cannot be used with a context-specific login.
        mechanism: String,
        /// Signing keys on the same token that do not need the PIN each time.
        alternatives: Vec<String>,
    },
    /// The key is of a kind wardseal does not sign with.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A `pkcs11:` URI (RFC 7512) was malformed or asked for something not allowed.
    #[error("invalid pkcs11: URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other PKCS#11 failure.
    #[error("token {token:?}: {function} failed: {code}")]
    Token {
        /// Token label (empty when no token was selected yet).
        token: String,
        /// The PKCS#11 function.
        function: String,
        /// The return value (`CKR_…`) and its meaning.
        code: String,
    },
    /// A key file could not be read or written.
    #[error("{action} key file {path}: {source}")]
    KeyFile {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is not an encrypted PKCS#8 key, or the passphrase is wrong.
    #[error("cannot decrypt key file {path}: wrong passphrase, or not an encrypted PKCS#8 key")]
    KeyDecrypt {
        /// The file.
        path: PathBuf,
    },
    /// Encoding or decoding key material failed.
    #[error("key encoding: {0}")]
    KeyEncoding(String),
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Certificate(String),
    /// The key signs whole messages (Ed25519), so it cannot sign a digest.
    #[error("{algorithm} keys sign whole messages, not digests; call sign_message")]
    DigestUnsupported {
        /// The key's algorithm.
        algorithm: crate::SignatureAlgorithm,
    },
    /// Signing failed in software.
    #[error("signing failed: {0}")]
    Signing(String),
    /// pcscd is not running (or its socket is not reachable).
    #[error("the PC/SC daemon is not running; start it (`pcscd`, or `pcscd -f` in the foreground)")]
    PcscUnavailable,
    /// Any other PC/SC failure.
    #[error("PC/SC: {operation} failed: {detail}")]
    Pcsc {
        /// The operation.
        operation: &'static str,
        /// What pcsc-lite said.
        detail: String,
    },
    /// The virtual card could not talk to vpcd.
    #[error("virtual card at {address}: {source}")]
    VirtualCard {
        /// vpcd's address.
        address: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
