//! The ward screen (`/ui/`): a page for the nurses' station and for patients, served by
//! storage through the same mutual-TLS door as the API.
//!
//! The page is built on the API, not beside it: its script reads what the signed-in
//! identity may read through `/fhir` (the same access rules and access log as any FHIR
//! client), listens to the live stream (`GET /v1/events/stream`, [`crate::alerts`]), and
//! checks proofs on the server (`GET /v1/readings/{leaf}/verify`, [`verify`]). This module
//! serves only what holds no patient data: the assets compiled into the binary
//! ([`assets`]: no CDN, works with no internet, a strict Content-Security-Policy) and
//! `GET /ui/session`, which tells the page who signed in (role and subject id from the
//! certificate) and which vital signs exist.
//!
//! Staff sign in with their certificate (imported into the browser as PKCS#12, or on a
//! smart card the browser reaches through PKCS#11); patients with their card certificate.
//! Devices, collectors and servers have no business here and are refused.

pub mod assets;
pub mod verify;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, HeaderValue, LOCATION};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use wardseal_core::identity::Role;
use wardseal_core::reading::{DataType, LOCAL_SYSTEM, ValueShape};
use wardseal_net::peer::PeerIdentity;
use wardseal_net::wire::json_response;

use crate::error::{AccessRefusal, Error};

/// What `GET /ui/session` tells the page.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The signed-in identity's role (`staff`, `patient`, `admin`).
    pub role: &'static str,
    /// Its subject id (a staff member's id, a patient's pseudonym).
    pub subject: String,
    /// The code system of the codes below (wardseal's local one: every data type has a
    /// code there).
    pub system: &'static str,
    /// The data types, in code order.
    pub vitals: Vec<Vital>,
}

/// One data type, as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Vital {
    /// Its code in [`Session::system`] (the wire name).
    pub code: &'static str,
    /// Its name for people.
    pub display: &'static str,
    /// Its UCUM unit.
    pub unit: &'static str,
    /// `quantity`, `blood_pressure` or `waveform`.
    pub shape: &'static str,
}

impl Session {
    fn of(role: Role, subject: String) -> Self {
        Self {
            role: role.name(),
            subject,
            system: LOCAL_SYSTEM,
            vitals: DataType::ALL
                .iter()
                .map(|data_type| Vital {
                    code: data_type.name(),
                    display: data_type.coding().display,
                    unit: data_type.ucum_unit(),
                    shape: match data_type.shape() {
                        ValueShape::Quantity => "quantity",
                        ValueShape::BloodPressure => "blood_pressure",
                        ValueShape::Waveform => "waveform",
                    },
                })
                .collect(),
        }
    }
}

/// Answers `GET /ui/…`: the page's assets and its session, to staff, patients and
/// administrators.
pub fn respond(
    request: &Request<Incoming>,
    peer: &PeerIdentity,
) -> Result<Response<Full<Bytes>>, Error> {
    peer.require_any_role(&[Role::Staff, Role::Patient, Role::Admin])
        .map_err(|error| Error::Access(AccessRefusal::Role(error)))?;
    let path = request.uri().path();
    let Some(name) = path.strip_prefix("/ui/") else {
        // `/ui`: the page's relative links need the trailing slash.
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/ui/"));
        return Ok(response);
    };
    if name == "session" {
        let subject = peer
            .identity
            .subject_id()
            .map(|subject| subject.as_str().to_owned())
            .ok_or(Error::Access(AccessRefusal::NoSubject))?;
        let mut response = json_response(StatusCode::OK, &Session::of(peer.role(), subject));
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(response);
    }
    let asset = assets::find(if name.is_empty() { "index.html" } else { name })
        .ok_or_else(|| Error::NotFound(format!("ward screen file {name:?}")))?;
    let if_none_match = request
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok());
    Ok(asset.response(if_none_match))
}
