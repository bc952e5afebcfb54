//! rustls client configuration for mutual TLS to wardseal servers (collector → storage,
//! staff tools, the simulator, tests).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;

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
