//! The attacker's own devices: certified by the ward's CA, registered on the ledger and
//! assigned to the target patient, then probed until the collector knows them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hyper::Method;
use wardseal_contracts::Device;
use wardseal_core::epc::Sgtin96;
use wardseal_core::identity::{GroupId, Identity, RuleId};

use super::wire::{error_code, send};
use super::{AttackDevice, Base, POLL, PROPAGATION_TIMEOUT, now, quantity, timeout};
use crate::error::Error;
use crate::kinds::DeviceKind;
use crate::ward::COMPANY_PREFIX;

impl Base<'_> {
    /// Certifies a new device of `kind`; with `register`, registers it on the ledger,
    /// assigns it to the patient in storage and waits until the collector knows both.
    pub(super) async fn enroll(
        &self,
        kind: DeviceKind,
        label: &str,
        register: bool,
    ) -> Result<AttackDevice, Error> {
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        let epc: Sgtin96 = format!(
            "urn:epc:tag:sgtin-96:3.{COMPANY_PREFIX}.{}.{serial}",
            kind.item_reference()
        )
        .parse()
        .map_err(wardseal_core::Error::from)?;
        let ward_id = self.ward.files().ward.as_str();
        let files = self
            .ward
            .pki()
            .issue_in(
                Identity::device(epc.clone(), GroupId(kind.group()), RuleId(kind.group())),
                &self.dir,
                &format!("{label}-{serial}"),
                ward_id,
            )
            .await?;
        let device = AttackDevice {
            kind,
            epc,
            files,
            sequence: AtomicU64::new(1),
        };
        if register {
            self.ward
                .ledger()
                .register_device(&Device {
                    epc: device.epc.to_bytes(),
                    group: kind.group(),
                    rule_id: kind.group(),
                    ward: ward_id.to_owned(),
                    active: true,
                })
                .await?;
            let since = wardseal_storage::store::now_micros() - 3_600_000_000;
            self.ward
                .storage()
                .store
                .assign_device(
                    &device.epc.pure_identity_uri(),
                    self.patient.as_str(),
                    since,
                )
                .await?;
            self.wait_until_known(&device).await?;
        }
        Ok(device)
    }

    /// Waits until the collector has learnt the device's registration (a probe of a type
    /// no group allows is refused `data_type_not_allowed` rather than `unknown_device`;
    /// probes are refused either way, so nothing is stored) and its assignment.
    pub(super) async fn wait_until_known(&self, device: &AttackDevice) -> Result<(), Error> {
        self.wait_for_code(device, "data_type_not_allowed").await?;
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        while self
            .ward
            .collector()
            .replica()
            .patient(&device.epc)
            .is_none()
        {
            if Instant::now() >= deadline {
                return Err(timeout(
                    "the collector to learn the attacker's device assignment",
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Sends probes (a `glucose` reading, which no device group may send) until the
    /// collector answers with `code`.
    pub(super) async fn wait_for_code(
        &self,
        device: &AttackDevice,
        code: &str,
    ) -> Result<(), Error> {
        let connection = self.ward.connect_collector(&device.files).await?;
        let deadline = Instant::now() + PROPAGATION_TIMEOUT;
        loop {
            let probe = quantity("glucose", "100", "mg/dL", now(), device.next_sequence());
            let reply = send(
                &connection,
                Method::POST,
                "/v1/readings",
                probe.into_bytes(),
            )
            .await?;
            if error_code(&reply).as_deref() == Some(code) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(timeout(&format!(
                    "the collector to answer {code} to the attacker's device (last: HTTP {} {})",
                    reply.status,
                    error_code(&reply).unwrap_or_default()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
