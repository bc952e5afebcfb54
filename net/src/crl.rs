//! CRLs from where the CA publishes them: files, or the CA's `http://` distribution point
//! (as `wardseal-pki crl --serve` serves it).
//!
//! CRLs are signed by the CA, so plain HTTP is the norm (RFC 5280 §4.2.1.13): the bytes
//! are trusted only after their signature verifies against the CA bundle
//! ([`ServerTls::verify_crl`]). [`CrlFetcher::refresh`] fetches every URL with a bounded
//! timeout and keeps, per URL, the last CRL that verified: a CA that is down, or answers
//! garbage or a forged CRL, never removes a revocation that was already known.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use crate::client;
use crate::server::ServerTls;

/// Largest CRL accepted from a URL (a CRL with a million entries is about 40 MB; a ward
/// CA's is far smaller).
pub const MAX_CRL_BYTES: usize = 64 * 1024 * 1024;

/// Where one CRL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSource {
    /// A PEM or DER file, re-read on every reload.
    File(PathBuf),
    /// An `http://host[:port]/path` distribution point.
    Http(HttpUrl),
}

impl std::str::FromStr for CrlSource {
    type Err = CrlFetchError;

    /// `http://…` is a URL, `https://` is refused (a CRL needs no TLS, and TLS to the CA
    /// would need a CRL), anything else is a path.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with("http://") {
            Ok(Self::Http(text.parse()?))
        } else if text.contains("://") {
            Err(CrlFetchError::Url {
                url: text.to_owned(),
                reason: "only http:// URLs or file paths are CRL sources (a CRL is signed; it needs no TLS)".into(),
            })
        } else {
            Ok(Self::File(PathBuf::from(text)))
        }
    }
}

/// A parsed `http://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    /// Host name or IP address (brackets removed for IPv6).
    pub host: String,
    /// TCP port (80 when the URL names none).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    text: String,
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = CrlFetchError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| CrlFetchError::Url {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        // The WHATWG parser reads `http:///crl` as host `crl`; a distribution point must
        // name its host.
        if !text.starts_with("http://") || text["http://".len()..].starts_with('/') {
            return Err(bad("must start with http:// and a host"));
        }
        let url = url::Url::parse(text).map_err(|error| bad(&error.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must name a host (and no user information)"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("must name a host (and no user information)"))?;
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: url.port_or_known_default().unwrap_or(80),
            path,
            text: text.to_owned(),
        })
    }
}

/// Why a CRL could not be fetched or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlFetchError {
    /// The source is not a usable URL.
    #[error("CRL source `{url}` is not usable: {reason}")]
    Url {
        /// The URL as written.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No answer in time, connection refused, or an HTTP error.
    #[error("fetching the CRL from {url} failed: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The answer is not a CRL signed by the hospital CA.
    #[error("the CRL fetched from {url} was refused: {source}")]
    Refused {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: crate::Error,
    },
}

/// Fetches `url` with one GET over HTTP/1.1, within `timeout`, and returns the body.
pub async fn fetch(url: &HttpUrl, timeout: Duration) -> Result<Bytes, CrlFetchError> {
    let fail = |reason: String| CrlFetchError::Fetch {
        url: url.to_string(),
        reason,
    };
    let uri: hyper::Uri = url
        .text
        .parse()
        .map_err(|error: hyper::http::uri::InvalidUri| fail(error.to_string()))?;
    client::fetch_http(&uri, "application/pkix-crl", timeout, MAX_CRL_BYTES)
        .await
        .map_err(|error| fail(error.to_string()))
}

/// Keeps the CRLs of a set of URLs fresh in a [`ServerTls`]: the last CRL that verified
/// for each URL stays in force until a newer one verifies.
#[derive(Debug)]
pub struct CrlFetcher {
    urls: Vec<HttpUrl>,
    timeout: Duration,
    last_good: HashMap<HttpUrl, Vec<u8>>,
}

impl CrlFetcher {
    /// A fetcher for `urls`, each fetch bounded by `timeout`.
    pub fn new(urls: Vec<HttpUrl>, timeout: Duration) -> Self {
        Self {
            urls,
            timeout,
            last_good: HashMap::new(),
        }
    }

    /// The URLs fetched.
    pub fn urls(&self) -> &[HttpUrl] {
        &self.urls
    }

    /// Whether every URL has given a CRL that verified at least once.
    pub fn complete(&self) -> bool {
        self.urls.iter().all(|url| self.last_good.contains_key(url))
    }

    /// Fetches every URL, verifies each answer against `tls`'s CA bundle, and installs
    /// the newest good CRLs (with the files, re-read) in `tls`. Returns the URLs that
    /// failed this time, with why; their previous CRL (if any) stays in force.
    pub async fn refresh(&mut self, tls: &ServerTls) -> Vec<CrlFetchError> {
        let mut failures = Vec::new();
        for url in &self.urls {
            let verified = match fetch(url, self.timeout).await {
                Ok(bytes) => tls
                    .verify_crl(&url.to_string(), &bytes)
                    .map(|crl| crl.as_ref().to_vec())
                    .map_err(|source| CrlFetchError::Refused {
                        url: url.to_string(),
                        source,
                    }),
                Err(error) => Err(error),
            };
            match verified {
                Ok(der) => {
                    self.last_good.insert(url.clone(), der);
                }
                Err(error) => failures.push(error),
            }
        }
        let crls = self
            .urls
            .iter()
            .filter_map(|url| self.last_good.get(url).cloned())
            .collect();
        if let Err(source) = tls.set_fetched_crls(crls) {
            failures.push(CrlFetchError::Refused {
                url: "(installing the fetched CRLs)".into(),
                source,
            });
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_urls_or_paths() {
        let Ok(CrlSource::Http(url)) = "http://ca.ward:8080/crl.pem".parse::<CrlSource>() else {
            panic!("an http URL is an Http source");
        };
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("ca.ward", 8080, "/crl.pem")
        );
        let Ok(CrlSource::Http(url)) = "http://[::1]/".parse::<CrlSource>() else {
            panic!("an IPv6 URL is an Http source");
        };
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        assert_eq!(
            "/etc/crl.pem".parse::<CrlSource>().ok(),
            Some(CrlSource::File("/etc/crl.pem".into()))
        );
        assert!("https://ca/crl".parse::<CrlSource>().is_err());
        assert!("http://ca:http/crl".parse::<CrlSource>().is_err());
        assert!("http:///crl".parse::<CrlSource>().is_err());
    }
}
