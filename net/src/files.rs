//! Reading certificates, keys, CA bundles and CRLs from PEM (or DER) files.
//!
//! Private key files are refused when group or others can read them: a key that was ever
//! world-readable must be treated as disclosed, and refusing early says so before the key
//! is used.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::{ConfigError, Error, KeyFileError};

/// Reads a whole file.
pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file, in order (leaf first for a chain).
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read(what, path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(Result::ok)
        .collect::<Vec<_>>();
    if certificates.is_empty() {
        return Err(ConfigError::NoCertificate {
            path: path.to_owned(),
        }
        .into());
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1), refusing files that group or
/// others can read.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let metadata = std::fs::metadata(path).map_err(|source| Error::Read {
        what: "private key",
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        }
        .into());
    }
    let bytes = zeroizing(read("private key", path)?);
    PrivateKeyDer::from_pem_slice(&bytes.0).map_err(|_| {
        KeyFileError::NoKey {
            path: path.to_owned(),
        }
        .into()
    })
}

/// A CRL given as PEM or DER bytes.
pub fn crl(origin: &str, bytes: &[u8]) -> Result<CertificateRevocationListDer<'static>, Error> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::from_pem_slice(bytes).map_err(|error| ConfigError::Crl {
            origin: origin.to_owned(),
            reason: error.to_string(),
        })?
    } else {
        CertificateRevocationListDer::from(bytes.to_vec())
    };
    // Parse now so a bad CRL is refused at load time with its origin, not at handshake.
    x509_parser::parse_x509_crl(der.as_ref()).map_err(|error| ConfigError::Crl {
        origin: origin.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(der)
}

/// Key bytes wiped when dropped.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|byte| *byte = 0);
        std::hint::black_box(&self.0);
    }
}

fn zeroizing(bytes: Vec<u8>) -> Wiped {
    Wiped(bytes)
}
