//! The EST server's TLS: its own certificate, and client certificates optional.
//!
//! EST clients come three ways (RFC 7030 §3.3): with no certificate (they then send HTTP
//! Basic credentials, §3.2.3), with a manufacturer certificate (IEEE 802.1AR IDevID), or
//! with their current wardseal certificate (re-enrollment). So the verifier lets
//! unauthenticated clients through and accepts certificates that chain to the wardseal
//! root or issuing CA or to a configured manufacturer CA; which one a client used, and
//! whether that is enough for the operation, is decided per request ([`super::credential`])
//! against the inventory, where revocation is also checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::ca::Ca;
use crate::error::{Error, EstError};

/// Where the EST server's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate (PEM), optionally followed by its chain; the CA's issuing
    /// certificate is added when missing.
    pub certificate: PathBuf,
    /// Its private key (PEM, PKCS#8 or SEC1), readable by its owner only.
    pub key: PathBuf,
    /// Manufacturer CA certificates (PEM) whose certificates may bootstrap enrollment.
    pub manufacturer_cas: Vec<PathBuf>,
}

fn tls_error(path: &Path, what: &str, error: impl std::fmt::Display) -> Error {
    EstError::Tls {
        reason: format!("{}: {what}: {error}", path.display()),
    }
    .into()
}

/// Reads every certificate of a PEM file.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| tls_error(path, "cannot read certificates", error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| tls_error(path, "bad PEM certificate", error))?;
    if certificates.is_empty() {
        return Err(tls_error(
            path,
            "no certificate",
            "the file holds no CERTIFICATE block",
        ));
    }
    Ok(certificates)
}

/// The rustls configuration: this server's certificate, client certificates optional and,
/// when given, verified against the CA's own certificates and the manufacturer CAs.
pub(crate) fn server_config(
    ca: &Ca,
    files: &TlsFiles,
    manufacturer_cas: &[CertificateDer<'static>],
) -> Result<Arc<ServerConfig>, Error> {
    let mut chain = read_certificates(&files.certificate)?;
    let settings = ca.settings();
    // Clients are given the root out of band (or from /cacerts): send the intermediate.
    let issuing = CertificateDer::from(settings.issuing_certificate.clone());
    if !chain.contains(&issuing) {
        chain.push(issuing);
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| tls_error(&files.key, "cannot read the private key", error))?;
    let mut roots = RootCertStore::empty();
    for der in [&settings.root_certificate, &settings.issuing_certificate] {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|error| tls_error(ca.dir(), "unusable CA certificate", error))?;
    }
    for certificate in manufacturer_cas {
        roots.add(certificate.clone()).map_err(|error| {
            tls_error(
                Path::new("--manufacturer-ca"),
                "unusable certificate",
                error,
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|error| tls_error(ca.dir(), "client verifier", error))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(&files.certificate, "protocol versions", error))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|error| tls_error(&files.certificate, "certificate and key", error))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
