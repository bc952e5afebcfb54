//! Helpers for the mTLS tests: a server on 127.0.0.1 and a small HTTPS client.

#![allow(dead_code, reason = "each test uses a different subset")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test helper fails the test by panicking"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wardseal_net::client::ClientTlsSettings;
use wardseal_testkit::CertificateFiles;

/// A client configuration for `certificate`, trusting the test CA.
pub(crate) fn client(
    bundle: &std::path::Path,
    certificate: &CertificateFiles,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    ClientTlsSettings::new(bundle, &certificate.certificate, &certificate.key)
        .client_config(alpn)
        .unwrap()
}

/// Opens a TLS connection (the handshake may still be refused later by the server in TLS 1.3).
pub(crate) async fn connect(
    config: Arc<ClientConfig>,
    address: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(address).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), stream)
        .await
}

/// An HTTP/1.1 connection to send requests over.
pub(crate) struct Http1 {
    pub(crate) sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    pub(crate) handshake_kind: Option<rustls::HandshakeKind>,
    pub(crate) alpn: Option<Vec<u8>>,
}

pub(crate) async fn http1(config: Arc<ClientConfig>, address: SocketAddr) -> Result<Http1, String> {
    let stream = connect(config, address)
        .await
        .map_err(|error| error.to_string())?;
    let handshake_kind = stream.get_ref().1.handshake_kind();
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|error| error.to_string())?;
    tokio::spawn(connection);
    Ok(Http1 {
        sender,
        handshake_kind,
        alpn,
    })
}

impl Http1 {
    /// GET `path`; `Err` when the connection fails.
    pub(crate) async fn get(
        &mut self,
        path: &str,
    ) -> Result<(StatusCode, serde_json::Value), String> {
        let request = hyper::Request::get(path)
            .header("host", "127.0.0.1")
            .body(Empty::new())
            .unwrap();
        let (status, body) = read_answer(self.sender.send_request(request).await).await?;
        Ok((
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        ))
    }
}

/// The status and whole body of a sent request's answer; `Err` when the exchange failed.
async fn read_answer(
    sent: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>,
) -> Result<(StatusCode, Bytes), String> {
    let response = sent.map_err(|error| error.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// One GET on a fresh HTTP/1.1 connection.
pub(crate) async fn get_once(
    config: Arc<ClientConfig>,
    address: SocketAddr,
    path: &str,
) -> Result<(StatusCode, serde_json::Value), String> {
    http1(config, address).await?.get(path).await
}

/// One GET over HTTP/2.
pub(crate) async fn get_h2(
    config: Arc<ClientConfig>,
    address: SocketAddr,
    path: &str,
) -> Result<(StatusCode, serde_json::Value), String> {
    let stream = connect(config, address)
        .await
        .map_err(|error| error.to_string())?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|error| error.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("https://127.0.0.1{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, body) = read_answer(sender.send_request(request).await).await?;
    Ok((status, serde_json::from_slice(&body).expect("JSON body")))
}
