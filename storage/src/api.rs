//! The HTTP API: routes, role checks, and the one error-to-wire mapping ([`to_wire`]).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use wardseal_core::exchange::{DeviceAssignment, WardAssignments};
use wardseal_core::identity::{Role, SubjectId};
use wardseal_core::reading::{DataType, Timestamp};
use wardseal_net::peer::PeerIdentity;
use wardseal_net::server::ServerTls;
use wardseal_net::wire::{WireError, json_response, read_body};

use crate::chain::Chain;
use crate::error::{AccessRefusal, Error, FhirError, Refusal};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::store::{Store, now_micros};
use crate::{access, fhir, proof};

/// The largest request body accepted (a 1024-reading batch is well under 1 MiB).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The server's state, shared by every request.
#[derive(Debug)]
pub struct Storage {
    /// The database.
    pub store: Store,
    /// The chain.
    pub chain: Chain,
    /// The TLS configuration (also the CA bundle and CRLs for patient certificates).
    pub tls: Arc<ServerTls>,
    /// The metrics `GET /metrics` shows.
    pub metrics: Arc<Metrics>,
    /// The live alert stream and the escalation times.
    pub alerts: crate::alerts::AlertHub,
    /// What storage has just done (readings stored, alerts), for in-process listeners.
    pub events: crate::events::EventHub,
    /// FHIR subscriptions: options, websocket tokens, the delivery wake-up.
    pub subscriptions: crate::subscriptions::Subscriptions,
}

/// The one mapping from errors to the wire.
pub fn to_wire(error: &Error) -> WireError {
    let message = error.to_string();
    match error {
        Error::Refused(refusal) => {
            let status = match refusal {
                Refusal::Malformed(_)
                | Refusal::MalformedReading { .. }
                | Refusal::CountMismatch { .. } => StatusCode::BAD_REQUEST,
                Refusal::ChainGap { .. } | Refusal::ChainFork { .. } | Refusal::Replay { .. } => {
                    StatusCode::CONFLICT
                }
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let wire = WireError::new(status, refusal.code(), message);
            // Only a gap or a replay can succeed later unchanged (the missing batch may
            // still be on its way, a concurrent delivery may have won); everything else
            // is refused again, and the collector quarantines the batch.
            match refusal {
                Refusal::ChainGap { .. } | Refusal::Replay { .. } => wire,
                _ => wire.permanent(),
            }
        }
        Error::Access(AccessRefusal::Role(_)) => {
            WireError::new(StatusCode::FORBIDDEN, "wrong_role", message)
        }
        Error::Access(AccessRefusal::NotResponsible { .. }) => {
            WireError::new(StatusCode::FORBIDDEN, "not_responsible", message)
        }
        Error::Access(AccessRefusal::NotOwnRecord { .. }) => {
            WireError::new(StatusCode::FORBIDDEN, "not_own_record", message)
        }
        Error::Access(AccessRefusal::NoSubject) => {
            WireError::new(StatusCode::FORBIDDEN, "no_subject", message)
        }
        Error::Access(AccessRefusal::Authority(refusal)) => {
            WireError::new(StatusCode::FORBIDDEN, refusal.code(), message)
        }
        Error::Body(error) => error.to_wire(),
        Error::BadRequest(_) => WireError::new(StatusCode::BAD_REQUEST, "bad_request", message),
        Error::NotFound(_) => WireError::new(StatusCode::NOT_FOUND, "not_found", message),
        Error::Database { action, .. } => WireError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            format!("the database failed while trying to {action}; retry later"),
        ),
        Error::Fhir(fhir) => {
            let status = match fhir {
                FhirError::UnsupportedFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                FhirError::NotSupported(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            let code = match fhir {
                FhirError::UnknownParameter { .. } => "unknown_parameter",
                FhirError::BadParameter { .. } => "bad_parameter",
                FhirError::BadCursor(_) => "bad_cursor",
                FhirError::UnsupportedFormat(_) => "unsupported_format",
                _ => "not_supported",
            };
            WireError::new(status, code, message).permanent()
        }
        Error::Ledger { action, .. } => WireError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            format!("the ledger failed while trying to {action}; retry later"),
        ),
        _ => WireError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ),
    }
}

fn subject(peer: &PeerIdentity) -> Result<String, Error> {
    peer.identity
        .subject_id()
        .map(|subject| subject.as_str().to_owned())
        .ok_or(Error::Access(AccessRefusal::NoSubject))
}

fn role(peer: &PeerIdentity, role: Role) -> Result<(), Error> {
    peer.require_role(role)
        .map(drop)
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))
}

/// The first value of query parameter `name`, percent-decoded
/// (`application/x-www-form-urlencoded`).
fn query(request: &Request<Incoming>, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

fn time_parameter(request: &Request<Incoming>, name: &str, default: i64) -> Result<i64, Error> {
    match query(request, name) {
        None => Ok(default),
        Some(text) => {
            // Form decoding reads a bare `+` as a space; a time never holds a space, so a
            // client that left the offset's `+` unencoded meant the sign.
            let text = text.replace(' ', "+");
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .ok()
                .and_then(|time| Timestamp::from_datetime(time).ok())
                .map(Timestamp::unix_micros)
                .or_else(|| text.parse().ok())
                .ok_or_else(|| {
                    Error::BadRequest(format!("`{name}` must be RFC 3339 or µs since the epoch"))
                })
        }
    }
}

async fn body_json<T: for<'de> Deserialize<'de>>(request: Request<Incoming>) -> Result<T, Error> {
    let body = read_body(request.into_body(), BODY_LIMIT).await?;
    serde_json::from_slice(&body).map_err(|error| Error::BadRequest(error.to_string()))
}

/// An admission (`POST /v1/admin/admissions`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Admission {
    /// Pseudonymous patient id.
    pub patient: String,
    /// Ward (department).
    pub ward: String,
    /// Room.
    pub room: String,
    /// Bed.
    pub bed: String,
    /// The patient's Ethereum account in Consent (0x…), if they have one.
    pub account: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeviceAssignmentRequest {
    device: String,
    patient: String,
    since: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct StaffAssignmentRequest {
    staff: String,
    patient: String,
    duty: String,
}

#[derive(Debug, Deserialize)]
struct StaffAccountRequest {
    staff: String,
    account: String,
}

#[derive(Debug, Deserialize)]
struct DischargeRequest {
    patient: String,
}

/// Parses a 0x-prefixed 20-byte account.
pub fn parse_account(text: &str) -> Result<alloy::primitives::Address, Error> {
    let bytes = hex::decode(text.trim_start_matches("0x"))
        .map_err(|_| Error::BadRequest(format!("account {text:?} is not 0x and 40 hex digits")))?;
    <[u8; 20]>::try_from(bytes.as_slice())
        .map(alloy::primitives::Address::from)
        .map_err(|_| Error::BadRequest(format!("account {text:?} is not 20 bytes")))
}

impl Storage {
    /// Answers one request (every error through [`to_wire`]).
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: Arc<PeerIdentity>,
    ) -> Response<Full<Bytes>> {
        match self.route(request, &peer).await {
            Ok(response) => response,
            Err(error) => to_wire(&error).into_response(),
        }
    }

    async fn route(
        &self,
        request: Request<Incoming>,
        peer: &PeerIdentity,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (request.method().clone(), segments.as_slice()) {
            (_, ["fhir", "Subscription", ..] | ["fhir", "websocket"]) => {
                Ok(crate::subscriptions::respond(self, request, peer).await)
            }
            (Method::POST, ["v1", "batches"]) => {
                role(peer, Role::Collector)?;
                let body = read_body(request.into_body(), BODY_LIMIT).await?;
                let ingest = Ingest {
                    store: &self.store,
                    chain: &self.chain,
                    tls: &self.tls,
                };
                let started = std::time::Instant::now();
                let submitted = ingest.submit_with_alerts(peer, &body).await;
                match &submitted {
                    Ok(accepted) => self.metrics.batch_accepted(
                        accepted.receipt.newly_stored,
                        accepted.receipt.count,
                        started.elapsed(),
                    ),
                    Err(Error::Refused(refusal)) => {
                        self.metrics
                            .batch_refused(refusal.code(), started.elapsed());
                    }
                    Err(_) => {}
                }
                let accepted = submitted?;
                let receipt = accepted.receipt;
                if let Some(stored) = accepted.stored {
                    self.events
                        .publish(crate::events::StoredEvent::Readings(stored));
                }
                for alert in accepted.raised {
                    self.alerts
                        .publish(wardseal_core::alert::AlertState::Raised, alert);
                }
                let status = if receipt.newly_stored {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(json_response(status, &receipt))
            }
            (Method::POST, ["v1", "batches", "gaps"]) => {
                role(peer, Role::Collector)?;
                let body = read_body(request.into_body(), BODY_LIMIT).await?;
                let receipt = crate::gap::declare(&self.store, &self.tls, peer, &body).await?;
                let status = if receipt.newly_recorded {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(json_response(status, &receipt))
            }
            (Method::GET, ["v1", "wards", ward, "assignments"]) => {
                role(peer, Role::Collector)?;
                if subject(peer)? != *ward {
                    return Err(Error::Access(AccessRefusal::NotResponsible {
                        staff: subject(peer)?,
                        patient: format!("ward {ward}"),
                    }));
                }
                Ok(json_response(
                    StatusCode::OK,
                    &self.ward_assignments(ward).await?,
                ))
            }
            (Method::POST, ["v1", "admin", action]) => {
                role(peer, Role::Admin)?;
                self.admin(action, request).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"done": action}),
                ))
            }
            (Method::GET, ["v1", "admin", "rejections"]) => {
                role(peer, Role::Admin)?;
                Ok(json_response(
                    StatusCode::OK,
                    &self.store.rejections().await?,
                ))
            }
            (Method::POST, ["v1", "visits"]) => {
                let body = read_body(request.into_body(), BODY_LIMIT).await?;
                let visit = crate::visits::record(self, peer, &body).await?;
                Ok(json_response(StatusCode::CREATED, &visit))
            }
            (Method::GET, ["v1", "patients", patient, "visits"]) => Ok(json_response(
                StatusCode::OK,
                &crate::visits::list(self, peer, patient).await?,
            )),
            (Method::GET, ["v1", "patients", patient, "observations"]) => {
                // A thin alias of `GET /fhir/Observation` (errors in /v1's shape).
                let data_type = match query(&request, "type") {
                    None => None,
                    Some(name) => Some(
                        DataType::ALL
                            .iter()
                            .copied()
                            .find(|data_type| data_type.name() == name)
                            .ok_or_else(|| {
                                Error::BadRequest(format!("unknown data type {name:?}"))
                            })?,
                    ),
                };
                let since = time_parameter(&request, "since", 0)?;
                let until = time_parameter(&request, "until", i64::MAX)?;
                let base = fhir::base_url(&request);
                fhir::observation::alias(self, peer, base, patient, data_type, since, until).await
            }
            (_, ["fhir", ..]) => Ok(fhir::serve(self, request, peer).await),
            (Method::GET, ["metrics"]) => Ok(wardseal_net::wire::bytes_response(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                self.metrics.encode().into_bytes(),
            )),
            (Method::GET, ["v1", "access-log"]) => {
                role(peer, Role::Patient)?;
                let patient = subject(peer)?;
                self.metrics.access_log_read();
                Ok(json_response(
                    StatusCode::OK,
                    &self.store.access_log(Some(&patient), 0).await?,
                ))
            }
            (Method::GET, ["v1", "readings", leaf, "proof"]) => Ok(json_response(
                StatusCode::OK,
                &proof::for_peer(self, peer, leaf, "proof").await?,
            )),
            // The ward screen: its assets and session, and proofs checked step by step.
            (Method::GET, ["v1", "readings", leaf, "verify"]) => {
                crate::ui::verify::respond(self, peer, leaf).await
            }
            (Method::GET, ["ui", ..]) => crate::ui::respond(&request, peer),
            _ => Err(Error::NotFound(format!(
                "route {} {path}",
                request.method()
            ))),
        }
    }

    async fn admin(&self, action: &str, request: Request<Incoming>) -> Result<(), Error> {
        match action {
            "admissions" => {
                let admission: Admission = body_json(request).await?;
                let account = admission
                    .account
                    .as_deref()
                    .map(parse_account)
                    .transpose()?;
                let patient = check_subject(&admission.patient)?;
                self.store
                    .admit(
                        &patient,
                        &admission.ward,
                        &admission.room,
                        &admission.bed,
                        account,
                    )
                    .await
            }
            "device-assignments" => {
                let assignment: DeviceAssignmentRequest = body_json(request).await?;
                let device: wardseal_core::epc::Sgtin96 = assignment
                    .device
                    .parse()
                    .map_err(|error| Error::BadRequest(format!("device: {error}")))?;
                self.store
                    .assign_device(
                        &device.pure_identity_uri(),
                        &assignment.patient,
                        assignment.since.unwrap_or_else(now_micros),
                    )
                    .await
            }
            "staff-assignments" => {
                let assignment: StaffAssignmentRequest = body_json(request).await?;
                self.store
                    .assign_staff(
                        &check_subject(&assignment.staff)?,
                        &check_subject(&assignment.patient)?,
                        &assignment.duty,
                    )
                    .await
            }
            "staff-accounts" => {
                let account: StaffAccountRequest = body_json(request).await?;
                self.store
                    .set_staff_account(
                        &check_subject(&account.staff)?,
                        parse_account(&account.account)?,
                    )
                    .await
            }
            "discharges" => {
                let discharge: DischargeRequest = body_json(request).await?;
                self.store
                    .discharge(&check_subject(&discharge.patient)?)
                    .await
            }
            "anchor-access-log" => access::anchor(self).await.map(drop),
            "anchor-batches" => crate::batch_log::anchor(self).await.map(drop),
            other => Err(Error::NotFound(format!("admin action {other}"))),
        }
    }

    /// A ward's device assignments: current ones and those ended in the last 24 hours,
    /// each with its interval.
    pub async fn ward_assignments(&self, ward: &str) -> Result<WardAssignments, Error> {
        let ward_id = check_subject(ward)?;
        let mut assignments = Vec::new();
        let ended_after = now_micros() - crate::assignments::ENDED_LISTED_MICROS;
        for (device, patient, since, until) in
            crate::assignments::ward_assignments(&self.store, ward, ended_after).await?
        {
            let (Ok(device), Ok(patient), Ok(since), Ok(until)) = (
                wardseal_core::epc::Sgtin96::from_pure_identity_uri(&device),
                SubjectId::new(patient),
                Timestamp::from_unix_micros(since),
                until.map(Timestamp::from_unix_micros).transpose(),
            ) else {
                continue;
            };
            assignments.push(DeviceAssignment {
                device,
                patient,
                since,
                until,
            });
        }
        Ok(WardAssignments {
            ward: ward_id,
            as_of: Timestamp::now(),
            assignments,
        })
    }
}

fn check_subject(text: &str) -> Result<SubjectId, Error> {
    SubjectId::new(text).map_err(|error| Error::BadRequest(error.to_string()))
}
