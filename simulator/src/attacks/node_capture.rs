//! Node capture: a device deactivated on the ledger keeps sending, and a device whose
//! certificate the CA revoked keeps connecting.

use std::sync::Arc;

use super::outcome::Observed;
use super::wire::tls_request;
use super::{Attacker, Findings, plausible_temperature, temperature_evidence};
use crate::error::Error;
use crate::kinds::DeviceKind;

impl Attacker<'_> {
    pub(super) async fn deactivated(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = self
            .base
            .enroll(DeviceKind::Thermometer, "captured", true)
            .await?;
        self.base
            .ward
            .ledger()
            .deactivate_device(device.epc.to_bytes())
            .await?;
        self.base.wait_for_code(&device, "inactive_device").await?;
        findings.notes.push(format!(
            "device {} deactivated on the ledger; the collector followed",
            device.epc.pure_identity_uri()
        ));
        let body = plausible_temperature(&device);
        self.send_forged(&device, &device.files, &body, findings)
            .await
    }

    pub(super) async fn revoked(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = self
            .base
            .enroll(DeviceKind::Thermometer, "revoked", true)
            .await?;
        let config = self.client_config(&device.files, &[b"http/1.1"])?;
        let before = tls_request(
            self.base.ward.collector_addr(),
            Arc::clone(&config),
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        match &before {
            Observed::Answer { status: 200, .. } => findings
                .notes
                .push("before revocation the certificate was accepted (GET /healthz: 200)".into()),
            other => findings.problems.push(format!(
                "before revocation the certificate was already refused: {other}"
            )),
        }
        self.base.ward.pki().revoke(&device.files.serial).await?;
        self.base.ward.reload_crls()?;
        findings.notes.push(format!(
            "certificate {} revoked, CRL republished, collector and storage reloaded",
            device.files.serial
        ));
        let body = temperature_evidence(&device, findings)?;
        Ok(self.post_reading(config, &body).await)
    }
}
