//! The HTTP client the collector and its callers use: `wardseal-net`'s (hyper-util's
//! pooled client over hyper-rustls), under the names this crate has always exported.

/// A mutual-TLS client for one server; [`Connection::open`] makes its first connection
/// before returning.
pub use wardseal_net::client::Client as Connection;
pub use wardseal_net::client::{ClientOptions, Endpoint, Reply, RequestError, UrlError};
