//! `/simpleenroll` (RFC 7030 §4.2.1): a registered device's first certificate.
//!
//! The device proves its registration with a one-time secret (HTTP Basic) or a
//! manufacturer certificate. The certificate is the device profile's: the EPC, group, rule
//! and ward of the registration, the CSR's public key, nothing else from the CSR. Recording
//! the certificate, spending the credential and the audit entry are one write transaction:
//! either the device has its certificate and the secret is spent, or neither.

use hyper::HeaderMap;
use sqlx::Row;
use wardseal_core::identity::Identity;

use super::Context;
use super::credential::{self, ClientCertificate};
use super::registration::{self, Bootstrap, Registered, secret_hash};
use super::request::EnrollmentRequest;
use crate::audit;
use crate::ca::now;
use crate::error::{Error, EstError, ProfileError};
use crate::inventory::CertificateRecord;
use crate::profile::Request;

/// The device a bootstrap credential proves, and the credential to spend.
async fn authenticate(
    context: &Context<'_>,
    client: Option<&ClientCertificate>,
    headers: &HeaderMap,
) -> Result<(Registered, Bootstrap), Error> {
    let ca = context.signing.ca();
    match client {
        Some(ClientCertificate::Wardseal(_)) => return Err(EstError::UseReenroll.into()),
        Some(ClientCertificate::Manufacturer(serial)) => {
            let registered = registration::find_by_manufacturer_serial(ca, serial)
                .await?
                .ok_or_else(|| EstError::ManufacturerNotRegistered {
                    serial: serial.clone(),
                })?;
            return Ok((registered, Bootstrap::Manufacturer(serial.clone())));
        }
        None => {}
    }
    let basic = credential::basic(headers)?.ok_or(EstError::NoCredential)?;
    let not_registered = || EstError::CredentialsRefused {
        user: basic.user.clone(),
        reason: "not-registered",
    };
    let epc = basic.user.parse().map_err(|_| not_registered())?;
    let registered = registration::find_by_epc(ca, &epc)
        .await?
        .ok_or_else(not_registered)?;
    let uri = registered.epc.pure_identity_uri();
    let hash = secret_hash(&uri, &basic.password);
    // Checked before signing, so a wrong or spent secret costs no signature; spent for
    // good only in the enrollment's transaction (`registration::spend`).
    let row =
        sqlx::query("SELECT secret_hash, secret_used_at FROM est_registrations WHERE epc = ?")
            .bind(&uri)
            .fetch_one(ca.inventory().pool())
            .await
            .map_err(|error| ca.inventory().error("look up a registration", error))?;
    let stored: Option<Vec<u8>> = row
        .try_get("secret_hash")
        .map_err(|error| ca.inventory().error("decode a registration", error))?;
    let used: Option<i64> = row
        .try_get("secret_used_at")
        .map_err(|error| ca.inventory().error("decode a registration", error))?;
    if stored.as_ref() != Some(&hash) {
        return Err(EstError::CredentialsRefused {
            user: basic.user.clone(),
            reason: "wrong-secret",
        }
        .into());
    }
    if used.is_some() {
        return Err(EstError::SecretUsed { epc: uri }.into());
    }
    Ok((registered, Bootstrap::Secret(hash)))
}

/// Enrolls the device; returns its new certificate's record.
pub(crate) async fn simple_enroll(
    context: &Context<'_>,
    client: Option<&ClientCertificate>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CertificateRecord, Error> {
    let (registered, bootstrap) = authenticate(context, client, headers).await?;
    let request = EnrollmentRequest::from_body(headers, body)?;
    request.check_names(Some(&registered.epc))?;
    let mut profile = Request::new(Identity::device(
        registered.epc.clone(),
        registered.group_id,
        registered.rule_id,
    ));
    profile.ward.clone_from(&registered.ward);
    profile.validity_days = context.options.validity_days;
    profile.check()?;
    let now = now();
    let signing = context.signing;
    signing.check_valid(now)?;
    let built = signing.build(&profile, request.key.public_key().certified(), now, None)?;
    let record = built.record;

    let ca = signing.ca();
    let inventory = ca.inventory();
    let mut transaction = inventory.write().await?;
    let in_use = inventory.valid_epcs(&mut transaction, now).await?;
    if let Some(epc) = &record.epc
        && let Some(serial) = in_use.get(epc)
    {
        return Err(ProfileError::EpcInUse {
            epc: epc.clone(),
            serial: serial.clone(),
        }
        .into());
    }
    inventory.insert(&mut transaction, &record).await?;
    registration::spend(
        ca,
        &mut transaction,
        &registered.epc,
        &bootstrap,
        &record.serial,
    )
    .await?;
    audit::append(
        inventory,
        &mut transaction,
        context.actor,
        "est-enroll",
        &serde_json::json!({
            "serial": record.serial.to_string(),
            "role": record.role.name(),
            "epc": record.epc,
            "group_id": record.group_id,
            "rule_id": record.rule_id,
            "ward": record.ward,
            "credential": bootstrap.name(),
            "manufacturer_serial": match &bootstrap {
                Bootstrap::Manufacturer(serial) => Some(serial.as_str()),
                Bootstrap::Secret(_) => None,
            },
            "requested_subject": request.key.requested_subject,
        }),
    )
    .await?;
    inventory.commit(transaction).await?;
    Ok(record)
}
