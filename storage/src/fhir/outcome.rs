//! `OperationOutcome`: every FHIR error, with the HTTP status and the stable machine code
//! of [`crate::api::to_wire`] (the one error-to-wire mapping), so `/fhir` and `/v1`
//! refuse the same thing the same way.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::api::to_wire;
use crate::error::Error;

/// The code system of wardseal's machine codes in `issue.details`.
pub const ERROR_CODE_SYSTEM: &str = "urn:wardseal:error-code";

/// The `OperationOutcome` and status for `error`.
pub fn of(error: &Error) -> (StatusCode, serde_json::Value) {
    let wire = to_wire(error);
    // FHIR's IssueType (http://hl7.org/fhir/issue-type) nearest to the status.
    let issue_type = match wire.status {
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND if wire.code == "not_supported" => "not-supported",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
        StatusCode::PAYLOAD_TOO_LARGE => "too-costly",
        StatusCode::SERVICE_UNAVAILABLE => "transient",
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => "processing",
        _ => "exception",
    };
    let outcome = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": issue_type,
            "details": {
                "coding": [{"system": ERROR_CODE_SYSTEM, "code": wire.code}],
                "text": wire.message,
            },
            "diagnostics": wire.message,
        }],
    });
    (wire.status, outcome)
}

/// The response carrying `error` as an `OperationOutcome`.
pub fn response(error: &Error) -> Response<Full<Bytes>> {
    let (status, outcome) = of(error);
    wardseal_net::wire::bytes_response(status, super::FHIR_JSON, outcome.to_string())
}
