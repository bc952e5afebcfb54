//! A small mutual-TLS HTTP client: the forwarder's connection to storage, and the load
//! generator's devices. HTTP/2 when the server agrees to it by ALPN, HTTP/1.1 otherwise.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::ForwardError;

/// Where a server is: `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (also the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("`{url}` must start with https://"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}` must name a port, as in https://storage:8443"))?;
        let port = port
            .parse()
            .map_err(|_| format!("`{port}` in `{url}` is not a port number"))?;
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}:{}", self.host, self.port)
    }
}

/// One open mutual-TLS HTTP connection.
#[derive(Debug, Clone)]
pub struct Connection {
    endpoint: Endpoint,
    sender: Sender,
}

#[derive(Debug, Clone)]
enum Sender {
    /// HTTP/1.1: one request at a time.
    Http1(Arc<tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>>),
    /// HTTP/2: requests multiplexed.
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Connection {
    /// Opens a connection (TCP, TLS handshake with the client certificate in `config`,
    /// HTTP handshake by the negotiated ALPN).
    pub async fn open(
        endpoint: &Endpoint,
        config: Arc<ClientConfig>,
    ) -> Result<Self, ForwardError> {
        let fail = |reason: String| ForwardError::Connect {
            url: endpoint.to_string(),
            reason,
        };
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| fail(e.to_string()))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::spawn(connection);
            Ok(Connection {
                endpoint: endpoint.clone(),
                sender: Sender::Http2(sender),
            })
        } else {
            let (sender, connection) = http1::handshake(io)
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::spawn(connection);
            Ok(Connection {
                endpoint: endpoint.clone(),
                sender: Sender::Http1(Arc::new(tokio::sync::Mutex::new(sender))),
            })
        }
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.try_lock().is_ok_and(|s| s.is_closed()),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Reply, ForwardError> {
        let fail = |reason: String| ForwardError::Connect {
            url: path.to_owned(),
            reason,
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        let response = match &self.sender {
            Sender::Http1(sender) => {
                let mut sender = sender.lock().await;
                sender.ready().await.map_err(|e| fail(e.to_string()))?;
                let mut request = request;
                let host = format!("{}:{}", self.endpoint.host, self.endpoint.port);
                if let Ok(value) = hyper::header::HeaderValue::from_str(&host) {
                    request.headers_mut().insert(hyper::header::HOST, value);
                }
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
            Sender::Http2(sender) => {
                let mut sender = sender.clone();
                sender.ready().await.map_err(|e| fail(e.to_string()))?;
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
        };
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok(Reply { status, body })
    }
}
