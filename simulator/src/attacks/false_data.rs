//! False data injection: a type the device's rule does not allow, a value outside the
//! rule's range, more readings a minute than the rule allows.

use hyper::Method;
use wardseal_core::reading::Timestamp;

use super::outcome::{Observed, Server};
use super::wire::{answer, send};
use super::{Attacker, Findings, leaves_of, now, quantity};
use crate::error::Error;
use crate::kinds::DeviceKind;

impl Attacker<'_> {
    /// A thermometer sends a heart rate.
    pub(super) async fn type_not_allowed(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let body = quantity("heart_rate", "72", "/min", now(), device.next_sequence());
        self.send_forged(device, &device.files, &body, findings)
            .await
    }

    /// A thermometer reports 50 °C, which no working thermometer measures (plausible 25–45 °C).
    pub(super) async fn out_of_range(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let body = quantity(
            "body_temperature",
            "50",
            "Cel",
            now(),
            device.next_sequence(),
        );
        self.send_forged(device, &device.files, &body, findings)
            .await
    }

    pub(super) async fn implausible_rate(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let pen = self
            .base
            .enroll(DeviceKind::InsulinPen, "insulin-pen", true)
            .await?;
        let per_minute = DeviceKind::InsulinPen
            .types()
            .first()
            .map_or(0, |limits| limits.per_minute);
        // The rule allows ten times the nominal rate (kinds::DeviceKind::type_rules).
        let limit = usize::try_from(per_minute.saturating_mul(10)).unwrap_or(usize::MAX);
        let start = now().unix_micros();
        let mut readings = Vec::with_capacity(limit + 1);
        for index in 0..=limit {
            let time = Timestamp::from_unix_micros(start + i64::try_from(index).unwrap_or(0))
                .map_err(wardseal_core::Error::from)?;
            readings.push(quantity(
                "insulin_dose",
                "4",
                "[IU]",
                time,
                pen.next_sequence(),
            ));
        }
        let body = format!("[{}]", readings.join(","));
        let leaves = leaves_of(&pen.epc, &body)?;
        let connection = self.base.ward.connect_collector(&pen.files).await?;
        let reply = send(&connection, Method::POST, "/v1/readings", body.into_bytes()).await?;
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let results = json["results"].as_array().cloned().unwrap_or_default();
        let accepted = results
            .iter()
            .filter(|result| result["status"] == "accepted")
            .count();
        for (leaf, result) in leaves.iter().zip(&results) {
            if result["status"] != "accepted" {
                findings.evidence.leaves.push(*leaf);
            }
        }
        findings.notes.push(format!(
            "{accepted} doses within the rule's {limit} a minute accepted, {} refused",
            results.len().saturating_sub(accepted)
        ));
        if accepted != limit || results.len() != limit + 1 {
            findings.problems.push(format!(
                "expected the first {limit} of {} doses accepted, got {accepted} of {}",
                limit + 1,
                results.len()
            ));
        }
        Ok(answer(Server::Collector, &reply))
    }
}
