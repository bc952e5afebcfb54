//! `/simplereenroll` (RFC 7030 §4.2.2): a certificate renews itself.
//!
//! The client authenticates with its current certificate in the TLS handshake; the
//! inventory must hold it valid (a revoked or expired certificate cannot renew). The new
//! certificate keeps the identity, names and ward of the current one (the same rebuild as
//! `wardseal-pki renew`), takes the CSR's key (a new key is allowed and encouraged), and is
//! linked to the old one in the inventory. This works for every role, so collectors and
//! storage servers renew the same way devices do.

use hyper::HeaderMap;

use super::Context;
use super::credential::ClientCertificate;
use super::request::EnrollmentRequest;
use crate::ca::{now, request_from_certificate};
use crate::error::{Error, EstError};
use crate::inventory::CertificateRecord;

/// Renews the client's certificate; returns the new record.
pub(crate) async fn simple_reenroll(
    context: &Context<'_>,
    client: Option<&ClientCertificate>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CertificateRecord, Error> {
    let current = match client {
        Some(ClientCertificate::Wardseal(record)) => record,
        Some(ClientCertificate::Manufacturer(_)) | None => {
            return Err(EstError::CertificateRequired.into());
        }
    };
    let request = EnrollmentRequest::from_body(headers, body)?;
    let profile = request_from_certificate(current, context.options.validity_days)?;
    request.check_names(profile.identity.device_id())?;
    profile.check()?;
    let now = now();
    let signing = context.signing;
    signing.check_valid(now)?;
    let built = signing.build(
        &profile,
        request.key.public_key().certified(),
        now,
        Some(current.serial.clone()),
    )?;
    signing
        .record_with(
            std::slice::from_ref(&built.record),
            context.actor,
            "est-reenroll",
            &serde_json::json!({
                "credential": "current-certificate",
                "requested_subject": request.key.requested_subject,
            }),
        )
        .await?;
    Ok(built.record)
}
