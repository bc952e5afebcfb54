//! Verifying a certificate against this CA: chain, validity, revocation, identity.
//!
//! The checks are done with x509-parser (signatures through ring), independently of
//! rcgen that wrote the certificate: the end-entity certificate must be signed by the
//! issuing CA, which must be signed by the root; all three must be valid at the time
//! given; the end-entity must not be a CA; its wardseal identity extension must be present,
//! non-critical, decode strictly, and its extended key usages must be exactly those of its
//! role's profile. With a CRL, the CRL must be the issuing CA's, correctly signed, current,
//! and not list the certificate.

use std::fmt;

use time::OffsetDateTime;
use wardseal_core::identity::{IDENTITY_EXTENSION_OID_STRING, Identity};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::ca::Ca;
use crate::crl::RevocationReason;
use crate::describe::{CertificateDescription, certificate_der, pem_or_der};
use crate::error::{CaError, Error, VerifyError};
use crate::inventory::format_time;
use crate::profile::Profile;

/// A certificate that verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// What it says.
    pub certificate: CertificateDescription,
    /// Whether a CRL was checked.
    pub revocation_checked: bool,
}

/// The subject and whether revocation was checked: `CN=… (not revoked)`.
impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let revocation = if self.revocation_checked {
            "not revoked"
        } else {
            "revocation not checked"
        };
        write!(f, "{} ({revocation})", self.certificate.subject)
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, VerifyError> {
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|error| VerifyError::Malformed {
            reason: error.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(VerifyError::Malformed {
            reason: format!("{} bytes after the certificate", rest.len()),
        });
    }
    Ok(certificate)
}

fn check_time(
    which: &'static str,
    certificate: &X509Certificate<'_>,
    at: OffsetDateTime,
) -> Result<(), VerifyError> {
    let validity = certificate.validity();
    let (not_before, not_after) = (
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    );
    if at < not_before || at > not_after {
        return Err(VerifyError::Expired {
            which,
            not_before: format_time(not_before),
            not_after: format_time(not_after),
        });
    }
    Ok(())
}

impl Ca {
    /// Verifies `certificate` (PEM or DER) at `at`, with the CRL `crl` (PEM or DER) if given.
    pub fn verify(
        &self,
        certificate: &[u8],
        crl: Option<&[u8]>,
        at: OffsetDateTime,
    ) -> Result<Verified, Error> {
        let settings = self.settings();
        let root = parse(&settings.root_certificate)
            .map_err(|_| CaError::BadCaCertificate { which: "root" })?;
        let issuing = parse(&settings.issuing_certificate)
            .map_err(|_| CaError::BadCaCertificate { which: "issuing" })?;
        let der = certificate_der(certificate)?;
        let leaf = parse(&der)?;

        if leaf.issuer() != issuing.subject() {
            return Err(VerifyError::UntrustedIssuer {
                reason: format!(
                    "issuer is \"{}\", this CA is \"{}\"",
                    leaf.issuer(),
                    issuing.subject()
                ),
            }
            .into());
        }
        leaf.verify_signature(Some(issuing.public_key()))
            .map_err(|_| VerifyError::BadSignature {
                which: "end-entity",
            })?;
        issuing
            .verify_signature(Some(root.public_key()))
            .map_err(|_| VerifyError::BadSignature {
                which: "issuing CA",
            })?;
        check_time("root CA", &root, at)?;
        check_time("issuing CA", &issuing, at)?;
        check_time("end-entity", &leaf, at)?;
        if leaf.is_ca() {
            return Err(VerifyError::UntrustedIssuer {
                reason: "the certificate is a CA certificate, not an end entity".into(),
            }
            .into());
        }
        check_identity(&leaf)?;

        let revocation_checked = match crl {
            Some(crl) => {
                check_crl(&leaf, &issuing, crl, at)?;
                true
            }
            None => false,
        };
        Ok(Verified {
            certificate: CertificateDescription::new(&leaf),
            revocation_checked,
        })
    }
}

fn check_identity(leaf: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let identity_error = |reason: String| VerifyError::Identity { reason };
    let extension = leaf
        .extensions()
        .iter()
        .find(|extension| extension.oid.to_id_string() == IDENTITY_EXTENSION_OID_STRING)
        .ok_or_else(|| identity_error(format!("missing ({IDENTITY_EXTENSION_OID_STRING})")))?;
    if extension.critical {
        return Err(identity_error(
            "marked critical; wardseal writes it non-critical".into(),
        ));
    }
    let identity =
        Identity::from_der(extension.value).map_err(|error| identity_error(error.to_string()))?;
    let profile = Profile::for_role(identity.role());
    let description = CertificateDescription::new(leaf);
    let expected: Vec<String> = profile
        .extended_key_usage_names()
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    if description.extended_key_usages != expected {
        return Err(identity_error(format!(
            "a {} certificate must have extended key usage {}, this one has {}",
            identity.role(),
            expected.join(", "),
            if description.extended_key_usages.is_empty() {
                "none".to_owned()
            } else {
                description.extended_key_usages.join(", ")
            }
        )));
    }
    if let Some(epc) = identity.device_id() {
        let uri = format!("URI:{}", epc.pure_identity_uri());
        if !description.names.contains(&uri) {
            return Err(identity_error(format!(
                "the device EPC is not in the subject alternative names as {uri}"
            )));
        }
    }
    Ok(())
}

fn check_crl(
    leaf: &X509Certificate<'_>,
    issuing: &X509Certificate<'_>,
    crl: &[u8],
    at: OffsetDateTime,
) -> Result<(), VerifyError> {
    let bad = |reason: String| VerifyError::BadCrl { reason };
    let der = pem_or_der(crl, "X509 CRL")?;
    let (_, crl) =
        CertificateRevocationList::from_der(&der).map_err(|error| bad(error.to_string()))?;
    if crl.issuer() != issuing.subject() {
        return Err(bad(format!(
            "it is issued by \"{}\", not this CA",
            crl.issuer()
        )));
    }
    crl.verify_signature(issuing.public_key())
        .map_err(|_| bad("its signature does not verify with the issuing CA's key".into()))?;
    let this_update = crl.last_update().to_datetime();
    if at < this_update {
        return Err(bad(format!(
            "it is dated {}, in the future",
            format_time(this_update)
        )));
    }
    match crl.next_update() {
        Some(next) if at > next.to_datetime() => {
            return Err(bad(format!(
                "it is out of date (next update was due {}); fetch or sign a fresh one",
                format_time(next.to_datetime())
            )));
        }
        Some(_) => {}
        None => return Err(bad("it has no next update".into())),
    }
    let serial = leaf.raw_serial();
    for revoked in crl.iter_revoked_certificates() {
        if revoked.raw_serial() == serial {
            let mut reason = "unspecified".to_owned();
            for extension in revoked.extensions() {
                if let ParsedExtension::ReasonCode(code) = extension.parsed_extension() {
                    reason = RevocationReason::from_code(code.0).map_or_else(
                        || format!("code {}", code.0),
                        |reason| reason.name().to_owned(),
                    );
                }
            }
            return Err(VerifyError::Revoked {
                revoked_at: format_time(revoked.revocation_date.to_datetime()),
                reason,
            });
        }
    }
    Ok(())
}
