//! The one error type of the CA library, with a typed sub-enum per domain.
//!
//! Every message says what went wrong in the user's terms and, where there is one, what
//! to do about it. Errors from dependencies (sqlx, rcgen, pkcs8, wardseal-card) are kept out of
//! the public API: they travel as an opaque [`Cause`] that still shows in the source chain.

use std::fmt;
use std::path::PathBuf;

use wardseal_core::epc::EpcError;
use wardseal_core::identity::{ExtensionError, Role};

use crate::serial::SerialNumber;

/// Everything that can go wrong in the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CA directory is missing, already initialised, or its state is inconsistent.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// A key file or its passphrase.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A PKCS#11 token or its PIN.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A request that does not fit its certificate profile.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A certificate signing request that cannot be used.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// Rows of a batch file that cannot be issued; nothing was issued.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A revocation, renewal or lookup that names something the inventory does not hold.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A certificate that does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The audit log has been altered.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// An EST (RFC 7030) enrollment that is refused, or an EST server that cannot start.
    #[error(transparent)]
    Est(#[from] EstError),
    /// The offline root: its directory, its state, its ceremony.
    #[error(transparent)]
    Root(#[from] RootError),
    /// The CA database could not be read or written.
    #[error("CA database {path}: {action} failed")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The database error.
        #[source]
        source: Cause,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("read", "create", …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or CRL could not be encoded or signed.
    #[error("could not {action}")]
    Encoding {
        /// What was being encoded.
        action: &'static str,
        /// The encoder's error.
        #[source]
        source: Cause,
    },
    /// The CRL server could not bind or serve.
    #[error("CRL server on {address}: {source}")]
    Serve {
        /// The address asked for.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
}

/// An error from a dependency, kept opaque so that its type is not part of our API.
pub struct Cause(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }

    pub(crate) fn message(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The CA directory and the CA's own certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// `init` on a directory that already holds a CA.
    #[error("{path} already holds a CA; choose another --ca-dir or remove it")]
    AlreadyInitialised {
        /// The CA directory.
        path: PathBuf,
    },
    /// A command on a directory that holds no CA.
    #[error("{path} holds no CA (no ca.db); run `wardseal-pki init` first or pass --ca-dir")]
    NotInitialised {
        /// The CA directory.
        path: PathBuf,
    },
    /// The issuing CA certificate is not valid now.
    #[error(
        "the issuing CA certificate is valid from {not_before} to {not_after}, not now; \
         renew the CA (init a new one) before issuing or signing CRLs"
    )]
    Expired {
        /// Start of the CA's validity.
        not_before: String,
        /// End of the CA's validity.
        not_after: String,
    },
    /// A certificate would be valid after the issuing CA expires.
    #[error(
        "a certificate valid until {requested} would outlive the issuing CA (valid until \
         {ca_not_after}); ask for fewer --days"
    )]
    OutlivesCa {
        /// End of validity asked for.
        requested: String,
        /// End of the issuing CA's validity.
        ca_not_after: String,
    },
    /// A CA certificate stored in the database does not parse.
    #[error("the stored {which} CA certificate is unreadable; the CA database is damaged")]
    BadCaCertificate {
        /// "root" or "issuing".
        which: &'static str,
    },
    /// A setting given to `init` is out of range.
    #[error("{setting}: {reason}")]
    BadSetting {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Key files, passphrases and key generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase does not decrypt the key file.
    #[error("wrong passphrase for {path} (it does not decrypt the key)")]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// A passphrase or PIN could not be read from where it was asked for.
    #[error("cannot read the {what} from {source_description}: {reason}")]
    SecretUnavailable {
        /// What was read ("CA key passphrase", "PIN of token …").
        what: String,
        /// Where it was looked for ("file /x", "environment variable X", "prompt").
        source_description: String,
        /// Why it could not be read.
        reason: String,
    },
    /// A new passphrase is too short to protect a CA key.
    #[error("the passphrase has {length} characters; a CA key needs at least {minimum}")]
    PassphraseTooShort {
        /// Its length in characters.
        length: usize,
        /// The minimum.
        minimum: usize,
    },
    /// A key file is not an (encrypted) PKCS#8 key of a supported algorithm.
    #[error("{path} is not a usable key: {reason}")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The algorithm named is not one this CA can use for this purpose.
    #[error("unknown or unsupported key algorithm {name:?}; use one of: {supported}")]
    UnsupportedAlgorithm {
        /// The name given.
        name: String,
        /// The names accepted.
        supported: &'static str,
    },
    /// Key generation failed.
    #[error("could not generate a {algorithm} key")]
    Generation {
        /// The algorithm.
        algorithm: &'static str,
        /// The generator's error.
        #[source]
        source: Cause,
    },
    /// A file that would receive a new private key already exists.
    #[error("{path} already exists; refusing to overwrite a private key")]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
}

/// PKCS#11 tokens: the CA's own keys and patients' cards.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// A `pkcs11:` URI that does not parse or lacks what is needed.
    #[error("bad PKCS#11 URI {uri:?}: {reason}")]
    BadUri {
        /// The URI (a PIN in it is refused, never echoed).
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No token matches.
    #[error("no token {wanted}; tokens present: {present}")]
    NotFound {
        /// The token asked for (`labelled "x"`, `with serial "y"`).
        wanted: String,
        /// The tokens present.
        present: String,
    },
    /// The token's user PIN is locked.
    #[error(
        "the user PIN of token {label:?} is locked (too many wrong PINs); unlock it with the \
         security officer PIN (e.g. `pkcs11-tool --init-pin --login --login-type so`)"
    )]
    Locked {
        /// The token label.
        label: String,
    },
    /// The PIN was refused.
    #[error("token {label:?} refused the PIN ({tries}); check the PIN file or variable")]
    WrongPin {
        /// The token label.
        label: String,
        /// What the token says about the tries left.
        tries: wardseal_card::PinTries,
    },
    /// The token went away during the operation.
    #[error("token {label:?} was removed; insert it again and retry")]
    Removed {
        /// The token label.
        label: String,
    },
    /// No private key matching the URI or option on the token.
    #[error("no private key {object} on token {label:?}; keys present: {present}")]
    KeyNotFound {
        /// The token label.
        label: String,
        /// The key label or id asked for.
        object: String,
        /// The private keys present.
        present: String,
    },
    /// A card's certificate was issued and recorded but could not be written to the card.
    #[error(
        "certificate {serial} was issued and recorded but could not be written to token \
         {label:?}; write it with `pkcs11-tool --write-object` (same label and id as the key) \
         or revoke it"
    )]
    CertificateNotWritten {
        /// The serial of the issued certificate.
        serial: String,
        /// The token label.
        label: String,
        /// Why it could not be written.
        #[source]
        source: Cause,
    },
    /// Anything else the card library reports (module missing, mechanism or key type
    /// unsupported, a key that wants the PIN before every signature, pcscd not running…),
    /// with its message.
    #[error(transparent)]
    Card(Cause),
}

/// A request that does not fit the certificate profile it asks for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The identity fields do not fit the role (e.g. a group id on a staff certificate).
    #[error("{0}")]
    Identity(#[from] ExtensionError),
    /// An EPC that does not parse.
    #[error("malformed EPC: {0}")]
    Epc(#[from] EpcError),
    /// A subject alternative name of a kind the profile does not allow.
    #[error("{role} certificates carry no {kind} names; {hint}")]
    NameNotAllowed {
        /// The profile.
        role: Role,
        /// "DNS", "IP address", "email".
        kind: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// A server profile without any DNS name or IP address.
    #[error("{role} certificates need at least one --dns or --ip name (TLS clients check it)")]
    ServerNameMissing {
        /// The profile.
        role: Role,
    },
    /// A malformed name or value.
    #[error("bad {what} {value:?}: {reason}")]
    BadValue {
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A validity of zero days or longer than the profile allows.
    #[error("validity of {days} days is out of range for {role} certificates (1 to {maximum})")]
    Validity {
        /// The profile.
        role: Role,
        /// Days asked for.
        days: u32,
        /// The maximum.
        maximum: u32,
    },
    /// The key algorithm cannot be used for this profile.
    #[error("{role} certificates cannot use {algorithm} keys: {reason}")]
    KeyNotAllowed {
        /// The profile.
        role: Role,
        /// The key algorithm.
        algorithm: String,
        /// Why.
        reason: &'static str,
    },
    /// The identity's EPC already has a valid certificate.
    #[error(
        "EPC {epc} already has a valid certificate (serial {serial}); use `renew {serial}` \
         or revoke it first"
    )]
    EpcInUse {
        /// The EPC (pure identity URI).
        epc: String,
        /// The serial of its valid certificate.
        serial: SerialNumber,
    },
}

/// A certificate signing request that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Not PEM or DER PKCS#10.
    #[error("not a PKCS#10 certificate signing request: {reason}")]
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
    /// The CSR's signature does not verify with its own public key.
    #[error(
        "the CSR's signature does not verify with the public key it contains (altered or \
         corrupted CSR); ask the requester for a fresh one"
    )]
    BadSignature,
    /// The CSR's key is of an algorithm certificates cannot carry here.
    #[error(
        "the CSR's public key algorithm ({oid}) is not supported; use EC P-256, P-384, \
         Ed25519, RSA or DSA 2048/256"
    )]
    UnsupportedKey {
        /// The key algorithm OID.
        oid: String,
    },
    /// The CSR's DSA key is not one the CA certifies (sizes other than 2048/256, or
    /// broken domain parameters).
    #[error(
        "the CSR's DSA key cannot be certified: {reason}; generate a 2048/256 key \
         (`openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 \
         -pkeyopt dsa_paramgen_q_bits:256`, then `openssl genpkey -paramfile …`)"
    )]
    UnsupportedDsaKey {
        /// What is wrong with the key.
        reason: String,
    },
    /// The CSR is signed with an algorithm its key type is not checked with here.
    #[error(
        "the CSR is signed with algorithm {oid}, which is not checked for its key; DSA \
         requests must be signed with dsaWithSHA256 (`openssl req -new -sha256`)"
    )]
    UnsupportedSignature {
        /// The signature algorithm OID.
        oid: String,
    },
}

/// One row of a batch file that cannot be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line in the file (1 = the header).
    pub line: u64,
    /// What is wrong with the row.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// A batch file that cannot be issued; nothing in it was issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Rows that are malformed, duplicate, or already issued.
    #[error(
        "{} row(s) rejected, nothing issued:\n  {}",
        .0.len(),
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Rows(Vec<RowError>),
    /// The file has no header or not the columns expected.
    #[error("{path}: {reason} (expected header: epc,group,rule,ward[,csr])")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file has no rows.
    #[error("{path} has no devices")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// A lookup that names something the inventory does not hold, or a state change that
/// does not apply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// No certificate with this serial.
    #[error("no certificate with serial {serial} in this CA; `wardseal-pki list` shows them")]
    UnknownSerial {
        /// The serial.
        serial: SerialNumber,
    },
    /// No certificate for this EPC.
    #[error("no valid certificate for EPC {epc}")]
    UnknownEpc {
        /// The EPC.
        epc: String,
    },
    /// A serial number that does not parse.
    #[error("bad serial number {text:?}: expected hexadecimal digits (colons allowed)")]
    BadSerial {
        /// The text given.
        text: String,
    },
    /// The certificate is already revoked.
    #[error("certificate {serial} is already revoked")]
    AlreadyRevoked {
        /// The serial.
        serial: SerialNumber,
    },
    /// A revocation reason that RFC 5280 does not define.
    #[error(
        "unknown revocation reason {name:?}; use one of: unspecified, key-compromise, \
         ca-compromise, affiliation-changed, superseded, cessation-of-operation, \
         certificate-hold, privilege-withdrawn"
    )]
    UnknownReason {
        /// The name given.
        name: String,
    },
    /// A stored row that does not decode.
    #[error("inventory row {serial} is damaged: {reason}")]
    Damaged {
        /// The serial.
        serial: String,
        /// What does not decode.
        reason: String,
    },
}

/// Why a certificate does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a certificate.
    #[error("not an X.509 certificate: {reason}")]
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
    /// Not issued by this CA's issuing certificate.
    #[error("not issued by this CA: {reason}")]
    UntrustedIssuer {
        /// What did not match.
        reason: String,
    },
    /// The signature does not verify.
    #[error("the signature of the {which} certificate does not verify")]
    BadSignature {
        /// "end-entity" or "issuing CA".
        which: &'static str,
    },
    /// Outside its validity period.
    #[error("the {which} certificate is valid from {not_before} to {not_after}, not now")]
    Expired {
        /// "end-entity", "issuing CA" or "root CA".
        which: &'static str,
        /// Start of validity.
        not_before: String,
        /// End of validity.
        not_after: String,
    },
    /// Revoked.
    #[error("revoked on {revoked_at} (reason: {reason})")]
    Revoked {
        /// Revocation time.
        revoked_at: String,
        /// The RFC 5280 reason.
        reason: String,
    },
    /// The CRL cannot be used to decide.
    #[error("the CRL cannot be used: {reason}")]
    BadCrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A file's signature does not verify with the certificate's key.
    #[error(
        "the signature does not verify as {algorithm} with the certificate's {key} key: {reason}"
    )]
    FileSignature {
        /// The algorithm it was checked as.
        algorithm: String,
        /// The key (`ECDSA P-256`, …).
        key: String,
        /// Why (wrong key, altered file, malformed signature).
        reason: Cause,
    },
    /// The wardseal identity extension is missing, malformed or does not fit the
    /// certificate's key usages.
    #[error("identity extension: {reason}")]
    Identity {
        /// What is wrong.
        reason: String,
    },
}

/// The audit log fails its hash chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A row's hash does not match its content: the row was edited.
    #[error("audit entry {id} was altered: its hash does not match its content")]
    Altered {
        /// The entry id.
        id: i64,
    },
    /// A row's previous-hash does not match the row before: rows were deleted or inserted.
    #[error("audit chain broken before entry {id}: entries were deleted or inserted")]
    Broken {
        /// The first entry whose link fails.
        id: i64,
    },
}

/// EST enrollment (RFC 7030): registration, bootstrap credentials, requests.
///
/// Each variant is one refusal with its own HTTP status and code on the wire
/// (`est::wire::status`); the text is what the device's operator reads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstError {
    /// The request carried neither a client certificate nor HTTP Basic credentials.
    #[error(
        "no credential: enroll with HTTP Basic (user = the EPC in hex, password = the one-time \
         secret) or a manufacturer (IDevID) client certificate"
    )]
    NoCredential,
    /// The EPC is not registered, or the one-time secret does not match. One message for
    /// both, so that the answer does not tell which EPCs are registered (the audit log does).
    #[error("enrollment credentials not accepted for {user:?}")]
    CredentialsRefused {
        /// The HTTP Basic user name given.
        user: String,
        /// Why (kept for the audit log, not sent): "not-registered" or "wrong-secret".
        reason: &'static str,
    },
    /// The one-time secret was already used for an enrollment.
    #[error(
        "the one-time secret of {epc} was already used; register the device again \
         (`wardseal-pki est register --replace`) for a new one"
    )]
    SecretUsed {
        /// The device.
        epc: String,
    },
    /// A manufacturer certificate whose serial number no registration names.
    #[error(
        "no device is registered for the manufacturer certificate with serialNumber {serial:?}; \
         register it with `wardseal-pki est register --manufacturer-serial`"
    )]
    ManufacturerNotRegistered {
        /// The IDevID's subject serialNumber.
        serial: String,
    },
    /// A client certificate that is neither a wardseal certificate nor a manufacturer one.
    #[error("the client certificate is not usable here: {reason}")]
    ClientCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// `simplereenroll` with a certificate that is not currently valid in the inventory.
    #[error(
        "certificate {serial} cannot re-enroll: it is {status}; enroll again with a bootstrap credential"
    )]
    NotRenewable {
        /// Its serial.
        serial: String,
        /// "revoked", "expired" or "unknown to this CA".
        status: String,
    },
    /// `simplereenroll` without the current certificate as TLS client certificate.
    #[error("re-enrollment needs the current certificate as the TLS client certificate")]
    CertificateRequired,
    /// `simpleenroll` with a wardseal certificate: renewals go to `simplereenroll`.
    #[error("this device already holds a wardseal certificate; renew it with /simplereenroll")]
    UseReenroll,
    /// The CSR names a device other than the one authenticated.
    #[error(
        "the CSR names {requested}, but the credential is {enrolled}'s; a device can only enroll itself"
    )]
    OtherDevice {
        /// What the CSR names.
        requested: String,
        /// The authenticated device.
        enrolled: String,
    },
    /// The device already has a registration (use `--replace` for a new secret).
    #[error("{epc} is already registered for enrollment; pass --replace to register it again")]
    AlreadyRegistered {
        /// The device.
        epc: String,
    },
    /// `est register` without a bootstrap credential.
    #[error("give --secret (a one-time secret is generated) or --manufacturer-serial, or both")]
    NoBootstrapCredential,
    /// The request is not what RFC 7030 asks for (body, media type, size).
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// The path is not an EST operation.
    #[error(
        "no EST operation at {path}; use /.well-known/est/{{cacerts,csrattrs,simpleenroll,simplereenroll}}"
    )]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The method does not fit the operation.
    #[error("{operation} takes {expected}")]
    MethodNotAllowed {
        /// The operation.
        operation: &'static str,
        /// The method it takes.
        expected: &'static str,
    },
    /// The TLS settings (server certificate, key, manufacturer CAs) cannot be used.
    #[error("EST TLS settings: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },
}

/// The offline root's directory and ceremony.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// `root init` on a directory that already holds a root.
    #[error("{path} already holds a root; choose another --root-dir")]
    AlreadyInitialised {
        /// The root directory.
        path: PathBuf,
    },
    /// A root command on a directory that holds none.
    #[error(
        "{path} holds no root (no root.json); run `wardseal-pki root init` or `root adopt` first"
    )]
    NotInitialised {
        /// The root directory.
        path: PathBuf,
    },
    /// The root's state file cannot be read.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A serial the root never signed.
    #[error("the root signed no issuing CA with serial {serial}; see `wardseal-pki root list`")]
    UnknownIssuingCa {
        /// The serial asked for.
        serial: String,
    },
    /// An issuing CA that is already revoked.
    #[error("issuing CA {serial} is already revoked")]
    AlreadyRevoked {
        /// Its serial.
        serial: String,
    },
    /// `root adopt` on a CA whose root key is not a file in the CA directory.
    #[error("{path} has no root.key to adopt (the root key is elsewhere or on a token)")]
    NothingToAdopt {
        /// The CA directory.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn encoding(
        action: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Encoding {
            action,
            source: Cause::new(source),
        }
    }
}

impl From<ExtensionError> for Error {
    fn from(error: ExtensionError) -> Self {
        Self::Profile(ProfileError::Identity(error))
    }
}

impl From<EpcError> for Error {
    fn from(error: EpcError) -> Self {
        Self::Profile(ProfileError::Epc(error))
    }
}
