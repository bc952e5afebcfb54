//! The one HTTP client of wardseal: mutual TLS to wardseal servers (collector → storage,
//! simulated devices, staff tools, tests) and plain HTTP for CRL distribution points.
//!
//! It is hyper-util's pooled client over hyper-rustls, with the rustls configuration
//! [`ClientTlsSettings::client_config`] builds (ring provider, TLS 1.2 and 1.3, the
//! hospital CA bundle as the only trust anchors, the client's certificate and key). The
//! server's certificate is checked by rustls's WebPKI verifier against that bundle and the
//! host name or IP address of the [`Endpoint`], as before. HTTP/2 is used when the
//! server agrees to it by ALPN (one connection multiplexes every request), HTTP/1.1
//! otherwise (a pool of idle connections, one request each at a time).
//!
//! [`Client::open`] makes the first connection (TCP, TLS handshake, ALPN) before it
//! returns, so a refused certificate or a server that is down shows at once;
//! [`Client::new`] connects on the first request. [`ClientOptions::fresh_connections`]
//! turns the pool off: every request makes its own connection (the load bench measures
//! full handshakes that way).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, Uri};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use tower_service::Service;

use crate::error::{ConfigError, Error};
use crate::files;
use crate::server::root_store;

/// Where a client's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// The hospital CA bundle (PEM): the only trust anchors for server certificates.
    pub ca_bundle: PathBuf,
    /// The client's own certificate (PEM, leaf first).
    pub certificate: PathBuf,
    /// The client's private key (PEM, mode 0600 or stricter).
    pub key: PathBuf,
}

impl ClientTlsSettings {
    /// Settings from three paths.
    pub fn new(
        ca_bundle: impl Into<PathBuf>,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            ca_bundle: ca_bundle.into(),
            certificate: certificate.into(),
            key: key.into(),
        }
    }

    /// A client configuration (TLS 1.2 and 1.3, ring) offering `alpn` (for example
    /// `[b"h2", b"http/1.1"]`, or empty for none).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = root_store(&self.ca_bundle)?;
        let chain = files::certificates("certificate", &self.certificate)?;
        let key = files::private_key(&self.key)?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| ConfigError::Verifier {
                reason: error.to_string(),
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|error| ConfigError::CertificateKey {
                reason: error.to_string(),
            })?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Where a server is: `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (also the name its certificate must carry).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::str::FromStr for Endpoint {
    type Err = UrlError;

    /// `https://host[:port][/…]` (443 when no port is named; a path is ignored).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| UrlError {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|error| bad(&error.to_string()))?;
        if url.scheme() != "https" {
            return Err(bad("must start with https:// (servers speak mutual TLS)"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry user information"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("must name a host, as in https://storage:8443"))?;
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: url.port_or_known_default().unwrap_or(443),
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

/// A URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` is not usable: {reason}")]
pub struct UrlError {
    /// The URL as written.
    pub url: String,
    /// What is wrong, and what is expected.
    pub reason: String,
}

/// A response: status and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, when the server sent a readable one.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No connection could be made (TCP, or the TLS handshake: a refused certificate).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The server.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// The connection failed while the request or its answer was under way.
    #[error("the request {method} {url} failed: {reason}")]
    Exchange {
        /// The method.
        method: Method,
        /// The request's URL.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// No complete answer within the request timeout.
    #[error("no complete answer to {method} {url} within {timeout:?}")]
    Timeout {
        /// The method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer's body was larger than the caller accepts.
    #[error("the answer from {url} is larger than {limit} bytes")]
    TooLarge {
        /// The request's URL.
        url: String,
        /// The limit.
        limit: usize,
    },
}

/// How a [`Client`] connects and pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for the TCP connection (the TLS handshake counts against the
    /// request timeout).
    pub connect_timeout: Duration,
    /// Longest wait for a whole exchange (connecting, sending, the complete answer);
    /// `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Idle HTTP/1.1 connections kept per server; 0 makes every request use a fresh
    /// connection and handshake.
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept; `None`: until the server closes it.
    pub idle_timeout: Option<Duration>,
    /// Largest answer body read (a larger one is [`RequestError::TooLarge`]).
    pub max_body: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: None,
            max_idle_per_host: 32,
            idle_timeout: None,
            max_body: 64 * 1024 * 1024,
        }
    }
}

impl ClientOptions {
    /// Options with the pool off: one fresh connection (and handshake) per request.
    pub fn fresh_connections() -> Self {
        Self {
            max_idle_per_host: 0,
            ..Self::default()
        }
    }
}

type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// hyper-rustls's connector, handing out first the connection [`Client::open`] made.
#[derive(Clone)]
struct Connector {
    https: HttpsConnector<HttpConnector>,
    opened: Arc<Mutex<Option<Stream>>>,
}

impl Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(context)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let opened = self.opened.lock().ok().and_then(|mut slot| slot.take());
        match opened {
            Some(stream) => Box::pin(std::future::ready(Ok(stream))),
            None => self.https.call(uri),
        }
    }
}

/// A mutual-TLS HTTP client for one server (see the module docs).
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
    base: String,
    /// A copy of the pooled client's connector (they share the slot for the first
    /// connection).
    connector: Connector,
    http: PooledClient<Connector, Full<Bytes>>,
    options: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint` presenting the identity in `tls` (it connects on the
    /// first request). The ALPN protocols of `tls` decide HTTP/2 or HTTP/1.1.
    pub fn new(endpoint: &Endpoint, tls: Arc<ClientConfig>, options: ClientOptions) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let mut https = HttpsConnector::from((http, tls));
        https.enforce_https();
        let connector = Connector {
            https,
            opened: Arc::new(Mutex::new(None)),
        };
        let mut builder = PooledClient::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(options.max_idle_per_host)
            .pool_idle_timeout(options.idle_timeout);
        Self {
            base: endpoint.to_string(),
            endpoint: endpoint.clone(),
            http: builder.build(connector.clone()),
            connector,
            options,
        }
    }

    /// A pooled client for `endpoint` whose first connection is made now: fails when the
    /// server cannot be reached or the TLS handshake fails.
    pub async fn open(endpoint: &Endpoint, tls: Arc<ClientConfig>) -> Result<Self, RequestError> {
        let client = Self::new(endpoint, tls, ClientOptions::default());
        let uri: Uri = client
            .base
            .parse()
            .map_err(
                |error: hyper::http::uri::InvalidUri| RequestError::Connect {
                    url: client.base.clone(),
                    reason: error.to_string(),
                },
            )?;
        let mut https = client.connector.https.clone();
        let stream = https
            .call(uri)
            .await
            .map_err(|error| RequestError::Connect {
                url: client.base.clone(),
                reason: causes(&*error),
            })?;
        if let Ok(mut slot) = client.connector.opened.lock() {
            *slot = Some(stream);
        }
        Ok(client)
    }

    /// The server.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request (`body` as `application/json`) and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, RequestError> {
        self.send_as(method, path, "application/json", body).await
    }

    /// Sends one request with a body of media type `content_type` (FHIR's
    /// `application/fhir+json`, say) and reads the whole answer.
    pub async fn send_as(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply, RequestError> {
        let body = body.into();
        let url = format!("{}{path}", self.base);
        let request = Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|error| RequestError::Exchange {
                method: method.clone(),
                url: url.clone(),
                reason: error.to_string(),
            })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|error| {
                if error.is_connect() {
                    RequestError::Connect {
                        url: self.base.clone(),
                        reason: causes(&error),
                    }
                } else {
                    RequestError::Exchange {
                        method: method.clone(),
                        url: url.clone(),
                        reason: causes(&error),
                    }
                }
            })?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), self.options.max_body)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        RequestError::TooLarge {
                            url: url.clone(),
                            limit: self.options.max_body,
                        }
                    } else {
                        RequestError::Exchange {
                            method: method.clone(),
                            url: url.clone(),
                            reason: causes(&*error),
                        }
                    }
                })?
                .to_bytes();
            Ok(Reply {
                status,
                content_type,
                body,
            })
        };
        match self.options.request_timeout {
            None => exchange.await,
            Some(timeout) => tokio::time::timeout(timeout, exchange).await.map_err(|_| {
                RequestError::Timeout {
                    method,
                    url: url.clone(),
                    timeout,
                }
            })?,
        }
    }
}

impl Client {
    /// Sends a GET for `path` and returns the answer as it arrives: its status and headers
    /// now, its body frame by frame (a server-sent event stream, say). The request timeout
    /// applies to the answer's head only.
    pub async fn open_stream(
        &self,
        path: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, RequestError> {
        let url = format!("{}{path}", self.base);
        let exchange_error = |reason: String| RequestError::Exchange {
            method: Method::GET,
            url: url.clone(),
            reason,
        };
        let request = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .header(hyper::header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|error| exchange_error(error.to_string()))?;
        let head = async {
            self.http.request(request).await.map_err(|error| {
                if error.is_connect() {
                    RequestError::Connect {
                        url: self.base.clone(),
                        reason: causes(&error),
                    }
                } else {
                    exchange_error(causes(&error))
                }
            })
        };
        match self.options.request_timeout {
            None => head.await,
            Some(timeout) => {
                tokio::time::timeout(timeout, head)
                    .await
                    .map_err(|_| RequestError::Timeout {
                        method: Method::GET,
                        url: url.clone(),
                        timeout,
                    })?
            }
        }
    }
}

/// An error and its causes, outermost first ("client error (Connect): tls handshake
/// eof" instead of hyper-util's bare "client error (Connect)").
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Fetches `url` (plain `http://`, as CRL distribution points are) with one GET within
/// `timeout`, accepting `accept`, and returns the body of a 2xx answer (at most
/// `max_body` bytes).
pub async fn fetch_http(
    url: &Uri,
    accept: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, RequestError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(timeout));
    // One fetch per refresh interval: nothing to pool.
    let client: PooledClient<HttpConnector, http_body_util::Empty<Bytes>> =
        PooledClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(http);
    let text = url.to_string();
    let request = Request::get(url.clone())
        .header(hyper::header::ACCEPT, accept)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|error| RequestError::Exchange {
            method: Method::GET,
            url: text.clone(),
            reason: error.to_string(),
        })?;
    let exchange = async {
        let response = client.request(request).await.map_err(|error| {
            if error.is_connect() {
                RequestError::Connect {
                    url: text.clone(),
                    reason: causes(&error),
                }
            } else {
                RequestError::Exchange {
                    method: Method::GET,
                    url: text.clone(),
                    reason: causes(&error),
                }
            }
        })?;
        if !response.status().is_success() {
            return Err(RequestError::Exchange {
                method: Method::GET,
                url: text.clone(),
                reason: format!("the server answered {}", response.status()),
            });
        }
        Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    RequestError::TooLarge {
                        url: text.clone(),
                        limit: max_body,
                    }
                } else {
                    RequestError::Exchange {
                        method: Method::GET,
                        url: text.clone(),
                        reason: format!("reading the body: {}", causes(&*error)),
                    }
                }
            })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| RequestError::Timeout {
            method: Method::GET,
            url: text.clone(),
            timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let endpoint: Endpoint = "https://storage.ward:8443/v1".parse().unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port),
            ("storage.ward", 8443)
        );
        assert_eq!(endpoint.to_string(), "https://storage.ward:8443");
        let v6: Result<Endpoint, _> = "https://[::1]:9443".parse();
        assert_eq!(
            v6.map(|e| (e.host, e.port)).ok(),
            Some(("::1".to_owned(), 9443))
        );
        assert_eq!(
            "https://storage".parse::<Endpoint>().map(|e| e.port).ok(),
            Some(443)
        );
        assert!("http://storage:8443".parse::<Endpoint>().is_err());
        assert!("https://storage:https".parse::<Endpoint>().is_err());
        assert!("storage:8443".parse::<Endpoint>().is_err());
    }
}
