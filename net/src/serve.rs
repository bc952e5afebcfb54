//! A bounded hyper 1 serving loop over tokio-rustls: HTTP/1.1 and HTTP/2 (by ALPN), the
//! peer's identity handed to the handler, a per-request revocation re-check, and graceful
//! shutdown (stop accepting, let in-flight requests finish, then close).
//!
//! Bytes that are not a TLS ClientHello (plain HTTP on the TLS port) end the connection in
//! the handshake: they never reach hyper or the handler.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::error::AccessError;
use crate::peer::PeerIdentity;
use crate::server::ServerTls;
use crate::wire::WireError;

/// Limits of the serving loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Connections served at once; the loop stops accepting while at the limit.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time an HTTP/1.1 client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown is asked for.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves mutual-TLS HTTP on `listener` until `shutdown` completes, then drains.
///
/// Responses are whole (`Full<Bytes>`) or any body that a whole one converts into (a
/// server-sent event stream, say: a response that never ends holds only its own
/// connection's task).
///
/// `handler` gets each request with the verified peer's identity. Requests from a peer
/// whose certificate has no wardseal identity are answered 403 `unidentified_peer`; from a
/// peer revoked since its connection opened, 403 `certificate_revoked`; while a CRL is
/// past its `nextUpdate` under [`crate::server::ExpiredCrl::Refuse`], 503 `crl_expired`;
/// none of them reaches the handler.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    options: ServeOptions,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, Arc<PeerIdentity>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + From<Full<Bytes>> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (stop, stopped) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Per-connection failures (reset before accept) and descriptor
                    // exhaustion are transient: pause briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            stream,
            Arc::clone(&tls),
            options,
            handler.clone(),
            stopped.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.drain_timeout, drain)
        .await
        .is_err()
    {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

async fn connection<H, F, B>(
    stream: TcpStream,
    tls: Arc<ServerTls>,
    options: ServeOptions,
    handler: H,
    mut stopped: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    H: Fn(Request<Incoming>, Arc<PeerIdentity>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + From<Full<Bytes>> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let acceptor = TlsAcceptor::from(tls.server_config());
    let stream = tokio::select! {
        handshake = tokio::time::timeout(options.handshake_timeout, acceptor.accept(stream)) => {
            match handshake {
                Ok(Ok(stream)) => stream,
                _ => return,
            }
        }
        () = until_stopped(&mut stopped) => return,
    };
    let peer = PeerIdentity::from_chain(stream.get_ref().1.peer_certificates()).map(Arc::new);
    let service = service_fn(move |request: Request<Incoming>| {
        let peer = peer.clone();
        let tls = Arc::clone(&tls);
        let handler = handler.clone();
        async move {
            let response = match peer {
                Err(error) => WireError::new(
                    StatusCode::FORBIDDEN,
                    "unidentified_peer",
                    error.to_string(),
                )
                .into_response()
                .map(B::from),
                Ok(peer) => match tls.check_not_revoked(&peer) {
                    Err(error @ AccessError::CrlExpired { .. }) => WireError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "crl_expired",
                        error.to_string(),
                    )
                    .into_response()
                    .map(B::from),
                    Err(error) => WireError::new(
                        StatusCode::FORBIDDEN,
                        "certificate_revoked",
                        error.to_string(),
                    )
                    .into_response()
                    .map(B::from),
                    Ok(()) => handler(request, peer).await,
                },
            };
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    // Upgrades allowed: storage's FHIR subscriptions serve websockets on this door.
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = until_stopped(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Completes when shutdown is asked for (or the loop is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
