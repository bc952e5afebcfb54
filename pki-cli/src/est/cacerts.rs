//! `/cacerts` (RFC 7030 §4.1): the CA certificates a client should trust.
//!
//! Answered to anyone (§4.1.1: no client authentication needed): the issuing CA and the
//! root, as a certs-only PKCS#7. A client bootstrapping trust compares the root with what
//! it was given out of band (§4.1.1 "explicit trust anchor" / §4.1.3).

use super::pkcs7;
use crate::ca::Ca;
use crate::error::Error;

/// The certs-only PKCS#7 (DER) of the issuing CA and the root.
pub(crate) fn ca_certificates(ca: &Ca) -> Result<Vec<u8>, Error> {
    let settings = ca.settings();
    pkcs7::certs_only(&[
        settings.issuing_certificate.as_slice(),
        settings.root_certificate.as_slice(),
    ])
}
