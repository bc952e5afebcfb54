//! Visits (seed 2, scenario 3): an authority (laboratory, insurer, pharmacy, other
//! hospital) with the patient's on-chain consent records that it saw the patient.
//!
//! `POST /v1/visits` takes a [`VisitRequest`] from an authority certificate. The same
//! decision as a read ([`access::authorize_authority`]: bound subject, active
//! organisation, the patient's grant) is taken and logged in the anchored access log
//! before anything is stored; the visit is kept with the organisation the certificate
//! acted for and its kind, so a later unbinding or revocation does not rewrite history.
//! `GET /v1/patients/{patient}/visits` lists a patient's visits to the patient
//! themselves, to responsible staff and to consented authorities (each read logged as
//! any other). The FHIR API shows each visit as `Encounter/visit-<n>`, and `POST
//! /fhir/Encounter` records one ([`crate::fhir::visit`]).

use std::str::FromStr;

use serde::Deserialize;
use wardseal_core::identity::{Role, SubjectId};
use wardseal_core::reading::Timestamp;
use wardseal_net::peer::PeerIdentity;

use crate::access;
use crate::api::Storage;
use crate::error::{AccessRefusal, Error};
use crate::store::{NewVisit, VisitRecord, now_micros};

/// The longest reason a visit may carry, in characters.
pub const MAX_REASON_CHARS: usize = 256;

/// The kind of encounter, as the HL7 v3 ActCode encounter classes FHIR R4's
/// `Encounter.class` takes (`http://terminology.hl7.org/CodeSystem/v3-ActCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VisitClass {
    /// `AMB`: the patient came to the organisation (a laboratory draw, a consultation).
    Ambulatory,
    /// `VR`: a remote encounter (video, telephone, a record review).
    Virtual,
    /// `HH`: at the patient's home.
    HomeHealth,
    /// `FLD`: elsewhere in the field (a pharmacy delivery, a mobile unit).
    Field,
    /// `EMER`: an emergency.
    Emergency,
}

impl VisitClass {
    /// Every class.
    pub const ALL: [Self; 5] = [
        Self::Ambulatory,
        Self::Virtual,
        Self::HomeHealth,
        Self::Field,
        Self::Emergency,
    ];

    /// The ActCode code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Ambulatory => "AMB",
            Self::Virtual => "VR",
            Self::HomeHealth => "HH",
            Self::Field => "FLD",
            Self::Emergency => "EMER",
        }
    }

    /// The ActCode display.
    pub fn display(self) -> &'static str {
        match self {
            Self::Ambulatory => "ambulatory",
            Self::Virtual => "virtual",
            Self::HomeHealth => "home health",
            Self::Field => "field",
            Self::Emergency => "emergency",
        }
    }
}

impl FromStr for VisitClass {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|class| class.code() == text)
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "visit class {text:?} is unknown; use AMB, VR, HH, FLD or EMER (v3 ActCode)"
                ))
            })
    }
}

/// What an authority sends to record a visit (`POST /v1/visits`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct VisitRequest {
    /// The patient's subject id.
    pub patient: String,
    /// The encounter class: `AMB`, `VR`, `HH`, `FLD` or `EMER`.
    pub class: String,
    /// When the visit began (RFC 3339); now when absent.
    pub start: Option<String>,
    /// When it ended (RFC 3339), if it is over; not before `start`.
    pub end: Option<String>,
    /// Why, in at most 256 characters without control characters.
    pub reason: Option<String>,
}

/// The code system of `Encounter.class` (HL7 v3 ActCode).
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

impl VisitRequest {
    /// The visit a FHIR R4 `Encounter` asks to create (`POST /fhir/Encounter`): `subject`
    /// a `Patient/<id>` reference, `class` an ActCode from the five above, `period.start`
    /// (now when absent) and `period.end`, the first `reasonCode` text. The server assigns
    /// the id, the organisation and the participant from the certificate, so an `id`, a
    /// `participant` or a `serviceProvider` in the request is refused rather than ignored;
    /// `status` must agree with the period (`finished` needs an end, `in-progress` none).
    pub fn from_encounter(encounter: &serde_json::Value) -> Result<Self, Error> {
        let bad = |message: &str| Error::BadRequest(format!("Encounter: {message}"));
        if encounter["resourceType"] != "Encounter" {
            return Err(bad("resourceType must be Encounter"));
        }
        for assigned in ["id", "participant", "serviceProvider"] {
            if encounter.get(assigned).is_some() {
                return Err(bad(&format!(
                    "`{assigned}` is assigned by the server from the authority's certificate; leave it out"
                )));
            }
        }
        let patient = encounter["subject"]["reference"]
            .as_str()
            .and_then(|reference| reference.strip_prefix("Patient/"))
            .ok_or_else(|| bad("subject.reference must be Patient/<id>"))?;
        let class = &encounter["class"];
        if let Some(system) = class.get("system")
            && system != ACT_CODE_SYSTEM
        {
            return Err(bad(&format!("class.system must be {ACT_CODE_SYSTEM}")));
        }
        let class = class["code"]
            .as_str()
            .ok_or_else(|| bad("class.code is missing"))?;
        let text = |value: &serde_json::Value, what: &str| -> Result<Option<String>, Error> {
            match value {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::String(text) => Ok(Some(text.clone())),
                _ => Err(bad(&format!("{what} must be a string"))),
            }
        };
        let start = text(&encounter["period"]["start"], "period.start")?;
        let end = text(&encounter["period"]["end"], "period.end")?;
        match (encounter["status"].as_str(), &end) {
            (Some("finished"), Some(_)) | (Some("in-progress") | None, None) => {}
            (Some("finished"), None) => return Err(bad("a finished visit needs period.end")),
            (Some("in-progress"), Some(_)) => {
                return Err(bad("an in-progress visit has no period.end"));
            }
            (None, Some(_)) => {}
            (Some(other), _) => {
                return Err(bad(&format!(
                    "status {other:?}: a visit is in-progress or finished"
                )));
            }
        }
        let reason = text(&encounter["reasonCode"][0]["text"], "reasonCode[0].text")?;
        Ok(Self {
            patient: patient.to_owned(),
            class: class.to_owned(),
            start,
            end,
            reason,
        })
    }
}

fn rfc3339(field: &str, text: &str) -> Result<i64, Error> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|time| Timestamp::from_datetime(time).ok())
        .map(Timestamp::unix_micros)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "`{field}` must be an RFC 3339 time, e.g. 2026-12-08T09:30:00Z"
            ))
        })
}

/// A [`VisitRequest`] whose every field was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckedVisit {
    patient: SubjectId,
    class: VisitClass,
    started_at: i64,
    ended_at: Option<i64>,
    reason: Option<String>,
}

impl VisitRequest {
    /// Checks every field (nothing about the caller): the visit to store, but for the
    /// organisation, its kind and the recording subject.
    fn check(&self) -> Result<CheckedVisit, Error> {
        let patient = SubjectId::new(self.patient.clone())
            .map_err(|error| Error::BadRequest(format!("patient: {error}")))?;
        let class = self.class.parse()?;
        let start = match &self.start {
            Some(text) => rfc3339("start", text)?,
            None => now_micros(),
        };
        let end = self
            .end
            .as_deref()
            .map(|text| rfc3339("end", text))
            .transpose()?;
        if end.is_some_and(|end| end < start) {
            return Err(Error::BadRequest("`end` is before `start`".into()));
        }
        if let Some(reason) = &self.reason
            && (reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control))
        {
            return Err(Error::BadRequest(format!(
                "`reason` must be at most {MAX_REASON_CHARS} characters without control characters"
            )));
        }
        Ok(CheckedVisit {
            patient,
            class,
            started_at: start,
            ended_at: end,
            reason: self.reason.clone(),
        })
    }
}

/// Records a visit for an authority certificate with the patient's consent (the decision
/// logged either way); a refusal stores nothing.
pub async fn record(
    storage: &Storage,
    peer: &PeerIdentity,
    body: &[u8],
) -> Result<VisitRecord, Error> {
    peer.require_role(Role::Authority)
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))?;
    let request: VisitRequest = serde_json::from_slice(body)
        .map_err(|error| Error::BadRequest(format!("not a visit: {error}")))?;
    record_request(storage, peer, &request).await
}

/// Records the visit `request` asks for (from `POST /v1/visits` or a FHIR Encounter) for
/// an authority certificate with the patient's consent (the decision logged either way);
/// a refusal stores nothing.
pub async fn record_request(
    storage: &Storage,
    peer: &PeerIdentity,
    request: &VisitRequest,
) -> Result<VisitRecord, Error> {
    peer.require_role(Role::Authority)
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))?;
    let CheckedVisit {
        patient,
        class,
        started_at,
        ended_at,
        reason,
    } = request.check()?;
    let organisation = access::authorize_authority(
        storage,
        peer,
        patient.as_str(),
        &format!("record visit class={}", class.code()),
    )
    .await?;
    let subject = peer
        .identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))?;
    // The registry's kind; the certificate's own if the binding went in between.
    let kind = match storage.chain.authority_of(&subject).await? {
        Some(entry) => Some(entry.kind),
        None => peer.identity.authority_kind(),
    }
    .map_or_else(|| "unknown".to_owned(), |kind| kind.to_string());
    storage
        .store
        .record_visit(&NewVisit {
            patient: patient.as_str().to_owned(),
            organisation,
            subject,
            kind,
            class: class.code().to_owned(),
            started_at,
            ended_at,
            reason,
        })
        .await
}

/// A patient's visits, for the patient themselves, responsible staff and consented
/// authorities (logged as a read of the patient's records).
pub async fn list(
    storage: &Storage,
    peer: &PeerIdentity,
    patient: &str,
) -> Result<Vec<VisitRecord>, Error> {
    peer.require_any_role(&[Role::Patient, Role::Staff, Role::Authority])
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))?;
    if peer.role() == Role::Patient {
        let own = peer
            .identity
            .subject_id()
            .map(|subject| subject.as_str().to_owned())
            .ok_or(Error::Access(AccessRefusal::NoSubject))?;
        if own != patient {
            return Err(Error::Access(AccessRefusal::NotResponsible {
                staff: own,
                patient: patient.to_owned(),
            }));
        }
    } else {
        access::authorize(storage, peer, patient, "visits").await?;
    }
    storage.store.visits(patient).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(class: &str, start: Option<&str>, end: Option<&str>) -> VisitRequest {
        VisitRequest {
            patient: "patient-1".into(),
            class: class.into(),
            start: start.map(Into::into),
            end: end.map(Into::into),
            reason: None,
        }
    }

    #[test]
    fn a_fhir_encounter_becomes_a_visit_request() {
        let encounter = serde_json::json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": ACT_CODE_SYSTEM, "code": "AMB"},
            "subject": {"reference": "Patient/patient-1"},
            "period": {"start": "2026-12-08T09:30:00Z", "end": "2026-12-08T09:40:00Z"},
            "reasonCode": [{"text": "blood draw"}]
        });
        let request = VisitRequest::from_encounter(&encounter).unwrap();
        assert_eq!(
            request,
            VisitRequest {
                patient: "patient-1".into(),
                class: "AMB".into(),
                start: Some("2026-12-08T09:30:00Z".into()),
                end: Some("2026-12-08T09:40:00Z".into()),
                reason: Some("blood draw".into()),
            }
        );
        request.check().unwrap();
        let refused = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut changed = encounter.clone();
            change(&mut changed);
            VisitRequest::from_encounter(&changed).unwrap_err()
        };
        refused(&|e| e["resourceType"] = "Patient".into());
        refused(&|e| e["id"] = "visit-9".into());
        refused(&|e| e["participant"] = serde_json::json!([]));
        refused(&|e| e["subject"]["reference"] = "Group/ward-7".into());
        refused(&|e| e["class"]["system"] = "http://example.org".into());
        refused(&|e| e["status"] = "planned".into());
        refused(&|e| e["period"]["end"] = serde_json::Value::Null);
        refused(&|e| e["period"]["start"] = 12.into());
    }

    #[test]
    fn classes_and_times_are_checked() {
        for class in VisitClass::ALL {
            assert_eq!(class.code().parse::<VisitClass>().unwrap(), class);
        }
        assert!(request("IMP", None, None).check().is_err());
        let checked = request(
            "VR",
            Some("2026-12-08T09:30:00Z"),
            Some("2026-12-08T10:00:00+00:00"),
        )
        .check()
        .unwrap();
        assert_eq!(checked.class, VisitClass::Virtual);
        assert_eq!(
            checked.ended_at.unwrap() - checked.started_at,
            30 * 60 * 1_000_000
        );
        assert!(
            request(
                "AMB",
                Some("2026-12-08T10:00:00Z"),
                Some("2026-12-08T09:00:00Z")
            )
            .check()
            .is_err()
        );
        assert!(request("AMB", Some("yesterday"), None).check().is_err());
        let mut bad_patient = request("AMB", None, None);
        bad_patient.patient = "patient one".into();
        assert!(bad_patient.check().is_err());
        let mut long = request("AMB", None, None);
        long.reason = Some("x".repeat(MAX_REASON_CHARS + 1));
        assert!(long.check().is_err());
        long.reason = Some("line\nbreak".into());
        assert!(long.check().is_err());
    }
}
