//! EST (Enrollment over Secure Transport, RFC 7030): devices enroll and certificates renew
//! themselves over HTTPS, against the CA's inventory.
//!
//! # Design
//!
//! - Operations, one module each, under `/.well-known/est/`: [`cacerts`] (GET),
//!   [`csrattrs`] (GET), [`enroll`] (`simpleenroll`, POST) and [`reenroll`]
//!   (`simplereenroll`, POST). Bodies and answers are base64 DER with RFC 7030's media
//!   types ([`wire`]); certificates go out as certs-only PKCS#7 ([`pkcs7`]).
//! - A first enrollment is allowed only for a device pre-registered in the CA database
//!   ([`registration`]: `wardseal-pki est register`), proven by a one-time secret (HTTP
//!   Basic over TLS, RFC 7030 §3.2.3) or a manufacturer (IDevID) certificate
//!   ([`credential`]). A renewal is authenticated by the current certificate. The
//!   certificate issued is always the profile's; the CSR gives its public key only, and a
//!   CSR naming another device is refused ([`request`]).
//! - Every enrollment, renewal and refusal is in the CA's hash-chained audit log. Writes use
//!   the same `BEGIN IMMEDIATE` transactions as the CLI, so the server runs beside it on
//!   the same database: a revocation by the CLI refuses that certificate's next renewal.
//! - The server ([`serve`]) is one task polling every connection (HTTP/1.1 over rustls,
//!   [`tls`]): a bounded number at once, a handshake timeout, a whole-connection timeout,
//!   bodies capped at [`MAX_BODY`]. Signing is microseconds and the database is the
//!   bottleneck, so one task loses nothing and can borrow the unlocked CA.
//!
//! # Example
//!
//! ```no_run
//! use wardseal_pki::ca::{Ca, Secrets};
//! use wardseal_pki::est::{EstOptions, TlsFiles};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = Ca::open("/srv/wardseal-ca").await?;
//! let signing = ca.unlock(&Secrets::default())?;
//! let files = TlsFiles {
//!     certificate: "est.pem".into(),
//!     key: "est.key".into(),
//!     manufacturer_cas: vec!["manufacturer-ca.pem".into()],
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! wardseal_pki::est::serve(&signing, &files, listener, EstOptions::default(), "est", async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

pub mod cacerts;
pub mod credential;
pub mod csrattrs;
pub mod enroll;
pub mod pkcs7;
pub mod reenroll;
pub mod registration;
pub mod request;
pub mod tls;
pub mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub use self::registration::{OneTimeSecret, Registration, register};
pub use self::tls::TlsFiles;

use crate::audit;
use crate::ca::SigningCa;
use crate::error::{Error, EstError};

/// The path prefix of every operation (RFC 7030 §3.2.2).
pub const PREFIX: &str = "/.well-known/est/";
/// The largest request body read; a CSR is a few hundred bytes to a few kilobytes.
pub const MAX_BODY: usize = 64 * 1024;

/// Limits and policy of the EST server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstOptions {
    /// Validity in days of the certificates issued (default: the profile's).
    pub validity_days: Option<u32>,
    /// Connections served at once; the server stops accepting while at the limit.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a connection may stay open in all.
    pub connection_timeout: Duration,
    /// Time open connections get to finish after shutdown is asked for.
    pub drain_timeout: Duration,
}

impl Default for EstOptions {
    fn default() -> Self {
        Self {
            validity_days: None,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What every request is served with.
pub(crate) struct Context<'a> {
    signing: &'a SigningCa<'a>,
    manufacturer_cas: Vec<CertificateDer<'static>>,
    options: EstOptions,
    actor: &'a str,
}

/// The operations, by the last segment of their path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    CaCerts,
    CsrAttrs,
    SimpleEnroll,
    SimpleReenroll,
}

impl Operation {
    fn from_path(path: &str) -> Result<Self, EstError> {
        match path.strip_prefix(PREFIX) {
            Some("cacerts") => Ok(Self::CaCerts),
            Some("csrattrs") => Ok(Self::CsrAttrs),
            Some("simpleenroll") => Ok(Self::SimpleEnroll),
            Some("simplereenroll") => Ok(Self::SimpleReenroll),
            _ => Err(EstError::NotFound {
                path: path.chars().take(200).collect(),
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::CaCerts => "cacerts",
            Self::CsrAttrs => "csrattrs",
            Self::SimpleEnroll => "simpleenroll",
            Self::SimpleReenroll => "simplereenroll",
        }
    }

    fn method(self) -> Method {
        match self {
            Self::CaCerts | Self::CsrAttrs => Method::GET,
            Self::SimpleEnroll | Self::SimpleReenroll => Method::POST,
        }
    }

    fn method_name(self) -> &'static str {
        match self {
            Self::CaCerts | Self::CsrAttrs => "GET",
            Self::SimpleEnroll | Self::SimpleReenroll => "POST",
        }
    }
}

/// Serves EST on `listener` until `shutdown` completes, then gives open connections the
/// drain timeout to finish.
pub async fn serve(
    signing: &SigningCa<'_>,
    files: &TlsFiles,
    listener: TcpListener,
    options: EstOptions,
    actor: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut manufacturer_cas = Vec::new();
    for path in &files.manufacturer_cas {
        manufacturer_cas.extend(tls::read_certificates(path)?);
    }
    let config = tls::server_config(signing.ca(), files, &manufacturer_cas)?;
    let acceptor = TlsAcceptor::from(config);
    let context = Context {
        signing,
        manufacturer_cas,
        options,
        actor,
    };
    let mut connections = FuturesUnordered::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept(), if connections.len() < options.max_connections.max(1) => {
                match accepted {
                    Ok((stream, address)) => {
                        connections.push(connection(&context, acceptor.clone(), stream, address));
                    }
                    // Descriptor exhaustion or a reset before accept: pause, don't spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            Some(()) = connections.next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while connections.next().await.is_some() {} };
    // Idle keep-alive connections would otherwise hold shutdown for the connection timeout.
    let _ = tokio::time::timeout(options.drain_timeout, drain).await;
    Ok(())
}

async fn connection(
    context: &Context<'_>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    address: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let handshake =
        tokio::time::timeout(context.options.handshake_timeout, acceptor.accept(stream)).await;
    let Ok(Ok(tls)) = handshake else { return };
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.clone().into_owned());
    let peer = &peer;
    let service = service_fn(move |request| async move {
        Ok::<_, Infallible>(respond(context, peer.as_ref(), address, request).await)
    });
    let _ = tokio::time::timeout(
        context.options.connection_timeout,
        http1::Builder::new().serve_connection(TokioIo::new(tls), service),
    )
    .await;
}

/// Answers one request; refusals of enrollment operations go to the audit log.
async fn respond(
    context: &Context<'_>,
    peer: Option<&CertificateDer<'static>>,
    address: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let operation = match Operation::from_path(request.uri().path()) {
        Ok(operation) => operation,
        Err(error) => return wire::refusal(&error.into()),
    };
    if request.method() != operation.method() {
        return wire::refusal(
            &EstError::MethodNotAllowed {
                operation: operation.name(),
                expected: operation.method_name(),
            }
            .into(),
        );
    }
    let result = match operation {
        Operation::CaCerts => cacerts::ca_certificates(context.signing.ca())
            .map(|der| wire::der_response(wire::PKCS7_MIME, &der)),
        Operation::CsrAttrs => {
            csrattrs::csr_attributes().map(|der| wire::der_response(wire::CSRATTRS, &der))
        }
        Operation::SimpleEnroll | Operation::SimpleReenroll => {
            enrollment(context, operation, peer, request).await
        }
    };
    match result {
        Ok(response) => response,
        Err(error) => {
            if matches!(
                operation,
                Operation::SimpleEnroll | Operation::SimpleReenroll
            ) {
                audit_refusal(context, operation, address, &error).await;
            }
            wire::refusal(&error)
        }
    }
}

async fn enrollment(
    context: &Context<'_>,
    operation: Operation,
    peer: Option<&CertificateDer<'static>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Error> {
    let client = match peer {
        Some(der) => {
            Some(credential::classify(context.signing.ca(), &context.manufacturer_cas, der).await?)
        }
        None => None,
    };
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| EstError::BadRequest {
            reason: format!("the body could not be read or is over {MAX_BODY} bytes"),
        })?
        .to_bytes();
    let record = if operation == Operation::SimpleEnroll {
        enroll::simple_enroll(context, client.as_ref(), &parts.headers, &body).await?
    } else {
        reenroll::simple_reenroll(context, client.as_ref(), &parts.headers, &body).await?
    };
    let der = pkcs7::certs_only(&[record.der.as_slice()])?;
    Ok(wire::der_response(wire::CERTS_ONLY, &der))
}

async fn audit_refusal(
    context: &Context<'_>,
    operation: Operation,
    address: SocketAddr,
    error: &Error,
) {
    let (status, code) = wire::status(error);
    let reason = match error {
        Error::Est(EstError::CredentialsRefused { reason, .. }) => Some(*reason),
        _ => None,
    };
    let inventory = context.signing.ca().inventory();
    let detail = serde_json::json!({
        "operation": operation.name(),
        "status": status.as_u16(),
        "code": code,
        "reason": reason,
        "message": error.to_string(),
        "peer": address.to_string(),
    });
    // A refusal that cannot be recorded is still refused; the client sees the refusal.
    if let Ok(mut transaction) = inventory.write().await
        && audit::append(
            inventory,
            &mut transaction,
            context.actor,
            "est-refused",
            &detail,
        )
        .await
        .is_ok()
    {
        let _ = inventory.commit(transaction).await;
    }
}
