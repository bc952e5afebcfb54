//! The wardseal identity of a verified peer certificate, and role checks.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use wardseal_core::identity::{IDENTITY_EXTENSION_OID, Identity, Role};

use crate::error::{AccessError, IdentityError};

/// Who is on the other end of a mutual-TLS connection: the identity from the wardseal
/// extension of its (already verified) certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The wardseal identity (role, EPC, group, rule, subject id, Ethereum address).
    pub identity: Identity,
    /// The certificate's serial number (DER INTEGER content, big-endian).
    pub serial: Vec<u8>,
    /// The issuer's distinguished name (raw DER), which with the serial names the
    /// certificate in CRLs.
    pub issuer: Vec<u8>,
    /// The subject's distinguished name, as text (for logs).
    pub subject: String,
    /// The certificate itself.
    pub certificate_der: Arc<CertificateDer<'static>>,
}

impl PeerIdentity {
    /// Reads the identity from a certificate. The certificate must already be verified
    /// (the TLS handshake did it); this only parses.
    pub fn from_certificate(certificate: &CertificateDer<'_>) -> Result<Self, IdentityError> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(certificate.as_ref()).map_err(|error| {
                IdentityError::Malformed {
                    reason: error.to_string(),
                }
            })?;
        let extension = parsed
            .extensions()
            .iter()
            .find(|extension| extension.oid.as_bytes() == IDENTITY_EXTENSION_OID.as_bytes())
            .ok_or(IdentityError::NoIdentityExtension)?;
        let identity = Identity::from_der(extension.value)?;
        Ok(Self {
            identity,
            serial: parsed.raw_serial().to_vec(),
            issuer: parsed.issuer().as_raw().to_vec(),
            subject: parsed.subject().to_string(),
            certificate_der: Arc::new(certificate.clone().into_owned()),
        })
    }

    /// The identity of the first certificate of a verified peer chain.
    pub fn from_chain(chain: Option<&[CertificateDer<'_>]>) -> Result<Self, IdentityError> {
        let leaf = chain
            .and_then(|chain| chain.first())
            .ok_or(IdentityError::NoCertificate)?;
        Self::from_certificate(leaf)
    }

    /// The peer's role.
    pub fn role(&self) -> Role {
        self.identity.role()
    }

    /// The serial as upper-case hex (how the CA and its inventory print it).
    pub fn serial_hex(&self) -> String {
        self.serial
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect()
    }

    /// Refuses any role but `role`.
    pub fn require_role(&self, role: Role) -> Result<&Identity, AccessError> {
        self.require_any_role(&[role])
    }

    /// Refuses roles not in `roles`.
    pub fn require_any_role(&self, roles: &[Role]) -> Result<&Identity, AccessError> {
        if roles.contains(&self.role()) {
            Ok(&self.identity)
        } else {
            Err(AccessError::WrongRole {
                expected: roles.to_vec(),
                actual: self.role(),
            })
        }
    }
}
