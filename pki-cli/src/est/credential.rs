//! Who is asking: the TLS client certificate, or HTTP Basic credentials.
//!
//! rustls has already checked that a client certificate chains to one of the trusted
//! certificates ([`super::tls`]); here it is sorted into what it proves. A certificate
//! issued by this CA counts only if the inventory holds that very certificate, unrevoked
//! and unexpired (the database is the revocation source, so a revocation by the CLI applies
//! to the next request). A manufacturer certificate must be signed directly by a configured
//! manufacturer CA and carry a subject serialNumber (IEEE 802.1AR §8.6), which a
//! registration binds to an EPC.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::ca::Ca;
use crate::error::{Error, EstError, InventoryError};
use crate::inventory::{CertificateRecord, Status};
use crate::serial::SerialNumber;

/// `serialNumber` (X.520, 2.5.4.5): the IDevID's device serial.
const OID_SERIAL_NUMBER: &str = "2.5.4.5";

/// What a client certificate proves.
#[derive(Debug, Clone)]
pub(crate) enum ClientCertificate {
    /// A certificate of this CA, valid now: its inventory record.
    Wardseal(Box<CertificateRecord>),
    /// A manufacturer certificate with this subject serialNumber.
    Manufacturer(String),
}

fn unusable(reason: impl Into<String>) -> Error {
    EstError::ClientCertificate {
        reason: reason.into(),
    }
    .into()
}

/// Sorts a verified client certificate.
pub(crate) async fn classify(
    ca: &Ca,
    manufacturer_cas: &[CertificateDer<'static>],
    der: &[u8],
) -> Result<ClientCertificate, Error> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|_| unusable("it does not parse"))?;
    let (_, issuing) = X509Certificate::from_der(&ca.settings().issuing_certificate)
        .map_err(|_| unusable("the CA's issuing certificate does not parse"))?;
    if certificate.issuer().as_raw() == issuing.subject().as_raw() {
        let serial = SerialNumber::from_der_content(certificate.raw_serial());
        let record = match ca.inventory().certificate(&serial).await {
            Ok(record) => record,
            Err(Error::Inventory(InventoryError::UnknownSerial { .. })) => {
                return Err(EstError::NotRenewable {
                    serial: serial.to_string(),
                    status: "unknown to this CA".into(),
                }
                .into());
            }
            Err(error) => return Err(error),
        };
        if record.der != der {
            return Err(unusable(
                "it is not the certificate this CA issued with that serial",
            ));
        }
        return match record.status(OffsetDateTime::now_utc()) {
            Status::Valid => Ok(ClientCertificate::Wardseal(Box::new(record))),
            status => Err(EstError::NotRenewable {
                serial: serial.to_string(),
                status: format!("{status:?}").to_ascii_lowercase(),
            }
            .into()),
        };
    }
    for manufacturer in manufacturer_cas {
        let Ok((_, manufacturer)) = X509Certificate::from_der(manufacturer) else {
            continue;
        };
        if certificate.issuer().as_raw() != manufacturer.subject().as_raw() {
            continue;
        }
        certificate
            .verify_signature(Some(manufacturer.public_key()))
            .map_err(|_| unusable("its signature does not verify with the manufacturer CA"))?;
        let serial = certificate
            .subject()
            .iter_attributes()
            .find(|attribute| attribute.attr_type().to_id_string() == OID_SERIAL_NUMBER)
            .and_then(|attribute| attribute.as_str().ok())
            .ok_or_else(|| {
                unusable("the manufacturer certificate has no subject serialNumber (IEEE 802.1AR)")
            })?;
        return Ok(ClientCertificate::Manufacturer(serial.to_owned()));
    }
    Err(unusable(
        "it is issued neither by this CA's issuing CA nor directly by a manufacturer CA",
    ))
}

/// HTTP Basic credentials (RFC 7617): the user (the device's EPC in hex) and the secret.
pub(crate) struct Basic {
    pub(crate) user: String,
    pub(crate) password: Zeroizing<String>,
}

/// The request's HTTP Basic credentials, if it has an `Authorization: Basic` header.
pub(crate) fn basic(headers: &HeaderMap) -> Result<Option<Basic>, EstError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = |reason: &str| EstError::BadRequest {
        reason: format!("Authorization header: {reason}"),
    };
    let value = value.to_str().map_err(|_| bad("not ASCII"))?;
    let (scheme, encoded) = value
        .split_once(' ')
        .ok_or_else(|| bad("expected \"Basic <base64>\""))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad("only the Basic scheme is offered"));
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad("the credentials are not base64"))?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| bad("the credentials are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| bad("expected user:password"))?;
    Ok(Some(Basic {
        user: user.to_owned(),
        password: Zeroizing::new(password.to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let mut headers = HeaderMap::new();
        assert!(basic(&headers).unwrap().is_none());
        let encoded = STANDARD.encode("3074257BF7194E4000001A85:se:cret");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        let credentials = basic(&headers).unwrap().unwrap();
        assert_eq!(credentials.user, "3074257BF7194E4000001A85");
        assert_eq!(credentials.password.as_str(), "se:cret");
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic(&headers).is_err());
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic(&headers).is_err());
    }
}
