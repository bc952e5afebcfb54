//! Mutual-TLS plumbing shared by the wardseal servers (collector and storage) and their
//! clients.
//!
//! # Design
//!
//! - [`server::ServerTls`] builds the rustls (ring) server configuration in one function,
//!   used at start-up and on every [`server::ServerTls::reload`]: TLS 1.2 and 1.3, ALPN
//!   `h2` and `http/1.1`, a client certificate **required** and verified by
//!   `WebPkiClientVerifier` against the hospital CA bundle with its CRLs. The
//!   configuration sits behind an `ArcSwap`. Patient card certificates (which carry the
//!   wardseal patient-data-signing usage instead of `clientAuth`) are admitted too, with
//!   the same chain and CRL checks, so patients can read their own access log. A reload (new CRL, renewed server
//!   certificate) applies to the next handshake without a restart.
//! - Revocation cannot be bypassed by resumption: session caches and tickets are off, and
//!   the serving loop re-checks every request against the current CRLs (see [`server`]).
//! - [`peer::PeerIdentity`] reads the wardseal identity extension of the verified client
//!   certificate; `require_role` refuses other roles with a typed [`AccessError`].
//! - [`client::ClientTlsSettings`] gives clients (collector → storage, tools, tests) a
//!   rustls client configuration with the CA bundle and their own certificate;
//!   [`client::Client`] is the one HTTP client (hyper-util's pooled client over
//!   hyper-rustls) that the collector, the CRL fetcher and the simulated devices use.
//! - [`logging::init`] installs the `tracing` subscriber every binary uses: readable
//!   lines, or JSON with `--log-format json` / `WARDSEAL_LOG_FORMAT=json`; `RUST_LOG`
//!   sets the level.
//! - [`serve::serve`] is a bounded hyper 1 loop (HTTP/1.1 and HTTP/2) with graceful
//!   shutdown; [`wire`] holds the one JSON error body both servers answer with.
//! - Private key files that group or others can read are refused ([`files`]).
//! - [`est_client`] renews a certificate over EST (RFC 7030 `simplereenroll`) before it
//!   expires, with a new key, and writes the new identity for a reload.
//! - [`crl::CrlFetcher`] keeps CRLs from the CA's `http://` distribution points fresh: each
//!   answer is used only if its signature verifies against the CA bundle
//!   ([`server::ServerTls::verify_crl`]; CRL files are checked the same way), and the last
//!   good CRL stays in force while the CA is unreachable. A CRL past its `nextUpdate` makes
//!   every request 503 `crl_expired` under [`server::ExpiredCrl::Refuse`] (the default) or
//!   is tolerated under [`server::ExpiredCrl::Warn`].
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use wardseal_core::identity::Role;
//! use wardseal_net::serve::{serve, ServeOptions};
//! use wardseal_net::server::{ServerTls, ServerTlsSettings};
//! use wardseal_net::wire::{json_response, WireError};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut settings = ServerTlsSettings::new("storage.pem", "storage.key", "ca-bundle.pem");
//! settings.crls.push("crl.pem".into());
//! let tls = Arc::new(ServerTls::load(settings)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let handler = |_request, peer: Arc<wardseal_net::peer::PeerIdentity>| async move {
//!     match peer.require_role(Role::Collector) {
//!         Ok(_) => json_response(hyper::StatusCode::OK, &serde_json::json!({"hello": peer.subject})),
//!         Err(error) => WireError::new(hyper::StatusCode::FORBIDDEN, "wrong_role", error.to_string())
//!             .into_response(),
//!     }
//! };
//! // `tls.reload()` (for example on SIGHUP) picks up a new CRL without a restart.
//! serve(listener, tls, ServeOptions::default(), handler, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod crl;
mod error;
pub mod est_client;
pub mod files;
pub mod logging;
pub mod peer;
pub mod serve;
pub mod server;
pub mod wire;

pub use error::{
    AccessError, CertificateError, ConfigError, Error, EstClientError, IdentityError, KeyFileError,
};
