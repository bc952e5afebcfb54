//! The crate's one error type, with a sub-enum per domain.

use std::path::PathBuf;

use wardseal_core::identity::Role;

/// Everything that can go wrong in `wardseal-net`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file holds ("certificate", "CA bundle", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file is unusable.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// Certificates, CRLs or the TLS configuration are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The peer's certificate does not carry a usable wardseal identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The peer is authenticated but not allowed.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// An EST (RFC 7030) exchange failed or its answer is unusable.
    #[error(transparent)]
    Est(#[from] EstClientError),
    /// The server could not bind or accept.
    #[error("server I/O failed while {action}: {source}")]
    Serve {
        /// What the server was doing.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a private key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Group or others may read the key.
    #[error(
        "private key {} has mode {mode:o}: group or others can read it; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no PEM private key.
    #[error("{} holds no PEM private key (PKCS#8, SEC1 or PKCS#1 expected)", path.display())]
    NoKey {
        /// The key file.
        path: PathBuf,
    },
}

/// Why certificates, CRLs or the TLS configuration were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A PEM file holds no certificate.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate was not accepted as a trust anchor.
    #[error("CA bundle {} holds a certificate that is not a usable trust anchor: {reason}", path.display())]
    TrustAnchor {
        /// The bundle.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A CRL could not be parsed.
    #[error("CRL from {origin} is not a DER or PEM X.509 CRL: {reason}")]
    Crl {
        /// Where it came from (a path or "fetched").
        origin: String,
        /// Why.
        reason: String,
    },
    /// A CRL's signature does not verify against a certificate of the CA bundle.
    #[error(
        "CRL from {origin} is not signed by the hospital CA ({issuer}): {reason}; a CRL is trusted only when its issuer is in the CA bundle and its signature verifies"
    )]
    CrlSignature {
        /// Where it came from (a path or URL).
        origin: String,
        /// The issuer the CRL names.
        issuer: String,
        /// Why it does not verify.
        reason: String,
    },
    /// rustls refused the certificate verifier (for example an empty CA bundle).
    #[error("cannot build the client-certificate verifier: {reason}; check the CA bundle and CRLs")]
    Verifier {
        /// Why.
        reason: String,
    },
    /// rustls refused the server's certificate and key.
    #[error(
        "cannot use this certificate and key: {reason}; check that the key matches the certificate"
    )]
    CertificateKey {
        /// Why.
        reason: String,
    },
}

/// Why a peer's certificate gave no wardseal identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The TLS session has no client certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate is not parseable X.509.
    #[error("the peer certificate is not valid X.509: {reason}")]
    Malformed {
        /// Why.
        reason: String,
    },
    /// The certificate lacks the wardseal identity extension.
    #[error("the peer certificate has no wardseal identity extension")]
    NoIdentityExtension,
    /// The identity extension is malformed.
    #[error("the peer certificate's wardseal identity extension is invalid: {0}")]
    BadIdentityExtension(#[from] wardseal_core::identity::ExtensionError),
}

/// Why an authenticated peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The peer's role is not one this operation accepts.
    #[error(
        "a {actual} certificate cannot do this; it needs a {} certificate",
        names(expected)
    )]
    WrongRole {
        /// What the operation accepts.
        expected: Vec<Role>,
        /// What the peer is.
        actual: Role,
    },
    /// The peer's certificate was revoked after its connection was set up.
    #[error("the client certificate has been revoked")]
    Revoked,
    /// A CRL in force is past its `nextUpdate` and the server is configured to refuse
    /// every client certificate until a fresh CRL arrives.
    #[error(
        "the certificate revocation list of {issuer} expired at {next_update}; every client is refused until the CA publishes a new one"
    )]
    CrlExpired {
        /// The CRL issuer's distinguished name.
        issuer: String,
        /// The CRL's `nextUpdate` (RFC 3339).
        next_update: String,
    },
}

fn names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.name())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Why a certificate received outside the handshake (a patient's, inside a batch) was
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// It does not chain to the hospital CA, is expired, or lacks the required usage.
    #[error("the certificate is not valid for this use: {reason}")]
    Invalid {
        /// Why (webpki's reason).
        reason: String,
    },
    /// It is on the current CRL.
    #[error("the certificate has been revoked")]
    Revoked,
    /// It carries no usable wardseal identity.
    #[error(transparent)]
    Identity(IdentityError),
}

/// Why an EST (RFC 7030) enrollment or renewal from this side failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstClientError {
    /// The server could not be reached, or the exchange broke off.
    #[error("EST {operation} at {url}: {reason}")]
    Exchange {
        /// The operation (`simplereenroll`, …).
        operation: &'static str,
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server refused (its status and its `code: sentence` body).
    #[error("EST {operation} refused with HTTP {status}: {body}")]
    Refused {
        /// The operation.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's text (first 500 characters).
        body: String,
    },
    /// The answer is not the base64 certs-only PKCS#7 RFC 7030 promises.
    #[error("EST {operation}: the answer is not a certs-only PKCS#7 ({reason})")]
    BadAnswer {
        /// The operation.
        operation: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate, key or CSR could not be read, made or written.
    #[error("EST renewal: {reason}")]
    Local {
        /// What failed.
        reason: String,
    },
}
