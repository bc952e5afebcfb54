//! The one JSON error body both servers answer with, and small response helpers.
//!
//! Every refusal is `{"code": "machine_code", "message": "A sentence.", "permanent": false}`
//! with an HTTP status. The code is stable (clients and tests match on it); the message is
//! for people. `permanent` says whether the same request will fail again unchanged (a bad
//! signature, a deactivated device): a client retries a transient refusal with backoff
//! and sets a permanent one aside. A body without the field reads as transient.
//! Each server keeps its own single function mapping its error enum to a [`WireError`].

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};

/// The JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine code, `snake_case`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Whether the same request will be refused again unchanged (absent: transient).
    #[serde(default)]
    pub permanent: bool,
}

/// An error on its way to the wire: status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable machine code.
    pub code: &'static str,
    /// The sentence.
    pub message: String,
    /// Whether the same request will be refused again unchanged.
    pub permanent: bool,
}

impl WireError {
    /// A wire error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            permanent: false,
        }
    }

    /// The same error, marked permanent: the request will fail again unchanged.
    #[must_use]
    pub fn permanent(self) -> Self {
        Self {
            permanent: true,
            ..self
        }
    }

    /// The HTTP response carrying this error as JSON.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        json_response(
            self.status,
            &ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
                permanent: self.permanent,
            },
        )
    }
}

/// A JSON response (`application/json`).
pub fn json_response<T: Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => bytes_response(status, "application/json", body),
        Err(error) => bytes_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            serde_json::json!({"code": "internal", "message": format!("cannot encode the response: {error}")})
                .to_string()
                .into_bytes(),
        ),
    }
}

/// A response with a body and a content type.
pub fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than the server accepts.
    #[error("the request body is larger than {limit} bytes; send smaller batches")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The connection failed while the body was read.
    #[error("the request body could not be read: {reason}")]
    Unreadable {
        /// Why.
        reason: String,
    },
}

impl BodyError {
    /// The wire form: 413 `body_too_large` or 400 `body_unreadable`.
    pub fn to_wire(&self) -> WireError {
        match self {
            Self::TooLarge { .. } => WireError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                self.to_string(),
            ),
            Self::Unreadable { .. } => {
                WireError::new(StatusCode::BAD_REQUEST, "body_unreadable", self.to_string())
            }
        }
    }
}

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(error) => Err(BodyError::Unreadable {
            reason: error.to_string(),
        }),
    }
}
