//! Data access: a clinician neither responsible for the patient nor granted consent reads
//! their observations.

use hyper::Method;

use super::outcome::{Observed, Server};
use super::wire::{answer, send};
use super::{Attacker, Findings};
use crate::error::Error;

impl Attacker<'_> {
    pub(super) async fn unauthorised_read(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let files = self.base.ward.files();
        let connection = self
            .base
            .ward
            .connect_storage(&files.other_nurse.files)
            .await?;
        let path = format!("/fhir/Observation?patient={}", self.base.patient.as_str());
        let reply = send(&connection, Method::GET, &path, Vec::new()).await?;
        if String::from_utf8_lossy(&reply.body).contains("Observation") {
            findings
                .problems
                .push("the refusal's body discloses observations".into());
        }
        findings.notes.push(format!(
            "{} asked for {}'s observations",
            files.other_nurse.id,
            self.base.patient.as_str()
        ));
        Ok(answer(Server::Storage, &reply))
    }
}
