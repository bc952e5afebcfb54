//! The CSR an enrollment carries: decoded, signature-checked, and read for the device it
//! names.
//!
//! The certificate never takes anything from the CSR but its public key ([`crate::csr`]).
//! The CSR is still read for names: a device that asks for a certificate naming another
//! device (in its subject or its requested subjectAltName URIs) is refused outright, not
//! quietly given its own — that request is either a misconfiguration or an attack, and the
//! audit log should say so.

use hyper::HeaderMap;
use wardseal_core::epc::Sgtin96;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::wire;
use crate::csr::{CsrKey, read_csr};
use crate::error::{Error, EstError};

/// A verified enrollment request.
pub(crate) struct EnrollmentRequest {
    /// Its public key (signature verified: proof of possession).
    pub(crate) key: CsrKey,
    /// Every device it names, as pure identity URIs; names that look like an EPC but do
    /// not parse as one are kept as written.
    pub(crate) named_devices: Vec<String>,
}

impl EnrollmentRequest {
    /// Decodes an RFC 7030 §4.2.1 body.
    pub(crate) fn from_body(headers: &HeaderMap, body: &[u8]) -> Result<Self, Error> {
        wire::require_pkcs10(headers)?;
        let der = wire::decode_base64(body)?;
        let key = read_csr(&der)?;
        Ok(Self {
            key,
            named_devices: named_devices(&der),
        })
    }

    /// Refuses a request naming any device other than `device`.
    pub(crate) fn check_names(&self, device: Option<&Sgtin96>) -> Result<(), EstError> {
        let own = device.map(Sgtin96::pure_identity_uri);
        match self
            .named_devices
            .iter()
            .find(|named| Some(*named) != own.as_ref())
        {
            Some(other) => Err(EstError::OtherDevice {
                requested: other.clone(),
                enrolled: own.unwrap_or_else(|| "a device without an EPC".to_owned()),
            }),
            None => Ok(()),
        }
    }
}

/// A name that identifies a device: an EPC URI, or 24 hex digits that parse as SGTIN-96.
fn device_name(text: &str) -> Option<String> {
    let text = text.trim();
    if text.starts_with("urn:epc:") {
        return Some(
            text.parse::<Sgtin96>()
                .map_or_else(|_| text.to_owned(), |epc| epc.pure_identity_uri()),
        );
    }
    if text.len() == 24 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return text
            .parse::<Sgtin96>()
            .ok()
            .map(|epc| epc.pure_identity_uri());
    }
    None
}

fn named_devices(der: &[u8]) -> Vec<String> {
    // `read_csr` has parsed this already; a failure here cannot happen, and would only
    // mean no names to check.
    let Ok((_, csr)) = X509CertificationRequest::from_der(der) else {
        return Vec::new();
    };
    let info = &csr.certification_request_info;
    let mut names: Vec<String> = info
        .subject
        .iter_attributes()
        .filter_map(|attribute| attribute.as_str().ok())
        .filter_map(device_name)
        .collect();
    if let Some(extensions) = csr.requested_extensions() {
        for extension in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) | GeneralName::DNSName(uri) = name
                        && let Some(device) = device_name(uri)
                    {
                        names.push(device);
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // The body comes from the network: any bytes are a request or a refusal.
        #[test]
        fn any_body_is_read_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let mut headers = HeaderMap::new();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/pkcs10"),
            );
            let _ = EnrollmentRequest::from_body(&headers, &bytes);
            let _ = named_devices(&bytes);
            let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes);
            let _ = EnrollmentRequest::from_body(&headers, encoded.as_bytes());
        }
    }

    #[test]
    fn device_names_are_epcs_in_any_form() {
        assert_eq!(
            device_name("urn:epc:tag:sgtin-96:3.0614141.812345.6789").as_deref(),
            Some("urn:epc:id:sgtin:0614141.812345.6789")
        );
        assert_eq!(
            device_name("3074257BF7194E4000001A85").as_deref(),
            Some("urn:epc:id:sgtin:0614141.812345.6789")
        );
        assert_eq!(
            device_name("urn:epc:bogus").as_deref(),
            Some("urn:epc:bogus")
        );
        assert_eq!(device_name("monitor-7"), None);
    }

    #[test]
    fn a_csr_naming_another_device_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "urn:epc:id:sgtin:0614141.812345.1",
        );
        let csr = params.serialize_request(&key).unwrap();
        let names = named_devices(csr.der());
        assert_eq!(names, vec!["urn:epc:id:sgtin:0614141.812345.1".to_owned()]);
        let request = EnrollmentRequest {
            key: read_csr(csr.der()).unwrap(),
            named_devices: names,
        };
        let own: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.1".parse().unwrap();
        let other: Sgtin96 = "urn:epc:tag:sgtin-96:3.0614141.812345.2".parse().unwrap();
        request.check_names(Some(&own)).unwrap();
        assert!(matches!(
            request.check_names(Some(&other)),
            Err(EstError::OtherDevice { .. })
        ));
    }
}
