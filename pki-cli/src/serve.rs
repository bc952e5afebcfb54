//! `crl --serve`: the CRL over plain HTTP, as RFC 5280 distribution points expect.
//!
//! The server holds the latest signed CRL in memory and answers `GET <path>` with it
//! (`application/pkix-crl`, DER). Once a second it looks at the inventory: when a
//! certificate has been revoked (by another process) or half the CRL's lifetime has
//! passed, it signs a fresh CRL, so collectors see a revocation within seconds.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::ca::SigningCa;
use crate::crl::Crl;
use crate::error::Error;

/// The URL path the CRL is served at: the CA's CRL URL's path, else `/crl`.
pub fn crl_path(crl_url: Option<&str>) -> String {
    crl_url
        .and_then(|url| url.strip_prefix("http://"))
        .and_then(|rest| rest.find('/').map(|at| rest[at..].to_owned()))
        .unwrap_or_else(|| "/crl".to_owned())
}

fn respond(
    request: &Request<Incoming>,
    path: &str,
    crl: &RwLock<Vec<u8>>,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    if request.uri().path() != path {
        return plain(StatusCode::NOT_FOUND, "no such CRL\n");
    }
    let body = match crl.read() {
        Ok(der) => der.clone(),
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "CRL unavailable\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/pkix-crl"),
    );
    response
}

impl SigningCa<'_> {
    /// Serves CRLs on `listener` until `shutdown` completes, re-signing as revocations
    /// happen. Signs one at once.
    pub async fn serve_crl(
        &self,
        listener: TcpListener,
        actor: &str,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let path = Arc::new(crl_path(self.ca().settings().crl_url.as_deref()));
        let mut current: Crl = self.crl(actor).await?;
        let mut state = self.ca().inventory().revocation_state().await?;
        let shared = Arc::new(RwLock::new(current.der.clone()));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = listener.accept() => {
                    // A failed accept (e.g. out of file descriptors) affects one client.
                    let Ok((stream, _)) = accepted else { continue };
                    let shared = Arc::clone(&shared);
                    let path = Arc::clone(&path);
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let response = respond(&request, &path, &shared);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                _ = tick.tick() => {
                    let now_state = self.ca().inventory().revocation_state().await?;
                    let half_life = (current.next_update - current.this_update) / 2;
                    if now_state != state || OffsetDateTime::now_utc() > current.this_update + half_life {
                        current = self.crl(actor).await?;
                        state = now_state;
                        if let Ok(mut der) = shared.write() {
                            der.clone_from(&current.der);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_comes_from_the_url() {
        assert_eq!(
            crl_path(Some("http://127.0.0.1:8080/ca/issuing.crl")),
            "/ca/issuing.crl"
        );
        assert_eq!(crl_path(Some("http://crl.example")), "/crl");
        assert_eq!(crl_path(None), "/crl");
    }
}
