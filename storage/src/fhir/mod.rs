//! HL7 FHIR R4 (4.0.1) at `/fhir`: what clinicians' apps, the ward screen, subscriptions
//! and patients read, behind the same mutual-TLS door and access rules as `/v1`.
//!
//! # Design
//!
//! - One file per resource type, each with its `render` function (what subscriptions and
//!   the ward screen reuse) and its [`search::ResourceDefinition`]: the search
//!   parameters it takes. The same tables drive the parameter parser
//!   ([`search::Parameters::parse`]) and the CapabilityStatement ([`capability`]), so
//!   `GET /fhir/metadata` cannot claim what the parser refuses, nor the reverse.
//! - Every read of patient data goes through [`crate::access::authorize`]: the staff
//!   responsible for the patient, an authority the patient consented to on chain, or the
//!   patient with their own card certificate; every decision is a new entry of the
//!   anchored access log.
//! - Observation searches page on a keyset cursor ([`cursor`]): the position of the last
//!   (or first) row served, bound to the search by an HMAC, never an offset; a page costs
//!   the same at the end of a week of ECG as at its start.
//! - Errors are `OperationOutcome`s ([`outcome`]) carrying the status and the machine
//!   code of [`crate::api::to_wire`], the one error-to-wire mapping.
//! - JSON only: `_format` may name JSON (`json`, `application/json`,
//!   `application/fhir+json`); XML is refused with 415.
//! - Unknown search parameters are refused (400) unless the client sends
//!   `Prefer: handling=lenient`, per FHIR's search `handling` preference.

pub mod audit_event;
pub mod bundle;
pub mod capability;
pub mod consent;
pub mod cursor;
pub mod device;
pub mod encounter;
pub mod flag;
pub mod observation;
pub mod outcome;
pub mod patient;
pub mod provenance;
pub mod search;
pub mod visit;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, HOST};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use wardseal_core::identity::Role;
use wardseal_net::peer::PeerIdentity;

use crate::api::Storage;
use crate::error::{AccessRefusal, Error, FhirError};

pub use bundle::bundle;
/// One reading as an Observation (kept under its earlier name for callers).
pub use observation::render as observation;

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";
/// The path every FHIR route starts with.
pub const BASE_PATH: &str = "/fhir";

/// The roles that may read patient data through FHIR (each read is then checked against
/// the patient by [`crate::access::authorize`]: staff by assignment or consent, a
/// patient's card for their own records, an authority by the patient's on-chain grant).
pub const READERS: &[Role] = &[Role::Staff, Role::Patient, Role::Authority];

/// What every FHIR handler gets: the server, the caller, the query and how to answer.
#[derive(Debug)]
pub struct Context<'a> {
    /// The server.
    pub storage: &'a Storage,
    /// The caller's certificate identity.
    pub peer: &'a PeerIdentity,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// `Prefer: handling=lenient`: unknown search parameters are ignored.
    pub lenient: bool,
    /// `_pretty=true`.
    pub pretty: bool,
    /// The absolute base URL links are made from (`https://host:port/fhir`).
    pub base: String,
}

impl Context<'_> {
    /// The caller's subject id.
    pub fn subject(&self) -> Result<String, Error> {
        self.peer
            .identity
            .subject_id()
            .map(|subject| subject.as_str().to_owned())
            .ok_or(Error::Access(AccessRefusal::NoSubject))
    }

    /// Refuses callers whose role is not in `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Error> {
        self.peer
            .require_any_role(roles)
            .map(drop)
            .map_err(|error| Error::Access(AccessRefusal::Role(error)))
    }

    /// A `200 OK` FHIR JSON response of `resource`.
    pub fn ok<T: Serialize>(&self, resource: &T) -> Response<Full<Bytes>> {
        self.respond(StatusCode::OK, resource)
    }

    /// A FHIR JSON response of `resource` with `status`.
    pub fn respond<T: Serialize>(&self, status: StatusCode, resource: &T) -> Response<Full<Bytes>> {
        let body = if self.pretty {
            serde_json::to_vec_pretty(resource)
        } else {
            serde_json::to_vec(resource)
        };
        match body {
            Ok(body) => wardseal_net::wire::bytes_response(status, FHIR_JSON, body),
            Err(error) => outcome::response(&Error::database("encode a FHIR resource", error)),
        }
    }

    /// The absolute URL of `path` under the base (`Observation/abc`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// A search of `kind` answered in one page: every match, their total, and the
    /// search's canonical `self` link.
    pub fn whole_searchset<R: Serialize>(
        &self,
        kind: &str,
        parameters: &search::Parameters,
        entries: Vec<(String, R)>,
    ) -> Response<Full<Bytes>> {
        let total = u64::try_from(entries.len()).unwrap_or(u64::MAX);
        self.ok(&bundle::Bundle::searchset(entries).total(total).link(
            "self",
            self.url(&format!("{kind}?{}", parameters.query_with(&[]))),
        ))
    }
}

/// Answers one request under `/fhir`; every failure becomes an `OperationOutcome`.
pub async fn serve(
    storage: &Storage,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Response<Full<Bytes>> {
    match dispatch(storage, request, peer).await {
        Ok(response) => response,
        Err(error) => outcome::response(&error),
    }
}

async fn dispatch(
    storage: &Storage,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Result<Response<Full<Bytes>>, Error> {
    let query: Vec<(String, String)> = request
        .uri()
        .query()
        .map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    check_format(&request, &query)?;
    let lenient = request
        .headers()
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .any(|part| part.trim().eq_ignore_ascii_case("handling=lenient"));
    let pretty = query
        .iter()
        .any(|(name, value)| name == "_pretty" && value == "true");
    let base = base_url(&request);
    let context = Context {
        storage,
        peer,
        query,
        lenient,
        pretty,
        base,
    };
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .skip(1)
        .filter(|segment| !segment.is_empty())
        .collect();
    let method = request.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["metadata"]) => Ok(context.ok(&capability::statement())),
        (Method::GET, ["Observation"]) => observation::search(&context).await,
        (Method::GET, ["Observation", id]) => observation::read(&context, id).await,
        (Method::GET, ["Patient"]) => patient::search(&context).await,
        (Method::GET, ["Patient", id]) => patient::read(&context, id).await,
        (Method::GET, ["Encounter"]) => encounter::search(&context).await,
        (Method::GET, ["Encounter", id]) => encounter::read(&context, id).await,
        (Method::POST, ["Encounter"]) => {
            let body =
                wardseal_net::wire::read_body(request.into_body(), crate::api::BODY_LIMIT).await?;
            visit::create(&context, &body).await
        }
        (Method::GET, ["Device"]) => device::search(&context).await,
        (Method::GET, ["Device", id]) => device::read(&context, id).await,
        (Method::GET, ["Flag"]) => flag::search(&context).await,
        (Method::GET, ["Flag", id]) => flag::read(&context, id).await,
        (Method::POST, ["Flag", id, "$acknowledge"]) => flag::acknowledge(&context, id).await,
        (Method::GET, ["Consent"]) => consent::search(&context).await,
        (Method::GET, ["Consent", id]) => consent::read(&context, id).await,
        (Method::GET, ["AuditEvent"]) => audit_event::search(&context).await,
        (Method::GET, ["AuditEvent", id]) => audit_event::read(&context, id).await,
        (Method::GET, ["Provenance"]) => provenance::search(&context).await,
        (Method::GET, ["Provenance", id]) => provenance::read(&context, id).await,
        (method, _) => Err(FhirError::NotSupported(format!("{method} {path}")).into()),
    }
}

/// The absolute base URL of links: `https://<Host header>/fhir` (the host as the client
/// reached the server), or `/fhir` when the request names no usable host.
pub fn base_url<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.as_str())
        })
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
        })
        .map_or_else(
            || BASE_PATH.to_owned(),
            |host| format!("https://{host}{BASE_PATH}"),
        )
}

/// Refuses a request for anything but JSON (415): `_format` naming another format, or an
/// `Accept` header that admits no JSON.
fn check_format(request: &Request<Incoming>, query: &[(String, String)]) -> Result<(), Error> {
    for (_, format) in query.iter().filter(|(name, _)| name == "_format") {
        if !is_json(format) {
            return Err(FhirError::UnsupportedFormat(format.clone()).into());
        }
    }
    if let Some(accept) = request
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
    {
        let admits_json = accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            media.is_empty() || media == "*/*" || media == "application/*" || is_json(media)
        });
        if !admits_json {
            return Err(FhirError::UnsupportedFormat(accept.to_owned()).into());
        }
    }
    Ok(())
}

/// Whether a `_format` value or media type names FHIR JSON (R4 §3.1.0.1.7).
fn is_json(format: &str) -> bool {
    let media = format.split(';').next().unwrap_or_default().trim();
    matches!(
        media,
        "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
    )
}

/// RFC 3339 text of `micros` since the epoch (a FHIR `instant`), empty when out of range.
pub fn instant(micros: i64) -> String {
    wardseal_core::reading::Timestamp::from_unix_micros(micros)
        .ok()
        .and_then(|time| time.to_datetime().ok())
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A FHIR `Reference` to `Type/id`.
pub fn reference(kind: &str, id: &str) -> serde_json::Value {
    serde_json::json!({ "reference": format!("{kind}/{id}") })
}
