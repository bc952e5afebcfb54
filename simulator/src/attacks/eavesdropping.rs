//! Eavesdropping: readings sent as plain HTTP to the collector's TLS port, and clients
//! that offer only TLS 1.0 or 1.1 (through OpenSSL: rustls cannot send them).

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::outcome::{Observed, Server};
use super::wire::{parse_http_answer, post_request};
use super::{Attacker, Findings, REQUEST_TIMEOUT, temperature_evidence, timeout};
use crate::error::Error;
use wardseal_testkit::pki::CertificateFiles;

impl Attacker<'_> {
    pub(super) async fn plain_http(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let device = &self.thermometer;
        let body = temperature_evidence(device, findings)?;
        let request = post_request("/v1/readings", &body);
        let address = self.base.ward.collector_addr();
        let exchange = async {
            let mut tcp = tokio::net::TcpStream::connect(address).await?;
            tcp.write_all(&request).await?;
            let mut answer = Vec::new();
            // The server may reset the connection after its alert: what was read counts.
            let _ = tcp.read_to_end(&mut answer).await;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => {
                return Ok(Observed::NoHttpAnswer {
                    detail: format!("nothing within {} s", REQUEST_TIMEOUT.as_secs()),
                });
            }
            Ok(Err(error)) => {
                return Ok(Observed::ConnectionFailed {
                    reason: error.to_string(),
                });
            }
            Ok(Ok(answer)) => answer,
        };
        if answer.starts_with(b"HTTP/") {
            let (status, code) = parse_http_answer(&answer);
            return Ok(Observed::Answer {
                server: Server::Collector,
                status,
                code,
            });
        }
        let detail = match answer.first() {
            None => "the connection was closed".to_owned(),
            // 0x15: a TLS alert record; plain text never starts with it.
            Some(0x15) => format!("a {}-byte TLS alert record, then closed", answer.len()),
            Some(_) => format!("{} bytes that are not HTTP", answer.len()),
        };
        Ok(Observed::NoHttpAnswer { detail })
    }

    pub(super) async fn old_tls(&self, version: OldTls) -> Result<Observed, Error> {
        let address = self.base.ward.collector_addr();
        let files = self.thermometer.files.clone();
        let probe = tokio::task::spawn_blocking(move || offer_old_tls(address, version, &files));
        match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), probe).await {
            Ok(Ok(observed)) => Ok(observed),
            Ok(Err(error)) => Err(Error::Request {
                target: "the TLS 1.0/1.1 client".into(),
                reason: error.to_string(),
            }),
            Err(_) => Err(timeout("the TLS 1.0/1.1 handshake")),
        }
    }
}

/// The protocol versions rustls does not implement, offered by OpenSSL.
#[derive(Debug, Clone, Copy)]
pub(super) enum OldTls {
    Tls10,
    Tls11,
}

/// Offers only `version` (OpenSSL at security level 0, so that OpenSSL itself agrees to
/// send such a ClientHello) with the device's certificate, and reports how the server
/// answered.
fn offer_old_tls(address: SocketAddr, version: OldTls, files: &CertificateFiles) -> Observed {
    use openssl::ssl::{
        HandshakeError, SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion,
    };
    let version = match version {
        OldTls::Tls10 => SslVersion::TLS1,
        OldTls::Tls11 => SslVersion::TLS1_1,
    };
    let setup = || -> Result<SslConnector, openssl::error::ErrorStack> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        builder.set_security_level(0);
        builder.set_cipher_list("DEFAULT:@SECLEVEL=0")?;
        builder.set_min_proto_version(Some(version))?;
        builder.set_max_proto_version(Some(version))?;
        // The point is to see whether the server refuses; the client checks nothing.
        builder.set_verify(SslVerifyMode::NONE);
        builder.set_certificate_chain_file(&files.certificate)?;
        builder.set_private_key_file(&files.key, SslFiletype::PEM)?;
        Ok(builder.build())
    };
    let connector = match setup() {
        Ok(connector) => connector,
        Err(error) => {
            return Observed::ConnectionFailed {
                reason: format!("OpenSSL refused to set up the client: {error}"),
            };
        }
    };
    let tcp = match std::net::TcpStream::connect_timeout(&address, REQUEST_TIMEOUT) {
        Ok(tcp) => tcp,
        Err(error) => {
            return Observed::ConnectionFailed {
                reason: error.to_string(),
            };
        }
    };
    let _ = tcp.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(REQUEST_TIMEOUT));
    let configured = match connector.configure() {
        Ok(mut configured) => {
            configured.set_verify_hostname(false);
            configured
        }
        Err(error) => {
            return Observed::ConnectionFailed {
                reason: error.to_string(),
            };
        }
    };
    match configured.connect("127.0.0.1", tcp) {
        Ok(mut stream) => {
            // The server agreed to an old protocol: say so by what it answers.
            let _ = stream.write_all(
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            );
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            let (status, code) = parse_http_answer(&answer);
            Observed::Answer {
                server: Server::Collector,
                status,
                code,
            }
        }
        Err(HandshakeError::Failure(failed)) => {
            let reasons: Vec<String> = failed
                .error()
                .ssl_error()
                .map(|stack| {
                    stack
                        .errors()
                        .iter()
                        .filter_map(|error| error.reason().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            // OpenSSL names a received alert "sslv3 alert <description>" (alerts SSL 3
            // had) or "tlsv1 alert <description>" (alerts TLS added).
            let alert = reasons.iter().find_map(|reason| {
                reason
                    .strip_prefix("sslv3 alert ")
                    .or_else(|| reason.strip_prefix("tlsv1 alert "))
            });
            match alert {
                Some(description) => Observed::TlsAlert {
                    alert: alert_name(description),
                },
                None => Observed::ConnectionFailed {
                    reason: if reasons.is_empty() {
                        failed.error().to_string()
                    } else {
                        reasons.join("; ")
                    },
                },
            }
        }
        Err(other) => Observed::ConnectionFailed {
            reason: other.to_string(),
        },
    }
}

/// OpenSSL's alert description ("protocol version") in rustls' naming
/// ("ProtocolVersion"), so both clients' observations compare with one expectation.
fn alert_name(description: &str) -> String {
    description
        .split([' ', '_'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            if word == "ca" {
                return "CA".to_owned();
            }
            let mut letters = word.chars();
            letters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + letters.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_alert_descriptions_take_rustls_names() {
        assert_eq!(alert_name("protocol version"), "ProtocolVersion");
        assert_eq!(alert_name("handshake failure"), "HandshakeFailure");
        assert_eq!(alert_name("unknown ca"), "UnknownCA");
    }
}
