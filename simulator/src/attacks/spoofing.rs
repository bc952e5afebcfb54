//! Spoofing: device certificates the ward must not trust (self-signed, from another
//! hospital's CA, from a CA that copies the hospital CA's names) and the collector's own
//! certificate used as a device's.

use std::path::Path;

use hyper::Method;
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId};

use super::outcome::{Observed, Server};
use super::wire::{answer, send};
use super::{Attacker, Findings, now, quantity, temperature_evidence};
use crate::error::Error;
use crate::kinds::DeviceKind;
use wardseal_testkit::pki::{CertificateFiles, TestPki};

/// The organisation of [`Scenario::ForeignCaDevice`](super::Scenario::ForeignCaDevice)'s CA.
pub(super) const OTHER_HOSPITAL: &str = "Elsewhere General Hospital";

impl Attacker<'_> {
    pub(super) async fn self_signed(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let files = self_signed_device(&self.base.dir, &device.epc, device.kind)?;
        let body = temperature_evidence(device, findings)?;
        let config = self.client_config(&files, &[b"http/1.1"])?;
        Ok(self.post_reading(config, &body).await)
    }

    /// A device certificate with the attacker's thermometer's identity from a real
    /// wardseal CA, as the ward's own, that the ward does not trust: `organisation` names
    /// its CAs.
    pub(super) async fn other_ca(
        &self,
        organisation: &str,
        label: &str,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let foreign_dir = self.base.dir.join(label);
        std::fs::create_dir_all(&foreign_dir).map_err(|e| Error::io("create", &foreign_dir, e))?;
        let foreign = TestPki::create_for(&foreign_dir, organisation).await?;
        let files = foreign
            .issue_in(
                Identity::device(
                    device.epc.clone(),
                    GroupId(device.kind.group()),
                    RuleId(device.kind.group()),
                ),
                &foreign_dir,
                "thermometer",
                &self.base.ward.files().ward,
            )
            .await?;
        let body = temperature_evidence(device, findings)?;
        let config = self.client_config(&files, &[b"http/1.1"])?;
        Ok(self.post_reading(config, &body).await)
    }

    pub(super) async fn collector_as_device(&self) -> Result<Observed, Error> {
        let body = quantity("body_temperature", "36.9", "Cel", now(), 1);
        let connection = self
            .base
            .ward
            .connect_collector(&self.base.ward.files().collector)
            .await?;
        let reply = send(&connection, Method::POST, "/v1/readings", body.into_bytes()).await?;
        Ok(answer(Server::Collector, &reply))
    }
}

/// A self-signed certificate carrying a real device's identity (EPC, group, rule) and a
/// new P-256 key, written next to the attacker's other material.
fn self_signed_device(
    dir: &Path,
    epc: &Sgtin96,
    kind: DeviceKind,
) -> Result<CertificateFiles, Error> {
    let identity = Identity::device(epc.clone(), GroupId(kind.group()), RuleId(kind.group()));
    let failed = |reason: String| {
        Error::Options(format!("cannot make the self-signed certificate: {reason}"))
    };
    let key = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| failed(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, epc.tag_uri());
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        wardseal_core::identity::IDENTITY_EXTENSION_OID_COMPONENTS,
        identity.to_der(),
    )];
    let certificate = params
        .self_signed(&key)
        .map_err(|e| failed(e.to_string()))?;
    let files = CertificateFiles {
        certificate: dir.join("self-signed.pem"),
        key: dir.join("self-signed.key"),
        serial: String::new(),
    };
    std::fs::write(&files.certificate, certificate.pem())
        .map_err(|e| Error::io("write", &files.certificate, e))?;
    wardseal_pki::key::write_private_file(&files.key, key.serialize_pem().as_bytes())?;
    Ok(files)
}
