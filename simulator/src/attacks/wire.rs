//! The attacker's side of an exchange: a request over a collector client connection, or
//! raw bytes over TCP and rustls, and what came back as an [`Observed`].

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Method;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wardseal_collector::client::{Connection, Reply};

use super::REQUEST_TIMEOUT;
use super::outcome::{Observed, Server};
use crate::error::Error;

pub(super) async fn send(
    connection: &Connection,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Reply, Error> {
    tokio::time::timeout(REQUEST_TIMEOUT, connection.send(method, path, body))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("an answer to {path}"),
            seconds: REQUEST_TIMEOUT.as_secs(),
        })?
        .map_err(|error| Error::Request {
            target: path.to_owned(),
            reason: error.to_string(),
        })
}

/// The machine code of a refusal: the JSON error body's `code`, or a FHIR
/// OperationOutcome's first issue's wardseal code.
pub(super) fn error_code(reply: &Reply) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|json| {
            json["code"]
                .as_str()
                .or_else(|| json["issue"][0]["details"]["coding"][0]["code"].as_str())
                .map(str::to_owned)
        })
}

pub(super) fn answer(server: Server, reply: &Reply) -> Observed {
    Observed::Answer {
        server,
        status: reply.status,
        code: error_code(reply),
    }
}

/// An HTTP/1.1 POST of a JSON body, closing the connection after the answer.
pub(super) fn post_request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status and the JSON body's `code` of a raw HTTP/1.1 answer.
pub(super) fn parse_http_answer(answer: &[u8]) -> (u16, Option<String>) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let code = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(body.trim()).ok())
        .and_then(|json| json["code"].as_str().map(str::to_owned));
    (status, code)
}

/// Connects with rustls, sends `request` and reads the answer; a server alert during the
/// handshake — or, in TLS 1.3, right after it, where the server judges the client's
/// certificate — becomes [`Observed::TlsAlert`].
pub(super) async fn tls_request(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> Observed {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let name = ServerName::IpAddress(address.ip().into());
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        tls.write_all(request).await?;
        tls.flush().await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => Observed::ConnectionFailed {
            reason: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
        },
        Ok(Ok(answer)) if answer.starts_with(b"HTTP/") => {
            let (status, code) = parse_http_answer(&answer);
            Observed::Answer {
                server: Server::Collector,
                status,
                code,
            }
        }
        Ok(Ok(answer)) => Observed::NoHttpAnswer {
            detail: format!("{} bytes that are not HTTP", answer.len()),
        },
        Ok(Err(error)) => {
            let alert = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(|tls| match tls {
                    rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
                    _ => None,
                });
            match alert {
                Some(alert) => Observed::TlsAlert { alert },
                None => Observed::ConnectionFailed {
                    reason: error.to_string(),
                },
            }
        }
    }
}
