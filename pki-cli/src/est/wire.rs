//! EST on the wire: request bodies in, responses out, and the one place a refusal becomes
//! an HTTP status.
//!
//! RFC 7030 carries DER in base64 (§4.1.3, §4.2.1, §4.2.3, §4.5.2; RFC 8951 §3.2 drops the
//! `Content-Transfer-Encoding` header as a signal: base64 always). Bodies are decoded
//! ignoring whitespace, answers are base64 in 64-character lines. Refusals are
//! `text/plain` (RFC 7030 §4.2.3 allows a human-readable body): a stable code, then the
//! sentence of [`EstError`]. Internal failures say only "internal error": their details
//! (paths, database messages) stay on the server.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Response, StatusCode};

use crate::error::{CaError, Error, EstError, ProfileError};

/// `application/pkcs7-mime; smime-type=certs-only`: an enrollment's answer (RFC 7030 §4.2.3).
pub const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// `application/pkcs7-mime`: the CA certificates (RFC 7030 §4.1.3).
pub const PKCS7_MIME: &str = "application/pkcs7-mime";
/// `application/pkcs10`: an enrollment request (RFC 7030 §4.2.1).
pub const PKCS10: &str = "application/pkcs10";
/// `application/csrattrs` (RFC 7030 §4.5.2).
pub const CSRATTRS: &str = "application/csrattrs";

/// Decodes a base64 body (whitespace ignored) of at most the size the server read.
pub(crate) fn decode_base64(body: &[u8]) -> Result<Vec<u8>, EstError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(EstError::BadRequest {
            reason: "empty body; send the DER PKCS#10 CSR in base64".into(),
        });
    }
    STANDARD
        .decode(&compact)
        .map_err(|error| EstError::BadRequest {
            reason: format!(
                "the body is not base64 ({error}); RFC 7030 bodies are base64-encoded DER"
            ),
        })
}

/// Checks the request's media type is `application/pkcs10` (parameters allowed).
pub(crate) fn require_pkcs10(headers: &HeaderMap) -> Result<(), EstError> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media_type.as_deref() {
        Some(PKCS10) => Ok(()),
        other => Err(EstError::BadRequest {
            reason: format!(
                "Content-Type is {}, expected {PKCS10}",
                other.map_or_else(|| "missing".to_owned(), |found| format!("{found:?}"))
            ),
        }),
    }
}

fn base64_lines(der: &[u8]) -> String {
    let text = STANDARD.encode(der);
    let mut lines = String::with_capacity(text.len() + text.len() / 64 + 1);
    for chunk in text.as_bytes().chunks(64) {
        // base64 output is ASCII.
        lines.push_str(&String::from_utf8_lossy(chunk));
        lines.push('\n');
    }
    lines
}

/// A 200 answer: `der` in base64 with `media_type`.
pub(crate) fn der_response(media_type: &'static str, der: &[u8]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(base64_lines(der))));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    response
}

/// The status and stable code of a refusal.
pub fn status(error: &Error) -> (StatusCode, &'static str) {
    match error {
        Error::Est(error) => match error {
            EstError::NoCredential => (StatusCode::UNAUTHORIZED, "no_credential"),
            EstError::CredentialsRefused { .. } => {
                (StatusCode::UNAUTHORIZED, "credentials_refused")
            }
            EstError::SecretUsed { .. } => (StatusCode::FORBIDDEN, "secret_used"),
            EstError::ManufacturerNotRegistered { .. } => {
                (StatusCode::FORBIDDEN, "manufacturer_not_registered")
            }
            EstError::ClientCertificate { .. } => (StatusCode::FORBIDDEN, "client_certificate"),
            EstError::NotRenewable { .. } => (StatusCode::FORBIDDEN, "not_renewable"),
            EstError::CertificateRequired => (StatusCode::FORBIDDEN, "certificate_required"),
            EstError::UseReenroll => (StatusCode::FORBIDDEN, "use_simplereenroll"),
            EstError::OtherDevice { .. } => (StatusCode::FORBIDDEN, "csr_names_another_device"),
            EstError::AlreadyRegistered { .. } => (StatusCode::CONFLICT, "already_registered"),
            EstError::BadRequest { .. } | EstError::NoBootstrapCredential => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            EstError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            EstError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        },
        Error::Csr(_) => (StatusCode::BAD_REQUEST, "bad_csr"),
        Error::Profile(ProfileError::EpcInUse { .. }) => {
            (StatusCode::CONFLICT, "device_has_certificate")
        }
        Error::Profile(_) => (StatusCode::BAD_REQUEST, "bad_profile"),
        Error::Ca(CaError::Expired { .. } | CaError::OutlivesCa { .. }) => {
            (StatusCode::SERVICE_UNAVAILABLE, "ca_unavailable")
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
    }
}

/// The response for a refusal: its status, `code: sentence` as text, and the headers
/// RFC 7030 and HTTP ask for (a Basic challenge on 401, `Allow` on 405).
pub(crate) fn refusal(error: &Error) -> Response<Full<Bytes>> {
    let (status, code) = status(error);
    let sentence = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "internal error; the CA's operator can find the cause in its logs".to_owned()
    } else {
        error.to_string()
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{code}: {sentence}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"wardseal EST\", charset=\"UTF-8\""),
        );
    }
    if let Error::Est(EstError::MethodNotAllowed { expected, .. }) = error
        && let Ok(value) = HeaderValue::from_str(expected)
    {
        headers.insert(ALLOW, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_bodies_decode_with_line_breaks() {
        assert_eq!(decode_base64(b"AAEC\r\nAw==\n").unwrap(), vec![0, 1, 2, 3]);
        assert!(matches!(
            decode_base64(b"****"),
            Err(EstError::BadRequest { .. })
        ));
        assert!(matches!(
            decode_base64(b" \n"),
            Err(EstError::BadRequest { .. })
        ));
    }

    #[test]
    fn answers_are_base64_lines() {
        let response = der_response(CERTS_ONLY, &[7; 100]);
        assert_eq!(response.headers()[CONTENT_TYPE], CERTS_ONLY);
        let lines = base64_lines(&[7; 100]);
        assert!(lines.lines().all(|line| line.len() <= 64));
        assert_eq!(decode_base64(lines.as_bytes()).unwrap(), vec![7; 100]);
    }

    #[test]
    fn refusals_challenge_for_basic_credentials() {
        let response = refusal(&EstError::NoCredential.into());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(WWW_AUTHENTICATE));
        let response = refusal(&EstError::SecretUsed { epc: "x".into() }.into());
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn media_type_must_be_pkcs10() {
        let mut headers = HeaderMap::new();
        assert!(require_pkcs10(&headers).is_err());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/pkcs10; x=y"),
        );
        assert!(require_pkcs10(&headers).is_ok());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(require_pkcs10(&headers).is_err());
    }
}
